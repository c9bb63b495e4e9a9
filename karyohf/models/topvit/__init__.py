"""TopViT chromosome classifier as a transformers model: config, modeling, image processor, Auto registration."""

from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from .configuration_topvit import LEGACY_MODEL_TYPES, TopViTConfig
from .image_processing_topvit import ChromosomeImageProcessor, TopViTImageProcessor, center_on_canvas
from .modeling_topvit import TopViTForImageClassification, TopViTModel, TopViTPreTrainedModel


# Local registration: from_pretrained(dir) through the Auto classes works without trust_remote_code.
AutoConfig.register(TopViTConfig.model_type, TopViTConfig, exist_ok=True)
AutoModel.register(TopViTConfig, TopViTModel, exist_ok=True)
AutoModelForImageClassification.register(TopViTConfig, TopViTForImageClassification, exist_ok=True)
# The old processor name sits beside the current one so that a preprocessor_config.json naming it is recognised;
# the "pil" entry is what loads (as TopViTImageProcessor).
AutoImageProcessor.register(
    TopViTConfig, image_processor_classes={"pil": TopViTImageProcessor, "legacy": ChromosomeImageProcessor},
    exist_ok=True)
# Checkpoints saved before karyohf 0.3 say model_type "topvit": the same config class reads them.
# (`AutoConfig.register` insists that the name be the class's own model_type, hence the mapping itself.)
for _legacy in LEGACY_MODEL_TYPES:
    CONFIG_MAPPING.register(_legacy, TopViTConfig, exist_ok=True)

# Remote-code export: save_pretrained copies these module files next to the weights and writes `auto_map`, so a
# checkpoint loads with trust_remote_code=True where karyohf is not installed.
TopViTConfig.register_for_auto_class()
TopViTModel.register_for_auto_class("AutoModel")
TopViTForImageClassification.register_for_auto_class("AutoModelForImageClassification")
TopViTImageProcessor.register_for_auto_class("AutoImageProcessor")

__all__ = [
    "ChromosomeImageProcessor",
    "TopViTConfig",
    "TopViTForImageClassification",
    "TopViTImageProcessor",
    "TopViTModel",
    "TopViTPreTrainedModel",
    "center_on_canvas",
]
