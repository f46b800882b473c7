"""train/blend_models.py: WiSE-FT weight blending of two fine-tunings, through real diffusers folders."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from train.blend_models import blend_state  # noqa: E402
from train.common import load_pipeline_folder  # noqa: E402


def test_blend_state_interpolates_floats_and_keeps_equal_integer_buffers():
    base = {"w": torch.zeros(2, 3, dtype=torch.float16), "steps": torch.tensor([4])}
    tuned = {"w": torch.full((2, 3), 2.0, dtype=torch.float16), "steps": torch.tensor([4])}
    out = blend_state(base, tuned, 0.25)
    assert out["w"].dtype == torch.float16 and torch.equal(out["w"], torch.full((2, 3), 0.5, dtype=torch.float16))
    assert torch.equal(out["steps"], torch.tensor([4]))
    with pytest.raises(ValueError, match="differ in their tensors"):
        blend_state(base, {"w": tuned["w"]}, 0.5)
    with pytest.raises(ValueError, match="one architecture"):
        blend_state(base, {**tuned, "w": torch.zeros(3, 2)}, 0.5)
    with pytest.raises(ValueError, match="non-float"):
        blend_state(base, {**tuned, "steps": torch.tensor([5])}, 0.5)


def test_blend_script_writes_a_pipeline_between_the_two(tmp_path):
    from gradop.tiny import save_tiny_model

    base, tuned, out = save_tiny_model(tmp_path / "a", seed=0), save_tiny_model(tmp_path / "b", seed=1), tmp_path / "c"
    subprocess.run([sys.executable, str(REPO / "train" / "blend_models.py"), "--base", str(base), "--tuned", str(tuned),
                    "--alpha", "0.5", "--out", str(out)], check=True, capture_output=True)

    a, b, c = (load_pipeline_folder(path) for path in (base, tuned, out))
    for name in ("unet", "text_encoder"):
        sa, sb, sc = (getattr(p, name).state_dict() for p in (a, b, c))
        differing = [k for k in sa if sa[k].is_floating_point() and not torch.equal(sa[k], sb[k])]
        assert differing  # the two seeds give different weights, so the blend is a real mean
        for k in differing:
            torch.testing.assert_close(sc[k], (sa[k] + sb[k]) / 2)
    # Everything else is the base's.
    for k, v in a.vae.state_dict().items():
        assert torch.equal(c.vae.state_dict()[k], v)
