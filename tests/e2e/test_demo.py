"""`wellml demo` end to end, checked through the CLI's JSON output as a user's script would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from wellml.examples.churn import DRIFTED_FEATURES

pytestmark = pytest.mark.slow


def wellml(*args: str, cwd: Path) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WELLML_")}
    out = subprocess.run(
        [sys.executable, "-m", "wellml", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("demo")
    result = wellml("demo", str(root / "ws"), "--format", "json", cwd=root)
    return root / "ws", result


def test_demo_approves_and_serves_the_best_candidate(demo: tuple[Path, dict[str, Any]]) -> None:
    ws, result = demo
    assert set(result["candidates"]) == {
        "logistic-regression",
        "random-forest",
        "gradient-boosting",
    }
    best = max(result["candidates"], key=result["candidates"].get)
    model = wellml("models", "show", "churn@production", "--format", "json", cwd=ws)
    assert model["status"] == "approved" and model["ref"] == result["model_version"]
    assert model["card"]["metrics"]["roc_auc"] == pytest.approx(result["candidates"][best])
    run = wellml("runs", "show", model["run_id"], "--format", "json", cwd=ws)
    assert run["name"] == best and run["status"] == "finished"


def test_lineage_runs_from_the_endpoint_back_to_the_raw_data(
    demo: tuple[Path, dict[str, Any]],
) -> None:
    ws, _ = demo
    graph = wellml("lineage", "show", "endpoint:churn", "--upstream", "--format", "json", cwd=ws)
    refs = {n["ref"] for n in graph["nodes"]}
    assert {"dataset:churn-customers@1", "dataset:churn-train@1", "model:churn@1"} <= refs
    runs = [n for n in graph["nodes"] if n["kind"] == "run"]
    assert len(runs) == 1 and runs[0]["code_commit"] and runs[0]["code_dirty"] is False


def test_the_monitor_flags_the_drifted_features_only_after_drift(
    demo: tuple[Path, dict[str, Any]],
) -> None:
    ws, result = demo
    assert result["drift_heldout"] == []
    assert set(result["drift_shifted"]) == set(DRIFTED_FEATURES)
    history = wellml("monitor", "history", "churn-drift", "--format", "json", cwd=ws)
    assert [h["status"] for h in history] == ["completed-with-violations", "completed"]


def test_the_lens_review_covers_all_105_practices(demo: tuple[Path, dict[str, Any]]) -> None:
    ws, result = demo
    review = wellml("lens", "review", "--format", "json", cwd=ws)
    assert len(review["results"]) == 105
    by_id = {r["id"]: r for r in review["results"]}
    for pid in ("MLOE-07", "MLOE-11", "MLREL-08", "MLREL-13", "MLPER-14", "MLSEC-12"):
        assert by_id[pid]["status"] in ("pass", "fail"), by_id[pid]
        assert by_id[pid]["evidence"], pid
    assert by_id["MLOE-07"]["status"] == "pass"
    assert by_id["MLSEC-12"]["status"] == "pass"
    for pid in ("MLREL-07", "MLPER-08", "MLCOST-08"):
        assert by_id[pid]["status"] == "pass", by_id[pid]
    assert sum(result["review"].values()) == 105
    assert (ws / "lens-review.md").read_text().startswith("# Lens review of churn")


def test_training_set_comes_from_the_feature_store_and_the_endpoint_reads_it_online(
    demo: tuple[Path, dict[str, Any]],
) -> None:
    ws, result = demo
    features = result["features"]
    assert features["training_set"] == "churn-training-set@1"
    assert features["online_entities"] == features["feature_rows"]
    assert features["parity_mismatch_rate"] == 0.0
    graph = wellml("lineage", "show", "endpoint:churn", "--upstream", "--format", "json", cwd=ws)
    refs = {n["ref"] for n in graph["nodes"]}
    assert {
        "feature_view:customer-profile@1",
        "feature_service:churn-model@1",
        "dataset:churn-training-set@1",
        "dataset:customer-features@1",
    } <= refs
    listed = wellml("features", "list", "--format", "json", cwd=ws)
    assert {d["name"] for d in listed} == {"customer", "customer-profile", "churn-model"}
    plan = wellml("features", "plan", "--format", "json", cwd=ws)
    assert {i["action"] for i in plan["items"]} == {"unchanged"}
    customer = wellml("data", "show", "customer-features@1", "--format", "json", cwd=ws)
    assert customer["num_rows"] == features["feature_rows"]
    online = wellml(
        "features", "get", "churn-model", "-e", "customer_id=C000001", "-f", "json", cwd=ws
    )
    assert online[0]["customer_id"] == "C000001" and online[0]["monthly_charges"] is not None


def test_clarify_retraining_and_the_four_monitors_ran(demo: tuple[Path, dict[str, Any]]) -> None:
    ws, result = demo
    assert result["clarify"]["top_features"]
    model = wellml("models", "show", "churn@2", "--format", "json", cwd=ws)
    assert model["card"]["explanations"]["global_mean_abs_shap"]
    assert (ws / "bias-report.html").is_file() and (ws / "shap-report.html").is_file()
    retraining = result["retraining"]
    assert retraining["triggers"] == 1 and retraining["first_run"] in ("completed", "blocked")
    # The second run of the same pipeline on the same data reuses every finished step.
    assert "completed" not in retraining["second_counts"]
    assert retraining["second_counts"].get("cached", 0) >= 6
    assert set(result["monitors"]) == {
        "data_quality",
        "model_quality",
        "bias_drift",
        "feature_attribution_drift",
    }
    assert result["rollback_drill"] == ["completed", "completed"]
    review = result["human_review"]
    assert review["queued"] > 0 and 0 < review["labelled"] <= 25
    items = wellml(
        "monitor", "review", "list", "churn", "--status", "labelled", "-f", "json", cwd=ws
    )
    assert len(items) == review["labelled"] and all(i["ground_truth"] for i in items)
