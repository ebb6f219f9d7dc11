"""SHAP explanations and partial dependence, on small synthetic data with known effects."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, PolynomialFeatures, StandardScaler
from sklearn.tree import DecisionTreeClassifier

from wellml.clarify import (
    ExplainInputError,
    ShapExplainer,
    baseline_rows,
    explain,
    partial_dependence,
)
from wellml.errors import InvalidInput


def _numeric(n: int = 300, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """``signal`` decides the label; ``noise`` is independent of it."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "signal": rng.normal(size=n),
            "noise": rng.normal(size=n),
            "weak": rng.normal(size=n),
        }
    )
    y = (2 * X["signal"] + 0.3 * X["weak"] + rng.normal(scale=0.3, size=n) > 0).astype(int)
    return X, y


def _mixed(n: int = 300, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Numeric, integer and text columns; ``plan`` (text) and ``usage`` drive the label."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "usage": rng.normal(size=n),
            "age": rng.integers(18, 80, size=n),
            "plan": rng.choice(["basic", "plus", "gold"], size=n),
            "noise": rng.normal(size=n),
        }
    )
    score = 1.5 * X["usage"] + 2.0 * (X["plan"] == "gold") + rng.normal(scale=0.3, size=n)
    return X, (score > 0.8).astype(int)


def _pipeline(estimator: object) -> Pipeline:
    pre = ColumnTransformer(
        [
            ("num", StandardScaler(), ["usage", "age", "noise"]),
            ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["plan"]),
        ]
    )
    return Pipeline([("prepare", pre), ("model", estimator)])


def _positive_proba(model: object, X: pd.DataFrame, column: int = 1) -> np.ndarray:
    return np.asarray(model.predict_proba(X))[:, column]  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------
# Additivity


def test_tree_shap_values_add_up_to_prediction_minus_expected_value() -> None:
    X, y = _numeric()
    model = RandomForestClassifier(n_estimators=30, random_state=0).fit(X, y)
    e = explain(model, X, max_rows=60)
    assert e.method == "tree" and e.features == ("signal", "noise", "weak")
    assert e.shap_values.shape == (60, 3)
    np.testing.assert_allclose(
        e.expected_value + e.shap_values.sum(axis=1), _positive_proba(model, e.data), atol=1e-6
    )
    np.testing.assert_allclose(e.predictions, _positive_proba(model, e.data))
    assert e.expected_value == pytest.approx(_positive_proba(model, e.baseline).mean())


def test_kernel_shap_values_add_up_to_prediction_minus_expected_value() -> None:
    X, y = _numeric()
    model = LogisticRegression().fit(X, y)
    e = explain(model, X, max_rows=40, n_samples=50)
    assert e.method == "kernel" and e.notes == ()
    assert e.additivity_error < 1e-9
    assert e.expected_value == pytest.approx(_positive_proba(model, e.baseline).mean())


def test_regressor_output_is_the_prediction_labelled_label0() -> None:
    X, _ = _numeric()
    model = GradientBoostingRegressor(n_estimators=30, random_state=0).fit(X, 3 * X["signal"])
    e = explain(model, X, max_rows=40)
    assert e.method == "tree" and e.label == "label0"
    np.testing.assert_allclose(
        e.expected_value + e.shap_values.sum(axis=1), model.predict(e.data), atol=1e-6
    )


def test_kernel_shap_of_a_linear_model_is_weight_times_distance_from_the_baseline_mean() -> None:
    X, _ = _numeric()
    model = LinearRegression().fit(X, 2 * X["signal"] - X["noise"] + 0.5 * X["weak"])
    # Three features: 6 coalitions enumerate every subset, so Kernel SHAP is exact.
    e = explain(model, X, method="kernel", max_rows=20, n_clusters=5, n_samples=6)
    expected = (e.data - e.baseline.mean()).to_numpy() * model.coef_
    np.testing.assert_allclose(e.shap_values, expected, atol=1e-9)


def test_tree_and_exact_kernel_shap_agree_on_the_same_baseline() -> None:
    X, y = _numeric()
    model = RandomForestClassifier(n_estimators=20, max_depth=4, random_state=0).fit(X, y)
    tree = explain(model, X, method="tree", max_rows=25, n_clusters=6)
    kernel = explain(model, X, method="kernel", max_rows=25, n_clusters=6, n_samples=6)
    assert (tree.method, kernel.method) == ("tree", "kernel")
    np.testing.assert_allclose(tree.shap_values, kernel.shap_values, atol=1e-6)
    assert tree.expected_value == pytest.approx(kernel.expected_value)


def test_binary_model_explained_for_its_first_class_mirrors_the_second() -> None:
    X, y = _numeric()
    model = GradientBoostingClassifier(n_estimators=20, random_state=0).fit(X, y)
    first = explain(model, X, target_class=0, max_rows=30)
    second = explain(model, X, target_class=1, max_rows=30)
    assert first.method == "tree" and first.label == "0"
    np.testing.assert_allclose(first.shap_values, -second.shap_values, atol=1e-9)
    np.testing.assert_allclose(
        first.expected_value + first.shap_values.sum(axis=1),
        _positive_proba(model, first.data, column=0),
        atol=1e-6,
    )


def test_tree_path_holds_when_inputs_sit_one_float32_step_from_a_split() -> None:
    # Two inputs one float32 step apart: scikit-learn splits between them at a float64
    # midpoint that rounds (to even) onto the upper one in float32.
    low = np.nextafter(np.float32(3.0), np.float32(np.inf))
    high = np.nextafter(low, np.float32(np.inf))
    X = pd.DataFrame({"x": np.array([low] * 10 + [high] * 10, dtype=np.float64), "c": 1.0})
    model = DecisionTreeClassifier(max_depth=1).fit(X, [0] * 10 + [1] * 10)
    assert np.float32(model.tree_.threshold[0]) == high
    e = explain(model, X, baseline=X.iloc[:10])
    assert e.method == "tree" and e.notes == ()
    np.testing.assert_allclose(e.shap_values[:, 0], [0.0] * 10 + [1.0] * 10)
    assert e.additivity_error < 1e-9


def test_multiclass_model_explains_the_named_class() -> None:
    X, _ = _numeric()
    label = pd.cut(X["signal"], [-np.inf, -0.5, 0.5, np.inf], labels=["low", "mid", "high"])
    model = RandomForestClassifier(n_estimators=20, random_state=0).fit(X, label.astype(str))
    e = explain(model, X, target_class="high", max_rows=30)
    column = list(model.classes_).index("high")
    np.testing.assert_allclose(
        e.expected_value + e.shap_values.sum(axis=1),
        _positive_proba(model, e.data, column=column),
        atol=1e-6,
    )
    assert e.ranking[0] == "signal"


def test_auto_never_returns_values_that_miss_the_predictions() -> None:
    # SHAP's tree explainer can disagree with some tree models; wellml checks and falls back.
    X, y = _mixed()
    model = _pipeline(HistGradientBoostingClassifier(max_iter=20, random_state=0)).fit(X, y)
    e = explain(model, X, max_rows=30, n_samples=30)
    assert e.additivity_error < 1e-6
    if e.method == "kernel":
        assert e.notes and "kernel SHAP was used because" in e.notes[0]


# --------------------------------------------------------------------------------------------
# Rankings and pipelines


@pytest.mark.parametrize("method", ["tree", "kernel"])
def test_global_ranking_puts_the_informative_feature_above_noise(method: str) -> None:
    X, y = _numeric()
    model = RandomForestClassifier(n_estimators=30, random_state=0).fit(X, y)
    e = explain(model, X, method=method, max_rows=40, n_samples=6)  # type: ignore[arg-type]
    ranking = e.ranking
    assert ranking[0] == "signal"
    values = e.global_shap_values
    assert values["signal"] > 5 * values["noise"]
    assert list(values.values()) == sorted(values.values(), reverse=True)
    assert values["noise"] == pytest.approx(np.abs(e.shap_values[:, 1]).mean())


@pytest.mark.parametrize("method", ["tree", "kernel"])
def test_pipeline_model_is_explained_in_its_original_columns(method: str) -> None:
    X, y = _mixed()
    model = _pipeline(RandomForestClassifier(n_estimators=30, random_state=0)).fit(X, y)
    e = explain(model, X, method=method, max_rows=40, n_samples=40)  # type: ignore[arg-type]
    assert e.method == method
    assert e.features == ("usage", "age", "plan", "noise")
    assert e.shap_values.shape == (40, 4)
    assert e.additivity_error < 1e-6
    assert set(e.ranking[:2]) == {"usage", "plan"}
    assert e.data["plan"].isin(["basic", "plus", "gold"]).all()


def test_tree_path_credits_all_one_hot_columns_of_a_text_column_to_it() -> None:
    X, y = _mixed()
    model = _pipeline(RandomForestClassifier(n_estimators=30, random_state=0)).fit(X, y)
    e = explain(model, X, method="tree", max_rows=30)
    import shap

    from wellml.clarify.explain import _float32_thresholds

    pre, final = model[:-1], model[-1]
    raw = shap.TreeExplainer(
        _float32_thresholds(final),
        data=pre.transform(e.baseline).astype(np.float32),
        feature_perturbation="interventional",
        model_output="probability",
    ).shap_values(pre.transform(e.data).astype(np.float32), check_additivity=False)[:, :, 1]
    names = list(pre.get_feature_names_out())
    plan_columns = [i for i, name in enumerate(names) if name.startswith("cat__plan_")]
    assert len(plan_columns) == 3
    np.testing.assert_allclose(e.shap_values[:, 2], raw[:, plan_columns].sum(axis=1), atol=1e-9)


def test_preprocessing_that_mixes_columns_falls_back_to_kernel_shap() -> None:
    X, y = _numeric()
    model = Pipeline(
        [("poly", PolynomialFeatures(degree=2)), ("model", RandomForestClassifier(10))]
    ).fit(X, y)
    e = explain(model, X, max_rows=20, n_samples=6)
    assert e.method == "kernel"
    assert "depends on both" in e.notes[0]
    assert e.features == ("signal", "noise", "weak") and e.additivity_error < 1e-9
    with pytest.raises(ExplainInputError, match="depends on both"):
        explain(model, X, method="tree", max_rows=20)


def test_kernel_results_repeat_with_the_same_seed_and_leave_numpy_state_alone() -> None:
    rng = np.random.default_rng(1)
    X = pd.DataFrame({f"x{i}": rng.normal(size=80) for i in range(7)})
    y = (X.sum(axis=1) > 0).astype(int)
    model = LogisticRegression().fit(X, y)
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a = explain(model, X, method="kernel", max_rows=10, n_samples=20, seed=5)
    assert np.array_equal(np.random.get_state()[1], before)
    b = explain(model, X, method="kernel", max_rows=10, n_samples=20, seed=5)
    c = explain(model, X, method="kernel", max_rows=10, n_samples=20, seed=6)
    np.testing.assert_array_equal(a.shap_values, b.shap_values)
    assert not np.array_equal(a.shap_values, c.shap_values)


# --------------------------------------------------------------------------------------------
# Baselines


def test_kmeans_baseline_has_one_row_per_cluster_in_the_original_types() -> None:
    X, _ = _mixed()
    base = baseline_rows(X, n_clusters=4, seed=0)
    assert len(base) == 4
    assert base.dtypes.to_dict() == X.dtypes.to_dict()
    assert base["plan"].isin(["basic", "plus", "gold"]).all()
    assert X["age"].min() <= base["age"].min() and base["age"].max() <= X["age"].max()


def test_kmeans_baseline_never_has_more_rows_than_distinct_rows() -> None:
    X = pd.DataFrame({"a": [1.0, 1.0, 2.0, 2.0], "b": ["x", "x", "y", "y"]})
    assert len(baseline_rows(X, n_clusters=10)) == 2


def test_mean_baseline_is_one_row_of_means_and_modes() -> None:
    X = pd.DataFrame({"x": [1.0, 2.0, 6.0], "n": [1, 2, 2], "c": ["p", "q", "q"]})
    base = baseline_rows(X, method="mean")
    assert base.to_dict("records") == [{"x": 3.0, "n": 2, "c": "q"}]


def test_a_given_baseline_sets_the_expected_value() -> None:
    X, y = _numeric()
    model = LogisticRegression().fit(X, y)
    given = X.iloc[:3]
    e = ShapExplainer(baseline=given, max_rows=10, n_samples=6).compute(model, X)
    assert len(e.baseline) == 3
    assert e.expected_value == pytest.approx(_positive_proba(model, given).mean())
    assert e.params["baseline"] == "given" and e.params["baseline_rows"] == 3


# --------------------------------------------------------------------------------------------
# Output


def test_to_dict_is_the_explanations_section_of_clarify_analysis_json() -> None:
    X, y = _numeric()
    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)
    e = explain(model, X, max_rows=15)
    d = e.to_dict()
    section = d["explanations"]["kernel_shap"]["1"]
    assert set(section) == {"global_shap_values", "expected_value"}
    assert list(section["global_shap_values"]) == list(e.ranking)
    assert section["expected_value"] == pytest.approx(e.expected_value)
    local = e.local_to_dict()
    assert len(local["shap_values"]) == len(local["row_ids"]) == 15
    assert local["row_ids"] == [int(i) for i in e.data.index]
    assert e.local(0) == dict(zip(e.features, local["shap_values"][0], strict=True))
    json.dumps({**d, "local": local}, allow_nan=False)


# --------------------------------------------------------------------------------------------
# Partial dependence


def test_partial_dependence_moves_with_a_monotone_effect() -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"up": rng.uniform(0, 10, 400), "down": rng.uniform(0, 10, 400)})
    y = 2 * X["up"] - 3 * X["down"] + rng.normal(scale=0.5, size=400)
    model = RandomForestRegressor(n_estimators=30, random_state=0).fit(X, y)
    up = partial_dependence(model, X, "up", grid_resolution=10)
    down = partial_dependence(model, X, "down", grid_resolution=10)
    assert up.kind == "numeric" and len(up.values) == 10
    assert list(up.values) == sorted(up.values)
    assert up.average[-1] - up.average[0] > 10
    assert np.corrcoef(up.values, up.average)[0, 1] > 0.95
    assert np.corrcoef(down.values, down.average)[0, 1] < -0.95
    assert up.values[0] >= float(np.quantile(X["up"], 0.05)) - 1e-9


def test_partial_dependence_of_a_text_column_through_a_pipeline() -> None:
    X, y = _mixed()
    model = _pipeline(RandomForestClassifier(n_estimators=30, random_state=0)).fit(X, y)
    dep = partial_dependence(model, X, "plan")
    assert dep.kind == "categorical"
    assert set(dep.values) == {"basic", "plus", "gold"}
    averages = dict(zip(dep.values, dep.average, strict=True))
    assert averages["gold"] > averages["basic"] + 0.2
    assert dep.to_dict()["values"] == list(dep.values)


def test_partial_dependence_grid_of_a_small_integer_column_is_its_values() -> None:
    X = pd.DataFrame({"k": [1, 2, 3, 1, 2, 3, 5] * 10, "z": np.arange(70.0)})
    model = LinearRegression().fit(X, 4 * X["k"])
    dep = partial_dependence(model, X, "k")
    assert dep.values == (1, 2, 3, 5)
    np.testing.assert_allclose(np.diff(dep.average), [4, 4, 8], atol=1e-6)


# --------------------------------------------------------------------------------------------
# Refused input


def test_unknown_columns_are_refused_by_name() -> None:
    X, y = _numeric()
    model = LogisticRegression().fit(X, y)
    with pytest.raises(ExplainInputError, match="'missing'"):
        explain(model, X, features=["signal", "missing"])
    with pytest.raises(ExplainInputError, match="'nope' is not one of the model's columns"):
        partial_dependence(model, X, "nope")
    with pytest.raises(ExplainInputError, match="lacks the model's column"):
        explain(model, X.drop(columns="noise"))


def test_a_model_that_cannot_predict_on_the_data_is_refused() -> None:
    X, y = _numeric()
    model = LogisticRegression().fit(X, y)
    bad = X.assign(signal=["text"] * len(X))
    with pytest.raises(ExplainInputError, match="cannot predict on these rows") as info:
        explain(model, bad)
    assert info.value.__cause__ is not None
    assert isinstance(info.value, InvalidInput)


def test_empty_data_and_bad_parameters_are_refused() -> None:
    X, y = _numeric()
    model = LogisticRegression().fit(X, y)
    with pytest.raises(ExplainInputError, match="no rows"):
        explain(model, X.iloc[:0])
    with pytest.raises(ExplainInputError, match="DataFrame"):
        explain(model, X.to_numpy())  # type: ignore[arg-type]
    with pytest.raises(ExplainInputError, match="n_samples"):
        explain(model, X, n_samples=0)
    with pytest.raises(ExplainInputError, match="not a tree model"):
        explain(model, X, method="tree")
    with pytest.raises(ExplainInputError, match="baseline has no rows"):
        explain(model, X, baseline=X.iloc[:0])
    with pytest.raises(ExplainInputError, match="predict method"):
        explain(object(), X)


def test_class_choice_is_checked() -> None:
    X, _ = _numeric()
    label = pd.cut(X["signal"], [-np.inf, 0, 1, np.inf], labels=["a", "b", "c"]).astype(str)
    model = LogisticRegression().fit(X, label)
    with pytest.raises(ExplainInputError, match="3 classes; choose"):
        explain(model, X)
    with pytest.raises(ExplainInputError, match="'z' is not a class"):
        explain(model, X, target_class="z")
    regressor = LinearRegression().fit(X, X["signal"])
    with pytest.raises(ExplainInputError, match="needs a classifier"):
        explain(regressor, X, target_class=1)
