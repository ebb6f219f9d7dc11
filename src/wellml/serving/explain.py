"""Per-prediction SHAP explanations on request, from a running endpoint.

A request asks for explanations with the header ``X-Amzn-SageMaker-Enable-Explanations`` (or
``x-wellml-enable-explanations``), whose value is a JMESPath expression evaluated on each
answered row, as SageMaker Clarify's online explainer does: ```true``` explains every row,
``probability < `0.6``` only the rows the model is unsure of. Each row's record holds
``prediction``, ``probability`` (of the predicted class; classifiers) and ``probabilities``
(one per class, in ``classes`` order). Without the header nothing is explained and nothing is
paid.

The values are :class:`~wellml.clarify.ShapExplainer`'s: the tree explainer for tree models
and Kernel SHAP otherwise, in the units of the output (the probability of the explained class,
or the prediction of a regressor), relative to **baseline rows** made once per replica, on the
first explained request, by k-means over the model version's training data found through
lineage (Clarify's default baseline). Every row explained adds up exactly:
``expected_value + Σ shap = output``.

The answer gains an ``explanations`` object: ``label``, ``method``, ``expected_value``,
``baseline_rows`` and ``kernel_shap``, Clarify's per-record list (``null`` for a row the
expression did not select) of ``{"feature_header", "attributions": [{"attribution": [v]}]}``
per input column.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from wellml.errors import InvalidInput

EXPLAIN_HEADERS = ("x-amzn-sagemaker-enable-explanations", "x-wellml-enable-explanations")
DEFAULT_MAX_EXPLAINED_ROWS = 100


class ExplanationUnavailable(InvalidInput):
    """The endpoint cannot explain this request (no baseline data, too many rows, ...)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def explanation_request(headers: Mapping[str, str]) -> Callable[[dict[str, Any]], bool] | None:
    """The row filter a request's explanation header asks for, or None when it asks none.

    Raises:
        ExplanationUnavailable: an expression JMESPath cannot compile (400).
    """
    expression = None
    for name in EXPLAIN_HEADERS:
        value = headers.get(name)
        if value is not None:
            expression = str(value).strip()
            break
    if not expression:
        return None
    import jmespath
    from jmespath.exceptions import JMESPathError

    try:
        compiled = jmespath.compile(expression)
    except JMESPathError as exc:
        raise ExplanationUnavailable(
            f"the explanation header is not a JMESPath expression ({expression!r}): {exc}", 400
        ) from None

    def selected(record: dict[str, Any]) -> bool:
        try:
            return compiled.search(record) is True
        except JMESPathError:
            return False

    return selected


class EndpointExplainer:
    """SHAP explanations of one served model version's answers.

    Args:
        model: The fitted model the replica serves.
        features: Its input columns, in signature order.
        training_data: Returns the data the baseline rows summarise (called once, lazily).
        n_clusters: Baseline rows made by k-means.
        n_samples: Kernel SHAP coalitions per row.
        max_rows: At most this many rows explained per request.
        seed: Seed of the clustering and of Kernel SHAP.
    """

    def __init__(
        self,
        model: Any,
        features: Sequence[str],
        training_data: Callable[[], pd.DataFrame],
        *,
        n_clusters: int = 10,
        n_samples: int = 128,
        max_rows: int = DEFAULT_MAX_EXPLAINED_ROWS,
        seed: int = 0,
    ) -> None:
        self.model = model
        self.features = list(features)
        self._training_data = training_data
        self.n_clusters = n_clusters
        self.n_samples = n_samples
        self.max_rows = max_rows
        self.seed = seed
        self._baseline: pd.DataFrame | None = None
        self._lock = threading.Lock()

    def baseline(self) -> pd.DataFrame:
        """The baseline rows, made on first use.

        Raises:
            ExplanationUnavailable: no training data to make them from (409).
        """
        with self._lock:
            if self._baseline is None:
                from wellml.clarify import baseline_rows

                data = self._training_data()
                lacking = [c for c in self.features if c not in data.columns]
                if lacking:
                    raise ExplanationUnavailable(
                        f"the training data lacks the model's inputs {lacking}", 409
                    )
                self._baseline = baseline_rows(
                    data[self.features], n_clusters=self.n_clusters, seed=self.seed
                )
            return self._baseline

    def explain(
        self, rows: pd.DataFrame, outputs: dict[str, Any], wanted: Callable[[dict[str, Any]], bool]
    ) -> dict[str, Any]:
        """The ``explanations`` object for the answered ``rows`` the filter selects.

        Args:
            rows: The validated input rows of the request.
            outputs: The answer's body (``predictions``, and ``probabilities`` and
                ``classes`` for a classifier).
            wanted: The row filter from :func:`explanation_request`.

        Raises:
            ExplanationUnavailable: more selected rows than ``max_rows`` (413), or no baseline.
        """
        from wellml.clarify import ShapExplainer

        records = _records(outputs)
        chosen = [i for i, r in enumerate(records) if wanted(r)]
        if len(chosen) > self.max_rows:
            raise ExplanationUnavailable(
                f"{len(chosen)} rows selected for explanation; at most {self.max_rows} per "
                "request (narrow the expression or split the request)",
                413,
            )
        per_row: list[list[dict[str, Any]] | None] = [None] * len(records)
        out: dict[str, Any] = {"label": None, "method": None, "expected_value": None}
        if chosen:
            frame = rows[self.features].iloc[chosen].reset_index(drop=True)
            explanation = ShapExplainer(
                features=self.features,
                baseline=self.baseline(),
                n_samples=self.n_samples,
                seed=self.seed,
            ).compute(self.model, frame)
            for k, i in enumerate(chosen):
                per_row[i] = [
                    {"feature_header": f, "attributions": [{"attribution": [float(v)]}]}
                    for f, v in zip(self.features, explanation.shap_values[k], strict=True)
                ]
            out = {
                "label": explanation.label,
                "method": explanation.method,
                "expected_value": float(explanation.expected_value),
            }
        out["baseline_rows"] = len(self._baseline) if self._baseline is not None else 0
        out["kernel_shap"] = per_row
        return out


def _records(outputs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One record per answered row, as the explanation filter reads it."""
    predictions = list(outputs.get("predictions") or [])
    probabilities = outputs.get("probabilities")
    records = []
    for i, p in enumerate(predictions):
        record: dict[str, Any] = {"prediction": p}
        if probabilities is not None:
            record["probabilities"] = list(probabilities[i])
            record["probability"] = max(probabilities[i])
        records.append(record)
    return records
