"""A seeded, realistic customer-churn table, and a later period whose distribution drifts.

One row per customer snapshot. The label comes from a logistic model of the features (with
interactions and noise), so tree ensembles can beat a linear model, as on real churn data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

ID_COLUMN = "customer_id"
TIME_COLUMN = "snapshot_date"
TARGET = "churned"
NUMERIC: tuple[str, ...] = (
    "tenure_months",
    "monthly_charges",
    "total_charges",
    "support_calls_90d",
    "days_since_last_login",
    "data_usage_gb",
    "num_products",
    "senior",
)
CATEGORICAL: tuple[str, ...] = ("contract", "payment_method", "region", "plan", "gender")
FEATURES: tuple[str, ...] = NUMERIC + CATEGORICAL
DRIFTED_FEATURES: tuple[str, ...] = (
    "monthly_charges",
    "support_calls_90d",
    "contract",
    "days_since_last_login",
)

CONTRACTS = ("month-to-month", "one-year", "two-year")
PAYMENTS = ("card", "bank-transfer", "e-check", "mailed-check")
REGIONS = ("north", "south", "east", "west")
PLANS = ("basic", "standard", "premium")


@dataclass(frozen=True)
class _Shift:
    """How a later period differs from the reference one (no shift by default)."""

    charge_factor: float = 1.0
    calls_factor: float = 1.0
    login_extra_days: float = 0.0
    contract_mix: tuple[float, float, float] = (0.5, 0.3, 0.2)


def _generate(n: int, seed: int, start: str, periods: int, shift: _Shift) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    contract = rng.choice(CONTRACTS, n, p=shift.contract_mix)
    plan = rng.choice(PLANS, n, p=(0.45, 0.35, 0.20))
    tenure = np.clip(rng.gamma(2.0, 14.0, n), 1, 120).round().astype(int)
    base_charge = {"basic": 30.0, "standard": 60.0, "premium": 95.0}
    list_price = np.clip(np.array([base_charge[p] for p in plan]) + rng.normal(0, 8, n), 10, None)
    monthly = (list_price * shift.charge_factor).round(2)
    # Charges so far were billed at the old price: a price rise moves this month's bill only.
    total = (list_price * tenure * rng.normal(1.0, 0.05, n)).round(2)
    total = np.where(rng.random(n) < 0.01, np.nan, total)
    calls = rng.poisson(1.2 * shift.calls_factor, n)
    login = np.clip(rng.exponential(9.0, n) + shift.login_extra_days, 0, 365).round().astype(int)
    usage = np.clip(rng.lognormal(2.3, 0.6, n), 0.1, None).round(2)
    products = np.clip(rng.poisson(1.4, n) + 1, 1, 5)
    senior = (rng.random(n) < 0.18).astype(int)
    payment = rng.choice(PAYMENTS, n, p=(0.35, 0.25, 0.3, 0.1))
    region = rng.choice(REGIONS, n)
    gender = rng.choice(("female", "male"), n)

    # Thresholds and interactions, as churn drivers behave: the first months are risky,
    # a few support calls are normal but many are not, a lapsed login is a warning sign.
    logit = (
        -2.2
        + 1.0 * (contract == "month-to-month")
        - 0.8 * (contract == "two-year")
        + 1.6 * (tenure < 6)
        + 0.6 * (tenure < 12)
        + 0.012 * (monthly - 60)
        + 1.4 * (calls >= 3)
        + 1.6 * (login > 20)
        - 0.3 * (products - 1)
        + 0.4 * (payment == "e-check")
        + 0.25 * senior
        + 1.5 * ((contract == "month-to-month") & (calls >= 3))
        + 1.3 * ((tenure < 12) & (monthly > 80))
        - 1.2 * ((usage > 15) & (plan == "premium"))
        - 1.0 * ((contract == "two-year") & (login <= 20))
        + rng.normal(0, 0.3, n)
    )
    churned = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    dates = pd.date_range(start, periods=periods, freq="MS")
    return pd.DataFrame(
        {
            ID_COLUMN: [f"C{seed:02d}{i:07d}" for i in range(n)],
            TIME_COLUMN: dates[rng.integers(0, periods, n)],
            "tenure_months": tenure,
            "monthly_charges": monthly,
            "total_charges": total,
            "support_calls_90d": calls,
            "days_since_last_login": login,
            "data_usage_gb": usage,
            "num_products": products,
            "senior": senior,
            "contract": contract,
            "payment_method": payment,
            "region": region,
            "plan": plan,
            "gender": gender,
            TARGET: churned,
        }
    )


def generate_churn(
    n_customers: int = 20_000, *, seed: int = 7, start: str = "2026-01-01", periods: int = 6
) -> pd.DataFrame:
    """Monthly snapshots of ``n_customers`` subscribers with a ``churned`` label (about 25%)."""
    return _generate(n_customers, seed, start, periods, _Shift())


def generate_churn_drifted(
    n_customers: int = 5_000, *, seed: int = 11, start: str = "2026-09-01"
) -> pd.DataFrame:
    """A later quarter after a price rise: :data:`DRIFTED_FEATURES` have shifted (charges up
    25%, support calls doubled, more month-to-month contracts, fewer logins); every other
    feature keeps its distribution, and the label follows the same model."""
    shift = _Shift(
        charge_factor=1.25, calls_factor=2.0, login_extra_days=6.0, contract_mix=(0.75, 0.15, 0.1)
    )
    return _generate(n_customers, seed, start, 3, shift)


def split_train_holdout(
    df: pd.DataFrame, *, holdout_fraction: float = 0.2, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split by customer, so no customer is on both sides.

    Raises:
        ValueError: the fraction is not between 0 and 1, or there is no id column.
    """
    if not 0 < holdout_fraction < 1:
        raise ValueError("holdout_fraction must be between 0 and 1")
    if ID_COLUMN not in df.columns:
        raise ValueError(f"the data has no {ID_COLUMN} column")
    ids = np.sort(df[ID_COLUMN].unique())
    rng = np.random.default_rng(seed)
    held = set(rng.choice(ids, round(len(ids) * holdout_fraction), replace=False))
    mask = df[ID_COLUMN].isin(held)
    return df[~mask].reset_index(drop=True), df[mask].reset_index(drop=True)
