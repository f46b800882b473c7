"""Loading through the real diffusers from_pretrained path, offline, with clear errors."""

import numpy as np
import pytest
import torch

from gradop.models import BUILTIN_MODELS, ModelLoadError, load_components, pick_device, pick_dtype
from gradop.pipeline import GradopPipeline


def test_saved_folder_loads_offline_and_matches_the_in_memory_model(tiny_model_dir, tiny_pipe, strokes):
    loaded = GradopPipeline.from_pretrained(str(tiny_model_dir))
    assert loaded.device.type == "cpu" and loaded.dtype == torch.float32
    assert type(loaded.scheduler_config) is dict and loaded.scheduler_config["_class_name"] == "DDIMScheduler"
    a = loaded.gradop_plus("a fox", strokes, steps=3, grad_steps=1, seed=2).images[0]
    b = tiny_pipe.gradop_plus("a fox", strokes, steps=3, grad_steps=1, seed=2).images[0]
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert all(not p.requires_grad for p in loaded.vae.parameters())


def test_builtin_model_by_name():
    assert "tiny-random" in BUILTIN_MODELS
    components, device, dtype = load_components("tiny-random")
    assert {"vae", "unet", "text_encoder", "tokenizer", "scheduler"} <= set(components)


def test_loader_sets_ddim_with_the_release_settings(tiny_model_dir):
    components, _, _ = load_components(str(tiny_model_dir))
    config = components["scheduler"].config
    assert (config.beta_start, config.beta_end, config.beta_schedule, config.steps_offset) == (
        0.00085, 0.012, "scaled_linear", 1)


@pytest.mark.parametrize("name", ["/no/such/folder", "./missing-model", "weights.safetensors", "a/b/c"])
def test_missing_paths_are_reported(name):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_components(name)


def test_pickle_checkpoints_need_opt_in(tmp_path):
    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes(b"anything")
    with pytest.raises(ModelLoadError, match="pickle"):
        load_components(str(checkpoint))


def test_folder_without_model_index_and_folder_with_only_pickles(tmp_path, tiny_model_dir):
    with pytest.raises(ModelLoadError, match="model_index.json"):
        load_components(str(tmp_path))
    pickled = tmp_path / "pickled"
    (pickled / "unet").mkdir(parents=True)
    (pickled / "model_index.json").write_text((tiny_model_dir / "model_index.json").read_text())
    (pickled / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="pickled"):
        load_components(str(pickled))


def test_broken_single_file_is_one_clear_error(tmp_path):
    broken = tmp_path / "model.safetensors"
    broken.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelLoadError) as error:
        load_components(str(broken), local_files_only=True)
    assert "\n" not in str(error.value) and "model.safetensors" in str(error.value)


def test_hub_id_not_cached_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="not in the local Hugging Face cache"):
        load_components("someone/not-a-cached-model")


def test_device_and_dtype_choice():
    assert pick_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert pick_device().type in ("cpu", "mps")
        with pytest.raises(ModelLoadError, match="no CUDA GPU"):
            pick_device("cuda")
    with pytest.raises(ModelLoadError, match="unknown device"):
        pick_device("tpu9")
    assert pick_dtype(torch.device("cuda")) == torch.float16
    assert pick_dtype(torch.device("cpu")) == torch.float32
    assert pick_dtype(torch.device("cpu"), "bf16") == torch.bfloat16
    with pytest.raises(ModelLoadError, match="unknown dtype"):
        pick_dtype(torch.device("cpu"), "float8")
