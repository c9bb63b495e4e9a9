"""CenterNet configuration: a small convolutional detector for every chromosome in a metaphase."""

import math

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

# Mirror images a detector may average over at inference (see `flip_averaged_outputs`).
MIRROR_FLIPS = ("horizontal", "vertical", "both")


@strict
class CenterNetConfig(PreTrainedConfig):
    r"""
    Configuration of [`CenterNetForObjectDetection`]: a ResNet-style backbone, a feature-pyramid neck merging its
    stages at stride `output_stride`, and two heads there: a centre heatmap (one class, "chromosome") and, at every
    location, the distances from it to the four sides of the box (CenterNet, Zhou et al. 2019, with the Gaussian-
    weighted GIoU box regression of TTFNet, Liu et al. 2020, which trains in a few epochs).

    Invalid values raise `huggingface_hub.errors.StrictDataclassError` (its `__cause__` is the `ValueError` with the
    message).

    Args:
        image_size (`int`, defaults to 512):
            Side of the square input (a metaphase padded to a square with white, then resized).
        num_channels (`int`, defaults to 1):
            Input channels (grey-scale).
        stem_channels (`int`, defaults to 16):
            Width of the stride-2 convolution that opens the backbone.
        stage_channels (`tuple[int, ...]`, defaults to `(32, 64, 96, 128)`):
            Width of each backbone stage; stage k works at stride 4 * 2**k.
        stage_blocks (`tuple[int, ...]`, defaults to `(1, 1, 2, 1)`):
            Residual blocks per stage.
        neck_channels (`int`, defaults to 48):
            Width of the feature-pyramid neck.
        head_channels (`int`, defaults to 32):
            Width of the hidden convolution of each head.
        box_scale (`float`, defaults to 16.0):
            Box distances are `softplus(x) * box_scale` input pixels: the head starts near a typical chromosome size.
        gaussian_alpha (`float`, defaults to 0.54):
            Heatmap targets are Gaussians with standard deviation `alpha * side / 6` along each axis of the box.
        box_region_threshold (`float`, defaults to 0.2):
            Locations where a box's Gaussian exceeds this regress that box (smaller boxes win where boxes overlap).
        box_loss_weight (`float`, defaults to 5.0):
            Weight of the GIoU box loss against the heatmap focal loss.
        max_detections (`int`, defaults to 200):
            Most detections `ChromosomeDetector` returns per image (a metaphase has ~46 chromosomes).
        test_time_flips (`tuple[str, ...]`, defaults to `()`):
            Mirror images ("horizontal", "vertical", "both") that `ChromosomeDetector` averages the heatmap and boxes
            over by default: an inference setting saved with the weights it was measured on.
        chromosome_length (`float`, *optional*):
            Median chromosome length, in input pixels, at which the detector finds chromosomes best. When set,
            `ChromosomeDetector` measures each metaphase's chromosomes in one plain forward at `image_size` and
            runs the final pass on its square resized to bring them to this length (an inference setting, saved
            with the weights it was measured on). `None`: every metaphase is resized to `image_size`.
        off_peak_weight (`float`, defaults to 0.0):
            In [0, 1]. `ChromosomeDetector` also takes the boxes of heatmap cells that are not peaks, at their heat
            times this weight, and non-maximum suppression keeps those that no better box covers: a chromosome
            crossing or touching a smaller one is regressed only off its peak (the smaller owns the shared cells).
            0: peaks only, as classic CenterNet decodes (an inference setting, saved with the weights it was
            measured on).
        box_offset (`tuple[float, ...]`, defaults to `(0, 0, 0, 0)`):
            Pixels of the image added to every box's x0, y0, x1, y1 by `ChromosomeDetector`: the annotation
            convention of the training boxes. Trained under flips and quarter turns, the detector centres each box on
            its chromosome, so a margin the annotators drew consistently wider on one side is lost; this gives it back
            (fitted on training metaphases by `train/fit_box_offset.py`; an inference setting, saved with the weights
            it was measured on).
        initializer_range (`float`, defaults to 0.02):
            Unused by the convolutions (Kaiming init); kept for transformers' conventions.
    """

    model_type = "karyohf_centernet"

    image_size: int = 512
    num_channels: int = 1
    stem_channels: int = 16
    stage_channels: tuple[int, ...] | list[int] = (32, 64, 96, 128)
    stage_blocks: tuple[int, ...] | list[int] = (1, 1, 2, 1)
    neck_channels: int = 48
    head_channels: int = 32
    box_scale: float | int = 16.0
    gaussian_alpha: float = 0.54
    box_region_threshold: float = 0.2
    box_loss_weight: float | int = 5.0
    max_detections: int = 200
    test_time_flips: tuple[str, ...] | list[str] = ()
    chromosome_length: float | int | None = None
    off_peak_weight: float | int = 0.0
    box_offset: tuple[float, ...] | list[float] = (0.0, 0.0, 0.0, 0.0)
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        # JSON turns tuples into lists; keep one canonical form so configs compare equal after a round trip.
        self.stage_channels = tuple(self.stage_channels)
        self.stage_blocks = tuple(self.stage_blocks)
        self.test_time_flips = tuple(self.test_time_flips)
        self.box_offset = tuple(float(v) for v in self.box_offset)
        kwargs.setdefault("id2label", {0: "chromosome"})
        kwargs.setdefault("label2id", {"chromosome": 0})
        super().__post_init__(**kwargs)

    @property
    def output_stride(self) -> int:
        """Input pixels per heatmap cell: the stem halves the image twice before the first stage."""
        return 4

    @property
    def coarsest_stride(self) -> int:
        """Input pixels per cell of the last stage: input sides must be multiples of it."""
        return self.output_stride * 2 ** (len(self.stage_channels) - 1)

    def validate_architecture(self):
        """Called by `@strict` after `__init__`: reject geometries the model cannot be built with."""
        if not self.stage_channels or len(self.stage_channels) != len(self.stage_blocks):
            raise ValueError(
                f"`stage_channels` {self.stage_channels} and `stage_blocks` {self.stage_blocks} must be non-empty and "
                "of equal length (one entry per stage)."
            )
        if self.image_size <= 0 or self.image_size % self.coarsest_stride:
            raise ValueError(f"`image_size` must be a positive multiple of {self.coarsest_stride} (the coarsest stage's "
                             f"stride), got {self.image_size}.")
        for name in ("num_channels", "stem_channels", "neck_channels", "head_channels", "max_detections"):
            if getattr(self, name) <= 0:
                raise ValueError(f"`{name}` must be positive, got {getattr(self, name)}.")
        if not 0.0 <= self.off_peak_weight <= 1.0:
            raise ValueError(f"`off_peak_weight` must be in [0, 1], got {self.off_peak_weight}.")
        if min(self.stage_channels) <= 0 or min(self.stage_blocks) < 0:
            raise ValueError(f"stage widths must be positive and block counts >= 0, got {self.stage_channels}, "
                             f"{self.stage_blocks}.")
        if self.box_scale <= 0 or self.gaussian_alpha <= 0 or self.box_loss_weight < 0:
            raise ValueError("`box_scale` and `gaussian_alpha` must be positive and `box_loss_weight` >= 0.")
        unknown = [flip for flip in self.test_time_flips if flip not in MIRROR_FLIPS]
        if unknown:
            raise ValueError(f"`test_time_flips` must be among {MIRROR_FLIPS}, got {unknown}.")
        if self.chromosome_length is not None and self.chromosome_length <= 0:
            raise ValueError(f"`chromosome_length` must be positive or None, got {self.chromosome_length}.")
        if len(self.box_offset) != 4 or not all(math.isfinite(v) for v in self.box_offset):
            raise ValueError(f"`box_offset` must be 4 finite pixel shifts (x0, y0, x1, y1), got {self.box_offset}.")
        if not 0.0 < self.box_region_threshold < 1.0:
            raise ValueError(f"`box_region_threshold` must lie in (0, 1), got {self.box_region_threshold}.")


__all__ = ["MIRROR_FLIPS", "CenterNetConfig"]
