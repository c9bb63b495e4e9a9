"""The karyotype layer: ISCN strings from a specimen's cells."""

from .iscn import CellLine, ISCNError, Karyotype, parse_karyotype, validate_karyotype

__all__ = ["CellLine", "ISCNError", "Karyotype", "parse_karyotype", "validate_karyotype"]
