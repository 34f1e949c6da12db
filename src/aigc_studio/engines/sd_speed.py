"""Speed of the diffusers engine: what is applied to a loaded Stable Diffusion model, once or per request.

Measured on the full-size SD 1.5 architecture at 512×512 on a 2-core CPU (bench/image.py; the README's
"Speed / Images" gives the table). On by default, as none changes the picture at 512×512:

- ``threads``: torch's intra-op threads at most the physical cores (SMT siblings share their units, and
  OpenMP threads past the cores wait on each other); a given number sets it exactly.
- SDPA attention: diffusers' default processor on torch 2 (``AttnProcessor2_0``), kept.
- the VAE decodes in tiles above ``vae_tile_above`` pixels (1024²): bounds memory at large sizes; the
  tiles' blended seams change pixels there, and nowhere at or below that size.

Off by default, because they did not measure faster on the CPU (a UNet step within a few percent of
without) and each copies weights out of the mapped weights file into the process's own memory (both:
about 2.8 GB more at full size); they keep the picture (at most 1 of 255 from without):

- ``channels_last``: the UNet's and the VAE's weights in NHWC, the layout oneDNN's convolutions prefer.
- ``fuse_qkv``: each attention's query, key and value projections as one matmul (diffusers'
  ``fuse_qkv_projections``; cross-attention fuses key and value).

Opt-in, per model or per request:

- ``compile``: ``torch.compile`` of the UNet (inductor; needs a C compiler), once per model: the first
  request pays the compile and reports it; when compiling fails the UNet runs eagerly (one log line).
  What inductor compiled is kept in ``compile_cache`` (AIGC_HOME/cache/torchinductor), so after a
  restart the compile reads it back instead of starting over. On the full-size UNet on 2 CPU cores it
  measured 5-12% slower per step than eager on a quiet machine (bench/image_compile.py), so it stays
  opt-in, for machines where it measures faster.
- token merging (``tomesd``, A1111's ``token_merging_ratio``), per request: merges similar tokens before
  self-attention; changes the picture, so the infotext records ``Token merging ratio``.

Where CUDA is present the engine runs float16 (``DiffusersEngine``) with SDPA; that path is not measured
here (no GPU on the machines this was built on).
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["COMPILING", "ImageSpeed", "UNetCompiler", "physical_cores", "token_merging", "vae_tiling"]

log = logging.getLogger(__name__)

COMPILING = "compiling the UNet (once per model)"


@dataclass(frozen=True)
class ImageSpeed:
    """What the engine applies to a model it loads; the defaults are the measured ones."""

    channels_last: bool = False
    fuse_qkv: bool = False
    threads: int = 0  # torch intra-op threads; 0: as torch has them, at most the physical cores
    compile: bool = False
    # Where inductor keeps what it compiled (TORCHINDUCTOR_CACHE_DIR), so a restarted server compiles
    # from it in seconds instead of minutes; None: torch's default, a folder under /tmp.
    compile_cache: Path | None = None
    vae_tile_above: int = 1024 * 1024  # pixels (width × height) above which the VAE decodes in tiles; 0: never

    def apply(self, pipe) -> None:
        """Apply the once-per-model parts to a loaded pipeline's modules (shared by all its pipelines)."""
        torch.set_num_threads(self.threads or min(torch.get_num_threads(), physical_cores()))
        if self.channels_last:
            pipe.unet.to(memory_format=torch.channels_last)
            pipe.vae.to(memory_format=torch.channels_last)
        if self.fuse_qkv:
            pipe.unet.fuse_qkv_projections()
            pipe.vae.fuse_qkv_projections()


def physical_cores() -> int:
    """CPU cores this process may use, counting each physical core once (not its SMT siblings)."""
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    cores = set()
    for cpu in allowed:
        siblings = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
        try:
            cores.add(siblings.read_text().strip())
        except OSError:
            cores.add(str(cpu))  # no topology to read (not Linux): count every CPU
    return max(1, len(cores))


@contextmanager
def vae_tiling(vae, width: int, height: int, limit: int):
    """Decode in tiles while in the block when the picture is larger than ``limit`` pixels (0: never)."""
    before = vae.use_tiling
    vae.use_tiling = bool(limit) and width * height > limit
    try:
        yield
    finally:
        vae.use_tiling = before


@contextmanager
def token_merging(unet, ratio: float):
    """Token merging (tomesd) on ``unet`` while in the block, as A1111 applies it: self-attention
    tokens only, stride 2×2, no random perturbation (the same seed gives the same picture)."""
    if not ratio:
        yield
        return
    import tomesd

    tomesd.apply_patch(unet, ratio=ratio, use_rand=False, sx=2, sy=2, merge_attn=True)
    try:
        yield
    finally:
        tomesd.remove_patch(unet)


class UNetCompiler:
    """``torch.compile`` of one UNet, once: compiled lazily on its first call, eager again for good when
    compiling fails (a missing C compiler, an unsupported operation), with one log line saying why."""

    def __init__(self, unet, enabled: bool, cache: Path | None = None):
        self.unet = unet
        self.state = "off"  # off, pending (compiled on the next call), compiled, failed
        if not enabled:
            return
        if cache is not None:
            # One folder per process (inductor reads the variable); one set by the user wins.
            os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache))
        try:
            unet.compile()  # in place: every pipeline sharing the module runs the compiled one
            self.state = "pending"
        except Exception as exc:  # torch.compile is unavailable on this platform or build
            self._give_up(exc)

    @property
    def pending(self) -> bool:
        """True until the first call has compiled the UNet: that call is slow and says so."""
        return self.state == "pending"

    def run(self, call):
        """``call()`` (a pipeline call); on the first, a compile failure falls back to eager and runs again."""
        if self.state != "pending":
            return call()
        try:
            result = call()
        except Exception as exc:
            if not _compile_error(exc):
                raise
            self._give_up(exc)
            return call()
        self.state = "compiled"
        return result

    def _give_up(self, exc: Exception) -> None:
        self.unet._compiled_call_impl = None  # nn.Module.compile's hook: back to the eager forward
        self.state = "failed"
        log.warning("torch.compile of the UNet failed, running it eagerly: %s", " ".join(str(exc).split())[:300])


def _compile_error(exc: Exception) -> bool:
    # Dynamo and inductor raise their own types (BackendCompilerFailed, InductorError, Unsupported...),
    # all defined under torch._dynamo / torch._inductor; anything else is the request's own error.
    return any(type(e).__module__.startswith(("torch._dynamo", "torch._inductor")) for e in _chain(exc))


def _chain(exc: BaseException):
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__
