"""karyohf: automatic karyotyping with Hugging Face-native models.

    from karyohf import KaryotypePipeline
    specimen = KaryotypePipeline.from_pretrained()(["m1.jpg", "m2.jpg"])
    specimen.karyotype

Pipeline, one module per stage: data -> detection -> segmentation -> crops -> models -> aberrations -> karyotype,
joined by `karyohf.pipeline.KaryotypePipeline`. Importing karyohf registers its model families with the
transformers Auto classes, so `AutoModelForImageClassification.from_pretrained(path)` works.
"""

from . import models  # noqa: F401  (registers the Auto classes)

__version__ = "0.2.0"

from .pipeline import CellResult, KaryotypePipeline, SpecimenResult  # noqa: E402  (needs the registration above)

__all__ = ["CellResult", "KaryotypePipeline", "SpecimenResult", "__version__"]
