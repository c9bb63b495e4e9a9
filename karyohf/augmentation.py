"""Photometric and geometric variation of paper-format crops (the paper's §4.3 augmentation).

Automatic detection and segmentation give crops that are less tidy than hand-made karyograms:
slightly rotated, shifted, differently exposed. Training on varied crops closes that gap. Scale
varies only a little: chromosome length is the identity cue we must not wash out.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter


def augment_crop(crop: Image.Image, rng: np.random.Generator, scale_jitter: float = 0.08) -> Image.Image:
    """A randomly varied copy of a white-background "L" crop, same size."""
    width, height = crop.size
    image = crop
    if rng.random() < 0.5:  # metaphase crops come either way up: p arm up or down
        image = image.rotate(180)
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    angle = rng.uniform(-10, 10)
    scale = float(np.exp(rng.uniform(-scale_jitter, scale_jitter)))
    shift = rng.uniform(-4, 4, size=2)
    # Inverse affine map about the centre (PIL's transform takes output -> input coordinates).
    cos, sin = np.cos(np.radians(angle)) / scale, np.sin(np.radians(angle)) / scale
    cx, cy = width / 2, height / 2
    matrix = (cos, sin, cx - cos * (cx + shift[0]) - sin * (cy + shift[1]),
              -sin, cos, cy + sin * (cx + shift[0]) - cos * (cy + shift[1]))
    image = image.transform(image.size, Image.Transform.AFFINE, matrix, resample=Image.BILINEAR, fillcolor=255)
    # Contrast and exposure act on the ink (255 - gray) so the background stays white, as
    # extract_chromosome always leaves it.
    gain, gamma = rng.uniform(0.75, 1.25), rng.uniform(0.8, 1.25)
    ink_curve = [255 - min(255.0, 255.0 * (((255 - v) / 255.0) ** gamma) * gain) for v in range(256)]
    image = image.point([int(round(v)) for v in ink_curve])
    image = ImageEnhance.Sharpness(image).enhance(rng.uniform(0.5, 1.8))
    if rng.random() < 0.2:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    return image
