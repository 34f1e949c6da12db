"""Samplers, schedule types and eta run as AUTOMATIC1111 1.10 runs them, and every record says what ran.

Three layers:

1. Each scheduler against a reference loop written here from k-diffusion's sampler functions (the ones
   A1111 calls) and A1111's schedule formulas, with a toy model: noise levels, model timesteps, step
   formulas, eta and noise all have to agree. The reference uses numpy's interpolation, scipy's
   quadrature (LMS) and torchsde's BrownianTree directly, not the code under test.
2. The tiny SD model through the engine (ancestral DPM++ 2S a, DPM++ SDE's Brownian tree, DDIM's eta).
3. Every sampler × schedule type through ``/sdapi/v1/txt2img``: what the response, the PNG and the gallery
   record say is what the scheduler that ran was set to.
"""

from __future__ import annotations

import inspect
import json
import math
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

torch = pytest.importorskip("torch", reason="the samplers need the image extras (torch, diffusers)")
pytest.importorskip("diffusers", reason="the samplers need the image extras (torch, diffusers)")
torchsde = pytest.importorskip("torchsde", reason="DPM++ SDE needs torchsde (a dependency)")

import httpx  # noqa: E402
import numpy as np  # noqa: E402
from click.testing import CliRunner  # noqa: E402
from scipy import integrate  # noqa: E402

from aigc_studio.cli.main import cli  # noqa: E402
from aigc_studio.config import load_config  # noqa: E402
from aigc_studio.contracts import SAMPLERS, SCHEDULERS, ImageRequest  # noqa: E402
from aigc_studio.engines.diffusers_engine import DiffusersEngine  # noqa: E402
from aigc_studio.engines.samplers import (  # noqa: E402
    SAMPLER_RULES,
    SchedulerCache,
    check_sampler,
    sampler_fields,
    schedule_that_runs,
)
from aigc_studio.errors import InvalidRequest  # noqa: E402
from aigc_studio.images.infotext import parse_infotext, read_infotext, to_request_fields  # noqa: E402
from aigc_studio.images.sd_configs import SD_SCHEDULER  # noqa: E402
from aigc_studio.studio import Studio  # noqa: E402
from tests.tiny_models import build_tiny_sd  # noqa: E402

from .conftest import a1111_server  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore:__array:DeprecationWarning"),
    # the reference's own torchsde trees clamp queries at their rounded ends, as k-diffusion's do
    pytest.mark.filterwarnings("ignore:Should have t:UserWarning"),
]

LABELS = list(SCHEDULERS.values())
K_SAMPLERS = [name for name in SAMPLERS if SAMPLER_RULES[name].honours_schedule]
ETA_SAMPLERS = [name for name in K_SAMPLERS if SAMPLER_RULES[name].eta_default is not None]
MODEL_CONFIG = {**SD_SCHEDULER, "_class_name": "PNDMScheduler"}  # stable-diffusion-v1-5's


# ---------------------------------------------------------------------------------------------------
# The reference: A1111's schedules and k-diffusion's samplers, from their formulas


def alphas_cumprod() -> np.ndarray:
    """ldm's register_schedule for SD's "scaled_linear" betas: float64, kept as float32 (A1111's buffer)."""
    betas = np.linspace(SD_SCHEDULER["beta_start"] ** 0.5, SD_SCHEDULER["beta_end"] ** 0.5, 1000) ** 2
    return np.cumprod(1 - betas).astype(np.float32).astype(np.float64)


class Levels:
    """k-diffusion's DiscreteSchedule, by numpy interpolation of log sigma over the training steps."""

    def __init__(self, cumprod: np.ndarray):
        self.log_sigmas = np.log(np.sqrt((1 - cumprod) / cumprod))
        self.steps = np.arange(len(cumprod), dtype=np.float64)

    def t_to_sigma(self, t):
        return np.exp(np.interp(t, self.steps, self.log_sigmas))

    def sigma_to_t(self, sigma):
        return np.interp(np.log(sigma), self.log_sigmas, self.steps)

    @property
    def sigma_min(self):
        return math.exp(self.log_sigmas[0])

    @property
    def sigma_max(self):
        return math.exp(self.log_sigmas[-1])


class LCMLevels(Levels):
    """A1111's LCMCompVisDenoiser: training steps 19, 39, ..., 999; the model sees the nearest one."""

    def __init__(self, cumprod: np.ndarray):
        super().__init__(cumprod[19::20])
        self.lcm_t = np.arange(19, 1000, 20, dtype=np.float64)

    def t_to_sigma(self, t):
        return np.exp(np.interp(t, self.lcm_t, self.log_sigmas))

    def sigma_to_t(self, sigma):
        return self.lcm_t[np.abs(np.log(np.atleast_1d(sigma))[:, None] - self.log_sigmas).argmin(axis=1)]


def reference_sigmas(label: str, steps: int, levels: Levels, discard_penultimate: bool = False) -> np.ndarray:
    """modules/sd_schedulers.py: karras (rho 7), exponential, sgm_uniform; Automatic is get_sigmas(n)."""
    n = steps + 1 if discard_penultimate else steps
    top, bottom = (float(np.ravel(levels.sigma_to_t(sigma))[0]) for sigma in (levels.sigma_max, levels.sigma_min))
    if label == "Automatic":
        sigmas = levels.t_to_sigma(np.linspace(top, bottom, n))
    elif label == "Karras":
        rho = 7.0
        ramp = np.linspace(0, 1, n)
        sigmas = (
            levels.sigma_max ** (1 / rho) + ramp * (levels.sigma_min ** (1 / rho) - levels.sigma_max ** (1 / rho))
        ) ** rho
    elif label == "Exponential":
        sigmas = np.exp(np.linspace(math.log(levels.sigma_max), math.log(levels.sigma_min), n))
    else:
        sigmas = levels.t_to_sigma(np.linspace(top, bottom, n + 1)[:-1])
    sigmas = np.append(sigmas, 0.0)
    return np.delete(sigmas, -2) if discard_penultimate else sigmas


def toy_eps(model_input: torch.Tensor, t: float) -> torch.Tensor:
    """A deterministic stand-in for the UNet: a smooth function of its input and its timestep."""
    return 0.5 * model_input * math.cos(t / 250) + 0.05 * math.sin(t / 70)


class Reference:
    """k-diffusion's samplers over a CompVisDenoiser wrapping ``toy_eps`` (LCM: A1111's LCM denoiser)."""

    def __init__(self, levels: Levels, generators, seeds):
        self.levels, self.generators, self.seeds = levels, generators, seeds
        self.lcm = isinstance(levels, LCMLevels)

    def denoised(self, x, sigma):
        t = float(np.atleast_1d(self.levels.sigma_to_t(sigma))[0])
        x0 = x - sigma * toy_eps(x / math.sqrt(sigma**2 + 1), t)
        if not self.lcm:
            return x0
        scaled = t * 10
        return scaled / math.sqrt(scaled**2 + 0.25) * x0 + 0.25 / (scaled**2 + 0.25) * x

    def noise(self, like):  # A1111's per-image generators (randn_source CPU)
        return torch.cat([torch.randn((1, *like.shape[1:]), generator=g) for g in self.generators]).double()

    def brownian(self, x, sigmas):
        low, high = float(sigmas[sigmas > 0].min()), float(sigmas.max())
        trees = [torchsde.BrownianTree(low, torch.zeros(x.shape[1:]), high, entropy=seed) for seed in self.seeds]

        def sample(sigma, sigma_next):
            a, b = sorted((sigma, sigma_next))
            w = torch.stack([tree(a, b) for tree in trees]).double()
            return (-1 if sigma > sigma_next else 1) * w / math.sqrt(abs(b - a))

        return sample

    @staticmethod
    def ancestral(sigma, sigma_next, eta):
        if not eta:
            return sigma_next, 0.0
        up = min(sigma_next, eta * math.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2))
        return math.sqrt(sigma_next**2 - up**2), up

    def run(self, sampler: str, x, sigmas, eta=None):
        return getattr(self, "sample_" + sampler.lower().replace("+", "p").replace(" ", "_"))(x, list(sigmas), eta)

    def sample_euler(self, x, s, eta):
        for i in range(len(s) - 1):
            x = x + (x - self.denoised(x, s[i])) / s[i] * (s[i + 1] - s[i])
        return x

    def sample_euler_a(self, x, s, eta):
        for i in range(len(s) - 1):
            denoised = self.denoised(x, s[i])
            down, up = self.ancestral(s[i], s[i + 1], eta)
            x = x + (x - denoised) / s[i] * (down - s[i])
            if s[i + 1] > 0:
                x = x + self.noise(x) * up
        return x

    def sample_lms(self, x, s, eta, order=4):
        ds = []
        for i in range(len(s) - 1):
            ds = [*ds, (x - self.denoised(x, s[i])) / s[i]][-order:]
            cur = min(i + 1, order)

            def coeff(j, i=i, cur=cur):
                def basis(tau):
                    return math.prod((tau - s[i - k]) / (s[i - j] - s[i - k]) for k in range(cur) if k != j)

                return integrate.quad(basis, s[i], s[i + 1], epsrel=1e-6)[0]

            x = x + sum(coeff(j) * d for j, d in zip(range(cur), reversed(ds), strict=True))
        return x

    def sample_heun(self, x, s, eta):
        for i in range(len(s) - 1):
            d = (x - self.denoised(x, s[i])) / s[i]
            if s[i + 1] == 0:
                x = x + d * (s[i + 1] - s[i])
            else:
                x_2 = x + d * (s[i + 1] - s[i])
                d_2 = (x_2 - self.denoised(x_2, s[i + 1])) / s[i + 1]
                x = x + (d + d_2) / 2 * (s[i + 1] - s[i])
        return x

    def sample_dpm2(self, x, s, eta):
        for i in range(len(s) - 1):
            d = (x - self.denoised(x, s[i])) / s[i]
            if s[i + 1] == 0:
                x = x + d * (s[i + 1] - s[i])
            else:
                mid = math.exp((math.log(s[i]) + math.log(s[i + 1])) / 2)
                x_2 = x + d * (mid - s[i])
                x = x + (x_2 - self.denoised(x_2, mid)) / mid * (s[i + 1] - s[i])
        return x

    def sample_dpm2_a(self, x, s, eta):
        for i in range(len(s) - 1):
            d = (x - self.denoised(x, s[i])) / s[i]
            down, up = self.ancestral(s[i], s[i + 1], eta)
            if down == 0:
                x = x + d * (down - s[i])
            else:
                mid = math.exp((math.log(s[i]) + math.log(down)) / 2)
                x_2 = x + d * (mid - s[i])
                x = x + (x_2 - self.denoised(x_2, mid)) / mid * (down - s[i])
                x = x + self.noise(x) * up
        return x

    def sample_dpmpp_2s_a(self, x, s, eta):
        for i in range(len(s) - 1):
            denoised = self.denoised(x, s[i])
            down, up = self.ancestral(s[i], s[i + 1], eta)
            if down == 0:
                x = x + (x - denoised) / s[i] * (down - s[i])
            else:
                t, t_next = -math.log(s[i]), -math.log(down)
                h = t_next - t
                mid = math.exp(-(t + h / 2))
                x_2 = (mid / s[i]) * x - math.expm1(-h / 2) * denoised
                x = (down / s[i]) * x - math.expm1(-h) * self.denoised(x_2, mid)
            if s[i + 1] > 0:
                x = x + self.noise(x) * up
        return x

    def sample_dpmpp_2m(self, x, s, eta):
        old = None
        for i in range(len(s) - 1):
            denoised = self.denoised(x, s[i])
            if s[i + 1] == 0:
                x = denoised
            else:
                h = math.log(s[i]) - math.log(s[i + 1])
                if old is not None:
                    r = (math.log(s[i - 1]) - math.log(s[i])) / h
                    denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old
                else:
                    denoised_d = denoised
                x = (s[i + 1] / s[i]) * x - math.expm1(-h) * denoised_d
            old = denoised
        return x

    def sample_dpmpp_sde(self, x, s, eta, r=0.5):
        noise = self.brownian(x, np.array(s))
        for i in range(len(s) - 1):
            denoised = self.denoised(x, s[i])
            if s[i + 1] == 0:
                x = x + (x - denoised) / s[i] * (s[i + 1] - s[i])
                continue
            t, t_next = -math.log(s[i]), -math.log(s[i + 1])
            h = t_next - t
            sigma_s = math.exp(-(t + h * r))
            down, up = self.ancestral(s[i], sigma_s, eta)
            x_2 = (down / s[i]) * x - math.expm1(math.log(down / s[i])) * denoised
            x_2 = x_2 + noise(s[i], sigma_s) * up
            denoised_2 = self.denoised(x_2, sigma_s)
            down, up = self.ancestral(s[i], s[i + 1], eta)
            fac = 1 / (2 * r)
            x = (down / s[i]) * x - math.expm1(math.log(down / s[i])) * ((1 - fac) * denoised + fac * denoised_2)
            x = x + noise(s[i], s[i + 1]) * up
        return x

    def sample_dpmpp_2m_sde(self, x, s, eta):
        noise = self.brownian(x, np.array(s))
        old = h_last = None
        for i in range(len(s) - 1):
            denoised = self.denoised(x, s[i])
            if s[i + 1] == 0:
                x = denoised
            else:
                h = math.log(s[i]) - math.log(s[i + 1])
                eta_h = eta * h
                x = s[i + 1] / s[i] * math.exp(-eta_h) * x - math.expm1(-h - eta_h) * denoised
                if old is not None:
                    x = x - 0.5 * math.expm1(-h - eta_h) * (h / h_last) * (denoised - old)
                if eta:
                    x = x + noise(s[i], s[i + 1]) * s[i + 1] * math.sqrt(-math.expm1(-2 * eta_h))
                h_last = h
            old = denoised
        return x

    def sample_lcm(self, x, s, eta):
        for i in range(len(s) - 1):
            x = self.denoised(x, s[i])
            if s[i + 1] > 0:
                x = x + s[i + 1] * self.noise(x)
        return x


def run_scheduler(scheduler, steps: int, noise: torch.Tensor, generators, seeds) -> torch.Tensor:
    """A diffusers pipeline's denoising loop around ``toy_eps``."""
    scheduler.set_timesteps(steps)
    if hasattr(scheduler, "noise_sampler_seed"):
        scheduler.noise_sampler_seed = seeds
    takes_generator = "generator" in inspect.signature(scheduler.step).parameters
    x = noise * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        eps = toy_eps(scheduler.scale_model_input(x, t), float(t))
        x = scheduler.step(eps, t, x, **({"generator": generators} if takes_generator else {})).prev_sample
    return x


def generators(seeds):
    return [torch.Generator("cpu").manual_seed(seed) for seed in seeds]


# ---------------------------------------------------------------------------------------------------
# 1. Schedulers against the reference


@pytest.mark.parametrize("schedule", LABELS)
@pytest.mark.parametrize("sampler", K_SAMPLERS)
def test_each_k_sampler_runs_a1111s_noise_levels_and_steps(sampler, schedule):
    scheduler, choice = SchedulerCache(MODEL_CONFIG).get(sampler, schedule)
    ran = schedule_that_runs(sampler, schedule)
    assert choice.schedule == ran and scheduler.schedule == ran
    levels = (LCMLevels if sampler == "LCM" else Levels)(alphas_cumprod())
    expected = reference_sigmas(ran, 5, levels, SAMPLER_RULES[sampler].discard_penultimate)
    scheduler.set_timesteps(5)
    # two-evaluation samplers repeat each level in diffusers' layout; the levels themselves are A1111's
    np.testing.assert_allclose(torch.unique_consecutive(scheduler.sigmas).numpy(), expected, rtol=2e-5)

    seeds = [11, 12]
    noise = torch.randn((2, 4, 8, 8), generator=torch.Generator().manual_seed(3))
    got = run_scheduler(scheduler, 5, noise, generators(seeds), seeds)
    reference = Reference(levels, generators(seeds), seeds)
    want = reference.run(sampler, noise.double() * expected[0], expected, SAMPLER_RULES[sampler].eta_default or 0.0)
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=2e-4)


@pytest.mark.parametrize("eta", [0.0, 0.5])
@pytest.mark.parametrize("sampler", ETA_SAMPLERS)
def test_eta_scales_the_noise_of_ancestral_and_sde_samplers_as_in_k_diffusion(sampler, eta):
    scheduler, _ = SchedulerCache(MODEL_CONFIG).get(sampler, "Karras", eta=eta)
    assert scheduler.eta == eta
    levels = Levels(alphas_cumprod())
    expected = reference_sigmas("Karras", 4, levels, SAMPLER_RULES[sampler].discard_penultimate)
    seeds = [5, 6]
    noise = torch.randn((2, 4, 8, 8), generator=torch.Generator().manual_seed(4))
    got = run_scheduler(scheduler, 4, noise, generators(seeds), seeds)
    want = Reference(levels, generators(seeds), seeds).run(sampler, noise.double() * expected[0], expected, eta)
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=2e-4)
    default = run_scheduler(SchedulerCache(MODEL_CONFIG).get(sampler, "Karras")[0], 4, noise, generators(seeds), seeds)
    assert (got - default).abs().max() > 1e-3  # eta changed the run


def test_timestep_samplers_run_a1111s_timesteps_whatever_the_schedule_type():
    cache = SchedulerCache(MODEL_CONFIG)
    ddim, choice = cache.get("DDIM", "Karras")
    assert choice.schedule == "Automatic"  # what ran, and so what is recorded
    ddim.set_timesteps(20)
    assert ddim.timesteps.tolist() == list(range(951, 0, -50))  # A1111: range(0, 1000, 1000 // steps) + 1
    plms, _ = cache.get("PLMS", "Exponential")
    plms.set_timesteps(20)
    assert sorted(set(plms.timesteps.tolist())) == list(range(1, 1000, 50))


def test_unipc_runs_a1111s_bh1_time_uniform_and_ends_at_the_smallest_noise_level():
    unipc, choice = SchedulerCache(MODEL_CONFIG).get("UniPC", "SGM Uniform")
    assert choice.schedule == "Automatic" and unipc.config.solver_type == "bh1" and unipc.config.solver_order == 3
    levels = Levels(alphas_cumprod())
    for steps in (1, 2, 4, 7, 20):
        unipc.set_timesteps(steps)
        np.testing.assert_allclose(unipc.timesteps.numpy(), np.linspace(999, 0, steps + 1)[:-1], atol=1e-4)
        assert unipc.sigmas[-1].item() == pytest.approx(levels.sigma_min, rel=1e-5)
        noise = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(steps))
        assert torch.isfinite(run_scheduler(unipc, steps, noise, None, None)).all()
    # what the studio avoids: diffusers' bh1 ending at sigma 0 divides by it
    from diffusers import UniPCMultistepScheduler

    to_zero = UniPCMultistepScheduler.from_config(MODEL_CONFIG, solver_type="bh1", final_sigmas_type="zero")
    assert not torch.isfinite(run_scheduler(to_zero, 4, torch.ones((1, 4, 8, 8)), None, None)).all()


def test_check_sampler_gives_what_runs_and_the_eta_that_applies():
    assert check_sampler("DPM++ 2M", "Automatic") == ("Karras", None)  # A1111's default for it, no eta
    assert check_sampler("DPM++ 2M SDE", "Automatic", 0.3) == ("Exponential", 0.3)
    assert check_sampler("Euler a", "Automatic") == ("Automatic", None)
    assert check_sampler("Euler", "Karras", 0.5) == ("Karras", None)  # Euler has no eta: A1111 ignores it
    assert check_sampler("DDIM", "Karras", 0.5) == ("Automatic", 0.5)  # DDIM ignores the schedule type
    assert check_sampler("UniPC", "Exponential", 1.0) == ("Automatic", None)
    with pytest.raises(ValueError, match=r"unknown scheduler .*'Beta'.*valid: Automatic, Karras"):
        check_sampler("Euler", "Beta")
    hires = ImageRequest(sampler_name="DPM++ 2M", enable_hr=True, hr_sampler_name="Euler a", eta=0.4)
    assert sampler_fields(hires) == {"scheduler": "Karras", "hr_scheduler": "Automatic", "eta": 0.4}


def test_infotext_writes_eta_only_where_a1111_does():
    from aigc_studio.images.infotext import params_from_request

    def eta_keys(sampler, eta):
        params = params_from_request({"sampler_name": sampler, "eta": eta, "steps": 2})
        return {key: value for key, value in params.items() if key.startswith("Eta") and value is not None}

    assert eta_keys("DDIM", 0.5) == {"Eta DDIM": 0.5} and eta_keys("DDIM", 0.0) == {} and eta_keys("DDIM", None) == {}
    assert eta_keys("Euler a", 0.5) == {"Eta": 0.5} and eta_keys("Euler a", 1.0) == {} and eta_keys("Euler", None) == {}
    parsed = parse_infotext("x\nSteps: 2, Sampler: DDIM, Eta DDIM: 0.25, Seed: 1")
    assert to_request_fields(parsed)["eta"] == 0.25


# ---------------------------------------------------------------------------------------------------
# 2. The tiny SD model through the engine


SIZE = 64


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_sd(tmp_path_factory.mktemp("tiny-samplers"), kind="sd15")


@pytest.fixture(scope="module")
def engine(tiny):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny model's ops gain nothing from threads (see test_tiny_models)
    yield DiffusersEngine("tiny", tiny.folder)
    torch.set_num_threads(threads)


def generate(engine, **fields) -> np.ndarray:
    defaults = {"prompt": "a cat", "steps": 3, "width": SIZE, "height": SIZE, "seed": 7, "subseed": 1, "cfg_scale": 5}
    result = engine.generate(ImageRequest(**{**defaults, **fields}), "txt2img")
    return np.stack([np.asarray(image, dtype=np.int16) for image in result.images])


def test_dpmpp_2s_a_is_ancestral_and_a_seed_repeats(engine):
    base = {"sampler_name": "DPM++ 2S a", "steps": 4}
    noisy = generate(engine, **base)
    assert np.array_equal(noisy, generate(engine, **base))
    assert not np.array_equal(noisy, generate(engine, **base, seed=8))
    quiet = generate(engine, **base, eta=0.0)
    assert np.abs(noisy - quiet).mean() > 1  # eta 1 adds fresh noise each step; eta 0 adds none
    scheduler = engine.pipeline.scheduler
    assert type(scheduler).__name__ == "A1111DPMPP2SAncestral" and len(scheduler.timesteps) == 2 * 4 - 1


def test_dpmpp_sde_draws_from_torchsdes_brownian_tree_one_per_image(engine):
    base = {"sampler_name": "DPM++ SDE", "steps": 3}
    batch = generate(engine, **base, batch_size=2)
    trees = engine.pipeline.scheduler.noise_sampler._sampler.tree.trees
    assert len(trees) == 2 and all(isinstance(tree, torchsde.BrownianInterval) for tree in trees)
    assert np.array_equal(batch, generate(engine, **base, batch_size=2))
    assert not np.array_equal(batch[0], generate(engine, **base, seed=9)[0])
    # image 2 of a batch is the image of its own seed (7 + 1), as in A1111: the trees are seeded per image
    alone = generate(engine, **base, seed=8)[0]
    assert np.abs(batch[1] - alone).max() <= 2  # the batched UNet rounds differently, by a pixel level at most


def test_ddim_eta_changes_the_result_and_zero_is_the_default(engine):
    default = generate(engine, sampler_name="DDIM")
    assert np.array_equal(default, generate(engine, sampler_name="DDIM", eta=0.0))
    assert np.abs(default - generate(engine, sampler_name="DDIM", eta=1.0)).mean() > 1


# ---------------------------------------------------------------------------------------------------
# 3. Every sampler × schedule type through /sdapi/v1/txt2img


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny):
    os.environ["AIGC_HOME"] = str(tmp_path_factory.mktemp("samplers-home"))
    studio = Studio(load_config(model="echo"))
    studio.registry.add(tiny.folder, model_id="tiny")
    with a1111_server(studio) as live:
        assert httpx.post(live.url + "/sdapi/v1/options", json={"sd_model_checkpoint": "tiny"}).status_code == 200
        live.engine = studio.registry.image_engine("tiny")
        yield live
    studio.close()


def txt2img(server, **fields) -> httpx.Response:
    body = {"prompt": "a fox", "steps": 1, "width": SIZE, "height": SIZE, "seed": 3, "cfg_scale": 1, **fields}
    return httpx.post(server.url + "/sdapi/v1/txt2img", json=body, timeout=120)


def job_count(server) -> int:
    return server.studio.db.conn.execute("SELECT count(*) FROM jobs").fetchone()[0]


@pytest.mark.parametrize("schedule", LABELS)
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_and_schedule_type_runs_what_it_records(server, sampler, schedule):
    response = txt2img(server, sampler_name=sampler, scheduler=schedule)
    assert response.status_code == 200, response.text
    info = json.loads(response.json()["info"])
    ran = schedule_that_runs(sampler, schedule)
    assert info["sampler_name"] == sampler and info["scheduler"] == ran
    assert f"Sampler: {sampler}, Schedule type: {ran}," in info["infotexts"][0]
    record = server.studio.images.list(limit=1)[0]
    assert record["params"]["scheduler"] == ran and f"Schedule type: {ran}," in read_infotext(record["path"])
    # ... and that is what the scheduler that ran was set to, at A1111's noise levels for it
    scheduler = server.engine.pipeline.scheduler
    if SAMPLER_RULES[sampler].honours_schedule:
        assert scheduler.schedule == ran
        levels = (LCMLevels if sampler == "LCM" else Levels)(alphas_cumprod())
        expected = reference_sigmas(ran, 1, levels, SAMPLER_RULES[sampler].discard_penultimate)
        np.testing.assert_allclose(torch.unique_consecutive(scheduler.sigmas).numpy(), expected, rtol=2e-5)
    else:
        assert scheduler.timesteps[0].item() == (999 if sampler == "UniPC" else 1)


def test_euler_a_with_karras_runs_karras_and_says_so(server):
    karras = txt2img(server, sampler_name="Euler a", scheduler="Karras", steps=3)
    scheduler = server.engine.pipeline.scheduler
    levels = Levels(alphas_cumprod())
    np.testing.assert_allclose(scheduler.sigmas.numpy(), reference_sigmas("Karras", 3, levels), rtol=2e-5)
    automatic = txt2img(server, sampler_name="Euler a", scheduler="Automatic", steps=3)
    assert karras.json()["images"][0] != automatic.json()["images"][0]
    assert "Sampler: Euler a, Schedule type: Karras, CFG scale: 1," in json.loads(karras.json()["info"])["infotexts"][0]


def test_eta_is_recorded_as_a1111_records_it(server):
    ddim = json.loads(txt2img(server, sampler_name="DDIM", eta=0.5, steps=2).json()["info"])["infotexts"][0]
    assert "Eta DDIM: 0.5" in ddim
    euler_a = json.loads(txt2img(server, sampler_name="Euler a", eta=0.25).json()["info"])["infotexts"][0]
    assert "Eta: 0.25" in euler_a and "Eta DDIM" not in euler_a
    euler = txt2img(server, sampler_name="Euler", eta=0.25)  # Euler has no eta: A1111 ignores it, so do we
    assert "Eta" not in json.loads(euler.json()["info"])["infotexts"][0]
    assert server.studio.images.list(limit=1)[0]["params"]["eta"] is None


def test_an_unknown_schedule_type_is_a_422_naming_it_and_queues_nothing(server):
    before = job_count(server)
    response = txt2img(server, sampler_name="Euler", scheduler="Beta")
    assert response.status_code == 422
    assert "schedule type" in response.text and "Beta" in response.text and "SGM Uniform" in response.text
    assert job_count(server) == before


def test_cli_takes_eta_and_the_picture_records_it(tiny, tmp_path):
    runner = CliRunner()
    assert runner.invoke(cli, ["models", "add", str(tiny.folder), "--name", "tiny"]).exit_code == 0
    out = tmp_path / "fox.png"
    args = ["image", "a fox", "--steps", "2", "--size", "64x64", "--seed", "9", "--sampler", "DDIM", "--eta", "0.5"]
    r = runner.invoke(cli, [*args, "--scheduler", "karras", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "Sampler: DDIM, Schedule type: Automatic," in read_infotext(out) and "Eta DDIM: 0.5" in read_infotext(out)


def test_a_sampler_check_that_fails_is_an_invalid_request_before_anything_is_queued(server):
    before = job_count(server)
    # the API's validation refuses this first; the service checks again for callers that bypass it
    bad = ImageRequest(steps=1, width=SIZE, height=SIZE).model_copy(update={"scheduler": "Beta", "eta": 2.0})
    with pytest.raises(InvalidRequest, match=r"unknown schedule type 'Beta'; valid: Automatic") as caught:
        server.studio.images.submit(bad)
    assert caught.value.param == "scheduler" and job_count(server) == before
    with pytest.raises(InvalidRequest, match=r"eta: Input should be less than or equal to 1") as caught:
        server.studio.images.submit(bad.model_copy(update={"scheduler": "Karras"}))
    assert caught.value.param == "eta" and job_count(server) == before
