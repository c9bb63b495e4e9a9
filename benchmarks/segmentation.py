"""Mask IoU of the weight-free segmenter against plain thresholding, where the true masks are known.

The real metaphases have boxes but no masks, so each scene is built from real parts whose masks
are known: real chromosomes (karyogram crops; a crop's own threshold mask inside its white canvas, the one
`extract_chromosome` uses, is its ground truth, and only those pixels are painted) laid at random
positions and angles onto a real background (a box-free window of a real metaphase, with its
noise, debris and nuclei; chromosomes may touch those but never lie on them).
Brightfield light passes through everything it meets, so the chromosomes multiply the background,
and a crossing is darker than either chromosome. Their contrast is lowered to that of the
metaphases (whose chromosomes are paler than karyogram crops). Every scene holds two isolated
chromosomes, two touching pairs and one crossing pair; a scene that cannot be laid out is skipped.

Three ways to get one mask per box (the true boxes, then the same boxes jittered by up to 3 px as
a detector's would be):
- global Otsu: the dark pixels of the whole image inside the box (plain thresholding);
- segment_in_box: a local threshold and the component the box was drawn around, each box alone
  (what `extract_chromosome` does when given no mask);
- ThresholdSegmenter: the same for all boxes at once, nuclei removed, shared pixels given to the
  chromosome whose course runs through them, crossings to both.

    python benchmarks/segmentation.py [--scenes 120] [--seed 0] [--split train]
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.filters import threshold_otsu

from karyohf.data import load_karyogram_crops, load_metaphases, split_karyogram_crops, split_metaphases
from karyohf.images import as_gray_uint8
from karyohf.segmentation import ThresholdSegmenter, segment_in_box

SCENE = 320  # pixels a side
BOX_MARGIN = 12  # background windows keep this far from every annotated box
GAP = 10  # isolated chromosomes (and pairs) keep this far from everything else
CONTRAST = (0.45, 0.75)  # fraction of a karyogram crop's darkness kept: metaphase chromosomes are paler
JITTER = 3  # pixels each box side moves in the jittered-box run
KINDS = ("isolated", "touching", "crossing")


def background_windows(metaphases, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """SCENE x SCENE windows of real metaphases that no annotated box comes near, at most one per image."""
    windows = []
    for index in rng.permutation(len(metaphases)):
        example = metaphases[int(index)]
        gray = as_gray_uint8(example["image"])
        height, width = gray.shape
        if height < SCENE or width < SCENE:
            continue
        near_box = np.zeros(gray.shape, dtype=bool)
        for x0, y0, x1, y1 in np.asarray(example["boxes"]).round().astype(int):
            near_box[max(y0 - BOX_MARGIN, 0) : y1 + BOX_MARGIN, max(x0 - BOX_MARGIN, 0) : x1 + BOX_MARGIN] = True
        # Boxes inside each SCENE x SCENE window, from a summed-area table.
        table = np.pad(near_box.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        inside = table[SCENE:, SCENE:] - table[:-SCENE, SCENE:] - table[SCENE:, :-SCENE] + table[:-SCENE, :-SCENE]
        free = np.argwhere(inside == 0)
        if len(free):
            top, left = free[rng.integers(len(free))]
            windows.append(gray[top : top + SCENE, left : left + SCENE])
            if len(windows) == count:
                break
    return windows


def chromosome_parts(crops, count: int, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """(transmission, mask) of `count` karyogram crops: the crop's own threshold mask, and 1 (clear) outside it."""
    parts = []
    for index in rng.choice(len(crops), size=count, replace=False):
        gray = as_gray_uint8(crops[int(index)]["image"])
        mask = segment_in_box(gray, (0, 0, gray.shape[1], gray.shape[0]))
        parts.append((np.where(mask, gray / 255.0, 1.0), mask))
    return parts


class Scene:
    """A background being covered with chromosomes, each placed as a full-scene mask and transmission."""

    def __init__(self, background: np.ndarray, rng: np.random.Generator):
        self.background = background
        # Nuclei and debris already in the background: chromosomes may touch them but not lie on them.
        smooth = ndimage.gaussian_filter(background.astype(np.float32), 2.0)
        self.background_objects = smooth < 0.9 * np.percentile(smooth, 90)
        self.rng = rng
        self.masks: list[np.ndarray] = []
        self.transmissions: list[np.ndarray] = []
        self.kinds: list[str] = []

    def turned(self, part, angle: float) -> tuple[np.ndarray, np.ndarray]:
        """The part rotated by `angle` degrees, its contrast lowered to a metaphase's."""
        transmission, mask = part
        contrast = self.rng.uniform(*CONTRAST)
        transmission = 1.0 - contrast * (1.0 - transmission)

        def rotate(array: np.ndarray, fill: float) -> np.ndarray:
            image = Image.fromarray(array.astype(np.float32), mode="F")
            return np.asarray(image.rotate(angle, Image.BILINEAR, expand=True, fillcolor=fill))

        mask = rotate(mask, 0.0) > 0.5
        return np.where(mask, rotate(transmission, 1.0), 1.0), mask

    def at(self, turned, centre) -> tuple[np.ndarray, np.ndarray] | None:
        """(mask, transmission) of the turned part centred at `centre` (x, y), or None if it leaves the scene."""
        transmission, mask = turned
        height, width = mask.shape
        left, top = int(round(centre[0] - width / 2)), int(round(centre[1] - height / 2))
        if left < 0 or top < 0 or left + width > SCENE or top + height > SCENE:
            return None
        full_mask = np.zeros((SCENE, SCENE), dtype=bool)
        full_transmission = np.ones((SCENE, SCENE))
        full_mask[top : top + height, left : left + width] = mask
        full_transmission[top : top + height, left : left + width] = transmission
        return full_mask, full_transmission

    def clear(self, mask: np.ndarray, beside_last: bool = False) -> bool:
        """Off the background's objects and GAP pixels from every placed chromosome (but the last, if `beside_last`)."""
        if (mask & self.background_objects).any():
            return False
        others = self.masks[:-1] if beside_last else self.masks
        if not others:
            return True
        distance = ndimage.distance_transform_edt(~np.any(others, axis=0))
        return bool(distance[mask].min() > GAP)

    def add(self, placed, kind: str) -> None:
        self.masks.append(placed[0])
        self.transmissions.append(placed[1])
        self.kinds.append(kind)

    def random_centre(self) -> np.ndarray:
        return self.rng.uniform(0, SCENE, size=2)

    def place_alone(self, part, kind: str = "isolated", tries: int = 200):
        turned = self.turned(part, self.rng.uniform(0, 360))
        for _ in range(tries):
            placed = self.at(turned, self.random_centre())
            if placed is not None and self.clear(placed[0]):
                self.add(placed, kind)
                return placed
        return None

    def place_touching(self, first_part, second_part, tries: int = 50) -> bool:
        """Two chromosomes whose masks touch without overlapping: the second slid out from the first's centre until free."""
        for _ in range(tries):
            first = self.place_alone(first_part, "touching")
            if first is None:
                return False
            turned = self.turned(second_part, self.rng.uniform(0, 360))
            heading = self.rng.uniform(0, 2 * np.pi)
            direction = np.array([np.cos(heading), np.sin(heading)])
            centre = _centroid(first[0])
            for step in range(SCENE):
                second = self.at(turned, centre + step * direction)
                if second is None or not (second[0] & first[0]).any():
                    break
            touches = second is not None and (ndimage.binary_dilation(first[0], np.ones((3, 3), bool)) & second[0]).any()
            if touches and self.clear(second[0], beside_last=True):
                self.add(second, "touching")
                return True
            self._remove_last()
        return False

    def place_crossing(self, first_part, second_part, tries: int = 50) -> bool:
        """Two chromosomes lying across each other, at 40-90 degrees, each mostly outside the other."""
        for _ in range(tries):
            first = self.place_alone(first_part, "crossing")
            if first is None:
                return False
            centre, axis = _centroid(first[0]), _axis(first[0])
            length = np.ptp(np.argwhere(first[0]) @ axis[::-1])
            axis_angle = np.degrees(np.arctan2(-axis[1], axis[0]))  # PIL turns counter-clockwise as displayed
            # The second part is upright before turning, so turning it by axis_angle - 90 lays it along the first.
            turn = axis_angle - 90 + self.rng.choice([-1, 1]) * self.rng.uniform(40, 90)
            turned = self.turned(second_part, turn)
            second = self.at(turned, centre + axis * self.rng.uniform(-0.35, 0.35) * length)
            if second is not None:
                shared = (first[0] & second[0]).sum()
                mostly_outside = shared < 0.6 * min(first[0].sum(), second[0].sum())
                if shared >= 20 and mostly_outside and self.clear(second[0], beside_last=True):
                    self.add(second, "crossing")
                    return True
            self._remove_last()
        return False

    def _remove_last(self) -> None:
        self.masks.pop()
        self.transmissions.pop()
        self.kinds.pop()

    def image(self) -> np.ndarray:
        light = self.background.astype(np.float64) * np.prod(self.transmissions, axis=0)
        return np.clip(light, 0, 255).round().astype(np.uint8)


def _centroid(mask: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(mask)
    return np.array([cols.mean(), rows.mean()])


def _axis(mask: np.ndarray) -> np.ndarray:
    """Unit (x, y) direction of the mask's long axis."""
    rows, cols = np.nonzero(mask)
    _, vectors = np.linalg.eigh(np.cov(np.stack([cols, rows])))
    return vectors[:, 1]


def make_scene(background, parts, rng) -> Scene | None:
    scene = Scene(background, rng)
    take = iter(parts)
    placed = [scene.place_crossing(next(take), next(take))]
    placed += [scene.place_touching(next(take), next(take)) for _ in range(2)]
    placed += [scene.place_alone(next(take)) is not None for _ in range(2)]
    return scene if all(placed) else None


def boxes_of(masks: np.ndarray) -> np.ndarray:
    boxes = []
    for mask in masks:
        rows, cols = np.nonzero(mask)
        boxes.append([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1])
    return np.array(boxes, dtype=np.float64)


def global_otsu(image: np.ndarray, boxes) -> np.ndarray:
    dark = image < threshold_otsu(image)
    masks = np.zeros((len(boxes), *image.shape), dtype=bool)
    for mask, (x0, y0, x1, y1) in zip(masks, boxes.astype(int)):
        mask[y0:y1, x0:x1] = dark[y0:y1, x0:x1]
    return masks


def each_box_alone(image: np.ndarray, boxes) -> np.ndarray:
    masks = np.zeros((len(boxes), *image.shape), dtype=bool)
    for mask, (x0, y0, x1, y1) in zip(masks, boxes.astype(int)):
        mask[y0:y1, x0:x1] = segment_in_box(image, (x0, y0, x1, y1))
    return masks


def iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    return float((predicted & truth).sum() / max((predicted | truth).sum(), 1))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", choices=("train", "validation"), default="train", help="side of both data splits to draw from")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "segmentation.json")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()

    # The segmenter has no weights, but its design choices were made looking at scenes built from the
    # validation sides; the training sides, which it has never seen, give the unbiased numbers.
    backgrounds = background_windows(split_metaphases(load_metaphases())[args.split], args.scenes, rng)
    crops = split_karyogram_crops(load_karyogram_crops())[args.split]
    methods = {"global_otsu": global_otsu, "segment_in_box": each_box_alone, "threshold_segmenter": ThresholdSegmenter()}
    box_runs = ("true_boxes", f"boxes_jittered_{JITTER}px")
    scores = {run: {method: {kind: [] for kind in KINDS} for method in methods} for run in box_runs}
    seconds = {method: 0.0 for method in methods}
    scenes = 0
    for scene_index in range(args.scenes):
        scene = make_scene(backgrounds[scene_index % len(backgrounds)], chromosome_parts(crops, 10, rng), rng)
        if scene is None:
            continue
        scenes += 1
        image, truth = scene.image(), np.array(scene.masks)
        true_boxes = boxes_of(truth)
        jittered = np.clip(true_boxes + rng.integers(-JITTER, JITTER + 1, size=true_boxes.shape), 0, SCENE)
        for run, boxes in zip(box_runs, (true_boxes, jittered)):
            for name, method in methods.items():
                start = time.perf_counter()
                predicted = method(image, boxes)
                seconds[name] += time.perf_counter() - start
                for kind, mask, true_mask in zip(scene.kinds, predicted, truth):
                    scores[run][name][kind].append(iou(mask, true_mask))

    results = {
        run: {
            name: {kind: {"mean_iou": round(float(np.mean(values)), 4), "chromosomes": len(values)} for kind, values in by_kind.items()}
            for name, by_kind in by_method.items()
        }
        for run, by_method in scores.items()
    }
    lines = ["| boxes | method | isolated | touching | crossing |", "|---|---|---|---|---|"]
    for run, by_method in results.items():
        for name, by_kind in by_method.items():
            lines.append(f"| {run} | {name} | " + " | ".join(f"{by_kind[kind]['mean_iou']:.3f}" for kind in KINDS) + " |")
    table = "\n".join(lines)
    print(table)

    report = {
        "what": "mean mask IoU per chromosome; real karyogram crops composed onto box-free windows of real metaphases; "
        "per scene 2 isolated, 2 touching pairs, 1 crossing pair; chromosomes touch the backgrounds' nuclei and debris "
        "but never lie on them",
        "split": args.split,
        "scenes": scenes,
        "background_windows": len(backgrounds),
        "scene_size": SCENE,
        "contrast": CONTRAST,
        "seed": args.seed,
        "results": results,
        "seconds_per_scene": {name: round(total / max(scenes, 1) / len(box_runs), 4) for name, total in seconds.items()},
        "total_seconds": round(time.perf_counter() - started, 1),
        "machine": {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count()},
        "table_markdown": table,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
