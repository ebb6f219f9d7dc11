"""Feature-attribution drift monitors: the ranking of features by mean absolute SHAP value on
new data against the baseline's, scored as NDCG."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from tests.monitoring.conftest import capture, customers
from wellml.errors import InvalidInput, NotFound
from wellml.monitoring.bias_drift import attribution_ndcg
from wellml.workspace import Workspace


def _three(n: int, seed: int, *, spread: tuple[float, float, float] = (1, 1, 1)) -> pd.DataFrame:
    """Columns ``a``, ``b``, ``c`` scaled by ``spread``; the label leans on a, then b, then c."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, 3)) * np.asarray(spread)
    y = (3 * x[:, 0] + 1 * x[:, 1] + 0.2 * x[:, 2] + rng.normal(0, 0.3, n) > 0).astype(int)
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "y": y})


@pytest.fixture
def three(workspace: Workspace) -> Workspace:
    """Model ``abc@1`` trained on dataset ``abc-train@1`` (recorded in lineage)."""
    train = _three(2000, 0)
    dv = workspace.data.register("abc-train", train)
    model = LogisticRegression().fit(train[["a", "b", "c"]], train["y"])
    with workspace.tracking.start_run("abc") as run:
        run.log_input(dv, "train")
        workspace.registry.register("abc", model, X=train[["a", "b", "c"]], run=run)
    return workspace


def test_a_dataset_monitor_flags_a_changed_ranking_and_not_the_same_distribution(
    three: Workspace,
) -> None:
    three.data.register("abc-new", _three(600, 1))
    mon = three.monitoring.create_monitor(
        dataset="abc-new",
        kind="feature_attribution_drift",
        options={"model": "abc@1", "max_rows": 200, "n_samples": 64},
    )
    assert mon["name"] == "abc-new-feature-attribution-drift"
    base = mon["config"]["baseline_attribution"]
    assert list(base) == ["a", "b", "c"]  # the training data's ranking, largest first
    assert mon["config"]["thresholds"] == {"ndcg": 0.9}

    same = three.monitoring.run_monitor(mon["name"])
    assert same.kind == "feature_attribution_drift"
    assert same.violations == [] and same.status == "completed"
    assert same.report["ndcg"] == pytest.approx(1.0)
    assert same.report["rows_explained"] == 200

    # a barely varies any more and c varies a lot: c now moves predictions most.
    three.data.register("abc-new", _three(600, 2, spread=(0.01, 1, 30)))
    moved = three.monitoring.run_monitor(mon["name"])
    assert moved.status == "completed-with-violations"
    (violation,) = moved.violations
    assert violation["constraint_check_type"] == "feature_attribution_drift_check"
    ranks = {
        f["feature"]: (f["baseline_rank"], f["current_rank"]) for f in moved.report["features"]
    }
    assert ranks["a"] == (1, 3) and ranks["c"][1] == 1
    current = {f["feature"]: f["current"] for f in moved.report["features"]}
    assert moved.report["ndcg"] == pytest.approx(attribution_ndcg(base, current))
    assert moved.report["ndcg"] < 0.9
    # The alert names the kind; the execution is in lineage from the data it read.
    (alert,) = moved.alerts
    assert alert["payload"]["kind"] == "feature_attribution_drift"


def test_both_sides_are_explained_against_the_same_stored_shap_baseline(
    three: Workspace,
) -> None:
    three.data.register("abc-new", _three(300, 3))
    mon = three.monitoring.create_monitor(
        dataset="abc-new",
        kind="feature_attribution_drift",
        options={"model": "abc@1", "max_rows": 100, "n_clusters": 4},
    )
    stored = mon["config"]["shap_baseline_rows"]
    assert stored["columns"] == ["a", "b", "c"] and len(stored["data"]) == 4
    first = three.monitoring.run_monitor(mon["name"])
    again = three.monitoring.run_monitor(mon["name"], dataset="abc-new@1")
    assert first.report["features"] == again.report["features"]  # seeded: repeats exactly


def test_an_endpoint_monitor_reads_captured_traffic_and_can_trigger_retraining(
    served: Workspace,
) -> None:
    served.monitoring.create_monitor(
        "ep",
        kind="feature_attribution_drift",
        options={"max_rows": 150, "n_samples": 64},
    )
    capture(served, customers(400, 5))
    quiet = served.monitoring.run_monitor("ep-feature-attribution-drift")
    assert quiet.violations == [] and quiet.report["model_version"] == "m@1"
    assert quiet.report["label"] == "1"

    # A baseline that ranks plan first: the live ranking (x first) contradicts it.
    served.monitoring.create_monitor(
        "ep",
        name="ep-attr-given",
        kind="feature_attribution_drift",
        options={"baseline": {"x": 0.0001, "plan": 0.5}, "max_rows": 150, "n_samples": 64},
        thresholds={"ndcg": 0.95},
        alert_route={"retrain": {"pipeline": "wellml.examples.churn_pipeline:retrain"}},
    )
    capture(served, customers(300, 6))
    flagged = served.monitoring.run_monitor("ep-attr-given")
    assert flagged.status == "completed-with-violations"
    assert flagged.report["threshold"] == 0.95
    assert flagged.report["ndcg"] == pytest.approx(
        attribution_ndcg(
            {"x": 0.0001, "plan": 0.5},
            {f["feature"]: f["current"] for f in flagged.report["features"]},
        )
    )
    (trigger,) = served.monitoring.retrain_triggers(status="pending")
    assert trigger["execution_id"] == flagged.id


def test_bad_attribution_monitors_are_refused_and_nothing_is_written(
    three: Workspace, served: Workspace
) -> None:
    three.data.register("abc-new", _three(100, 4))
    with pytest.raises(InvalidInput, match="needs a model"):
        three.monitoring.create_monitor(dataset="abc-new", kind="feature_attribution_drift")
    with pytest.raises(InvalidInput, match="drop the model option"):
        three.monitoring.create_monitor(
            "ep", kind="feature_attribution_drift", options={"model": "abc@1"}
        )
    with pytest.raises(InvalidInput, match="at most 1"):
        three.monitoring.create_monitor(
            dataset="abc-new",
            kind="feature_attribution_drift",
            options={"model": "abc@1"},
            thresholds={"ndcg": 1.5},
        )
    with pytest.raises(InvalidInput, match="unknown threshold"):
        three.monitoring.create_monitor(
            dataset="abc-new",
            kind="feature_attribution_drift",
            options={"model": "abc@1"},
            thresholds={"psi": 0.2},
        )
    with pytest.raises(InvalidInput, match="name no input"):
        three.monitoring.create_monitor(
            dataset="abc-new",
            kind="feature_attribution_drift",
            options={"model": "abc@1", "baseline": {"zzz": 1.0}},
        )
    with pytest.raises(InvalidInput, match="max_rows"):
        three.monitoring.create_monitor(
            dataset="abc-new",
            kind="feature_attribution_drift",
            options={"model": "abc@1", "max_rows": 0},
        )
    with pytest.raises(InvalidInput, match="invalid feature_attribution_drift options"):
        three.monitoring.create_monitor(
            dataset="abc-new",
            kind="feature_attribution_drift",
            options={"model": "abc@1", "colour": "red"},
        )
    with pytest.raises(NotFound):
        three.monitoring.create_monitor(
            dataset="abc-new", kind="feature_attribution_drift", options={"model": "nope@1"}
        )
    assert three.monitoring.monitors() == []

    # Data without the model's inputs is refused at run time, and no execution is stored.
    mon = three.monitoring.create_monitor(
        dataset="abc-new", kind="feature_attribution_drift", options={"model": "abc@1"}
    )
    three.data.register("abc-new", pd.DataFrame({"a": [1.0], "b": [2.0]}))
    with pytest.raises(InvalidInput, match="lacks the model's inputs"):
        three.monitoring.run_monitor(mon["name"])
    assert three.monitoring.executions(mon["name"]) == []
