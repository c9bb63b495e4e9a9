"""TopViT's image processor, for single-chromosome crops.

The expected input is the paper's crop format: one upright chromosome, dark on white, centred on a 199 x 99 white
canvas at its native scale. Any other crop is first centred on such a canvas *without* rescaling, because the
chromosome's length is the strongest identity cue and stretching crops to fill the frame destroys it.
"""

import warnings

import numpy as np
from PIL import Image
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature


def center_on_canvas(gray: np.ndarray, canvas_size: tuple[int, int] = (199, 99)) -> np.ndarray:
    """Centre a (H, W) uint8 dark-on-white crop on a white canvas of `canvas_size` (rows, cols) at its own scale;
    a crop too large to fit is shrunk (aspect kept) just enough to fit."""
    if gray.ndim != 2 or gray.size == 0 or gray.dtype != np.uint8:
        raise ValueError(f"Expected a non-empty (H, W) uint8 grey-scale crop, got {gray.dtype} of shape {gray.shape}.")
    canvas_rows, canvas_cols = canvas_size
    rows, cols = gray.shape
    if rows > canvas_rows or cols > canvas_cols:
        scale = min(canvas_rows / rows, canvas_cols / cols)
        rows, cols = max(1, min(canvas_rows, round(rows * scale))), max(1, min(canvas_cols, round(cols * scale)))
        # PIL's bilinear resize is antialiased when shrinking.
        gray = np.asarray(Image.fromarray(gray).resize((cols, rows), Image.Resampling.BILINEAR))
    canvas = np.full(canvas_size, 255, dtype=np.uint8)
    top, left = (canvas_rows - rows) // 2, (canvas_cols - cols) // 2
    canvas[top : top + rows, left : left + cols] = gray
    return canvas


def to_grayscale_uint8(image) -> np.ndarray:
    """A PIL image or an (H, W) / (H, W, C) integer or float array -> (H, W) uint8 grey levels.

    Integer images are scaled by the smallest bit depth that holds them (8, 12, 16 ...), so a 12-bit scan in a
    16-bit container is not rendered nearly black; float images are taken as [0, 1], or [0, 255] if they exceed 1.
    """
    if isinstance(image, Image.Image):
        if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            image = np.asarray(image)  # 16-bit scans open as mode I or I;16
        else:
            image = np.asarray(image.convert("LA"))  # keeps alpha, so transparency can become white below
    if not isinstance(image, np.ndarray):
        raise ValueError(f"Expected a PIL image or a numpy array, got {type(image).__name__}.")
    if image.size == 0:
        raise ValueError(f"Got an empty image of shape {image.shape}.")
    if image.dtype == np.uint8 and image.ndim == 2:
        return image  # already what the scaling below would return, without a float copy of a whole metaphase
    if np.issubdtype(image.dtype, np.integer):
        bits = max(8, int(np.ceil(np.log2(float(image.max()) + 1.0)))) if image.max() > 0 else 8
        levels = np.clip(image / (2.0**bits - 1.0), 0.0, 1.0)
    elif np.issubdtype(image.dtype, np.floating):
        if not np.isfinite(image).all():
            raise ValueError("Got an image with NaN or infinite values.")
        levels = np.clip(image.astype(np.float64) / (255.0 if image.max() > 1.0 else 1.0), 0.0, 1.0)
    else:
        raise ValueError(f"Expected integer or float pixels, got dtype {image.dtype}.")
    if levels.ndim == 3 and levels.shape[-1] in (1, 2, 3, 4):
        levels = _channels_to_gray(levels)
    if levels.ndim != 2:
        raise ValueError(f"Expected an (H, W) or (H, W, C) image with C in 1..4, got shape {image.shape}.")
    return np.round(levels * 255.0).astype(np.uint8)


def _channels_to_gray(levels: np.ndarray) -> np.ndarray:
    """(H, W, C) levels in [0, 1] -> (H, W): luminance of the colour channels, composited on white under alpha."""
    has_alpha = levels.shape[-1] in (2, 4)
    colour = levels[..., : levels.shape[-1] - has_alpha]
    gray = colour[..., 0] if colour.shape[-1] == 1 else colour @ np.array([0.299, 0.587, 0.114])
    if has_alpha:
        alpha = levels[..., -1]
        gray = alpha * gray + (1.0 - alpha)
    return gray


class TopViTImageProcessor(BaseImageProcessor):
    r"""
    Turns chromosome crops into TopViT inputs: grey-scale -> centred on the `canvas_size` white canvas at native scale
    (crops already of that size are taken as they are) -> resized to `size` -> inverted so the background is 0 and
    the chromosome bright (ink = 1 - grey / 255) -> normalised by `image_mean` / `image_std`.

    Args:
        canvas_size (`tuple[int, int]`, defaults to `(199, 99)`):
            (rows, cols) of the white canvas a crop is centred on.
        size (`dict[str, int]`, defaults to `{"height": 128, "width": 64}`):
            Model input size; should match the model's `config.image_size`.
        image_mean (`float`, defaults to 0.1):
            Mean subtracted from the ink image.
        image_std (`float`, defaults to 0.2):
            Standard deviation the ink image is divided by.
        cell_reference_length (`float`, *optional*):
            Set when the model was trained on cell-normalised crops: each cell's chromosomes rescaled together so that
            their median length is this many pixels (`karyohf.crops.normalise_cell`, which needs the whole cell and
            so runs before this processor). `None`: crops at their native scale.
    """

    model_input_names = ["pixel_values"]

    def __init__(
        self,
        canvas_size: tuple[int, int] = (199, 99),
        size: dict[str, int] | None = None,
        image_mean: float = 0.1,
        image_std: float = 0.2,
        cell_reference_length: float | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.cell_reference_length = None if cell_reference_length is None else float(cell_reference_length)
        self.canvas_size = tuple(canvas_size)
        self.size = dict(size) if size is not None else {"height": 128, "width": 64}
        self.image_mean = float(image_mean)
        self.image_std = float(image_std)

    def preprocess(self, images, return_tensors=None) -> BatchFeature:
        """
        Args:
            images: one PIL image or numpy array, or a list of them (uint8, uint16 or float in [0, 1]; grey, RGB(A)).
            return_tensors (`"pt"`, `"np"` or `None`): `"pt"` returns torch tensors.

        Returns:
            `BatchFeature` with `pixel_values` of shape (batch, 1, height, width), float32.
        """
        if not isinstance(images, (list, tuple)):
            images = [images]
        if len(images) == 0:
            raise ValueError("Got no images.")
        pixel_values = np.stack([self._process_one(image) for image in images])
        return BatchFeature(data={"pixel_values": pixel_values}, tensor_type=return_tensors)

    def _process_one(self, image) -> np.ndarray:
        gray = to_grayscale_uint8(image)
        if gray.shape != self.canvas_size:
            gray = center_on_canvas(gray, self.canvas_size)
        ink = 1.0 - gray.astype(np.float32) / 255.0
        # Resample the float32 image (PIL mode "F") so the antialiased resize does not requantise to 8 bits.
        ink = Image.fromarray(ink).resize((self.size["width"], self.size["height"]), Image.Resampling.BILINEAR)
        normalised = (np.asarray(ink, dtype=np.float32) - self.image_mean) / self.image_std
        return normalised[None]


class ChromosomeImageProcessor(TopViTImageProcessor):
    """The name `TopViTImageProcessor` had before karyohf 0.3, kept so that what was saved under it still loads: a
    `preprocessor_config.json` whose `auto_map` names `image_processing_topvit.ChromosomeImageProcessor`, and code
    that constructs it. karyohf's `AutoImageProcessor` registration loads configs naming it as `TopViTImageProcessor`.
    """

    def __init__(self, *args, **kwargs):
        warnings.warn("ChromosomeImageProcessor is now called TopViTImageProcessor; the old name will go",
                      FutureWarning, stacklevel=2)
        super().__init__(*args, **kwargs)


__all__ = ["ChromosomeImageProcessor", "TopViTImageProcessor", "center_on_canvas"]
