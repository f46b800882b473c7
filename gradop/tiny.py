"""A tiny, random-weight Stable Diffusion built in code.

Same diffusers classes and data flow as SD 1.x (8x VAE, CLIP text encoder, cross-attention
UNet, DDIM), a few hundred kilobytes of weights. It stands in for real weights where none can
be downloaded: the test suite, the benchmark's smoke mode, and the app before a real model is
configured. Its outputs are noise-like; only the mechanics are real.
"""

from __future__ import annotations

from pathlib import Path

import torch

# Words that get single tokens; everything else is spelt with byte-level character tokens, so
# the vocabulary also exercises multi-token words (as CLIP does for rare words).
WHOLE_WORDS = (
    "a", "an", "the", "of", "photo", "painting", "in", "on", "with", "and", "beside", "under",
    "tree", "lake", "hut", "sky", "sun", "fox", "red", "blue", "green", "mountain", "river",
)
TINY_SIZE = 64  # default output side in pixels (latent 8x8)


def byte_alphabet() -> dict[int, str]:
    # The byte-level BPE alphabet: printable bytes map to themselves, the rest to code points
    # above 255, so every byte is a visible character in vocab.json.
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


def word_merges(word: str) -> list[tuple[str, str]]:
    """BPE merges that make `word` one token, left to right: w o -> wo, wo r -> wor, ...,
    the last piece with "</w>". Empty for one-letter words (already a token)."""
    merges, prefix = [], word[0]
    for i, ch in enumerate(word[1:], start=1):
        piece = ch + "</w>" if i == len(word) - 1 else ch
        merges.append((prefix, piece))
        prefix += piece
    return merges


def tiny_tokenizer():
    from transformers import CLIPTokenizer

    alphabet = list(byte_alphabet().values())
    tokens = alphabet + [c + "</w>" for c in alphabet]
    merges: list[tuple[str, str]] = []
    for word in WHOLE_WORDS:
        for left, right in word_merges(word):
            merges.append((left, right))
            if left + right not in tokens:
                tokens.append(left + right)
    merges = list(dict.fromkeys(merges))
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def tiny_components(seed: int = 0) -> dict:
    """The six StableDiffusionPipeline components, seeded and tiny."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = tiny_tokenizer()
    torch.manual_seed(seed)  # model construction draws from the global RNG in diffusers/transformers
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=77, projection_dim=32,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=TINY_SIZE // 8, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), norm_num_groups=8, cross_attention_dim=32,
        attention_head_dim=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=TINY_SIZE,
        block_out_channels=(8, 16, 32, 32), norm_num_groups=8, layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
        set_alpha_to_one=False, steps_offset=1,
    )
    for module in (text_encoder, unet, vae):
        module.eval()
    return dict(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None,
    )


def save_tiny_model(path: str | Path, seed: int = 0) -> Path:
    """Write the tiny model as a diffusers folder (loadable with from_pretrained)."""
    from diffusers import StableDiffusionPipeline

    path = Path(path)
    pipe = StableDiffusionPipeline(**tiny_components(seed), requires_safety_checker=False)
    pipe.save_pretrained(path, safe_serialization=True)
    return path
