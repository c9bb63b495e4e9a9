"""Everything OWLv2-specific: building a detector from scratch, its inputs, its training loss, and inference with one cached query.

OWLv2 (`Owlv2ForObjectDetection`) scores every image patch against text queries and predicts one
box per patch. Here there is a single query, "chromosomes", so:
- the text tower runs once per detector (`query_embedding`) and inference uses only the vision tower;
- classification is binary per patch: sigmoid focal loss on the query logit, boxes by L1 + GIoU,
  patches and chromosomes paired by Hungarian matching (transformers computes no OWLv2 loss);
- a from-scratch model needs only a tiny text tower and a tokenizer that can spell the query.

Images go in as OWLv2 expects them: padded at the bottom and right to a square, then resized to the
model's input, so boxes live in fractions of that padded square (see `boxes.py`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image
from torchvision.ops import generalized_box_iou_loss
from transformers import CLIPTokenizer, Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor
from transformers.image_transforms import center_to_corners_format
from transformers.loss.loss_deformable_detr import DeformableDetrHungarianMatcher, DeformableDetrImageLoss

from ..images import as_gray_uint8
from .boxes import random_dihedral, xyxy_to_padded_cxcywh

QUERY = "chromosomes"
# OWLv2's text length; the processor pads every query to the tokenizer's model_max_length.
MAX_TEXT_LENGTH = 16


# --- Building a detector ---------------------------------------------------------------------------


def build_query_tokenizer(query: str = QUERY, max_length: int = MAX_TEXT_LENGTH) -> CLIPTokenizer:
    """A CLIP BPE tokenizer just big enough for OWLv2 from scratch: the letters, plus merges that make `query` one token.

    It keeps OWLv2's conventions: padding "!" is id 0 (a query whose first id is 0 counts as absent),
    bos is > 0, and eos has the highest id because the text tower pools at the argmax id.
    """
    letters = [chr(code) for code in range(ord("a"), ord("z") + 1)]
    tokens = ["!", *letters, *(letter + "</w>" for letter in letters)]
    merges = []
    for word in query.lower().split():
        for end in range(2, len(word) + 1):
            left, right = word[: end - 1], word[end - 1] + ("</w>" if end == len(word) else "")
            merges.append((left, right))
            tokens.append(left + right)
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(dict.fromkeys(tokens))}
    return CLIPTokenizer(vocab=vocab, merges=merges, pad_token="!", model_max_length=max_length)


def build_processor(image_size: int, tokenizer: CLIPTokenizer) -> Owlv2Processor:
    return Owlv2Processor(image_processor=Owlv2ImageProcessor(size={"height": image_size, "width": image_size}),
                          tokenizer=tokenizer)


def small_owlv2_config(
    tokenizer: CLIPTokenizer,
    image_size: int = 512,
    patch_size: int = 16,
    vision_width: int = 256,
    vision_layers: int = 6,
    vision_heads: int = 4,
    text_width: int = 128,
    text_layers: int = 1,
    text_heads: int = 2,
) -> Owlv2Config:
    """An OWLv2 sized for training from scratch; the defaults cost ~1.9 s per batch-2 step on 2 CPU cores.

    The text tower only ever embeds one query, so it stays tiny. The class head compares projected
    vision features with the text embedding, so `projection_dim` must equal the text width.
    """
    if image_size % patch_size:
        raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
    text_config = dict(
        vocab_size=len(tokenizer), hidden_size=text_width, intermediate_size=4 * text_width,
        num_hidden_layers=text_layers, num_attention_heads=text_heads, max_position_embeddings=tokenizer.model_max_length,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    vision_config = dict(
        hidden_size=vision_width, intermediate_size=4 * vision_width, num_hidden_layers=vision_layers,
        num_attention_heads=vision_heads, image_size=image_size, patch_size=patch_size,
    )
    # Without initializer_range, transformers initialises OWLv2's prediction heads with std
    # initializer_factor = 1.0: from scratch, the box head's outputs start in the hundreds and
    # saturate its sigmoid. With 0.02, every patch starts by predicting its own cell.
    return Owlv2Config(text_config=text_config, vision_config=vision_config, projection_dim=text_width,
                       initializer_range=0.02)


def owlv2_from_scratch(**geometry) -> tuple[Owlv2ForObjectDetection, Owlv2Processor]:
    """A randomly initialised OWLv2 of `small_owlv2_config(**geometry)` and its processor (tokenizer included)."""
    tokenizer = build_query_tokenizer()
    config = small_owlv2_config(tokenizer, **geometry)
    return Owlv2ForObjectDetection(config), build_processor(config.vision_config.image_size, tokenizer)


def load_owlv2(path: str) -> tuple[Owlv2ForObjectDetection, Owlv2Processor]:
    """Model and processor from a local folder or a Hub id (e.g. google/owlv2-base-patch16-ensemble)."""
    model = Owlv2ForObjectDetection.from_pretrained(path)
    processor = Owlv2Processor.from_pretrained(path)
    model_side = model.config.vision_config.image_size
    size = processor.image_processor.size
    if (size.height, size.width) != (model_side, model_side):
        raise ValueError(f"{path}: the processor resizes to {size.height}x{size.width} but the model "
                         f"expects {model_side}x{model_side} images")
    return model, processor


# --- Inputs ----------------------------------------------------------------------------------------


def square_rgb(gray: np.ndarray, side: int) -> Image.Image:
    """Pad a grayscale metaphase at the bottom and right to a square with white, resize it to `side`, as RGB.

    This is the geometry OWLv2's processor produces, done first and with PIL for two reasons: the
    padding should look like empty slide (the processor pads with black, one more dark object on a
    light field), and PIL's antialiased resize costs ~20 ms where the processor's blur-then-resize
    of a full-size float metaphase costs ~0.7 s (1360 px, one busy core).
    """
    height, width = gray.shape
    square = np.full((max(height, width),) * 2, 255, dtype=np.uint8)
    square[:height, :width] = gray
    return Image.fromarray(square).resize((side, side), Image.BILINEAR).convert("RGB")


def pixel_values(processor: Owlv2Processor, images) -> torch.Tensor:
    """Any images `as_gray_uint8` accepts -> the model's pixel batch (B, 3, S, S)."""
    side = processor.image_processor.size.height
    squares = [square_rgb(as_gray_uint8(image), side) for image in images]
    return processor.image_processor(images=squares, return_tensors="pt")["pixel_values"]


def query_inputs(processor: Owlv2Processor) -> dict[str, torch.Tensor]:
    """The tokenised query, (1, MAX_TEXT_LENGTH), padded the way OWLv2 was trained."""
    encoding = processor(text=[QUERY], return_tensors="pt")
    return {"input_ids": encoding["input_ids"], "attention_mask": encoding["attention_mask"]}


class DetectionCollator:
    """Metaphase examples (`image`, `boxes` as xyxy pixels) -> OWLv2 inputs plus `labels` for `ChromosomeDetectionLoss`.

    Each image gets the same query; target boxes are (cx, cy, w, h) fractions of the padded square.
    """

    def __init__(self, processor: Owlv2Processor, augment: bool = False):
        self.processor = processor
        self.augment = augment
        self.query = query_inputs(processor)

    def __call__(self, examples) -> dict:
        grays, labels = [], []
        for example in examples:
            gray = as_gray_uint8(example["image"])
            boxes = np.asarray(example["boxes"], dtype=np.float32).reshape(-1, 4)
            if self.augment:
                gray, boxes = random_dihedral(gray, boxes)
            grays.append(gray)
            labels.append({"class_labels": torch.zeros(len(boxes), dtype=torch.int64),
                           "boxes": xyxy_to_padded_cxcywh(boxes, *gray.shape)})
        batch_size = len(grays)
        return {
            "pixel_values": pixel_values(self.processor, grays),
            "input_ids": self.query["input_ids"].repeat(batch_size, 1),
            "attention_mask": self.query["attention_mask"].repeat(batch_size, 1),
            "labels": labels,
        }


# --- Training loss ---------------------------------------------------------------------------------


class ChromosomeDetectionLoss:
    """`compute_loss_func` for `transformers.Trainer`: Hungarian matching, sigmoid focal, L1 and GIoU, one class.

    Patches are scored by the query logit (as OWLv2's post-processing does), so the objectness head,
    which OWLv2 runs on detached features, is left untrained and unused.

    `dense_box_weight` adds one-to-many box regression (`dense_box_loss`): Hungarian matching trains
    the box head on one patch per chromosome, which is little signal for a model trained from scratch.

    Each term is a mean over the batch's chromosomes, and the Trainer does not divide a
    `compute_loss_func`'s loss by gradient_accumulation_steps: keep accumulation at 1.
    """

    def __init__(
        self,
        class_cost: float = 1.0,
        bbox_cost: float = 5.0,
        giou_cost: float = 2.0,
        bbox_weight: float = 5.0,
        giou_weight: float = 2.0,
        focal_alpha: float = 0.25,
        dense_box_weight: float = 1.0,
    ):
        matcher = DeformableDetrHungarianMatcher(class_cost=class_cost, bbox_cost=bbox_cost, giou_cost=giou_cost)
        self.criterion = DeformableDetrImageLoss(matcher, num_classes=1, focal_alpha=focal_alpha, losses=["labels", "boxes"])
        self.weights = {"loss_ce": 1.0, "loss_bbox": bbox_weight, "loss_giou": giou_weight}
        self.dense_box_weight = dense_box_weight

    def __call__(self, outputs, labels, num_items_in_batch=None) -> torch.Tensor:
        # float32 whatever the autocast: the matcher's cdist and the GIoU need it.
        predictions = {"logits": outputs.logits.float(), "pred_boxes": outputs.pred_boxes.float()}
        terms = self.criterion(predictions, labels)
        loss = sum(weight * terms[name] for name, weight in self.weights.items())
        if self.dense_box_weight:
            dense = dense_box_loss(predictions["pred_boxes"], labels, self.weights["loss_bbox"], self.weights["loss_giou"])
            loss = loss + self.dense_box_weight * dense
        return loss


def dense_box_loss(pred_boxes: torch.Tensor, labels: list[dict], bbox_weight: float, giou_weight: float) -> torch.Tensor:
    """Every patch whose centre lies inside a chromosome's box regresses to that box (the smallest, where boxes nest).

    Classification stays one-to-one; only the box head (and the features under it) learn from all
    covering patches, which is what makes from-scratch training converge faster than one-to-one matching alone.
    """
    side = math.isqrt(pred_boxes.shape[1])
    steps = (torch.arange(side, device=pred_boxes.device, dtype=pred_boxes.dtype) + 0.5) / side
    centre_y, centre_x = torch.meshgrid(steps, steps, indexing="ij")  # row-major, OWLv2's patch order
    centre_x, centre_y = centre_x.reshape(-1, 1), centre_y.reshape(-1, 1)
    total, count = pred_boxes.new_zeros(()), 0
    for predicted, target in zip(pred_boxes, labels):
        boxes = target["boxes"].to(pred_boxes)
        if len(boxes) == 0:
            continue
        x0, y0, x1, y1 = center_to_corners_format(boxes).unbind(-1)
        inside = (centre_x >= x0) & (centre_x <= x1) & (centre_y >= y0) & (centre_y <= y1)  # (patches, boxes)
        covered = inside.any(1)
        if not covered.any():
            continue
        owner = torch.where(inside, boxes[:, 2] * boxes[:, 3], torch.inf).argmin(1)[covered]
        source, goal = predicted[covered], boxes[owner]
        l1 = (source - goal).abs().sum(-1)
        giou = generalized_box_iou_loss(center_to_corners_format(source), center_to_corners_format(goal))
        total = total + (bbox_weight * l1 + giou_weight * giou).sum()
        count += len(source)
    return total / max(count, 1)


# --- Inference with the cached query -----------------------------------------------------------------


@torch.no_grad()
def query_embedding(model: Owlv2ForObjectDetection, processor: Owlv2Processor) -> torch.Tensor:
    """The query's text embedding, (1, 1, D): computed once per detector, never per image."""
    device = next(model.parameters()).device
    inputs = {name: tensor.to(device) for name, tensor in query_inputs(processor).items()}
    return model.owlv2.get_text_features(**inputs).pooler_output[:, None, :]


def predict(model: Owlv2ForObjectDetection, pixels: torch.Tensor, query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-patch query logits (B, P) and boxes (B, P, 4, padded-square cx, cy, w, h), running only the vision tower."""
    feature_map, _ = model.image_embedder(pixel_values=pixels)
    batch, rows, columns, width = feature_map.shape
    features = feature_map.reshape(batch, rows * columns, width)
    logits, _ = model.class_predictor(features, query.expand(batch, -1, -1).to(features.dtype))
    return logits[..., 0], model.box_predictor(features, feature_map)
