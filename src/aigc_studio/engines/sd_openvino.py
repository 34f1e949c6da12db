"""The UNet and the VAE's decoder of a loaded Stable Diffusion model run by OpenVINO on the CPU (opt-in).

Measured on the full-size SD 1.5 architecture on 2 cores of a Zen 3 EPYC (bench/image.py and
bench/image_unet.py, the README's "Speed / Images"): a whole 512×512 image at 20 steps 1.14-1.27×
faster than PyTorch's eager float32 in two runs, the UNet in two streams (1.11× the one-stream UNet in
the same run), with the same weights in float32 (the precision hint is pinned to f32: on CPUs with AMX
or AVX-512 BF16 OpenVINO would otherwise pick bf16, which changes the picture). The outputs differ
from PyTorch's by about 1e-5, which leaves the 8-bit picture the same (the bench prints the pixel
difference).

Each module is converted once per model version: traced from the loaded PyTorch module with
``openvino.convert_model`` (dynamic batch and size, so hires fix, a batch of any size and any size run on
one model) and saved as OpenVINO IR (float32, not the fp16 compression ``save_model`` defaults to) in
``cache/<key>``, the key a digest of the model's files (size, mtime), its configs and the library
versions. Converting the full-size SD 1.5 modules takes about 6 minutes on 2 cores; later loads read
the IR and compile it in about a minute. The first request of a model pays this and reports it (``CONVERTING``).

What OpenVINO's graph cannot follow runs on the PyTorch modules, per request: seamless tiling (it
changes the convolutions' padding), token merging (it patches the attention blocks), and UNet calls with
inputs the traced graph has no place for (SDXL's added conditions, ControlNet residuals, LoRA scales).
A UNet it cannot convert (SDXL's, LCM's timestep condition) runs on PyTorch, with one log line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..contracts import OPENVINO_PHASE
from .sd_speed import forward_replaced

__all__ = ["CONVERTING", "OpenVINOModules", "UNetCalls", "openvino_version"]

log = logging.getLogger(__name__)

CONVERTING = OPENVINO_PHASE


def openvino_version() -> str:
    """The installed OpenVINO's version (``2026.4.1``), without its build suffix."""
    import openvino

    return openvino.__version__.split("-")[0]


@dataclass
class UNetCalls:
    """How many of a request's UNet calls OpenVINO ran, and how many PyTorch did."""

    openvino: int = 0
    pytorch: int = 0

    def add(self, other: UNetCalls) -> None:
        self.openvino += other.openvino
        self.pytorch += other.pytorch


def _release_memory() -> None:
    """Hand what converting held (a traced graph and a copy of the weights: GBs at full size) back to
    the system: glibc keeps freed memory in its heap unless asked."""
    import ctypes
    import gc

    gc.collect()
    with suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class _UNetGraph(torch.nn.Module):
    """The UNet with the three inputs an SD 1.x/2.x pipeline gives it, returning the noise prediction."""

    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep, encoder_hidden_states):
        return self.unet(sample, timestep, encoder_hidden_states, return_dict=False)[0]


class OpenVINOModules:
    """One model's UNet and VAE decoder as compiled OpenVINO models, converted on first use.

    ``state``: "pending" (converted or read on the next ``prepare``), "ready", "failed" (PyTorch runs,
    the reason logged once) or "unsupported" (a UNet the graph cannot take; PyTorch runs)."""

    def __init__(self, pipe, source: Path, cache: Path, threads: int, streams: int = 0):
        self.pipe = pipe
        self.source = Path(source)
        self.cache = Path(cache)
        self.threads = threads
        # Guidance gives the UNet two latents per image: with two threads or more, the UNet runs as two
        # streams of half the threads each, one half of the batch on each, at once (see ``unet``).
        self.streams = max(1, min(streams or 2, threads))
        self.version = ""
        self._unet: list = []  # the UNet's infer requests, one per stream
        self._decoder = None  # the VAE decoder's infer request
        config = pipe.unet.config
        if config.get("addition_embed_type") or config.get("time_cond_proj_dim") or config.get("class_embed_type"):
            self.state = "unsupported"
            log.info("OpenVINO: this UNet takes conditions beyond the prompt (SDXL, LCM...): it runs on PyTorch")
        else:
            self.state = "pending"

    @property
    def pending(self) -> bool:
        return self.state == "pending"

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    @property
    def runtime(self) -> str:
        """What runs the UNet when this is ready: ``OpenVINO 2026.4.1``."""
        return f"OpenVINO {self.version}"

    def describe(self, calls: UNetCalls) -> str | None:
        """The record of what ran a request's UNet calls: OpenVINO for all of them, or how many of
        them it ran (the rest ran on PyTorch), or None when PyTorch ran them all."""
        if not calls.openvino:
            return None
        if not calls.pytorch:
            return self.runtime
        return f"{self.runtime} ({calls.openvino} of {calls.openvino + calls.pytorch} UNet calls; the rest PyTorch)"

    def key(self) -> str:
        """A digest of what the converted models depend on: the weights' files, the configs, the versions."""
        import diffusers

        root = self.source if self.source.is_dir() else self.source.parent
        files = sorted(self.source.rglob("*")) if self.source.is_dir() else [self.source]
        stats = [(str(f.relative_to(root)), f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.is_file()]
        identity = {
            "source": str(self.source.resolve()),
            "files": stats,
            # the architecture, not diffusers' bookkeeping (``_name_or_path`` differs by how a model loads)
            "unet": {k: v for k, v in self.pipe.unet.config.items() if not k.startswith("_")},
            "vae": {k: v for k, v in self.pipe.vae.config.items() if not k.startswith("_")},
            "versions": [openvino_version(), torch.__version__, diffusers.__version__],
        }
        return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:20]

    def prepare(self) -> None:
        """Read (or convert, then save) and compile both models; on any failure PyTorch runs for good."""
        if self.state != "pending":
            return
        started = time.perf_counter()
        try:
            import openvino as ov

            self.version = openvino_version()
            folder = self.cache / self.key()
            converted = not (folder / "unet.xml").exists()
            if converted:
                self._convert(ov, folder)
            core = ov.Core()
            options = {
                "INFERENCE_PRECISION_HINT": "f32",  # never bf16/fp16: the picture stays PyTorch's
                "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_NUM_THREADS": self.threads,
            }
            unet_options = options
            if self.streams > 1:
                unet_options = {**options, "PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": self.streams}
            unet = core.compile_model(core.read_model(folder / "unet.xml"), "CPU", unet_options)
            self._unet = [unet.create_infer_request() for _ in range(self.streams)]
            self._decoder = core.compile_model(core.read_model(folder / "vae_decoder.xml"), "CPU", options)
            self._decoder = self._decoder.create_infer_request()
        except Exception as exc:  # no OpenVINO, a graph it cannot convert, a full disk: PyTorch runs
            self.state = "failed"
            self._unet, self._decoder = [], None
            reason = " ".join(str(exc).split())[:300]
            log.warning("OpenVINO could not take the image model, it runs on PyTorch: %s", reason)
            return
        self.state = "ready"
        what = "converted and compiled" if converted else "read from its cache and compiled"
        log.info("OpenVINO %s: UNet and VAE decoder %s in %.1f s", self.version, what, time.perf_counter() - started)

    def _convert(self, ov, folder: Path) -> None:
        """Trace both modules into OpenVINO IR under a temporary name, renamed into place when whole."""
        unet, vae = self.pipe.unet, self.pipe.vae
        side = 64
        temp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
        shutil.rmtree(temp, ignore_errors=True)
        temp.mkdir(parents=True)
        try:
            with torch.inference_mode(False), torch.no_grad():
                example = (
                    torch.randn(2, unet.config.in_channels, side, side),
                    torch.tensor([500.0, 500.0]),
                    torch.randn(2, 77, unet.config.cross_attention_dim),
                )
                graph = ov.convert_model(_UNetGraph(unet), example_input=example)
                ov.save_model(graph, temp / "unet.xml", compress_to_fp16=False)  # float32, as the weights
                latents = torch.randn(1, vae.config.latent_channels, side, side)
                graph = ov.convert_model(vae.decoder, example_input=(latents,))
                ov.save_model(graph, temp / "vae_decoder.xml", compress_to_fp16=False)
                del graph
            shutil.rmtree(folder, ignore_errors=True)
            temp.rename(folder)
        finally:
            shutil.rmtree(temp, ignore_errors=True)
            _release_memory()

    @contextmanager
    def unet(self, unet) -> Iterator[UNetCalls]:
        """While in the block, ``unet``'s calls with the prompt's inputs only run on OpenVINO (once
        ready); the block's value counts the calls each ran.

        With two streams, a call's batch is split in two halves (guidance's two latents per image) run
        at once, one per stream: on 2 cores 1.3× the speed of the whole batch on both threads, since
        each stream keeps its thread busy with no waiting on the other. A call with one latent (CFG scale
        1, NGMS's skipped half) would have one stream of half the threads, slower than PyTorch on all of
        them: it runs on PyTorch, and the record says how many calls OpenVINO ran."""
        requests, calls = self._unet, UNetCalls()
        eager = unet.forward

        def forward(sample, timestep, encoder_hidden_states=None, *args, return_dict=True, **kwargs):
            batch = sample.shape[0]
            if args or any(value is not None and value != {} for value in kwargs.values()) or batch % len(requests):
                calls.pytorch += 1
                return eager(sample, timestep, encoder_hidden_states, *args, return_dict=return_dict, **kwargs)
            calls.openvino += 1
            steps = torch.as_tensor(timestep, dtype=torch.float32).flatten().expand(batch).contiguous().numpy()
            latents = sample.float().contiguous().numpy()
            context = encoder_hidden_states.float().contiguous().numpy()
            part = batch // len(requests)
            for i, request in enumerate(requests):
                window = slice(i * part, (i + 1) * part)
                request.start_async([latents[window], steps[window], context[window]])
            for request in requests:
                request.wait()
            out = np.concatenate([request.get_output_tensor(0).data for request in requests])  # a copy
            noise = torch.from_numpy(out).to(sample.dtype)
            if not return_dict:
                return (noise,)
            from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

            return UNet2DConditionOutput(sample=noise)

        with forward_replaced(unet, forward):
            yield calls

    @contextmanager
    def decoder(self, vae):
        """While in the block, the VAE's decoder (whole or tile by tile) runs on OpenVINO (once ready)."""
        request, decoder = self._decoder, vae.decoder
        eager = decoder.forward

        def forward(sample, latent_embeds=None):
            if latent_embeds is not None:
                return eager(sample, latent_embeds)
            out = request.infer([sample.float().contiguous().numpy()])
            return torch.from_numpy(out[0].copy()).to(sample.dtype)

        with forward_replaced(decoder, forward):
            yield
