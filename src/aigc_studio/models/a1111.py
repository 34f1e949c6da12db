"""Find the models of an AUTOMATIC1111 (stable-diffusion-webui) install, named as A1111 names them.

A1111 keeps checkpoints in ``models/Stable-diffusion`` (subfolders too), LoRAs in ``models/Lora`` and
VAEs in ``models/VAE``. For a checkpoint it shows (``modules/sd_models.py``, ``CheckpointInfo``):

- ``name``: the path relative to ``models/Stable-diffusion``, e.g. ``sub/model.safetensors``;
- ``name_for_extra``: the file stem, ``model``;
- ``model_name``: the relative path without extension, slashes made ``_``: ``sub_model``;
- ``title``: ``"sub/model.safetensors [0123456789]"``, the 10-hex SHA-256 "Model hash" in brackets;
- ``short_title``: ``"model [0123456789]"``.

This module only lists what is there; adding the found models to the registry is the caller's job.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from ..errors import InvalidRequest
from ..images.checkpoint_keys import detect_architecture
from ..images.hashing import HashCache, sha256_file

__all__ = ["FoundModel", "scan_a1111"]

FoundKind = Literal["image", "lora", "vae"]

_CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt")
_VAE_SUFFIXES = (".safetensors", ".ckpt", ".pt")
_LORA_SUFFIXES = (".safetensors", ".ckpt", ".pt")
# A1111 leaves "*.vae.ckpt" / "*.vae.safetensors" out of the checkpoint list: they are VAEs kept next to
# the checkpoint they go with.
_VAE_IN_CHECKPOINTS = (".vae.safetensors", ".vae.ckpt", ".vae.pt")
_FOLDERS: tuple[tuple[str, FoundKind, tuple[str, ...]], ...] = (
    ("Stable-diffusion", "image", _CHECKPOINT_SUFFIXES + _VAE_IN_CHECKPOINTS),
    ("Lora", "lora", _LORA_SUFFIXES),
    ("VAE", "vae", _VAE_SUFFIXES),
)


@dataclass(frozen=True)
class FoundModel:
    """One model file of an A1111 install, with A1111's names for it."""

    path: Path  # absolute
    kind: FoundKind  # "image" (a checkpoint), "lora" or "vae"
    engine: str  # the engine that will run it: "diffusers"
    name: str  # the file stem, as A1111 shows it in its UI lists ("name_for_extra")
    relative_name: str  # A1111's ``name``: path under the kind's folder, with extension
    model_name: str  # A1111's ``model_name``: relative path without extension, "/" -> "_"
    title: str  # "relative_name [hash]", or relative_name when not hashed
    short_title: str  # "name [hash]", or name when not hashed
    hash: str | None  # A1111's "Model hash": the first 10 hex of sha256
    sha256: str | None
    size_bytes: int
    # ``checkpoint_keys.detect_architecture``'s answer ("sd15", "sd21", "sdxl", "sd15-pix2pix",
    # "sd15-inpainting", ...); None if unknown
    architecture: str | None

    def as_dict(self) -> dict[str, object]:
        """JSON-ready data (the path as a string)."""
        return {**asdict(self), "path": str(self.path)}


def scan_a1111(root: Path, *, hash_cache: Path | None = None, hashes: bool = True) -> list[FoundModel]:
    """List the checkpoints, LoRAs and VAEs of an A1111 install (or of its ``models`` folder).

    ``hash_cache`` is a JSON file where SHA-256s are kept between scans (:class:`HashCache`), so a
    folder of multi-GB checkpoints is read once. ``hashes=False`` skips hashing altogether; titles
    are then the bare relative name, as A1111 shows a model it has not hashed yet.
    Results are sorted: checkpoints, then LoRAs, then VAEs, each by relative name.
    Raises InvalidRequest if ``root`` is neither an install nor a ``models`` folder.
    """
    root = Path(root).expanduser().resolve()
    models_dir = next((d for d in (root / "models", root) if (d / "Stable-diffusion").is_dir()), None)
    if models_dir is None:
        raise InvalidRequest(
            f"{root} is not an AUTOMATIC1111 install or its models folder: neither "
            f"{root / 'models' / 'Stable-diffusion'} nor {root / 'Stable-diffusion'} exists"
        )
    cache = HashCache(hash_cache) if hash_cache is not None else None
    found: list[FoundModel] = []
    for folder_name, kind, suffixes in _FOLDERS:
        folder = models_dir / folder_name
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*"), key=lambda p: p.relative_to(folder).as_posix().lower()):
            relative = path.relative_to(folder).as_posix()
            # A1111 lists neither hidden files nor files in hidden folders (.git, .cache, ...).
            if any(part.startswith(".") for part in path.relative_to(folder).parts):
                continue
            if not path.name.lower().endswith(suffixes) or not path.is_file():
                continue
            found_kind: FoundKind = "vae" if path.name.lower().endswith(_VAE_IN_CHECKPOINTS) else kind
            found.append(_found(path, relative, found_kind, cache if hashes else None, hashes))
    order = {"image": 0, "lora": 1, "vae": 2}
    return sorted(found, key=lambda m: (order[m.kind], m.relative_name.lower()))


def _found(path: Path, relative: str, kind: FoundKind, cache: HashCache | None, hashes: bool) -> FoundModel:
    sha256 = (cache.sha256(path) if cache is not None else sha256_file(path)) if hashes else None
    short = sha256[:10] if sha256 else None
    stem = path.name.rsplit(".", 1)[0]
    return FoundModel(
        path=path,
        kind=kind,
        engine="diffusers",
        name=stem,
        relative_name=relative,
        model_name=relative.replace("/", "_").rsplit(".", 1)[0],
        title=f"{relative} [{short}]" if short else relative,
        short_title=f"{stem} [{short}]" if short else stem,
        hash=short,
        sha256=sha256,
        size_bytes=path.stat().st_size,
        architecture=_architecture(path) if kind == "image" else None,
    )


def _architecture(path: Path) -> str | None:
    """A checkpoint's architecture by the studio's one detector, from a ``.safetensors`` header.

    A ``.ckpt`` stays unknown here: its keys can only be read by loading it with torch, which a scan of
    a folder of multi-GB files should not do; ``registry.add`` reads them when the checkpoint is added.
    """
    if path.suffix.lower() != ".safetensors":
        return None
    try:
        return detect_architecture(path)
    except (OSError, ValueError):
        return None  # not a readable checkpoint of a known kind; the engine will say why when it loads it
