"""Image processor for whole metaphases: pad to a white square, resize, invert; and decode the detector's output.

A metaphase of any shape is padded at the bottom and right with white (empty slide, not one more dark object) to a
square of side max(height, width), which is resized to the model's input. Boxes therefore come back as fractions of
that square, and fractions times the square's side are the image's own pixels.
"""

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature


# Copied from karyohf.models.topvit.image_processing_topvit (tests/test_remote_code.py keeps the copies equal): this
# file is copied next to the weights for `trust_remote_code`, where it must stand alone, importing nothing of karyohf.
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


def pad_to_square(gray: np.ndarray) -> np.ndarray:
    """(H, W) uint8 -> (S, S) with S = max(H, W), the image at the top left, white elsewhere."""
    height, width = gray.shape
    square = np.full((max(height, width),) * 2, 255, dtype=np.uint8)
    square[:height, :width] = gray
    return square


class CenterNetImageProcessor(BaseImageProcessor):
    r"""
    Turns metaphase images into detector inputs: grey-scale -> padded with white to a square -> resized to `size`
    (antialiased) -> inverted so the background is 0 and chromosomes bright (ink = 1 - grey / 255) -> normalised.

    Args:
        size (`int`, defaults to 512):
            Side of the square model input; should match the model's `config.image_size`.
        image_mean (`float`, defaults to 0.15):
            Mean subtracted from the ink image.
        image_std (`float`, defaults to 0.25):
            Standard deviation the ink image is divided by.
    """

    model_input_names = ["pixel_values"]

    def __init__(self, size: int = 512, image_mean: float = 0.15, image_std: float = 0.25, **kwargs):
        super().__init__(**kwargs)
        if isinstance(size, dict):  # tolerate the {"height": s, "width": s} form of other processors
            size = size["height"]
        self.size = int(size)
        self.image_mean = float(image_mean)
        self.image_std = float(image_std)

    def preprocess(self, images, return_tensors=None, size: int | None = None) -> BatchFeature:
        """
        Args:
            images: one PIL image or numpy array, or a list of them (grey, RGB(A), 8/16-bit or float).
            return_tensors (`"pt"`, `"np"` or `None`).
            size: side of the square input for this call instead of `self.size` (a multiple of the detector's
                coarsest stride): `ChromosomeDetector` picks it so that the chromosomes appear at a learned size.

        Returns:
            `BatchFeature` with `pixel_values` (batch, 1, size, size) float32 and `original_sizes` (batch, 2): the
            (height, width) of each image, which `post_process_object_detection` needs to map boxes back.
        """
        if not isinstance(images, (list, tuple)):
            images = [images]
        if len(images) == 0:
            raise ValueError("Got no images.")
        grays = [to_grayscale_uint8(image) for image in images]
        pixel_values = np.stack([self.square_input(gray, size) for gray in grays])
        sizes = np.array([gray.shape for gray in grays], dtype=np.int64)
        return BatchFeature(data={"pixel_values": pixel_values, "original_sizes": sizes}, tensor_type=return_tensors)

    def square_input(self, gray: np.ndarray, size: int | None = None) -> np.ndarray:
        """(H, W) uint8 -> (1, size, size) normalised ink (`size` defaults to `self.size`); a gray image already
        `size` square is only normalised."""
        size = self.size if size is None else int(size)
        if size <= 0:
            raise ValueError(f"size must be positive, got {size}")
        square = pad_to_square(gray)
        if square.shape[0] != size:
            square = np.asarray(Image.fromarray(square).resize((size, size), Image.Resampling.BILINEAR))
        return self.normalize_ink(square)

    def normalize_ink(self, gray: np.ndarray) -> np.ndarray:
        """(H, W) uint8 already at model scale (a training crop, say) -> (1, H, W) normalised ink."""
        ink = 1.0 - gray.astype(np.float32) / 255.0
        return ((ink - self.image_mean) / self.image_std)[None]

    def post_process_object_detection(self, outputs, threshold: float = 0.3, target_sizes=None, top_k: int = 200,
                                      off_peak_weight: float = 0.0):
        """
        Heatmap peaks (cells that are the maximum of their 3x3 neighbourhood) scoring above `threshold`, with the
        boxes their cells predict; with `off_peak_weight`, every other cell too, scored at its heat times that weight.

        Args:
            outputs: a `CenterNetObjectDetectionOutput` (needs `heatmap_logits` and `pred_boxes`).
            threshold: minimum peak score (sigmoid of the heatmap logit).
            target_sizes: (height, width) of each original image (e.g. `original_sizes` from `preprocess`); boxes
                are then in its pixels and clipped to it. Without it, boxes stay fractions of the square input.
            top_k: most candidates (peaks, or with `off_peak_weight` cells) per image, best first.
            off_peak_weight: in [0, 1]; 0 keeps peaks only (classic CenterNet). Above 0, neighbouring cells propose
                near-copies of a peak's box, so the candidates need non-maximum suppression (`ChromosomeDetector`
                applies it). Where chromosomes cross or touch, the smaller owns the cells they share, so the other's
                box is regressed only at cells off its peak, which peak-only decoding never returns.

        Returns:
            One dict per image: `scores` (n,), `labels` (n,) all 0 ("chromosome"), `boxes` (n, 4) x0, y0, x1, y1.
        """
        if not 0.0 <= off_peak_weight <= 1.0:
            raise ValueError(f"off_peak_weight must be in [0, 1], got {off_peak_weight}")
        heat = outputs.heatmap_logits.float().sigmoid()
        peaks = heat == F.max_pool2d(heat, kernel_size=3, stride=1, padding=1)
        scores = (heat * torch.where(peaks, 1.0, off_peak_weight)).flatten(1)
        k = min(top_k, scores.shape[1])
        top_scores, top_index = scores.topk(k, dim=1)
        results = []
        for image, (image_scores, index) in enumerate(zip(top_scores, top_index)):
            keep = image_scores > threshold
            boxes = outputs.pred_boxes[image, index[keep]].float()
            if target_sizes is not None:
                height, width = (int(v) for v in target_sizes[image])
                boxes = boxes * max(height, width)
                limits = boxes.new_tensor([width, height, width, height])
                boxes = torch.minimum(boxes.clamp(min=0), limits)
            results.append({"scores": image_scores[keep], "labels": torch.zeros_like(index[keep]), "boxes": boxes})
        return results


class MetaphaseImageProcessor(CenterNetImageProcessor):
    """The name `CenterNetImageProcessor` had before karyohf 0.3, kept so that what was saved under it still loads: a
    `preprocessor_config.json` whose `auto_map` names `image_processing_centernet.MetaphaseImageProcessor`, and code
    that constructs it. karyohf's `AutoImageProcessor` registration loads configs naming it as
    `CenterNetImageProcessor`.
    """

    def __init__(self, *args, **kwargs):
        warnings.warn("MetaphaseImageProcessor is now called CenterNetImageProcessor; the old name will go",
                      FutureWarning, stacklevel=2)
        super().__init__(*args, **kwargs)


__all__ = ["CenterNetImageProcessor", "MetaphaseImageProcessor", "pad_to_square"]
