"""Region specs: which painted region shows which word of the prompt.

A region spec (`list[RegionWord]`) ties masks to words of the prompt, built from colours
(`spec_from_colors`, colours found by gradop.regions) or read from a JSON file (`read_spec_file`);
`resolve_spec` checks it and turns each word into the token positions the UNet's cross-attention
sees (`TokenMask`), which is what gradop.attention consumes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gradop.regions import color_hex, find_regions, nearest_region, parse_color

@dataclass
class RegionWord:
    """One item of a region spec: this mask shows `word` (its `occurrence`-th use in the prompt)."""

    mask: np.ndarray | Image.Image
    word: str
    occurrence: int = 0


@dataclass
class TokenMask:
    mask: torch.Tensor  # float H x W in {0, 1}, image resolution
    token_indices: list[int]  # positions in the text-encoder sequence (BOS is 0)
    word: str


# ----------------------------------------------------------------------------- specs

def spec_from_colors(image, assignments: dict, **find_kwargs) -> list[RegionWord]:
    """{colour: word | {"word": .., "occurrence": ..}} -> region spec, each colour taken to the
    nearest detected region of `image`."""
    regions = find_regions(image, **find_kwargs)
    spec, used = [], {}
    for color, target in assignments.items():
        word, occurrence = _word_and_occurrence(target, color)
        region = nearest_region(regions, color)
        if id(region) in used:
            raise ValueError(f"colours {used[id(region)]} and {color_hex(parse_color(color))} both match region "
                             f"{region.hex}; give each region one colour")
        used[id(region)] = color_hex(parse_color(color))
        spec.append(RegionWord(region.mask, word, occurrence))
    return spec


def _word_and_occurrence(target, where) -> tuple[str, int]:
    if isinstance(target, str):
        word, occurrence = target, 0
    elif isinstance(target, dict) and "word" in target:
        word, occurrence = target["word"], target.get("occurrence", 0)
    else:
        raise ValueError(f"region {where}: give a word or {{\"word\": ..., \"occurrence\": ...}} (got {target!r})")
    if not isinstance(word, str) or not word.strip():
        raise ValueError(f"region {where}: the word must be a non-empty string (got {word!r})")
    if isinstance(occurrence, bool) or not isinstance(occurrence, int) or occurrence < 0:
        raise ValueError(f"region {where}: occurrence must be an integer >= 0 (got {occurrence!r})")
    return word.strip(), occurrence


SPEC_EXAMPLE = '{"#3a7bd5": "lake"}'


def read_spec_file(path) -> dict:
    """The colour -> word assignments of a region spec file, checked, with the file named in every
    error. Accepts {"#rrggbb": "word" | {"word": .., "occurrence": ..}} or
    [{"color": "#rrggbb", "word": .., "occurrence": ..}]. The one parser of spec files (CLI and API)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"region spec {path} is a folder; give a JSON file like {SPEC_EXAMPLE}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read region spec {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"region spec {path} is not UTF-8 text; save it as UTF-8 JSON like {SPEC_EXAMPLE}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"region spec {path} is not valid JSON ({exc.msg} at line {exc.lineno}); "
                         f"write it like {SPEC_EXAMPLE}") from None
    if isinstance(data, list):
        assignments = {}
        for i, item in enumerate(data):
            color = item.get("color", item.get("colour")) if isinstance(item, dict) else None
            if color is None or "word" not in item:
                raise ValueError(f"region spec {path}, item {i}: write {{\"color\": \"#rrggbb\", \"word\": \"...\"}}")
            if color in assignments:
                raise ValueError(f"region spec {path}: colour {color} is listed twice")
            assignments[color] = {"word": item["word"], "occurrence": item.get("occurrence", 0)}
    elif isinstance(data, dict):
        assignments = data
    else:
        raise ValueError(f"region spec {path} must be a JSON object like {SPEC_EXAMPLE} or a list of "
                         f"{{\"color\": .., \"word\": ..}} items (got {type(data).__name__})")
    if not assignments:
        raise ValueError(f"region spec {path} is empty: map at least one colour to a word, e.g. {SPEC_EXAMPLE}")
    for color, target in assignments.items():
        try:
            parse_color(color)
            _word_and_occurrence(target, color)
        except ValueError as exc:
            raise ValueError(f"region spec {path}: {exc}") from None
    return assignments


def load_spec_json(path, image) -> list[RegionWord]:
    """A region spec file (see read_spec_file) resolved against the regions of `image`."""
    assignments = read_spec_file(path)
    try:
        return spec_from_colors(image, assignments)
    except ValueError as exc:
        raise ValueError(f"region spec {path}: {exc}") from None


# ----------------------------------------------------------------------------- tokens

class MissingWordError(ValueError):
    """A region word that the prompt does not contain. Front-ends name their own option for
    appending it (`advice`): the CLI says --append-missing-words."""

    def __init__(self, word: str, prompt: str, option: str = "append_missing=True"):
        self.word, self.prompt = word, prompt
        super().__init__(self.advice(option))

    def advice(self, option: str) -> str:
        return f"word {self.word!r} is not in the prompt {self.prompt!r}; add it to the prompt or pass {option}"



def _word_pattern(word: str) -> re.Pattern:
    # Case-insensitive, whole words only, any run of spaces/punctuation between a phrase's words.
    parts = re.findall(r"\w+", word.lower())
    if not parts:
        raise ValueError(f"region word {word!r} has no letters or digits: name what the region shows")
    return re.compile(r"(?<!\w)" + r"\W+".join(re.escape(p) for p in parts) + r"(?!\w)", re.IGNORECASE)


def word_occurrences(prompt: str, word: str) -> int:
    return len(_word_pattern(word).findall(prompt))


def word_span(prompt: str, word: str, occurrence: int = 0) -> tuple[int, int]:
    """Where the `occurrence`-th use of `word` sits in the prompt (characters); needs no tokenizer,
    so front-ends check region words with it before loading a model."""
    matches = list(_word_pattern(word).finditer(prompt))
    if not matches:
        raise MissingWordError(word, prompt)
    if not 0 <= occurrence < len(matches):
        raise ValueError(f"word {word!r} occurs {len(matches)} time(s) in the prompt; occurrence {occurrence} "
                         f"does not exist (use 0..{len(matches) - 1})")
    return matches[occurrence].span()


def word_token_indices(prompt: str, word: str, tokenizer, occurrence: int = 0) -> list[int]:
    """Positions of `word` (or phrase) in the tokenised prompt, counting BOS as position 0."""
    start, end = word_span(prompt, word, occurrence)

    # CLIP tokenises each word/punctuation run on its own, so the tokens before a word boundary
    # are exactly the tokens of the text before it.
    def ids(text):
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    full = tokenizer(prompt)["input_ids"]
    first = (1 if full and full[0] == tokenizer.bos_token_id else 0) + len(ids(prompt[:start]))
    span = ids(prompt[start:end])
    indices = list(range(first, first + len(span)))
    if full[first:first + len(span)] != span:
        raise ValueError(f"cannot locate {word!r} in the tokenised prompt; separate it from the words around it "
                         f"with spaces")
    limit = getattr(tokenizer, "model_max_length", len(full))
    if indices[-1] >= limit - 1:
        raise ValueError(f"word {word!r} lies beyond the text encoder's {limit}-token limit; shorten the prompt")
    return indices


def _mask_array(mask, word: str, size: tuple[int, int]) -> np.ndarray:
    """Bool mask at `size` (height, width); same-aspect masks are resized, others refused."""
    if isinstance(mask, Image.Image):
        array = np.asarray(mask.convert("L")) > 127
    elif isinstance(mask, torch.Tensor):
        array = mask.detach().cpu().numpy() > 0.5
    else:
        array = np.asarray(mask)
        array = array > 0.5 if array.dtype != bool else array
    if array.ndim != 2:
        raise ValueError(f"region {word!r}: the mask must be 2-D (height x width), got shape {array.shape}")
    height, width = size
    h, w = array.shape
    if (h, w) != (height, width):
        if abs(h * width - w * height) > 0.01 * h * width:
            raise ValueError(f"region {word!r}: the mask is {w}x{h} but the image is {width}x{height}; "
                             f"give masks at the image size")
        # Area resampling then a 0.5 threshold keeps the mask's coverage at the new size.
        resized = Image.fromarray(array.astype(np.uint8) * 255).resize((width, height), Image.Resampling.BOX)
        array = np.asarray(resized) >= 128
    if not array.any():
        raise ValueError(f"region {word!r} has an empty mask; paint it or remove it from the spec")
    return array


def resolve_spec(spec: list[RegionWord], prompt: str, tokenizer, *, size: tuple[int, int],
                 append_missing: bool = False, max_regions: int = 16) -> tuple[str, list[TokenMask]]:
    """Validate a region spec and resolve its words; returns (prompt, token masks).

    With append_missing, a word absent from the prompt is appended as ", word" (the returned
    prompt is the one to generate with)."""
    if len(spec) > max_regions:
        raise ValueError(f"{len(spec)} regions given; at most {max_regions} are supported: merge or drop some")
    masks = []
    for item in spec:
        if not isinstance(item, RegionWord):
            raise ValueError(f"region spec items must be RegionWord (got {type(item).__name__})")
        _word_pattern(item.word)  # no-letters words fail here, before anything else
        masks.append(_mask_array(item.mask, item.word, size))
    for item in spec:
        if append_missing and item.occurrence == 0 and word_occurrences(prompt, item.word) == 0:
            prompt = f"{prompt.rstrip()}, {item.word.strip()}" if prompt.strip() else item.word.strip()
    count = len(tokenizer(prompt)["input_ids"])
    limit = getattr(tokenizer, "model_max_length", count)
    if count > limit:
        raise ValueError(f"the prompt is {count} tokens long; the text encoder takes {limit} (with start/end "
                         f"tokens): shorten it")
    token_masks = [
        TokenMask(torch.from_numpy(m.astype(np.float32)), word_token_indices(prompt, item.word, tokenizer,
                                                                             item.occurrence), item.word)
        for item, m in zip(spec, masks)
    ]
    return prompt, token_masks
