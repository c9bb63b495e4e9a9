"""CenterNet chromosome detector as a transformers model: config, modeling, image processor, Auto registration."""

from transformers import AutoConfig, AutoImageProcessor, AutoModelForObjectDetection

from .configuration_centernet import MIRROR_FLIPS, CenterNetConfig
from .image_processing_centernet import CenterNetImageProcessor, MetaphaseImageProcessor, pad_to_square
from .modeling_centernet import (
    CenterNetForObjectDetection,
    CenterNetObjectDetectionOutput,
    CenterNetPreTrainedModel,
    flip_averaged_outputs,
)


# Local registration: from_pretrained(dir) through the Auto classes works without trust_remote_code.
AutoConfig.register(CenterNetConfig.model_type, CenterNetConfig, exist_ok=True)
AutoModelForObjectDetection.register(CenterNetConfig, CenterNetForObjectDetection, exist_ok=True)
# The old processor name sits beside the current one so that a preprocessor_config.json naming it is recognised;
# the "pil" entry is what loads (as CenterNetImageProcessor).
AutoImageProcessor.register(
    CenterNetConfig, image_processor_classes={"pil": CenterNetImageProcessor, "legacy": MetaphaseImageProcessor},
    exist_ok=True)

# Remote-code export: save_pretrained copies these module files next to the weights and writes `auto_map` (config.json:
# AutoConfig, AutoModelForObjectDetection; preprocessor_config.json: AutoImageProcessor), so a checkpoint loads with
# trust_remote_code=True where karyohf is not installed. The three files import only each other (relatively).
CenterNetConfig.register_for_auto_class()
CenterNetForObjectDetection.register_for_auto_class("AutoModelForObjectDetection")
CenterNetImageProcessor.register_for_auto_class("AutoImageProcessor")

__all__ = [
    "MIRROR_FLIPS",
    "CenterNetConfig",
    "CenterNetForObjectDetection",
    "CenterNetImageProcessor",
    "CenterNetObjectDetectionOutput",
    "CenterNetPreTrainedModel",
    "MetaphaseImageProcessor",
    "flip_averaged_outputs",
    "pad_to_square",
]
