"""Weight-free chromosome masks: threshold inside a box and keep the component the box was drawn around.

G-banded chromosomes are dark on a light background, so a local threshold finds them; what makes
it hard is everything else in the box — the tips of neighbours, debris, a nucleus — and pale bands
that split one chromosome into pieces. The box itself says which object is meant: the chromosome
spans it (a diagonal chromosome runs corner to corner), intruders only touch its edges.

`segment_in_box` does this for one box. `ThresholdSegmenter` does it for all boxes of a metaphase
at once, which lets it remove nuclei and share out the pixels that two boxes both claim.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.morphology import skeletonize

from ..images import as_gray_uint8

# Move the Otsu level this far towards the background so pale (gneg) bands stay inside the mask.
PALE_BAND_SLACK = 0.35
# A blob that still holds a disc of this many chromosome half-widths is a nucleus: two chromosomes
# lying side by side hold 2, a crossing about 1.4.
NUCLEUS_RADIUS = 3.5
# Where two boxes' masks meet, a chromosome's direction is read from its own pixels this many
# half-widths around the shared ones.
DIRECTION_REACH = 6.0


def segment_in_box(gray: np.ndarray, box: tuple[int, int, int, int], context: int = 8) -> np.ndarray:
    """Boolean mask, of the box's size, of the chromosome that integer pixel `box` (x0, y0, x1, y1) was drawn around.

    The threshold is chosen on the box plus `context` pixels around it, so a tight box that holds
    nothing but chromosome still has background to compare against (outside the image counts as white).
    """
    if gray.ndim != 2 or min(gray.shape) == 0:
        raise ValueError(f"image must be a non-empty 2-D array, got shape {gray.shape}")
    x0, y0, x1, y1 = box
    dark = _dark_pixels(gray, box, context)
    if dark is None:  # flat: nothing to separate, keep the whole box
        return np.ones((y1 - y0, x1 - x0), dtype=bool)
    labels, count = ndimage.label(dark)
    if count == 0:
        return np.ones(dark.shape, dtype=bool)
    return labels == _component_the_box_was_drawn_around(labels, count)


class ThresholdSegmenter:
    """One boolean mask per box, in full-image coordinates, from local thresholds and the boxes themselves.

    For each box: threshold it (as `segment_in_box`), drop nucleus pixels, keep the component the box
    was drawn around (debris and neighbours that do not touch it fall away). Then every pixel that two boxes' components both claim — a neighbour touching
    or lying across the chromosome — goes to the chromosome whose course runs through it, judged
    from the direction of each chromosome's unshared pixels next to it. Where two chromosomes
    genuinely cross, the pixel lies on both courses and belongs to both masks.

    `segmenter(image, boxes)` takes any image `as_gray_uint8` accepts and boxes as (N, 4) xyxy pixels,
    and returns an (N, height, width) bool array; each mask lies inside its box. A box that holds
    only nucleus gets an empty mask. `context` is as in `segment_in_box`.
    """

    def __init__(self, context: int = 8):
        self.context = context

    def __call__(self, image, boxes) -> np.ndarray:
        gray = as_gray_uint8(image)
        pixel_boxes = [_integer_box(box) for box in validate_boxes(boxes, gray.shape)]
        masks = np.zeros((len(pixel_boxes), *gray.shape), dtype=bool)
        if not pixel_boxes:
            return masks
        dark_in_boxes = [_dark_pixels(gray, box, self.context) for box in pixel_boxes]
        half_width = _chromosome_half_width(dark_in_boxes)
        nuclei = _nuclei(gray, half_width)
        for mask, (x0, y0, x1, y1), dark in zip(masks, pixel_boxes, dark_in_boxes):
            if dark is None:  # flat window, as in segment_in_box: the box is all chromosome (unless all nucleus)
                dark = np.ones((y1 - y0, x1 - x0), dtype=bool)
            labels, count = ndimage.label(dark & ~nuclei[y0:y1, x0:x1])
            if count:
                mask[y0:y1, x0:x1] = labels == _component_the_box_was_drawn_around(labels, count)
        _share_out_contested_pixels(masks, pixel_boxes, half_width)
        return masks


def validate_boxes(boxes, image_shape: tuple[int, int]) -> np.ndarray:
    """`boxes` as an (N, 4) float array of xyxy pixels clipped to the image; a ValueError names any box that is not one."""
    array = np.asarray(boxes, dtype=np.float64) if len(boxes) else np.zeros((0, 4))
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"boxes must be an (N, 4) array of (xmin, ymin, xmax, ymax), got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"boxes have non-finite coordinates: {array[~np.isfinite(array).all(1)].tolist()}")
    height, width = image_shape
    clipped = np.clip(array, 0, [width, height, width, height])
    for index, (box, (x0, y0, x1, y1)) in enumerate(zip(array, clipped)):
        if x1 - x0 < 2 or y1 - y0 < 2:
            raise ValueError(f"box {index} {tuple(box.tolist())} is empty or lies outside the {width}x{height} image")
    return clipped


def _integer_box(box) -> tuple[int, int, int, int]:
    """Whole pixels covering the box (the rounding extract_chromosome uses)."""
    xmin, ymin, xmax, ymax = box
    return math.floor(xmin), math.floor(ymin), math.ceil(xmax), math.ceil(ymax)


def _dark_pixels(gray: np.ndarray, box: tuple[int, int, int, int], context: int) -> np.ndarray | None:
    """Chromosome-dark pixels of the box, thresholded on the box plus `context` pixels; None when that window is flat."""
    x0, y0, x1, y1 = box
    window = _window_padded_white(gray, (x0 - context, y0 - context, x1 + context, y1 + context))
    smooth = ndimage.gaussian_filter(window.astype(np.float32), 1.0)
    if float(smooth.max() - smooth.min()) < 8.0:
        return None
    dark = ndimage.binary_closing(_darker_than_background(smooth), structure=np.ones((3, 3), bool), iterations=1, border_value=0)
    return ndimage.binary_fill_holes(dark)[context : context + y1 - y0, context : context + x1 - x0]


def _darker_than_background(smooth: np.ndarray) -> np.ndarray:
    otsu = threshold_otsu(smooth)
    background = float(np.percentile(smooth, 95))
    return smooth < otsu + PALE_BAND_SLACK * max(background - otsu, 0.0)


def _window_padded_white(gray: np.ndarray, window: tuple[int, int, int, int]) -> np.ndarray:
    """gray[y0:y1, x0:x1] where the window may reach past the image, whose outside counts as white."""
    x0, y0, x1, y1 = window
    height, width = gray.shape
    out = np.full((y1 - y0, x1 - x0), 255, dtype=gray.dtype)
    top, left = max(y0, 0), max(x0, 0)
    bottom, right = min(y1, height), min(x1, width)
    out[top - y0 : bottom - y0, left - x0 : right - x0] = gray[top:bottom, left:right]
    return out


def _component_the_box_was_drawn_around(labels: np.ndarray, count: int) -> int:
    """Label of the component whose extent best matches the box (ties broken by area)."""
    height, width = labels.shape
    areas = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, count + 1))
    best_label, best_score = 1, -1.0
    for label, found in enumerate(ndimage.find_objects(labels), start=1):
        if found is None:
            continue
        rows, cols = found
        # Fraction of the box's height and width that this component spans.
        extent = (rows.stop - rows.start) / height * (cols.stop - cols.start) / width
        score = extent + 0.5 * areas[label - 1] / areas.max()
        if score > best_score:
            best_label, best_score = label, score
    return best_label


def _chromosome_half_width(dark_in_boxes: list[np.ndarray | None]) -> float:
    """Typical chromosome half-width: the depth of the dark pixels along their skeletons, median over all boxes.

    Along a skeleton the depth is the half-width; the few skeleton pixels at crossings or inside a
    nucleus reaching into a box barely move the median.
    """
    depths = [
        ndimage.distance_transform_edt(padded)[skeletonize(padded)]
        for padded in (np.pad(dark, 1) for dark in dark_in_boxes if dark is not None and dark.any())
    ]
    return max(float(np.median(np.concatenate(depths))), 1.0) if depths else 1.0


def _nuclei(gray: np.ndarray, half_width: float) -> np.ndarray:
    """Pixels of large round dark blobs: what survives an opening by a disc wider than any chromosome, plus its soft rim.

    Thresholded like the boxes, so that a nucleus ends where a box's dark pixels end.
    """
    smooth = ndimage.gaussian_filter(gray.astype(np.float32), 1.0)
    if float(smooth.max() - smooth.min()) < 8.0:
        return np.zeros(gray.shape, dtype=bool)
    depth = ndimage.distance_transform_edt(_darker_than_background(smooth))
    radius = NUCLEUS_RADIUS * half_width
    centres = depth > radius
    if not centres.any():
        return np.zeros(gray.shape, dtype=bool)
    # Opening = dilating the eroded set (the centres) by the same disc.
    return ndimage.distance_transform_edt(~centres) <= radius + 2.0


def _share_out_contested_pixels(masks: np.ndarray, boxes: list[tuple[int, int, int, int]], half_width: float) -> None:
    """In place: give each pixel claimed by several masks to the chromosomes whose course runs through it."""
    claims = masks.sum(axis=0)
    contested, _ = ndimage.label(claims >= 2, structure=np.ones((3, 3), bool))
    height, width = claims.shape
    reach = int(math.ceil(DIRECTION_REACH * half_width))
    changed = set()
    for label, (rows, cols) in enumerate(ndimage.find_objects(contested), start=1):
        # Work in a window around this shared patch, wide enough to see which way each claimant runs.
        top, left = max(rows.start - reach, 0), max(cols.start - reach, 0)
        window = (slice(top, min(rows.stop + reach, height)), slice(left, min(cols.stop + reach, width)))
        patch = contested[window] == label
        ys, xs = np.nonzero(patch)
        claimants = [index for index in range(len(masks)) if masks[index][window][ys, xs].any()]
        claimed = np.stack([masks[index][window][ys, xs] for index in claimants])
        own_near = (claims[window] == 1) & (ndimage.distance_transform_edt(~patch) <= reach)
        own = [masks[index][window] & own_near for index in claimants]
        points = np.stack([xs, ys], axis=1).astype(np.float64)
        for index, kept in zip(claimants, _owners(points, claimed, own, half_width)):
            masks[index][ys + top, xs + left] = kept
            changed.add(index)
    for index in changed:
        x0, y0, x1, y1 = boxes[index]
        masks[index][y0:y1, x0:x1] = _without_crumbs(masks[index][y0:y1, x0:x1], half_width)


def _owners(points: np.ndarray, claimed: np.ndarray, own: list[np.ndarray], half_width: float) -> np.ndarray:
    """Which claimants keep each shared pixel: those whose course (within a half-width of its axis) runs through it.

    `points` are the shared pixels (x, y), `claimed` says who claims each, `own` is each claimant's
    unshared pixels nearby. A claimant with none (its box lies inside another's) is read from the
    shared pixels no other course explains: its arms either side of the chromosome it lies across.
    A pixel on no course goes to the nearest one; a claimant whose course cannot be read at all
    keeps everything it claimed.
    """
    distances = np.full(claimed.shape, np.inf)
    unread = []
    for k, (mine, own_pixels) in enumerate(zip(claimed, own)):
        # A stub cut off by a box edge can be narrower than the chromosome: never below the typical width.
        own_half_width = max(float(ndimage.distance_transform_edt(own_pixels).max()), half_width)
        course = _course(np.argwhere(own_pixels)[:, ::-1].astype(np.float64), points[mine], own_half_width)
        if course is None:
            unread.append(k)
        else:
            distances[k] = _distance_to_line(points, *course) / own_half_width
    explained = ((distances <= 1.0) & claimed).any(axis=0)
    for k in unread:
        course = _course(points[claimed[k] & ~explained], points[claimed[k]], half_width)
        if course is not None:
            distances[k] = _distance_to_line(points, *course) / half_width
    distances[~claimed] = np.inf
    on_course = distances <= 1.0
    nearest = np.zeros_like(on_course)
    nearest[np.argmin(distances, axis=0), np.arange(points.shape[0])] = True
    keep = on_course | (~on_course.any(axis=0) & nearest)
    unreadable = np.isinf(distances).all(axis=1)
    keep[unreadable] = claimed[unreadable]
    return keep & claimed


def _course(own: np.ndarray, shared: np.ndarray, half_width: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Centre and unit direction of a chromosome's axis through a shared patch; None without own pixels to anchor it.

    The axis passes through the chromosome's own pixels and runs the way that keeps most of its
    pixels (own and claimed shared ones) within a half-width: along its body, not across a
    neighbour's. The own pixels alone are often a short stub cut obliquely by a box edge, whose
    principal axis would be tilted.
    """
    if len(own) < 3:
        return None
    pixels = np.concatenate([own, shared])
    pixels = pixels[:: -(-len(pixels) // 2000)]  # a regular subsample is plenty to find a direction
    centre = own.mean(axis=0)
    angles = np.linspace(0.0, np.pi, 90, endpoint=False)
    normals = np.stack([-np.sin(angles), np.cos(angles)], axis=1)
    within = np.abs((pixels - centre) @ normals.T) <= half_width
    band = pixels[within[:, np.argmax(within.sum(axis=0))]]
    if len(band) < 3:
        return None
    # Refit to the pixels in the best band, for an axis finer than the 2-degree search.
    centre = band.mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov((band - centre).T))
    return centre, eigenvectors[:, 1]


def _distance_to_line(points: np.ndarray, centre: np.ndarray, direction: np.ndarray) -> np.ndarray:
    offsets = points - centre
    return np.abs(offsets[:, 0] * direction[1] - offsets[:, 1] * direction[0])


def _without_crumbs(mask: np.ndarray, half_width: float) -> np.ndarray:
    """The mask without pieces smaller than a chromosome-width square (left-overs of sharing out)."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if count <= 1:
        return mask
    areas = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
    keep = (areas >= (2 * half_width) ** 2) | (areas == areas.max())
    return keep[labels - 1] & mask
