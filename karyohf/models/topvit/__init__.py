"""TopViT chromosome classifier as a transformers model: config, modeling, image processor, Auto registration."""

from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification

from .configuration_topvit import TopViTConfig
from .image_processing_topvit import ChromosomeImageProcessor, center_on_canvas
from .modeling_topvit import TopViTForImageClassification, TopViTModel, TopViTPreTrainedModel


# Local registration: from_pretrained(dir) through the Auto classes works without trust_remote_code.
AutoConfig.register("topvit", TopViTConfig, exist_ok=True)
AutoModel.register(TopViTConfig, TopViTModel, exist_ok=True)
AutoModelForImageClassification.register(TopViTConfig, TopViTForImageClassification, exist_ok=True)
AutoImageProcessor.register(TopViTConfig, image_processor_classes={"pil": ChromosomeImageProcessor}, exist_ok=True)

# Remote-code export: save_pretrained copies these module files next to the weights and writes `auto_map`, so a
# checkpoint loads with trust_remote_code=True where karyohf is not installed.
TopViTConfig.register_for_auto_class()
TopViTModel.register_for_auto_class("AutoModel")
TopViTForImageClassification.register_for_auto_class("AutoModelForImageClassification")
ChromosomeImageProcessor.register_for_auto_class("AutoImageProcessor")

__all__ = [
    "ChromosomeImageProcessor",
    "TopViTConfig",
    "TopViTForImageClassification",
    "TopViTModel",
    "TopViTPreTrainedModel",
    "center_on_canvas",
]
