"""Clarify: bias metrics before and after training, with SageMaker Clarify's definitions.

:func:`pretraining_bias` measures a dataset's labels, :func:`posttraining_bias` a model's
predictions, each for one facet column; both return a :class:`BiasReport` whose ``to_dict()``
is the bias section of a Clarify ``analysis.json``. The rows matched by the facet's value(s)
or :class:`Threshold` are facet **d**, the disfavoured group; all other rows are facet **a**.
See :mod:`wellml.clarify.bias` for the definitions and ``docs/clarify.md`` for a guide.
"""

from wellml.clarify.bias import (
    POSTTRAINING_METHODS,
    PRETRAINING_METHODS,
    BiasInputError,
    Model,
    PosttrainingBias,
    Predictor,
    PretrainingBias,
    Threshold,
    ValuesOrThreshold,
    posttraining_bias,
    pretraining_bias,
)
from wellml.clarify.explain import (
    ExplainInputError,
    Explanation,
    PartialDependence,
    ShapExplainer,
    baseline_rows,
    explain,
    partial_dependence,
)
from wellml.clarify.report import BiasMetric, BiasReport, FacetBias, bias_analysis
from wellml.clarify.service import Clarify, ClarifyReport, ReportInfo, render_html

__all__ = [
    "POSTTRAINING_METHODS",
    "PRETRAINING_METHODS",
    "BiasInputError",
    "BiasMetric",
    "BiasReport",
    "Clarify",
    "ClarifyReport",
    "ExplainInputError",
    "Explanation",
    "FacetBias",
    "Model",
    "PartialDependence",
    "PosttrainingBias",
    "Predictor",
    "PretrainingBias",
    "ReportInfo",
    "ShapExplainer",
    "Threshold",
    "ValuesOrThreshold",
    "baseline_rows",
    "bias_analysis",
    "explain",
    "partial_dependence",
    "posttraining_bias",
    "pretraining_bias",
    "render_html",
]
