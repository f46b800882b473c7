"""Painting-loss gradients through an fp16/bf16 decoder match fp32 (gradop.precision).

The decoder has Stable Diffusion's VAE structure (4 up blocks, 2 resnets each + 1, attention in
the middle, 8x upsampling) at the full 512/768 px image size with few channels: fp16's
underflow comes from the number of pixel values in the loss's mean, not from the width, and
the full width would need ~15 GiB here (bench/bench_guidance_precision.py measures it).
"""

import pytest
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from gradop.optimize import latent_gradient
from gradop.painting import make_painting_fn
from gradop.precision import decoder_dtype, guidance_decode, resolve_precision


def narrow_sd_vae(dtype):
    torch.manual_seed(0)
    return AutoencoderKL(block_out_channels=(4, 8, 16, 16), layers_per_block=2, latent_channels=4, norm_num_groups=4,
                         down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                         ).eval().requires_grad_(False).to(dtype)


def strokes_target(size):
    target = torch.ones(1, 3, size, size)
    target[:, :, size // 8 : size // 2, size // 8 : size // 2] = torch.tensor([0.15, 0.35, 0.85]).view(1, 3, 1, 1)
    target[:, :, size // 2 :, size // 2 :] = torch.tensor([0.8, 0.2, 0.15]).view(1, 3, 1, 1)
    return target


def gradient(vae, precision, size, latents):
    decode = guidance_decode(vae, precision)
    with decode.prepared():
        return latent_gradient(latents, decode, strokes_target(size), make_painting_fn("blur", size, size),
                               loss_scale=decode.loss_scale)[1]


def cosine(a, b):
    return F.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0).item()


@pytest.fixture(scope="module", params=[512, 768])
def case(request):
    size = request.param
    latents = torch.randn(1, 4, size // 8, size // 8, generator=torch.Generator().manual_seed(0))
    return size, latents, gradient(narrow_sd_vae(torch.float32), "native", size, latents)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_auto_precision_gradient_matches_fp32(case, dtype):
    size, latents, reference = case
    vae = narrow_sd_vae(dtype)
    grad = gradient(vae, "auto", size, latents)
    assert cosine(grad, reference) >= 0.99, (size, dtype)
    assert (grad == 0).float().mean() < 0.01
    assert decoder_dtype(vae) == dtype  # the fp32 mode gives the decoder back in its own dtype


def test_native_fp16_gradient_underflows_at_768(case):
    # What the auto mode fixes: without it the fp16 gradient loses its direction.
    size, latents, reference = case
    if size != 768:
        pytest.skip("the sharper case is enough to show the test can fail")
    assert cosine(gradient(narrow_sd_vae(torch.float16), "native", size, latents), reference) < 0.99


def test_fp32_mode_casts_the_decoder_for_the_optimisation_only():
    vae = narrow_sd_vae(torch.bfloat16)
    decode = guidance_decode(vae, "fp32")
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    with decode.prepared():
        assert decoder_dtype(vae) == torch.float32 and next(vae.encoder.parameters()).dtype == torch.bfloat16
    assert all(torch.equal(v, vae.state_dict()[k]) and v.dtype == vae.state_dict()[k].dtype for k, v in before.items())


def test_bf16_mode_backpropagates_in_bf16_and_matches_fp32(case):
    size, latents, reference = case
    vae = narrow_sd_vae(torch.float32)
    seen = set()
    hook = vae.decoder.conv_out.register_full_backward_hook(lambda m, gi, go: seen.add(go[0].dtype))
    try:
        grad = gradient(vae, "bf16", size, latents)
    finally:
        hook.remove()
    assert seen == {torch.bfloat16}  # the decoder's backward ran in bf16, not in the VAE's fp32
    assert cosine(grad, reference) >= 0.99, size


@pytest.mark.parametrize("fast_bf16", [True, False])
def test_auto_uses_bf16_for_fp32_on_cpus_that_compute_it_natively(monkeypatch, fast_bf16):
    from gradop import precision

    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: fast_bf16)
    assert resolve_precision("auto", torch.float32, "cpu") == ("bf16" if fast_bf16 else "native")
    assert resolve_precision("auto", torch.float32, "cuda") == "native"
    assert resolve_precision("auto", torch.float16, "cpu") == "scaled"
    assert guidance_decode(narrow_sd_vae(torch.float32)).mode == ("bf16" if fast_bf16 else "native")


def test_precision_modes_resolve_per_dtype():
    assert resolve_precision("auto", torch.float32) == "native"
    assert resolve_precision("auto", torch.float16) == "scaled"
    assert resolve_precision("fp32", torch.float32) == "native"  # nothing to do in fp32
    assert resolve_precision("scaled", torch.bfloat16) == "scaled"
    assert resolve_precision("bf16", torch.float32) == "bf16"  # an fp32 model's decoder at bf16 speed
    assert resolve_precision("bf16", torch.bfloat16) == "native"
    with pytest.raises(ValueError, match="'bf16' is for fp32 or bf16 models"):
        resolve_precision("bf16", torch.float16)
    with pytest.raises(ValueError, match="unknown guidance precision"):
        resolve_precision("fp8", torch.float16)


def denoised_gradient(unet, vae, precision, size, latents, embeds):
    """The gradient guidance_latent "denoised" takes: the loss on the decode of the UNet's x0,
    through the UNet and the decoder."""
    from diffusers import DDIMScheduler

    from gradop.guidance import Denoiser

    decode = guidance_decode(vae, precision)
    denoiser = Denoiser(unet, DDIMScheduler(), embeds.to(unet.dtype), guidance_scale=7.5)
    with decode.prepared():
        return latent_gradient(latents, lambda z: decode(denoiser(z, torch.tensor(700), slice(0, 1))),
                               strokes_target(size), make_painting_fn("blur", size, size),
                               loss_scale=decode.loss_scale)[1]


def test_denoised_guidance_gradient_through_an_fp16_unet_matches_fp32():
    # fp16 on CUDA is where SD users run: the scaled loss must also carry the UNet's backward pass.
    from gradop.tiny import tiny_components

    size = 256  # 197k pixel values: per-pixel gradients of the mean below fp16's normal range already
    latents = torch.randn(1, 4, size // 8, size // 8, generator=torch.Generator().manual_seed(0))
    embeds = torch.randn(2, 8, 32, generator=torch.Generator().manual_seed(1))
    unet = tiny_components(seed=0)["unet"].eval().requires_grad_(False)
    reference = denoised_gradient(unet, narrow_sd_vae(torch.float32), "native", size, latents, embeds)
    unet.to(torch.float16)
    grad = denoised_gradient(unet, narrow_sd_vae(torch.float16), "auto", size, latents, embeds)
    assert cosine(grad, reference) >= 0.99
    assert (grad == 0).float().mean() < 0.01
    native = denoised_gradient(unet, narrow_sd_vae(torch.float16), "native", size, latents, embeds)
    assert cosine(native, reference) < cosine(grad, reference)  # what the scaled loss fixes


def test_fast_denoised_guidance_gradient_in_fp16_matches_fp32():
    # "denoised-fast" differentiates only the decoder, at the sampler's (here fp16) x0: the scaled
    # loss must keep that gradient as it does the release's step.
    from diffusers import DDIMScheduler

    from gradop.guidance import SampledX0

    size, t = 512, torch.tensor(700)
    latents = torch.randn(1, 4, size // 8, size // 8, generator=torch.Generator().manual_seed(0))
    x0 = torch.randn(latents.shape, generator=torch.Generator().manual_seed(1))

    def fast_gradient(dtype, precision):
        decode = guidance_decode(narrow_sd_vae(dtype), precision)
        sampled = SampledX0(x0.to(dtype), latents.to(dtype), DDIMScheduler(), t)
        with decode.prepared():
            return latent_gradient(latents.to(dtype), lambda z: decode(sampled(z, t, slice(0, 1))),
                                   strokes_target(size), make_painting_fn("blur", size, size),
                                   loss_scale=decode.loss_scale)[1]

    reference = fast_gradient(torch.float32, "native")
    grad = fast_gradient(torch.float16, "auto")
    assert cosine(grad, reference) >= 0.99
    assert (grad == 0).float().mean() < 0.01
    assert cosine(fast_gradient(torch.float16, "native"), reference) < cosine(grad, reference)
