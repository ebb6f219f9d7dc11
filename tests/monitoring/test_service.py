"""The endpoint monitor: a baseline from the training data found through lineage, drift
checks of captured traffic, stored executions with violations and lineage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from wellml.errors import InvalidInput, NotFound
from wellml.serving.capture import CaptureWriter
from wellml.workspace import Workspace


@pytest.fixture
def deployed(workspace: Workspace) -> Workspace:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"x": rng.normal(size=2000), "plan": rng.choice(["a", "b"], 2000)})
    y = (X["x"] > 0).astype(int)
    train = workspace.data.register("train", X.assign(y=y))
    with workspace.tracking.start_run("e") as run:
        run.log_input(train, "train")
        model = LogisticRegression().fit(X[["x"]], y)
        workspace.registry.register("m", model, X=X, y=y, run=run)
    workspace.registry.approve("m@1")
    workspace.endpoints.deploy("m@1", name="ep", port=1)
    return workspace


def _capture(ws: Workspace, frame: pd.DataFrame) -> None:
    """Write captured traffic the way a running endpoint does."""
    ep = ws.endpoints.get("ep")
    writer = CaptureWriter(
        ws.urls.capture,
        "ep",
        flush_seconds=60,
        on_file=lambda uri, rows, t0, t1: ws.endpoints._record_capture(ep.id, uri, rows, t0, t1),
    )
    writer.add("id", "m@1", frame, {"prediction": [0] * len(frame)})
    writer.close()


def test_baseline_comes_from_the_training_data_in_lineage(deployed: Workspace) -> None:
    assert deployed.monitoring.training_data("m@1").ref == "train@1"
    mon = deployed.monitoring.create_monitor("ep", schedule="@hourly")
    assert mon["baseline"]["dataset"] == "train@1"
    assert mon["baseline"]["features"] == ["x", "plan"]
    feats = {f["name"]: f for f in mon["baseline"]["constraints"]["features"]}
    assert sorted(feats["plan"]["string_constraints"]["domains"]) == ["a", "b"]
    with pytest.raises(InvalidInput, match="unknown threshold"):
        deployed.monitoring.create_monitor("ep", thresholds={"speed": 1})


def test_same_distribution_no_drift_then_shift_is_flagged(deployed: Workspace) -> None:
    rng = np.random.default_rng(5)
    _capture(
        deployed, pd.DataFrame({"x": rng.normal(size=500), "plan": rng.choice(["a", "b"], 500)})
    )
    first = deployed.monitoring.run("ep")
    assert first.status == "completed" and first.drifted_features == []
    _capture(
        deployed,
        pd.DataFrame(
            {"x": rng.normal(1.0, 1, 500), "plan": rng.choice(["a", "b"], 500, p=[0.9, 0.1])}
        ),
    )
    second = deployed.monitoring.run("ep")
    assert second.status == "completed-with-violations"
    assert sorted(second.drifted_features) == ["plan", "x"]
    assert {v["constraint_check_type"] for v in second.violations} == {"baseline_drift_check"}
    assert second.dataset_ref == "ep-capture@2"
    hist = deployed.monitoring.executions("ep-drift")
    assert [h["status"] for h in hist] == ["completed-with-violations", "completed"]
    up = deployed.lineage.upstream(f"monitor-report:{second.id}")
    assert {"dataset:ep-capture@2", "dataset:train@1", "endpoint:ep"} <= up.refs()


def test_nothing_captured_is_a_clear_error(deployed: Workspace) -> None:
    with pytest.raises(NotFound, match="captured no traffic"):
        deployed.monitoring.run("ep")
    _capture(deployed, pd.DataFrame({"x": [0.1] * 50, "plan": ["a"] * 50}))
    deployed.monitoring.run("ep")
    with pytest.raises(NotFound, match="no new traffic"):
        deployed.monitoring.run("ep")
    again = deployed.monitoring.run("ep", all_captured=True)
    assert again.dataset_ref == "ep-capture@1"


def test_a_missing_column_in_captured_data_is_a_violation(deployed: Workspace) -> None:
    _capture(deployed, pd.DataFrame({"x": np.random.default_rng(1).normal(size=300)}))
    result = deployed.monitoring.run("ep")
    assert [v["constraint_check_type"] for v in result.violations] == ["missing_column_check"]
    assert result.status == "completed-with-violations"


# --- the drift test chosen by kind and size -------------------------------------------------


def _mixed(n: int, seed: int, *, shift: float = 0.0, mix: tuple[float, ...] = (0.5, 0.3, 0.2)):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.normal(shift, 1, n),
            "y": rng.exponential(2.0, n),
            "c": rng.choice(["a", "b", "c"], n, p=list(mix)),
        }
    )


def test_auto_selection_uses_hypothesis_tests_on_small_samples_and_distances_on_large() -> None:
    from wellml.monitoring.drift import AutoSelection, detect_drift

    ref = _mixed(5000, 0)
    small = detect_drift(ref, _mixed(400, 1), selection=AutoSelection())
    assert [f.method for f in small.features] == ["ks", "ks", "chi_square"]
    large = detect_drift(ref, _mixed(3000, 1), selection=AutoSelection())
    assert [f.method for f in large.features] == ["wasserstein", "wasserstein", "jensen_shannon"]


@pytest.mark.parametrize("n", [400, 3000])
def test_auto_selection_false_alarm_rate_on_same_distribution_draws_is_bounded(n: int) -> None:
    from wellml.monitoring.drift import AutoSelection, detect_drift

    ref = _mixed(5000, 0)
    alarms = checks = 0
    for seed in range(1, 31):
        report = detect_drift(ref, _mixed(n, seed), selection=AutoSelection())
        alarms += len(report.drifted_features)
        checks += len(report.features)
    assert alarms / checks <= 0.05


@pytest.mark.parametrize("n", [400, 3000])
def test_auto_selection_detects_injected_shifts(n: int) -> None:
    from wellml.monitoring.drift import AutoSelection, detect_drift

    ref = _mixed(5000, 0)
    cur = _mixed(n, 7, shift=0.5, mix=(0.2, 0.3, 0.5))
    cur["y"] = cur["y"] * 1.5
    report = detect_drift(ref, cur, selection=AutoSelection())
    assert report.drifted_features == ("x", "y", "c")


def test_drift_executions_store_both_distributions_and_render_as_html(
    deployed: Workspace, tmp_path
) -> None:
    import json

    rng = np.random.default_rng(3)
    _capture(deployed, pd.DataFrame({"x": rng.normal(1, 1, 1500), "plan": ["a"] * 1500}))
    result = deployed.monitoring.run("ep")
    shown = {f["feature"]: f["details"]["distribution"] for f in result.report["features"]}
    assert shown["x"]["type"] == "histogram" and sum(shown["x"]["current"]) == 1500
    assert sum(shown["x"]["reference"]) == 2000 and len(shown["x"]["edges"]) == 21
    assert shown["plan"]["categories"][:2] in (["a", "b"], ["b", "a"])

    page = deployed.monitoring.report_html(result.id, tmp_path / "r.html")
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and "plotly" in text.lower()
    assert "x (drifted)" in text and "Violations (2)" in text
    assert json.loads(page.with_suffix(".json").read_text())["id"] == result.id
    again = deployed.monitoring.execution(result.id)
    assert again.drifted_features == result.drifted_features and again.kind == "data_drift"


def test_monitor_kinds_options_and_thresholds_are_validated(deployed: Workspace) -> None:
    with pytest.raises(InvalidInput, match="kind must be one of"):
        deployed.monitoring.create_monitor("ep", kind="vibes")
    with pytest.raises(InvalidInput, match="invalid data_drift options"):
        deployed.monitoring.create_monitor("ep", options={"speed": "fast"})
    with pytest.raises(InvalidInput, match="tests must be one of"):
        deployed.monitoring.create_monitor("ep", options={"tests": "magic"})
    with pytest.raises(InvalidInput, match="exactly one"):
        deployed.monitoring.create_monitor()
    with pytest.raises(InvalidInput, match="unknown threshold"):
        deployed.monitoring.create_monitor("ep", kind="model_quality", thresholds={"psi": 1})
    mon = deployed.monitoring.create_monitor(
        "ep", options={"tests": "statistical"}, alert_webhook="http://127.0.0.1:9/x"
    )
    assert mon["config"]["alert_route"]["webhook"] == "http://127.0.0.1:9/x"
    assert mon["config"]["thresholds"]["wasserstein"] == 0.1
    _capture(deployed, pd.DataFrame({"x": np.random.default_rng(4).normal(size=300), "plan": "a"}))
    result = deployed.monitoring.run("ep")
    assert [f["method"] for f in result.report["features"]] == ["ks", "chi_square"]
