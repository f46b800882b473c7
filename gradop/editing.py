"""Edits that keep what you did not paint: the edit region, blended latent diffusion, paste-back.

Painting over a photo (or over an earlier result) changes only the painted area:
1. The edit region is the painted area, dilated by a few pixels. RGBA strokes mark what their
   alpha covers. RGB strokes mark their non-white pixels (farther than
   gradop.regions.DEFAULT_TOLERANCE from white, the same rule that makes white "canvas" for
   colour regions). An explicit mask (white = change) replaces either rule.
2. Blended latent diffusion (Avrahami et al. 2023; diffusers' inpainting pipeline does the same
   for 4-channel UNets): after every denoising step the latent outside the region is replaced by
   the background's latent noised to that step, and by the clean latent after the last one.
3. A feathered pixel-space blend: the decoded image inside the region, ramping to the
   background over `feather` pixels. Pixels beyond the ramp are copied from the background, so
   they are exactly the photo's.
A photo of any size is fitted to the model's size with its aspect ratio kept (`fit_size`).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from gradop.images import has_alpha, load_image
from gradop.options import Knobs, knob
from gradop.painting import PaintingFn
from gradop.regions import DEFAULT_TOLERANCE

EDIT_STARTS = ("noise", "painting")  # where GradOP+ edits start sampling
ALPHA_PAINTED = 0.1  # RGBA strokes: alpha above this counts as painted (canvas pixels are exactly 0)
ASPECT_TOLERANCE = 0.02  # strokes and background may differ this much in aspect ratio (rounding)


@dataclass(frozen=True)
class EditOptions(Knobs):
    """The edit mode's knobs (validated like the methods' knobs; recorded by EditSetup.params)."""

    edit_dilate: int | None = knob(None, "edit dilation", whole=True, low=0, optional=True,
                                   help="pixels the painted area grows by (default: 1 at 64 px, 4 at 512 px)")
    edit_feather: int | None = knob(None, "edit feather", whole=True, low=0, optional=True,
                                    help="pixels of the blend into the photo (default: 2 at 64 px, 8 at 512 px)")
    edit_start: str = knob("noise", "edit start", choices=EDIT_STARTS,
                           help="GradOP+ edits: sample from noise (the release) or from the noised painting")


# ----------------------------------------------------------------------------- sizes

def fit_size(size: tuple[int, int], side: int, multiple: int = 8) -> tuple[int, int]:
    """(width, height) with the aspect ratio of `size` and about the area of a side x side
    square, each a multiple of `multiple`: a photo larger or smaller than the model's native
    size is generated at that size, in its own shape."""
    width, height = size
    if width <= 0 or height <= 0:
        raise ValueError(f"the image has no pixels ({width}x{height})")
    scale = side / math.sqrt(width * height)
    return (max(multiple, round(width * scale / multiple) * multiple),
            max(multiple, round(height * scale / multiple) * multiple))


def fit_image(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`image` resized to `size` without distortion: the few pixels of aspect-ratio difference
    (from rounding to a multiple of 8) are cropped evenly from both sides."""
    if image.size == tuple(size):
        return image
    return ImageOps.fit(image, size, Image.Resampling.LANCZOS)


# ----------------------------------------------------------------------------- masks

def painted_area(strokes: Image.Image) -> np.ndarray:
    """Bool (H, W): the pixels the strokes paint (alpha for RGBA, non-white for RGB; see above)."""
    if has_alpha(strokes):
        return np.asarray(strokes.convert("RGBA"))[..., 3] > ALPHA_PAINTED * 255
    rgb = np.asarray(strokes.convert("RGB"), dtype=np.float32)
    return ((255.0 - rgb) ** 2).sum(-1) > DEFAULT_TOLERANCE**2


def mask_from_image(mask, size: tuple[int, int]) -> np.ndarray:
    """Bool (H, W) at `size` from an explicit mask (path / bytes / PIL / array; white = change)."""
    if isinstance(mask, np.ndarray) and mask.dtype == bool:
        mask = Image.fromarray(mask.astype(np.uint8) * 255)
    image = load_image(mask, what="mask")
    if image.mode in ("RGBA", "LA", "PA"):  # a transparent mask marks with its alpha
        image = image.getchannel("A")
    grey = fit_image(image.convert("L"), size)
    return np.asarray(grey) >= 128


def _disk(radius: int) -> torch.Tensor:
    r = torch.arange(-radius, radius + 1, dtype=torch.float32)
    return ((r[:, None] ** 2 + r[None, :] ** 2) <= radius**2 + 0.5).float()


def dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Bool (H, W) mask grown by `radius` pixels (a disk-shaped neighbourhood)."""
    if radius <= 0:
        return mask.clone()
    kernel = _disk(radius)[None, None]
    grown = F.conv2d(mask.float()[None, None], kernel, padding=radius)[0, 0]
    return grown > 0.5


def feathered_alpha(region: torch.Tensor, feather: int) -> torch.Tensor:
    """Float (H, W) paste-back weight: 1 on `region`, falling linearly to 0 over `feather`
    pixels outside it, exactly 0 beyond."""
    alpha = region.float()
    for k in range(1, feather + 1):
        alpha = alpha + dilate(region, k).float()
    return alpha / (feather + 1) if feather > 0 else alpha


def default_margins(height: int, width: int) -> tuple[int, int]:
    """(dilate, feather) in pixels: 1 and 2 at 64 px, 4 and 8 at 512 px."""
    side = min(height, width)
    return max(1, round(side / 128)), max(2, round(side / 64))


def latent_mask(region: torch.Tensor, factor: int) -> torch.Tensor:
    """(1, 1, h, w) float in {0, 1}: latent cells that hold any pixel of `region` (so the
    synthesised latent area covers the whole region, however thin a stroke is)."""
    return F.max_pool2d(region.float()[None, None], factor, ceil_mode=True)


# ----------------------------------------------------------------------------- the edit

@dataclass
class EditSetup:
    """Everything one edit needs, at the generation size (width x height)."""

    background: Image.Image  # RGB, the photo or earlier result, fitted to the generation size
    composite: Image.Image  # RGB, the strokes over the background: the guided methods' target y
    strokes_on_white: Image.Image  # RGB, the strokes alone, for colour regions
    painted: torch.Tensor  # (H, W) bool, painted pixels inside the edit region (GradOP's loss)
    region: torch.Tensor  # (H, W) bool, the dilated edit region (synthesised)
    alpha: torch.Tensor  # (H, W) float, feathered paste-back weight
    dilate: int
    feather: int
    explicit_mask: bool
    edit: bool = True  # False: "re-imagine the whole image" over the composite (no blending)

    def latent_mask(self, factor: int) -> torch.Tensor:
        return latent_mask(self.region, factor)

    def params(self) -> dict:
        """What the PNG records about the edit."""
        digest = hashlib.sha256(self.background.tobytes()).hexdigest()[:16]
        if not self.edit:
            return {"mode": "reimagine", "background_sha256": digest}
        return {"mode": "edit", "edit_dilate": self.dilate, "edit_feather": self.feather,
                "edit_mask": "explicit" if self.explicit_mask else "strokes", "background_sha256": digest,
                "edit_area": round(float(self.region.float().mean()), 4)}

    def guidance(self, paint: PaintingFn, target: torch.Tensor) -> tuple[PaintingFn, torch.Tensor]:
        """The painting function and target that make the guidance loss the mean squared error
        over the painted pixels only: with w = sqrt(m / mean(m)), mean((w f(x) - w y)^2)
        = mean over m of (f(x) - y)^2. The outside is the photo's anyway; counting it would only
        dilute the pull on the painted area."""
        m = self.painted.float().to(target.device)[None, None]
        if m.shape[-2:] != target.shape[-2:]:  # a guidance decoder may work below the image size
            m = F.interpolate(m, size=target.shape[-2:], mode="area")
        weight = (m / m.mean().clamp_min(1e-8)).sqrt()
        return (lambda images: paint(images) * weight.to(images)), target * weight

    def paste_back(self, images: list[Image.Image]) -> list[Image.Image]:
        """Feathered blend of the generated images over the background; alpha 0 pixels are copied."""
        alpha = self.alpha.numpy()[..., None]
        base = np.asarray(self.background, dtype=np.float32)
        out = []
        for image in images:
            generated = np.asarray(image.convert("RGB").resize(self.background.size), dtype=np.float32)
            # alpha 0 gives rint(base) = base: those pixels are the background's, bit for bit.
            out.append(Image.fromarray(np.rint(alpha * generated + (1 - alpha) * base).astype(np.uint8)))
        return out


def prepare_edit(strokes: Image.Image | None, background: Image.Image, size: tuple[int, int], *, mask=None,
                 dilate_px: int | None = None, feather_px: int | None = None, edit: bool = True) -> EditSetup:
    """Fit the background and strokes to `size` (width, height) and build the edit region.

    Strokes painted over the photo must have its aspect ratio (any resolution); None means
    nothing painted (then `mask` says what to change). With edit=False ("re-imagine the whole
    image") only the composite is used, and an empty painting is allowed (the photo alone is
    the target)."""
    width, height = size
    if strokes is None:
        strokes = Image.new("RGBA", background.size, (0, 0, 0, 0))
    aspect = (strokes.width / strokes.height) / (background.width / background.height)
    if abs(aspect - 1) > ASPECT_TOLERANCE:
        raise ValueError(f"the strokes ({strokes.width}x{strokes.height}) do not have the shape of the background "
                         f"({background.width}x{background.height}); paint the strokes over the photo at its "
                         "aspect ratio")
    background = fit_image(background.convert("RGB"), size)
    strokes = fit_image(strokes, size)
    painted = torch.from_numpy(painted_area(strokes).copy())
    base = dilate_px, feather_px
    auto_dilate, auto_feather = default_margins(height, width)
    dilate_px = auto_dilate if base[0] is None else int(dilate_px)
    feather_px = auto_feather if base[1] is None else int(feather_px)
    if dilate_px < 0 or feather_px < 0:
        raise ValueError(f"edit dilation and feather must be >= 0 pixels (got {dilate_px} and {feather_px})")
    if mask is not None:
        explicit = torch.from_numpy(mask_from_image(mask, size).copy())
        area = explicit
    else:
        area = painted
    if edit and not bool(area.any()):
        raise ValueError("nothing is painted, so an edit would return the background unchanged; paint over the "
                         "part to change, pass a mask, or re-imagine the whole image")
    region = dilate(area, dilate_px)
    # Strokes are composited where they paint, so RGB strokes over a photo keep the photo elsewhere.
    rgba = strokes.convert("RGBA")
    stroke_alpha = np.asarray(rgba)[..., 3:] / 255.0 if has_alpha(strokes) \
        else painted.numpy()[..., None].astype(np.float32)
    rgb = np.asarray(rgba)[..., :3].astype(np.float32)
    composite = stroke_alpha * rgb + (1 - stroke_alpha) * np.asarray(background, dtype=np.float32)
    on_white = stroke_alpha * rgb + (1 - stroke_alpha) * 255.0
    return EditSetup(
        background=background,
        composite=Image.fromarray(np.rint(composite).astype(np.uint8)),
        strokes_on_white=Image.fromarray(np.rint(on_white).astype(np.uint8)),
        painted=painted & region, region=region, alpha=feathered_alpha(region, feather_px),
        dilate=dilate_px, feather=feather_px, explicit_mask=mask is not None, edit=edit,
    )


# ----------------------------------------------------------------------------- blended latent diffusion

def next_timestep(scheduler, t) -> torch.Tensor | None:
    """The timestep the latents sit at after the scheduler step at `t` (None after the last)."""
    timesteps = scheduler.timesteps
    index = int((timesteps == torch.as_tensor(t, device=timesteps.device)).nonzero()[0, 0])
    return timesteps[index + 1].reshape(1) if index + 1 < len(timesteps) else None


def blend_latents(latents: torch.Tensor, background_latents: torch.Tensor, mask: torch.Tensor,
                  noise: torch.Tensor, scheduler, timestep: torch.Tensor | None) -> torch.Tensor:
    """Blended latent diffusion's step: keep `latents` inside `mask`; outside, the background's
    latents noised to `timestep` (with `noise`), or clean when `timestep` is None."""
    reference = background_latents if timestep is None else scheduler.add_noise(background_latents, noise, timestep)
    mask = mask.to(latents)
    return mask * latents + (1 - mask) * reference.to(latents)


class LatentBlend:
    """The blending step as a diffusers step-end hook: `blend(pipe.scheduler, t, latents)` after
    the scheduler step at `t`. The same noise is used at every step (as diffusers' inpainting
    pipeline does), so the outside follows one deterministic noising path of the background."""

    def __init__(self, background_latents: torch.Tensor, mask: torch.Tensor, noise: torch.Tensor):
        self.background_latents, self.mask, self.noise = background_latents, mask, noise

    def __call__(self, scheduler, t, latents: torch.Tensor) -> torch.Tensor:
        return blend_latents(latents, self.background_latents, self.mask, self.noise, scheduler,
                             next_timestep(scheduler, t))

    def start(self, scheduler, t, latents: torch.Tensor) -> torch.Tensor:
        """Blend a starting latent that sits at timestep `t` itself (e.g. SDEdit's noised input)."""
        return blend_latents(latents, self.background_latents, self.mask, self.noise, scheduler, t.reshape(1))


@torch.no_grad()
def encode_image(vae, image: Image.Image, device, dtype) -> torch.Tensor:
    """Scaled latents (1, C, h, w) of an RGB image: the mean of the VAE's posterior (deterministic)."""
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img import retrieve_latents

    from gradop.images import pil_to_tensor

    pixels = (pil_to_tensor(image) * 2 - 1).to(device=device, dtype=vae.dtype)
    latents = retrieve_latents(vae.encode(pixels), sample_mode="argmax")
    return (latents * vae.config.scaling_factor).to(dtype)
