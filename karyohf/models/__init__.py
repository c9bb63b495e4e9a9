"""Model families of karyohf, each a transformers model registered with the Auto classes on import."""

from .topvit import (
    ChromosomeImageProcessor,
    TopViTConfig,
    TopViTForImageClassification,
    TopViTModel,
    TopViTPreTrainedModel,
    center_on_canvas,
)


__all__ = [
    "ChromosomeImageProcessor",
    "TopViTConfig",
    "TopViTForImageClassification",
    "TopViTModel",
    "TopViTPreTrainedModel",
    "center_on_canvas",
]
