"""Weight-free chromosome masks: threshold inside a box and keep the component the box was drawn around.

G-banded chromosomes are dark on a light background, so a local threshold finds them; what makes
it hard is everything else in the box — the tips of neighbours, debris, a nucleus — and pale bands
that split one chromosome into pieces. The box itself says which object is meant: the chromosome
spans it (a diagonal chromosome runs corner to corner), intruders only touch its edges.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu

# Move the Otsu level this far towards the background so pale (gneg) bands stay inside the mask.
PALE_BAND_SLACK = 0.35


def segment_in_box(gray: np.ndarray, box: tuple[int, int, int, int], context: int = 8) -> np.ndarray:
    """Boolean mask, of the box's size, of the chromosome that integer pixel `box` (x0, y0, x1, y1) was drawn around.

    The threshold is chosen on the box plus `context` pixels around it, so a tight box that holds
    nothing but chromosome still has background to compare against (outside the image counts as white).
    """
    if gray.ndim != 2 or min(gray.shape) == 0:
        raise ValueError(f"image must be a non-empty 2-D array, got shape {gray.shape}")
    x0, y0, x1, y1 = box
    window = np.pad(gray, context, mode="constant", constant_values=255)[y0 : y1 + 2 * context, x0 : x1 + 2 * context]
    smooth = ndimage.gaussian_filter(window.astype(np.float32), 1.0)
    inner = (slice(context, context + y1 - y0), slice(context, context + x1 - x0))
    if float(smooth.max() - smooth.min()) < 8.0:  # flat: nothing to separate, keep the whole box
        return np.ones((y1 - y0, x1 - x0), dtype=bool)
    otsu = threshold_otsu(smooth)
    background = float(np.percentile(smooth, 95))
    dark = smooth < otsu + PALE_BAND_SLACK * max(background - otsu, 0.0)
    dark = ndimage.binary_closing(dark, structure=np.ones((3, 3), bool), iterations=1, border_value=0)
    dark = ndimage.binary_fill_holes(dark)[inner]
    labels, count = ndimage.label(dark)
    if count == 0:
        return np.ones(dark.shape, dtype=bool)
    return labels == _component_the_box_was_drawn_around(labels, count)


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
