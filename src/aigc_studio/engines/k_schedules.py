"""The noise levels AUTOMATIC1111 samples at: its schedule types over a model's discrete noise levels.

A1111 1.10 wraps the model in k-diffusion's ``DiscreteSchedule``: the model's 1000 training noise levels
``sigma = sqrt((1 - alphas_cumprod) / alphas_cumprod)``, with log-linear interpolation between them
(``t_to_sigma``, ``sigma_to_t``). Its schedule types (modules/sd_schedulers.py) space ``steps`` noise
levels between the model's smallest and largest and append a final 0:

- Automatic with no sampler default (Euler, Euler a, LMS, Heun, LCM): ``DiscreteSchedule.get_sigmas``,
  ``steps`` points evenly spaced in timestep from the last training step to the first.
- Karras: Karras et al. (2022), ρ = 7. Exponential: evenly spaced in log sigma.
- SGM Uniform: ``steps + 1`` timesteps evenly spaced from the largest sigma's to the smallest's, the
  last dropped.

Samplers that discard the penultimate sigma (DPM2, DPM2 a) take ``steps + 1`` levels and drop the
smallest non-zero one. LCM samples over LCM's own 50 noise levels (``LCMNoiseLevels``), with the model
called at the nearest of LCM's timesteps. Everything here is numpy in float64; the schedulers cast.
"""

from __future__ import annotations

import numpy as np

__all__ = ["LCMNoiseLevels", "NoiseLevels", "a1111_sigmas", "ldm_alphas_cumprod"]


def ldm_alphas_cumprod(config) -> np.ndarray | None:
    """The model's ``alphas_cumprod`` as A1111 has them (ldm's ``register_schedule``: betas and their
    product in float64, stored as float32), from a diffusers scheduler config; None for a beta schedule
    ldm does not compute this way. diffusers multiplies in float32, which drifts by about 1e-5 by the last
    step: enough to move every noise level the schedule types derive from it."""
    steps, start, end = config["num_train_timesteps"], config["beta_start"], config["beta_end"]
    if config.get("trained_betas") is not None:
        betas = np.asarray(config["trained_betas"], dtype=np.float64)
    elif config.get("beta_schedule") == "scaled_linear":
        betas = np.linspace(start**0.5, end**0.5, steps, dtype=np.float64) ** 2
    elif config.get("beta_schedule") == "linear":
        betas = np.linspace(start, end, steps, dtype=np.float64)
    else:
        return None
    return np.cumprod(1.0 - betas).astype(np.float32)


class NoiseLevels:
    """A model's discrete noise levels, as k-diffusion's ``DiscreteSchedule`` holds them."""

    def __init__(self, alphas_cumprod):
        alphas_cumprod = np.asarray(alphas_cumprod, dtype=np.float64)
        self.sigmas = np.sqrt((1 - alphas_cumprod) / alphas_cumprod)  # ascending with the timestep
        self.log_sigmas = np.log(self.sigmas)

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    def t_to_sigma(self, t) -> np.ndarray:
        """Sigma at (fractional) timestep ``t``: log sigma interpolated linearly between training steps."""
        t = np.asarray(t, dtype=np.float64)
        low = np.floor(t).astype(int)
        high = np.ceil(t).astype(int)
        w = t - low
        return np.exp((1 - w) * self.log_sigmas[low] + w * self.log_sigmas[high])

    def sigma_to_t(self, sigma) -> np.ndarray:
        """The (fractional) timestep of ``sigma``: the inverse of ``t_to_sigma``, clamped to the table."""
        log_sigma = np.log(np.asarray(sigma, dtype=np.float64))
        dists = log_sigma - self.log_sigmas[:, None]
        low = np.clip(np.cumsum(dists >= 0, axis=0).argmax(axis=0), None, len(self.log_sigmas) - 2)
        high = low + 1
        w = np.clip((self.log_sigmas[low] - log_sigma) / (self.log_sigmas[low] - self.log_sigmas[high]), 0, 1)
        return ((1 - w) * low + w * high).reshape(np.shape(sigma))

    def uniform(self, n: int) -> np.ndarray:
        """``n`` noise levels evenly spaced in timestep, largest first (``DiscreteSchedule.get_sigmas``)."""
        return self.t_to_sigma(np.linspace(len(self.sigmas) - 1, 0, n))


class LCMNoiseLevels(NoiseLevels):
    """LCM's 50 noise levels (A1111's ``LCMCompVisDenoiser``): every 20th training step from 19 to 999.

    Its timesteps are training timesteps; ``sigma_to_t`` gives the nearest LCM timestep, since an LCM
    model is only ever called at those.
    """

    original_steps = 50

    def __init__(self, alphas_cumprod):
        alphas_cumprod = np.asarray(alphas_cumprod, dtype=np.float64)
        self.skip = len(alphas_cumprod) // self.original_steps
        super().__init__(alphas_cumprod[self.skip - 1 :: self.skip][: self.original_steps])

    def t_to_sigma(self, t) -> np.ndarray:
        index = np.clip((np.asarray(t, dtype=np.float64) - (self.skip - 1)) / self.skip, 0, len(self.sigmas) - 1)
        return super().t_to_sigma(index)

    def sigma_to_t(self, sigma) -> np.ndarray:
        log_sigma = np.log(np.asarray(sigma, dtype=np.float64))
        nearest = np.abs(log_sigma - self.log_sigmas[:, None]).argmin(axis=0)
        return (nearest * self.skip + (self.skip - 1)).astype(np.float64).reshape(np.shape(sigma))

    def uniform(self, n: int) -> np.ndarray:
        start, end = self.sigma_to_t(self.sigma_max), self.sigma_to_t(self.sigma_min)
        return self.t_to_sigma(np.linspace(start, end, n))


def _karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> np.ndarray:
    ramp = np.linspace(0, 1, n)
    min_inv_rho, max_inv_rho = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho


def _exponential(n: int, sigma_min: float, sigma_max: float) -> np.ndarray:
    return np.exp(np.linspace(np.log(sigma_max), np.log(sigma_min), n))


def _sgm_uniform(n: int, levels: NoiseLevels) -> np.ndarray:
    start, end = levels.sigma_to_t(levels.sigma_max), levels.sigma_to_t(levels.sigma_min)
    return levels.t_to_sigma(np.linspace(start, end, n + 1)[:-1])


def a1111_sigmas(schedule: str, steps: int, levels: NoiseLevels, discard_penultimate: bool = False) -> np.ndarray:
    """The ``steps + 1`` noise levels A1111 samples at for a schedule-type label, the last one 0.

    ``schedule`` is the label that runs ("Automatic" meaning the model's uniform spacing, not a
    sampler's default: resolve that first). ``discard_penultimate`` is DPM2's and DPM2 a's option.
    """
    n = steps + 1 if discard_penultimate else steps
    if schedule == "Automatic":
        sigmas = levels.uniform(n)
    elif schedule == "Karras":
        sigmas = _karras(n, levels.sigma_min, levels.sigma_max)
    elif schedule == "Exponential":
        sigmas = _exponential(n, levels.sigma_min, levels.sigma_max)
    elif schedule == "SGM Uniform":
        sigmas = _sgm_uniform(n, levels)
    else:
        raise ValueError(f"unknown schedule type {schedule!r}; valid: Automatic, Karras, Exponential, SGM Uniform")
    sigmas = np.append(sigmas, 0.0)
    if discard_penultimate:
        sigmas = np.delete(sigmas, -2)
    return sigmas
