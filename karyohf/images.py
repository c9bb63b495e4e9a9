"""Turning whatever a user hands us (PIL image, numpy array, file path) into one 8-bit grayscale array.

Every stage of the pipeline starts here, so a bad input is rejected once, with a message that names the file and
the problem, instead of failing deep inside a model. The pixel conversion itself lives with the chromosome image
processor (which must stand alone in a Hub checkpoint); this adds files and the checks a metaphase must pass.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .models.topvit.image_processing_topvit import to_grayscale_uint8

# A metaphase is a field of ~50 chromosomes tens of pixels long: far smaller images hold none; far larger ones
# (more than a 6000 x 6000 camera frame) are not micrographs, or are decompression bombs, and would exhaust memory.
MIN_SIDE = 64
MAX_PIXELS = 36_000_000
MAX_FILE_BYTES = 40 * 1024 * 1024
# Below this grey-level spread (of 255) an image holds nothing: blank, or a uniform frame.
MIN_CONTRAST = 8


class ImageError(ValueError):
    """An input that is not a usable metaphase image; `source` names it (a path, or a description)."""

    def __init__(self, source: str, problem: str):
        super().__init__(f"{source}: {problem}")
        self.source, self.problem = source, problem


def load_metaphase(image, name: str | None = None) -> np.ndarray:
    """A metaphase (path, PIL image or numpy array) as a checked (H, W) uint8 array; ImageError names what is wrong.

    Rejected: missing files (FileNotFoundError), files over `MAX_FILE_BYTES`, anything PIL cannot decode (PDFs, text, truncated
    JPEGs), images over `MAX_PIXELS` (checked from the header before decoding) or under `MIN_SIDE`, and blank ones.
    """
    source = name or (str(image) if isinstance(image, (str, os.PathLike)) else f"the {type(image).__name__} image")
    if isinstance(image, (str, os.PathLike)):
        image = _read(Path(image), source)
    elif isinstance(image, Image.Image):
        _check_pixels(image.width, image.height, source)
    try:
        gray = to_grayscale_uint8(image)
    except ValueError as error:
        raise ImageError(source, str(error)) from error
    _check_size(gray.shape[1], gray.shape[0], source)
    if int(gray.max()) - int(gray.min()) < MIN_CONTRAST:
        raise ImageError(source, f"is blank (every pixel within {MIN_CONTRAST} grey levels of {int(gray.min())})")
    return gray


def as_gray_uint8(image) -> np.ndarray:
    """Return `image` as a 2-D uint8 array (0 = black), from PIL, numpy (gray, RGB(A), 16-bit, float) or a path."""
    if isinstance(image, (str, os.PathLike)):
        image = _read(Path(image), str(image))
    return to_grayscale_uint8(image)


def _read(path: Path, source: str) -> Image.Image:
    if not path.is_file():
        raise FileNotFoundError(f"{source}: file not found")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ImageError(source, f"file is {size / 2**20:.0f} MiB; the limit is {MAX_FILE_BYTES / 2**20:.0f} MiB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                _check_pixels(opened.width, opened.height, source)
                opened.load()
                return opened.copy()
    except ImageError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(source, f"is not an image file that can be read ({type(error).__name__})") from error
    except (OSError, SyntaxError, ValueError) as error:  # truncated or corrupt data inside a recognised format
        raise ImageError(source, f"could not be decoded: {error}") from error


def _check_pixels(width: int, height: int, source: str) -> None:
    if width * height > MAX_PIXELS:
        raise ImageError(source, f"is {width}x{height} pixels ({width * height / 1e6:.0f} megapixels); "
                                 f"the limit is {MAX_PIXELS / 1e6:.0f} megapixels")


def _check_size(width: int, height: int, source: str) -> None:
    _check_pixels(width, height, source)
    if min(width, height) < MIN_SIDE:
        raise ImageError(source, f"is {width}x{height} pixels: too small to hold a metaphase "
                                 f"(at least {MIN_SIDE} pixels a side)")
