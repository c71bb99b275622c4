"""Sampler schedules against A1111's (issue 23 #1): first and last sigma at 25 steps."""

import diffusers
import numpy as np
import pytest
import torch

from tools.engine.samplers import SAMPLER_TABLE, a1111_sampler_and_schedule

# The scheduler config SD1.5 checkpoints ship ("leading" spacing, steps_offset 1).
SD15_SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "prediction_type": "epsilon",
}


def a1111_uniform_sigmas(steps: int) -> np.ndarray:
    """k-diffusion's CompVisDenoiser.get_sigmas(n) (A1111 modules/sd_schedulers.py `uniform`,
    what "Automatic" gives Euler and Euler a): t = linspace(999, 0, n), log-sigma interpolated,
    then a final 0."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1 - betas, 0).numpy()
    log_sigmas = np.log(((1 - alphas_cumprod) / alphas_cumprod) ** 0.5)
    t = np.linspace(999, 0, steps)
    return np.append(np.exp(np.interp(t, np.arange(1000), log_sigmas)), 0.0)


@pytest.mark.parametrize("name", sorted(set(SAMPLER_TABLE) - {"ddim", "unipc"}))
def test_first_and_last_sigma_match_a1111_at_25_steps(name):
    class_name, _, options = SAMPLER_TABLE[name]
    scheduler = getattr(diffusers, class_name).from_config(SD15_SCHEDULER, **options)
    scheduler.set_timesteps(25)
    ours, theirs = scheduler.sigmas.double().numpy(), a1111_uniform_sigmas(25)
    assert ours[0] == pytest.approx(theirs[0], abs=1e-3)  # 14.6146, not leading's 11.68
    assert ours[0] == pytest.approx(14.6146, abs=1e-3)
    assert ours[-1] == theirs[-1] == 0.0
    # Not yet A1111's: diffusers' DPM-Solver "linspace" spacing takes 26 points and drops
    # t=0, so their last step starts at σ(40)≈0.199, where A1111's starts at σ(0)≈0.0292.
    if name != "dpmpp_2m":
        assert ours[-2] == pytest.approx(theirs[-2], abs=1e-3)


def test_ddim_runs_a1111s_leading_timesteps():
    # A1111 modules/sd_samplers_timesteps.py DDIM: range(0, 1000, 1000 // steps) + 1.
    class_name, _, options = SAMPLER_TABLE["ddim"]
    scheduler = getattr(diffusers, class_name).from_config(SD15_SCHEDULER, **options)
    scheduler.set_timesteps(25)
    assert scheduler.timesteps.tolist() == [t + 1 for t in range(0, 1000, 40)][::-1]


@pytest.mark.parametrize(
    ("label", "written"),
    [
        ("Euler a", ("Euler a", "Uniform")),
        ("DPM++ 2M", ("DPM++ 2M", "Uniform")),
        ("DPM++ 2M Karras", ("DPM++ 2M", "Karras")),
        ("DPM++ 2M SDE Karras", ("DPM++ 2M SDE", "Karras")),
        ("DDIM", ("DDIM", "Automatic")),
        ("LCM", ("LCM", "Automatic")),
    ],
)
def test_schedule_type_written_is_what_ran(label, written):
    # A1111 >= 1.9 modules/sd_samplers_kdiffusion.py: "DPM++ 2M" + "Automatic" is Karras.
    assert a1111_sampler_and_schedule(label) == written
