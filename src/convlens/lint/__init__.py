"""Linting the geometry of real models: overlap (checkerboard) maps, size ambiguity, aliasing.

:mod:`convlens.lint.overlap`: the overlap map of one layer, the compounded map of a chain and
the weighted view (Odena, Dumoulin & Olah, *Deconvolution and Checkerboard Artifacts*, Distill
2016). :mod:`convlens.lint.walk`: every transposed conv, strided conv and pooling layer of a
real model, traced with hooks. :mod:`convlens.lint.aliasing`: first-layer filter aliasing
(Zeiler & Fergus, arXiv:1311.2901, §4.1). :mod:`convlens.lint.page`: the same as plain data for
a report page. Computed from the one geometry (:class:`~convlens.arithmetic.LayerSpec`) and the
one index engine (:func:`~convlens.arithmetic.layer_triples`). Torch is imported only by the
functions that trace a model.

>>> from convlens.arithmetic import LayerSpec
>>> overlap_map(LayerSpec.conv_transpose(3, stride=2, ndim=1), 8).ratio
2.0
"""

from convlens.lint.aliasing import BANDS, FilterAliasing, filter_aliasing
from convlens.lint.overlap import (
    MAX_DENSE_ELEMENTS,
    OverlapMap,
    WeightedOverlap,
    compound_overlap,
    overlap_map,
    weighted_overlap,
)
from convlens.lint.page import MAX_PANEL_SIDE, geometry_page, overlap_panels, panel
from convlens.lint.walk import (
    MAX_TRACE_ELEMENTS,
    CompoundLint,
    LayerLint,
    ModelLint,
    TracedCall,
    lint_model,
    suggest,
    trace_model,
)

__all__ = [
    "BANDS",
    "MAX_DENSE_ELEMENTS",
    "MAX_PANEL_SIDE",
    "MAX_TRACE_ELEMENTS",
    "CompoundLint",
    "FilterAliasing",
    "LayerLint",
    "ModelLint",
    "OverlapMap",
    "TracedCall",
    "WeightedOverlap",
    "compound_overlap",
    "filter_aliasing",
    "geometry_page",
    "lint_model",
    "overlap_map",
    "overlap_panels",
    "panel",
    "suggest",
    "trace_model",
    "weighted_overlap",
]
