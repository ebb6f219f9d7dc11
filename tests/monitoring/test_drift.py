"""Tests of the per-feature drift statistics in wellml.monitoring.drift."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial import distance
from scipy.stats import contingency

from wellml.errors import InvalidInput
from wellml.monitoring.drift import (
    PSI,
    ChiSquare,
    DriftInputError,
    FeatureDrift,
    JensenShannon,
    KolmogorovSmirnov,
    Wasserstein,
    detect_drift,
)

CATEGORIES = np.array(["a", "b", "c", "d"], dtype=object)
MIX = [0.4, 0.3, 0.2, 0.1]


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# --- agreement with scipy -------------------------------------------------------------------


@pytest.mark.parametrize(("n_ref", "n_cur"), [(300, 500), (20_000, 15_000)])
def test_ks_statistic_and_p_value_equal_scipy_ks_2samp_on_non_null_values(n_ref, n_cur):
    rng = _rng(1)
    ref = rng.normal(0, 1, n_ref)
    cur = rng.normal(0.1, 1.2, n_cur)
    cur[::7] = np.nan

    result = KolmogorovSmirnov().compute(ref, cur)

    expected = stats.ks_2samp(ref, cur[~np.isnan(cur)])
    assert result.statistic == expected.statistic
    assert result.p_value == expected.pvalue
    assert result.method == "ks"
    assert result.kind == "numeric"
    assert result.reference_count == n_ref
    assert result.current_count == int((~np.isnan(cur)).sum())
    assert result.details["current_missing"] == int(np.isnan(cur).sum())


def test_chi_square_statistic_and_p_value_equal_chi2_contingency_on_the_2_by_k_table():
    ref = pd.Series(["a"] * 50 + ["b"] * 30 + ["c"] * 20 + [None] * 5)
    cur = pd.Series(["a"] * 30 + ["b"] * 40 + ["c"] * 25 + ["new"] * 5)

    result = ChiSquare().compute(ref, cur)

    # Columns a, b, c, new: the reference's categories by frequency, then unseen ones; nulls
    # are left out of the table.
    table = np.array([[50, 30, 20, 0], [30, 40, 25, 5]])
    expected = stats.chi2_contingency(table)
    assert result.statistic == expected.statistic
    assert result.p_value == expected.pvalue
    assert result.details["dof"] == 3
    assert result.details["cramers_v"] == pytest.approx(
        contingency.association(table, method="cramer")
    )
    assert result.details["cramers_v"] == pytest.approx(
        math.sqrt(stats.chi2_contingency(table, correction=False).statistic / table.sum())
    )
    assert result.reference_count == 100
    assert result.details["reference_missing"] == 5


def test_chi_square_uses_scipy_yates_correction_on_two_categories():
    ref = ["x"] * 40 + ["y"] * 60
    cur = ["x"] * 55 + ["y"] * 45

    result = ChiSquare().compute(ref, cur)

    # Columns in the reference's order of frequency: y, then x.
    expected = stats.chi2_contingency(np.array([[60, 40], [45, 55]]))
    assert result.statistic == expected.statistic
    assert result.p_value == expected.pvalue


def test_chi_square_is_two_sample_not_reference_counts_as_expected_values():
    ref = ["a"] * 500 + ["b"] * 500
    cur = ["a"] * 470 + ["b"] * 530

    result = ChiSquare().compute(ref, cur)

    goodness_of_fit = stats.chisquare([470, 530], f_exp=[500, 500])
    # The reference's own noise widens the test: the statistic is about half the one-sample one.
    assert result.statistic < goodness_of_fit.statistic * 0.6
    assert result.p_value > goodness_of_fit.pvalue


def test_jensen_shannon_equals_scipy_base_2_on_category_counts():
    ref = ["a"] * 50 + ["b"] * 30 + ["c"] * 20
    cur = ["a"] * 20 + ["b"] * 30 + ["c"] * 40 + ["d"] * 10

    result = JensenShannon().compute(ref, cur)

    # Bins a, b, c, d, then the (empty) missing bin.
    expected = distance.jensenshannon([50, 30, 20, 0, 0], [20, 30, 40, 10, 0], base=2)
    assert result.statistic == pytest.approx(expected, rel=1e-12)
    assert result.drifted is bool(expected >= 0.1)


def test_jensen_shannon_equals_scipy_on_reference_quantile_bins():
    rng = _rng(2)
    ref = rng.normal(0, 1, 2_000)
    cur = rng.normal(0.3, 1, 1_500)

    result = JensenShannon(bins=5).compute(ref, cur)

    cuts = np.unique(np.quantile(ref, [0.2, 0.4, 0.6, 0.8]))
    assert result.details["edges"] == pytest.approx(list(cuts))
    ref_hist = np.bincount(np.searchsorted(cuts, ref, side="left"), minlength=5)
    cur_hist = np.bincount(np.searchsorted(cuts, cur, side="left"), minlength=5)
    expected = distance.jensenshannon(ref_hist, cur_hist, base=2)
    assert result.statistic == pytest.approx(expected, rel=1e-12)


def test_wasserstein_equals_scipy_distance_divided_by_reference_std():
    rng = _rng(3)
    ref = rng.normal(10, 4, 3_000)
    cur = rng.normal(11, 4, 2_000)

    result = Wasserstein().compute(ref, cur)

    raw = stats.wasserstein_distance(ref, cur)
    assert result.details["distance"] == pytest.approx(raw, rel=1e-12)
    assert result.statistic == pytest.approx(raw / np.std(ref), rel=1e-12)
    assert result.statistic == pytest.approx(0.25, abs=0.06)
    assert result.drifted


def test_wasserstein_of_a_constant_reference_uses_the_pooled_std():
    result = Wasserstein().compute([5.0] * 10, [5.0] * 5 + [6.0] * 5)

    pooled = np.std([5.0] * 15 + [6.0] * 5)
    assert result.details["scaled_by"] == "pooled_std"
    assert result.statistic == pytest.approx(0.5 / pooled)


# --- PSI by hand ----------------------------------------------------------------------------


def test_psi_of_categories_matches_the_hand_computed_value():
    result = PSI().compute(["a", "a", "b", "b"], ["a", "b", "b", "b"])

    # shares: reference a .5, b .5; current a .25, b .75
    expected = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.75 - 0.5) * math.log(0.75 / 0.5)
    assert result.statistic == pytest.approx(expected)
    assert result.statistic == pytest.approx(0.274653, abs=1e-6)
    assert result.drifted
    assert result.p_value is None


def test_psi_of_numbers_uses_reference_quantile_bins_and_a_missing_bin():
    ref = np.arange(10.0)  # median 4.5: bins (-inf, 4.5], (4.5, inf), missing
    cur = np.array([1.0, 2.0, 3.0, 6.0, np.nan])

    result = PSI(bins=2).compute(ref, cur)

    eps = 1e-4
    expected = (
        (0.6 - 0.5) * math.log(0.6 / 0.5)
        + (0.2 - 0.5) * math.log(0.2 / 0.5)
        + (0.2 - eps) * math.log(0.2 / eps)
    )
    assert result.details["edges"] == [4.5]
    assert result.statistic == pytest.approx(expected)
    assert result.statistic == pytest.approx(1.812539, abs=1e-6)


def test_psi_of_a_constant_reference_bins_below_equal_and_above():
    result = PSI().compute([3.0] * 8, [3.0] * 4 + [1.0] * 2 + [9.0] * 2)

    eps = 1e-4
    expected = (1.0 - 0.5) * math.log(1.0 / 0.5) + 2 * (0.25 - eps) * math.log(0.25 / eps)
    assert result.statistic == pytest.approx(expected)


def test_psi_merges_tied_quantiles_into_one_bin():
    ref = np.array([0.0] * 70 + list(np.linspace(1, 3, 30)))

    result = PSI(bins=10).compute(ref, ref)

    assert result.details["edges"][0] == 0.0
    assert len(result.details["edges"]) == len(set(result.details["edges"]))
    assert result.statistic == 0.0


# --- power and false alarms -----------------------------------------------------------------


def test_half_sd_mean_shift_on_1000_rows_is_detected():
    rng = _rng(4)
    ref = pd.DataFrame({"x": rng.normal(0, 1, 1_000)})
    cur = pd.DataFrame({"x": rng.normal(0.5, 1, 1_000)})

    report = detect_drift(ref, cur)

    (fd,) = report.features
    assert fd.method == "ks"
    assert fd.drifted
    assert fd.p_value < 1e-10
    assert fd.statistic > 0.15
    assert report.drifted_features == ("x",)


def test_category_mix_change_is_detected():
    rng = _rng(5)
    ref = pd.DataFrame({"c": rng.choice(CATEGORIES, 1_000, p=MIX)})
    cur = pd.DataFrame({"c": rng.choice(CATEGORIES, 1_000, p=[0.25, 0.25, 0.25, 0.25])})

    (fd,) = detect_drift(ref, cur).features

    assert fd.method == "chi_square"
    assert fd.kind == "categorical"
    assert fd.drifted
    assert fd.p_value < 1e-10
    assert fd.details["cramers_v"] > 0.15


def test_same_distribution_false_alarm_rate_is_at_most_5_percent_per_feature():
    rng = _rng(6)
    draws = 200
    alarms = {"x": 0, "c": 0}
    for _ in range(draws):
        ref = pd.DataFrame(
            {"x": rng.normal(0, 1, 1_000), "c": rng.choice(CATEGORIES, 1_000, p=MIX)}
        )
        cur = pd.DataFrame(
            {"x": rng.normal(0, 1, 1_000), "c": rng.choice(CATEGORIES, 1_000, p=MIX)}
        )
        for name in detect_drift(ref, cur).drifted_features:
            alarms[name] += 1

    rates = {name: count / draws for name, count in alarms.items()}
    assert rates["x"] <= 0.05, rates
    assert rates["c"] <= 0.05, rates


def test_trivial_shift_on_200k_rows_is_not_flagged():
    rng = _rng(7)
    n = 200_000
    ref = pd.DataFrame({"x": rng.normal(0, 1, n)})
    cur = pd.DataFrame({"x": rng.normal(0.01, 1, n)})

    (fd,) = detect_drift(ref, cur).features

    assert fd.statistic < 0.1
    assert not fd.drifted
    assert fd.details["drifted_by"] == []


def test_effect_size_floor_stops_significant_but_trivial_shifts_on_200k_rows():
    rng = _rng(8)
    n = 200_000
    ref = rng.normal(0, 1, n)
    cur = rng.normal(0.03, 1, n)

    result = KolmogorovSmirnov().compute(ref, cur)
    without_floor = KolmogorovSmirnov(min_statistic=0.0).compute(ref, cur)

    assert result.p_value < 1e-6  # "significant" ...
    assert result.statistic < 0.02  # ... but a 1-2 % CDF gap
    assert not result.drifted
    assert without_floor.drifted


def test_cramers_v_floor_stops_significant_but_trivial_mix_changes_on_200k_rows():
    rng = _rng(9)
    n = 200_000
    ref = rng.choice(CATEGORIES, n, p=MIX)
    cur = rng.choice(CATEGORIES, n, p=[0.39, 0.30, 0.20, 0.11])

    result = ChiSquare().compute(ref, cur)

    assert result.p_value < 1e-6
    assert result.details["cramers_v"] < 0.02
    assert not result.drifted
    assert ChiSquare(min_effect=0.0).compute(ref, cur).drifted


# --- categories, kinds and the combined verdict ---------------------------------------------


def test_unseen_categories_in_current_are_handled_and_counted():
    ref = pd.DataFrame({"c": ["a", "b"] * 50})
    cur = pd.DataFrame({"c": ["a", "b"] * 40 + ["new1"] * 12 + ["new2"] * 8})

    (fd,) = detect_drift(ref, cur).features

    assert fd.details["unseen_categories"] == 2
    assert fd.details["unseen_count"] == 20
    assert fd.details["unseen_examples"] == ["new1", "new2"]
    assert fd.details["categories"] == 4
    assert fd.current_count == 100
    assert fd.drifted


def test_kinds_are_inferred_from_the_reference_dtype():
    n = 50
    rng = _rng(10)
    frame = pd.DataFrame(
        {
            "flag": rng.integers(0, 2, n),
            "ok": rng.integers(0, 2, n).astype(bool),
            "code": pd.Categorical(rng.choice(["u", "v"], n)),
            "name": rng.choice(CATEGORIES, n),
            "count": rng.integers(0, 50, n),
            "value": rng.normal(size=n),
        }
    )

    report = detect_drift(frame, frame.sample(frac=1.0, random_state=0))

    kinds = {fd.feature: fd.kind for fd in report.features}
    assert kinds == {
        "flag": "categorical",
        "ok": "categorical",
        "code": "categorical",
        "name": "categorical",
        "count": "numeric",
        "value": "numeric",
    }
    assert report.drifted_features == ()


def test_explicit_categorical_list_decides_every_kind():
    frame = pd.DataFrame({"flag": [0, 1] * 20, "level": [1, 2, 3, 4] * 10})

    report = detect_drift(frame, frame, categorical=["level"])

    assert [(fd.feature, fd.kind, fd.method) for fd in report.features] == [
        ("flag", "numeric", "ks"),
        ("level", "categorical", "chi_square"),
    ]


def test_any_test_drifting_drifts_the_feature_and_others_are_in_details():
    rng = _rng(11)
    ref = pd.DataFrame({"x": rng.normal(0, 1, 2_000)})
    # The same distribution of values, but half of them now missing: only PSI sees it.
    cur_values = rng.normal(0, 1, 2_000)
    cur_values[::2] = np.nan
    cur = pd.DataFrame({"x": cur_values})

    (fd,) = detect_drift(ref, cur).features

    assert fd.method == "ks"
    assert fd.p_value > 0.05
    assert fd.drifted
    assert fd.details["drifted_by"] == ["psi"]
    assert fd.details["psi"]["drifted"] is True
    assert fd.details["psi"]["statistic"] > 0.2
    assert fd.details["psi"]["p_value"] is None
    assert fd.details["current_missing"] == 1_000


def test_dataset_drift_when_the_drifted_share_reaches_the_threshold():
    rng = _rng(12)
    ref = pd.DataFrame({f"x{i}": rng.normal(0, 1, 1_000) for i in range(4)})
    cur = pd.DataFrame({f"x{i}": rng.normal(1.0 if i < 2 else 0, 1, 1_000) for i in range(4)})

    half = detect_drift(ref, cur)
    strict = detect_drift(ref, cur, dataset_drift_share=0.75)

    assert half.drifted_features == ("x0", "x1")
    assert half.share_drifted == 0.5
    assert half.dataset_drift
    assert not strict.dataset_drift


def test_report_to_dict_is_strict_json():
    rng = _rng(13)
    ref = pd.DataFrame({"x": rng.normal(size=500), "c": rng.choice(CATEGORIES, 500)})
    cur = pd.DataFrame({"x": rng.normal(size=500), "c": rng.choice(CATEGORIES, 500)})

    data = detect_drift(ref, cur).to_dict()

    text = json.dumps(data, allow_nan=False)
    assert json.loads(text)["features"][0]["feature"] == "x"
    assert set(data) == {"features", "drifted_features", "share_drifted", "dataset_drift"}


def test_custom_tests_replace_the_defaults():
    rng = _rng(14)
    ref = pd.DataFrame({"x": rng.normal(size=1_000)})
    cur = pd.DataFrame({"x": rng.normal(0.5, 1, 1_000)})

    (fd,) = detect_drift(ref, cur, numeric_tests=[Wasserstein(), JensenShannon(bins=20)]).features

    assert fd.method == "wasserstein"
    assert set(fd.details) >= {"jensen_shannon", "drifted_by"}
    assert fd.drifted


# --- the sklearn-style protocol -------------------------------------------------------------


@pytest.mark.parametrize(
    "test",
    [
        PSI(bins=5, threshold=0.3, epsilon=1e-3),
        KolmogorovSmirnov(alpha=0.01, min_statistic=0.2),
        ChiSquare(alpha=0.01, min_effect=0.05),
        JensenShannon(bins=4, threshold=0.2),
        Wasserstein(threshold=0.3),
    ],
)
def test_get_params_returns_the_constructor_arguments_and_rebuilds_the_test(test):
    params = test.get_params()

    rebuilt = type(test)(**params)

    assert rebuilt.get_params() == params
    assert repr(rebuilt) == repr(test)
    assert all(str(v) in repr(test) for v in params.values())


@pytest.mark.parametrize(
    ("factory", "name"),
    [
        (lambda: PSI(bins=1), "bins"),
        (lambda: PSI(epsilon=0), "epsilon"),
        (lambda: KolmogorovSmirnov(alpha=1.5), "alpha"),
        (lambda: ChiSquare(min_effect=-0.1), "min_effect"),
        (lambda: Wasserstein(threshold=float("nan")), "threshold"),
    ],
)
def test_out_of_range_parameters_raise_value_error_naming_them(factory, name):
    with pytest.raises(ValueError, match=name):
        factory()


def test_parameters_are_keyword_only():
    with pytest.raises(TypeError):
        PSI(10)  # type: ignore[misc]


def test_feature_drift_is_frozen_and_hashable():
    fd = PSI().compute(["a", "b"], ["a", "b"], feature="f")

    assert isinstance(fd, FeatureDrift)
    assert fd.feature == "f"
    with pytest.raises(AttributeError):
        fd.drifted = True  # type: ignore[misc]
    assert hash(fd) == hash(PSI().compute(["a", "b"], ["a", "b"], feature="f"))


# --- bad input ------------------------------------------------------------------------------


def test_missing_columns_raise_value_error_naming_them():
    ref = pd.DataFrame({"a": [1.0, 2.0], "b": [1.0, 2.0], "c": [1.0, 2.0]})
    cur = pd.DataFrame({"a": [1.0, 2.0]})

    with pytest.raises(ValueError, match=r"current.*\['b', 'c'\]"):
        detect_drift(ref, cur, features=["a", "b", "c"])


def test_empty_current_raises_value_error_naming_the_columns():
    ref = pd.DataFrame({"age": [1.0, 2.0, 3.0]})
    cur = pd.DataFrame({"age": pd.Series([], dtype=float)})

    with pytest.raises(ValueError, match=r"current data is empty.*'age'"):
        detect_drift(ref, cur)


def test_all_null_column_raises_value_error_naming_it():
    ref = pd.DataFrame({"x": [1.0, 2.0, 3.0], "income": [1.0, 2.0, 3.0]})
    cur = pd.DataFrame({"x": [1.0, 2.0, 3.0], "income": [np.nan, np.nan, np.nan]})

    with pytest.raises(ValueError, match=r"'income'.*current.*only missing"):
        detect_drift(ref, cur)


def test_non_numeric_values_in_a_numeric_column_raise_value_error_naming_it():
    ref = pd.DataFrame({"price": [1.0, 2.0, 3.0]})
    cur = pd.DataFrame({"price": ["1.5", "oops", "3"]})

    with pytest.raises(ValueError, match=r"'price'.*non-numeric.*'oops'"):
        detect_drift(ref, cur)


def test_numeric_strings_in_a_numeric_column_are_converted():
    ref = pd.DataFrame({"price": [1.0, 2.0, 3.0, 4.0]})
    cur = pd.DataFrame({"price": ["1", "2.0", "3", None]})

    (fd,) = detect_drift(ref, cur).features

    assert fd.kind == "numeric"
    assert fd.current_count == 3


def test_errors_are_wellml_invalid_input_as_well():
    with pytest.raises(InvalidInput):
        KolmogorovSmirnov().compute([1.0, 2.0], [])
    assert issubclass(DriftInputError, ValueError)


def test_datetime_columns_raise_and_can_be_left_out():
    ref = pd.DataFrame({"t": pd.date_range("2024-01-01", periods=3), "x": [1.0, 2.0, 3.0]})

    with pytest.raises(ValueError, match=r"'t'.*features="):
        detect_drift(ref, ref)
    assert detect_drift(ref, ref, features=["x"]).features[0].feature == "x"


def test_a_test_given_data_of_the_wrong_kind_raises():
    with pytest.raises(ValueError, match=r"ChiSquare.*does not take numeric"):
        detect_drift(
            pd.DataFrame({"x": [1.0, 2.5]}),
            pd.DataFrame({"x": [1.0, 2.5]}),
            numeric_tests=[ChiSquare()],
        )


def test_ks_on_large_tied_samples_equals_scipy_without_resorting() -> None:
    rng = _rng(11)
    ref = rng.integers(0, 40, 30_000).astype(float)
    cur = rng.integers(1, 41, 25_000).astype(float)

    result = KolmogorovSmirnov().compute(ref, cur)

    expected = stats.ks_2samp(ref, cur)
    assert result.statistic == expected.statistic
    assert result.p_value == expected.pvalue
    assert result.details["statistic_location"] == expected.statistic_location
