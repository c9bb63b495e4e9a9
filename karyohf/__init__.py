"""karyohf: automatic karyotyping with Hugging Face-native models.

Pipeline, one module per stage: data -> detection -> segmentation -> crops -> models ->
aberrations -> karyotype -> app. Importing karyohf registers its model families with the
transformers Auto classes, so `AutoModelForImageClassification.from_pretrained(path)` works.
"""

from . import models  # noqa: F401  (registers the Auto classes)

__version__ = "0.1.0"
