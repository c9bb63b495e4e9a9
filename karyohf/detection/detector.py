"""`ChromosomeDetector`: every chromosome in a metaphase, as boxes in the image's own pixels with scores.

Wraps either of two detector families behind one call, each with its processor:
- OWLv2 (ours trained from scratch, or a finetune of the public checkpoint): the query's text embedding is computed
  when the detector is built, and each call runs only the vision tower and scores every patch against it;
- CenterNet (`karyohf.models.centernet`, convolutional, trained from scratch): each call keeps the heatmap peaks
  (and, with `off_peak_weight`, the other cells' boxes, down-weighted).
Either way, candidates scoring above `score_threshold` go through non-maximum suppression (OWLv2's own
post-processing has none) and come back in the image's own pixels.

A CenterNet checkpoint may also carry `off_peak_weight`: its final pass then also proposes the boxes of heatmap cells
that are not peaks (down-weighted), which the suppression sorts out. Where chromosomes cross or touch, the smaller one
owns the shared centre cells, so the other's box exists only off its peak.

It may also carry `chromosome_length`: the median chromosome length, in input pixels, at which it
detects best. Metaphases come as fields of any size at the microscope's fixed magnification (the validation images
are 486-1360 px with chromosomes ~85 px long in every one), so one fixed input square shows their chromosomes at
very different sizes. The detector then measures the chromosomes in one plain forward at `image_size` and runs the
final pass on the square resized to bring their median length to `chromosome_length`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import AutoConfig, AutoImageProcessor, AutoModelForObjectDetection, Owlv2ForObjectDetection

from ..images import as_gray_uint8
from ..models.centernet import flip_averaged_outputs
from .boxes import Detections, non_maximum_suppression, padded_cxcywh_to_xyxy
from .centernet import model_scale
from .owlv2 import load_owlv2, pixel_values, predict, query_embedding

DEFAULT_SCORE_THRESHOLD = 0.3
# Crossing and touching chromosomes have overlapping boxes: 2.2% of the annotated validation boxes overlap a neighbour
# by IoU > 0.5, 0.8% by IoU > 0.6. Suppressing above 0.5 dropped real chromosomes (recall 0.952 -> 0.956 at 0.6).
DEFAULT_NMS_IOU = 0.6
# The input side chosen to bring chromosomes to `chromosome_length` stays within these multiples of `image_size`, and
# is measured only from this many confident detections (fewer: the default square).
RESCALE_LIMITS = (0.5, 2.0)
MIN_CHROMOSOMES_TO_MEASURE = 5
# Candidate cells per metaphase with off-peak decoding: about 46 chromosomes times their ~20 most confident cells
# (500 cost 0.008 of validation AP50; 2,000 gave the same as 1,000).
OFF_PEAK_CANDIDATES = 1000


def rescaled_side(shape: tuple[int, int], boxes: np.ndarray, image_size: int, chromosome_length: float,
                  multiple: int) -> int:
    """The side of the square input at which the chromosomes found as `boxes` (xyxy pixels of an image of `shape`)
    have median length `chromosome_length` (`model_scale`, as training crops are scaled): a multiple of `multiple`,
    within `RESCALE_LIMITS` of `image_size`, and `image_size` itself when too few were found to measure."""
    if len(boxes) < MIN_CHROMOSOMES_TO_MEASURE:
        return image_size
    side = max(shape) * model_scale(shape, boxes, image_size, chromosome_length)
    low, high = (limit * image_size for limit in RESCALE_LIMITS)
    return int(round(min(max(side, low), high) / multiple)) * multiple


class ChromosomeDetector:
    def __init__(self, model, processor, score_threshold: float = DEFAULT_SCORE_THRESHOLD, nms_iou: float = DEFAULT_NMS_IOU,
                 test_time_flips: tuple[str, ...] | None = None, chromosome_length: float | None = None,
                 off_peak_weight: float | None = None, box_offset: tuple[float, ...] | None = None):
        if not 0.0 <= score_threshold < 1.0:
            raise ValueError(f"score_threshold must be in [0, 1), got {score_threshold}")
        if not 0.0 <= nms_iou <= 1.0:
            raise ValueError(f"nms_iou must be in [0, 1], got {nms_iou}")
        self.model = model.eval()
        if not isinstance(model, Owlv2ForObjectDetection):
            # Channels-last runs the CenterNet's convolutions ~35% faster on CPU (the identity model's stem likewise).
            self.model = self.model.to(memory_format=torch.channels_last)
        self.processor = processor
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.query = query_embedding(model, processor) if isinstance(model, Owlv2ForObjectDetection) else None
        if test_time_flips and self.query is not None:
            raise ValueError("test_time_flips applies to CenterNet detectors only (OWLv2 scores patches, not a heatmap)")
        if test_time_flips is None:  # the setting saved with the checkpoint, measured with its weights
            test_time_flips = getattr(model.config, "test_time_flips", ())
        self.test_time_flips = tuple(test_time_flips)
        if chromosome_length is None:  # likewise; 0 turns rescaling off
            chromosome_length = getattr(model.config, "chromosome_length", None) or 0.0
        if chromosome_length < 0 or (chromosome_length and self.query is not None):
            raise ValueError("chromosome_length must be >= 0 (0: no rescaling) and applies to CenterNet detectors only, "
                             f"got {chromosome_length}")
        self.chromosome_length = float(chromosome_length)
        if off_peak_weight is None:  # likewise; 0 decodes heatmap peaks only
            off_peak_weight = getattr(model.config, "off_peak_weight", 0.0)
        if not 0.0 <= off_peak_weight <= 1.0 or (off_peak_weight and self.query is not None):
            raise ValueError("off_peak_weight must be in [0, 1] (0: heatmap peaks only) and applies to CenterNet detectors "
                             f"only, got {off_peak_weight}")
        self.off_peak_weight = float(off_peak_weight)
        if box_offset is None:  # likewise: the training annotations' convention (zeros when it has none)
            box_offset = getattr(model.config, "box_offset", None) or (0.0, 0.0, 0.0, 0.0)
        self.box_offset = np.asarray(box_offset, dtype=np.float32).reshape(-1)
        if self.box_offset.shape != (4,) or not np.isfinite(self.box_offset).all():
            raise ValueError(f"box_offset must be 4 finite pixel shifts (x0, y0, x1, y1), got {box_offset}")
        self.max_detections = getattr(model.config, "max_detections", None)

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | None = None, backend: str = "torch",
                        precision: str = "fp32", **kwargs) -> "ChromosomeDetector":
        """Load a detector checkpoint folder or Hub id (OWLv2 with its tokenizer, or CenterNet); kwargs go to the
        constructor. `backend`/`precision` say where a CenterNet's network runs (`karyohf.backends`; fp32 at either
        precision)."""
        from ..backends import check_backend, load_network

        check_backend(backend, precision)
        folder = Path(path)
        if folder.is_dir() and not (folder / "config.json").is_file():
            raise FileNotFoundError(f"{folder} holds no config.json: not a saved detector checkpoint")
        model_type = AutoConfig.from_pretrained(str(path)).model_type
        if model_type != "owlv2":
            model = load_network(path, AutoModelForObjectDetection, backend, precision, device)
            processor = AutoImageProcessor.from_pretrained(str(path), backend="pil")
        elif backend != "torch":
            raise ValueError("the onnxruntime backend runs CenterNet detectors; OWLv2 runs on torch")
        else:
            model, processor = load_owlv2(str(path))
            if device is not None:
                model.to(device)
        return cls(model, processor, **kwargs)

    def save_pretrained(self, path: str | Path) -> None:
        self.model.save_pretrained(path)
        self.processor.save_pretrained(path)

    @torch.inference_mode()
    def __call__(self, image, score_threshold: float | None = None, nms_iou: float | None = None,
                 max_detections: int | None = None) -> Detections:
        """Detect chromosomes in one image: PIL, numpy (gray, RGB, 16-bit, float) or a path. A lower
        `score_threshold` for this call also returns the weaker candidates; the boxes above the detector's own
        threshold are the same either way (suppression only ever removes a box for a stronger one). A higher
        `nms_iou` (and `max_detections`) also returns boxes that overlap stronger ones more: candidates for a
        later judge of which are chromosomes."""
        gray = as_gray_uint8(image)
        threshold = self.score_threshold if score_threshold is None else score_threshold
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"score_threshold must be in [0, 1), got {threshold}")
        nms_iou = self.nms_iou if nms_iou is None else nms_iou
        if not 0.0 <= nms_iou <= 1.0:
            raise ValueError(f"nms_iou must be in [0, 1], got {nms_iou}")
        boxes, scores = (self._owlv2_candidates(gray, threshold) if self.query is not None
                         else self._centernet_candidates(gray, threshold))
        if self.box_offset.any():  # one shift of every box (then clipped): suppression below is unchanged by it
            rows, cols = gray.shape[:2]
            boxes = boxes + torch.as_tensor(self.box_offset, dtype=boxes.dtype, device=boxes.device)
            boxes = torch.stack([boxes[:, 0].clamp(0, cols), boxes[:, 1].clamp(0, rows), boxes[:, 2].clamp(0, cols),
                                 boxes[:, 3].clamp(0, rows)], dim=1)
        # Boxes that the clipping squeezed below a pixel lay (almost) wholly in the padding.
        real = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
        boxes, scores = boxes[real], scores[real]
        kept = non_maximum_suppression(boxes, scores, nms_iou)[: max_detections or self.max_detections]
        return Detections(boxes=boxes[kept].cpu().numpy().astype(np.float32), scores=scores[kept].cpu().numpy())

    def _owlv2_candidates(self, gray: np.ndarray, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Every patch scoring above the threshold: its box in image pixels, and its score."""
        pixels = pixel_values(self.processor, [gray]).to(device=self.query.device, dtype=self.model.dtype)
        logits, boxes = predict(self.model, pixels, self.query)
        scores = logits[0].float().sigmoid()
        keep = scores > threshold
        return padded_cxcywh_to_xyxy(boxes[0][keep].float(), *gray.shape), scores[keep]

    def _centernet_candidates(self, gray: np.ndarray, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Every heatmap peak (and with `off_peak_weight`, every other cell) scoring above the threshold: its box in
        image pixels, and its score."""
        config = self.model.config
        side = config.image_size
        if self.chromosome_length:
            found, _ = self._centernet_pass(gray, side, flips=(), threshold=DEFAULT_SCORE_THRESHOLD)
            side = rescaled_side(gray.shape, found.cpu().numpy(), side, self.chromosome_length, config.coarsest_stride)
        return self._centernet_pass(gray, side, self.test_time_flips, threshold, self.off_peak_weight)

    def _centernet_pass(self, gray: np.ndarray, side: int, flips: tuple[str, ...], threshold: float,
                        off_peak_weight: float = 0.0):
        """Heatmap peaks (and with `off_peak_weight`, other cells) above `threshold` from the metaphase's padded
        square at `side` pixels, averaged over `flips`: boxes in image pixels, and scores."""
        inputs = self.processor(gray, return_tensors="pt", size=side)
        device = next(self.model.parameters()).device
        pixels = inputs["pixel_values"].to(device=device, dtype=self.model.dtype)
        pixels = pixels.contiguous(memory_format=torch.channels_last)
        if flips:
            outputs = flip_averaged_outputs(self.model, pixels, flips)
        else:
            outputs = self.model(pixel_values=pixels)
        found = self.processor.post_process_object_detection(
            outputs, threshold=threshold, target_sizes=inputs["original_sizes"], off_peak_weight=off_peak_weight,
            top_k=OFF_PEAK_CANDIDATES if off_peak_weight else self.model.config.max_detections,
        )[0]
        return found["boxes"], found["scores"]
