"""llama.cpp's own C++ server (``llama-server``) as a benchmark peer, fetched without installing anything.

Debian's stable release on these machines has no llama.cpp; Debian unstable does (``llama.cpp-tools``),
built against unstable's C library. ``fetch_llama_server`` downloads that package and the libraries it
needs with ``apt-get download`` (a private apt configuration that lists only the suite ``sid`` on the
mirror the machine's own sources use; the system's package state is never touched), unpacks them with
``dpkg-deb -x`` into one folder, and runs the server through unstable's own dynamic loader, so the
machine's older libraries are never mixed in. 12 MB of packages, plus unstable's package list (23 MB as
apt keeps it), fetched once into a cache folder.

Where that cannot be done (no apt-get or dpkg-deb, no Debian mirror in the sources, no network, a binary
that does not start), ``PeerUnavailable`` says why; the text bench then skips the peer and says so.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("llama.cpp-tools", "libllama0", "libggml0", "libc6", "libstdc++6", "libgcc-s1", "libgomp1", "libssl3t64")
LIB = "usr/lib/x86_64-linux-gnu"


class PeerUnavailable(RuntimeError):
    """llama-server cannot be had on this machine; the message says why."""


@dataclass(frozen=True)
class LlamaServer:
    """An unpacked ``llama-server`` and how to start it."""

    root: Path  # the folder the packages were unpacked into
    version: str  # first line of ``llama-server --version``, e.g. "version: 0.7.0 (build 11669, commit Debian)"

    @property
    def lib(self) -> Path:
        return self.root / LIB

    @property
    def backends(self) -> Path:
        """ggml's CPU backend variants, one per CPU generation (``libggml-cpu-haswell.so``, ``-zen4``, ...)."""
        return self.lib / "ggml" / "backends0"

    def cpu_variants(self) -> list[str]:
        return sorted(p.name.removeprefix("libggml-cpu-").removesuffix(".so") for p in self.backends.glob("*.so"))

    def command(self, *args: str) -> list[str]:
        """The command line that runs ``llama-server args...`` through unstable's loader."""
        libraries = f"{self.lib}:{self.lib / 'llama'}"
        loader = self.lib / "ld-linux-x86-64.so.2"
        return [str(loader), "--library-path", libraries, str(self.root / "usr/bin/llama-server"), *args]

    def launch(self, cpu: str | None = None) -> dict:
        """``env`` and ``cwd`` to start it with (``subprocess.Popen(command, **launch())``).

        ggml looks for its CPU backends in the folder compiled in (under /usr, where they are not here) and
        in the working folder: started in ``backends``, it loads the best one for this CPU, as it would when
        installed. ``cpu`` (``"haswell"``: AVX2, ...) pins one instead, through ``GGML_BACKEND_PATH``, from a
        working folder without backends so that ggml does not load a second one.
        """
        env = {key: value for key, value in os.environ.items() if key != "GGML_BACKEND_PATH"}
        if cpu is None:
            return {"env": env, "cwd": self.backends}
        library = self.backends / f"libggml-cpu-{cpu}.so"
        if not library.is_file():
            raise PeerUnavailable(f"no ggml CPU backend {cpu!r}; there are: {', '.join(self.cpu_variants())}")
        return {"env": {**env, "GGML_BACKEND_PATH": str(library)}, "cwd": self.root}


def debian_mirror(apt: Path = Path("/etc/apt")) -> str:
    """The Debian mirror the machine's own apt sources use (deb822 ``.sources`` or one-line ``.list``)."""
    candidates: list[str] = []
    parts = sorted((apt / "sources.list.d").glob("*")) if (apt / "sources.list.d").is_dir() else []
    for path in [apt / "sources.list", *parts]:
        if path.suffix == ".sources":
            candidates += re.findall(r"^URIs:\s*(\S+)", path.read_text(), re.MULTILINE)
        elif path.name.endswith(".list") and path.is_file():
            candidates += re.findall(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)", path.read_text(), re.MULTILINE)
    for uri in candidates:  # the main archive, not debian-security or a third party's
        if uri.rstrip("/").endswith("/debian"):
            return uri
    raise PeerUnavailable(f"no Debian mirror (a URI ending in /debian) in {apt}/sources.list*")


def _run(command: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise PeerUnavailable(f"`{' '.join(command[:3])} ...` failed ({done.returncode}): {' | '.join(tail)}")


def _version(server: LlamaServer) -> str:
    try:
        done = subprocess.run(
            server.command("--version"), capture_output=True, text=True, timeout=60, **server.launch()
        )
    except OSError as exc:
        raise PeerUnavailable(f"llama-server does not start: {exc}") from exc
    text = (done.stdout + done.stderr).strip()
    line = next((line for line in text.splitlines() if line.startswith("version")), "")
    if done.returncode != 0 or not line:
        raise PeerUnavailable(f"llama-server --version failed ({done.returncode}): {text[-300:]}")
    return line


def fetch_llama_server(cache: Path) -> LlamaServer:
    """``llama-server`` unpacked under ``cache/root``, downloaded the first time; ``PeerUnavailable`` if it
    cannot be had here. The packages are unpacked into a staging folder renamed into place, so a fetch
    that fails half-way leaves nothing that looks finished."""
    cache = Path(cache).resolve()  # apt takes the folders in its configuration as absolute
    root = cache / "root"
    if not (root / "usr/bin/llama-server").is_file():
        missing = [tool for tool in ("apt-get", "dpkg-deb") if shutil.which(tool) is None]
        if missing:
            raise PeerUnavailable(f"fetching llama-server needs {' and '.join(missing)} (a Debian-like system)")
        if os.uname().machine != "x86_64":
            raise PeerUnavailable(f"the fetched llama-server is for x86_64; this machine is {os.uname().machine}")
        apt = cache / "apt"
        for folder in (apt / "sources", apt / "lists/partial", apt / "cache/archives/partial"):
            folder.mkdir(parents=True, exist_ok=True)
        (apt / "sources/sid.sources").write_text(
            f"Types: deb\nURIs: {debian_mirror()}\nSuites: sid\nComponents: main\nArchitectures: amd64\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        )
        (apt / "apt.conf").write_text(
            'Dir::Etc::SourceList "/dev/null";\n'
            f'Dir::Etc::SourceParts "{apt / "sources"}";\n'
            f'Dir::State::Lists "{apt / "lists"}";\n'
            f'Dir::Cache "{apt / "cache"}";\n'
            'Dir::State::status "/var/lib/dpkg/status";\n'
            'Acquire::Languages "none";\n'
        )
        env = {**os.environ, "APT_CONFIG": str(apt / "apt.conf")}
        _run(["apt-get", "update", "-qq"], env=env)
        debs = Path(tempfile.mkdtemp(prefix="debs-", dir=cache))
        staging = Path(tempfile.mkdtemp(prefix="root-", dir=cache))
        try:
            _run(["apt-get", "download", "-qq", *PACKAGES], env=env, cwd=debs)
            for deb in sorted(debs.glob("*.deb")):
                _run(["dpkg-deb", "-x", str(deb), str(staging)])
            if not (staging / "usr/bin/llama-server").is_file():
                raise PeerUnavailable("the downloaded llama.cpp-tools package has no usr/bin/llama-server")
            shutil.rmtree(root, ignore_errors=True)
            os.replace(staging, root)
        finally:
            shutil.rmtree(debs, ignore_errors=True)
            shutil.rmtree(staging, ignore_errors=True)
    server = LlamaServer(root, "")
    return LlamaServer(root, _version(server))


if __name__ == "__main__":  # fetch (once) and print what was found: python bench/llama_server.py [CACHE]
    import sys

    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "results" / "llama-server"
    try:
        found = fetch_llama_server(folder)
    except PeerUnavailable as exc:
        sys.exit(f"llama-server unavailable: {exc}")
    print(found.version, found.root, sep="\n")
