"""karyohf: automatic karyotyping with Hugging Face-native models.

    from karyohf import KaryotypePipeline
    specimen = KaryotypePipeline.from_pretrained()(["m1.jpg", "m2.jpg"])
    specimen.karyotype

The pipeline, one module per stage, joined by `karyohf.pipeline.KaryotypePipeline`:

    data            `karyohf.data` (datasets, splits), `karyohf.images` (any input -> checked 8-bit grey)
    detection       `karyohf.detection` (ChromosomeDetector: the CenterNet of `karyohf.models.centernet`, or OWLv2)
    segmentation    `karyohf.segmentation` (one mask per box)
    crops           `karyohf.crops` (the one crop path of training and inference)
    identity        `karyohf.identification` (TopViT, `karyohf.models.topvit`, with cell context)
    aberrations     `karyohf.aberrations` (the heads and the de novo index)
    karyotype       `karyohf.karyotype` (ISCN), `karyohf.karyogram` (the printed karyogram)

Beside it: `karyohf.cytogenetics` (classes, bands, derivatives, the aberration catalogue), `karyohf.geometry` (a
chromosome's axis and centromere), `karyohf.backends` / `karyohf.onnx_backend` (where a network runs),
`karyohf.metrics`, `karyohf.cards` / `karyohf.hub` (model cards, publishing) and `karyohf.cli`. Training code, which
the pipeline never imports: `karyohf.training` and `karyohf.augmentation` (what the train/ scripts share),
`karyohf.synthesis` (aberrant training chromosomes and datasets), `karyohf.head_training` (aberration heads, LoRA).

Importing karyohf registers its model families with the transformers Auto classes, so
`AutoModelForImageClassification.from_pretrained(path)` works.
"""

from . import models  # noqa: F401  (registers the Auto classes)

__version__ = "0.2.0"

from .pipeline import CellResult, KaryotypePipeline, SpecimenResult  # noqa: E402  (needs the registration above)

__all__ = ["CellResult", "KaryotypePipeline", "SpecimenResult", "__version__"]
