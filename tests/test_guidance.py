"""Spec tests of the GradOP+ guidance step, calling it directly with fakes that record.

Each test fails if one thing of the release's rule is wrong: the window, re-noising at t_{i+1}
with add_noise and the seeded generator, the loss against the raw strokes y, decoding the noisy
latent itself, and optimising before re-noising.
"""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler
from diffusers.utils.torch_utils import randn_tensor

from gradop.guidance import GradopPlusCallback, guidance_window, guide
from gradop.models import DDIM_SETTINGS, ddim_scheduler
from gradop.optimize import optimize_latents
from gradop.options import GradopPlusOptions

SHAPE = (1, 4, 4, 4)


class RecordingDecode:
    """A differentiable stand-in for the VAE decoder: latents (B,4,h,w) -> images (B,3,8h,8w)."""

    def __init__(self, log):
        self.log, self.inputs = log, []

    def __call__(self, z):
        self.inputs.append(z.detach().clone())
        self.log.append("decode")
        return torch.sigmoid(F.interpolate(z[:, :3], scale_factor=8, mode="nearest"))


class RecordingScheduler:
    """A stand-in scheduler that records add_noise calls and returns a recognisable result."""

    def __init__(self, log, timesteps):
        self.log, self.timesteps, self.calls = log, timesteps, []

    def add_noise(self, original, noise, timesteps):
        self.calls.append(dict(original=original.clone(), noise=noise.clone(), timesteps=timesteps.clone()))
        self.log.append("add_noise")
        return original + 100.0 + 0 * noise


def setting(grad_steps=3, lr=0.1):
    log = []
    z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    target = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    opts = GradopPlusOptions(grad_steps=grad_steps, lr=lr, strength=0.8, iterations=3)
    return log, z, target, opts


def half(x):
    return x * 0.5  # a painting function with f(y) != y, so loss against f(y) is detectable


def test_window_follows_the_release_float_arithmetic():
    assert guidance_window(50, 0.8, 3) == range(9, 12)  # int(50 * 0.19999...) = 9, not 10
    assert guidance_window(10, 0.8, 3) == range(1, 4)  # int(1.9999...) = 1
    assert guidance_window(50, 0.5, 5) == range(25, 30)
    assert guidance_window(50, 1.0, 3) == range(0, 3)
    assert guidance_window(10, 0.2, 5) == range(8, 9)  # never at or after the last step (9)
    assert guidance_window(10, 0.1, 3) == range(9, 9) and not guidance_window(10, 0.1, 3)
    assert not guidance_window(50, 0.0, 3)


def test_callback_guides_exactly_after_the_window_steps(monkeypatch):
    calls = []

    def fake_guide(z_next, t_next, *args, **kwargs):
        calls.append(int(t_next))
        return z_next, []

    monkeypatch.setattr("gradop.guidance.guide", fake_guide)
    timesteps = torch.arange(999, -1, -100)  # 10 steps
    pipe = SimpleNamespace(scheduler=SimpleNamespace(timesteps=timesteps))
    callback = GradopPlusCallback(None, None, None, None, GradopPlusOptions(strength=0.8, iterations=3), steps=10)
    for i, t in enumerate(timesteps):
        callback(pipe, i, t, {"latents": torch.zeros(SHAPE)})
    # Window [1, 4): guided after steps 1, 2 and 3, each at the NEXT timestep t_{i+1}.
    assert calls == [int(timesteps[2]), int(timesteps[3]), int(timesteps[4])]


def test_renoises_the_optimised_latent_at_t_next_with_the_seeded_generator():
    log, z, target, opts = setting()
    decode = RecordingDecode(log)
    scheduler = RecordingScheduler(log, None)
    t_next = torch.tensor(621)
    out, losses = guide(z, t_next, decode, target, half, scheduler, torch.Generator().manual_seed(7), opts)

    expected_opt, expected_losses = optimize_latents(z, RecordingDecode([]), target, half, steps=3, lr=0.1)
    (call,) = scheduler.calls
    assert torch.equal(call["timesteps"], t_next.reshape(1))
    assert torch.equal(call["noise"], randn_tensor(SHAPE, generator=torch.Generator().manual_seed(7)))
    assert torch.equal(call["original"], expected_opt) and not torch.equal(call["original"], z)
    assert torch.equal(out, expected_opt + 100.0)  # what add_noise returned is what sampling continues with
    assert losses == expected_losses


def test_optimises_first_then_renoises_once():
    log, z, target, opts = setting(grad_steps=4)
    guide(z, torch.tensor(500), RecordingDecode(log), target, half, RecordingScheduler(log, None),
          torch.Generator().manual_seed(0), opts)
    assert log == ["decode"] * 4 + ["add_noise"]


def test_decodes_the_noisy_latent_itself():
    log, z, target, opts = setting(grad_steps=2)
    decode = RecordingDecode(log)
    guide(z, torch.tensor(500), decode, target, half, RecordingScheduler(log, None), torch.Generator(), opts)
    assert torch.equal(decode.inputs[0], z)  # the scheduler's z_{t_{i+1}}, not a predicted x0
    assert not torch.equal(decode.inputs[1], z)  # and then the latent being optimised


def test_loss_is_against_the_raw_strokes_not_their_painting():
    log, z, target, opts = setting(grad_steps=1)
    _, losses = guide(z, torch.tensor(500), RecordingDecode(log), target, half, RecordingScheduler(log, None),
                      torch.Generator(), opts)
    painted = half(RecordingDecode([])(z))
    assert losses[0] == pytest.approx(F.mse_loss(painted, target).item(), rel=1e-6)
    assert losses[0] != pytest.approx(F.mse_loss(painted, half(target)).item(), rel=1e-3)


def test_real_ddim_add_noise_uses_alpha_bar_of_t_next():
    # With diffusers' own scheduler: z = sqrt(abar_{t_{i+1}}) z_opt + sqrt(1 - abar_{t_{i+1}}) eps.
    scheduler = DDIMScheduler(**DDIM_SETTINGS)
    scheduler.set_timesteps(50)
    i = 9
    t_next = scheduler.timesteps[i + 1]
    log, z, target, opts = setting(grad_steps=2)
    out, _ = guide(z, t_next, RecordingDecode(log), target, half, scheduler, torch.Generator().manual_seed(3), opts)
    z_opt, _ = optimize_latents(z, RecordingDecode([]), target, half, steps=2, lr=0.1)
    eps = randn_tensor(SHAPE, generator=torch.Generator().manual_seed(3))
    abar = scheduler.alphas_cumprod[t_next]
    assert torch.allclose(out, abar.sqrt() * z_opt + (1 - abar).sqrt() * eps, atol=1e-6)
    abar_now = scheduler.alphas_cumprod[scheduler.timesteps[i]]
    assert not torch.allclose(out, abar_now.sqrt() * z_opt + (1 - abar_now).sqrt() * eps, atol=1e-4)


def test_the_pipeline_runs_the_guidance_step_in_the_window(tiny_pipe, strokes, monkeypatch):
    import gradop.guidance

    seen, real_guide = [], gradop.guidance.guide

    def spy(z_next, t_next, *args, **kwargs):
        seen.append(int(t_next))
        return real_guide(z_next, t_next, *args, **kwargs)

    monkeypatch.setattr(gradop.guidance, "guide", spy)
    result = tiny_pipe.gradop_plus("a fox", strokes, steps=10, strength=0.8, iterations=3, grad_steps=1, seed=0)
    scheduler = DDIMScheduler.from_config(tiny_pipe.scheduler_config)
    scheduler.set_timesteps(10)
    assert seen == [int(scheduler.timesteps[i + 1]) for i in (1, 2, 3)]
    assert len(result.losses) == 3


# ----------------------------------------------------------------------------- predicted-x0 variant

def ddim_after_step(i=9):
    """gradop's DDIM (diffusers' class, recording its x0) right after its step i: (scheduler, z_{i+1}, t_{i+1})."""
    scheduler = ddim_scheduler(DDIMScheduler(**DDIM_SETTINGS).config)
    scheduler.set_timesteps(50)
    z_i = torch.randn(SHAPE, generator=torch.Generator().manual_seed(4))
    eps = torch.randn(SHAPE, generator=torch.Generator().manual_seed(5))
    z_next = scheduler.step(eps, scheduler.timesteps[i], z_i).prev_sample
    return scheduler, z_next, scheduler.timesteps[i + 1]


def test_scheduler_records_the_predicted_x0_of_its_latest_step():
    scheduler, z_next, t_next = ddim_after_step()
    abar = scheduler.alphas_cumprod[t_next]
    x0 = scheduler.last_x0
    # DDIM with eta 0: z_{i+1} = sqrt(abar) x0 + sqrt(1 - abar) eps_i, so (z_{i+1} - sqrt(abar) x0) / sqrt(1 - abar)
    # is the step's own noise prediction.
    eps = torch.randn(SHAPE, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(z_next, abar.sqrt() * x0 + (1 - abar).sqrt() * eps, atol=1e-5)


def test_x0_latent_optimises_the_predicted_x0_and_renoises_it_with_fresh_noise():
    scheduler, z_next, t_next = ddim_after_step()
    log, _, target, _ = setting(grad_steps=2)
    opts = GradopPlusOptions(grad_steps=2, lr=0.1, guidance_latent="x0")
    decode = RecordingDecode(log)
    out, _ = guide(z_next, t_next, decode, target, half, scheduler, torch.Generator().manual_seed(3), opts)
    assert torch.equal(decode.inputs[0], scheduler.last_x0)  # the decoder sees the clean estimate
    x0_opt, _ = optimize_latents(scheduler.last_x0, RecordingDecode([]), target, half, steps=2, lr=0.1)
    fresh = randn_tensor(SHAPE, generator=torch.Generator().manual_seed(3))
    abar = scheduler.alphas_cumprod[t_next]
    assert torch.allclose(out, abar.sqrt() * x0_opt + (1 - abar).sqrt() * fresh, atol=1e-6)


def test_x0_latent_without_a_recorded_step_says_what_is_missing():
    log, z, target, _ = setting()
    with pytest.raises(RuntimeError, match="predicted x0"):
        guide(z, torch.tensor(500), RecordingDecode(log), target, half, RecordingScheduler(log, None),
              torch.Generator(), GradopPlusOptions(guidance_latent="x0"))


def test_x0_variant_with_a_shared_text_pass_matches_a_fresh_run(tiny_pipe, strokes):
    from gradop.sharing import SharedPasses

    knobs = dict(steps=10, strength=0.8, iterations=2, grad_steps=2, seed=1, guidance_latent="x0")
    fresh = tiny_pipe.generate("gradop+", "a fox", strokes, **knobs)
    shared = SharedPasses()
    tiny_pipe.generate("text", "a fox", steps=10, seed=1, shared=shared)  # records the text-only trajectory
    resumed = tiny_pipe.generate("gradop+", "a fox", strokes, shared=shared, **knobs)
    noisy = tiny_pipe.generate("gradop+", "a fox", strokes, **(knobs | {"guidance_latent": "noisy"}))
    assert resumed.losses == pytest.approx(fresh.losses, rel=1e-5)
    assert resumed.losses != pytest.approx(noisy.losses, rel=1e-3)


# ---- guidance_latent "denoised": the loss on the UNet's predicted x0, differentiated through the UNet


class LinearUNet(torch.nn.Module):
    """A UNet stand-in whose output is a known function of its inputs: w * latents + the prompt
    embedding's mean (per row), so CFG mixing and x0 can be computed by hand."""

    dtype = torch.float32

    def __init__(self, w=0.5):
        super().__init__()
        self.w, self.calls = w, []

    def forward(self, sample, t, encoder_hidden_states, return_dict=True):
        self.calls.append((sample.shape[0], int(t)))
        out = self.w * sample + encoder_hidden_states.mean(dim=(1, 2)).view(-1, 1, 1, 1)
        return (out,)


def embeds(values):
    return torch.tensor(values, dtype=torch.float32).view(-1, 1, 1).expand(-1, 3, 2).contiguous()


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_denoiser_mixes_guidance_and_predicts_x0_by_ddim_formula(prediction_type):
    from gradop.guidance import Denoiser

    scheduler = DDIMScheduler(prediction_type=prediction_type)
    z = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    # Two images: negative rows (0.1, 0.2), prompt rows (1.0, 2.0), as diffusers concatenates them.
    denoiser = Denoiser(LinearUNet(), scheduler, embeds([0.1, 0.2, 1.0, 2.0]), guidance_scale=3.0)
    t = torch.tensor(700)
    abar = scheduler.alphas_cumprod[700]
    for rows, neg, pos in ((slice(0, 2), torch.tensor([0.1, 0.2]), torch.tensor([1.0, 2.0])),
                           (slice(1, 2), torch.tensor([0.2]), torch.tensor([2.0]))):
        out = 0.5 * z[rows] + (neg + 3.0 * (pos - neg)).view(-1, 1, 1, 1)
        expected = ((z[rows] - (1 - abar).sqrt() * out) / abar.sqrt() if prediction_type == "epsilon"
                    else abar.sqrt() * z[rows] - (1 - abar).sqrt() * out)
        assert torch.allclose(denoiser(z[rows], t, rows), expected, atol=1e-6), rows
    no_cfg = Denoiser(LinearUNet(), scheduler, embeds([1.0, 2.0]), guidance_scale=1.0)
    assert no_cfg.unet.calls == [] and no_cfg(z, t, slice(0, 2)).shape == z.shape
    assert no_cfg.unet.calls == [(2, 700)]  # one UNet batch, no unconditional half


def test_denoised_guidance_steps_against_the_gradient_through_the_unet_without_renoising():
    from gradop.guidance import Denoiser, guide_denoised

    scheduler = DDIMScheduler()
    log, _, target, _ = setting()
    z = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    denoiser = Denoiser(LinearUNet(), scheduler, embeds([0.0, 0.0, 0.3, -0.2]), guidance_scale=7.5)
    t = torch.tensor(600)
    opts = GradopPlusOptions(guidance_latent="denoised", grad_steps=2, lr=0.05)
    out, losses = guide_denoised(z, t, denoiser, RecordingDecode(log), target, half, opts)
    # By hand: two steps of lr along each image's RMS-normalised gradient of the batch's loss.
    expected = z.clone()
    for _ in range(2):
        x = expected.clone().requires_grad_(True)
        loss = F.mse_loss(half(RecordingDecode([])(denoiser(x, t, slice(0, 2)))), target.expand(2, -1, -1, -1))
        (g,) = torch.autograd.grad(loss, [x])
        expected = expected - 0.05 * g / g.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
    assert torch.allclose(out, expected, atol=1e-5)
    assert len(losses) == 2 and losses[1] < losses[0]
    one, _ = guide_denoised(z, t, denoiser, RecordingDecode([]), target, half,
                            GradopPlusOptions(guidance_latent="denoised", grad_steps=1, lr=0.05))
    moved = (one - z).pow(2).mean(dim=(1, 2, 3)).sqrt()  # one step moves each image by lr in RMS
    assert torch.allclose(moved, torch.full((2,), 0.05), atol=1e-6)
    # One image at a time (guidance_batch) gives the same step.
    chunked, _ = guide_denoised(z, t, denoiser, RecordingDecode([]), target, half,
                                GradopPlusOptions(guidance_latent="denoised", grad_steps=2, lr=0.05, guidance_batch=1))
    assert torch.allclose(chunked, out, atol=1e-5)


def test_denoised_guidance_needs_the_unet_and_the_prompts():
    log, z, target, _ = setting()
    opts = GradopPlusOptions(guidance_latent="denoised")
    with pytest.raises(ValueError, match="needs the UNet"):
        GradopPlusCallback(RecordingDecode(log), target, half, torch.Generator(), opts, steps=10)
    callback = GradopPlusCallback(RecordingDecode(log), target, half, torch.Generator(), opts, steps=10,
                                  unet=LinearUNet())
    assert callback.tensor_inputs == ["latents", "prompt_embeds"]
    pipe = SimpleNamespace(scheduler=ddim_scheduler(DDIM_SETTINGS))
    pipe.scheduler.set_timesteps(10)
    with pytest.raises(RuntimeError, match="prompt embeddings"):
        callback(pipe, callback.window.start, pipe.scheduler.timesteps[callback.window.start], {"latents": z})


def test_denoised_variant_follows_the_strokes_and_resumes_a_shared_text_pass(tiny_pipe, strokes):
    from gradop.sharing import SharedPasses

    knobs = dict(steps=10, strength=0.8, iterations=4, grad_steps=1, lr=0.3, seed=1, guidance_latent="denoised")
    fresh = tiny_pipe.generate("gradop+", "a fox", strokes, **knobs)
    assert len(fresh.losses) == 4 and fresh.losses[-1] < fresh.losses[0]
    shared = SharedPasses()
    tiny_pipe.generate("text", "a fox", steps=10, seed=1, shared=shared)  # records the text-only trajectory
    resumed = tiny_pipe.generate("gradop+", "a fox", strokes, shared=shared, **knobs)
    assert resumed.losses == pytest.approx(fresh.losses, rel=1e-5)
    assert resumed.params["guidance_latent"] == "denoised"


# ---- guidance_latent "denoised-fast": the sampler's own x0 held fixed (no pass through the UNet)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_sampled_x0_is_the_denoiser_with_the_unets_output_frozen(prediction_type):
    """For a UNet whose output does not depend on the latents (w = 0), SampledX0 built from one
    prediction is the Denoiser everywhere: same x0, same gradient, without calling any UNet."""
    from gradop.guidance import Denoiser, SampledX0

    scheduler = DDIMScheduler(prediction_type=prediction_type)
    t = torch.tensor(500)
    z0 = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(2))
    denoiser = Denoiser(LinearUNet(w=0.0), scheduler, embeds([0.1, 0.2, 1.0, -1.0]), guidance_scale=4.0)
    sampled = SampledX0(denoiser(z0, t, slice(0, 2)), z0, scheduler, t)
    z = z0 + 0.3 * torch.randn(z0.shape, generator=torch.Generator().manual_seed(3))
    for rows in (slice(0, 2), slice(1, 2)):
        assert torch.allclose(sampled(z[rows], t, rows), denoiser(z[rows], t, rows), atol=1e-5), rows
    assert torch.allclose(sampled(z0, t, slice(0, 2)), denoiser(z0, t, slice(0, 2)), atol=1e-6)
    # With a UNet that does depend on the latents the two differ: the fast step skips its Jacobian.
    full = Denoiser(LinearUNet(w=0.5), scheduler, embeds([0.1, 0.2, 1.0, -1.0]), guidance_scale=4.0)
    assert not torch.allclose(SampledX0(full(z0, t, slice(0, 2)), z0, scheduler, t)(z, t, slice(0, 2)),
                              full(z, t, slice(0, 2)), atol=1e-3)


def test_sampled_x0_refuses_a_model_that_predicts_the_sample():
    # With "sample" prediction the frozen output *is* x0, so no gradient would reach the latents.
    from gradop.guidance import SampledX0

    z = torch.zeros(1, 4, 3, 3)
    with pytest.raises(ValueError, match="denoised-fast.*not 'sample'"):
        SampledX0(z, z, DDIMScheduler(prediction_type="sample"), torch.tensor(500))


def test_fast_denoised_variant_calls_the_unet_only_to_sample_and_follows_the_strokes(tiny_pipe, strokes):
    from gradop.sharing import SharedPasses

    knobs = dict(steps=10, strength=0.8, iterations=4, grad_steps=1, lr=0.3, seed=1)
    calls = []
    handle = tiny_pipe.unet.register_forward_hook(lambda *_: calls.append(1))
    try:
        fast = tiny_pipe.generate("gradop+", "a fox", strokes, guidance_latent="denoised-fast", **knobs)
        fast_calls, calls[:] = len(calls), []
        full = tiny_pipe.generate("gradop+", "a fox", strokes, guidance_latent="denoised", **knobs)
    finally:
        handle.remove()
    assert fast_calls == 10 and len(calls) == 10 + 4  # the sampling loop's passes; denoised adds one per pull
    assert len(fast.losses) == 4 and fast.losses[-1] < fast.losses[0]
    assert fast.losses != pytest.approx(full.losses, rel=1e-3)  # the sampler's x0 of step i, not a new one
    assert fast.params["guidance_latent"] == "denoised-fast"
    shared = SharedPasses()
    tiny_pipe.generate("text", "a fox", steps=10, seed=1, shared=shared)
    resumed = tiny_pipe.generate("gradop+", "a fox", strokes, shared=shared, guidance_latent="denoised-fast", **knobs)
    assert resumed.losses == pytest.approx(fast.losses, rel=1e-5)


def test_fast_denoised_guidance_needs_the_samplers_x0_not_the_unet():
    log, z, target, _ = setting()
    callback = GradopPlusCallback(RecordingDecode(log), target, half, torch.Generator(),
                                  GradopPlusOptions(guidance_latent="denoised-fast", lr=0.05), steps=10)
    assert callback.tensor_inputs == ["latents"]
    pipe = SimpleNamespace(scheduler=ddim_scheduler(DDIM_SETTINGS))
    pipe.scheduler.set_timesteps(10)
    with pytest.raises(RuntimeError, match="predicted x0"):
        callback(pipe, callback.window.start, pipe.scheduler.timesteps[callback.window.start], {"latents": z})
