"""Model families of karyohf, each a transformers model registered with the Auto classes on import.

Their image processors are numpy/PIL only (registered as the "pil" backend): load them with
`AutoImageProcessor.from_pretrained(path, backend="pil")`, or transformers looks for a torchvision variant first and
warns that it falls back.
"""

from .centernet import (
    CenterNetConfig,
    CenterNetForObjectDetection,
    CenterNetImageProcessor,
    MetaphaseImageProcessor,
)
from .topvit import (
    ChromosomeImageProcessor,
    TopViTConfig,
    TopViTForImageClassification,
    TopViTImageProcessor,
    TopViTModel,
    TopViTPreTrainedModel,
    center_on_canvas,
)


__all__ = [
    "CenterNetConfig",
    "CenterNetForObjectDetection",
    "CenterNetImageProcessor",
    "MetaphaseImageProcessor",
    "ChromosomeImageProcessor",
    "TopViTConfig",
    "TopViTForImageClassification",
    "TopViTImageProcessor",
    "TopViTModel",
    "TopViTPreTrainedModel",
    "center_on_canvas",
]
