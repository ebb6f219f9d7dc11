"""Data poisoning guard: is a new training dataset version a plausible successor of the last?

:class:`PoisoningCheck` compares a new version with the previous one on three signals that
tampered training data tends to show and honest refreshes rarely do:

``label_flip_rate``
    Of the keys (e.g. customer ids) present in both versions with a label in both, the share
    whose label changed. Labels of existing records seldom change; flipped labels are the
    classic poisoning attack.
``outlier_excess``
    The share of new rows with a numeric feature far outside the previous distribution
    (more than ``outlier_z`` robust standard deviations, ``1.4826·MAD``, from the previous
    median), minus the same share among the previous rows themselves. Injected points sit
    where the old data never went.
``class_ratio_change``
    The largest change of one label's share between the versions (L∞).

A signal above its threshold blocks the version: :attr:`PoisoningReport.blocked` is True and
:meth:`PoisoningReport.raise_if_blocked` raises :class:`PoisonedDataError`. The thresholds
are deliberately loose by default (5 % flips, 2 % extra outliers, 10 points of class share):
they stop gross tampering without blocking every refresh; tune them per dataset.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from wellml.errors import InvalidInput

__all__ = ["DEFAULT_THRESHOLDS", "PoisonedDataError", "PoisoningCheck", "PoisoningReport"]

DEFAULT_THRESHOLDS: dict[str, float] = {
    "label_flip_rate": 0.05,
    "outlier_excess": 0.02,
    "class_ratio_change": 0.10,
    "outlier_z": 6.0,
}


class PoisonedDataError(InvalidInput):
    """A dataset version failed the poisoning guard."""


@dataclass(frozen=True)
class PoisoningReport:
    """The three signals, their thresholds, and the verdict.

    Attributes:
        new: The checked version's reference.
        previous: The version it was compared with.
        blocked: True when any signal is above its threshold.
        signals: Signal name → ``{"value", "threshold", "blocked", ...details}``.
        reasons: One sentence per blocking signal.
        id: The stored check's id (empty until stored).
    """

    new: str
    previous: str
    blocked: bool
    signals: dict[str, dict[str, Any]]
    reasons: list[str] = field(default_factory=list)
    id: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "id": self.id,
            "new": self.new,
            "previous": self.previous,
            "blocked": self.blocked,
            "signals": self.signals,
            "reasons": list(self.reasons),
        }

    def raise_if_blocked(self) -> None:
        """Raise when the version is blocked.

        Raises:
            PoisonedDataError: naming every blocking signal.
        """
        if self.blocked:
            raise PoisonedDataError(
                f"{self.new} is blocked by the poisoning guard against {self.previous}: "
                + "; ".join(self.reasons)
            )


def _label_key(value: Any) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


class PoisoningCheck:
    """Compares a new training dataset with the previous version (see the module docstring).

    Args:
        key: Column(s) identifying a record across versions.
        label: The label column.
        features: Numeric columns for the outlier signal; default every numeric column except
            the key(s) and the label.
        thresholds: Overrides of :data:`DEFAULT_THRESHOLDS`.

    Raises:
        InvalidInput: unknown threshold names or bad values.
    """

    def __init__(
        self,
        *,
        key: str | Sequence[str],
        label: str,
        features: Sequence[str] | None = None,
        thresholds: Mapping[str, float] | None = None,
    ) -> None:
        unknown = set(thresholds or {}) - set(DEFAULT_THRESHOLDS)
        if unknown:
            raise InvalidInput(
                f"unknown threshold(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(DEFAULT_THRESHOLDS)}"
            )
        for name, value in (thresholds or {}).items():
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise InvalidInput(f"threshold {name!r} must be a number >= 0, not {value!r}")
        self.key = [key] if isinstance(key, str) else list(key)
        self.label = label
        self.features = None if features is None else list(features)
        self.thresholds = {**DEFAULT_THRESHOLDS, **(thresholds or {})}

    def get_params(self) -> dict[str, Any]:
        """The parameters, by name."""
        return {
            "key": list(self.key),
            "label": self.label,
            "features": self.features,
            "thresholds": dict(self.thresholds),
        }

    def compute(
        self,
        new: pd.DataFrame,
        previous: pd.DataFrame,
        *,
        new_ref: str = "new",
        previous_ref: str = "previous",
    ) -> PoisoningReport:
        """Measure the three signals.

        Raises:
            InvalidInput: a frame lacks the key or label columns, or has no rows.
        """
        for side, frame in (("new", new), ("previous", previous)):
            lacking = [c for c in [*self.key, self.label] if c not in frame.columns]
            if lacking:
                raise InvalidInput(f"the {side} data lacks column(s) {', '.join(lacking)}")
            if len(frame) == 0:
                raise InvalidInput(f"the {side} data has no rows")
        signals = {
            "label_flip_rate": self._flips(new, previous),
            "outlier_excess": self._outliers(new, previous),
            "class_ratio_change": self._class_ratio(new, previous),
        }
        reasons = []
        for name, signal in signals.items():
            threshold = self.thresholds[name]
            signal["threshold"] = threshold
            signal["blocked"] = bool(signal["value"] > threshold)
            if signal["blocked"]:
                reasons.append(f"{name} {signal['value']:.4f} is above {threshold}")
        return PoisoningReport(new_ref, previous_ref, bool(reasons), signals, reasons)

    def _flips(self, new: pd.DataFrame, previous: pd.DataFrame) -> dict[str, Any]:
        cols = [*self.key, self.label]
        a = new[cols].dropna().drop_duplicates(subset=self.key, keep="last")
        b = previous[cols].dropna().drop_duplicates(subset=self.key, keep="last")
        joined = a.merge(b, on=self.key, suffixes=("_new", "_previous"))
        matched = len(joined)
        if matched == 0:
            return {"value": 0.0, "matched_keys": 0, "flipped": 0}
        flipped = int(
            (
                joined[f"{self.label}_new"].map(_label_key)
                != joined[f"{self.label}_previous"].map(_label_key)
            ).sum()
        )
        return {"value": flipped / matched, "matched_keys": matched, "flipped": flipped}

    def _numeric_features(self, new: pd.DataFrame, previous: pd.DataFrame) -> list[str]:
        if self.features is not None:
            lacking = [f for f in self.features if f not in new or f not in previous]
            if lacking:
                raise InvalidInput(f"outlier features missing from the data: {lacking}")
            return list(self.features)
        skip = {*self.key, self.label}
        return [
            c
            for c in previous.columns
            if c not in skip
            and c in new.columns
            and ptypes.is_numeric_dtype(previous[c].dtype)
            and not ptypes.is_bool_dtype(previous[c].dtype)
        ]

    def _outliers(self, new: pd.DataFrame, previous: pd.DataFrame) -> dict[str, Any]:
        z = self.thresholds["outlier_z"]
        features = self._numeric_features(new, previous)
        new_flags = np.zeros(len(new), dtype=bool)
        prev_flags = np.zeros(len(previous), dtype=bool)
        by_feature = {}
        for name in features:
            ref = pd.to_numeric(previous[name], errors="coerce").to_numpy(dtype=np.float64)
            cur = pd.to_numeric(new[name], errors="coerce").to_numpy(dtype=np.float64)
            ref_present = ref[np.isfinite(ref)]
            if len(ref_present) == 0:
                continue
            median = float(np.median(ref_present))
            scale = 1.4826 * float(np.median(np.abs(ref_present - median)))
            if scale == 0.0:
                scale = float(np.std(ref_present)) or 1.0
            with np.errstate(invalid="ignore"):
                cur_out = np.abs(cur - median) / scale > z
                ref_out = np.abs(ref - median) / scale > z
            new_flags |= cur_out
            prev_flags |= ref_out
            by_feature[name] = float(cur_out.mean())
        new_share = float(new_flags.mean())
        prev_share = float(prev_flags.mean())
        return {
            "value": max(0.0, new_share - prev_share),
            "new_share": new_share,
            "previous_share": prev_share,
            "features": by_feature,
        }

    def _class_ratio(self, new: pd.DataFrame, previous: pd.DataFrame) -> dict[str, Any]:
        a = new[self.label].dropna().map(_label_key).value_counts(normalize=True)
        b = previous[self.label].dropna().map(_label_key).value_counts(normalize=True)
        index = a.index.union(b.index)
        diff = (a.reindex(index, fill_value=0.0) - b.reindex(index, fill_value=0.0)).abs()
        return {
            "value": float(diff.max()) if len(diff) else 0.0,
            "new": {str(k): float(v) for k, v in a.items()},
            "previous": {str(k): float(v) for k, v in b.items()},
        }
