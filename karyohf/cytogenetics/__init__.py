"""Cytogenetics core: chromosome classes, hg38 G-bands, derivative chromosomes, aberration catalogue."""

from .bands import (
    Band,
    band_at,
    band_interval,
    bands,
    breakpoint_fraction,
    centromere_fraction,
    chromosome_length,
    split_band,
    stain_intensity,
)
from .catalogue import CATALOGUE, Aberration, get_aberration
from .classes import (
    ACROCENTRIC,
    CHROMOSOMES,
    DENVER_GROUPS,
    SEX_CHROMOSOMES,
    chromosome_index,
    denver_group,
    expected_copies,
    normalize_chromosome,
)
from .derivatives import Derivative, Segment, deletion, inversion, translocation

__all__ = [
    "ACROCENTRIC",
    "CATALOGUE",
    "CHROMOSOMES",
    "DENVER_GROUPS",
    "SEX_CHROMOSOMES",
    "Aberration",
    "Band",
    "Derivative",
    "Segment",
    "band_at",
    "band_interval",
    "bands",
    "breakpoint_fraction",
    "centromere_fraction",
    "chromosome_index",
    "chromosome_length",
    "deletion",
    "denver_group",
    "expected_copies",
    "get_aberration",
    "inversion",
    "normalize_chromosome",
    "split_band",
    "stain_intensity",
    "translocation",
]
