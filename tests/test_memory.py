"""Memory options: chunked guidance, VAE gradient checkpointing, VAE slicing/tiling and model
CPU offload leave the images as they were (peak memory is measured in bench/bench_memory.py)."""

import numpy as np
import pytest
from conftest import draw_strokes

from gradop.pipeline import GradopPipeline

PROMPT = "a photo of a fox beside a tree"


def pixels(result):
    return np.stack([np.asarray(image, dtype=np.int16) for image in result.images])


@pytest.mark.parametrize("precision", ["native", "bf16"])  # "auto" is either, depending on the CPU
def test_chunked_guidance_and_checkpointing_give_the_same_images(tiny_pipe, strokes, precision):
    # lr 0.1: Adam moves a latent element whose gradient is only float noise by about +-lr, so a
    # larger step turns the summation order's noise on this random-weight model into visible pixel
    # differences (max 12/255 at 0.4); on the demo model the default's chunked and whole images
    # differ by at most 1/255 in fp32 (4/255 on average under bf16: README, guidance_batch).
    common = dict(steps=4, grad_steps=3, lr=0.1, num_images=2, seed=0, guidance_precision=precision)
    whole = tiny_pipe.gradop_plus(PROMPT, strokes, guidance_batch=2, **common)
    per_image = tiny_pipe.gradop_plus(PROMPT, strokes, guidance_batch=1, **common)
    checkpointed = tiny_pipe.gradop_plus(PROMPT, strokes, guidance_checkpointing=True, **common)
    difference = np.abs(pixels(whole) - pixels(per_image))
    if precision == "native":
        assert difference.max() <= 1  # float summation order only
        assert whole.losses == pytest.approx(per_image.losses, rel=1e-5)
    else:  # bf16 rounds a batch differently from one image: close, not equal
        assert difference.mean() <= 2 and whole.losses == pytest.approx(per_image.losses, rel=1e-2)
    assert np.array_equal(pixels(per_image), pixels(checkpointed))
    assert not tiny_pipe.vae.is_gradient_checkpointing  # switched on for the call only
    assert "guidance_batch" not in whole.params and "guidance_checkpointing" not in whole.params


def test_load_time_memory_options_keep_generation_working(tiny_pipe, strokes):
    saving = GradopPipeline.from_pretrained("tiny-random", device="cpu", vae_slicing=True, vae_tiling=True,
                                            cpu_offload=True)
    assert saving.vae.use_slicing and saving.vae.use_tiling
    assert hasattr(saving.unet, "_hf_hook")  # accelerate's offload hook (a no-op move on a CPU-only machine)
    for method in ("gradop+", "sdedit"):
        ours = saving.generate(method, PROMPT, draw_strokes(), steps=3, grad_steps=2, num_images=2, seed=1)
        plain = tiny_pipe.generate(method, PROMPT, draw_strokes(), steps=3, grad_steps=2, num_images=2, seed=1)
        assert np.abs(pixels(ours) - pixels(plain)).max() <= 1, method
