"""CenterNet: a small convolutional detector that finds every chromosome of a metaphase as one heatmap peak.

A chromosome is a peak in a centre heatmap; the location of the peak also predicts the distances to the four sides
of its box. Training uses the CenterNet focal loss on elliptical Gaussian targets and, following TTFNet, regresses
the box from every location near its centre (weighted by the Gaussian, GIoU loss), not from the peak alone: that
dense box supervision is what lets a detector trained from scratch on two CPU cores converge in a few epochs.

Boxes are handled as fractions of the model input, like OWLv2's: the metaphase is padded at the bottom and right to
a square, so fractions times the square's side give the image's own pixels. The network is fully convolutional, so
the input may be any size whose sides are multiples of the coarsest stage's stride: training uses crops smaller
than `config.image_size`, and `ChromosomeDetector` may resize a metaphase so that its chromosomes appear at the size
the detector learned (`config.chromosome_length`).
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_centernet import MIRROR_FLIPS, CenterNetConfig


try:  # only the training loss needs torchvision: inference, and loading with trust_remote_code, work without it
    from torchvision.ops import generalized_box_iou_loss
except ImportError:
    generalized_box_iou_loss = None


# Initial heatmap bias: every location starts with a 1% chance of a centre, so the focal loss is not swamped at
# step 0 by the ~16k background locations of an image (the RetinaNet/CenterNet prior).
HEATMAP_PRIOR = 0.01


@dataclass
class CenterNetObjectDetectionOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor`, *optional*):
        Heatmap focal loss + `box_loss_weight` x GIoU loss, when `labels` are given.
    heatmap_logits (`torch.FloatTensor` of shape `(batch_size, 1, rows, columns)`):
        Centre logits on the stride-4 grid.
    pred_boxes (`torch.FloatTensor` of shape `(batch_size, rows * columns, 4)`):
        The box each location predicts, (x0, y0, x1, y1) as fractions of the input's width and height, row-major.
    heatmap_loss (`torch.FloatTensor`, *optional*), box_loss (`torch.FloatTensor`, *optional*):
        The two terms of `loss`, for logging.
    """

    loss: torch.FloatTensor | None = None
    heatmap_logits: torch.FloatTensor | None = None
    pred_boxes: torch.FloatTensor | None = None
    heatmap_loss: torch.FloatTensor | None = None
    box_loss: torch.FloatTensor | None = None


# ---------------------------------------------------------------------------------------------------------------
# Architecture
# ---------------------------------------------------------------------------------------------------------------


def conv_norm_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class CenterNetResidualBlock(nn.Module):
    """Two 3x3 convolutions with a skip (a ResNet basic block)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = conv_norm_relu(channels, channels)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(channels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.relu(features + self.norm2(self.conv2(self.conv1(features))))


class CenterNetBackbone(nn.Module):
    """Stride-2 stem, then stages at strides 4, 8, 16, 32 ...: each a stride-2 convolution and residual blocks."""

    def __init__(self, config: CenterNetConfig):
        super().__init__()
        self.stem = conv_norm_relu(config.num_channels, config.stem_channels, stride=2)
        self.stages = nn.ModuleList()
        in_channels = config.stem_channels
        for channels, blocks in zip(config.stage_channels, config.stage_blocks):
            layers = [conv_norm_relu(in_channels, channels, stride=2)]
            layers += [CenterNetResidualBlock(channels) for _ in range(blocks)]
            self.stages.append(nn.Sequential(*layers))
            in_channels = channels

    def forward(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        features, outputs = self.stem(pixel_values), []
        for stage in self.stages:
            features = stage(features)
            outputs.append(features)
        return outputs


class CenterNetNeck(nn.Module):
    """Feature pyramid, top-down: coarse stages see the whole chromosome and its neighbours, the stride-4 stage
    places it to within a few pixels; the sum carries both to the heads."""

    def __init__(self, config: CenterNetConfig):
        super().__init__()
        self.laterals = nn.ModuleList(nn.Conv2d(c, config.neck_channels, kernel_size=1) for c in config.stage_channels)
        self.smooth = conv_norm_relu(config.neck_channels, config.neck_channels)

    def forward(self, stages: list[torch.Tensor]) -> torch.Tensor:
        merged = self.laterals[-1](stages[-1])
        for lateral, features in zip(reversed(self.laterals[:-1]), reversed(stages[:-1])):
            merged = lateral(features) + F.interpolate(merged, size=features.shape[-2:], mode="nearest")
        return self.smooth(merged)


class CenterNetHead(nn.Module):
    """3x3 convolution, ReLU, 1x1 convolution to `out_channels` maps."""

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int, bias_init: float = 0.0):
        super().__init__()
        self.hidden = nn.Conv2d(in_channels, hidden_channels, kernel_size=3, padding=1)
        self.output = nn.Conv2d(hidden_channels, out_channels, kernel_size=1)
        self.output.prediction_bias = bias_init  # read by `_init_weights`: small weights, this bias

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.output(F.relu(self.hidden(features)))


class CenterNetPreTrainedModel(PreTrainedModel):
    config: CenterNetConfig
    base_model_prefix = "centernet"
    main_input_name = "pixel_values"
    input_modalities = ("image",)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module):
        if isinstance(module, nn.Conv2d) and hasattr(module, "prediction_bias"):
            init.normal_(module.weight, std=0.01)
            init.constant_(module.bias, module.prediction_bias)
        elif isinstance(module, nn.Conv2d):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
            init.zeros_(module.num_batches_tracked)


class CenterNetForObjectDetection(CenterNetPreTrainedModel):
    """Backbone, neck, heatmap head and box head; computes its own training loss when given `labels`."""

    def __init__(self, config: CenterNetConfig):
        super().__init__(config)
        self.backbone = CenterNetBackbone(config)
        self.neck = CenterNetNeck(config)
        prior_logit = math.log(HEATMAP_PRIOR / (1 - HEATMAP_PRIOR))
        self.heatmap_head = CenterNetHead(config.neck_channels, config.head_channels, 1, bias_init=prior_logit)
        self.box_head = CenterNetHead(config.neck_channels, config.head_channels, 4)
        self.post_init()

    def forward(
        self, pixel_values: torch.Tensor, labels: list[dict] | None = None, return_dict: bool | None = None, **kwargs
    ) -> CenterNetObjectDetectionOutput:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
            Metaphases prepared by `CenterNetImageProcessor` (sides multiples of the coarsest stage's stride).
        labels (`list[dict]`, *optional*):
            One dict per image with `"boxes"`: `(n, 4)` (cx, cy, w, h) fractions of the input (the DETR and
            OWLv2 convention; any `"class_labels"` are ignored, there is one class). Returns the loss when given.
        """
        coarsest = self.config.coarsest_stride
        if pixel_values.shape[-1] % coarsest or pixel_values.shape[-2] % coarsest:
            raise ValueError(f"input height and width must be multiples of {coarsest} (the coarsest stage's stride), "
                             f"got {tuple(pixel_values.shape[-2:])}")
        features = self.neck(self.backbone(pixel_values))
        heatmap_logits = self.heatmap_head(features)
        distances = F.softplus(self.box_head(features)) * self.config.box_scale  # input pixels to l, t, r, b
        pred_boxes = self._boxes_from_distances(distances)
        loss = heatmap_loss = box_loss = None
        if labels is not None:
            heatmap_loss, box_loss = self.loss_terms(heatmap_logits, pred_boxes, labels)
            loss = heatmap_loss + self.config.box_loss_weight * box_loss
        output = CenterNetObjectDetectionOutput(
            loss=loss, heatmap_logits=heatmap_logits, pred_boxes=pred_boxes, heatmap_loss=heatmap_loss, box_loss=box_loss
        )
        return output if return_dict is not False else output.to_tuple()

    def _boxes_from_distances(self, distances: torch.Tensor) -> torch.Tensor:
        """(B, 4, rows, cols) side distances in input pixels -> (B, rows*cols, 4) xyxy fractions of the input."""
        rows, columns = distances.shape[-2:]
        stride = self.config.output_stride
        centre_y, centre_x = location_centres(rows, columns, stride, distances)
        left, top, right, bottom = distances.unbind(1)
        # Divided by the sizes as numbers, not a tensor made of them: an ONNX export then keeps the sizes dynamic.
        width, height = columns * stride, rows * stride
        boxes = torch.stack([(centre_x - left) / width, (centre_y - top) / height, (centre_x + right) / width,
                             (centre_y + bottom) / height], dim=-1)
        return boxes.flatten(1, 2)

    def loss_terms(self, heatmap_logits: torch.Tensor, pred_boxes: torch.Tensor, labels: list[dict]):
        """Focal loss on the Gaussian heatmap (per chromosome) and Gaussian-weighted GIoU (per chromosome)."""
        if generalized_box_iou_loss is None:
            raise ImportError("the CenterNet training loss needs torchvision (its ops.generalized_box_iou_loss)")
        rows, columns = heatmap_logits.shape[-2:]
        heatmaps, box_targets, box_weights = [], [], []
        for target in labels:
            heatmap, boxes, weights = centernet_targets(target["boxes"].to(pred_boxes), rows, columns, self.config)
            heatmaps.append(heatmap)
            box_targets.append(boxes)
            box_weights.append(weights)
        heatmap = torch.stack(heatmaps)
        num_chromosomes = max(sum(len(target["boxes"]) for target in labels), 1)
        heatmap_loss = gaussian_focal_loss(heatmap_logits[:, 0].float(), heatmap) / num_chromosomes
        weights = torch.stack(box_weights).flatten(1)
        region = weights > 0
        giou = generalized_box_iou_loss(pred_boxes[region].float(), torch.stack(box_targets).flatten(1, 2)[region])
        box_loss = (giou * weights[region]).sum() / num_chromosomes
        return heatmap_loss, box_loss


def flip_averaged_outputs(
    model: CenterNetForObjectDetection, pixel_values: torch.Tensor, flips: tuple[str, ...]
) -> CenterNetObjectDetectionOutput:
    """The detector's heatmap and boxes averaged over the image and its mirror images (test-time augmentation).

    A chromosome's mirror image is a chromosome: each flipped view is run in one batch with the original, its maps
    are flipped back (boxes mirrored about the square input's centre) and the logits and boxes averaged, so every
    location scores what the model sees from several views. Costs one forward per view.
    """
    unknown = [flip for flip in flips if flip not in MIRROR_FLIPS]
    if unknown:
        raise ValueError(f"flips must be among {MIRROR_FLIPS}, got {unknown}")
    axes = {"horizontal": (-1,), "vertical": (-2,), "both": (-2, -1)}  # pixel axes each of MIRROR_FLIPS reverses
    views = [pixel_values] + [pixel_values.flip(axes[flip]) for flip in flips]
    outputs = model(pixel_values=torch.cat(views))
    batch, rows, columns = len(pixel_values), *outputs.heatmap_logits.shape[-2:]
    heatmaps = outputs.heatmap_logits.split(batch)
    boxes = outputs.pred_boxes.unflatten(1, (rows, columns)).split(batch)  # (B, rows, cols, 4) xyxy fractions
    heatmap_sum, box_sum = heatmaps[0].clone(), boxes[0].clone()
    for flip, heatmap, box in zip(flips, heatmaps[1:], boxes[1:]):
        heatmap_sum += heatmap.flip(axes[flip])
        box = box.flip([axis - 1 for axis in axes[flip]])  # the (rows, cols) axes sit one before the box axis
        x0, y0, x1, y1 = box.unbind(-1)
        if flip in ("horizontal", "both"):
            x0, x1 = 1 - x1, 1 - x0
        if flip in ("vertical", "both"):
            y0, y1 = 1 - y1, 1 - y0
        box_sum += torch.stack([x0, y0, x1, y1], dim=-1)
    return CenterNetObjectDetectionOutput(
        heatmap_logits=heatmap_sum / len(views), pred_boxes=(box_sum / len(views)).flatten(1, 2)
    )


# ---------------------------------------------------------------------------------------------------------------
# Targets and losses. Plain functions so tests can check them on hand-made boxes.
# ---------------------------------------------------------------------------------------------------------------


def location_centres(rows: int, columns: int, stride: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, cols) y and x of every heatmap cell's centre, in input pixels."""
    ys = (torch.arange(rows, device=like.device, dtype=like.dtype) + 0.5) * stride
    xs = (torch.arange(columns, device=like.device, dtype=like.dtype) + 0.5) * stride
    return torch.meshgrid(ys, xs, indexing="ij")


def centernet_targets(boxes: torch.Tensor, rows: int, columns: int, config: CenterNetConfig):
    """Training targets of one image from its (n, 4) cx, cy, w, h boxes (fractions of the input, whose heatmap is
    `rows` x `columns`).

    Returns:
        heatmap `(rows, cols)`: the maximum over chromosomes of an elliptical Gaussian (sd `alpha * side / 6` per
            axis) centred on each box, exactly 1 at the cell holding the box centre;
        box targets `(rows, cols, 4)`: the xyxy fractions each location must predict;
        weights `(rows, cols)`: each chromosome's Gaussian over its regression region (where it exceeds
            `box_region_threshold`, the centre cell always included), normalised to sum to 1 per chromosome; where
            regions overlap the smaller chromosome owns the location. 0 elsewhere.
    """
    boxes = boxes.reshape(-1, 4).float()
    heatmap = boxes.new_zeros(rows, columns)
    box_targets = boxes.new_zeros(rows, columns, 4)
    weights = boxes.new_zeros(rows, columns)
    if len(boxes) == 0:
        return heatmap, box_targets, weights
    stride = config.output_stride
    size = boxes.new_tensor([columns, rows, columns, rows]) * stride  # input width, height, width, height
    centre_y, centre_x = location_centres(rows, columns, stride, heatmap)
    cx, cy, w, h = (boxes * size).unbind(-1)  # input pixels
    sigma_x = (config.gaussian_alpha * w / 6).clamp(min=stride / 4)
    sigma_y = (config.gaussian_alpha * h / 6).clamp(min=stride / 4)
    dx = (centre_x[None] - cx[:, None, None]) / sigma_x[:, None, None]
    dy = (centre_y[None] - cy[:, None, None]) / sigma_y[:, None, None]
    gaussians = torch.exp(-0.5 * (dx**2 + dy**2))  # (n, rows, cols)
    centre_row, centre_col = separate_centres((cy / stride).long().clamp(0, rows - 1),
                                              (cx / stride).long().clamp(0, columns - 1), rows, columns)
    index = torch.arange(len(boxes), device=boxes.device)
    gaussians[index, centre_row, centre_col] = 1.0
    heatmap = gaussians.amax(0)

    region = gaussians >= config.box_region_threshold
    area = torch.where(region, (w * h)[:, None, None], torch.inf)
    owner = area.argmin(0)  # smallest chromosome covering each location ...
    # ... except at a centre, which regresses its own chromosome: else the larger of an overlapping pair would learn
    # its partner's box at its own peak, and non-maximum suppression would drop it as a duplicate.
    owner[centre_row, centre_col] = index
    owned = region.any(0)
    mine = gaussians * (owner[None] == index[:, None, None]) * owned[None]
    mine = mine / mine.flatten(1).sum(1).clamp(min=1e-12)[:, None, None]
    weights = mine.sum(0)
    corners = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1) / size
    box_targets = corners[owner]
    return heatmap, box_targets, weights


def separate_centres(rows: torch.Tensor, columns: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Heatmap cells of the chromosome centres, each chromosome its own: a centre whose cell another chromosome
    already holds moves to the nearest free cell around it (one heatmap peak cannot stand for two chromosomes)."""
    rows, columns = rows.clone(), columns.clone()
    taken = set()
    for k in range(len(rows)):
        cell = (int(rows[k]), int(columns[k]))
        if cell in taken:
            free = [(cell[0] + dr, cell[1] + dc) for radius in (1, 2) for dr in range(-radius, radius + 1)
                    for dc in range(-radius, radius + 1) if max(abs(dr), abs(dc)) == radius]
            free = [(r, c) for r, c in free if 0 <= r < height and 0 <= c < width and (r, c) not in taken]
            if free:
                cell = min(free, key=lambda rc: (rc[0] - cell[0]) ** 2 + (rc[1] - cell[1]) ** 2)
                rows[k], columns[k] = cell
        taken.add(cell)
    return rows, columns


def gaussian_focal_loss(logits: torch.Tensor, heatmap: torch.Tensor, alpha: float = 2.0, beta: float = 4.0):
    """CenterNet's penalty-reduced focal loss, summed (divide by the number of chromosomes): cells at a centre
    (target 1) are positives; other cells count as negatives down-weighted by (1 - target)^beta near a centre."""
    log_p, log_not_p = F.logsigmoid(logits), F.logsigmoid(-logits)
    probability = log_p.exp()
    positive = heatmap >= 1.0
    positive_loss = -((1 - probability) ** alpha * log_p)[positive].sum()
    negative_loss = -((1 - heatmap) ** beta * probability**alpha * log_not_p)[~positive].sum()
    return positive_loss + negative_loss


__all__ = [
    "CenterNetForObjectDetection",
    "CenterNetObjectDetectionOutput",
    "CenterNetPreTrainedModel",
    "flip_averaged_outputs",
]
