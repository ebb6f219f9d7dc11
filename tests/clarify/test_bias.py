"""Bias metrics: hand-computed values, agreement with Fairlearn, invariances, refused input."""

from __future__ import annotations

import doctest
import json
import math
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equal_opportunity_difference,
    equalized_odds_difference,
    false_positive_rate,
    selection_rate,
    true_negative_rate,
    true_positive_rate,
)
from sklearn.metrics import accuracy_score, precision_score

import wellml.clarify.bias as bias_module
from wellml.clarify import (
    POSTTRAINING_METHODS,
    PRETRAINING_METHODS,
    BiasInputError,
    BiasReport,
    PosttrainingBias,
    PretrainingBias,
    Threshold,
    bias_analysis,
    posttraining_bias,
    pretraining_bias,
)
from wellml.errors import InvalidInput, UserCodeError

ln = math.log


def _rows(*groups: tuple[str, list[int]]) -> pd.DataFrame:
    """A frame of (sex, y) rows: each group is a facet value and its labels."""
    sex: list[str] = []
    y: list[int] = []
    for value, labels in groups:
        sex += [value] * len(labels)
        y += labels
    return pd.DataFrame({"sex": sex, "y": y})


def _confusion_frame(a: dict[str, int], d: dict[str, int]) -> pd.DataFrame:
    """Rows of facet M (a) and F (d) with the given TP/FP/FN/TN counts."""
    cells = {"tp": (1, 1), "fp": (0, 1), "fn": (1, 0), "tn": (0, 0)}
    rows = []
    for sex, counts in (("M", a), ("F", d)):
        for cell, n in counts.items():
            rows += [(sex, *cells[cell])] * n
    return pd.DataFrame(rows, columns=["sex", "y", "p"])


# --------------------------------------------------------------------------------------------
# Pre-training metrics, by hand

# d = F: labels 1,0,0,0 (q_d = 1/4); a = M: 1,1,1,0,0,1 (q_a = 2/3).
PRE = _rows(("F", [1, 0, 0, 0]), ("M", [1, 1, 1, 0, 0, 1]))


def _pre(df: pd.DataFrame = PRE, **kw: Any) -> BiasReport:
    args: dict[str, Any] = {
        "label": "y",
        "label_values_or_threshold": 1,
        "facet": "sex",
        "facet_values_or_threshold": "F",
    }
    args.update(kw)
    return pretraining_bias(df, **args)


def test_class_imbalance_is_a_minus_d_over_total() -> None:
    assert _pre().value("CI") == pytest.approx((6 - 4) / 10, abs=1e-15)


def test_dpl_is_positive_share_of_a_minus_that_of_d() -> None:
    assert _pre().value("DPL") == pytest.approx(2 / 3 - 1 / 4, abs=1e-15)


def test_label_distribution_metrics_match_hand_values() -> None:
    # P_a = (neg 1/3, pos 2/3), P_d = (3/4, 1/4); P = ½(P_a + P_d) = (13/24, 11/24).
    r = _pre()
    kl = 1 / 3 * ln((1 / 3) / (3 / 4)) + 2 / 3 * ln((2 / 3) / (1 / 4))
    js = 0.5 * (
        1 / 3 * ln((1 / 3) / (13 / 24))
        + 2 / 3 * ln((2 / 3) / (11 / 24))
        + 3 / 4 * ln((3 / 4) / (13 / 24))
        + 1 / 4 * ln((1 / 4) / (11 / 24))
    )
    assert r.value("KL") == pytest.approx(kl, abs=1e-14)
    assert r.value("JS") == pytest.approx(js, abs=1e-14)
    assert r.value("LP") == pytest.approx(math.sqrt(2) * 5 / 12, abs=1e-14)
    assert r.value("TVD") == pytest.approx(5 / 12, abs=1e-14)
    assert r.value("KS") == pytest.approx(5 / 12, abs=1e-14)


def test_kl_keeps_only_outcomes_present_in_both_facets_without_renormalising() -> None:
    # Every d row positive: the negative outcome is dropped, KL = q_a·ln(q_a/1) < 0.
    r = _pre(_rows(("F", [1, 1]), ("M", [1, 0, 0, 1])))
    assert r.value("KL") == pytest.approx(0.5 * ln(0.5), abs=1e-15)
    assert r.value("KS") == pytest.approx(0.5, abs=1e-15)
    assert r.value("TVD") == pytest.approx(0.25, abs=1e-15)
    assert r.value("LP") == pytest.approx(0.5, abs=1e-15)
    assert r.value("JS") == pytest.approx(0.5 * (0.5 * ln(0.5 / 0.75) + ln(1 / 0.75)), abs=1e-15)


def test_distribution_metrics_are_undefined_when_facets_share_no_outcome() -> None:
    r = _pre(_rows(("F", [0, 0]), ("M", [1, 1, 1])))
    group = r.group()
    for key in ("KL", "JS", "LP", "TVD", "KS"):
        assert math.isnan(group.metric(key).value)
        assert "no common support" in (group.metric(key).error or "")
    assert group.metric("DPL").value == 1.0
    assert group.metric("DPL").error is None


CDD = pd.DataFrame(
    [
        # subgroup u: pos F1 M1 M1 (d share 1/3), neg F0 M0 (d share 1/2): DD = 1/6
        ("F", 1, "u"),
        ("F", 0, "u"),
        ("M", 1, "u"),
        ("M", 1, "u"),
        ("M", 0, "u"),
        # subgroup v: pos M1 (d share 0), neg F0 F0 (d share 1): DD = 1
        ("F", 0, "v"),
        ("F", 0, "v"),
        ("M", 1, "v"),
        # subgroup w: pos M1 F1 (d share 1/2), no negatives (share 0): DD = -1/2
        ("M", 1, "w"),
        ("F", 1, "w"),
    ],
    columns=["sex", "y", "g"],
)
CDD_EXPECTED = (5 * (1 / 2 - 1 / 3) + 3 * 1 + 2 * (0 - 1 / 2)) / 10  # 17/60


def test_cddl_is_the_size_weighted_mean_of_subgroup_disparities() -> None:
    r = _pre(CDD, group_variable="g", methods=["CDDL"])
    assert r.value("CDDL") == pytest.approx(CDD_EXPECTED, abs=1e-15)
    assert pytest.approx(17 / 60) == CDD_EXPECTED


def test_cddl_is_undefined_without_group_variable_under_all() -> None:
    metric = _pre().group().metric("CDDL")
    assert math.isnan(metric.value)
    assert "group_variable" in (metric.error or "")


def test_constant_positive_labels_leave_cddl_undefined_and_the_rest_computed() -> None:
    df = pd.DataFrame({"sex": ["F", "F", "M", "M", "M"], "y": [1] * 5, "g": list("uvuvu")})
    r = _pre(df, group_variable="g")
    values = r.group().values
    assert math.isnan(values["CDDL"])
    assert "no negative labels" in (r.group().metric("CDDL").error or "")
    assert values["CI"] == pytest.approx(0.2)
    assert values["DPL"] == 0.0
    assert values["KL"] == 0.0 and values["KS"] == 0.0


# --------------------------------------------------------------------------------------------
# Post-training metrics, by hand

# a = M: TP 3, FP 2, FN 2, TN 3 (n 10); d = F: TP 1, FP 1, FN 2, TN 2 (n 6).
POST = _confusion_frame(
    a={"tp": 3, "fp": 2, "fn": 2, "tn": 3}, d={"tp": 1, "fp": 1, "fn": 2, "tn": 2}
)


def _post(df: pd.DataFrame = POST, **kw: Any) -> BiasReport:
    args: dict[str, Any] = {
        "label": "y",
        "label_values_or_threshold": 1,
        "facet": "sex",
        "facet_values_or_threshold": "F",
        "predicted_label": "p",
    }
    args.update(kw)
    return posttraining_bias(df, **args)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("DPPL", 5 / 10 - 2 / 6),  # n̂_a(1)/n_a − n̂_d(1)/n_d
        ("DI", (2 / 6) / (5 / 10)),
        ("DCA", 5 / 5 - 3 / 2),  # n_a(1)/n̂_a(1) − n_d(1)/n̂_d(1)
        ("DCR", 3 / 4 - 5 / 5),  # n_d(0)/n̂_d(0) − n_a(0)/n̂_a(0)
        ("RD", 3 / 5 - 1 / 3),  # recall a − recall d
        ("SD", 2 / 3 - 3 / 5),  # specificity d − specificity a
        ("DAR", 3 / 5 - 1 / 2),  # precision a − precision d
        ("DRR", 2 / 4 - 3 / 5),  # TN_d/n̂_d(0) − TN_a/n̂_a(0)
        ("AD", 6 / 10 - 3 / 6),
        ("TE", 2 / 1 - 2 / 2),  # FN_d/FP_d − FN_a/FP_a
    ],
)
def test_post_training_metric_matches_hand_value(key: str, expected: float) -> None:
    assert _post().value(key) == pytest.approx(expected, abs=1e-14)


def test_generalized_entropy_matches_hand_value() -> None:
    # Over all 16 rows: benefit 1 for TP+TN (9 rows), 2 for FP (3), 0 for FN (4).
    mean = Fraction(9 * 1 + 3 * 2, 16)
    total = 9 * ((1 / mean) ** 2 - 1) + 3 * ((2 / mean) ** 2 - 1) + 4 * (0 - 1)
    expected = float(total / (16 * 2))
    assert _post().value("GE") == pytest.approx(expected, abs=1e-14)


def test_generalized_entropy_is_undefined_when_every_prediction_is_a_false_negative() -> None:
    df = pd.DataFrame({"sex": ["F", "M", "M"], "y": [1, 1, 1], "p": [0, 0, 0]})
    metric = _post(df, methods=["GE"]).group().metric("GE")
    assert math.isnan(metric.value)
    assert "false negative" in (metric.error or "")


def test_cddpl_is_cddl_on_predicted_labels() -> None:
    df = CDD.rename(columns={"y": "p"}).assign(y=[0, 1] * 5)
    r = _post(df, group_variable="g", methods=["CDDPL"])
    assert r.value("CDDPL") == pytest.approx(CDD_EXPECTED, abs=1e-15)


def test_division_rules_follow_clarify() -> None:
    # d has no positive predictions: n_d(1)/n̂_d(1) = 2/0 = +inf; DI numerator 0.
    df = _confusion_frame(a={"tp": 2, "fp": 1, "tn": 1}, d={"fn": 2, "tn": 2})
    r = _post(df)
    assert r.value("DCA") == -math.inf
    assert r.value("DI") == 0.0
    # 0/0 = 0: d's precision TP_d/n̂_d(1) = 0/0 → 0.
    assert r.value("DAR") == pytest.approx(2 / 3 - 0.0)
    # a has no false positive either way: FN_a/FP_a = 0/1; FN_d/FP_d = 2/0 = inf.
    assert r.value("TE") == math.inf
    # Both ratios infinite: TE = inf − inf is forced to 0.
    both = _confusion_frame(a={"tp": 1, "fn": 1, "tn": 1}, d={"tp": 1, "fn": 2, "tn": 1})
    assert _post(both).value("TE") == 0.0
    # No positive predictions anywhere: DI = 0/0 = 0.
    none = POST.assign(p=0)
    assert _post(none).value("DI") == 0.0


def test_json_writes_infinity_as_clarify_does_and_nan_as_null_with_error() -> None:
    df = _confusion_frame(a={"tp": 2, "fp": 1, "tn": 1}, d={"fn": 2, "tn": 2})
    section = _post(df, methods=["DCA", "TE", "FT"]).to_dict()["post_training_bias_metrics"]
    json.dumps(section, allow_nan=False)
    metrics = {m["name"]: m for m in section["facets"]["sex"][0]["metrics"]}
    assert metrics["TE"]["value"] == "Infinity"
    assert metrics["DCA"]["value"] == "-Infinity"
    assert "error" not in metrics["TE"]
    # No numeric feature column: FT is undefined.
    assert metrics["FT"]["value"] is None
    assert "numeric feature" in metrics["FT"]["error"]


def test_flip_test_with_one_neighbour_below_ten_facet_a_rows() -> None:
    # a: x 0, 1 predicted 0; x 10, 11 predicted 1. k = 1.
    # d: x 0.2 (model 1, nearest 0 → 0): F⁺; x 0.9 (model 0, nearest 1 → 0): no flip;
    #    x 10.4 (model 0, nearest 10 → 1): F⁻; x 10.2 (1, 1): none; x 5.4 (model 1, nearest 1
    #    at distance 4.4 → 0): F⁺. FT = (2 − 1)/5.
    df = pd.DataFrame(
        {
            "sex": ["M"] * 4 + ["F"] * 5,
            "x": [0, 1, 10, 11, 0.2, 0.9, 10.4, 10.2, 5.4],
            "y": [0, 1, 0, 1, 1, 0, 1, 0, 1],
            "p": [0, 0, 1, 1, 1, 0, 0, 1, 1],
        }
    )
    assert _post(df, methods=["FT"]).value("FT") == pytest.approx(1 / 5, abs=1e-15)


def test_flip_test_uses_five_neighbours_above_nine_facet_a_rows() -> None:
    # a: ten rows in two clusters. Near 0 the five predictions are 1,0,1,1,0 (majority 1, but
    # the single nearest to 0.5, at 0.45, is 0); near 100 they are 0,0,0,0,1 (majority 0).
    # d: x 0.5 model 0 vs 5-NN 1 → F⁻; x 99 and 99.5 model 1 vs 0 → F⁺ twice. FT = (2−1)/3.
    df = pd.DataFrame(
        {
            "sex": ["M"] * 10 + ["F"] * 3,
            "x": [0, 0.45, 0.7, 1, 2, 100, 101, 102, 103, 104, 0.5, 99, 99.5],
            "y": [1] * 13,
            "p": [1, 0, 1, 1, 0, 0, 0, 0, 0, 1, 0, 1, 1],
        }
    )
    assert _post(df, methods=["FT"]).value("FT") == pytest.approx(1 / 3, abs=1e-15)


def test_flip_test_is_undefined_without_numeric_features() -> None:
    metric = _post(methods=["FT"]).group().metric("FT")
    assert math.isnan(metric.value)
    assert "numeric feature" in (metric.error or "")


def test_flip_test_is_undefined_when_features_hold_missing_values() -> None:
    df = POST.assign(x=[1.0, np.nan] + [0.5] * (len(POST) - 2))
    metric = _post(df, methods=["FT"]).group().metric("FT")
    assert math.isnan(metric.value)
    assert "'x'" in (metric.error or "")


# --------------------------------------------------------------------------------------------
# Agreement with Fairlearn on random data


def _negative_predictive_value(y_true: Any, y_pred: Any) -> float:
    """TN/(TN + FN): precision of the negative class."""
    return float(precision_score(y_true, y_pred, pos_label=0))


def _random_frame(seed: int, n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    race = rng.choice(["r1", "r2", "r3"], size=n, p=[0.3, 0.5, 0.2])
    y = rng.random(n) < np.where(race == "r1", 0.35, 0.55)
    x = rng.normal(size=n)
    p = (x + 0.8 * y - 0.4 * (race == "r1") + rng.normal(scale=0.8, size=n)) > 0.2
    return pd.DataFrame({"race": race, "x": x, "y": y.astype(int), "p": p.astype(int)})


@pytest.mark.parametrize("seed", range(6))
def test_post_training_metrics_agree_with_fairlearn(seed: int) -> None:
    df = _random_frame(seed)
    r = posttraining_bias(
        df,
        label="y",
        label_values_or_threshold=1,
        facet="race",
        facet_values_or_threshold="r1",
        predicted_label="p",
    )
    groups = np.where(df["race"] == "r1", "d", "a")
    y, p = df["y"], df["p"]

    def diff(metric: Any, sign: int = 1) -> float:
        by = MetricFrame(metrics=metric, y_true=y, y_pred=p, sensitive_features=groups).by_group
        return float(sign * (by["a"] - by["d"]))

    tol = 1e-12
    assert r.value("DPPL") == pytest.approx(diff(selection_rate), abs=tol)
    assert abs(r.value("DPPL")) == pytest.approx(
        demographic_parity_difference(y, p, sensitive_features=groups), abs=tol
    )
    di = r.value("DI")
    assert min(di, 1 / di) == pytest.approx(
        demographic_parity_ratio(y, p, sensitive_features=groups), abs=tol
    )
    assert r.value("RD") == pytest.approx(diff(true_positive_rate), abs=tol)
    assert abs(r.value("RD")) == pytest.approx(
        equal_opportunity_difference(y, p, sensitive_features=groups), abs=tol
    )
    assert r.value("SD") == pytest.approx(diff(true_negative_rate, sign=-1), abs=tol)
    assert r.value("SD") == pytest.approx(diff(false_positive_rate), abs=tol)
    assert max(abs(r.value("RD")), abs(r.value("SD"))) == pytest.approx(
        equalized_odds_difference(y, p, sensitive_features=groups), abs=tol
    )
    assert r.value("AD") == pytest.approx(diff(accuracy_score), abs=tol)
    assert r.value("DAR") == pytest.approx(diff(precision_score), abs=tol)
    assert r.value("DRR") == pytest.approx(diff(_negative_predictive_value, sign=-1), abs=tol)


@pytest.mark.parametrize("seed", range(4))
def test_dpl_agrees_with_fairlearn_selection_rate_of_the_labels(seed: int) -> None:
    df = _random_frame(seed)
    r = pretraining_bias(
        df, label="y", label_values_or_threshold=1, facet="race", facet_values_or_threshold="r1"
    )
    groups = np.where(df["race"] == "r1", "d", "a")
    by = MetricFrame(
        metrics=selection_rate, y_true=df["y"], y_pred=df["y"], sensitive_features=groups
    ).by_group
    assert r.value("DPL") == pytest.approx(float(by["a"] - by["d"]), abs=1e-12)
    # On binary labels the L∞ and total variation distances are both |DPL|, and LP is √2·|DPL|.
    assert r.value("KS") == pytest.approx(abs(r.value("DPL")), abs=1e-12)
    assert r.value("TVD") == pytest.approx(abs(r.value("DPL")), abs=1e-12)
    assert r.value("LP") == pytest.approx(math.sqrt(2) * abs(r.value("DPL")), abs=1e-12)


def _reference_counts(d: np.ndarray, y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Clarify's count metrics, row by row, as an independent check of the vectorised ones."""

    def div(a: float, b: float) -> float:
        return (0.0 if a == 0 else math.inf) if b == 0 else a / b

    def sub(a: float, b: float) -> float:
        return 0.0 if a == b == math.inf else a - b

    c = {(f, cell): 0 for f in "ad" for cell in ("tp", "fp", "fn", "tn")}
    for di, yi, pi in zip(d, y, p):
        cell = {(1, 1): "tp", (0, 1): "fp", (1, 0): "fn", (0, 0): "tn"}[(int(yi), int(pi))]
        c["d" if di else "a", cell] += 1
    out = {}
    for f in "ad":
        tp, fp, fn, tn = (c[f, k] for k in ("tp", "fp", "fn", "tn"))
        out[f] = {
            "n": tp + fp + fn + tn,
            "acc_cond": div(tp + fn, tp + fp),
            "rej_cond": div(tn + fp, tn + fn),
            "tau": div(fn, fp),
        }
    return {
        "DCA": sub(out["a"]["acc_cond"], out["d"]["acc_cond"]),
        "DCR": sub(out["d"]["rej_cond"], out["a"]["rej_cond"]),
        "TE": sub(out["d"]["tau"], out["a"]["tau"]),
    }


@pytest.mark.parametrize("seed", range(4))
def test_ratio_metrics_match_a_row_by_row_reference(seed: int) -> None:
    df = _random_frame(seed, n=120)
    r = _post(df, facet="race", facet_values_or_threshold="r1")
    expected = _reference_counts((df["race"] == "r1").to_numpy(), df["y"], df["p"])
    for key, value in expected.items():
        assert r.value(key) == pytest.approx(value, abs=1e-12)


# --------------------------------------------------------------------------------------------
# Invariances


SIGN_FLIPPING = ("CI", "DPL", "DPPL", "DCA", "DCR", "RD", "SD", "DAR", "DRR", "AD", "TE")


@pytest.mark.parametrize("seed", range(3))
def test_swapping_the_facet_groups_flips_difference_metrics(seed: int) -> None:
    df = _random_frame(seed).assign(group=lambda f: np.where(f["race"] == "r1", "d", "a"))
    kw: dict[str, Any] = {
        "label": "y",
        "label_values_or_threshold": 1,
        "facet": "group",
        "predicted_label": "p",
        "features": ["x"],
    }
    one = posttraining_bias(df, facet_values_or_threshold="d", **kw)
    other = posttraining_bias(df, facet_values_or_threshold="a", **kw)
    pre_one = pretraining_bias(
        df, label="y", label_values_or_threshold=1, facet="group", facet_values_or_threshold="d"
    )
    pre_other = pretraining_bias(
        df, label="y", label_values_or_threshold=1, facet="group", facet_values_or_threshold="a"
    )
    values = {**pre_one.group().values, **one.group().values}
    swapped = {**pre_other.group().values, **other.group().values}
    for key in SIGN_FLIPPING:
        assert swapped[key] == pytest.approx(-values[key], abs=1e-12), key
    assert swapped["DI"] == pytest.approx(1 / values["DI"], rel=1e-12)
    for key in ("JS", "LP", "TVD", "KS", "GE"):
        assert swapped[key] == pytest.approx(values[key], abs=1e-12), key


def test_swapping_the_facet_groups_flips_cdd_when_every_subgroup_has_both_outcomes() -> None:
    df = _random_frame(7).assign(g=lambda f: np.where(f["x"] > 0, "hi", "lo"))
    kw: dict[str, Any] = {"label": "y", "label_values_or_threshold": 1, "group_variable": "g"}
    df["group"] = np.where(df["race"] == "r1", "d", "a")
    one = pretraining_bias(df, facet="group", facet_values_or_threshold="d", **kw)
    other = pretraining_bias(df, facet="group", facet_values_or_threshold="a", **kw)
    assert other.value("CDDL") == pytest.approx(-one.value("CDDL"), abs=1e-12)
    assert one.value("CDDL") != 0


def test_the_encoding_of_label_and_facet_does_not_change_any_metric() -> None:
    base = _random_frame(3, n=150)
    reference = _post(base, facet="race", facet_values_or_threshold="r1", features=["x"])
    encodings = [
        base.assign(y=base["y"].astype(bool), p=base["p"].astype(bool)),
        base.assign(y=base["y"].map({0: "no", 1: "yes"}), p=base["p"].map({0: "no", 1: "yes"})),
        base.assign(race=base["race"].astype("category"), y=base["y"].astype("category")),
        base.assign(race=base["race"].map({"r1": 10, "r2": 20, "r3": 30})),
    ]
    specs: list[tuple[Any, Any]] = [(True, "r1"), ("yes", "r1"), (1, "r1"), (1, 10)]
    for df, (label_value, facet_value) in zip(encodings, specs):
        r = _post(
            df,
            facet="race",
            label_values_or_threshold=label_value,
            facet_values_or_threshold=facet_value,
            features=["x"],
        )
        for key, value in reference.group().values.items():
            assert r.value(key) == pytest.approx(value, abs=1e-12, nan_ok=True), key


def test_row_order_does_not_change_any_metric() -> None:
    df = _random_frame(4, n=200)
    shuffled = df.sample(frac=1.0, random_state=1)
    kw: dict[str, Any] = {"facet": "race", "facet_values_or_threshold": "r1", "features": ["x"]}
    assert _post(df, **kw).group().values == pytest.approx(
        _post(shuffled, **kw).group().values, nan_ok=True
    )


# --------------------------------------------------------------------------------------------
# Facet and label conventions


def test_matched_facet_values_are_facet_d() -> None:
    r = _pre()
    group = r.group()
    assert (group.n_d, group.n_a) == (4, 6)
    assert group.value_or_threshold == "F"


def test_several_facet_values_form_one_group_d() -> None:
    df = pd.DataFrame({"race": list("pqrrr"), "y": [1, 0, 1, 1, 0]})
    r = _pre(df, facet="race", facet_values_or_threshold=["p", "q"])
    assert r.group().value_or_threshold == "p,q"
    assert r.value("CI") == pytest.approx((3 - 2) / 5)
    assert r.value("DPL") == pytest.approx(2 / 3 - 1 / 2)


def test_a_facet_threshold_selects_values_strictly_above_it() -> None:
    df = pd.DataFrame({"age": [20, 30, 40, 40, 50, 65], "y": [1, 0, 1, 0, 0, 1]})
    r = _pre(df, facet="age", facet_values_or_threshold=Threshold(40))
    group = r.group()
    assert group.value_or_threshold == "(40, 65]"
    assert (group.n_d, group.n_a) == (2, 4)
    assert r.value("DPL") == pytest.approx(2 / 4 - 1 / 2)


def test_a_label_threshold_selects_values_strictly_above_it() -> None:
    df = pd.DataFrame({"sex": list("FFMMM"), "score": [0.2, 0.5, 0.5, 0.9, 0.7]})
    r = _pre(df, label="score", label_values_or_threshold=Threshold(0.5))
    assert r.label_value_or_threshold == "(0.5, 0.9]"
    assert r.value("DPL") == pytest.approx(2 / 3 - 0)


def test_probability_threshold_turns_scores_into_predicted_labels() -> None:
    scores = POST.assign(p=np.where(POST["p"] == 1, 0.8, 0.3))
    r = _post(scores, probability_threshold=0.5)
    assert r.group().values == pytest.approx(_post().group().values, nan_ok=True)
    # Strictly greater: a score equal to the threshold is negative.
    at = _post(scores, probability_threshold=0.8)
    assert at.value("DPPL") == 0.0


def test_without_facet_values_each_value_is_facet_d_in_turn() -> None:
    df = pd.DataFrame({"race": list("pqrpqr"), "y": [1, 0, 1, 1, 0, 0]})
    r = _pre(df, facet="race", facet_values_or_threshold=None, methods=["CI", "DPL"])
    assert [g.value_or_threshold for g in r.groups] == ["p", "q", "r"]
    assert r.value("DPL", "p") == pytest.approx(1 / 4 - 1.0)
    assert r.value("DPL", "q") == pytest.approx(3 / 4 - 0.0)
    with pytest.raises(InvalidInput, match="several facet groups"):
        r.value("DPL")
    with pytest.raises(InvalidInput, match="no facet group 's'"):
        r.value("DPL", "s")


def test_label_values_are_converted_to_the_column_type_when_none_matches() -> None:
    as_text = _pre(label_values_or_threshold="1")
    assert as_text.value("DPL") == _pre().value("DPL")
    strings = PRE.assign(y=PRE["y"].astype(str))
    assert _pre(strings, label_values_or_threshold=1).value("DPL") == _pre().value("DPL")
    flags = PRE.assign(y=PRE["y"].astype(bool))
    assert _pre(flags, label_values_or_threshold="true").value("DPL") == _pre().value("DPL")


def test_a_multiclass_label_is_collapsed_to_positive_values_against_the_rest() -> None:
    df = pd.DataFrame({"sex": list("FFFMMM"), "grade": ["A", "B", "C", "A", "A", "C"]})
    r = _pre(df, label="grade", label_values_or_threshold={"A", "B"})
    assert r.label_value_or_threshold == "A,B"
    assert r.value("DPL") == pytest.approx(2 / 3 - 2 / 3)


def test_rows_missing_label_facet_or_prediction_are_excluded_and_counted() -> None:
    df = POST.astype({"y": "Int64", "p": "Float64"}).astype({"sex": object})
    df.loc[0, "y"] = pd.NA
    df.loc[1, "sex"] = None
    df.loc[1, "p"] = pd.NA
    df.loc[2, "p"] = pd.NA
    r = _post(df)
    assert r.n_excluded == 3
    assert r.n_rows == len(POST) - 3
    assert r.excluded_by_column == {"y": 1, "sex": 1, "p": 2}
    manual = _post(POST.drop(index=[0, 1, 2]))
    assert r.group().values == pytest.approx(manual.group().values, nan_ok=True)


def test_rows_missing_the_group_variable_are_excluded() -> None:
    df = CDD.assign(g=CDD["g"].where(CDD.index != 0, None))
    r = _pre(df, group_variable="g")
    assert r.n_excluded == 1 and r.excluded_by_column["g"] == 1
    assert r.value("CI") == _pre(CDD.drop(index=0)).value("CI")


# --------------------------------------------------------------------------------------------
# Models


class _ThresholdModel:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        self.seen = list(X.columns)
        return (X["x"] > 0).astype(int).to_numpy()


def test_a_model_with_predict_supplies_the_predictions() -> None:
    df = _random_frame(2, n=100).drop(columns="p")
    model = _ThresholdModel()
    r = posttraining_bias(
        df,
        label="y",
        label_values_or_threshold=1,
        facet="race",
        facet_values_or_threshold="r1",
        model=model,
    )
    assert model.seen == ["race", "x"]
    expected = _post(
        df.assign(p=(df["x"] > 0).astype(int)), facet="race", facet_values_or_threshold="r1"
    )
    assert r.group().values == pytest.approx(expected.group().values, nan_ok=True)


def test_a_plain_function_works_as_a_model_and_scores_use_the_probability_threshold() -> None:
    df = _random_frame(2, n=100).drop(columns="p")
    r = PosttrainingBias(
        label="y",
        label_values_or_threshold=1,
        facet="race",
        facet_values_or_threshold="r1",
        probability_threshold=0.0,
        features=["x"],
    ).compute(df, model=lambda X: X["x"].to_numpy().reshape(-1, 1))
    expected = _post(
        df.assign(p=(df["x"] > 0).astype(int)),
        facet="race",
        facet_values_or_threshold="r1",
        features=["x"],
    )
    assert r.group().values == pytest.approx(expected.group().values, nan_ok=True)


def test_a_failing_model_is_a_user_code_error_with_the_cause_kept() -> None:
    def broken(X: pd.DataFrame) -> Any:
        raise RuntimeError("boom")

    with pytest.raises(UserCodeError, match="RuntimeError: boom") as info:
        _post(POST.drop(columns="p"), predicted_label=None, model=broken)
    assert isinstance(info.value.__cause__, RuntimeError)


@pytest.mark.parametrize(
    ("output", "match"),
    [
        (lambda X: np.zeros((len(X), 2)), "shape"),
        (lambda X: np.zeros(len(X) - 1), "predictions for"),
        (lambda X: pd.DataFrame({"a": np.zeros(len(X)), "b": np.zeros(len(X))}), "2 columns"),
    ],
)
def test_a_model_output_that_is_not_one_value_per_row_is_refused(output: Any, match: str) -> None:
    with pytest.raises(BiasInputError, match=match):
        _post(POST.drop(columns="p"), predicted_label=None, model=output)


def test_an_object_that_cannot_predict_is_refused() -> None:
    with pytest.raises(BiasInputError, match="predict method"):
        _post(POST.drop(columns="p"), predicted_label=None, model=42)


# --------------------------------------------------------------------------------------------
# Report shape


def test_to_dict_has_clarify_analysis_json_shape_and_is_strict_json() -> None:
    pre = _pre(CDD, group_variable="g")
    post = _post()
    doc = bias_analysis([pre, post])
    json.dumps(doc, allow_nan=False)
    assert set(doc) == {"pre_training_bias_metrics", "post_training_bias_metrics"}
    section = doc["pre_training_bias_metrics"]
    assert section["label"] == "y"
    assert section["label_value_or_threshold"] == "1"
    (group,) = section["facets"]["sex"]
    assert group["value_or_threshold"] == "F"
    assert [m["name"] for m in group["metrics"]] == sorted(PRETRAINING_METHODS)
    assert all(set(m) == {"name", "description", "value"} for m in group["metrics"])
    (post_group,) = doc["post_training_bias_metrics"]["facets"]["sex"]
    post_names = [m["name"] for m in post_group["metrics"]]
    assert post_names == sorted(POSTTRAINING_METHODS)
    assert pre.to_dict() == {"pre_training_bias_metrics": section}


def test_undefined_metric_is_null_with_an_error_in_json() -> None:
    metric = _pre().to_dict()["pre_training_bias_metrics"]["facets"]["sex"][0]["metrics"][0]
    assert metric["name"] == "CDDL"
    assert metric["value"] is None
    assert "group_variable" in metric["error"]


def test_bias_analysis_merges_facets_and_refuses_different_labels() -> None:
    df = PRE.assign(age=[20, 30, 40, 50, 60, 70, 20, 30, 40, 50])
    by_sex = _pre(df)
    by_age = _pre(df, facet="age", facet_values_or_threshold=Threshold(45))
    doc = bias_analysis([by_sex, by_age])
    assert set(doc["pre_training_bias_metrics"]["facets"]) == {"sex", "age"}
    other_label = _pre(df.assign(z=df["y"]), label="z")
    with pytest.raises(InvalidInput, match="share the label"):
        bias_analysis([by_sex, other_label])
    with pytest.raises(InvalidInput, match="at least one report"):
        bias_analysis([])


def test_methods_select_metrics_and_accept_the_dcacc_alias() -> None:
    r = _post(methods=["TE", "DCAcc", "AD"])
    assert [m.name for m in r.group().metrics] == ["AD", "DCA", "TE"]
    assert [m.name for m in _pre(methods="CI").group().metrics] == ["CI"]
    with pytest.raises(InvalidInput, match="not computed"):
        r.group().metric("DI")


def test_estimator_parameters_round_trip() -> None:
    est = PretrainingBias(
        label="y", label_values_or_threshold=1, facet="sex", facet_values_or_threshold="F"
    )
    assert type(est)(**est.get_params()) == est
    assert est.compute(PRE).group().values == pytest.approx(_pre().group().values, nan_ok=True)
    post = PosttrainingBias(
        label="y",
        label_values_or_threshold=1,
        facet="sex",
        facet_values_or_threshold="F",
        predicted_label="p",
    )
    assert type(post)(**post.get_params()) == post


def test_module_docstring_example_runs() -> None:
    result = doctest.testmod(bias_module, verbose=False)
    assert result.attempted > 0 and result.failed == 0


# --------------------------------------------------------------------------------------------
# Refused input


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"label": "nope"}, "label column 'nope' is not in the data"),
        ({"facet": "nope"}, "facet column 'nope' is not in the data"),
        ({"group_variable": "nope"}, "group variable column 'nope'"),
        ({"facet": "y"}, "same column"),
        ({"facet_values_or_threshold": "X"}, "facet d is empty.*values seen: 'F', 'M'"),
        ({"facet_values_or_threshold": ["F", "M"]}, "facet a is empty"),
        ({"label_values_or_threshold": 7}, "no row has a positive label"),
        ({"label_values_or_threshold": Threshold(1)}, "no value is greater than 1"),
        ({"label_values_or_threshold": []}, "empty"),
        ({"label_values_or_threshold": [None]}, "missing value"),
        ({"label_values_or_threshold": {"a": 1}}, "mapping"),
        ({"label_values_or_threshold": [[1]]}, "cannot be compared"),
        ({"facet_values_or_threshold": Threshold(3)}, "dtype .*numeric threshold"),
        ({"methods": []}, "methods is empty"),
        ({"methods": ["CI", "XYZ"]}, "unknown pre-training metric 'XYZ'"),
        ({"methods": ["DPPL"]}, "it is a post-training metric"),
        ({"methods": ["CDDL"]}, "CDDL needs group_variable"),
    ],
)
def test_bad_pre_training_input_is_refused_clearly(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(BiasInputError, match=match) as info:
        _pre(**kw)
    assert isinstance(info.value, InvalidInput)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"predicted_label": "nope"}, "predicted label column 'nope'"),
        ({"predicted_label": None}, "exactly one of predicted_label"),
        ({"model": lambda X: X}, "exactly one of predicted_label"),
        ({"predicted_label": "y"}, "must differ"),
        ({"methods": ["CI"]}, "it is a pre-training metric"),
        ({"methods": ["CDDPL"]}, "CDDPL needs group_variable"),
        ({"features": ["nope"]}, "feature column 'nope'"),
        ({"features": ["y"]}, "must not include the label"),
        ({"probability_threshold": float("nan")}, "finite number"),
        ({"probability_threshold": "0.5"}, "finite number"),
    ],
)
def test_bad_post_training_input_is_refused_clearly(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(BiasInputError, match=match):
        _post(**kw)


def test_probability_threshold_on_text_predictions_is_refused() -> None:
    df = POST.assign(p=POST["p"].map({0: "no", 1: "yes"}))
    with pytest.raises(BiasInputError, match="predicted label column 'p' has dtype"):
        _post(df, probability_threshold=0.5)


def test_data_that_is_not_a_frame_or_has_no_rows_is_refused() -> None:
    with pytest.raises(BiasInputError, match="pandas DataFrame"):
        _pre(PRE.to_dict())  # type: ignore[arg-type]
    with pytest.raises(BiasInputError, match="no rows"):
        _pre(PRE.iloc[:0])
    all_missing = PRE.assign(y=np.nan)
    with pytest.raises(BiasInputError, match=r"no rows left.*y: 10"):
        _pre(all_missing)


def test_a_duplicated_column_is_refused() -> None:
    df = pd.concat([PRE, PRE[["y"]]], axis=1)
    with pytest.raises(BiasInputError, match="more than once"):
        _pre(df)


def test_a_float_facet_needs_values_or_a_threshold() -> None:
    df = PRE.assign(w=np.linspace(0, 1, len(PRE)))
    with pytest.raises(BiasInputError, match="holds floats"):
        _pre(df, facet="w", facet_values_or_threshold=None)


def test_a_boolean_column_takes_values_not_a_threshold() -> None:
    df = PRE.assign(flag=PRE["sex"] == "F")
    with pytest.raises(BiasInputError, match="boolean"):
        _pre(df, facet="flag", facet_values_or_threshold=Threshold(0))
    assert _pre(df, facet="flag", facet_values_or_threshold=True).value("CI") == _pre().value("CI")


@pytest.mark.parametrize("bad", [True, float("inf"), float("nan"), "3", None])
def test_threshold_needs_a_finite_real_number(bad: Any) -> None:
    with pytest.raises(BiasInputError, match="Threshold needs"):
        Threshold(bad)
