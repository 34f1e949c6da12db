"""AUTOMATIC1111's samplers and schedule types as diffusers schedulers.

Every name in ``image_base.SAMPLERS`` maps to a diffusers scheduler class and the settings that make it
that sampler; every schedule type maps to the scheduler settings that space the noise levels that way.
Schedulers are built from the model's own scheduler config (``from_config``), so betas, prediction type
and timestep offset stay the model's.

=============  ====================================================================================
A1111          diffusers
=============  ====================================================================================
DPM++ 2M       DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2)
DPM++ SDE      DPMSolverSDEScheduler when ``torchsde`` is installed (its Brownian-tree noise is seeded
               from the batch's first seed); otherwise DPMSolverSinglestepScheduler(algorithm_type=
               "sde-dpmsolver++", solver_order=2), the same stochastic second-order single-step solver
               with plain Gaussian noise
DPM++ 2M SDE   DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++", solver_order=2)
DPM++ 2S a     DPMSolverSinglestepScheduler(algorithm_type="dpmsolver++", solver_order=2): diffusers has
               no ancestral variant; this is the same second-order single-step solver without the noise
Euler a        EulerAncestralDiscreteScheduler
Euler          EulerDiscreteScheduler
LMS            LMSDiscreteScheduler, with its coefficients integrated exactly instead of by scipy
Heun           HeunDiscreteScheduler
DPM2           KDPM2DiscreteScheduler
DPM2 a         KDPM2AncestralDiscreteScheduler
DDIM           DDIMScheduler(clip_sample=False), eta 0
PLMS           PNDMScheduler(skip_prk_steps=True)
UniPC          UniPCMultistepScheduler(solver_order=3), A1111's order; its default variant "bh1" ends in
               NaN at the final zero sigma in diffusers 0.42, so diffusers' "bh2" it is
LCM            LCMScheduler
=============  ====================================================================================

Schedule types: Karras → ``use_karras_sigmas``; Exponential → ``use_exponential_sigmas``; SGM Uniform →
``timestep_spacing="trailing"``; Automatic → what A1111 1.10 picks for the sampler (Karras for DPM++ 2M,
DPM++ SDE and DPM++ 2S a, Exponential for DPM++ 2M SDE), otherwise the model's own scheduler config.

Fallback rule: when the sampler's scheduler has no setting for the schedule type (Euler a, DDIM, PLMS and
LCM have none of Karras/Exponential; DPM++ 2S a has no SGM Uniform), it runs with the model's own
spacing, and ``SchedulerChoice.schedule`` says "Automatic" so that what is recorded is what ran.
"""

from __future__ import annotations

import importlib.util
import inspect
from dataclasses import dataclass

import numpy as np
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    DPMSolverSinglestepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    KDPM2AncestralDiscreteScheduler,
    KDPM2DiscreteScheduler,
    LCMScheduler,
    PNDMScheduler,
    UniPCMultistepScheduler,
)
from diffusers.schedulers.scheduling_lms_discrete import LMSDiscreteScheduler

from ..contracts import SAMPLERS, SCHEDULERS

__all__ = ["ExactLMSDiscreteScheduler", "SchedulerCache", "SchedulerChoice", "choose_scheduler"]


class ExactLMSDiscreteScheduler(LMSDiscreteScheduler):
    """LMS whose coefficients are integrated exactly. diffusers integrates them numerically with scipy,
    which the studio does not install (diffusers' own ``LMSDiscreteScheduler`` export is then a stub);
    the integrand is a Lagrange basis polynomial, so its antiderivative is exact."""

    def get_lms_coefficient(self, order: int, t: int, current_order: int) -> float:
        sigmas = [float(self.sigmas[t - k]) for k in range(order)]
        basis = np.polynomial.Polynomial([1.0])
        for k in range(order):
            if k != current_order:
                basis *= np.polynomial.Polynomial([-sigmas[k], 1.0]) / (sigmas[current_order] - sigmas[k])
        antiderivative = basis.integ()
        return float(antiderivative(float(self.sigmas[t + 1])) - antiderivative(sigmas[0]))


# lower_order_final: diffusers switches it on anyway (with a warning) for odd step counts and a zero final sigma
_SINGLESTEP = {"solver_order": 2, "lower_order_final": True}


def _dpmpp_sde() -> tuple[type, dict]:
    if importlib.util.find_spec("torchsde") is not None:
        from diffusers.schedulers.scheduling_dpmsolver_sde import DPMSolverSDEScheduler

        return DPMSolverSDEScheduler, {}
    return DPMSolverSinglestepScheduler, {**_SINGLESTEP, "algorithm_type": "sde-dpmsolver++"}


_SAMPLERS: dict[str, tuple[type, dict]] = {
    "DPM++ 2M": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "DPM++ SDE": _dpmpp_sde(),
    "DPM++ 2M SDE": (DPMSolverMultistepScheduler, {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}),
    "DPM++ 2S a": (DPMSolverSinglestepScheduler, {**_SINGLESTEP, "algorithm_type": "dpmsolver++"}),
    "Euler a": (EulerAncestralDiscreteScheduler, {}),
    "Euler": (EulerDiscreteScheduler, {}),
    "LMS": (ExactLMSDiscreteScheduler, {}),
    "Heun": (HeunDiscreteScheduler, {}),
    "DPM2": (KDPM2DiscreteScheduler, {}),
    "DPM2 a": (KDPM2AncestralDiscreteScheduler, {}),
    "DDIM": (DDIMScheduler, {"clip_sample": False}),
    "PLMS": (PNDMScheduler, {"skip_prk_steps": True}),
    "UniPC": (UniPCMultistepScheduler, {"solver_order": 3}),
    "LCM": (LCMScheduler, {}),
}
assert set(_SAMPLERS) == set(SAMPLERS), "every A1111 sampler needs a scheduler"

# What A1111 1.10 runs for "Automatic" (its samplers' default "scheduler" option); others: the model's config.
_AUTOMATIC = {"DPM++ 2M": "Karras", "DPM++ SDE": "Karras", "DPM++ 2S a": "Karras", "DPM++ 2M SDE": "Exponential"}

_NO_SIGMA_OVERRIDES = {"use_karras_sigmas": False, "use_exponential_sigmas": False, "use_beta_sigmas": False}
# schedule type -> (the setting that makes it, all settings it writes)
_SCHEDULES: dict[str, tuple[str | None, dict]] = {
    "Automatic": (None, {}),
    "Karras": ("use_karras_sigmas", {**_NO_SIGMA_OVERRIDES, "use_karras_sigmas": True}),
    "Exponential": ("use_exponential_sigmas", {**_NO_SIGMA_OVERRIDES, "use_exponential_sigmas": True}),
    "SGM Uniform": ("timestep_spacing", {**_NO_SIGMA_OVERRIDES, "timestep_spacing": "trailing"}),
}
assert set(_SCHEDULES) == set(SCHEDULERS.values()), "every A1111 schedule type needs settings"


@dataclass(frozen=True)
class SchedulerChoice:
    """How an A1111 sampler and schedule type run in diffusers."""

    sampler: str
    schedule: str  # the schedule type to record: the one asked for, or "Automatic" after a fallback
    applied: str  # the spacing that actually runs: "Karras" for DPM++ 2M on Automatic, ...
    scheduler_class: type
    settings: dict  # config values set over the model's own


def choose_scheduler(sampler: str, schedule: str = "Automatic") -> SchedulerChoice:
    """Map an A1111 sampler name and schedule-type label (as ``ImageRequest`` holds them) to diffusers."""
    if sampler not in _SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; valid: {', '.join(SAMPLERS)}")
    if schedule not in _SCHEDULES:
        raise ValueError(f"unknown schedule type {schedule!r}; valid: {', '.join(_SCHEDULES)}")
    scheduler_class, settings = _SAMPLERS[sampler]
    applied = _AUTOMATIC.get(sampler, "Automatic") if schedule == "Automatic" else schedule
    accepted = inspect.signature(scheduler_class.__init__).parameters
    key, schedule_settings = _SCHEDULES[applied]
    if key is not None and key not in accepted:
        schedule, applied, schedule_settings = "Automatic", "Automatic", {}
    settings = {**settings, **{name: value for name, value in schedule_settings.items() if name in accepted}}
    return SchedulerChoice(sampler, schedule, applied, scheduler_class, settings)


class SchedulerCache:
    """Schedulers for one model, built from its scheduler config, one instance per (sampler, schedule type).

    An instance keeps the state of the run that uses it (``set_timesteps`` resets it); use one at a time.
    """

    def __init__(self, model_scheduler_config):
        self._config = dict(model_scheduler_config)
        self._schedulers: dict[tuple[str, str], tuple[object, SchedulerChoice]] = {}

    def get(self, sampler: str, schedule: str = "Automatic") -> tuple[object, SchedulerChoice]:
        """The scheduler for ``sampler`` × ``schedule`` and how it was chosen."""
        if (sampler, schedule) not in self._schedulers:
            choice = choose_scheduler(sampler, schedule)
            scheduler = choice.scheduler_class.from_config(self._config, **choice.settings)
            self._schedulers[sampler, schedule] = scheduler, choice
        return self._schedulers[sampler, schedule]
