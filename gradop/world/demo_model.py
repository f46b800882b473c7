"""The architecture of gradop's demo model (pretrained_models/gradop-demo): a small Stable
Diffusion (same diffusers classes and data flow) for the procedural world, 64x64 output.

- tokenizer: CLIP byte-level BPE whose merges make every world word (captions.VOCABULARY) one
  token; other words are spelt in byte tokens, as CLIP does for rare words. 48 tokens max.
- text encoder: CLIPTextModel (trained jointly with the UNet); v1 width 64, 2 layers; v2
  width 128, 4 layers.
- VAE: AutoencoderKL with 3 blocks = 4x downsampling: 64x64x3 <-> 16x16x4 (v2 keeps v1's
  encoder, so the latent space is the same).
- UNet: UNet2DConditionModel on 16x16x4 latents, epsilon prediction; v1 cross-attention at
  16x16 and 8x8 (and the 4x4 mid block), v2 at every resolution.
- scheduler: DDIM with the SD betas (scaled_linear 0.00085..0.012, 1000 steps, steps_offset 1).
The training scripts in train/ build these and fill in the weights.
"""

from __future__ import annotations

import torch

from gradop.tiny import byte_alphabet, word_merges
from gradop.world.captions import VOCABULARY

IMAGE_SIZE = 64
LATENT_SIZE = 16
MAX_TOKENS = 48
TEXT_WIDTH = 64


def _bpe(word: str, ranks: dict) -> list[str]:
    parts = list(word[:-1]) + [word[-1] + "</w>"]
    while len(parts) > 1:
        pairs = [(ranks.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
        rank, i = min(pairs)
        if rank == 1 << 30:
            break
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
    return parts


def demo_tokenizer(words=VOCABULARY):
    """A CLIPTokenizer in which each of `words` is a single token."""
    from transformers import CLIPTokenizer

    words = [w for w in dict.fromkeys(words) if len(w) > 1]
    # Merge chains of different words can interfere (a shorter word's merge splitting a longer
    # word). Order the chains so that every word ends as one token: words that still split move
    # their chain to the front, until none do (a deterministic fixed point; checked below).
    order = sorted(words, key=lambda w: (-len(w), w))
    for _ in range(50):
        merges = list(dict.fromkeys(m for w in order for m in word_merges(w)))
        ranks = {m: i for i, m in enumerate(merges)}
        broken = [w for w in order if len(_bpe(w, ranks)) != 1]
        if not broken:
            break
        order = broken + [w for w in order if w not in broken]
    alphabet = list(byte_alphabet().values())
    tokens = alphabet + [c + "</w>" for c in alphabet] + [a + b for a, b in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=MAX_TOKENS)


def demo_scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                         clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon")


def demo_text_encoder(tokenizer, seed: int = 0, width: int = TEXT_WIDTH, layers: int = 2):
    """v1: width 64, 2 layers; v2: width 128, 4 layers."""
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    return CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=width, intermediate_size=4 * width, num_hidden_layers=layers,
        num_attention_heads=4, max_position_embeddings=MAX_TOKENS, projection_dim=width,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    ))


def demo_vae(seed: int = 0, channels=(16, 32, 32)):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=IMAGE_SIZE, block_out_channels=tuple(channels),
        layers_per_block=1, norm_num_groups=16,
        down_block_types=("DownEncoderBlock2D",) * len(channels), up_block_types=("UpDecoderBlock2D",) * len(channels),
    )


def demo_unet(seed: int = 0, channels=(32, 64, 96), heads: int = 4, text_width: int = TEXT_WIDTH,
              cross_everywhere: bool = False):
    """v1: cross-attention at 16x16, 8x8 and the mid block; v2 (cross_everywhere): at every
    resolution (the 4x4 down and up blocks too), for region control's token maps."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    last_down, first_up = ("CrossAttnDownBlock2D", "CrossAttnUpBlock2D") if cross_everywhere else ("DownBlock2D", "UpBlock2D")
    return UNet2DConditionModel(
        sample_size=LATENT_SIZE, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=tuple(channels),
        norm_num_groups=16, cross_attention_dim=text_width, attention_head_dim=heads,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", last_down),
        up_block_types=(first_up, "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    )


def warm_start(model: torch.nn.Module, state: dict) -> list[str]:
    """Copy every weight of `state` whose name and shape match into `model`; the names of the
    model's weights left as initialised (new blocks, resized text projections)."""
    own = model.state_dict()
    fresh = [k for k, v in own.items() if k not in state or state[k].shape != v.shape]
    model.load_state_dict({k: state[k] for k in own if k not in fresh}, strict=False)
    return fresh
