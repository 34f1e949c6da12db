"""The sandbox holds against programs written to break out of it, and the studio stays healthy.

Every run goes through the studio's one ``Sandbox`` (``studio.sandbox``) in this test process, which is
also the process of a live studio server on loopback (the studio's environment, port and database are
the ones the programs aim at). Each attack asserts what a user would read in the result (which limit,
how it ended, the exact error its code printed) and then that ``GET /health`` still answers 200 and a
normal run still works. Limits are small (wall 2 s, CPU 1 s) so the whole file stays fast.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from aigc_studio import sandbox as sandbox_module
from aigc_studio.api.app import create_app
from aigc_studio.contracts import RunLimits, RunRequest
from aigc_studio.errors import InvalidRequest, SandboxUnavailable
from aigc_studio.sandbox import Sandbox

from . import postgres_server
from .conftest import LiveServer, make_studio

FAKE_KEY = "sk-fake-" + secrets.token_hex(16)
QUICK = {"wall_seconds": 2, "cpu_seconds": 1}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A live studio (no model loaded) whose process environment holds a fake OPENAI_API_KEY."""
    home = tmp_path_factory.mktemp("sandbox-home")
    old_home, old_key = os.environ.get("AIGC_HOME"), os.environ.get("OPENAI_API_KEY")
    os.environ["OPENAI_API_KEY"] = FAKE_KEY
    studio = make_studio(home)
    with LiveServer(create_app(studio, load_default=False)) as live:
        live.studio = studio
        live.port = int(live.url.rsplit(":", 1)[1])
        yield live
    studio.close()
    for key, value in (("AIGC_HOME", old_home), ("OPENAI_API_KEY", old_key)):
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def run(server, code: str, language: str = "python", **limits):
    """Run ``code`` through the live studio's sandbox with small limits (overridable)."""
    request = RunRequest(language=language, code=code, limits=RunLimits(**{**QUICK, **limits}))
    return server.studio.sandbox.run(request)


def still_healthy(server) -> None:
    """The studio answers and runs a normal program after whatever ran before."""
    health = httpx.get(server.url + "/health", timeout=10)
    assert health.status_code == 200, health.text
    assert health.json()["status"] == "ok"
    result = run(server, "print(sum(range(10)))")
    assert (result.stdout, result.exit_code, result.limit) == ("45\n", 0, None)


def host_processes_with(marker: str) -> list[int]:
    """PIDs on the host whose command line holds ``marker``."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        found.append(int(entry.name))
            except OSError:
                continue
    return found


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


# -- runaway programs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "code"),
    [("python", "while True:\n    pass\n"), ("javascript", "for (;;) {}\n")],
)
def test_infinite_loop_is_stopped_at_the_cpu_limit(server, language, code):
    result = run(server, code, language, wall_seconds=10)
    assert (result.limit, result.signal, result.exit_code) == ("cpu", "SIGXCPU", None)
    assert result.stderr == "CPU time limit exceeded\n"
    assert 0.7 <= result.cpu_seconds < 1.6  # the shell's ``times`` counts in clock ticks, a little low
    still_healthy(server)


def test_loop_that_ignores_sigxcpu_is_killed_a_second_later(server):
    code = "import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True:\n    pass\n"
    result = run(server, code, wall_seconds=20)
    assert (result.limit, result.signal, result.stderr) == ("cpu", "SIGKILL", "Killed\n")
    # past the 1 s soft limit, killed at the 2 s hard one (``times`` counts in clock ticks, a little low)
    assert 1.0 < result.cpu_seconds < 2.6


@pytest.mark.parametrize(
    ("language", "code"),
    [
        ("python", "import time\nwhile True:\n    time.sleep(1)\n"),
        ("javascript", "setInterval(() => {}, 1000);\n"),
    ],
)
def test_sleeping_forever_is_stopped_at_the_wall_limit(server, language, code):
    result = run(server, code, language, wall_seconds=1)
    assert (result.limit, result.signal, result.exit_code, result.cpu_seconds) == ("wall", "SIGKILL", None, None)
    assert 1.0 <= result.wall_seconds < 2.5  # the kill, and waiting for the namespace to empty, on a busy machine
    still_healthy(server)


def test_closing_stdout_and_stderr_does_not_escape_the_wall_limit(server):
    code = "import os, time\nos.close(1)\nos.close(2)\ntime.sleep(60)\n"
    result = run(server, code, wall_seconds=1)
    assert (result.limit, result.signal) == ("wall", "SIGKILL")
    assert 1.0 <= result.wall_seconds < 2.5


def test_fork_bomb_hits_the_process_limit(server):
    result = run(server, "import os\nwhile True:\n    os.fork()\n", processes=8)
    assert (result.limit, result.exit_code) == ("processes", 1)
    assert last_line(result.stderr) == "BlockingIOError: [Errno 11] Resource temporarily unavailable"
    still_healthy(server)


def test_fork_bomb_that_never_gives_up_dies_at_the_wall_limit_with_all_its_children(server):
    marker = "bomb-" + secrets.token_hex(8)
    # The marker is an argument of the interpreter, so every forked copy carries it in the host's /proc.
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    request = RunRequest(language="python", code=code, args=[marker], limits=RunLimits(processes=8, wall_seconds=1))
    result = server.studio.sandbox.run(request)
    assert (result.limit, result.signal) == ("wall", "SIGKILL")
    assert host_processes_with(marker) == []
    still_healthy(server)


def test_process_limit_is_exactly_what_the_run_asked_for(server):
    # The program itself counts: with processes=6 it can add 5 more, whatever else runs on the host.
    code = (
        "import os, time\nn = 0\nwhile True:\n    try:\n        pid = os.fork()\n    except OSError as exc:\n"
        "        print(n, exc.strerror)\n        break\n    if pid == 0:\n        time.sleep(2)\n        os._exit(0)\n"
        "    n += 1\n"
    )
    result = run(server, code, processes=6)
    assert result.stdout == "5 Resource temporarily unavailable\n"
    assert result.ok


@pytest.mark.parametrize(
    ("language", "code", "error"),
    [
        ("python", "data = bytearray(10 * 1024**3)\n", "MemoryError"),
        (
            "javascript",
            "const parts = [];\nfor (let i = 0; i < 10; i++) parts.push(new ArrayBuffer(1024 ** 3));\n",
            "RangeError: Array buffer allocation failed",
        ),
    ],
)
def test_allocating_10_gb_hits_the_memory_limit(server, language, code, error):
    result = run(server, code, language, memory_mb=256)
    assert (result.limit, result.exit_code) == ("memory", 1)
    assert error in result.stderr.splitlines()
    still_healthy(server)


def test_growing_the_js_heap_past_the_limit_is_reported_as_memory(server):
    code = "const a = [];\nwhile (true) a.push(new Array(1e5).fill(1.5));\n"
    result = run(server, code, "javascript", memory_mb=64)
    assert (result.limit, result.signal) == ("memory", "SIGABRT")
    assert "Allocation failed - JavaScript heap out of memory" in result.stderr


@pytest.mark.parametrize(
    ("language", "code"),
    [
        ("python", "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(chunk)\n"),
        (
            "javascript",
            "const chunk = 'x'.repeat(1 << 20);\nfor (let i = 0; i < 1024; i++) process.stdout.write(chunk);\n",
        ),
    ],
)
def test_printing_1_gb_is_cut_at_the_output_limit_and_stopped_fast(server, language, code):
    result = run(server, code, language, output_kb=64, wall_seconds=10)
    assert (result.limit, result.truncated, result.signal) == ("output", True, "SIGKILL")
    assert result.stdout == "x" * 65536
    assert result.wall_seconds < 2  # killed at the cap, not after the whole gigabyte
    still_healthy(server)


def test_output_cut_inside_a_character_drops_the_half_character(server):
    result = run(server, "print('é' * 1000)\n", output_kb=1)  # 2 bytes each: the cap falls on a boundary
    assert result.stdout == "é" * 512
    result = run(server, "print('x' + '你' * 1000)\n", output_kb=1)  # 3 bytes each: it does not
    assert result.stdout == "x" + "你" * 341
    assert result.truncated


# -- the host's files ------------------------------------------------------------------------------------

READ = """import sys
for path in sys.argv[1:]:
    try:
        with open(path, "rb") as f:
            print(path, "READ", len(f.read()))
    except OSError as exc:
        print(path, type(exc).__name__, exc.strerror)
"""


def test_host_files_do_not_exist_inside(server, tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("-----BEGIN OPENSSH PRIVATE KEY----- fake\n")
    monkeypatch.setenv("HOME", str(home))
    db = server.studio.config.db_path
    # With AIGC_TEST_POSTGRES=1 no studio.db is made: the path then stands for any host file.
    assert (db.is_file() or postgres_server.SELECTED) and Path("/etc/passwd").is_file()
    paths = ["/etc/passwd", str(db), str(home / ".ssh" / "id_ed25519"), "~/.ssh/id_ed25519", "/root/.ssh"]
    code = READ.replace("sys.argv[1:]", "[__import__('os').path.expanduser(p) for p in sys.argv[1:]]")
    request = RunRequest(language="python", code=code, args=paths, limits=RunLimits(**QUICK))
    result = server.studio.sandbox.run(request)
    assert result.stdout.splitlines() == [
        "/etc/passwd FileNotFoundError No such file or directory",
        f"{db} FileNotFoundError No such file or directory",
        f"{home}/.ssh/id_ed25519 FileNotFoundError No such file or directory",
        "/tmp/.ssh/id_ed25519 FileNotFoundError No such file or directory",  # HOME inside is the temp dir
        "/root/.ssh FileNotFoundError No such file or directory",
    ]
    still_healthy(server)


def test_symlinks_in_the_temp_dir_lead_nowhere_on_the_host(server):
    db = server.studio.config.db_path
    code = (
        "import os\n"
        f"os.symlink('/etc/passwd', '/tmp/passwd')\nos.symlink({str(db)!r}, '/tmp/db')\n"
        "os.symlink('/proc/1/root/etc/shadow', '/tmp/shadow')\n" + READ
    )
    request = RunRequest(
        language="python", code=code, args=["/tmp/passwd", "/tmp/db", "/tmp/shadow"], limits=RunLimits(**QUICK)
    )
    result = server.studio.sandbox.run(request)
    assert result.stdout.splitlines() == [
        "/tmp/passwd FileNotFoundError No such file or directory",
        "/tmp/db FileNotFoundError No such file or directory",
        "/tmp/shadow FileNotFoundError No such file or directory",
    ]


def test_writing_outside_the_temp_dir_fails_and_leaves_nothing_on_the_host(server, tmp_path):
    host_target = tmp_path / "escaped.txt"
    targets = ["/usr/x", "/etc/x", "/x", "/dev/x", "/proc/x", str(host_target), "/tmp/fine.txt", "/dev/shm/fine"]
    code = """import sys
for path in sys.argv[1:]:
    try:
        with open(path, "w") as f:
            f.write("pwned")
        print(path, "WROTE")
    except OSError as exc:
        print(path, exc.strerror)
"""
    request = RunRequest(language="python", code=code, args=targets, limits=RunLimits(**QUICK))
    result = server.studio.sandbox.run(request)
    assert result.stdout.splitlines() == [
        "/usr/x Read-only file system",
        "/etc/x No such file or directory",
        "/x Read-only file system",
        "/dev/x Read-only file system",
        "/proc/x No such file or directory",
        f"{host_target} No such file or directory",
        "/tmp/fine.txt WROTE",
        "/dev/shm/fine WROTE",
    ]
    assert not host_target.exists()
    assert not Path("/x").exists() and not Path("/usr/x").exists()


def test_a_runs_temp_dir_is_gone_after_it_and_never_on_the_host(server):
    name = "left-" + secrets.token_hex(8)
    first = run(server, f"open('/tmp/{name}', 'w').write('x')\nimport os\nprint(sorted(os.listdir('/tmp')))\n")
    assert first.stdout == f"{sorted(['main.py', name])}\n"
    assert not Path("/tmp", name).exists()
    second = run(server, "import os\nprint(sorted(os.listdir('/tmp')), os.listdir('/dev/shm'))\n")
    assert second.stdout == "['main.py'] []\n"


def test_what_the_program_sees_of_the_machine(server):
    code = """import ctypes, os
print(sorted(p for p in os.listdir('/proc') if p.isdigit()))
print(sorted(os.listdir('/')))
print(os.listdir('/usr/local'))
print(os.getuid(), os.uname().nodename)
status = dict(line.split(':', 1) for line in open('/proc/self/status'))
print('NoNewPrivs', status['NoNewPrivs'].strip(), 'CapEff', status['CapEff'].strip())
libc = ctypes.CDLL(None, use_errno=True)
print('unshare(CLONE_NEWUSER)', libc.unshare(0x10000000), os.strerror(ctypes.get_errno()))
"""
    result = run(server, code)
    uid = 65534 if os.geteuid() == 0 else os.geteuid()
    lines = result.stdout.splitlines()
    # bwrap's init, the timing shell, the program: nothing of the host's processes
    assert lines[0] == "['1', '2', '3']"
    assert set(eval(lines[1])) <= {"bin", "dev", "lib", "lib32", "lib64", "libx32", "proc", "sbin", "tmp", "usr"}
    assert lines[2:] == [
        "[]",
        f"{uid} sandbox",
        "NoNewPrivs 1 CapEff 0000000000000000",
        "unshare(CLONE_NEWUSER) -1 No space left on device",  # --disable-userns: no nested namespaces
    ]


# -- the network -----------------------------------------------------------------------------------------


def test_no_network_not_even_the_studio_on_loopback(server):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.2", 0))
    listener.listen(8)
    listener.settimeout(2)
    port = listener.getsockname()[1]
    try:
        # From the host, the listener is reachable: the refusal below is the sandbox's doing.
        with socket.create_connection(("127.0.0.2", port), timeout=2):
            conn, _ = listener.accept()
            conn.close()
        assert httpx.get(server.url + "/health", timeout=10).status_code == 200
        code = """import socket, sys
for host, port in ((sys.argv[1], int(sys.argv[2])), (sys.argv[3], int(sys.argv[4]))):
    try:
        socket.create_connection((host, port), timeout=1).close()
        print(host, port, "CONNECTED")
    except OSError as exc:
        print(host, port, type(exc).__name__)
"""
        args = ["127.0.0.1", str(server.port), "127.0.0.2", str(port)]
        request = RunRequest(language="python", code=code, args=args, limits=RunLimits(**QUICK))
        result = server.studio.sandbox.run(request)
        assert result.stdout.splitlines() == [
            f"127.0.0.1 {server.port} ConnectionRefusedError",
            f"127.0.0.2 {port} ConnectionRefusedError",
        ]
        js = f"""const net = require('net');
const s = net.connect({server.port}, '127.0.0.1');
s.on('connect', () => console.log('CONNECTED'));
s.on('error', (e) => console.log(e.code));
"""
        assert run(server, js, "javascript").stdout == "ECONNREFUSED\n"
        listener.settimeout(0)
        with pytest.raises(BlockingIOError):
            listener.accept()  # the listener saw no connection from the run
    finally:
        listener.close()
    still_healthy(server)


# -- the studio's environment ----------------------------------------------------------------------------


def test_secrets_in_the_studios_environment_are_not_visible(server):
    assert os.environ["OPENAI_API_KEY"] == FAKE_KEY
    code = """import os
print(sorted(os.environ))
found = []
for pid in os.listdir('/proc'):
    if pid.isdigit() or pid == 'self':
        try:
            data = open(f'/proc/{pid}/environ', 'rb').read()
        except OSError:
            continue
        found.append((pid, b'OPENAI_API_KEY' in data or b'AIGC_HOME' in data))
print(found)
"""
    result = run(server, code)
    lines = result.stdout.splitlines()
    assert lines[0] == "['HOME', 'LANG', 'PATH', 'PWD', 'PYTHONIOENCODING']"
    assert eval(lines[1]) == [(pid, False) for pid, _ in eval(lines[1])] and len(eval(lines[1])) >= 3
    assert FAKE_KEY not in result.stdout + result.stderr
    js = run(server, "console.log(Object.keys(process.env).sort().join(','), process.env.OPENAI_API_KEY)", "js")
    assert js.stdout == "HOME,LANG,PATH,PWD,PYTHONIOENCODING undefined\n"


# -- nothing outlives a run ------------------------------------------------------------------------------


def test_a_background_process_does_not_outlive_the_run(server):
    marker = "outlive-" + secrets.token_hex(8)
    code = f"""import subprocess, time
subprocess.Popen(['/usr/bin/python3', '-c', 'import time; time.sleep(60)', {marker!r}],
                 start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print('started', flush=True)
time.sleep(0.5)
"""
    seen = []

    def watch():
        deadline = time.time() + 2
        while time.time() < deadline and not seen:
            seen.extend(host_processes_with(marker))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    result = run(server, code)
    watcher.join()
    assert (result.stdout, result.exit_code) == ("started\n", 0)
    assert seen, "the background process should be visible from the host while the run lasts"
    assert host_processes_with(marker) == []
    still_healthy(server)


def test_fifty_runs_leave_no_fd_zombie_process_or_thread(server):
    def children() -> list[int]:
        mine = str(os.getpid())
        pids = []
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    stat = Path(f"/proc/{entry.name}/stat").read_text()
                except OSError:
                    continue
                if stat.rsplit(")", 1)[1].split()[1] == mine:
                    pids.append(int(entry.name))
        return pids

    run(server, "print(1)")  # warm: the runtime version and the one-time check are cached
    fds, threads, kids = sorted(os.listdir("/proc/self/fd")), threading.active_count(), children()
    for i in range(50):
        code = f"import sys\nprint(sys.stdin.read().strip(), {i})\n" if i % 2 else "print(input())"
        request = RunRequest(language="python", code=code, stdin=f"line {i}\n", limits=RunLimits(**QUICK))
        result = server.studio.sandbox.run(request)
        assert result.stdout == (f"line {i} {i}\n" if i % 2 else f"line {i}\n")
        assert result.ok
    assert sorted(os.listdir("/proc/self/fd")) == fds
    assert threading.active_count() == threads
    assert children() == kids


def test_concurrent_runs_are_isolated_and_a_fork_bomb_does_not_starve_the_others(server):
    bomb = "import os, time\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        time.sleep(0.01)\n"
    spawner = (
        "import os, time\nkids = []\nfor _ in range(7):\n    pid = os.fork()\n"
        "    if pid == 0:\n        time.sleep(0.3)\n        os._exit(0)\n    kids.append(pid)\n"
        "for pid in kids:\n    os.waitpid(pid, 0)\nprint(len(kids))\n"
    )
    writer = "open('/tmp/secret', 'w').write('mine')\nimport time\ntime.sleep(0.5)\nprint(open('/tmp/secret').read())\n"
    reader = "import os, time\ntime.sleep(0.2)\nprint(os.path.exists('/tmp/secret'))\n"
    jobs = [(bomb, {"processes": 32, "wall_seconds": 1.5}), (spawner, {"processes": 8}), (writer, {}), (reader, {})]
    results: dict[int, object] = {}

    def go(i, code, limits):
        results[i] = run(server, code, **limits)

    threads = [threading.Thread(target=go, args=(i, code, limits)) for i, (code, limits) in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results[0].limit == "wall"
    assert (results[1].stdout, results[1].ok) == ("7\n", True)  # its own 8 processes, whatever the bomb holds
    assert results[2].stdout == "mine\n"
    assert results[3].stdout == "False\n"
    still_healthy(server)


# -- temp space ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("folder", ["/tmp", "/dev/shm"])
def test_filling_the_temp_space_hits_the_files_limit(server, folder):
    code = f"i = 0\nwhile True:\n    open(f'{folder}/f{{i}}', 'wb').write(b'x' * (1 << 20))\n    i += 1\n"
    result = run(server, code, files_mb=8)
    assert (result.limit, result.exit_code) == ("files", 1)
    assert last_line(result.stderr) == "OSError: [Errno 28] No space left on device"
    still_healthy(server)


def test_one_file_past_the_limit_is_refused(server):
    code = "import os\nf = open('/tmp/big', 'wb')\nf.write(b'x' * (5 << 20))\nf.flush()\n"
    result = run(server, code, files_mb=4)
    assert result.limit == "files"
    assert last_line(result.stderr) in {
        "OSError: [Errno 27] File too large",
        "OSError: [Errno 28] No space left on device",
    }


# -- what a program is given -----------------------------------------------------------------------------


def test_stdin_and_arguments_reach_the_program(server):
    code = "import sys\nprint(sys.argv[1:], sys.stdin.read().split())\n"
    request = RunRequest(language="py", code=code, args=["a b", "ü"], stdin="5 2 8\n1 9 3\n", limits=QUICK)
    result = server.studio.sandbox.run(request)
    assert result.stdout == "['a b', 'ü'] ['5', '2', '8', '1', '9', '3']\n"
    js = (
        "let s = '';\nprocess.stdin.on('data', (d) => (s += d));\n"
        "process.stdin.on('end', () => console.log(process.argv.slice(2), s.trim()));\n"
    )
    request = RunRequest(language="node", code=js, args=["x"], stdin="hello\n", limits=QUICK)
    result = server.studio.sandbox.run(request)
    assert result.stdout == "[ 'x' ] hello\n"
    assert (result.language, result.runtime.startswith("Node.js v")) == ("javascript", True)


def test_unicode_output_comes_back_as_written(server):
    text = "你好，世界 — привет — 🎉"
    result = run(server, f"import sys\nprint({text!r})\nprint({text!r}, file=sys.stderr)\n")
    assert (result.stdout, result.stderr) == (text + "\n", text + "\n")
    result = run(server, f"console.log({text!r}); console.error({text!r});", "javascript")
    assert (result.stdout, result.stderr) == (text + "\n", text + "\n")
    result = run(server, "import sys\nsys.stdout.buffer.write(b'ok \\xff\\n')\n")
    assert result.stdout == "ok \ufffd\n"  # bytes that are not UTF-8 are shown, not fatal


def test_a_program_that_fails_reports_its_exit_code_and_cpu_time(server):
    result = run(server, "import sys\nprint('bye')\nsys.exit(3)\n")
    assert (result.stdout, result.exit_code, result.signal, result.limit, result.ok) == ("bye\n", 3, None, None, False)
    assert 0 <= result.cpu_seconds < 1
    result = run(server, "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n")
    assert (result.exit_code, result.signal, result.limit) == (None, "SIGTERM", None)


# -- bad requests ----------------------------------------------------------------------------------------


def test_a_limit_above_the_maximum_is_refused_naming_it(server):
    with pytest.raises(InvalidRequest) as caught:
        run(server, "print(1)", wall_seconds=61)
    assert caught.value.message == "limits.wall_seconds must be at most 60 (setting run_max_wall_seconds), got 61"
    assert caught.value.param == "limits.wall_seconds"
    small = Sandbox(RunLimits(wall_seconds=5, cpu_seconds=5, memory_mb=128, processes=4, output_kb=64, files_mb=8))
    with pytest.raises(InvalidRequest) as caught:
        small.run(
            RunRequest(
                language="python",
                code="print(1)",
                limits=RunLimits(wall_seconds=5, cpu_seconds=5, memory_mb=128, processes=5),
            )
        )
    assert caught.value.message == "limits.processes must be at most 4 (setting run_max_processes), got 5"


def test_too_few_processes_for_node_is_refused_before_it_starts(server):
    with pytest.raises(InvalidRequest) as caught:
        run(server, "console.log(1)", "javascript", processes=7)
    assert caught.value.message == (
        "limits.processes must be at least 8 for javascript (node itself runs 7 threads, and each counts), got 7"
    )
    assert caught.value.param == "limits.processes"
    result = run(server, "console.log(1)", "javascript", processes=8)
    assert (result.stdout, result.ok) == ("1\n", True)
    # A JS program that starts threads past its limit is told so (node aborts when it cannot make one).
    code = (
        "const { Worker } = require('worker_threads');\n"
        "for (let i = 0; i < 20; i++) new Worker('setTimeout(() => {}, 2000)', { eval: true });\n"
    )
    result = run(server, code, "javascript", processes=10)
    assert (result.limit, result.exit_code) == ("processes", 1)
    assert "Error: EAGAIN" in result.stderr.splitlines()


def test_bad_input_is_refused_with_the_contracts_message():
    with pytest.raises(ValidationError) as caught:
        RunRequest(language="cobol", code="DISPLAY 'HI'.")
    assert "language must be one of python, py, python3, javascript, js, node, nodejs, got 'cobol'" in str(caught.value)
    with pytest.raises(ValidationError) as caught:
        RunRequest(language="python", code="  \n")
    assert "must not be empty: give the program to run" in str(caught.value)
    with pytest.raises(ValidationError) as caught:
        RunRequest(language="python", code="print(1)", limits={"wall_seconds": 0})
    assert "greater than 0" in str(caught.value)


# -- where the sandbox cannot start ----------------------------------------------------------------------


def escape_code(marker: Path) -> str:
    """A program that, if it ever ran outside the sandbox, would leave ``marker`` on the host."""
    return f"open({str(marker)!r}, 'w').write('ran')\nprint('ran')\n"


@pytest.mark.parametrize("checked", [False, True], ids=["fresh sandbox", "the studio's, already checked"])
def test_without_bubblewrap_nothing_runs(server, tmp_path, monkeypatch, checked):
    sandbox = server.studio.sandbox if checked else Sandbox()
    if checked:
        sandbox.check()  # bwrap was there when the studio checked; it is gone by the time of this run
    monkeypatch.setattr(sandbox_module, "SAFE_PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    marker = tmp_path / "ran.txt"
    with pytest.raises(SandboxUnavailable) as caught:
        sandbox.run(RunRequest(language="python", code=escape_code(marker)))
    assert caught.value.message == (
        "cannot run code: bubblewrap (bwrap) is not installed; install it (Debian/Ubuntu: apt-get install"
        " bubblewrap). The code was not run: the studio never runs code outside its sandbox."
    )
    assert caught.value.status == 503
    assert not marker.exists()


def test_when_bubblewrap_cannot_make_its_container_nothing_runs(tmp_path, monkeypatch):
    # What a machine without unprivileged user namespaces looks like: bwrap starts, then fails.
    folder = Path(tempfile.mkdtemp(dir="/tmp"))  # the container's user (nobody, under root) must reach it
    folder.chmod(0o755)
    fake = folder / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sandbox_module, "SAFE_PATH", str(fake.parent))
    marker = tmp_path / "ran.txt"
    with pytest.raises(SandboxUnavailable) as caught:
        Sandbox().run(RunRequest(language="python", code=escape_code(marker)))
    assert caught.value.message.startswith(
        "cannot run code: bubblewrap cannot create its container here (bwrap: No permissions to create new"
        " namespace); it needs bubblewrap 0.8 or newer and unprivileged user namespaces"
    )
    assert caught.value.message.endswith("The code was not run: the studio never runs code outside its sandbox.")
    assert not marker.exists()
    shutil.rmtree(folder)


def test_without_prlimit_nothing_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(sandbox_module, "PRLIMIT", str(tmp_path / "prlimit"))
    marker = tmp_path / "ran.txt"
    with pytest.raises(SandboxUnavailable) as caught:
        Sandbox().run(RunRequest(language="python", code=escape_code(marker)))
    assert caught.value.message == (
        f"cannot run code: {tmp_path / 'prlimit'} is missing, which sets the run's limits; install Debian's"
        " util-linux package. The code was not run: the studio never runs code outside its sandbox."
    )
    assert not marker.exists()


def test_an_exception_in_the_studio_mid_run_still_kills_the_container(server):
    # An exception inside the studio while a run is going (here: KeyboardInterrupt from the selector)
    # still kills the container; nothing is left running.
    marker = "interrupted-" + secrets.token_hex(8)
    real_select = sandbox_module.selectors.DefaultSelector

    class Interrupting(real_select):
        calls = 0

        def select(self, timeout=None):
            Interrupting.calls += 1
            if Interrupting.calls > 3:
                raise KeyboardInterrupt
            return super().select(timeout)

    code = "import time\nprint('up', flush=True)\ntime.sleep(30)\n"
    request = RunRequest(language="python", code=code, args=[marker], limits=RunLimits(wall_seconds=30))
    sandbox_module.selectors.DefaultSelector = Interrupting
    try:
        with pytest.raises(KeyboardInterrupt):
            server.studio.sandbox.run(request)
    finally:
        sandbox_module.selectors.DefaultSelector = real_select
    assert host_processes_with(marker) == []
    still_healthy(server)


def test_signals_are_named():
    assert sandbox_module._decode(0x8B00) == (None, "SIGSEGV")  # exit status 139 = 128 + 11
    assert sandbox_module._decode(signal.SIGKILL) == (None, "SIGKILL")
    assert sandbox_module._decode(3 << 8) == (3, None)


NON_ROOT_STUDIO = """
import threading, time
from aigc_studio.contracts import RunLimits, RunRequest
from aigc_studio.sandbox import Sandbox

# A busy studio: its user already has many tasks (threads count for RLIMIT_NPROC as processes do).
stop = threading.Event()
threads = [threading.Thread(target=stop.wait) for _ in range(40)]
for thread in threads:
    thread.start()
code = (
    "import os, time\\nn = 0\\nwhile True:\\n    try:\\n        pid = os.fork()\\n    except OSError as exc:\\n"
    "        print(n, exc.strerror)\\n        break\\n    if pid == 0:\\n        time.sleep(1)\\n        os._exit(0)\\n"
    "    n += 1\\n"
)
result = Sandbox().run(RunRequest(language="python", code=code, limits=RunLimits(processes=6, wall_seconds=5)))
print(repr(result.stdout), result.exit_code, result.limit)
stop.set()
"""


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to start a non-root studio")
def test_a_studio_running_as_an_ordinary_user_gets_the_same_exact_process_limit(tmp_path):
    # Under root the container runs as nobody; here the studio itself is an ordinary user with 40 threads
    # of its own, which must not eat into the run's 6 processes.
    import site
    import subprocess
    import sys

    src = Path(sandbox_module.__file__).resolve().parents[1]
    env = {"HOME": "/tmp", "PATH": "/usr/bin:/bin", "PYTHONPATH": f"{src}:{site.getsitepackages()[0]}"}
    command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", NON_ROOT_STUDIO]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, cwd="/tmp")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "'5 Resource temporarily unavailable\\n' 0 None\n"
