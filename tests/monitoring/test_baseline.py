"""Baselines: statistics and suggested constraints, edits as new versions, Model Monitor files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from wellml.errors import NotFound
from wellml.monitoring.baseline import (
    ConstraintError,
    edit_constraints,
    export_constraints,
    export_statistics,
    feature_statistics,
    suggest_constraints,
)
from wellml.workspace import Workspace


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 1000
    age = rng.integers(18, 80, n).astype(float)
    age[:50] = np.nan
    return pd.DataFrame(
        {
            "age": age,
            "income": rng.normal(50_000, 10_000, n),
            "plan": rng.choice(["basic", "pro", "team"], n, p=[0.5, 0.3, 0.2]),
            "active": rng.random(n) < 0.7,
            "flag": rng.integers(0, 2, n),
            "visits": rng.integers(0, 40, n),
        }
    )


def test_statistics_describe_each_feature_with_its_type_and_distribution() -> None:
    frame = _frame()
    stats = {f["name"]: f for f in feature_statistics(frame)["features"]}

    age = stats["age"]
    assert age["inferred_type"] == "Fractional" and age["drift_kind"] == "numeric"
    assert (age["num_present"], age["num_missing"]) == (950, 50)
    present = frame["age"].dropna()
    assert age["mean"] == pytest.approx(present.mean())
    assert age["std_dev"] == pytest.approx(present.std(ddof=0))
    assert (age["min"], age["max"]) == (present.min(), present.max())
    assert sum(age["histogram"]["counts"]) == 950 and len(age["histogram"]["counts"]) == 10
    # The sketch's CDF is the exact share of values at or below each point.
    for value, cdf in zip(age["sketch"]["values"], age["sketch"]["cdf"], strict=True):
        assert cdf == pytest.approx((present <= value).mean())

    plan = stats["plan"]
    assert plan["inferred_type"] == "String" and plan["drift_kind"] == "categorical"
    counts = dict(zip(plan["categories"]["values"], plan["categories"]["counts"], strict=True))
    assert counts == frame["plan"].value_counts().to_dict()
    assert stats["active"]["inferred_type"] == "Boolean"
    # A 0/1 integer column is a code: numeric statistics and categories both.
    flag = stats["flag"]
    assert flag["inferred_type"] == "Integral" and flag["drift_kind"] == "categorical"
    assert sorted(flag["categories"]["values"]) == [0, 1] and "mean" in flag
    assert stats["visits"]["drift_kind"] == "numeric"


def test_suggested_constraints_are_what_the_baseline_data_satisfies() -> None:
    constraints = suggest_constraints(feature_statistics(_frame()))
    by_name = {c["name"]: c for c in constraints["features"]}

    assert by_name["age"]["completeness"] == pytest.approx(0.95)
    assert by_name["income"]["completeness"] == 1.0
    assert by_name["age"]["num_constraints"]["is_non_negative"] is True
    assert by_name["visits"]["num_constraints"]["min"] >= 0
    assert sorted(by_name["plan"]["string_constraints"]["domains"]) == ["basic", "pro", "team"]
    assert sorted(by_name["active"]["string_constraints"]["domains"]) == [False, True]
    assert "string_constraints" not in by_name["income"]
    config = constraints["monitoring_config"]
    assert config["distribution_constraints"]["comparison_threshold"] == 0.1
    assert config["datatype_check_threshold"] == 0.1


def test_edits_return_a_changed_copy_and_parse_text_values() -> None:
    original = suggest_constraints(feature_statistics(_frame()))

    edited = edit_constraints(
        original,
        {
            "age.completeness": "0.9",
            "income.min": "0",
            "income.max": "none",
            "plan.domains": "basic,pro",
            "monitoring_config.comparison_threshold": 0.25,
            "monitoring_config.comparison_method": "simple",
        },
    )
    by_name = {c["name"]: c for c in edited["features"]}
    assert by_name["age"]["completeness"] == 0.9
    assert by_name["income"]["num_constraints"]["min"] == 0.0
    assert by_name["income"]["num_constraints"]["max"] is None
    assert by_name["plan"]["string_constraints"]["domains"] == ["basic", "pro"]
    dist = edited["monitoring_config"]["distribution_constraints"]
    assert (dist["comparison_threshold"], dist["comparison_method"]) == (0.25, "Simple")
    # The input is untouched.
    assert {c["name"]: c for c in original["features"]}["age"]["completeness"] == 0.95


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"nope.completeness": 1}, "no feature 'nope'"),
        ({"age.colour": 1}, "unknown setting"),
        ({"age.completeness": 1.5}, "between 0 and 1"),
        ({"age.completeness": "lots"}, "takes a number"),
        ({"active.min": 0}, "not a number"),
        ({"monitoring_config.comparison_method": "fancy"}, "Simple, Robust"),
        ({"monitoring_config.speed": 1}, "unknown setting"),
        ({"income.min": 10, "income.max": 5}, "above max"),
        ({"completeness": 1}, "FEATURE.SETTING"),
    ],
)
def test_bad_edits_are_refused_naming_the_problem(change: dict, message: str) -> None:
    constraints = suggest_constraints(feature_statistics(_frame()))
    with pytest.raises(ConstraintError, match=message):
        edit_constraints(constraints, change)


def test_model_monitor_files_have_the_documented_shape() -> None:
    stats = feature_statistics(_frame())
    exported = export_statistics(stats)
    assert exported["version"] == 0 and exported["dataset"]["item_count"] == 1000
    by_name = {f["name"]: f for f in exported["features"]}
    age = by_name["age"]["numerical_statistics"]
    assert age["common"] == {"num_present": 950, "num_missing": 50}
    kll = age["distribution"]["kll"]
    assert len(kll["buckets"]) == 10
    assert set(kll["buckets"][0]) == {"lower_bound", "upper_bound", "count"}
    assert kll["sketch"]["data"][0] == stats["features"][0]["sketch"]["values"]
    plan = by_name["plan"]["string_statistics"]
    assert plan["distinct_count"] == 3
    assert {b["value"] for b in plan["distribution"]["categorical"]["buckets"]} == {
        "basic",
        "pro",
        "team",
    }
    assert by_name["active"]["inferred_type"] == "String"

    constraints = export_constraints(suggest_constraints(stats))
    feats = {f["name"]: f for f in constraints["features"]}
    assert feats["active"]["inferred_type"] == "String"
    assert sorted(feats["active"]["string_constraints"]["domains"]) == ["false", "true"]
    assert all("monitoringConfigOverrides" in f for f in constraints["features"])
    assert constraints["monitoring_config"]["evaluate_constraints"] == "Enabled"


def test_a_baseline_is_stored_once_and_an_edit_is_a_new_version(
    workspace: Workspace, tmp_path: Path
) -> None:
    dv = workspace.data.register("customers", _frame())
    first = workspace.monitoring.baseline(dv)
    assert (first.ref, first.dataset_ref) == ("customers@1", "customers@1")
    assert workspace.monitoring.baseline("customers@1").id == first.id

    edited = workspace.monitoring.edit_constraints("customers", {"age.completeness": 0.9})
    assert edited.ref == "customers@2" and edited.parent_id == first.id
    assert edited.changes == {"age.completeness": 0.9}
    assert edited.statistics == first.statistics
    old = {
        c["name"]: c
        for c in workspace.monitoring.get_baseline("customers@1").constraints["features"]
    }
    new = {c["name"]: c for c in edited.constraints["features"]}
    assert old["age"]["completeness"] == pytest.approx(0.95)
    assert new["age"]["completeness"] == 0.9
    # The newest baseline of the dataset is reused from now on.
    assert workspace.monitoring.baseline(dv).id == edited.id
    assert [b["ref"] for b in workspace.monitoring.baselines("customers")] == [
        "customers@1",
        "customers@2",
    ]
    up = workspace.lineage.upstream(f"baseline:{edited.id}")
    assert {f"baseline:{first.id}", "dataset:customers@1"} <= up.refs()

    paths = workspace.monitoring.export_baseline(edited, tmp_path / "out")
    constraints = json.loads(paths["constraints"].read_text())
    assert {c["name"]: c for c in constraints["features"]}["age"]["completeness"] == 0.9
    assert json.loads(paths["statistics"].read_text())["dataset"]["item_count"] == 1000
    with pytest.raises(NotFound):
        workspace.monitoring.get_baseline("customers@9")
