"""Model families of karyohf, each a transformers model registered with the Auto classes on import."""

from .centernet import (
    CenterNetConfig,
    CenterNetForObjectDetection,
    MetaphaseImageProcessor,
)
from .topvit import (
    ChromosomeImageProcessor,
    TopViTConfig,
    TopViTForImageClassification,
    TopViTModel,
    TopViTPreTrainedModel,
    center_on_canvas,
)


__all__ = [
    "CenterNetConfig",
    "CenterNetForObjectDetection",
    "MetaphaseImageProcessor",
    "ChromosomeImageProcessor",
    "TopViTConfig",
    "TopViTForImageClassification",
    "TopViTModel",
    "TopViTPreTrainedModel",
    "center_on_canvas",
]
