"""train/grounding.py: training the demo UNet for region control (grounding loss, training under the bias)."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gradop.world import CLASSES, WORD_CLASSES  # noqa: E402
from gradop.world.demo_model import demo_tokenizer, demo_unet  # noqa: E402
from train.grounding import (CrossAttentionTraining, bias_scale, grounding_loss, token_classes,  # noqa: E402
                             train_cross_attention)


def small_unet():
    return demo_unet(seed=0, channels=(16, 32, 32), heads=2, text_width=16, cross_everywhere=True)


HOUSE = CLASSES.index("house")


def house_labels(size: int) -> torch.Tensor:
    """Two samples with a house in different places (a word must follow pixels, not a place)."""
    labels = torch.zeros(2, size, size, dtype=torch.long)
    labels[0, size * 5 // 8:, size // 8: size // 2] = HOUSE
    labels[1, : size * 3 // 8, size * 5 // 8:] = HOUSE
    return labels


def test_processor_without_bias_keeps_the_unet_output_and_records_every_layer():
    unet = small_unet().eval()
    sample, context = torch.randn(2, 4, 16, 16), torch.randn(2, 5, 16)
    with torch.no_grad():
        plain = unet(sample, 10, context).sample
        state = train_cross_attention(unet, len(CLASSES))
        state.begin(torch.full((2, 5), -1), house_labels(16))
        captured = unet(sample, 10, context).sample
    torch.testing.assert_close(captured, plain, atol=1e-5, rtol=1e-4)
    crosses = [m for m in unet.modules() if getattr(m, "is_cross_attention", False)]
    assert len(state.maps) == len(crosses) >= 6  # every resolution, down and up
    assert {tuple(a.shape[1:]) for a in state.maps} == {(256, 5), (64, 5), (16, 5)}
    for attention in state.maps:
        torch.testing.assert_close(attention.sum(-1), torch.ones(attention.shape[:2]))


def test_the_training_bias_pulls_a_class_word_onto_its_pixels_per_sample():
    unet = small_unet().eval()
    sample, context = torch.randn(2, 4, 16, 16), torch.randn(2, 3, 16)
    state = train_cross_attention(unet, len(CLASSES))
    token_class = torch.tensor([[-1, HOUSE, -1]] * 2)
    with torch.no_grad():
        state.begin(token_class, house_labels(16))
        plain = unet(sample, 10, context).sample
        free = [m[:, :, 1].clone() for m in state.maps]
        state.begin(token_class, house_labels(16), torch.tensor([3.0, 0.0]))  # only the first sample
        biased = unet(sample, 10, context).sample
    mask = state.token_masks(16)[0][0, 1] > 0.5  # the house at the 16x16 layers
    assert biased[0].sub(plain[0]).abs().max() > 1e-3
    torch.testing.assert_close(biased[1], plain[1], atol=1e-5, rtol=1e-4)
    first = next(i for i, m in enumerate(state.maps) if m.shape[1] == 256)
    assert state.maps[first][0, mask, 1].mean() > free[first][0, mask].mean() + 0.3
    torch.testing.assert_close(state.maps[first][0, ~mask, 1], free[first][0, ~mask])  # no bias outside


def test_bias_scale_draws_a_strength_for_a_share_of_samples():
    alphas_cumprod = torch.linspace(0.999, 0.01, 1000)
    timesteps = torch.tensor([10, 500, 999] * 200)
    never = bias_scale(timesteps, alphas_cumprod, 0.0, 2.0, torch.Generator().manual_seed(0))
    half = bias_scale(timesteps, alphas_cumprod, 0.5, 2.0, torch.Generator().manual_seed(0))
    assert never.abs().max() == 0
    assert 0.4 < (half > 0).float().mean() < 0.6
    sigma = ((1 - alphas_cumprod[timesteps]) / alphas_cumprod[timesteps]).sqrt()
    assert bool((half <= 2.0 * torch.log1p(sigma) + 1e-6).all())
    assert half[timesteps == 999].mean() > half[timesteps == 10].mean()  # strong at high noise


def test_token_classes_maps_class_words_and_nothing_else():
    tokenizer = demo_tokenizer()
    table = token_classes(tokenizer, WORD_CLASSES, CLASSES)
    ids = tokenizer("a photo of a red hut under a sunset sky", add_special_tokens=False)["input_ids"]
    named = {CLASSES[table[i]] for i in ids if table[i] >= 0}
    assert named == {"house", "sky"}
    assert table[tokenizer.bos_token_id] == -1 and table[tokenizer.eos_token_id] == -1


def _maps(inside_share: float, mask: torch.Tensor) -> torch.Tensor:
    """(1, 16, 3) attention at a 4x4 layer: token 1 puts inside_share of its mass on mask."""
    flat = mask.flatten().float()
    token = inside_share * flat / flat.sum() + (1 - inside_share) * (1 - flat) / (1 - flat).sum()
    others = torch.full((16,), 1 / 16)
    columns = torch.stack([others, token, others], -1)
    return (columns / columns.sum(-1, keepdim=True))[None]


def _loss(maps: torch.Tensor, token_class: torch.Tensor, labels: torch.Tensor) -> float:
    state = CrossAttentionTraining(len(CLASSES))
    state.begin(token_class, labels)
    state.maps.append(maps)
    return grounding_loss(state).item()


def test_grounding_loss_is_zero_on_the_class_and_one_off_it():
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    labels[0, 2:, 1:3] = HOUSE
    token_class = torch.tensor([[-1, HOUSE, -1]])
    on, off, half = (_maps(s, labels[0] == HOUSE) for s in (1.0, 0.0, 0.5))
    # The token's attention is renormalised over pixels, so per-pixel rescaling of the rows does not matter.
    assert _loss(on, token_class, labels) == pytest.approx(0.0, abs=1e-6)
    assert _loss(off, token_class, labels) == pytest.approx(1.0, abs=1e-4)
    assert 0.1 < _loss(half, token_class, labels) < 0.4
    # A word whose class is not in the image, and tokens without a class, do not count.
    assert _loss(on, torch.tensor([[-1, CLASSES.index("boat"), -1]]), labels) == 0
    assert _loss(on, torch.tensor([[-1, -1, -1]]), labels) == 0


def test_training_on_the_loss_moves_a_words_attention_onto_its_class():
    torch.manual_seed(0)
    unet = small_unet()
    state = train_cross_attention(unet, len(CLASSES))
    sample, context = torch.randn(2, 4, 8, 8), torch.randn(2, 3, 16)
    token_class = torch.tensor([[-1, HOUSE, -1]] * 2)
    optimizer = torch.optim.Adam(unet.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        state.begin(token_class, house_labels(8))
        unet(sample, 10, context)
        loss = grounding_loss(state)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_train_unet_trains_under_region_control_end_to_end(tmp_path):
    """train/train_unet.py with --train-bias, --ground, --paste and --moves on a few rendered world-3
    scenes and moved-class examples: it runs, logs the grounding loss, and writes a pipeline gradop
    loads and samples from."""
    import json
    import subprocess

    from gradop.pipeline import GradopPipeline

    repo = Path(__file__).resolve().parents[1]
    vae = repo / "pretrained_models" / "gradop-demo" / "vae"

    def run(script, *args):
        subprocess.run([sys.executable, str(repo / "train" / script), *map(str, args)], cwd=tmp_path, check=True,
                       capture_output=True, text=True)

    data = tmp_path / "train.npz"
    run("render_dataset.py", "--world", 3, "--start", 0, "--count", 6, "--workers", 1, "--out", data)
    for key in ("photos", "paintings", "crayons"):
        run("encode_latents.py", "--data", data, "--vae", vae, "--key", key, "--out", tmp_path / f"latents_{key}.pt")
    moves = tmp_path / "moves.npz"
    run("render_moves.py", "--count", 5, "--scenes", 6, "--workers", 1, "--vae", vae, "--out", moves)
    run("train_unet.py", "--data", data, "--vae", vae, "--out", tmp_path / "demo", "--steps", 25, "--batch", 4,
        "--channels", "16,32,32", "--heads", 2, "--text-width", 32, "--text-layers", 1, "--cross-everywhere",
        "--threads", 1, "--domains", "photos:0.4,paintings:0.3,crayons:0.3", "--latents-dir", tmp_path,
        "--paste", 0.5, "--train-bias", 0.5, "--ground", 0.1, "--moves", moves, "--moves-share", 0.5)
    rows = [json.loads(line) for line in (tmp_path / "logs" / "demo_unet_log.jsonl").read_text().splitlines()]
    assert next(r for r in rows if r.get("phase") == "moves_encoded")["n"] == 5
    logged = next(r for r in rows if r.get("step") == 25 and "loss" in r)
    assert 0 < logged["ground"] <= 1 and 0 < logged["loss"] < 2
    pipe = GradopPipeline.from_pretrained(str(tmp_path / "demo"))
    image = pipe.generate("text", "a photo of a red hut under a blue sky", steps=2, seed=0).images[0]
    assert image.size == (64, 64)
