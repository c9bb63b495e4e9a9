"""One crop path for training and inference: metaphase + box (+ mask) -> the paper's chromosome crop.

The paper's format is an upright chromosome centred on a white 199x99 canvas at its native scale.
Training (from the real metaphases' boxes and the karyogram crops) and the pipeline (from detected
boxes and masks) both go through `extract_chromosome`, so the model always sees the same kind of
image. Scale is never normalised per chromosome: length is the strongest identity cue.

It is normalised per cell for an identity model trained so (`ChromosomeIdentifier.identify_cell`): every chromosome
of a cell is rescaled by one factor (`cell_scale`, `rescale_chromosome`) so that the cell's median chromosome is
`REFERENCE_LENGTH` pixels long. Relative length is what a
cytogeneticist reads; absolute length in pixels only reflects the microscope's magnification.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
from PIL import Image

from .images import as_gray_uint8
from .models.topvit.image_processing_topvit import center_on_canvas
from .segmentation import segment_in_box

CANVAS_SIZE = (199, 99)  # rows, cols: the paper's crop format
# Length (pixels) a cell's median chromosome is rescaled to: between the medians of our two collections (~62 px in
# the karyogram crops, ~86 px in the metaphases), so neither loses much banding detail, and a chromosome 1 (about
# 1.9x the median) still fits the canvas.
REFERENCE_LENGTH = 80.0
# Grey levels below this are the chromosome on a whitened crop (its background is exactly 255).
INK_LEVEL = 250


def extract_chromosome(image, box, mask=None, canvas_size: tuple[int, int] = CANVAS_SIZE) -> Image.Image:
    """Isolate the chromosome in `box` of `image`, rotate it upright and centre it on a white canvas.

    Args:
        image: the metaphase (or an already isolated chromosome) as a PIL image, numpy array or path;
            grayscale, RGB or 16-bit, dark chromosomes on a light background.
        box: (xmin, ymin, xmax, ymax) in pixels. Pass `(0, 0, width, height)` to normalise a crop
            that already holds one chromosome (a karyogram crop, another lab's crop).
        mask: optional boolean mask of this chromosome, either the image's size or the box's size
            (from SAM or the threshold segmenter). Without one, the chromosome is segmented inside
            the box, dropping neighbours and debris that intrude into it.
        canvas_size: (rows, cols) of the output canvas.

    Returns:
        An 8-bit grayscale ("L") PIL image of `canvas_size`: the chromosome, long axis vertical,
        dark on white, at its native pixel scale (shrunk only if it does not fit the canvas).
    """
    return Image.fromarray(center_on_canvas(isolate_chromosome(image, box, mask), canvas_size), mode="L")


def isolate_chromosome(image, box, mask=None) -> np.ndarray:
    """`extract_chromosome` before the canvas: the upright chromosome on white, cropped tight, never shrunk (uint8)."""
    gray = as_gray_uint8(image)
    x0, y0, x1, y1 = pixel_box(box, gray.shape)
    region = gray[y0:y1, x0:x1]
    if mask is None:
        region_mask = segment_in_box(gray, (x0, y0, x1, y1))
    else:
        region_mask = _region_of_mask(mask, gray.shape, (x0, y0, x1, y1))
        if not region_mask.any():
            raise ValueError(f"mask is empty inside box {tuple(box)}")
    isolated = _whiten_background(region, region_mask)
    upright, upright_mask = _rotate_upright(isolated, region_mask)
    rows, cols = np.nonzero(upright_mask)
    return upright[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def _ink_region(crop) -> np.ndarray:
    """The chromosome's bounding region of a whitened crop (a canvas or a tight crop); all of it when blank."""
    gray = as_gray_uint8(crop)
    rows, cols = np.nonzero(gray < INK_LEVEL)
    if rows.size == 0:
        return gray
    return gray[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def chromosome_length(crop) -> int:
    """Pixels along an upright chromosome (its rows) on a whitened crop."""
    return int(_ink_region(crop).shape[0])


def cell_scale(crops, reference_length: float = REFERENCE_LENGTH) -> float:
    """The factor that brings the median chromosome length of one cell's crops to `reference_length` (1.0 for none)."""
    lengths = [chromosome_length(crop) for crop in crops]
    return reference_length / float(np.median(lengths)) if lengths else 1.0


def rescale_chromosome(crop, factor: float, canvas_size: tuple[int, int] = CANVAS_SIZE) -> Image.Image:
    """The chromosome of a whitened crop resized by `factor` and centred on a white canvas (shrunk only to fit)."""
    if not (math.isfinite(factor) and factor > 0):
        raise ValueError(f"scale factor must be a positive number, got {factor!r}")
    if factor == 1.0:  # exactly `extract_chromosome`'s canvas
        return Image.fromarray(center_on_canvas(as_gray_uint8(crop), canvas_size), mode="L")
    region = _ink_region(crop)
    rows, cols = region.shape
    size = (max(1, round(cols * factor)), max(1, round(rows * factor)))
    if size != (cols, rows):
        region = np.asarray(Image.fromarray(region).resize(size, Image.Resampling.BILINEAR))
    return Image.fromarray(center_on_canvas(region, canvas_size), mode="L")


def normalised_crops(crops, cell_scales, reference_length: float | None) -> list:
    """Canvas crops as a model trained on cell-normalised crops reads them: each rescaled by its cell's `cell_scale`
    (taken at `REFERENCE_LENGTH`) to the model's `reference_length`; as they are for a native-scale model (None)."""
    if reference_length is None:
        return list(crops)
    return [rescale_chromosome(crop, float(scale) * reference_length / REFERENCE_LENGTH)
            for crop, scale in zip(crops, cell_scales, strict=True)]


def pixel_box(box, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """Whole pixels covering `box` (xyxy), clipped to an image of `shape`; ValueError when under 2 pixels a side."""
    try:
        xmin, ymin, xmax, ymax = (float(v) for v in box)
    except (TypeError, ValueError) as error:
        raise ValueError(f"box must be four numbers (xmin, ymin, xmax, ymax), got {box!r}") from error
    if not all(math.isfinite(v) for v in (xmin, ymin, xmax, ymax)):
        raise ValueError(f"box has non-finite coordinates: {box!r}")
    height, width = shape
    x0, y0 = max(0, int(math.floor(xmin))), max(0, int(math.floor(ymin)))
    x1, y1 = min(width, int(math.ceil(xmax))), min(height, int(math.ceil(ymax)))
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise ValueError(f"box {tuple(box)} is empty or lies outside the {width}x{height} image")
    return x0, y0, x1, y1


def _region_of_mask(mask, image_shape, pixel_box) -> np.ndarray:
    mask = np.asarray(mask).astype(bool)
    x0, y0, x1, y1 = pixel_box
    if mask.shape == tuple(image_shape):
        return mask[y0:y1, x0:x1]
    if mask.shape == (y1 - y0, x1 - x0):
        return mask
    raise ValueError(f"mask shape {mask.shape} matches neither the image {tuple(image_shape)} nor the box {(y1 - y0, x1 - x0)}")


def background_level(region: np.ndarray, mask: np.ndarray) -> float:
    """The grey level a crop's background maps to white: the box's lighter pixels outside the chromosome."""
    outside = region[~mask]
    background = float(np.percentile(outside, 75)) if outside.size >= 16 else 255.0
    return max(background, float(region[mask].max()), 1.0)


def _whiten_background(region: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Chromosome pixels rescaled so the local background maps to white; everything else white.

    Labs image at different brightness; dividing by the local background level makes the banding
    comparable across them without stretching each chromosome's own contrast.
    """
    background = background_level(region, mask)
    scaled = np.clip(region.astype(np.float32) * (255.0 / background), 0, 255)
    return np.where(mask, scaled, 255.0).round().astype(np.uint8)


def upright_angle(mask: np.ndarray) -> float:
    """Degrees (PIL's counter-clockwise) that bring the mask's principal axis to vertical by the smallest turn;
    0 for a mask already upright, too small or too round to have an axis."""
    rows, cols = np.nonzero(mask)
    if rows.size < 3:
        return 0.0
    coords = np.stack([cols - cols.mean(), rows - rows.mean()])
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(coords))
    dx, dy = eigenvectors[:, np.argmax(eigenvalues)]
    # PIL rotates counter-clockwise as displayed (y down); this angle brings the axis to vertical.
    angle = math.degrees(math.atan2(dy, dx)) + 90.0
    angle = (angle + 90.0) % 180.0 - 90.0
    if abs(angle) < 1.0 or eigenvalues.max() < 1.2 * eigenvalues.min():
        return 0.0
    return angle


def _rotate_upright(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotate by `upright_angle` (an upright crop stays as it is)."""
    angle = upright_angle(mask)
    if angle == 0.0:
        return image, mask
    rotated = Image.fromarray(image).rotate(angle, resample=Image.BILINEAR, expand=True, fillcolor=255)
    rotated_mask = Image.fromarray(mask.astype(np.uint8) * 255).rotate(angle, resample=Image.NEAREST, expand=True, fillcolor=0)
    return np.asarray(rotated), np.asarray(rotated_mask) > 127


def metaphase_crops(metaphases) -> Iterator[dict]:
    """One paper-format crop per annotated box of each metaphase (a `karyohf.data.load_metaphases` dataset), with
    its cell's `cell_scale`, computed on the tight crops as the pipeline computes it."""
    for example in metaphases:
        image = example["image"]
        tight = [isolate_chromosome(image, box) for box in example["boxes"]]
        scale = cell_scale(tight)
        for crop, chromosome in zip(tight, example["chromosomes"]):
            yield {
                "image": Image.fromarray(center_on_canvas(crop, CANVAS_SIZE), mode="L"),
                "chromosome": chromosome,
                "cell_id": example["image_id"],
                "group_id": example["specimen_id"],
                "source": "metaphase",
                "cell_scale": scale,
            }


def karyogram_crops(crops) -> Iterator[dict]:
    """The karyogram crops (a `karyohf.data.load_karyogram_crops` dataset) through the same normalisation, one cell
    at a time (in order of each cell's first crop) so that every crop carries its cell's `cell_scale`."""
    members: dict[str, list[int]] = {}
    for index, cell in enumerate(crops["cell_id"]):
        members.setdefault(cell, []).append(index)
    for cell, indices in members.items():
        examples = [crops[i] for i in indices]
        tight = [isolate_chromosome(e["image"], (0, 0, e["image"].width, e["image"].height)) for e in examples]
        scale = cell_scale(tight)
        for example, crop in zip(examples, tight):
            yield {
                "image": Image.fromarray(center_on_canvas(crop, CANVAS_SIZE), mode="L"),
                "chromosome": example["chromosome"],
                "cell_id": example["cell_id"],
                "group_id": example["case_id"],
                "source": "karyogram",
                "cell_scale": scale,
            }
