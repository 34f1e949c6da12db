"""diffusers schedulers that run AUTOMATIC1111's samplers: its noise levels, its eta, its noise.

A1111 1.10 samples with k-diffusion (and, for DDIM, PLMS and UniPC, with its own timestep samplers).
Where diffusers has the same algorithm, a small subclass gives it A1111's noise levels
(``k_schedules.a1111_sigmas``) and A1111's model timesteps (unrounded, as k-diffusion calls the model);
where diffusers has none (Euler a with eta, DPM2 a with eta, DPM++ 2S a, LCM with schedule types), the
subclass carries the k-diffusion step itself. ``samplers.py`` says which runs for which A1111 name.

What every k-diffusion sampler here shares with A1111:

- the first latents are the noise times the largest sigma (diffusers' "leading" spacing multiplies by
  ``sqrt(sigma² + 1)`` instead), in the variance-preserving form for DPM-Solver;
- the noise an ancestral step adds comes from the pipeline's ``generator``: the engine passes one CPU
  generator per image, seeded with its seed, as A1111 draws its sampler noise image by image;
- the stochastic DPM++ samplers draw from torchsde's Brownian tree with one tree per image, seeded with
  the image's seed (``noise_sampler_seed``, a list), as A1111's ``create_noise_sampler`` does.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    KDPM2AncestralDiscreteScheduler,
    UniPCMultistepScheduler,
)
from diffusers.schedulers.scheduling_dpmsolver_sde import BrownianTreeNoiseSampler, DPMSolverSDEScheduler
from diffusers.schedulers.scheduling_euler_discrete import EulerDiscreteSchedulerOutput
from diffusers.schedulers.scheduling_k_dpm_2_ancestral_discrete import KDPM2AncestralDiscreteSchedulerOutput
from diffusers.schedulers.scheduling_lms_discrete import LMSDiscreteScheduler
from diffusers.utils.torch_utils import randn_tensor

from .k_schedules import LCMNoiseLevels, NoiseLevels, a1111_sigmas

__all__ = [
    "A1111DDIM",
    "A1111DPMPP2M",
    "A1111DPMPP2MSDE",
    "A1111DPMPPSDE",
    "A1111LCM",
    "A1111LMS",
    "A1111DPM2Ancestral",
    "A1111DPMPP2SAncestral",
    "A1111Euler",
    "A1111EulerAncestral",
    "A1111Heun",
    "A1111UniPC",
    "ancestral_step",
]


def ancestral_step(sigma, sigma_next, eta: float):
    """k-diffusion's ``get_ancestral_step``: the (sigma_down, sigma_up) that reach ``sigma_next`` with
    ``eta`` × the noise a DDPM step would add (numbers or arrays)."""
    if eta == 0:
        return sigma_next, sigma_next * 0
    sigma_up = np.minimum(sigma_next, eta * np.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2))
    return np.sqrt(sigma_next**2 - sigma_up**2), sigma_up


def _denoised(prediction_type: str, model_output: torch.Tensor, sample: torch.Tensor, sigma) -> torch.Tensor:
    """The model's prediction of the clean latents at noise level ``sigma`` (k-diffusion's ``denoised``)."""
    if prediction_type == "epsilon":
        return sample - sigma * model_output
    if prediction_type == "v_prediction":
        return model_output * (-sigma / (sigma**2 + 1) ** 0.5) + sample / (sigma**2 + 1)
    raise ValueError(f"prediction_type {prediction_type!r} is not supported; use epsilon or v_prediction")


def _noise(like: torch.Tensor, generator) -> torch.Tensor:
    return randn_tensor(like.shape, generator=generator, device=like.device, dtype=like.dtype)


class _BrownianNoise:
    """k-diffusion's Brownian-tree noise sampler over a schedule's sigmas, one tree per seed (per image),
    kept on the CPU in float32 like every other draw of the engine, so a seed gives the same noise on
    any device."""

    def __init__(self, sample: torch.Tensor, sigmas: torch.Tensor, seeds):
        levels = sigmas[sigmas > 0]
        like = torch.zeros(sample.shape, dtype=torch.float32)
        self._sampler = BrownianTreeNoiseSampler(like, levels.min().item(), levels.max().item(), seeds)

    def __call__(self, sigma: float, sigma_next: float, like: torch.Tensor) -> torch.Tensor:
        with warnings.catch_warnings():
            # torchsde rounds the tree's ends to its tolerance (1e-6), so a query at the largest or smallest
            # sigma lands just outside and is clamped back, with a warning each time; k-diffusion (A1111)
            # queries the same values and gets the same clamp
            warnings.filterwarnings("ignore", message="Should have t[ab][<>]=t[01]", category=UserWarning)
            noise = self._sampler(sigma, sigma_next)
        return noise.to(device=like.device, dtype=like.dtype)


# ---------------------------------------------------------------------------------------------------
# diffusers' own algorithms at A1111's noise levels


class A1111Sigmas:
    """Mixin for a diffusers scheduler with a Karras branch in ``set_timesteps``: that branch takes its noise
    levels from ``_convert_to_karras``, which here returns A1111's for ``schedule``. Build the scheduler
    with ``use_karras_sigmas=True`` so that the branch runs, whatever ``schedule`` is."""

    schedule = "Automatic"  # the schedule type that runs ("Automatic": the model's uniform spacing)
    discard_penultimate = False
    variance_preserving = False  # DPM-Solver keeps its latents at unit variance

    def set_timesteps(self, num_inference_steps: int, device=None, *args, **kwargs) -> None:
        levels = NoiseLevels(self.alphas_cumprod)
        self._a1111_sigmas = a1111_sigmas(self.schedule, num_inference_steps, levels, self.discard_penultimate)
        super().set_timesteps(num_inference_steps, device, *args, **kwargs)
        self._begin_index = 0  # a repeated timestep must not make the first step skip one (see index_for_timestep)

    def _convert_to_karras(self, in_sigmas, num_inference_steps=None) -> np.ndarray:
        return self._a1111_sigmas[:-1].copy()

    @property
    def init_noise_sigma(self) -> float:
        # k-diffusion starts from noise × the largest sigma; diffusers' "leading" spacing uses sqrt(σ² + 1)
        sigma = float(self.sigmas.max())
        return sigma / math.sqrt(sigma**2 + 1) if self.variance_preserving else sigma

    @init_noise_sigma.setter
    def init_noise_sigma(self, value) -> None:
        pass  # diffusers' __init__ assigns one; the property above is the one that counts


class A1111Euler(A1111Sigmas, EulerDiscreteScheduler):
    """A1111's Euler: diffusers' Euler step (k-diffusion's ``sample_euler``) at A1111's noise levels."""


class A1111LMS(A1111Sigmas, LMSDiscreteScheduler):
    """A1111's LMS (order 4), its coefficients integrated exactly rather than by scipy's quadrature."""

    def get_lms_coefficient(self, order: int, t: int, current_order: int) -> float:
        # the integrand is a Lagrange basis polynomial, so its antiderivative is exact
        sigmas = [float(self.sigmas[t - k]) for k in range(order)]
        basis = np.polynomial.Polynomial([1.0])
        for k in range(order):
            if k != current_order:
                basis *= np.polynomial.Polynomial([-sigmas[k], 1.0]) / (sigmas[current_order] - sigmas[k])
        antiderivative = basis.integ()
        return float(antiderivative(float(self.sigmas[t + 1])) - antiderivative(sigmas[0]))


class A1111Heun(A1111Sigmas, HeunDiscreteScheduler):
    """A1111's Heun: diffusers' Heun (k-diffusion's ``sample_heun``: Euler on the last step)."""


class A1111DPMPP2M(A1111Sigmas, DPMSolverMultistepScheduler):
    """A1111's DPM++ 2M: DPM-Solver++(2M) with the model called at k-diffusion's unrounded timesteps."""

    variance_preserving = True

    def set_timesteps(self, num_inference_steps: int, device=None, **kwargs) -> None:
        super().set_timesteps(num_inference_steps, device=device, **kwargs)
        # diffusers rounds these to integers; k-diffusion calls the model at the exact ones
        exact = NoiseLevels(self.alphas_cumprod).sigma_to_t(self._a1111_sigmas[:-1])
        self.timesteps = torch.from_numpy(exact.astype(np.float32)).to(device=device)


class A1111DPMPP2MSDE(A1111DPMPP2M):
    """A1111's DPM++ 2M SDE (midpoint): diffusers' ``sde-dpmsolver++`` with k-diffusion's eta and its
    Brownian-tree noise, one tree per image seeded with ``noise_sampler_seed``."""

    eta = 1.0
    noise_sampler_seed: list[int] | int | None = None

    def set_timesteps(self, num_inference_steps: int, device=None, **kwargs) -> None:
        super().set_timesteps(num_inference_steps, device=device, **kwargs)
        self.noise_sampler = None

    def step(self, model_output, timestep, sample, generator=None, variance_noise=None, return_dict=True):
        if self.step_index is None:
            self._init_step_index(timestep)
        sigma, sigma_next = self.sigmas[self.step_index], self.sigmas[self.step_index + 1]
        if variance_noise is None:
            if sigma_next > 0:
                if self.noise_sampler is None:
                    self.noise_sampler = _BrownianNoise(sample, self.sigmas, self.noise_sampler_seed)
                variance_noise = self.noise_sampler(sigma.item(), sigma_next.item(), sample)
            else:
                variance_noise = torch.zeros_like(sample)
        return super().step(model_output, timestep, sample, variance_noise=variance_noise, return_dict=return_dict)

    def _sde_terms(self):
        """(alpha_t, sigma_t, sigma_s, h) of the current step, in DPM-Solver's variance-preserving form."""
        alpha_t, sigma_t = self._sigma_to_alpha_sigma_t(self.sigmas[self.step_index + 1])
        alpha_s, sigma_s = self._sigma_to_alpha_sigma_t(self.sigmas[self.step_index])
        h = (torch.log(alpha_t) - torch.log(sigma_t)) - (torch.log(alpha_s) - torch.log(sigma_s))
        return alpha_t, sigma_t, sigma_s, h

    def _sde_update(self, sample, denoised, correction, noise):
        # k-diffusion's sample_dpmpp_2m_sde step with eta, in variance-preserving form
        if self.sigmas[self.step_index + 1] == 0:
            return denoised
        alpha_t, sigma_t, sigma_s, h = self._sde_terms()
        eta_h = self.eta * h
        weight = alpha_t * -torch.expm1(-h - eta_h)
        x = (sigma_t / sigma_s * torch.exp(-eta_h)) * sample + weight * denoised + 0.5 * weight * correction
        return x + sigma_t * torch.sqrt(-torch.expm1(-2 * eta_h)) * noise

    def dpm_solver_first_order_update(self, model_output, *args, sample=None, noise=None, **kwargs):
        if self.eta == 1.0:
            return super().dpm_solver_first_order_update(model_output, *args, sample=sample, noise=noise, **kwargs)
        return self._sde_update(sample, model_output, 0.0, noise)

    def multistep_dpm_solver_second_order_update(self, model_output_list, *args, sample=None, noise=None, **kwargs):
        if self.eta == 1.0:
            return super().multistep_dpm_solver_second_order_update(
                model_output_list, *args, sample=sample, noise=noise, **kwargs
            )
        m0, m1 = model_output_list[-1], model_output_list[-2]
        _, _, _, h = self._sde_terms()
        alpha_s1, sigma_s1 = self._sigma_to_alpha_sigma_t(self.sigmas[self.step_index - 1])
        alpha_s0, sigma_s0 = self._sigma_to_alpha_sigma_t(self.sigmas[self.step_index])
        h_last = (torch.log(alpha_s0) - torch.log(sigma_s0)) - (torch.log(alpha_s1) - torch.log(sigma_s1))
        return self._sde_update(sample, m0, (h / h_last) * (m0 - m1), noise)


class A1111DPMPPSDE(A1111Sigmas, DPMSolverSDEScheduler):
    """A1111's DPM++ SDE: diffusers' ``DPMSolverSDEScheduler`` (k-diffusion's ``sample_dpmpp_sde``, r = ½,
    torchsde's Brownian tree, one tree per image) with k-diffusion's eta."""

    eta = 1.0

    def step(self, model_output, timestep, sample, return_dict=True, s_noise: float = 1.0):
        if self.step_index is None:
            self._init_step_index(timestep)
        if self.noise_sampler is None:
            self.noise_sampler = _BrownianNoise(sample, self.sigmas, self.noise_sampler_seed)
        first = self.state_in_first_order
        # the sigmas are laid out [s0, s1, s1, s2, s2, ..., 0]: a step's pair sits at (2k, 2k + 1)
        index = self.step_index if first else self.step_index - 1
        sigma, sigma_next = self.sigmas[index].item(), self.sigmas[index + 1].item()
        sigma_mid = math.sqrt(sigma * sigma_next)  # exp(-(t + h/2)) in k-diffusion's t = -log sigma
        sample = sample.to(torch.float32)
        denoised = _denoised(self.config.prediction_type, model_output, sample, sigma if first else sigma_mid)
        if sigma_next == 0:  # the last step is Euler's
            prev_sample = denoised
        elif first:
            sigma_down, sigma_up = ancestral_step(sigma, sigma_mid, self.eta)
            prev_sample = (sigma_down / sigma) * sample - (sigma_down / sigma - 1) * denoised
            prev_sample = prev_sample + self.noise_sampler(sigma, sigma_mid, sample) * s_noise * sigma_up
            self.sample, self.mid_point_sigma = sample, sigma_mid
        else:
            sigma_down, sigma_up = ancestral_step(sigma, sigma_next, self.eta)
            prev_sample = (sigma_down / sigma) * self.sample - (sigma_down / sigma - 1) * denoised
            prev_sample = prev_sample + self.noise_sampler(sigma, sigma_next, sample) * s_noise * sigma_up
            self.sample, self.mid_point_sigma = None, None
        self._step_index += 1
        prev_sample = prev_sample.to(model_output.dtype)
        if not return_dict:
            return prev_sample, denoised
        return EulerDiscreteSchedulerOutput(prev_sample=prev_sample, pred_original_sample=denoised)


# ---------------------------------------------------------------------------------------------------
# k-diffusion steps diffusers does not have


class A1111EulerAncestral(A1111Sigmas, EulerDiscreteScheduler):
    """A1111's Euler a (k-diffusion's ``sample_euler_ancestral``): an Euler step to ``sigma_down``, then
    ``sigma_up`` × fresh noise; ``eta`` scales that noise (1: A1111's default, 0: plain Euler)."""

    eta = 1.0

    def step(self, model_output, timestep, sample, generator=None, return_dict=True, **unused):
        if self.step_index is None:
            self._init_step_index(timestep)
        sigma, sigma_next = self.sigmas[self.step_index].item(), self.sigmas[self.step_index + 1].item()
        sample = sample.to(torch.float32)
        denoised = _denoised(self.config.prediction_type, model_output, sample, sigma)
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, self.eta)
        prev_sample = sample + (sample - denoised) / sigma * (sigma_down - sigma)
        if sigma_next > 0:
            prev_sample = prev_sample + _noise(prev_sample, generator) * sigma_up
        self._step_index += 1
        prev_sample = prev_sample.to(model_output.dtype)
        if not return_dict:
            return prev_sample, denoised
        return EulerDiscreteSchedulerOutput(prev_sample=prev_sample, pred_original_sample=denoised)


class A1111DPM2Ancestral(KDPM2AncestralDiscreteScheduler):
    """A1111's DPM2 a (k-diffusion's ``sample_dpm_2_ancestral``) at A1111's noise levels with its eta;
    with ``eta`` 0 it is A1111's DPM2 (``sample_dpm_2``), which is the same step without the noise.

    Two model evaluations per step, as diffusers' KDPM2 ancestral scheduler lays them out: at sigma, then
    at the log-midpoint between sigma and sigma_down; the last step (to 0) is one Euler step.
    """

    schedule = "Automatic"
    discard_penultimate = True  # A1111 drops the smallest non-zero sigma for DPM2 and DPM2 a
    eta = 1.0

    def set_timesteps(self, num_inference_steps: int, device=None, num_train_timesteps=None) -> None:
        levels = NoiseLevels(self.alphas_cumprod)
        sigmas = a1111_sigmas(self.schedule, num_inference_steps, levels, self.discard_penultimate)
        self.num_inference_steps = num_inference_steps
        down, up = ancestral_step(sigmas[:-1], sigmas[1:], self.eta)
        down, up = np.append(down, 0.0), np.append(up, 0.0)
        with np.errstate(divide="ignore"):  # sigma_down 0 on the last step: its midpoint is 0
            mid = np.exp((np.log(sigmas) + np.log(down)) / 2)
        mid[-2:] = 0.0

        def interleave(values: np.ndarray) -> torch.Tensor:
            # diffusers' layout: entry 2k holds step k's value for its first evaluation and 2k + 1 its second
            tensor = torch.from_numpy(values.astype(np.float32))
            return torch.cat([tensor[:1], tensor[1:].repeat_interleave(2), tensor[-1:]])

        self.sigmas, self.sigmas_interpol = interleave(sigmas), interleave(mid)
        self.sigmas_up, self.sigmas_down = interleave(up), interleave(down)
        self.log_sigmas = torch.from_numpy(levels.log_sigmas.astype(np.float32))
        main = levels.sigma_to_t(sigmas[:-1])
        midpoints = levels.sigma_to_t(mid[: num_inference_steps - 1])
        timesteps = np.empty(2 * num_inference_steps - 1)
        timesteps[0::2], timesteps[1::2] = main, midpoints
        self.timesteps = torch.from_numpy(timesteps.astype(np.float32)).to(device=device)
        self.sample = None
        self._step_index = None
        self._begin_index = 0

    @property
    def init_noise_sigma(self) -> float:
        return float(self.sigmas.max())


class A1111DPMPP2SAncestral(A1111DPM2Ancestral):
    """A1111's DPM++ 2S a (k-diffusion's ``sample_dpmpp_2s_ancestral``): per step, a DPM-Solver++ half step
    to the log-midpoint between sigma and sigma_down, a second model evaluation there, a full step to
    sigma_down from it, then ``sigma_up`` × fresh noise from the image's generator (``eta`` scales it)."""

    discard_penultimate = False

    def step(self, model_output, timestep, sample, generator=None, return_dict=True):
        if self.step_index is None:
            self._init_step_index(timestep)
        first = self.state_in_first_order
        index = self.step_index if first else self.step_index - 1
        sigma, sigma_mid = self.sigmas[index].item(), self.sigmas_interpol[index].item()
        sigma_down, sigma_up = self.sigmas_down[index].item(), self.sigmas_up[index].item()
        sample = sample.to(torch.float32)
        denoised = _denoised(self.config.prediction_type, model_output, sample, sigma if first else sigma_mid)
        if first and sigma_down == 0:  # the last step: Euler to 0
            prev_sample = denoised
        elif first:  # x_2 = sigma_mid/sigma · x − expm1(−h/2) · denoised, h = log(sigma / sigma_down)
            prev_sample = (sigma_mid / sigma) * sample - (sigma_mid / sigma - 1) * denoised
            self.sample = sample
        else:
            prev_sample = (sigma_down / sigma) * self.sample - (sigma_down / sigma - 1) * denoised
            prev_sample = prev_sample + _noise(prev_sample, generator) * sigma_up
            self.sample = None
        self._step_index += 1
        prev_sample = prev_sample.to(model_output.dtype)
        if not return_dict:
            return prev_sample, denoised
        return KDPM2AncestralDiscreteSchedulerOutput(prev_sample=prev_sample, pred_original_sample=denoised)


class A1111LCM(EulerDiscreteScheduler):
    """A1111's LCM sampler (its ``sample_lcm`` over ``LCMCompVisDenoiser``): LCM's 50 noise levels spaced by
    the schedule type, the model called at the nearest LCM timestep, its prediction passed through LCM's
    boundary condition, then noise at the next level from the image's generator."""

    schedule = "Automatic"

    def set_timesteps(self, num_inference_steps: int, device=None, **unused) -> None:
        levels = LCMNoiseLevels(self.alphas_cumprod)
        sigmas = a1111_sigmas(self.schedule, num_inference_steps, levels)
        self.num_inference_steps = num_inference_steps
        self.sigmas = torch.from_numpy(sigmas.astype(np.float32))
        self.timesteps = torch.from_numpy(levels.sigma_to_t(sigmas[:-1]).astype(np.float32)).to(device=device)
        self._step_index = None
        self._begin_index = 0  # LCM timesteps repeat when levels are close: never look the first one up

    @property
    def init_noise_sigma(self) -> float:
        return float(self.sigmas.max())

    def step(self, model_output, timestep, sample, generator=None, return_dict=True, **unused):
        if self.step_index is None:
            self._init_step_index(timestep)
        sigma, sigma_next = self.sigmas[self.step_index].item(), self.sigmas[self.step_index + 1].item()
        scaled = float(self.timesteps[self.step_index]) * 10.0  # LCM's timestep scaling, sigma_data 0.5
        c_skip, c_out = 0.25 / (scaled**2 + 0.25), scaled / (scaled**2 + 0.25) ** 0.5
        sample = sample.to(torch.float32)
        denoised = c_out * _denoised(self.config.prediction_type, model_output, sample, sigma) + c_skip * sample
        prev_sample = denoised
        if sigma_next > 0:
            prev_sample = prev_sample + _noise(prev_sample, generator) * sigma_next
        self._step_index += 1
        prev_sample = prev_sample.to(model_output.dtype)
        if not return_dict:
            return prev_sample, denoised
        return EulerDiscreteSchedulerOutput(prev_sample=prev_sample, pred_original_sample=denoised)


# ---------------------------------------------------------------------------------------------------
# A1111's timestep samplers: they ignore the schedule type


class A1111DDIM(DDIMScheduler):
    """DDIM with A1111's eta (default 0), which the engine sets here rather than through the pipeline."""

    eta = 0.0

    def step(self, model_output, timestep, sample, generator=None, return_dict=True):
        return super().step(model_output, timestep, sample, eta=self.eta, generator=generator, return_dict=return_dict)


class A1111UniPC(UniPCMultistepScheduler):
    """UniPC as A1111 runs it (variant bh1, order 3, lower order at the end, "time_uniform" steps): the model
    times evenly spaced from 999 to 0 and unrounded, the last step ending at timestep 0's noise level, not at
    0 — which is also what keeps bh1 finite (it divides by the final sigma)."""

    def set_timesteps(self, num_inference_steps: int, device=None, **kwargs) -> None:
        super().set_timesteps(num_inference_steps, device=device, **kwargs)
        # A1111's UniPC interpolates log(alpha) linearly in continuous time; its model time is t·N − 1
        n_train = len(self.alphas_cumprod)
        times = np.linspace(n_train - 1, 0, num_inference_steps + 1)
        log_alpha = 0.5 * np.log(self.alphas_cumprod.double().numpy())
        alphas_cumprod = np.exp(2 * np.interp(times, np.arange(n_train), log_alpha))
        self.sigmas = torch.from_numpy(np.sqrt((1 - alphas_cumprod) / alphas_cumprod).astype(np.float32))
        self.timesteps = torch.from_numpy(times[:-1].astype(np.float32)).to(device=device)
