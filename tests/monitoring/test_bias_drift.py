"""Bias drift: post-training bias of labelled predictions against a baseline, and the
feature-attribution NDCG."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.monitoring.conftest import capture, customers
from wellml.clarify import posttraining_bias
from wellml.errors import InvalidInput
from wellml.monitoring.bias_drift import (
    BiasDriftCheck,
    attribution_drift_violations,
    attribution_ndcg,
)
from wellml.workspace import Workspace


def _scored(n: int, seed: int, *, favour_a: float) -> pd.DataFrame:
    """Labels independent of the group; predictions positive more often for group a."""
    rng = np.random.default_rng(seed)
    group = rng.choice(["a", "d"], n)
    label = rng.integers(0, 2, n)
    flip = rng.random(n) < favour_a
    pred = np.where((group == "a") & flip, 1, np.where((group == "d") & flip, 0, label))
    return pd.DataFrame({"group": group, "label": label, "prediction": pred})


def _check(**kw: object) -> BiasDriftCheck:
    return BiasDriftCheck(
        label="label",
        label_values_or_threshold=1,
        facet="group",
        facet_values_or_threshold="d",
        **kw,  # type: ignore[arg-type]
    )


def test_bias_values_are_clarify_posttraining_bias() -> None:
    frame = _scored(2000, 0, favour_a=0.1)
    values, _ = _check(methods=["DPPL", "DI"]).measure(frame)
    report = posttraining_bias(
        frame,
        label="label",
        label_values_or_threshold=1,
        facet="group",
        facet_values_or_threshold="d",
        predicted_label="prediction",
        methods=["DPPL", "DI"],
    )
    assert values == {"d": {"DI": report.value("DI"), "DPPL": report.value("DPPL")}}


def test_bias_moving_away_from_the_ideal_is_a_violation_and_noise_is_not() -> None:
    check = _check(methods=["DPPL", "DI", "AD"], tolerance=0.05)
    baseline, _ = check.measure(_scored(4000, 1, favour_a=0.05))
    same = check.compute(_scored(4000, 2, favour_a=0.05), baseline=baseline)
    assert same.violations == []
    worse = check.compute(_scored(4000, 3, favour_a=0.4), baseline=baseline)
    names = {v["metric_name"] for v in worse.violations}
    assert {"DPPL", "DI"} <= names
    v = next(v for v in worse.violations if v["metric_name"] == "DPPL")
    assert (v["facet"], v["facet_value"], v["constraint_check_type"]) == (
        "group",
        "d",
        "bias_drift_check",
    )
    # Moving toward the ideal is never a violation.
    better = check.compute(_scored(4000, 4, favour_a=0.0), baseline=baseline)
    assert better.violations == []


def test_a_bias_drift_monitor_of_an_endpoint_uses_ground_truth_and_the_training_baseline(
    served: Workspace,
) -> None:
    mon = served.monitoring.create_monitor(
        "ep",
        kind="bias_drift",
        options={"facet": "plan", "facet_values_or_threshold": "b", "label": "y"},
        thresholds={"tolerance": 0.05},
    )
    baseline = mon["config"]["baseline_bias"]
    assert set(baseline) == {"b"} and "DPPL" in baseline["b"]

    traffic = customers(1500, 9)
    ids = capture(served, traffic)
    served.monitoring.ingest_ground_truth(
        "ep", pd.DataFrame({"inference_id": ids, "label": traffic["y"]})
    )
    fair = served.monitoring.run_monitor("ep-bias-drift")
    assert fair.violations == []

    # Plan b customers now get labels that the model (which ignores plan) cannot follow.
    later = customers(1500, 10)
    ids = capture(served, later)
    labels = np.where(later["plan"] == "b", 1, later["y"])
    served.monitoring.ingest_ground_truth(
        "ep", pd.DataFrame({"inference_id": ids, "label": labels})
    )
    drifted = served.monitoring.run_monitor("ep-bias-drift")
    assert drifted.status == "completed-with-violations"
    assert all(v["constraint_check_type"] == "bias_drift_check" for v in drifted.violations)


def test_attribution_ndcg_matches_the_documented_example() -> None:
    baseline = {"f1": 0.70, "f2": 0.50, "f3": 0.05}
    reversed_ranking = {"f1": 0.05, "f2": 0.50, "f3": 0.70}
    assert attribution_ndcg(baseline, baseline) == pytest.approx(1.0)
    assert attribution_ndcg(baseline, reversed_ranking) == pytest.approx(0.69, abs=0.01)
    (violation,) = attribution_drift_violations(baseline, reversed_ranking)
    assert violation["constraint_check_type"] == "feature_attribution_drift_check"
    assert attribution_drift_violations(baseline, baseline) == []
    with pytest.raises(InvalidInput):
        attribution_ndcg({"f": 0.0}, {"f": 1.0})
