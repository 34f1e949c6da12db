"""AUTOMATIC1111's samplers and schedule types as diffusers schedulers, and what a record of them says.

Every name in ``contracts.SAMPLERS`` runs A1111 1.10's sampler; the scheduler is built from the model's
own scheduler config (``from_config``), so betas and prediction type stay the model's. What runs
(classes in ``k_schedulers``; "A1111 noise levels" are ``k_schedules.a1111_sigmas``):

============  =====================================================================  ==========  =====
A1111         runs                                                                   Automatic   eta
============  =====================================================================  ==========  =====
DPM++ 2M      DPMSolverMultistepScheduler (dpmsolver++, order 2), A1111 noise levels  Karras      —
DPM++ SDE     DPMSolverSDEScheduler, Brownian tree per image, eta added               Karras      1
DPM++ 2M SDE  DPMSolverMultistepScheduler (sde-dpmsolver++, midpoint), Brownian       Exponential 1
              tree per image, eta added
DPM++ 2S a    the studio's own (KDPM2AncestralDiscreteScheduler layout, two           Karras      1
              evaluations per step)
Euler a       EulerDiscreteScheduler with k-diffusion's ancestral step                uniform     1
Euler         EulerDiscreteScheduler                                                  uniform     —
LMS           LMSDiscreteScheduler, coefficients integrated exactly                   uniform     —
Heun          HeunDiscreteScheduler                                                   uniform     —
DPM2          KDPM2AncestralDiscreteScheduler with eta 0, penultimate sigma dropped    Karras      —
DPM2 a        KDPM2AncestralDiscreteScheduler with eta, penultimate sigma dropped      Karras      1
DDIM          DDIMScheduler, A1111's timesteps (1, 1 + 1000/steps, ...)               (ignored)   0
PLMS          PNDMScheduler (PLMS steps only), A1111's timesteps                       (ignored)   —
UniPC         UniPCMultistepScheduler bh1, order 3, time-uniform, ends at sigma_min    (ignored)   —
LCM           the studio's own (A1111's sample_lcm over LCM's 50 noise levels)        uniform     —
============  =====================================================================  ==========  =====

Schedule types (``contracts.SCHEDULERS``): every k-diffusion sampler (all but DDIM, PLMS and UniPC) runs
the noise levels A1111 computes for the type, from the model's own ``alphas_cumprod``: Karras (ρ 7),
Exponential, SGM Uniform, and Automatic, which is the sampler's default above ("uniform": the model's
levels evenly spaced in timestep, A1111's ``DiscreteSchedule.get_sigmas``). DDIM, PLMS and UniPC are
A1111's timestep samplers: A1111 runs them on its fixed timesteps whatever the schedule type, and so does
the studio — but it records "Automatic" for them, which is what ran (A1111 records the label it was given).

A record says what ran: ``check_sampler`` turns a request's (sampler, schedule type, eta) into the schedule
type that runs (Automatic resolved to the sampler's default where it has one) and the eta that applies
(None for a sampler without one, whose eta A1111 ignores). ``ImageService.submit`` records those.
Eta: the noise multiplier of the ancestral and SDE samplers (A1111's "Eta", default 1) and DDIM's eta
("Eta DDIM", default 0).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..contracts import SAMPLERS, SCHEDULERS, ImageRequest

__all__ = [
    "SAMPLER_RULES",
    "SamplerError",
    "SamplerRule",
    "SchedulerCache",
    "SchedulerChoice",
    "check_sampler",
    "choose_scheduler",
    "sampler_fields",
    "schedule_that_runs",
]


@dataclass(frozen=True)
class SamplerRule:
    """How A1111 1.10 treats one sampler's schedule type and eta."""

    default_schedule: str = "Automatic"  # what its "Automatic" runs
    honours_schedule: bool = True  # False for A1111's timestep samplers (DDIM, PLMS, UniPC)
    eta_default: float | None = None  # None: the sampler has no eta
    discard_penultimate: bool = False


_ANCESTRAL = SamplerRule(eta_default=1.0)
SAMPLER_RULES: dict[str, SamplerRule] = {
    "DPM++ 2M": SamplerRule("Karras"),
    "DPM++ SDE": SamplerRule("Karras", eta_default=1.0),
    "DPM++ 2M SDE": SamplerRule("Exponential", eta_default=1.0),
    "DPM++ 2S a": SamplerRule("Karras", eta_default=1.0),
    "Euler a": _ANCESTRAL,
    "Euler": SamplerRule(),
    "LMS": SamplerRule(),
    "Heun": SamplerRule(),
    "DPM2": SamplerRule("Karras", discard_penultimate=True),
    "DPM2 a": SamplerRule("Karras", eta_default=1.0, discard_penultimate=True),
    "DDIM": SamplerRule(honours_schedule=False, eta_default=0.0),
    "PLMS": SamplerRule(honours_schedule=False),
    "UniPC": SamplerRule(honours_schedule=False),
    "LCM": SamplerRule(),
}
assert set(SAMPLER_RULES) == set(SAMPLERS), "every A1111 sampler needs a rule"
_SCHEDULE_LABELS = tuple(SCHEDULERS.values())


class SamplerError(ValueError):
    """A sampler, schedule type or eta that cannot run; ``param`` names the request field."""

    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.param = param


def _known(sampler: str, schedule: str) -> SamplerRule:
    if sampler not in SAMPLER_RULES:
        raise SamplerError(f"unknown sampler_name {sampler!r}; valid: {', '.join(SAMPLERS)}", "sampler_name")
    if schedule not in _SCHEDULE_LABELS:
        valid = ", ".join(_SCHEDULE_LABELS)
        raise SamplerError(f"unknown scheduler (schedule type) {schedule!r}; valid: {valid}", "scheduler")
    return SAMPLER_RULES[sampler]


def schedule_that_runs(sampler: str, schedule: str = "Automatic") -> str:
    """The schedule-type label that runs for ``sampler`` asked with ``schedule`` (what a record says)."""
    rule = _known(sampler, schedule)
    if not rule.honours_schedule:
        return "Automatic"
    return rule.default_schedule if schedule == "Automatic" else schedule


def check_sampler(sampler: str, schedule: str = "Automatic", eta: float | None = None) -> tuple[str, float | None]:
    """Check a sampler, schedule type and eta before any work; return the (schedule type, eta) to record.

    Every sampler runs with every schedule type (a timestep sampler on A1111's fixed timesteps, recorded
    as "Automatic"). The eta returned is None for a sampler that has none (A1111 ignores it there); for
    one that has, the eta asked (None: A1111's default). Raises ``SamplerError`` (a ValueError naming the
    field) for an unknown name or an eta outside 0-1.
    """
    rule = _known(sampler, schedule)
    if eta is not None and not 0 <= eta <= 1:
        raise SamplerError(f"eta must be between 0 and 1, got {eta}", "eta")
    return schedule_that_runs(sampler, schedule), (eta if rule.eta_default is not None else None)


def sampler_fields(request: ImageRequest) -> dict[str, object]:
    """``scheduler``, ``hr_scheduler`` (with hires fix) and ``eta`` of ``request`` as they will run: the
    values a record of it must hold (see ``check_sampler``). A hires pass with no schedule type of its own
    resolves the first pass's label for its own sampler, as A1111 does."""
    schedule, eta = check_sampler(request.sampler_name, request.scheduler, request.eta)
    fields: dict[str, object] = {"scheduler": schedule}
    if request.enable_hr:
        hr_sampler = request.hr_sampler_name or request.sampler_name
        fields["hr_scheduler"], hr_eta = check_sampler(
            hr_sampler, request.hr_scheduler or request.scheduler, request.eta
        )
        eta = eta if eta is not None else hr_eta
    fields["eta"] = eta
    return fields


@dataclass(frozen=True)
class SchedulerChoice:
    """How an A1111 sampler and schedule type run in diffusers."""

    sampler: str
    schedule: str  # the schedule type that runs: the one asked, the sampler's default, or "Automatic"
    scheduler_class: type
    settings: dict  # config values set over the model's own
    eta_default: float | None


def _classes() -> dict[str, tuple[type, dict]]:
    # imported here: the service checks requests with the rules above without loading torch and diffusers
    from diffusers import PNDMScheduler

    from . import k_schedulers as k

    karras_hook = {"use_karras_sigmas": True, "use_exponential_sigmas": False, "use_beta_sigmas": False}
    to_zero = {**karras_hook, "final_sigmas_type": "zero"}
    dpm = {**to_zero, "solver_order": 2, "lower_order_final": True, "euler_at_final": False}
    a1111_timesteps = {"timestep_spacing": "leading", "steps_offset": 1, "set_alpha_to_one": False}
    return {
        "DPM++ 2M": (k.A1111DPMPP2M, {**dpm, "algorithm_type": "dpmsolver++"}),
        "DPM++ SDE": (k.A1111DPMPPSDE, karras_hook),
        "DPM++ 2M SDE": (k.A1111DPMPP2MSDE, {**dpm, "algorithm_type": "sde-dpmsolver++", "solver_type": "midpoint"}),
        "DPM++ 2S a": (k.A1111DPMPP2SAncestral, {}),
        "Euler a": (k.A1111EulerAncestral, to_zero),
        "Euler": (k.A1111Euler, to_zero),
        "LMS": (k.A1111LMS, karras_hook),
        "Heun": (k.A1111Heun, karras_hook),
        "DPM2": (k.A1111DPM2Ancestral, {}),
        "DPM2 a": (k.A1111DPM2Ancestral, {}),
        "DDIM": (k.A1111DDIM, {**a1111_timesteps, "clip_sample": False, "thresholding": False}),
        "PLMS": (PNDMScheduler, {**a1111_timesteps, "skip_prk_steps": True}),
        "UniPC": (
            k.A1111UniPC,
            {
                "solver_type": "bh1",
                "solver_order": 3,
                "lower_order_final": True,
                "predict_x0": True,
                "final_sigmas_type": "sigma_min",
                "timestep_spacing": "linspace",
                "use_karras_sigmas": False,
                "use_exponential_sigmas": False,
                "use_beta_sigmas": False,
            },
        ),
        "LCM": (k.A1111LCM, {}),
    }


def choose_scheduler(sampler: str, schedule: str = "Automatic") -> SchedulerChoice:
    """Map an A1111 sampler name and schedule-type label (as ``ImageRequest`` holds them) to diffusers."""
    rule = _known(sampler, schedule)
    scheduler_class, settings = _classes()[sampler]
    return SchedulerChoice(sampler, schedule_that_runs(sampler, schedule), scheduler_class, settings, rule.eta_default)


def _use_a1111_alphas(scheduler) -> None:
    import torch

    from .k_schedules import ldm_alphas_cumprod

    alphas_cumprod = ldm_alphas_cumprod(scheduler.config)
    if alphas_cumprod is not None:
        scheduler.alphas_cumprod = torch.from_numpy(alphas_cumprod)
        if hasattr(scheduler, "final_alpha_cumprod") and not scheduler.config.get("set_alpha_to_one"):
            scheduler.final_alpha_cumprod = scheduler.alphas_cumprod[0]


class SchedulerCache:
    """Schedulers for one model, built from its scheduler config, one instance per (sampler, schedule type).

    An instance keeps the state of the run that uses it (``set_timesteps`` resets it); use one at a time.
    """

    def __init__(self, model_scheduler_config):
        self._config = dict(model_scheduler_config)
        self._schedulers: dict[tuple[str, str], tuple[object, SchedulerChoice]] = {}

    def get(
        self, sampler: str, schedule: str = "Automatic", eta: float | None = None
    ) -> tuple[object, SchedulerChoice]:
        """The scheduler for ``sampler`` × ``schedule``, set to ``eta`` (None: A1111's default), and how it
        was chosen. A sampler without eta ignores it, as A1111 does."""
        choice = choose_scheduler(sampler, schedule)
        key = (sampler, choice.schedule)
        if key not in self._schedulers:
            scheduler = choice.scheduler_class.from_config(self._config, **choice.settings)
            _use_a1111_alphas(scheduler)
            scheduler.schedule = choice.schedule
            if sampler == "DPM2":
                scheduler.eta = 0.0  # A1111's DPM2 is DPM2 a without its noise
            self._schedulers[key] = scheduler, choice
        scheduler, choice = self._schedulers[key]
        if choice.eta_default is not None:
            scheduler.eta = choice.eta_default if eta is None else eta
        return scheduler, choice
