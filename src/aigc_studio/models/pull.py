"""Pull a catalog model from the Hugging Face Hub (or the mirror ``HF_ENDPOINT`` names) into a folder.

Layout: ``dest_dir/<entry id>/<repo path>``, the repo's own paths, so a diffusers folder loads as is.
Bookkeeping lives in ``dest_dir/<entry id>/.cache/aigc/`` (hidden paths are skipped by the model hash
and by diffusers): ``<path>.<oid>.part`` while a file downloads, ``<path>.json`` once it is verified.

Why not ``hf_hub_download(local_dir=...)``: in huggingface_hub 1.x/2.x it writes each file to a temporary
name that is deleted when the download fails, so an interrupted multi-GB pull starts over from byte 0.
Here the hub listing (``HfApi.repo_info`` / ``list_repo_tree`` / ``get_paths_info``) and the transfer
(``huggingface_hub.file_download.http_get``: Range requests, retries, ``tqdm_class``) are still
huggingface_hub's, but the partial file is ours and survives Ctrl-C, a crash or a dropped network, so
the next pull sends ``Range: bytes=<size of the partial>-`` and fetches only the rest. Every file is then
checked against the size and hash the hub lists (SHA-256 for LFS files, the git blob SHA-1 otherwise)
before it is moved into place.

Nothing is written outside ``dest_dir/<entry id>``: a listing that names a path with ``..``, an absolute
path, a backslash, a drive letter or ``:``, or an empty segment is refused before anything is fetched,
and every local path is resolved before it is written, so a symbolic link already inside the folder
cannot lead a write elsewhere. For a diffusers folder, ``model_index.json`` is fetched first and every
component it lists must be covered by the files the entry pulls (with weights in the entry's variant),
so a catalog entry that no longer matches its repo fails before the large downloads, not at load time.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi, constants, hf_hub_url
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.file_download import http_get
from huggingface_hub.hf_api import RepoFile
from huggingface_hub.utils import WeakFileLock, build_hf_headers

from .. import __version__
from ..errors import StudioError
from ..images.hashing import is_weight_file, weight_variant
from .catalog import CatalogEntry
from .registry import ModelInfo, Registry

try:  # huggingface_hub 2.x speaks httpx2; 1.x speaks httpx
    import httpx2 as _http
except ImportError:  # pragma: no cover - depends on the installed huggingface_hub
    import httpx as _http  # type: ignore[no-redef]

__all__ = ["ProgressCallback", "PullError", "TqdmProgress", "hub_endpoint", "pull"]

ProgressCallback = Callable[[int, int, str], None]
"""``progress(done_bytes, total_bytes, file)``: bytes on disk so far for the whole pull, its total, and
the repo path being fetched. ``done_bytes`` counts what earlier, interrupted pulls left too."""

_BOOKKEEPING = Path(".cache") / "aigc"
_HASH_BLOCK = 1024 * 1024


class PullError(StudioError):
    """A pull that could not finish; the message says why and what to do."""

    status = 424  # the request was fine; the hub (a dependency) failed it
    code = "pull_failed"


def hub_endpoint() -> str:
    """The hub to pull from: ``HF_ENDPOINT`` as set now, else huggingface_hub's default.

    huggingface_hub reads ``HF_ENDPOINT`` once, at import; reading it per pull lets a test or a
    long-running server switch mirrors without a restart.
    """
    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def pull(entry: CatalogEntry, dest_dir: Path, *, progress: ProgressCallback | None = None) -> Path:
    """Download ``entry`` into ``dest_dir/<entry.id>`` and return the local model path.

    The path is the file for a one-file entry (a GGUF) and the folder for a diffusers entry.
    Files already pulled and verified are not fetched again; a partial file from an interrupted
    pull is continued. Raises :class:`PullError` for an unknown repo, revision or file, a hash
    mismatch, a network failure, a full disk, a listed path that could land outside the folder (or
    a symbolic link there that leads outside), and a diffusers folder whose ``model_index.json``
    needs a component the entry does not pull.
    """
    endpoint = hub_endpoint()
    if constants.is_offline_mode():
        raise PullError(
            "HF_HUB_OFFLINE is set, so nothing can be downloaded; unset it (or set HF_HUB_OFFLINE=0) "
            "and run the pull again"
        )
    target = Path(dest_dir).expanduser() / entry.id
    api = HfApi(endpoint=endpoint, library_name="aigc-studio", library_version=__version__)
    with _hub_errors(entry, endpoint, target):
        # Pinning every download to the commit keeps a folder consistent if the repo changes mid-pull.
        commit = str(api.repo_info(entry.repo_id, revision=entry.revision).sha)
        remote, listing = _remote_files(api, entry, commit, endpoint)
        where = f"{entry.repo_id}@{entry.revision} on {endpoint}"
        for repo_file in listing:
            _check_repo_path(repo_file.path, where, target)
        for repo_file in remote:
            if repo_file.path.split("/")[0] == _BOOKKEEPING.parts[0]:
                raise PullError(
                    f"the catalog entry '{entry.id}' pulls {repo_file.path} of {where}, which would land in "
                    f"{_BOOKKEEPING.parts[0]}/ where the pull keeps its own records; nothing was downloaded"
                )
            for local in _local_paths(target, repo_file):
                _check_inside(target, local, repo_file.path)
        meter = _Meter(sum(f.size for f in remote), progress or (lambda done, total, name: None))
        # model_index.json first: it says which components the folder needs, before gigabytes are fetched.
        for repo_file in sorted(remote, key=lambda f: f.path != "model_index.json"):
            _fetch(entry, commit, repo_file, target, endpoint, meter)
            if repo_file.path == "model_index.json":
                _check_components(entry, target / "model_index.json", remote, listing, endpoint)
    if entry.is_folder:
        return target
    return target / entry.files[0]


# -- what to fetch ---------------------------------------------------------------------------------


def _remote_files(api: HfApi, entry: CatalogEntry, commit: str, endpoint: str) -> tuple[list[RepoFile], list[RepoFile]]:
    """The repo files the entry asks for (with the sizes and hashes the hub lists for them), and all
    the files the hub listed."""
    where = f"{entry.repo_id}@{entry.revision} on {endpoint}"
    if entry.files:
        listing = [
            info
            for info in api.get_paths_info(entry.repo_id, list(entry.files), revision=commit)
            if isinstance(info, RepoFile)
        ]
        found = {info.path: info for info in listing}
        missing = [name for name in entry.files if name not in found]
        if missing:
            raise PullError(
                f"{where} has no file {', '.join(missing)}; the catalog entry '{entry.id}' is out of date "
                f"(see {endpoint}/{entry.repo_id}/tree/{entry.revision} for the files it has)"
            )
        return [found[name] for name in entry.files], listing
    listing = [f for f in api.list_repo_tree(entry.repo_id, recursive=True, revision=commit) if isinstance(f, RepoFile)]
    chosen = [f for f in listing if any(fnmatch.fnmatchcase(f.path, p) for p in entry.allow_patterns)]
    # A pattern that matches nothing means the repo changed: pulling the rest would give a folder that
    # fails to load much later, far from the cause.
    unmatched = [p for p in entry.allow_patterns if not any(fnmatch.fnmatchcase(f.path, p) for f in listing)]
    if unmatched:
        raise PullError(
            f"{where} has nothing matching {', '.join(unmatched)}; the catalog entry '{entry.id}' is out of "
            f"date (see {endpoint}/{entry.repo_id}/tree/{entry.revision} for the files it has)"
        )
    return sorted(chosen, key=lambda f: f.path), listing


def _check_components(
    entry: CatalogEntry, index_file: Path, chosen: list[RepoFile], listing: list[RepoFile], endpoint: str
) -> None:
    """Refuse a pull whose files would not make the pipeline that ``model_index.json`` describes.

    Every component the index lists (``"unet": ["diffusers", "UNet2DConditionModel"]``; ``[null, null]``
    means none) needs files in the pull, and weights where the repo has weights for it, in the entry's
    variant. The safety checker is the exception: the studio never loads it.
    """
    where = f"{entry.repo_id}@{entry.revision} on {endpoint}"
    try:
        index = json.loads(index_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PullError(f"model_index.json of {where} is not valid JSON ({exc}); the repo is broken") from None
    if not isinstance(index, dict):
        raise PullError(f"model_index.json of {where} is not a JSON object; the repo is broken")
    pulled = [f.path for f in chosen]
    listed = [f.path for f in listing]
    problems = []
    for component, spec in index.items():
        if component.startswith("_") or component == "safety_checker" or not isinstance(spec, list):
            continue
        if not spec or spec[0] is None:
            continue
        mine = [p for p in pulled if p.startswith(f"{component}/")]
        has_weights = any(is_weight_file(p) for p in listed if p.startswith(f"{component}/"))
        weights = [p for p in mine if is_weight_file(p)]
        if not mine:
            problems.append(f"{component} (no file of it)")
        elif has_weights and not weights:
            problems.append(f"{component} (no weights)")
        elif has_weights and entry.variant and not any(weight_variant(p) == entry.variant for p in weights):
            problems.append(f"{component} (no {entry.variant} weights, only {', '.join(weights)})")
    if problems:
        raise PullError(
            f"model_index.json of {where} lists components that the catalog entry '{entry.id}' does not pull "
            f"in full: {'; '.join(problems)}. The pull stopped before the weights, since the folder would not "
            f"load as the catalog describes it; the catalog entry is out of date (see "
            f"{endpoint}/{entry.repo_id}/tree/{entry.revision})"
        )


# -- where files land -------------------------------------------------------------------------------


def _unsafe(path: str) -> str | None:
    """Why a hub-listed path could land outside the model folder, or None for a plain relative path."""
    if "\\" in path:
        return "a backslash, a path separator on Windows"
    if path.startswith("/"):
        return "an absolute path"
    if "\0" in path:
        return "a NUL byte"
    segments = path.split("/")
    if any(":" in segment for segment in segments):
        return "a ':' (a drive letter or a stream name on Windows)"
    if "" in segments:
        return "an empty segment"
    if ".." in segments or "." in segments:
        return "a '..' or '.' segment"
    return None


def _check_repo_path(path: str, where: str, target: Path) -> None:
    """Raise a PullError for a listed path that is not a plain relative path inside the model folder.

    A real hub repo (git) cannot hold such a path; a hub or mirror that lists one is broken or hostile,
    so nothing of its listing is fetched.
    """
    reason = _unsafe(path)
    if reason:
        raise PullError(
            f"{where} lists the file {path!r}, which has {reason}: it could be written outside {target}, "
            "so nothing was downloaded. A genuine Hugging Face repo cannot hold such a path; check the hub "
            "or mirror that HF_ENDPOINT names"
        )


def _local_paths(target: Path, repo_file: RepoFile) -> tuple[Path, ...]:
    """Every local path a repo file's pull writes: the file, its record, its partial file and its lock."""
    books = target / _BOOKKEEPING / repo_file.path
    return (
        target / repo_file.path,
        books.with_name(books.name + ".json"),
        # The oid is in the name so a partial of an older version of the file is never continued.
        books.with_name(f"{books.name}.{_expected_oid(repo_file)[:16]}.part"),
        books.with_name(books.name + ".lock"),
    )


def _check_inside(target: Path, local: Path, repo_path: str) -> None:
    """Refuse to write ``local`` when a symbolic link on its way leads outside ``target``.

    Links are resolved now, before the first write; a link made while the pull runs is not guarded
    against (that needs another process writing in the folder already).
    """
    root = target.resolve()
    resolved = local.resolve()
    if resolved == root or root in resolved.parents:
        return
    step, link = target, local
    for part in local.relative_to(target).parts:
        step = step / part
        if step.is_symlink() and not (step.resolve() == root or root in step.resolve().parents):
            link = step
            break
    raise PullError(
        f"{repo_path} would be written through the symbolic link {link} (to {link.resolve()}), which leads "
        f"outside {target}; nothing was written there. Remove the link and run the pull again"
    )


# -- one file --------------------------------------------------------------------------------------


def _expected_oid(repo_file: RepoFile) -> str:
    return repo_file.lfs.sha256 if repo_file.lfs is not None else repo_file.blob_id


def _fetch(entry: CatalogEntry, commit: str, repo_file: RepoFile, target: Path, endpoint: str, meter: _Meter) -> None:
    """Bring one repo file to ``target/<path>``, continuing a partial download if one is there."""
    path = repo_file.path
    oid = _expected_oid(repo_file)
    final, record, part, lock = local = _local_paths(target, repo_file)
    for each in local:  # again, right before writing: earlier files may have taken a while
        _check_inside(target, each, path)
    part.parent.mkdir(parents=True, exist_ok=True)
    # A second pull of the same model (another terminal, the web UI) waits here instead of writing
    # into the same partial file, and then finds the file done.
    with WeakFileLock(lock):
        if final.is_file() and final.stat().st_size == repo_file.size and _read_json(record).get("oid") == oid:
            meter.file_done(path, repo_file.size)
            return
        have = part.stat().st_size if part.exists() else 0
        if have > repo_file.size:  # cannot be a prefix of the file: start over
            part.unlink()
            have = 0
        url = hf_hub_url(entry.repo_id, path, revision=commit, endpoint=endpoint)
        headers = build_hf_headers(library_name="aigc-studio", library_version=__version__)
        with part.open("r+b" if have else "wb") as sink:
            sink.seek(have)
            http_get(
                url,
                sink,
                resume_size=have,
                headers=headers,
                expected_size=repo_file.size,
                displayed_filename=path,
                tqdm_class=meter.bar_class(path),  # type: ignore[arg-type]
            )
        _verify(part, repo_file, entry)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(part, final)
        record.write_text(
            json.dumps({"repo_id": entry.repo_id, "commit": commit, "path": path, "size": repo_file.size, "oid": oid}),
            encoding="utf-8",
        )
    meter.file_done(path, repo_file.size)


def _verify(part: Path, repo_file: RepoFile, entry: CatalogEntry) -> None:
    """Compare a finished download with the hub's size and hash; a bad file is deleted."""
    size = part.stat().st_size
    if repo_file.lfs is not None:
        digest, kind = hashlib.sha256(), "SHA-256"
    else:
        # Small files are stored in git: the hub lists their git blob id, sha1("blob <size>\0" + data).
        digest, kind = hashlib.sha1(f"blob {size}\0".encode()), "git SHA-1"
    with part.open("rb") as f:
        while block := f.read(_HASH_BLOCK):
            digest.update(block)
    expected = _expected_oid(repo_file)
    if size != repo_file.size or digest.hexdigest() != expected:
        part.unlink()
        raise PullError(
            f"{repo_file.path} from {entry.repo_id} arrived corrupted ({size} bytes, {kind} {digest.hexdigest()}; "
            f"the hub lists {repo_file.size} bytes, {expected}); it was deleted, run the pull again"
        )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


# -- progress --------------------------------------------------------------------------------------


class _Meter:
    """Adds up bytes over all files of a pull and reports them to one callback.

    huggingface_hub reports progress by calling a tqdm-like class (``tqdm_class``); ``bar_class``
    makes one per file that forwards every update here instead of drawing a bar.
    """

    def __init__(self, total: int, callback: ProgressCallback) -> None:
        self.total = total
        self.finished = 0  # bytes of files already complete
        self.callback = callback

    def file_done(self, path: str, size: int) -> None:
        self.finished += size
        self.callback(self.finished, self.total, path)

    def bar_class(self, path: str) -> type:
        meter = self

        class FileBar:
            """The slice of tqdm's API that ``http_get`` uses."""

            def __init__(self, *args: object, total: int | None = None, initial: int = 0, **kwargs: object) -> None:
                self.total = total
                self.n = initial  # a resumed download starts at the partial file's size
                meter.callback(meter.finished + self.n, meter.total, path)

            def update(self, n: int | float | None = 1) -> None:
                # Negative when the server ignored Range and the partial file was dropped.
                self.n += int(n or 0)
                meter.callback(meter.finished + self.n, meter.total, path)

            def __enter__(self) -> FileBar:
                return self

            def __exit__(self, *exc: object) -> None:
                return None

            def close(self) -> None:
                return None

            def set_postfix_str(self, *args: object, **kwargs: object) -> None:
                return None

        return FileBar


class TqdmProgress:
    """A progress callback that draws one terminal bar for the whole pull (for the CLI).

    ``with TqdmProgress(f"pull {entry.id}") as bar: pull(entry, dest, progress=bar)``
    """

    def __init__(self, desc: str, **tqdm_kwargs: Any) -> None:
        self.desc = desc
        self.tqdm_kwargs = tqdm_kwargs
        self.bar: Any = None

    def __call__(self, done: int, total: int, file: str) -> None:
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total, desc=self.desc, unit="B", unit_scale=True, unit_divisor=1024, **self.tqdm_kwargs
            )
        self.bar.set_postfix_str(file, refresh=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        """Finish the bar's line in the terminal."""
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> TqdmProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- errors ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def _hub_errors(entry: CatalogEntry, endpoint: str, target: Path) -> Iterator[None]:
    """Turn huggingface_hub / network / disk errors into a PullError that says what to do."""
    again = "run the same pull again: finished files are kept and a partial file continues where it stopped"
    try:
        yield
    except OfflineModeIsEnabled:
        raise PullError(
            "HF_HUB_OFFLINE is set, so nothing can be downloaded; unset it and run the pull again"
        ) from None
    except GatedRepoError:
        raise PullError(
            f"{entry.repo_id} on {endpoint} is gated: accept its license on the hub, then log in with "
            "`hf auth login` (or set HF_TOKEN) and run the pull again"
        ) from None
    except RepositoryNotFoundError:
        raise PullError(
            f"the repo {entry.repo_id} does not exist on {endpoint} (or it is private); the catalog entry "
            f"'{entry.id}' names a wrong repo, or HF_ENDPOINT points at a mirror that lacks it"
        ) from None
    except RevisionNotFoundError:
        raise PullError(
            f"the repo {entry.repo_id} on {endpoint} has no revision '{entry.revision}'; the catalog entry "
            f"'{entry.id}' is out of date"
        ) from None
    except RemoteEntryNotFoundError as exc:
        raise PullError(
            f"{endpoint} listed a file of {entry.repo_id} but then could not serve it ({exc.response.url}); "
            f"the repo may be changing right now: {again}"
        ) from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code
        raise PullError(
            f"the hub at {endpoint} answered HTTP {status} for {entry.repo_id}; wait a bit and {again}"
        ) from None
    except _http.TransportError as exc:
        raise PullError(
            f"could not reach the hub at {endpoint} ({type(exc).__name__}: {exc}); check the network "
            f"connection (or set HF_ENDPOINT to a reachable mirror), then {again}"
        ) from None
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise PullError(
                f"the disk holding {target} is full; free some space (see the size in the catalog) and {again}"
            ) from None
        # http_get's own size check, or a file we cannot write.
        raise PullError(f"pulling {entry.id} into {target} failed: {exc}; {again}") from None


def pull_and_register(
    entry: CatalogEntry, registry: Registry, dest_dir: Path, *, progress: ProgressCallback | None = None
) -> tuple[ModelInfo, bool]:
    """Pull a catalog model and add it to the registry with its catalog defaults.

    Returns (the model, whether it was newly added); pulling a model already added only completes or
    checks its files.
    """
    path = pull(entry, dest_dir, progress=progress)
    try:
        existing = registry.resolve(entry.id)
    except StudioError:
        existing = None
    if existing is not None and not existing.builtin:
        return existing, False
    info = registry.add(
        path,
        model_id=entry.id,
        aliases=list(entry.aliases),
        source=f"{entry.repo_id}@{entry.revision}",
        license=entry.license,
        description=entry.description,
        defaults=dict(entry.defaults),
        variant=entry.variant,
        languages=list(entry.languages) or None,
    )
    return info, True
