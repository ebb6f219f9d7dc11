"""The churn generator: deterministic, realistic, and drifting only where it says it does."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from wellml.examples.churn import (
    CATEGORICAL,
    DRIFTED_FEATURES,
    FEATURES,
    ID_COLUMN,
    NUMERIC,
    TARGET,
    generate_churn,
    generate_churn_drifted,
    split_train_holdout,
)


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return generate_churn()


@pytest.fixture(scope="module")
def drifted() -> pd.DataFrame:
    return generate_churn_drifted()


def test_same_seed_same_data_other_seed_other_data() -> None:
    pd.testing.assert_frame_equal(generate_churn(500, seed=1), generate_churn(500, seed=1))
    assert not generate_churn(500, seed=1).equals(generate_churn(500, seed=2))


def test_schema_label_rate_ids_and_missing_values(reference: pd.DataFrame) -> None:
    assert set(FEATURES) | {ID_COLUMN, TARGET, "snapshot_date"} == set(reference.columns)
    assert reference[ID_COLUMN].is_unique
    assert 0.15 < reference[TARGET].mean() < 0.35
    assert 0.005 < reference["total_charges"].isna().mean() < 0.02
    for col in NUMERIC:
        assert pd.api.types.is_numeric_dtype(reference[col]), col
    for col in CATEGORICAL:
        assert reference[col].nunique() <= 4, col


def test_boosted_trees_learn_the_label(reference: pd.DataFrame) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    train, test = split_train_holdout(reference, seed=3)
    pre = ColumnTransformer(
        [("c", OneHotEncoder(handle_unknown="ignore"), list(CATEGORICAL))], remainder="passthrough"
    )
    model = make_pipeline(pre, HistGradientBoostingClassifier(max_iter=100)).fit(
        train[list(FEATURES)], train[TARGET]
    )
    auc = roc_auc_score(test[TARGET], model.predict_proba(test[list(FEATURES)])[:, 1])
    assert auc >= 0.78


def _p_value(a: pd.Series, b: pd.Series) -> float:
    if a.name in CATEGORICAL:
        table = pd.crosstab(np.r_[np.zeros(len(a)), np.ones(len(b))], np.r_[a.values, b.values])
        return float(stats.chi2_contingency(table).pvalue)
    return float(stats.ks_2samp(a.dropna(), b.dropna(), method="asymp").pvalue)


def test_drifted_features_shift_strongly(reference: pd.DataFrame, drifted: pd.DataFrame) -> None:
    for col in DRIFTED_FEATURES:
        assert _p_value(reference[col].head(5000), drifted[col]) < 1e-6, col


@pytest.mark.parametrize("n", [300, 2000])
def test_other_features_keep_their_distribution(
    reference: pd.DataFrame, drifted: pd.DataFrame, n: int
) -> None:
    for col in set(FEATURES) - set(DRIFTED_FEATURES):
        p = _p_value(
            reference[col].sample(n, random_state=1), drifted[col].sample(n, random_state=2)
        )
        assert p > 0.001, (col, p)


def test_split_is_by_customer_and_validated(reference: pd.DataFrame) -> None:
    train, hold = split_train_holdout(reference, holdout_fraction=0.25, seed=0)
    assert not set(train[ID_COLUMN]) & set(hold[ID_COLUMN])
    assert len(hold) == pytest.approx(0.25 * len(reference), rel=0.01)
    with pytest.raises(ValueError):
        split_train_holdout(reference, holdout_fraction=1.5)
    with pytest.raises(ValueError):
        split_train_holdout(reference.drop(columns=[ID_COLUMN]))
