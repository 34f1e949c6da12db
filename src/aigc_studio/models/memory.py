"""Model memory: which kinds of model may stay loaded together, and giving a freed model's memory back.

``model_memory = "both"`` keeps the default text model and the current image model loaded side by
side; ``"one"`` keeps only the kind last asked for, freeing the other as soon as nothing runs on it
(the registry applies it; see ``Registry._claim_memory``). A full-size Stable Diffusion model holds
about 4 GB and SmolLM2 about 0.2 GB, so on a machine short of memory the choice is between reloading
and swapping.
"""

from __future__ import annotations

import contextlib
import ctypes

MODEL_MEMORY = ("both", "one")


def return_freed_memory() -> None:
    """After an engine's ``close``: ask glibc to hand its free heap pages back to the system.

    A model's smaller tensors (under glibc's mmap threshold, up to 32 MB) live on the malloc heap; freed,
    they stay in the process's resident memory until ``malloc_trim`` releases them, so without it the
    process would look as large after freeing a model as before. No ``gc.collect`` here: the engines'
    ``close`` frees what they hold (the diffusers engine collects itself), and a full collection of a
    server's heap costs about half a second. Elsewhere than glibc this does nothing.
    """
    with contextlib.suppress(AttributeError, OSError):  # not glibc (musl, macOS): nothing to trim by hand
        ctypes.CDLL(None).malloc_trim(0)
