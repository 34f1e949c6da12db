"""The sandbox: the only way the studio runs code, a model's or a user's.

Each run is a fresh bubblewrap (``bwrap``) container:

- **Nothing of the host** but ``/usr`` read-only (the interpreters and their libraries), a minimal
  ``/dev``, a ``/proc`` of its own and an empty tmpfs at ``/tmp`` (the working directory, size-capped).
  No home, no ``/etc``, no ``AIGC_HOME``: the studio's database and keys do not exist in there.
- **No network**: a network namespace of its own, whose loopback is not the host's, so not even the
  studio's own port answers.
- **A clean environment**: bwrap itself is started with only ``PATH`` set and clears it again inside;
  no API key or other variable of the studio's process reaches the program.
- **Its own PID namespace**: when the program ends (or is killed), everything it started dies with it.
- **Limits** (``contracts.RunLimits``): wall time (the studio kills the container), CPU time per process
  (``RLIMIT_CPU``), memory per process (``RLIMIT_DATA``: counts what Python and V8 really allocate, where
  ``RLIMIT_AS`` would break V8's address-space reservations; node also gets ``--max-old-space-size``),
  processes (``RLIMIT_NPROC``, counted per user: a studio running as root starts the container as the
  unprivileged ``nobody``, since the kernel exempts root from that limit), output (the studio stops
  reading and kills the container), temp-dir size (the tmpfs' size and ``RLIMIT_FSIZE``).

Where the container cannot start (bwrap missing, user namespaces off), ``run`` raises
``SandboxUnavailable`` naming what is missing; there is no unsandboxed fallback.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pwd
import re
import selectors
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass

from .contracts import RunLimits, RunRequest, RunResult
from .errors import InvalidRequest, SandboxUnavailable

# Where the program lives inside the container.
WORKDIR = "/tmp"
SOURCE_NAMES = {"python": "main.py", "javascript": "main.js"}
# Runtimes are looked up under /usr only: /usr is all of the host the container sees.
RUNTIME_CANDIDATES = {
    "python": ("/usr/bin/python3", "/usr/local/bin/python3"),
    "javascript": ("/usr/bin/node", "/usr/bin/nodejs", "/usr/local/bin/node"),
}
RUNTIME_PACKAGES = {"python": "python3", "javascript": "nodejs"}
NOBODY = "nobody"
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
# What the kernel and the runtimes print when a limit other than ours stops a program.
MEMORY_SIGNS = ("MemoryError", "heap out of memory", "Array buffer allocation failed", "Cannot allocate memory")
PROCESS_SIGNS = ("Resource temporarily unavailable", "EAGAIN", "can't start new thread")
FILES_SIGNS = ("No space left on device", "File too large", "ENOSPC", "EFBIG")


@dataclass(frozen=True)
class Runtime:
    language: str
    path: str
    version: str  # "Python 3.11.2", "Node.js v20.20.2"


def _bwrap() -> str:
    path = shutil.which("bwrap", path=SAFE_PATH)
    if not path:
        raise SandboxUnavailable(
            "cannot run code: bubblewrap (bwrap) is not installed; install it (Debian/Ubuntu: apt-get install"
            " bubblewrap). The studio never runs generated code outside its sandbox."
        )
    return path


@functools.cache
def runtime(language: str) -> Runtime:
    """The interpreter that runs ``language`` in the container; SandboxUnavailable when there is none."""
    for path in RUNTIME_CANDIDATES[language]:
        if os.access(path, os.X_OK):
            flag = "--version"
            out = subprocess.run([path, flag], capture_output=True, text=True, timeout=30, env={"PATH": SAFE_PATH})
            version = (out.stdout or out.stderr).strip().splitlines()[0] if out.returncode == 0 else "?"
            if language == "javascript":
                version = f"Node.js {version}"
            return Runtime(language, path, version)
    raise SandboxUnavailable(
        f"cannot run {language}: no interpreter at {' or '.join(RUNTIME_CANDIDATES[language])}; install Debian's"
        f" {RUNTIME_PACKAGES[language]} package"
    )


def _drop_to() -> tuple[int, int] | None:
    """The (uid, gid) the container starts as: ``nobody`` when the studio runs as root (so the process
    limit holds), else None (the studio's own user)."""
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam(NOBODY)
    return entry.pw_uid, entry.pw_gid


def _processes_of(uid: int) -> int:
    """How many processes ``uid`` has now (RLIMIT_NPROC counts them all, not only the run's)."""
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += 1
            except OSError:
                continue
    return count


class Sandbox:
    """Runs programs in bubblewrap containers. ``maxima`` bounds what a request may raise limits to."""

    def __init__(self, maxima: RunLimits | None = None):
        self.maxima = maxima or RunLimits(
            wall_seconds=60, cpu_seconds=60, memory_mb=2048, processes=128, output_kb=16384, files_mb=512
        )
        self._checked = False
        self._lock = threading.Lock()

    # -- checks ---------------------------------------------------------------------------------------

    def check_limits(self, limits: RunLimits) -> None:
        """InvalidRequest naming the first limit above the configured maximum."""
        for name in RunLimits.model_fields:
            asked, most = getattr(limits, name), getattr(self.maxima, name)
            if asked > most:
                raise InvalidRequest(
                    f"limits.{name} must be at most {most:g} (setting run_max_{name}), got {asked:g}",
                    param=f"limits.{name}",
                )

    def check(self) -> None:
        """SandboxUnavailable, naming what is missing, unless a container starts here (checked once)."""
        if self._checked:
            return
        with self._lock:
            if self._checked:
                return
            command = self._container_command(RunLimits(), ["/usr/bin/true"], source=None)
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=30, **self._user_args())
            except OSError as exc:
                raise SandboxUnavailable(f"cannot run code: the sandbox does not start ({exc})") from None
            if done.returncode != 0:
                why = done.stderr.strip() or f"exit status {done.returncode}"
                raise SandboxUnavailable(
                    f"cannot run code: bubblewrap cannot create its container here ({why}); it needs unprivileged"
                    " user namespaces (sysctl kernel.unprivileged_userns_clone=1, or"
                    " user.max_user_namespaces > 0). The studio never runs generated code outside its sandbox."
                )
            self._checked = True

    # -- running --------------------------------------------------------------------------------------

    def run(self, request: RunRequest) -> RunResult:
        """Run ``request`` in a fresh container and return what it did. InvalidRequest for a limit above
        the maximum, SandboxUnavailable when no container can start; a program that fails, hangs, forks
        or floods is not an error: its result says how it ended and which limit stopped it."""
        limits = request.limits
        self.check_limits(limits)
        rt = runtime(request.language)
        self.check()
        memfd = os.memfd_create("aigc-source", 0)
        times_read, times_write = os.pipe()
        try:
            os.write(memfd, request.code.encode("utf-8"))
            os.lseek(memfd, 0, os.SEEK_SET)
            path = f"{WORKDIR}/{SOURCE_NAMES[request.language]}"
            program = [rt.path, *self._runtime_flags(request.language, limits), path, *request.args]
            # A shell inside waits for the program and reports the CPU time of it and all it waited for
            # (``times``) on a pipe of its own, which the program does not inherit: bwrap's outer process
            # does not reap the container's init, so the studio's own wait4 never sees that time. bash, not
            # sh: dash reads only one-digit fds in a redirection, and a busy server's pipe is fd 10 or more.
            timed = ["/bin/bash", "-c", f'"$@" {times_write}>&-; s=$?; times >&{times_write}; exit $s', "sh", *program]
            command = self._container_command(limits, timed, source=(memfd, path))
            return self._execute(command, request, rt, (memfd, times_write), times_read)
        finally:
            for fd in (memfd, times_read, times_write):
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _runtime_flags(self, language: str, limits: RunLimits) -> list[str]:
        if language == "python":
            return ["-I", "-B"]  # isolated: no user site, no PYTHON* variables, no .pyc written
        return [f"--max-old-space-size={limits.memory_mb}"]

    def _user_args(self) -> dict:
        ids = _drop_to()
        return {"user": ids[0], "group": ids[1], "extra_groups": []} if ids else {}

    def _container_command(self, limits: RunLimits, program: list[str], source: tuple[int, str] | None) -> list[str]:
        """prlimit (the kernel's limits) around bwrap (the container) around ``program``; ``source``: a file
        descriptor whose bytes become the read-only file at the given path inside."""
        ids = _drop_to()
        uid = ids[0] if ids else os.geteuid()
        nproc = _processes_of(uid) + limits.processes + 2  # + bwrap and its init
        cpu = max(1, round(limits.cpu_seconds))
        memory = limits.memory_mb * 1024 * 1024
        files = limits.files_mb * 1024 * 1024
        rlimits = [
            f"--cpu={cpu}:{cpu + 1}",  # SIGXCPU at the limit, SIGKILL a second later
            f"--data={memory}",
            f"--nproc={nproc}",
            f"--fsize={files}",
            "--core=0",
            "--nofile=256",
        ]
        container = [
            _bwrap(),
            "--unshare-all",  # user, pid, net, ipc, uts, cgroup namespaces
            "--die-with-parent",
            "--new-session",
            "--cap-drop",
            "ALL",
            "--clearenv",
            "--ro-bind",
            "/usr",
            "/usr",
            *self._usr_links(),
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--size",
            str(files),
            "--tmpfs",
            WORKDIR,
            "--chdir",
            WORKDIR,
            "--hostname",
            "sandbox",
            "--setenv",
            "PATH",
            SAFE_PATH,
            "--setenv",
            "HOME",
            WORKDIR,
            "--setenv",
            "LANG",
            "C.UTF-8",
            "--setenv",
            "PYTHONIOENCODING",
            "utf-8",
        ]
        if source is not None:
            container += ["--perms", "0444", "--file", str(source[0]), source[1]]
        return [shutil.which("prlimit", path=SAFE_PATH) or "prlimit", *rlimits, "--", *container, *program]

    @staticmethod
    def _usr_links() -> list[str]:
        """/bin, /lib, ... as the host has them: links into /usr on a merged-/usr system, else read-only."""
        args: list[str] = []
        for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            path = f"/{name}"
            if os.path.islink(path):
                args += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                args += ["--ro-bind", path, path]
        return args

    def _execute(
        self, command: list[str], request: RunRequest, rt: Runtime, pass_fds: tuple[int, ...], times_read: int
    ) -> RunResult:
        limits = request.limits
        cap = limits.output_kb * 1024
        started = time.perf_counter()
        proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={"PATH": SAFE_PATH},  # bwrap itself sees nothing of the studio's environment either
            pass_fds=pass_fds,
            start_new_session=True,
            close_fds=True,
            **self._user_args(),
        )
        os.close(pass_fds[1])  # the shell's end of the times pipe: EOF once the container is gone
        writer = threading.Thread(target=_feed, args=(proc.stdin, request.stdin.encode("utf-8")), daemon=True)
        writer.start()
        out, err, kept = bytearray(), bytearray(), 0
        hit: str | None = None
        truncated = False
        deadline = started + limits.wall_seconds
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ, out)
            sel.register(proc.stderr, selectors.EVENT_READ, err)
            while sel.get_map():
                left = deadline - time.perf_counter()
                if left <= 0:
                    hit = "wall"
                    break
                for key, _ in sel.select(timeout=min(left, 0.5)):
                    chunk = os.read(key.fileobj.fileno(), 65536)
                    if not chunk:
                        sel.unregister(key.fileobj)
                        continue
                    room = cap - kept
                    key.data.extend(chunk[:room])
                    kept += min(len(chunk), room)
                    if len(chunk) > room:
                        truncated, hit = True, "output"
                        break
                if hit:
                    break
        if hit:
            _kill(proc)
        status = _reap(proc, deadline + 5)
        wall = time.perf_counter() - started
        proc.stdout.close()
        proc.stderr.close()
        writer.join(timeout=1)
        cpu = _cpu_from(_read_all(times_read)) if hit is None else None
        exit_code, sig = _decode(status)
        stderr = err.decode("utf-8", errors="replace")
        if hit is None:
            hit = _limit_from(exit_code, sig, cpu, limits, stderr)
        return RunResult(
            language=request.language,
            runtime=rt.version,
            stdout=out.decode("utf-8", errors="replace"),
            stderr=stderr,
            exit_code=exit_code,
            signal=sig,
            wall_seconds=wall,
            cpu_seconds=cpu,
            limit=hit,
            truncated=truncated,
            limits=limits,
        )


def _feed(pipe, data: bytes) -> None:
    try:
        if data:
            pipe.write(data)
        pipe.close()
    except (BrokenPipeError, OSError, ValueError):
        pass  # the program exited without reading all of it


def _kill(proc: subprocess.Popen) -> None:
    # The whole session: prlimit/bwrap and, through --die-with-parent, the container's init and all under it.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _reap(proc: subprocess.Popen, deadline: float) -> int:
    """Wait for the container, killing it past ``deadline``; its wait status."""
    while True:
        pid, status = os.waitpid(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return status
        if time.perf_counter() > deadline:
            _kill(proc)
            deadline = float("inf")
        time.sleep(0.002)


def _read_all(fd: int) -> bytes:
    os.set_blocking(fd, False)
    data = b""
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 4096):
            data += chunk
            if len(data) > 4096:
                break
    return data


_TIMES = re.compile(rb"(\d+)m([\d.]+)s\s+(\d+)m([\d.]+)s\s*$")


def _cpu_from(times: bytes) -> float | None:
    """User + system seconds of the program's processes from the shell's ``times`` (its second line:
    the children's), or None when the shell did not get to report them."""
    lines = times.strip().splitlines()
    match = _TIMES.match(lines[-1]) if len(lines) == 2 else None
    if not match:
        return None
    user_min, user_s, sys_min, sys_s = match.groups()
    return int(user_min) * 60 + float(user_s) + int(sys_min) * 60 + float(sys_s)


def _decode(status: int) -> tuple[int | None, str | None]:
    """(exit code, signal name). bwrap reports a program killed by signal N as exit status 128 + N."""
    if os.WIFSIGNALED(status):
        return None, signal.Signals(os.WTERMSIG(status)).name
    code = os.WEXITSTATUS(status)
    if code > 128:
        try:
            return None, signal.Signals(code - 128).name
        except ValueError:
            pass
    return code, None


def _limit_from(
    exit_code: int | None, sig: str | None, cpu: float | None, limits: RunLimits, stderr: str
) -> str | None:
    if exit_code == 0:
        return None
    if sig == "SIGXCPU" or (sig == "SIGKILL" and cpu is not None and cpu >= limits.cpu_seconds):
        return "cpu"
    if sig == "SIGXFSZ" or any(sign in stderr for sign in FILES_SIGNS):
        return "files"
    if any(sign in stderr for sign in MEMORY_SIGNS):
        return "memory"
    if any(sign in stderr for sign in PROCESS_SIGNS):
        return "processes"
    return None
