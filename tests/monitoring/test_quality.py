"""Data quality: each Model Monitor violation type, and none on clean data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from wellml.monitoring.baseline import edit_constraints, feature_statistics, suggest_constraints
from wellml.monitoring.quality import DataQualityCheck
from wellml.workspace import Workspace


def _data(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.integers(18, 80, n),
            "income": rng.normal(50_000, 10_000, n),
            "plan": rng.choice(["basic", "pro", "team"], n, p=[0.5, 0.3, 0.2]),
        }
    )


@pytest.fixture
def baseline() -> tuple[dict, dict]:
    stats = feature_statistics(_data(5000, 0))
    return stats, suggest_constraints(stats)


def _checks(current: pd.DataFrame, baseline: tuple[dict, dict], **kw: object) -> list[str]:
    stats, constraints = baseline
    result = DataQualityCheck(**kw).compute(current, stats, constraints)  # type: ignore[arg-type]
    return sorted(f"{v['feature_name']}:{v['constraint_check_type']}" for v in result.violations)


def test_a_fresh_sample_of_the_same_data_has_no_violations(baseline: tuple[dict, dict]) -> None:
    # Ages of a fresh sample stay inside the baseline's observed range, so no range alarm.
    assert _checks(_data(1000, 1), baseline) == []


def test_missing_and_extra_columns(baseline: tuple[dict, dict]) -> None:
    current = _data(500, 2).drop(columns=["plan"]).assign(score=1.0)
    assert _checks(current, baseline) == [
        "plan:missing_column_check",
        "score:extra_column_check",
    ]
    # Ignored columns are neither checked nor extra.
    assert _checks(_data(500, 2).assign(score=1.0), baseline, ignore=["score"]) == []


def test_data_type_check_fires_past_the_threshold_only(baseline: tuple[dict, dict]) -> None:
    current = _data(1000, 3)
    current["age"] = current["age"].astype(float)
    current.loc[:49, "age"] = 30.5  # 5 % fractional: under the 0.1 threshold
    assert _checks(current, baseline) == []
    current.loc[:199, "age"] = 30.5  # 20 %
    assert "age:data_type_check" in _checks(current, baseline)
    strings = _data(1000, 3).astype({"income": object})
    strings.loc[:299, "income"] = "n/a"
    assert "income:data_type_check" in _checks(strings, baseline)


def test_completeness_check(baseline: tuple[dict, dict]) -> None:
    current = _data(1000, 4)
    current.loc[:9, "income"] = np.nan
    assert _checks(current, baseline) == ["income:completeness_check"]
    stats, constraints = baseline
    relaxed = edit_constraints(constraints, {"income.completeness": 0.95})
    assert _checks(current, (stats, relaxed)) == []


def test_value_range_check_on_negatives_and_out_of_range_share(
    baseline: tuple[dict, dict],
) -> None:
    current = _data(1000, 5)
    current.loc[0, "age"] = -1
    assert _checks(current, baseline) == ["age:value_range_check"]
    current = _data(1000, 5)
    current.loc[:49, "age"] = 95  # 5 % above the observed max of 79
    assert _checks(current, baseline) == ["age:value_range_check"]


def test_categorical_values_check(baseline: tuple[dict, dict]) -> None:
    current = _data(1000, 6)
    current.loc[:49, "plan"] = "enterprise"  # 5 %: tolerated
    assert "plan:categorical_values_check" not in _checks(current, baseline)
    current.loc[:199, "plan"] = "enterprise"  # 20 %
    assert "plan:categorical_values_check" in _checks(current, baseline)


def test_baseline_drift_check_on_numbers_and_categories(baseline: tuple[dict, dict]) -> None:
    shifted = _data(1000, 7)
    shifted["income"] = shifted["income"] + 5_000  # half a standard deviation
    assert _checks(shifted, baseline) == ["income:baseline_drift_check"]
    mix = _data(1000, 7)
    mix["plan"] = np.random.default_rng(8).choice(["basic", "pro", "team"], 1000, p=[0.2, 0.3, 0.5])
    assert _checks(mix, baseline) == ["plan:baseline_drift_check"]


def test_robust_distance_forgives_small_windows_and_simple_does_not(
    baseline: tuple[dict, dict],
) -> None:
    stats, constraints = baseline
    small = _data(5000, 9).head(60)
    small["income"] = small["income"] + 1_500
    result = DataQualityCheck().compute(small, stats, constraints)
    robust = {f["name"]: f for f in result.features}["income"]
    simple_constraints = edit_constraints(
        constraints, {"monitoring_config.comparison_method": "Simple"}
    )
    simple = {
        f["name"]: f for f in DataQualityCheck().compute(small, stats, simple_constraints).features
    }["income"]
    assert robust["distance"] < simple["distance"]
    assert robust["distance"] == pytest.approx(
        max(0.0, simple["distance"] - 1.8 * np.sqrt((5000 + 60) / (5000 * 60)))
    )


def test_per_feature_overrides_replace_the_global_settings(baseline: tuple[dict, dict]) -> None:
    stats, constraints = baseline
    current = _data(1000, 10)
    current.loc[:199, "plan"] = "enterprise"
    for c in constraints["features"]:
        if c["name"] == "plan":
            c["monitoringConfigOverrides"] = {"domain_content_threshold": 0.5}
    assert "plan:categorical_values_check" not in _checks(current, (stats, constraints))


def test_chi_squared_categorical_method_compares_two_samples(baseline: tuple[dict, dict]) -> None:
    stats, constraints = baseline
    chi = edit_constraints(
        constraints,
        {
            "monitoring_config.categorical_drift_method": "ChiSquared",
            "monitoring_config.categorical_comparison_threshold": 0.01,
        },
    )
    same = DataQualityCheck().compute(_data(1000, 11), stats, chi)
    assert {f["name"]: f for f in same.features}["plan"]["distance_method"] == (
        "chi_squared_p_value"
    )
    assert not [v for v in same.violations if v["feature_name"] == "plan"]
    mix = _data(1000, 11)
    mix["plan"] = "basic"
    found = DataQualityCheck().compute(mix, stats, chi).violations
    assert [v["constraint_check_type"] for v in found if v["feature_name"] == "plan"] == [
        "baseline_drift_check"
    ]


def test_a_data_quality_monitor_of_a_dataset_checks_each_new_version(
    workspace: Workspace,
) -> None:
    ref = workspace.data.register("ref", _data(3000, 12))
    base = workspace.monitoring.baseline(ref)
    workspace.data.register("incoming", _data(500, 13))
    mon = workspace.monitoring.create_monitor(
        dataset="incoming", kind="data_quality", baseline=base.ref
    )
    assert mon["name"] == "incoming-data-quality" and mon["target_dataset"] == "incoming"
    first = workspace.monitoring.run_monitor(mon["name"])
    assert first.status == "completed" and first.dataset_ref == "incoming@1"
    bad = _data(500, 14)
    bad.loc[:99, "plan"] = None
    workspace.data.register("incoming", bad)
    second = workspace.monitoring.run_monitor(mon["name"])
    assert second.dataset_ref == "incoming@2"
    assert [(v["feature_name"], v["constraint_check_type"]) for v in second.violations] == [
        ("plan", "completeness_check")
    ]
    # A threshold overrides the constraints' setting for this monitor.
    workspace.monitoring.create_monitor(
        dataset="incoming",
        kind="data_quality",
        baseline=base.ref,
        thresholds={"completeness_tolerance": 0.5},
    )
    again = workspace.monitoring.run_monitor(mon["name"], all_captured=True)
    assert again.violations == []
