"""The sandbox's start-up overhead per run: a trivial program through ``Sandbox.run`` against the same
interpreter run bare.

    .venv/bin/python bench/sandbox.py              # 30 rounds, Python and JavaScript (~15 s on 2 cores)
    .venv/bin/python bench/sandbox.py --rounds 100

The program is ``print(1)`` / ``console.log(1)``. Variants, each run once per round and language, round
by round interleaved (sandbox, bare, bwrap only, sandbox, ...), so a slow patch of the machine hits all:

  sandbox     ``Sandbox.run(RunRequest(...))`` of the studio's own ``Sandbox``: the whole call (the source
              memfd, the container, prlimit and the timing shell inside, reading the output, waiting until
              the container's PID namespace is empty).
  bare        the same interpreter with the same flags (``python3 -I -B`` / ``node
              --max-old-space-size=512``) on the same source in a file, through ``subprocess.run`` with
              its output captured: what running it unsandboxed would cost.
  bwrap only  the sandbox's bwrap command line (same mounts, namespaces, source file) around the
              interpreter, without prlimit and the timing shell, through ``subprocess.run``: what the
              container itself costs.

Every run's output is checked to be ``1``. Reported per language and variant: wall milliseconds per run,
median (min–max) over the rounds; for the sandbox and bwrap only, the milliseconds added over the bare run
of the same round and the ratio to it, median (min–max) over the rounds. Writes every sample to
bench/results/sandbox-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
sys.path.insert(0, str(BENCH.parent / "src"))
sys.path.insert(0, str(BENCH))

from procs import fmt, spread  # noqa: E402

from aigc_studio import sandbox as sandbox_module  # noqa: E402
from aigc_studio.contracts import RunLimits, RunRequest  # noqa: E402
from aigc_studio.sandbox import Sandbox, runtime  # noqa: E402

PROGRAMS = {"python": "print(1)\n", "javascript": "console.log(1)\n"}
VARIANTS = ("sandbox", "bare", "bwrap only")


class Variants:
    """The three ways to run one language's program, each returning its wall seconds."""

    def __init__(self, sandbox: Sandbox, language: str, folder: Path):
        self.sandbox = sandbox
        self.language = language
        self.code = PROGRAMS[language]
        self.limits = RunLimits()
        rt = runtime(language)
        self.flags = sandbox._runtime_flags(language, self.limits)
        source = folder / sandbox_module.SOURCE_NAMES[language]
        source.write_text(self.code)
        self.bare_command = [rt.path, *self.flags, str(source)]
        self.memfd = os.memfd_create("bench-source", os.MFD_CLOEXEC)
        os.write(self.memfd, self.code.encode())
        inside = f"{sandbox_module.WORKDIR}/{source.name}"
        full = sandbox._container_command(
            self.limits, [rt.path, *self.flags, inside], source=(self.memfd, inside), runtime_path=rt.path
        )
        # Everything from prlimit on is the sandbox's wrapper; the bench puts the bare program in its place.
        self.bwrap_command = [*full[: full.index(sandbox_module.PRLIMIT)], rt.path, *self.flags, inside]

    def run(self, variant: str) -> float:
        started = time.perf_counter()
        if variant == "sandbox":
            result = self.sandbox.run(RunRequest(language=self.language, code=self.code))
            out, ok = result.stdout, result.ok
        elif variant == "bare":
            done = subprocess.run(self.bare_command, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
            out, ok = done.stdout, done.returncode == 0
        else:
            os.lseek(self.memfd, 0, os.SEEK_SET)  # bwrap reads the source from the fd's offset
            done = subprocess.run(
                self.bwrap_command,
                capture_output=True,
                text=True,
                env={"PATH": "/usr/bin:/bin"},
                pass_fds=(self.memfd,),
                **self.sandbox._user_args(),
            )
            out, ok = done.stdout, done.returncode == 0
        took = time.perf_counter() - started
        if not ok or out != "1\n":
            raise RuntimeError(f"{self.language} {variant}: expected 1, got {out!r}")
        return took

    def close(self) -> None:
        os.close(self.memfd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="runs of each variant per language")
    parser.add_argument("--languages", default="python,javascript", help="comma-separated")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON goes")
    args = parser.parse_args()
    languages = [name.strip() for name in args.languages.split(",") if name.strip()]

    sandbox = Sandbox()
    sandbox.check()  # once, as the studio does: not part of any run's cost
    with tempfile.TemporaryDirectory() as tmp:
        variants = {language: Variants(sandbox, language, Path(tmp)) for language in languages}
        try:
            for language in languages:  # warm the page cache and the runtime lookup
                for variant in VARIANTS:
                    variants[language].run(variant)
            samples = {language: {variant: [] for variant in VARIANTS} for language in languages}
            for _ in range(args.rounds):
                for language in languages:
                    for variant in VARIANTS:
                        samples[language][variant].append(variants[language].run(variant))
        finally:
            for item in variants.values():
                item.close()

    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / time.strftime("sandbox-%Y%m%d-%H%M%S.json")
    data = {
        "rounds": args.rounds,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "runtimes": {language: runtime(language).version for language in languages},
        "bwrap": subprocess.run(["bwrap", "--version"], capture_output=True, text=True).stdout.strip(),
        "samples_s": samples,
    }
    out.write_text(json.dumps(data, indent=1))

    print(f"| {args.rounds} rounds | wall per run, ms | added over bare, ms | ÷ bare |")
    print("|---|---:|---:|---:|")
    for language in languages:
        bare = samples[language]["bare"]
        for variant in VARIANTS:
            times = samples[language][variant]
            ms = spread([t * 1000 for t in times])
            if variant == "bare":
                added, ratio = "–", "1"
            else:
                added = fmt(spread([(t - b) * 1000 for t, b in zip(times, bare, strict=True)]))
                ratio = fmt(spread([t / b for t, b in zip(times, bare, strict=True)]), 2)
            name = f"{runtime(language).version}: {variant}"
            print(f"| {name} | {fmt(ms)} | {added} | {ratio} |")
    print()
    print(f"- {data['bwrap']}; {os.cpu_count()} CPUs; {platform.platform()}")
    print(f"- every sample: {out}")


if __name__ == "__main__":
    main()
