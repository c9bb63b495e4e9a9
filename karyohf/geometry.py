"""Where things are along a chromosome: its medial axis, width profile, centromere and p/q orientation.

Chromosomes bend, so band positions are measured along the medial axis (arc length), not down the
bounding box. A crop is "straightened" into a strip: row i samples the image across the axis at arc
length i / OVERSAMPLE, so the strip's rows are the chromosome read from its top end to its bottom
end. Rearranged strips are "bent" back along a curve with the source chromosome's shape, because
real crops are bent too and a straight aberrant chromosome would give itself away.

Everything works in *ink* (255 - grey level): the background is 0, so sampling outside a
chromosome, blending and rescaling need no special cases.

Two stages read it: the karyogram (which way up a chromosome is, where its centromere sits) and the synthesis of
aberrant training chromosomes (`karyohf.synthesis`), which cuts and bends along the axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree
from skimage.morphology import skeletonize

from .cytogenetics import centromere_fraction, normalize_chromosome
from .images import as_gray_uint8
from .segmentation import segment_in_box

# Strip samples per pixel along and across the axis. Sampling the strip at twice the pixel rate
# (with cubic interpolation) keeps the straighten -> rearrange -> bend round trip from blurring bands.
OVERSAMPLE = 2

# How far either side of the hg38 centromere position a constriction is still plausible (fraction
# of the length): condensation differs between arms and between preparations.
CENTROMERE_WINDOW = 0.12
# A width minimum counts as a constriction only if it is this much narrower than the typical width.
CONSTRICTION_DEPTH = 0.12


def ink_of(image) -> np.ndarray:
    """Float ink (255 - grey) of a dark-on-white image (PIL, array or path)."""
    return 255.0 - as_gray_uint8(image).astype(np.float32)


def chromosome_mask(image) -> np.ndarray:
    """Boolean mask of the chromosome in a single-chromosome crop (holes filled, one component)."""
    gray = as_gray_uint8(image)
    return segment_in_box(gray, (0, 0, gray.shape[1], gray.shape[0]))


@dataclass(frozen=True)
class MedialAxis:
    """The centre line of a chromosome from its top end to its bottom end.

    `points` (n, 2) are (row, col) image coordinates spaced 1 / OVERSAMPLE pixel of arc apart;
    `normals` (n, 2) are unit vectors across the axis (to the right of the direction of travel,
    i.e. towards +col for a chromosome running down the image).
    """

    points: np.ndarray
    normals: np.ndarray

    @property
    def length(self) -> float:
        """Arc length in pixels."""
        return (len(self.points) - 1) / OVERSAMPLE

    @classmethod
    def from_polyline(cls, polyline: np.ndarray) -> "MedialAxis":
        """Resample a (row, col) polyline at uniform arc length and attach its normals."""
        steps = np.linalg.norm(np.diff(polyline, axis=0), axis=1)
        arc = np.concatenate([[0.0], np.cumsum(steps)])
        samples = np.linspace(0.0, arc[-1], max(2, int(round(arc[-1] * OVERSAMPLE)) + 1))
        points = np.stack([np.interp(samples, arc, polyline[:, k]) for k in (0, 1)], axis=1)
        tangents = np.gradient(points, axis=0)
        tangents /= np.maximum(np.linalg.norm(tangents, axis=1, keepdims=True), 1e-9)
        return cls(points, np.stack([-tangents[:, 1], tangents[:, 0]], axis=1))

    def resized(self, rows: int) -> "MedialAxis":
        """An axis of `rows` samples with the same shape (tangent angle vs relative arc length)."""
        tangents = np.stack([self.normals[:, 1], -self.normals[:, 0]], axis=1)
        angles = np.unwrap(np.arctan2(tangents[:, 0], tangents[:, 1]))
        new_angles = np.interp(np.linspace(0, 1, rows), np.linspace(0, 1, len(angles)), angles)
        steps = np.stack([np.sin(new_angles), np.cos(new_angles)], axis=1) / OVERSAMPLE
        points = self.points[0] + np.concatenate([[[0.0, 0.0]], np.cumsum(steps[:-1], axis=0)])
        return MedialAxis(points, np.stack([-np.cos(new_angles), np.sin(new_angles)], axis=1))


def medial_axis(mask: np.ndarray) -> MedialAxis:
    """The smoothed longest path through the mask's skeleton, extended to both tips, top end first."""
    if not mask.any():
        raise ValueError("the chromosome mask is empty")
    depth = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    path = _longest_skeleton_path(skeletonize(mask))
    half_width = float(np.median(depth[path[:, 0], path[:, 1]])) if len(path) else 1.0
    # Skeleton ends fork towards the corners of a blunt tip; drop them and extend along the axis.
    trim = min(int(round(half_width)), max(0, (len(path) - 3) // 2))
    path = path[trim : len(path) - trim].astype(float)
    if len(path) >= 3:
        path = ndimage.gaussian_filter1d(path, sigma=max(1.5, half_width), axis=0, mode="nearest")
    else:  # a blob too short for a skeleton (a small G chromosome): its principal axis
        path = _principal_axis_stub(mask)
    if path[0, 0] > path[-1, 0]:
        path = path[::-1]
    start = _extend_to_tip(mask, path[0], path[0] - path[min(len(path) - 1, 3)])
    end = _extend_to_tip(mask, path[-1], path[-1] - path[max(0, len(path) - 4)])
    return MedialAxis.from_polyline(np.concatenate([[start], path, [end]]))


def _longest_skeleton_path(skeleton: np.ndarray) -> np.ndarray:
    """(row, col) pixels of the longest shortest-path in the skeleton graph (its diameter)."""
    rows, cols = np.nonzero(skeleton)
    if len(rows) < 2:
        return np.stack([rows, cols], axis=1)
    index = -np.ones(skeleton.shape, dtype=int)
    index[rows, cols] = np.arange(len(rows))
    padded = np.pad(index, 1, constant_values=-1)
    sources, targets, weights = [], [], []
    for dr, dc in ((0, 1), (1, -1), (1, 0), (1, 1)):
        neighbour = padded[rows + 1 + dr, cols + 1 + dc]
        linked = neighbour >= 0
        sources.append(np.nonzero(linked)[0])
        targets.append(neighbour[linked])
        weights.append(np.full(linked.sum(), np.hypot(dr, dc)))
    n = len(rows)
    graph = coo_matrix((np.concatenate(weights), (np.concatenate(sources), np.concatenate(targets))), shape=(n, n))
    distances = dijkstra(graph, directed=False, indices=0)
    far = int(np.argmax(np.where(np.isfinite(distances), distances, -1)))
    distances, predecessors = dijkstra(graph, directed=False, indices=far, return_predecessors=True)
    node = int(np.argmax(np.where(np.isfinite(distances), distances, -1)))
    path = [node]
    while predecessors[node] >= 0:
        node = int(predecessors[node])
        path.append(node)
    return np.stack([rows[path], cols[path]], axis=1)


def _principal_axis_stub(mask: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(mask)
    centre = np.array([rows.mean(), cols.mean()])
    coords = np.stack([rows, cols], axis=1) - centre
    if len(rows) < 3:
        return np.stack([centre - [0.5, 0.0], centre, centre + [0.5, 0.0]])
    _, vectors = np.linalg.eigh(np.cov(coords.T))
    direction = vectors[:, -1]
    return np.stack([centre - 0.5 * direction, centre, centre + 0.5 * direction])


def _extend_to_tip(mask: np.ndarray, point: np.ndarray, outward: np.ndarray, margin: float = 1.5) -> np.ndarray:
    """Walk from `point` along `outward` until leaving the mask, then `margin` pixels further."""
    direction = outward / max(float(np.linalg.norm(outward)), 1e-9)
    height, width = mask.shape
    position = point.copy()
    for _ in range(4 * (height + width)):
        row, col = int(round(position[0])), int(round(position[1]))
        if not (0 <= row < height and 0 <= col < width and mask[row, col]):
            break
        position = position + 0.25 * direction
    return position + margin * direction


@dataclass(frozen=True)
class Strip:
    """A straightened chromosome: `ink` (rows, cols) float, `mask` (rows, cols) bool.

    Row i lies at arc length i / OVERSAMPLE from the axis's top end; the axis runs down the
    middle column. Only the chromosome itself is kept (neighbours and debris are zeroed).
    """

    ink: np.ndarray
    mask: np.ndarray

    @property
    def centre(self) -> float:
        return (self.ink.shape[1] - 1) / 2

    @property
    def widths(self) -> np.ndarray:
        """Width of the chromosome at each row, in pixels."""
        return self.mask.sum(axis=1) / OVERSAMPLE

    @property
    def extent(self) -> tuple[int, int]:
        """First and last rows holding chromosome: its two tips."""
        rows = np.nonzero(self.mask.any(axis=1))[0]
        return int(rows[0]), int(rows[-1])

    def ink_level(self) -> float:
        """Typical darkness of the chromosome, for matching exposure between chromosomes."""
        return float(np.median(self.ink[self.mask])) if self.mask.any() else 0.0


def straighten(image) -> tuple[Strip, MedialAxis]:
    """Sample a single-chromosome crop across its medial axis into a Strip; returns it and the axis."""
    ink = ink_of(image)
    mask = chromosome_mask(image)
    axis = medial_axis(mask)
    # Keep the chromosome's soft edge but nothing that merely shares the crop with it.
    ink = ink * ndimage.binary_dilation(mask, iterations=1)
    half_width = int(np.ceil(1.5 * ndimage.distance_transform_edt(mask).max())) + 2
    offsets = np.arange(-half_width * OVERSAMPLE, half_width * OVERSAMPLE + 1) / OVERSAMPLE
    coords = axis.points[:, None, :] + offsets[None, :, None] * axis.normals[:, None, :]
    sampled_ink = ndimage.map_coordinates(ink, coords.transpose(2, 0, 1), order=3, cval=0.0)
    sampled_mask = ndimage.map_coordinates(mask.astype(np.float32), coords.transpose(2, 0, 1), order=1, cval=0.0) > 0.5
    # Across a tight bend the samples can reach another part of the same chromosome: keep, per
    # row, only the run of chromosome that the axis passes through.
    centre = len(offsets) // 2
    runs, _ = ndimage.label(sampled_mask, structure=[[0, 0, 0], [1, 1, 1], [0, 0, 0]])
    own = (runs == runs[:, centre : centre + 1]) & (runs > 0)
    keep = ndimage.binary_dilation(own, structure=[[0, 0, 0], [1, 1, 1], [0, 0, 0]], iterations=OVERSAMPLE)
    return Strip(np.clip(sampled_ink, 0, 255) * keep, own), axis


def bend(strip: Strip, axis: MedialAxis) -> np.ndarray:
    """Render a strip along `axis` (same number of rows): a uint8 dark-on-white image of the chromosome."""
    if len(axis.points) != strip.ink.shape[0]:
        raise ValueError(f"axis has {len(axis.points)} samples but the strip has {strip.ink.shape[0]} rows")
    reach = strip.ink.shape[1] / (2 * OVERSAMPLE) + 2
    top_left = np.floor(axis.points.min(axis=0) - reach)
    size = np.ceil(axis.points.max(axis=0) + reach - top_left).astype(int) + 1
    grid = np.stack(np.meshgrid(np.arange(size[0]), np.arange(size[1]), indexing="ij"), axis=-1) + top_left
    pixels = grid.reshape(-1, 2)
    # Each pixel takes the arc position of its nearest axis sample (refined along the tangent)
    # and its signed distance across the axis: the strip coordinates it came from.
    _, nearest = cKDTree(axis.points).query(pixels)
    offset = pixels - axis.points[nearest]
    normals = axis.normals[nearest]
    tangents = np.stack([normals[:, 1], -normals[:, 0]], axis=1)
    rows = nearest + OVERSAMPLE * np.einsum("ij,ij->i", offset, tangents)
    cols = strip.centre + OVERSAMPLE * np.einsum("ij,ij->i", offset, normals)
    ink = ndimage.map_coordinates(strip.ink, np.stack([rows, cols]), order=3, cval=0.0)
    gray = 255.0 - np.clip(ink, 0, 255).reshape(size[0], size[1])
    return gray.round().astype(np.uint8)


@dataclass(frozen=True)
class Centromere:
    """The centromere along a strip: `fraction` of the chromosome's length from its top tip, the strip
    `row`, and whether a constriction was actually seen (`constricted`) or the hg38 position was used."""

    fraction: float
    row: float
    constricted: bool


def _smoothed_widths(strip: Strip) -> tuple[np.ndarray, int, int]:
    first, last = strip.extent
    widths = ndimage.gaussian_filter1d(strip.widths[first : last + 1], sigma=OVERSAMPLE)
    return widths, first, last


def _constriction(widths: np.ndarray, expected: float) -> tuple[float, float]:
    """(position as a fraction, depth) of the narrowest point in the plausible window around `expected`.

    Depth is 1 - width there / typical width; the tips (where every chromosome narrows) are excluded.
    """
    n = len(widths)
    tip = max(0.06, 0.5 * float(np.median(widths)) / max(n / OVERSAMPLE, 1e-9))
    low, high = max(expected - CENTROMERE_WINDOW, tip), min(expected + CENTROMERE_WINDOW, 1 - tip)
    lo, hi = int(np.floor(low * (n - 1))), int(np.ceil(high * (n - 1)))
    if hi - lo < 2:
        return expected, 0.0
    typical = float(np.median(widths[int(0.1 * n) : max(int(0.9 * n), int(0.1 * n) + 1)]))
    k = lo + int(np.argmin(widths[lo : hi + 1]))
    return k / (n - 1), 1.0 - float(widths[k]) / max(typical, 1e-9)


def estimate_centromere(strip: Strip, chromosome: int | str) -> Centromere:
    """The primary constriction: the width minimum within the plausible range of the class's hg38
    centromere (assuming p arm on top), or the hg38 position itself when no constriction shows."""
    expected = centromere_fraction(normalize_chromosome(chromosome))
    widths, first, last = _smoothed_widths(strip)
    fraction, depth = _constriction(widths, expected)
    constricted = depth >= CONSTRICTION_DEPTH
    if not constricted:
        fraction = expected
    return Centromere(fraction, first + fraction * (last - first), constricted)


def p_arm_up(strip: Strip, chromosome: int | str, margin: float = 0.08) -> bool | None:
    """Orientation check against the ideogram: is the constriction where the p arm on top puts it?

    Compares the constriction near the expected centromere with the one at the mirrored position.
    True: p arm on top; False: upside down; None: the ideogram cannot tell (a metacentric
    chromosome) or the width profile does not say.
    """
    expected = centromere_fraction(normalize_chromosome(chromosome))
    if abs(expected - 0.5) < 0.1:
        return None
    widths, _, _ = _smoothed_widths(strip)
    _, depth_up = _constriction(widths, expected)
    _, depth_down = _constriction(widths, 1.0 - expected)
    if abs(depth_up - depth_down) < margin:
        return None
    return bool(depth_up > depth_down)
