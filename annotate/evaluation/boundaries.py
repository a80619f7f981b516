"""Boundary detection scores; the metric lives in `atomvla.curate.quality.boundaries` (curate's
quality checks use it too, and curate may not import annotate)."""

from atomvla.curate.quality.boundaries import BoundaryMatch, match_boundaries

__all__ = ["BoundaryMatch", "match_boundaries"]
