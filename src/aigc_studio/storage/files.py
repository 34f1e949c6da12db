"""Files a user sees, written whole or not at all.

Every file is written under a temporary name in its own folder, flushed to disk (fsync), then renamed
over its real name (``os.replace``, atomic on one file system), and the folder is synced so the rename
itself survives. A reader (the gallery, a browser, a backup) never sees half a file under its real
name, and a process killed mid-write (SIGKILL, a power cut) leaves the old file or the new one.

The temporary name is hidden and says which process wrote it (``.<name>.<pid>.aigc-tmp``), so
``clean_stale`` removes, at start, only what a process that no longer runs left behind — never the
file a CLI beside the server is writing at that moment.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

TMP_SUFFIX = ".aigc-tmp"
_TMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)" + re.escape(TMP_SUFFIX) + "$")


def temp_path(path: Path) -> Path:
    """The temporary name this process writes ``path`` under, in the same folder."""
    return path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_temp(path: Path, data: bytes | str, *, mode: int | None = None) -> Path:
    """Write ``data`` whole to ``path``'s temporary name and fsync it; ``commit_temp`` puts it in place.
    Two steps so a caller can record the file in the database in between (see ImageService)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    # Created with its final mode: a key file is never readable by others, not even for a moment.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666 if mode is None else mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def commit_temp(tmp: Path, path: Path) -> None:
    """Rename a file written by ``write_temp`` over ``path`` and sync the folder."""
    os.replace(tmp, path)
    _sync_folder(path.parent)


def write_atomic(path: Path, data: bytes | str, *, mode: int | None = None) -> Path:
    """Write ``data`` (str as UTF-8) to ``path`` so that ``path`` holds the old content or the new, never
    a part; returns ``path``."""
    commit_temp(write_temp(path, data, mode=mode), path)
    return path


@contextlib.contextmanager
def atomic_target(path: Path) -> Iterator[Path]:
    """For writers that take a file name (``Image.save``, ``Document.save``): yields the temporary
    name to write; when the block ends it is synced and renamed over ``path`` (removed on an error)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        commit_temp(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def clean_stale(root: Path, finish: Callable[[Path], bool] | None = None) -> tuple[list[Path], list[Path]]:
    """Remove the temporary files under ``root`` whose writer no longer runs; returns (removed,
    finished). ``finish(final_path)`` True means the file was complete and is expected under its real
    name (a record that names it was committed before the kill): it is renamed into place instead."""
    removed: list[Path] = []
    finished: list[Path] = []
    if not root.is_dir():
        return removed, finished
    for folder, _, names in os.walk(root):
        for name in names:
            match = _TMP_NAME.match(name)
            if match is None or _alive(int(match["pid"])):
                continue
            tmp = Path(folder) / name
            final = tmp.with_name(match["name"])
            if finish is not None and not final.exists() and finish(final):
                commit_temp(tmp, final)
                finished.append(final)
            else:
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
    return removed, finished
