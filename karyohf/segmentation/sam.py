"""Box-prompted SAM masks (the paper's segmentation stage), from a checkpoint file the user has.

The image is embedded once per metaphase (`SamPredictor.set_image`, the expensive part: ~15-20 s
for vit_b on two CPU cores) and all boxes are decoded together in one `predict_torch` call.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from segment_anything import SamPredictor, sam_model_registry
from segment_anything.modeling import Sam

from ..images import as_gray_uint8
from .threshold import validate_boxes


class SamSegmenter:
    """One boolean mask per box, in full-image coordinates, from a SAM model prompted with each box.

    `segmenter(image, boxes)` takes any image `as_gray_uint8` accepts and boxes as (N, 4) xyxy pixels,
    and returns an (N, height, width) bool array, like `ThresholdSegmenter`. SAM is asked for one
    mask per box (a box is an unambiguous prompt). Mask pixels farther than `box_margin` pixels
    outside their box are dropped: the box bounds the chromosome, so they can only be SAM leaking
    into a touching neighbour.
    """

    def __init__(self, model: Sam, box_margin: int = 4):
        if not isinstance(model, Sam):
            raise TypeError(f"expected a segment_anything Sam model, got {type(model).__name__}")
        self.predictor = SamPredictor(model.eval())
        self.box_margin = box_margin

    @classmethod
    def from_checkpoint(cls, path, model_type: str = "vit_b", device: str | torch.device | None = None, **kwargs) -> SamSegmenter:
        """Load a SAM checkpoint file (e.g. sam_vit_b_01ec64.pth) of the given `model_type` ("vit_b", "vit_l" or "vit_h").

        `device` defaults to CUDA when available, else the CPU; `kwargs` go to `SamSegmenter` (`box_margin`).
        """
        path = Path(path).expanduser()
        if model_type not in sam_model_registry:
            raise ValueError(f"unknown SAM model_type {model_type!r}; choose one of {sorted(sam_model_registry)}")
        if not path.is_file():
            raise FileNotFoundError(f"SAM checkpoint not found: {path} (download sam_{model_type}_*.pth from the segment-anything release)")
        # Build without weights, then load onto the CPU: the registry loads with no map_location, which fails on a
        # CPU-only machine for a checkpoint saved from a GPU.
        model = sam_model_registry[model_type]()
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except (RuntimeError, pickle.UnpicklingError) as error:
            reason = str(error).splitlines()[0]
            raise ValueError(f"{path} is not a SAM {model_type} checkpoint (another model_type's, or not SAM's): {reason}") from error
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return cls(model.to(device), **kwargs)

    @torch.no_grad()
    def __call__(self, image, boxes) -> np.ndarray:
        gray = as_gray_uint8(image)
        boxes = validate_boxes(boxes, gray.shape)
        masks = np.zeros((len(boxes), *gray.shape), dtype=bool)
        if len(boxes) == 0:
            return masks
        # SAM expects RGB; the metaphases are grayscale.
        self.predictor.set_image(np.repeat(gray[:, :, None], 3, axis=2))
        prompts = torch.as_tensor(boxes, dtype=torch.float32, device=self.predictor.device)
        prompts = self.predictor.transform.apply_boxes_torch(prompts, gray.shape)
        predicted, _, _ = self.predictor.predict_torch(point_coords=None, point_labels=None, boxes=prompts, multimask_output=False)
        self.predictor.reset_image()
        for mask, found, (x0, y0, x1, y1) in zip(masks, predicted[:, 0].cpu().numpy(), boxes):
            near = (
                slice(max(int(y0) - self.box_margin, 0), int(np.ceil(y1)) + self.box_margin),
                slice(max(int(x0) - self.box_margin, 0), int(np.ceil(x1)) + self.box_margin),
            )
            mask[near] = found[near]
        return masks
