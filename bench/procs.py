"""What the benchmarks share: a variant in its own process (paused while others run, stopped at the end),
readiness, what Linux's /proc says of a process, and the spread of a set of timings."""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import time
from pathlib import Path

import httpx


def studio_env(home: Path) -> dict[str, str]:
    """The environment of an ``aigc`` process of the bench's own, in ``home``: each has its own store,
    so a ``AIGC_DATABASE_URL`` of the caller's (which would make them all share one database) is left out."""
    env = {key: value for key, value in os.environ.items() if key != "AIGC_DATABASE_URL"}
    return {**env, "AIGC_HOME": str(home), "PYTHONPATH": str(Path(__file__).resolve().parent.parent / "src")}


class Child:
    """A process the benchmark started: ``proc`` is set by the subclass."""

    proc: subprocess.Popen
    stop_timeout = 60.0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def peak_rss(self) -> float:
        """Peak resident memory of the process so far, in GB (``VmHWM``)."""
        return status_kb(self.pid, "VmHWM") / 1e6

    def close(self) -> None:
        if self.proc.poll() is None:
            self.resume()  # a stopped process acts on SIGTERM only once it runs again
        self.proc.terminate()
        try:
            self.proc.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def wait_ready(proc: subprocess.Popen, url: str, name: str, log: Path, timeout: float = 300) -> None:
    """Until ``url`` answers 200; an error naming ``log`` if the process exits or the time runs out."""
    deadline = time.time() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}; see {log}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.time() > deadline:
            raise RuntimeError(f"{name} not ready after {timeout:.0f} s; see {log}")
        time.sleep(0.1)


def status_kb(pid: int, field: str) -> int:
    """A field of ``/proc/<pid>/status`` given in kB (``VmRSS``, ``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spread(values: list[float]) -> dict | None:
    """Median, min and max of the measured values (NaN: not measured); None if there are none."""
    values = [v for v in values if v == v]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def fmt(s: dict | None, digits: int = 1) -> str:
    if s is None:
        return "–"
    if s["n"] == 1 or s["min"] == s["max"]:
        return f"{s['median']:.{digits}f}"
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"
