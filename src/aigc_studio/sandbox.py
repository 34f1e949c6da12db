"""The sandbox: the only way the studio runs code, a model's or a user's.

Each run is a fresh bubblewrap (``bwrap``) container:

- **Nothing of the host** but ``/usr`` read-only (the interpreters and their libraries; ``/usr/local``,
  where an administrator's own tools and their config live, is hidden behind an empty directory), a
  minimal ``/dev`` (read-only but for its ``/dev/shm``), a ``/proc`` of its own, and an empty tmpfs at
  ``/tmp`` (the working directory). The container's own root is read-only, so the only writable places
  are ``/tmp`` and ``/dev/shm``, each a tmpfs capped at ``files_mb``. No home, no ``/etc``, no
  ``AIGC_HOME``: the studio's database and keys do not exist in there. Every mount is nosuid.
- **No network**: a network namespace of its own, whose loopback is not the host's, so not even the
  studio's own port answers; abstract Unix sockets are per network namespace too.
- **A clean environment**: bwrap itself is started with only ``PATH`` set and clears it again inside;
  no API key or other variable of the studio's process reaches the program.
- **Its own namespaces** (user, PID, mount, network, IPC, UTS, cgroup) and no capabilities; the program
  cannot create user namespaces of its own (``--disable-userns``, bubblewrap 0.8+), which closes the
  kernel surface that nested namespaces open; ``--new-session`` keeps it off the studio's terminal.
  When the program ends (or is killed), everything it started dies with its PID namespace.
- **Limits** (``contracts.RunLimits``), set by ``prlimit`` inside the container just before the program:
  wall time (the studio kills the container), CPU time per process (``RLIMIT_CPU``), memory per process
  (``RLIMIT_DATA``: counts what Python and V8 really allocate, where ``RLIMIT_AS`` would break V8's
  address-space reservations; node also gets ``--max-old-space-size``), processes (``RLIMIT_NPROC``; see
  ``_container_command`` for why the count is the run's own), output (the studio stops reading and kills
  the container), temp space (the tmpfs' size and ``RLIMIT_FSIZE``).

No seccomp filter: bubblewrap takes one only as compiled BPF, which would need libseccomp bindings the
studio does not otherwise depend on; the two things such filters usually block in a bwrap sandbox are
covered without one (terminal injection through ``TIOCSTI``: ``--new-session``; nested user namespaces:
``--disable-userns``). What is left is the kernel's own system-call surface (see the README's Sandbox
section for what this does not protect against).

Where the container cannot start (bwrap missing or older than 0.8, user namespaces off, no ``prlimit``),
``run`` raises ``SandboxUnavailable`` naming what is missing; there is no unsandboxed fallback.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import pwd
import re
import select
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
# prlimit runs inside the container, so it too must come from /usr.
PRLIMIT = "/usr/bin/prlimit"
NOBODY = "nobody"
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
# Tasks in the container's innermost namespace that are not the program: bwrap's init and the timing shell.
OVERHEAD_TASKS = 2
NOT_RUN = "The code was not run: the studio never runs code outside its sandbox."
# What the kernel and the runtimes print when a limit other than ours stops a program.
MEMORY_SIGNS = ("MemoryError", "heap out of memory", "Array buffer allocation failed", "Cannot allocate memory")
PROCESS_SIGNS = (
    "Resource temporarily unavailable",
    "EAGAIN",
    "can't start new thread",
    "uv_thread_create",  # node aborts when it cannot start its own threads
)
# node runs 7 threads of its own (main, V8's 4 workers, its task scheduler, libuv's signal thread) before
# any of the program's: fewer processes than this and it aborts or hangs before the first line.
NODE_THREADS = 7
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
            f" bubblewrap). {NOT_RUN}"
        )
    return path


def _prlimit() -> str:
    if not os.access(PRLIMIT, os.X_OK):
        raise SandboxUnavailable(
            f"cannot run code: {PRLIMIT} is missing, which sets the run's limits; install Debian's util-linux"
            f" package. {NOT_RUN}"
        )
    return PRLIMIT


@functools.cache
def runtime(language: str) -> Runtime:
    """The interpreter that runs ``language`` in the container; SandboxUnavailable when there is none."""
    for path in RUNTIME_CANDIDATES[language]:
        if os.access(path, os.X_OK):
            out = subprocess.run(
                [path, "--version"], capture_output=True, text=True, timeout=30, env={"PATH": SAFE_PATH}
            )
            version = (out.stdout or out.stderr).strip().splitlines()[0] if out.returncode == 0 else "?"
            if language == "javascript":
                version = f"Node.js {version}"
            return Runtime(language, path, version)
    raise SandboxUnavailable(
        f"cannot run {language}: no interpreter at {' or '.join(RUNTIME_CANDIDATES[language])}; install Debian's"
        f" {RUNTIME_PACKAGES[language]} package. {NOT_RUN}"
    )


def _drop_to() -> tuple[int, int] | None:
    """The (uid, gid) the container starts as: ``nobody`` when the studio runs as root (the kernel exempts
    root from RLIMIT_NPROC, and root's files are not nobody's), else None (the studio's own user)."""
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam(NOBODY)
    return entry.pw_uid, entry.pw_gid


class Sandbox:
    """Runs programs in bubblewrap containers. ``maxima`` bounds what a request may raise limits to.
    One Sandbox serves any number of threads at once: each run has its own container, pipes and limits."""

    def __init__(self, maxima: RunLimits | None = None):
        self.maxima = maxima or RunLimits(
            wall_seconds=60, cpu_seconds=60, memory_mb=2048, processes=128, output_kb=16384, files_mb=512
        )
        self._checked = False
        self._lock = threading.Lock()

    # -- checks ---------------------------------------------------------------------------------------

    def check_limits(self, limits: RunLimits, language: str | None = None) -> None:
        """InvalidRequest naming the first limit above the configured maximum, or (for javascript) a
        process limit too small for node to start."""
        for name in RunLimits.model_fields:
            asked, most = getattr(limits, name), getattr(self.maxima, name)
            if asked > most:
                raise InvalidRequest(
                    f"limits.{name} must be at most {most:g} (setting run_max_{name}), got {asked:g}",
                    param=f"limits.{name}",
                )
        if language == "javascript" and limits.processes <= NODE_THREADS:
            raise InvalidRequest(
                f"limits.processes must be at least {NODE_THREADS + 1} for javascript (node itself runs"
                f" {NODE_THREADS} threads, and each counts), got {limits.processes}",
                param="limits.processes",
            )

    def check(self) -> None:
        """SandboxUnavailable, naming what is missing, unless a container starts here (checked once)."""
        if self._checked:
            return
        with self._lock:
            if self._checked:
                return
            command = self._container_command(RunLimits(), ["/usr/bin/true"], source=None, runtime_path="/usr/bin")
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=30, **self._user_args())
            except OSError as exc:
                raise SandboxUnavailable(f"cannot run code: the sandbox does not start ({exc}). {NOT_RUN}") from None
            if done.returncode != 0:
                why = done.stderr.strip() or f"exit status {done.returncode}"
                raise SandboxUnavailable(
                    f"cannot run code: bubblewrap cannot create its container here ({why}); it needs bubblewrap 0.8"
                    " or newer and unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, or"
                    f" user.max_user_namespaces > 0). {NOT_RUN}"
                )
            self._checked = True

    # -- running --------------------------------------------------------------------------------------

    def run(self, request: RunRequest) -> RunResult:
        """Run ``request`` in a fresh container and return what it did. InvalidRequest for a limit above
        the maximum, SandboxUnavailable when no container can start; a program that fails, hangs, forks
        or floods is not an error: its result says how it ended and which limit stopped it."""
        limits = request.limits
        self.check_limits(limits, request.language)
        rt = runtime(request.language)
        self.check()
        memfd = os.memfd_create("aigc-source", os.MFD_CLOEXEC)
        times_read, times_write = os.pipe()
        info_read, info_write = os.pipe()
        # Each fd is closed exactly once: closing a number twice could close another run's fd in between.
        fds = [memfd, times_read, times_write, info_read, info_write]
        try:
            ids = _drop_to()
            if ids:  # the shell inside opens the pipe anew through /proc, as the container's user
                os.fchown(times_write, *ids)
            os.write(memfd, request.code.encode("utf-8"))
            os.lseek(memfd, 0, os.SEEK_SET)
            path = f"{WORKDIR}/{SOURCE_NAMES[request.language]}"
            program = [rt.path, *self._runtime_flags(request.language, limits), path, *request.args]
            # A shell inside waits for the program and reports the CPU time of it and all it waited for
            # (``times``) on a pipe of its own: bwrap's outer process does not reap the container's init, so
            # the studio's own wait4 never sees that time. The pipe is named through /proc because dash
            # parses only one-digit descriptors in a redirection, and a busy studio's are past 9. The
            # program inherits the pipe too; writing to it, it could only lie about its own CPU time.
            timed = ["/bin/sh", "-c", f'"$@"; s=$?; times >/proc/self/fd/{times_write}; exit $s', "sh", *program]
            command = self._container_command(
                limits, timed, source=(memfd, path), runtime_path=rt.path, info_fd=info_write
            )
            return self._execute(command, request, rt, fds)
        finally:
            for fd in fds:
                os.close(fd)

    def _runtime_flags(self, language: str, limits: RunLimits) -> list[str]:
        if language == "python":
            return ["-I", "-B"]  # isolated: no user site, no PYTHON* variables, no .pyc written
        return [f"--max-old-space-size={limits.memory_mb}"]

    def _user_args(self) -> dict:
        ids = _drop_to()
        return {"user": ids[0], "group": ids[1], "extra_groups": []} if ids else {}

    def _container_command(
        self,
        limits: RunLimits,
        program: list[str],
        source: tuple[int, str] | None,
        runtime_path: str,
        info_fd: int | None = None,
    ) -> list[str]:
        """bwrap (the container) around prlimit (the kernel's limits) around ``program``; ``source``: a file
        descriptor whose bytes become the read-only file at the given path inside; ``info_fd``: where bwrap
        writes the host PID of the container's init."""
        files = limits.files_mb * 1024 * 1024
        memory = limits.memory_mb * 1024 * 1024
        cpu = max(1, round(limits.cpu_seconds))
        # RLIMIT_NPROC counts a user's tasks (threads too) per user namespace, each level against the limit
        # its creator had. Set inside the container's own namespace, it counts this run's tasks only:
        # never the user's other processes, nor a concurrent run's (all runs are ``nobody`` under root).
        nproc = limits.processes + OVERHEAD_TASKS
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
            "--unshare-user",  # --disable-userns needs it said, not implied by --unshare-all's "try"
            "--disable-userns",
            "--die-with-parent",
            "--new-session",
            "--cap-drop",
            "ALL",
            "--clearenv",
            "--ro-bind",
            "/usr",
            "/usr",
            *self._usr_links(),
            *self._hide_usr_local(runtime_path),
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            # /dev is a tmpfs without a size: read-only, but for a capped /dev/shm (POSIX semaphores live
            # there, which Python's multiprocessing needs).
            "--size",
            str(files),
            "--tmpfs",
            "/dev/shm",
            "--remount-ro",
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
        if info_fd is not None:
            container += ["--info-fd", str(info_fd)]
        # bwrap's own root is an unsized tmpfs too; read-only once everything is mounted on it.
        container += ["--remount-ro", "/"]
        return [*container, _prlimit(), *rlimits, "--", *program]

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

    @staticmethod
    def _hide_usr_local(runtime_path: str) -> list[str]:
        """An empty read-only /usr/local (an administrator's own tools and their config, e.g. an npmrc with
        a token), or only its etc/ when the runtime itself lives there."""
        hidden = "/usr/local/etc" if runtime_path.startswith("/usr/local/") else "/usr/local"
        if not os.path.isdir(hidden):
            return []
        return ["--tmpfs", hidden, "--remount-ro", hidden]

    def _execute(self, command: list[str], request: RunRequest, rt: Runtime, fds: list[int]) -> RunResult:
        """Start ``command`` and gather what it does; ``fds``: the source memfd, the read and write ends of
        the times pipe and of bwrap's info pipe (each write end is closed, and taken off the list, once
        the container holds it)."""
        memfd, times_read, times_write, info_read, info_write = fds
        limits = request.limits
        cap = limits.output_kb * 1024
        started = time.perf_counter()
        deadline = started + limits.wall_seconds
        try:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={"PATH": SAFE_PATH},  # bwrap itself sees nothing of the studio's environment either
                pass_fds=(memfd, times_write, info_write),
                start_new_session=True,
                close_fds=True,
                **self._user_args(),
            )
        except OSError as exc:
            raise SandboxUnavailable(f"cannot run code: the sandbox does not start ({exc}). {NOT_RUN}") from None
        # The write ends, held now by the container alone: EOF once it is gone (or, for info, has spoken).
        for fd in (times_write, info_write):
            fds.remove(fd)
            os.close(fd)
        container = _Container(proc, info_read, deadline)
        writer = threading.Thread(target=_feed, args=(proc.stdin, request.stdin.encode("utf-8")), daemon=True)
        hit: str | None = None
        status: int | None = None
        out, err = bytearray(), bytearray()
        try:
            writer.start()
            hit = _collect(proc, out, err, cap, deadline)
            if hit:
                container.kill()
            else:
                status, killed = container.reap(deadline)
                if killed:  # it closed its stdout and stderr but went on running until the wall limit
                    hit = "wall"
        finally:
            # Whatever happened here (even an exception in the studio), the container does not outlive it.
            if status is None:
                container.kill()
                status, _ = container.reap(time.perf_counter())
            container.wait_gone()
            proc.stdout.close()
            proc.stderr.close()
            writer.join(timeout=1)
        wall = time.perf_counter() - started
        cpu = _cpu_from(_read_all(times_read)) if hit is None else None
        exit_code, sig = _decode(status)
        truncated = hit == "output"
        stderr = _text(err, truncated)
        if hit is None:
            hit = _limit_from(exit_code, sig, cpu, limits, stderr)
        return RunResult(
            language=request.language,
            runtime=rt.version,
            stdout=_text(out, truncated),
            stderr=stderr,
            exit_code=exit_code,
            signal=sig,
            wall_seconds=wall,
            cpu_seconds=cpu,
            limit=hit,
            truncated=truncated,
            limits=limits,
        )


def _collect(proc: subprocess.Popen, out: bytearray, err: bytearray, cap: int, deadline: float) -> str | None:
    """Read stdout and stderr into ``out`` and ``err`` until both close; "wall" past ``deadline``,
    "output" once together they pass ``cap`` bytes (what is kept stops exactly at the cap)."""
    kept = 0
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ, out)
        sel.register(proc.stderr, selectors.EVENT_READ, err)
        while sel.get_map():
            left = deadline - time.perf_counter()
            if left <= 0:
                return "wall"
            for key, _ in sel.select(timeout=min(left, 0.5)):
                chunk = os.read(key.fileobj.fileno(), 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                room = cap - kept
                key.data.extend(chunk[:room])
                kept += min(len(chunk), room)
                if len(chunk) > room:
                    return "output"
    return None


def _text(data: bytearray, truncated: bool) -> str:
    """The program's bytes as text; a character the output cap cut in two is dropped, not shown as U+FFFD."""
    if truncated:
        # A UTF-8 sequence is at most 4 bytes: only the last 3 can be the head of a cut character.
        for back in range(1, min(4, len(data)) + 1):
            byte = data[-back]
            if byte < 0x80:
                break
            if byte >= 0xC0:  # a lead byte: is its sequence complete?
                need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
                if back < need:
                    del data[-back:]
                break
    return data.decode("utf-8", errors="replace")


def _feed(pipe, data: bytes) -> None:
    """Write the program's stdin and close it, whether or not the program reads it all."""
    fd = pipe.fileno()
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except OSError:
        pass  # the program exited (or was killed) without reading all of it: EPIPE
    finally:
        with contextlib.suppress(OSError):
            pipe.close()


class _Container:
    """One started container: the outer bwrap (the studio's child, which it waits for) and a pidfd on the
    container's init, whose death empties the PID namespace: the kernel kills every process in it, and
    the init exits only once all of them are gone."""

    def __init__(self, proc: subprocess.Popen, info_read: int, deadline: float):
        self.proc = proc
        self.init = _open_init(info_read, deadline)

    def kill(self) -> None:
        """SIGKILL the container's init, so its whole PID namespace; without a pidfd on it, bwrap, whose
        death reaches the init through --die-with-parent."""
        with contextlib.suppress(ProcessLookupError):
            if self.init is not None:
                signal.pidfd_send_signal(self.init, signal.SIGKILL)
            else:
                os.killpg(self.proc.pid, signal.SIGKILL)

    def reap(self, deadline: float) -> tuple[int, bool]:
        """Wait for bwrap, killing the container past ``deadline`` (and bwrap itself, should it not follow
        within 5 s): its wait status, and whether it was killed."""
        killed_at = None
        while True:
            pid, status = os.waitpid(self.proc.pid, os.WNOHANG)
            if pid:
                self.proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen does not wait again
                return status, killed_at is not None
            now = time.perf_counter()
            if killed_at is None and now > deadline:
                self.kill()
                killed_at = now
            elif killed_at is not None and now > killed_at + 5:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
            time.sleep(0.002)

    def wait_gone(self) -> None:
        """Return once the container's init has exited, which the kernel lets happen only after every
        other process of its namespace is gone: nothing of the run is left when ``run`` returns."""
        if self.init is None:
            return
        try:
            ready, _, _ = select.select([self.init], [], [], 5)
            if not ready:
                self.kill()
                select.select([self.init], [], [], 5)
        finally:
            os.close(self.init)
            self.init = None


def _open_init(info_read: int, deadline: float) -> int | None:
    """A pidfd on the container's init, from the host PID bwrap writes to its info fd; None when bwrap
    said nothing (it failed to start) or the init is already gone."""
    data = b""
    while True:
        left = deadline + 5 - time.perf_counter()
        ready, _, _ = select.select([info_read], [], [], max(0.0, left))
        chunk = os.read(info_read, 4096) if ready else b""
        if not chunk:
            break
        data += chunk
    try:
        info = json.loads(data)
        pid = int(info["child-pid"])
        pidfd = os.pidfd_open(pid)
    except (ValueError, KeyError, TypeError, ProcessLookupError):
        return None
    try:
        # The PID is the init's only if its namespace is the one bwrap made, not that of a process that
        # took the number after the init was gone.
        if os.readlink(f"/proc/{pid}/ns/pid") == f"pid:[{info['pid-namespace']}]":
            return pidfd
    except OSError:
        pass
    os.close(pidfd)
    return None


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
