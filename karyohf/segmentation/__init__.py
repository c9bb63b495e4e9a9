"""Masks for detected chromosomes: one boolean mask per box."""

from .threshold import segment_in_box

__all__ = ["segment_in_box"]
