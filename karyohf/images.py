"""Turning whatever a user hands us (PIL image, numpy array, file path) into one 8-bit grayscale array.

Every stage of the pipeline starts here, so a bad input is rejected once, with a message that names
the problem, instead of failing deep inside a model. The pixel conversion itself lives with the
chromosome image processor (which must stand alone in a Hub checkpoint); this adds file paths.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .models.topvit.image_processing_topvit import to_grayscale_uint8


def as_gray_uint8(image) -> np.ndarray:
    """Return `image` as a 2-D uint8 array (0 = black), from PIL, numpy (gray, RGB(A), 16-bit, float) or a path."""
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"image file not found: {path}")
        try:
            with Image.open(path) as opened:
                image = opened.copy()
        except UnidentifiedImageError as error:
            raise ValueError(f"{path} is not an image file PIL can read") from error
    return to_grayscale_uint8(image)
