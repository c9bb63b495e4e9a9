"""CenterNet chromosome detector as a transformers model: config, modeling, image processor, Auto registration."""

from transformers import AutoConfig, AutoImageProcessor, AutoModelForObjectDetection

from .configuration_centernet import MIRROR_FLIPS, CenterNetConfig
from .image_processing_centernet import MetaphaseImageProcessor, pad_to_square
from .modeling_centernet import (
    CenterNetForObjectDetection,
    CenterNetObjectDetectionOutput,
    CenterNetPreTrainedModel,
    flip_averaged_outputs,
)


# Local registration: from_pretrained(dir) through the Auto classes works without trust_remote_code.
AutoConfig.register("karyohf_centernet", CenterNetConfig, exist_ok=True)
AutoModelForObjectDetection.register(CenterNetConfig, CenterNetForObjectDetection, exist_ok=True)
AutoImageProcessor.register(CenterNetConfig, image_processor_classes={"pil": MetaphaseImageProcessor}, exist_ok=True)

__all__ = [
    "MIRROR_FLIPS",
    "CenterNetConfig",
    "CenterNetForObjectDetection",
    "CenterNetObjectDetectionOutput",
    "CenterNetPreTrainedModel",
    "MetaphaseImageProcessor",
    "flip_averaged_outputs",
    "pad_to_square",
]
