"""Turning whatever a user hands us (PIL image, numpy array, file path) into one 8-bit grayscale array.

Every stage of the pipeline starts here, so a bad input is rejected once, with a message that
names the problem, instead of failing deep inside a model.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError


def as_gray_uint8(image) -> np.ndarray:
    """Return `image` as a 2-D uint8 array (0 = black), from PIL, numpy (gray, RGB, RGBA, 16-bit, float) or a path."""
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"image file not found: {path}")
        try:
            with Image.open(path) as opened:
                image = opened.copy()
        except UnidentifiedImageError as error:
            raise ValueError(f"{path} is not an image file PIL can read") from error
    if isinstance(image, Image.Image):
        if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            image = np.asarray(image)
        else:
            return np.asarray(image.convert("L"))
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected a PIL image, a numpy array or a path, got {type(image).__name__}")
    array = image
    if array.ndim == 3 and array.shape[-1] in (1, 3, 4):
        channels = array[..., :3].astype(np.float64)
        array = channels[..., 0] if channels.shape[-1] == 1 else channels @ np.array([0.299, 0.587, 0.114])
    elif array.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale or (H, W, 1|3|4) colour image, got shape {image.shape}")
    if array.size == 0 or min(array.shape) == 0:
        raise ValueError(f"image is empty (shape {image.shape})")
    if image.dtype == np.uint8:
        return np.ascontiguousarray(array.round().astype(np.uint8) if array.dtype != np.uint8 else array)
    if np.issubdtype(image.dtype, np.integer):
        # 12/16-bit microscope images: scale by the smallest bit depth that holds the data, so a
        # 12-bit image in a 16-bit container is not rendered nearly black.
        bits = max(8, int(np.ceil(np.log2(float(array.max()) + 1.0))))
        return np.clip(array / (2.0**bits - 1.0) * 255.0, 0, 255).round().astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ValueError("image contains NaN or infinite values")
        top = 1.0 if array.max() <= 1.0 else 255.0
        return np.clip(array / top * 255.0, 0, 255).round().astype(np.uint8)
    raise TypeError(f"unsupported image dtype {image.dtype}")
