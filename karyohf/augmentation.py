"""Photometric and geometric variation of paper-format crops (the paper's §4.3 augmentation).

Automatic detection and segmentation give crops that are less tidy than hand-made karyograms:
slightly rotated, shifted, differently exposed, sometimes blurred. Training on varied crops closes that gap.
Scale varies only a little around the crop's own scale (or its cell's normalised scale, `cell_scale`): relative
length is the identity cue we must not wash out. With `wide_scale_probability`, some crops are drawn at any scale a
lone crop from another microscope may have (`WIDE_SCALE` of the normalised size), so that a crop identified without
its cell degrades gracefully instead of collapsing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from .crops import rescale_chromosome

# Scales (of the cell-normalised size) a lone crop may come at: our karyogram crops are ~0.78 of it and our
# metaphases ~1.07; a lab imaging at 0.77x or 1.9x our magnification puts its crops at ~0.6 to ~2.0.
WIDE_SCALE = (0.6, 2.0)


@dataclass(frozen=True)
class Optics:
    """How another microscope may image a crop: on `probability` of crops, the crop is re-imaged as a microscope with
    less resolution would see it (shrunk to a magnification in `magnification`, out of focus by a σ in `sigma` pixels
    there, then back to its size). The blur acts before the cell is normalised, as another lab's does: a cell imaged
    small and blurred is enlarged, blur and all, by the normalisation."""

    probability: float
    sigma: tuple[float, float]
    magnification: tuple[float, float]

    def describe(self) -> str:
        """The recipe in words, as the model cards give it."""
        return (f"{self.probability:.0%} of crops re-imaged at {self.magnification[0]:g}–{self.magnification[1]:g}x "
                f"magnification, blurred by σ {self.sigma[0]:g}–{self.sigma[1]:g} px there")


# The shipped identity model's recipe.
STANDARD_OPTICS = Optics(probability=0.4, sigma=(0.3, 2.0), magnification=(0.5, 1.0))
# More crops re-imaged, smaller and blurrier: the shipped heads' recipe; tried for the identity model, not shipped
# (docs/models.md).
STRONG_OPTICS = Optics(probability=0.6, sigma=(0.3, 2.5), magnification=(0.4, 1.0))
OPTICS = {"standard": STANDARD_OPTICS, "strong": STRONG_OPTICS}


def augment_crop(crop: Image.Image, rng: np.random.Generator, scale_jitter: float = 0.08, cell_scale: float = 1.0,
                 wide_scale_probability: float = 0.0, optics: Optics = STANDARD_OPTICS) -> Image.Image:
    """A randomly varied copy of a white-background "L" crop, same size, its chromosome resized by `cell_scale`
    (the factor `karyohf.crops.cell_scale` gives its cell) times a small jitter, or a wide one."""
    width, height = crop.size
    image = crop
    if rng.random() < 0.5:  # metaphase crops come either way up: p arm up or down
        image = image.rotate(180)
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if rng.random() < optics.probability:
        magnification = float(np.exp(rng.uniform(*np.log(optics.magnification))))
        image = reimage(image, magnification, rng.uniform(*optics.sigma))
    if rng.random() < wide_scale_probability:
        scale = cell_scale * float(np.exp(rng.uniform(*np.log(WIDE_SCALE))))
    else:
        scale = cell_scale * float(np.exp(rng.uniform(-scale_jitter, scale_jitter)))
    image = rescale_chromosome(image, scale, (height, width))
    angle = rng.uniform(-10, 10)
    shift = rng.uniform(-4, 4, size=2)
    # Inverse affine map about the centre (PIL's transform takes output -> input coordinates).
    cos, sin = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    cx, cy = width / 2, height / 2
    matrix = (cos, sin, cx - cos * (cx + shift[0]) - sin * (cy + shift[1]),
              -sin, cos, cy + sin * (cx + shift[0]) - cos * (cy + shift[1]))
    image = image.transform(image.size, Image.Transform.AFFINE, matrix, resample=Image.BILINEAR, fillcolor=255)
    # Contrast and exposure act on the ink (255 - gray) so the background stays white, as
    # extract_chromosome always leaves it.
    gain, gamma = rng.uniform(0.75, 1.25), rng.uniform(0.8, 1.25)
    ink_curve = [255 - min(255.0, 255.0 * (((255 - v) / 255.0) ** gamma) * gain) for v in range(256)]
    image = image.point([int(round(v)) for v in ink_curve])
    return ImageEnhance.Sharpness(image).enhance(rng.uniform(0.5, 1.8))


def reimage(crop: Image.Image, magnification: float, sigma: float) -> Image.Image:
    """`crop` as a microscope at `magnification` times ours, out of focus by `sigma` of its pixels, would give it,
    brought back to the crop's size: detail finer than that microscope resolves is gone."""
    width, height = crop.size
    small = crop.resize((max(1, round(width * magnification)), max(1, round(height * magnification))),
                        Image.Resampling.LANCZOS)
    small = small.filter(ImageFilter.GaussianBlur(sigma))
    return small.resize((width, height), Image.Resampling.BILINEAR)
