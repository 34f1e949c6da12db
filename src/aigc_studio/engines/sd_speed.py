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
- Negative Guidance minimum sigma (A1111's ``s_min_uncond``, "NGMS"), per request: below that noise
  level every other UNet call (every one with ``s_min_uncond_all``) runs the prompt alone, at half the
  batch, and its prediction stands for the negative prompt's too, so that step is unguided, as in
  A1111. Changes the picture; the infotext records ``NGMS``.

- OpenVINO (``openvino``): the UNet and the VAE's decoder run by OpenVINO's CPU plugin in float32, a
  whole image 1.15-1.19× faster; the picture stays the same (``sd_openvino``). Converted once per model
  (about 6 minutes at full size on 2 cores, then cached on disk) and holding its own copy of the weights,
  so it is opt-in.

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

__all__ = [
    "COMPILING",
    "ImageSpeed",
    "UNetCompiler",
    "forward_replaced",
    "negative_guidance_skip",
    "physical_cores",
    "token_merging",
    "vae_tiling",
]

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
    # The UNet and the VAE's decoder on OpenVINO (sd_openvino; CPU only; ``compile`` then does nothing),
    # converted once per model into ``openvino_cache`` (None: a folder next to the model).
    openvino: bool = False
    openvino_cache: Path | None = None
    # How many streams the UNet runs as on OpenVINO, each half of a batch on its own threads; 0: two
    # with two threads or more (guidance's two latents, one per stream), else one. bench/image.py sets 1.
    openvino_streams: int = 0

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


@contextmanager
def negative_guidance_skip(pipe, threshold: float, all_steps: bool = False):
    """A1111's Negative Guidance minimum sigma on ``pipe`` while in the block (one sampling pass).

    ``pipe`` guides with the negative prompt by running its UNet on a doubled batch, the negative
    prompt's half first (diffusers' order). The UNet calls of the pass are counted from 0 as A1111's
    denoiser counts them; an odd-numbered call (any, with ``all_steps``) whose noise level is below
    ``threshold`` runs on the prompt's half alone and returns that prediction for both halves, so the
    pipeline's guidance ``uncond + scale × (cond − uncond)`` gives the prompt's prediction, as A1111
    gives it. The noise level is the k-diffusion sigma of the call's timestep, from the scheduler's
    ``alphas_cumprod`` (log-linear between whole timesteps, as k-diffusion converts). A pass without
    guidance (CFG scale 1, one prediction per image) is left as it is."""
    unet = pipe.unet
    before = vars(unet).get("forward")  # a forward set on the module (OpenVINO's) is wrapped, then put back
    if not threshold or getattr(before, "negative_guidance_skip", False):
        yield
        return
    cumprod = pipe.scheduler.alphas_cumprod.to(torch.float64)
    log_sigmas = (((1 - cumprod) / cumprod) ** 0.5).log()
    calls = 0
    eager = unet.forward

    def sigma_of(timestep) -> float:
        t = float(torch.as_tensor(timestep).flatten()[0])
        t = min(max(t, 0.0), len(log_sigmas) - 1.0)
        low = int(t)
        high = min(low + 1, len(log_sigmas) - 1)
        w = t - low
        return float(((1 - w) * log_sigmas[low] + w * log_sigmas[high]).exp())

    def forward(sample, timestep, *args, **kwargs):
        nonlocal calls
        call, calls = calls, calls + 1
        batch = sample.shape[0]
        guided = getattr(pipe, "do_classifier_free_guidance", False) and batch % 2 == 0
        if not guided or not (all_steps or call % 2) or sigma_of(timestep) >= threshold:
            return eager(sample, timestep, *args, **kwargs)
        half = batch // 2

        def prompt_half(value):
            if isinstance(value, torch.Tensor) and value.ndim and value.shape[0] == batch:
                return value[half:]
            if isinstance(value, dict):
                return {k: prompt_half(v) for k, v in value.items()}
            if isinstance(value, list | tuple):
                return type(value)(prompt_half(v) for v in value)
            return value

        out = eager(prompt_half(sample), prompt_half(timestep), *prompt_half(args), **prompt_half(kwargs))
        if isinstance(out, tuple):
            return (torch.cat([out[0], out[0]]), *out[1:])
        out.sample = torch.cat([out.sample, out.sample])
        return out

    forward.negative_guidance_skip = True
    with forward_replaced(unet, forward):
        yield


@contextmanager
def forward_replaced(module, forward):
    """``module.forward`` is ``forward`` while in the block; the forward it had before (its class's, or one
    set on it, such as OpenVINO's that NGMS wraps) is put back after."""
    before = vars(module).get("forward")
    module.forward = forward
    try:
        yield
    finally:
        if before is None:
            del module.forward
        else:
            module.forward = before


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
