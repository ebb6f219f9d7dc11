"""The churn generator: deterministic, realistic, learnable, and drifting only where it says."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from wellml.errors import InvalidInput
from wellml.examples.churn import (
    CATEGORICAL,
    DRIFTED_FEATURES,
    FEATURES,
    ID_COLUMN,
    NUMERIC,
    TARGET,
    TIME_COLUMN,
    generate_churn,
    generate_churn_drifted,
    split_train_holdout,
)

STABLE = tuple(c for c in FEATURES if c not in DRIFTED_FEATURES)
# A 0/1 flag is a category to a drift monitor, and KS on two tied values says little.
CHI2_COLUMNS = (*CATEGORICAL, "senior")
INTEGER_COLUMNS = (
    "tenure_months",
    "support_calls_90d",
    "days_since_last_login",
    "num_products",
    "senior",
)
FLOAT_COLUMNS = ("monthly_charges", "total_charges", "data_usage_gb")
LEVELS = {
    "contract": {"month-to-month", "one-year", "two-year"},
    "payment_method": {"electronic-check", "mailed-check", "bank-transfer", "credit-card"},
    "region": {"north", "south", "east", "west"},
    "plan": {"basic", "standard", "premium"},
    "gender": {"female", "male"},
}
# The window sizes a drift monitor sees in the demo.
WINDOWS = (300, 500, 1000, 1500, 2000)


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return generate_churn()


@pytest.fixture(scope="module")
def drifted() -> pd.DataFrame:
    return generate_churn_drifted()


def _p_value(a: pd.Series, b: pd.Series) -> float:
    """Two-sample p-value that ``a`` and ``b`` share a distribution (nulls ignored)."""
    a, b = a.dropna(), b.dropna()
    if a.name in CHI2_COLUMNS:
        side = np.r_[np.zeros(len(a)), np.ones(len(b))]
        table = pd.crosstab(side, np.r_[a.to_numpy(object), b.to_numpy(object)])
        return float(stats.chi2_contingency(table).pvalue)
    return float(stats.ks_2samp(a, b, method="asymp").pvalue)


def test_constants_partition_the_columns() -> None:
    assert FEATURES == NUMERIC + CATEGORICAL
    assert not set(NUMERIC) & set(CATEGORICAL)
    assert set(DRIFTED_FEATURES) < set(FEATURES)
    assert len(DRIFTED_FEATURES) == 4
    assert not {ID_COLUMN, TIME_COLUMN, TARGET} & set(FEATURES)
    assert TARGET == "churned"


def test_same_seed_same_table_other_seed_other_table() -> None:
    pd.testing.assert_frame_equal(generate_churn(1000, seed=3), generate_churn(1000, seed=3))
    pd.testing.assert_frame_equal(
        generate_churn_drifted(1000, seed=3), generate_churn_drifted(1000, seed=3)
    )
    a, b = generate_churn(1000, seed=3), generate_churn(1000, seed=4)
    for col in (*FEATURES, TARGET):
        assert not a[col].equals(b[col]), col


@pytest.mark.parametrize("which", ["reference", "drifted"])
def test_schema_and_value_ranges(which: str, request: pytest.FixtureRequest) -> None:
    df: pd.DataFrame = request.getfixturevalue(which)
    assert list(df.columns) == [ID_COLUMN, TIME_COLUMN, *FEATURES, TARGET]
    assert df[ID_COLUMN].str.fullmatch(r"C\d{6}").all()
    assert df[ID_COLUMN].is_unique
    assert pd.api.types.is_datetime64_dtype(df[TIME_COLUMN])
    assert (df[TIME_COLUMN].dt.day == 1).all()
    for col in (*INTEGER_COLUMNS, TARGET):
        assert pd.api.types.is_integer_dtype(df[col]), col
    for col in FLOAT_COLUMNS:
        assert pd.api.types.is_float_dtype(df[col]), col
    for col, levels in LEVELS.items():
        assert pd.api.types.is_string_dtype(df[col]), col
        assert set(df[col].unique()) == levels, col
    assert df[TARGET].isin([0, 1]).all()
    assert df["senior"].isin([0, 1]).all()
    assert df["num_products"].between(1, 5).all()
    assert (df["tenure_months"] >= 1).all()
    assert (df["monthly_charges"] > 0).all()
    assert (df["support_calls_90d"] >= 0).all()
    assert (df["days_since_last_login"] >= 0).all()
    assert (df["data_usage_gb"] >= 0).all()
    assert df.drop(columns="total_charges").notna().all().all()


def test_snapshot_dates_are_the_requested_months() -> None:
    df = generate_churn(3000, start="2026-03-01", periods=4)
    expected = pd.date_range("2026-03-01", periods=4, freq="MS")
    assert set(df[TIME_COLUMN].unique()) == set(expected)
    assert set(generate_churn_drifted(3000)[TIME_COLUMN].dt.month.unique()) <= {9, 10, 11}


def test_periods_do_not_share_customer_ids(reference: pd.DataFrame, drifted: pd.DataFrame) -> None:
    assert not set(reference[ID_COLUMN]) & set(drifted[ID_COLUMN])


def test_churn_rate_and_its_rise_under_drift(
    reference: pd.DataFrame, drifted: pd.DataFrame
) -> None:
    assert 0.20 <= reference[TARGET].mean() <= 0.30
    assert drifted[TARGET].mean() > reference[TARGET].mean() + 0.05


def test_total_charges_track_tenure_times_price_with_some_missing(
    reference: pd.DataFrame,
) -> None:
    assert 0.006 <= reference["total_charges"].isna().mean() <= 0.014
    known = reference.dropna(subset=["total_charges"])
    ratio = known["total_charges"] / (known["tenure_months"] * known["monthly_charges"])
    assert 0.9 <= ratio.median() <= 1.05
    assert ratio.between(0.6, 1.5).all()


def test_boosted_trees_learn_the_label_better_than_a_linear_model(
    reference: pd.DataFrame,
) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    train, holdout = split_train_holdout(reference, seed=3)
    features = list(FEATURES)

    def auc(estimator: object, numeric: object) -> float:
        prepare = ColumnTransformer(
            [
                ("num", numeric, list(NUMERIC)),
                ("cat", OneHotEncoder(handle_unknown="ignore"), list(CATEGORICAL)),
            ]
        )
        model = make_pipeline(prepare, estimator).fit(train[features], train[TARGET])
        return float(roc_auc_score(holdout[TARGET], model.predict_proba(holdout[features])[:, 1]))

    boosted = auc(HistGradientBoostingClassifier(random_state=0), "passthrough")
    linear = auc(
        LogisticRegression(max_iter=1000),
        make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
    )
    assert boosted >= 0.78
    assert boosted <= 0.92  # noisy enough to be realistic
    assert boosted > linear + 0.01  # interactions that a linear model cannot express


def test_drifted_features_shift_strongly_and_in_the_stated_direction(
    reference: pd.DataFrame, drifted: pd.DataFrame
) -> None:
    for col in DRIFTED_FEATURES:
        assert _p_value(reference[col], drifted[col]) < 1e-6, col
    charge_ratio = drifted["monthly_charges"].mean() / reference["monthly_charges"].mean()
    assert 1.2 <= charge_ratio <= 1.3
    calls_ratio = drifted["support_calls_90d"].mean() / reference["support_calls_90d"].mean()
    assert 1.7 <= calls_ratio <= 2.3
    month_to_month = (drifted["contract"] == "month-to-month").mean()
    assert month_to_month > (reference["contract"] == "month-to-month").mean() + 0.2
    login_shift = drifted["days_since_last_login"].median()
    assert login_shift > reference["days_since_last_login"].median() + 5


def test_drifted_features_are_caught_even_in_the_smallest_window(
    reference: pd.DataFrame,
) -> None:
    current = generate_churn_drifted(WINDOWS[0])
    for col in DRIFTED_FEATURES:
        assert _p_value(reference[col].sample(WINDOWS[0], random_state=0), current[col]) < 1e-3


def test_other_features_keep_their_distribution_in_full(
    reference: pd.DataFrame, drifted: pd.DataFrame
) -> None:
    for col in STABLE:
        p = _p_value(reference[col], drifted[col])
        assert p > 0.001, (col, p)


@pytest.mark.parametrize("n", WINDOWS)
def test_other_features_keep_their_distribution_in_monitor_windows(
    reference: pd.DataFrame, drifted: pd.DataFrame, n: int
) -> None:
    # Both ways a monitor window is formed: a freshly generated batch of n drifted customers
    # (what the demo sends) and the first n rows of each table.
    windows = {
        "generated": (reference.sample(n, random_state=n), generate_churn_drifted(n)),
        "head": (reference.head(n), drifted.head(n)),
    }
    for how, (ref, cur) in windows.items():
        for col in STABLE:
            p = _p_value(ref[col], cur[col])
            assert p > 0.001, (how, col, p)


def test_holdout_traffic_looks_like_training_data(reference: pd.DataFrame) -> None:
    train, holdout = split_train_holdout(reference, holdout_fraction=0.15, seed=1)
    for col in FEATURES:
        p = _p_value(train[col], holdout[col])
        assert p > 0.001, (col, p)


def test_split_is_by_customer_deterministic_and_order_free(reference: pd.DataFrame) -> None:
    train, holdout = split_train_holdout(reference, holdout_fraction=0.25, seed=0)
    assert not set(train[ID_COLUMN]) & set(holdout[ID_COLUMN])
    assert len(train) + len(holdout) == len(reference)
    assert len(holdout) == round(0.25 * len(reference))
    assert list(train.index) == list(range(len(train)))

    again = split_train_holdout(reference, holdout_fraction=0.25, seed=0)[1]
    pd.testing.assert_frame_equal(holdout, again)
    shuffled = reference.sample(frac=1.0, random_state=5)
    from_shuffled = split_train_holdout(shuffled, holdout_fraction=0.25, seed=0)[1]
    assert set(from_shuffled[ID_COLUMN]) == set(holdout[ID_COLUMN])
    other_seed = split_train_holdout(reference, holdout_fraction=0.25, seed=1)[1]
    assert set(other_seed[ID_COLUMN]) != set(holdout[ID_COLUMN])


def test_split_keeps_every_snapshot_of_a_customer_together() -> None:
    df = generate_churn(200, seed=1)
    later = df.assign(**{TIME_COLUMN: df[TIME_COLUMN] + pd.DateOffset(months=6)})
    both = pd.concat([df, later], ignore_index=True)
    train, holdout = split_train_holdout(both, holdout_fraction=0.3, seed=2)
    assert not set(train[ID_COLUMN]) & set(holdout[ID_COLUMN])
    assert (holdout[ID_COLUMN].value_counts() == 2).all()
    assert holdout[ID_COLUMN].nunique() == 60


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_split_rejects_fractions_outside_zero_one(reference: pd.DataFrame, fraction: float) -> None:
    with pytest.raises(InvalidInput):
        split_train_holdout(reference, holdout_fraction=fraction)


def test_bad_arguments_are_rejected(reference: pd.DataFrame) -> None:
    with pytest.raises(InvalidInput):
        split_train_holdout(reference.drop(columns=[ID_COLUMN]))
    with pytest.raises(InvalidInput):
        generate_churn(0)
    with pytest.raises(InvalidInput):
        generate_churn(10, periods=0)
    with pytest.raises(InvalidInput):
        generate_churn_drifted(-1)
