"""Out-of-distribution inputs: numeric values outside the range seen in training, and
categorical values training never saw. Flagged rows are still answered; the flags travel in
the response and in the capture log so that monitors and people can find them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from wellml.registry.signature import Signature


@dataclass(frozen=True)
class InputRanges:
    """What training data looked like, per input column: ``numeric`` maps a column to its
    ``(min, max)``; ``categories`` maps a column to the values seen."""

    numeric: dict[str, tuple[float, float]] = field(default_factory=dict)
    categories: dict[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def from_signature(
        cls, signature: Signature, profile: dict[str, Any] | None = None
    ) -> InputRanges:
        """Categories from the signature; numeric ranges from a dataset profile's columns
        (``{"columns": [{"name", "min", "max"}, ...]}``) when one is given."""
        categories = {
            c.name: frozenset(c.categories) for c in signature.inputs if c.categories is not None
        }
        numeric: dict[str, tuple[float, float]] = {}
        kinds = {c.name: c.type for c in signature.inputs}
        for col in (profile or {}).get("columns", []):
            name = col.get("name")
            lo, hi = col.get("min"), col.get("max")
            if kinds.get(name) in ("integer", "float") and lo is not None and hi is not None:
                try:
                    numeric[name] = (float(lo), float(hi))
                except (TypeError, ValueError):
                    continue
        return cls(numeric, categories)

    @property
    def empty(self) -> bool:
        """Whether there is nothing to compare with."""
        return not self.numeric and not self.categories

    def check_matrix(
        self, matrix: np.ndarray, columns: list[str]
    ) -> list[tuple[int, list[str]]] | None:
        """Flags for rows held in a float matrix (columns in ``columns`` order): each flagged
        row's index with the columns out of range; None when no row is flagged."""
        idx = [i for i, c in enumerate(columns) if c in self.numeric]
        if not idx:
            return None
        lo = np.array([self.numeric[columns[i]][0] for i in idx])
        hi = np.array([self.numeric[columns[i]][1] for i in idx])
        sub = matrix[:, idx]
        out = (sub < lo) | (sub > hi)
        if not out.any():
            return None
        names = [columns[i] for i in idx]
        return [
            (int(i), [names[j] for j in np.flatnonzero(out[i])])
            for i in np.flatnonzero(out.any(axis=1))
        ]

    def check_frame(self, frame: pd.DataFrame) -> list[tuple[int, list[str]]] | None:
        """Flags for validated rows, as :meth:`check_matrix` gives them."""
        flags = np.zeros((len(frame), 0), dtype=bool)
        names: list[str] = []
        for name, (lo, hi) in self.numeric.items():
            if name in frame.columns:
                values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float)
                with np.errstate(invalid="ignore"):
                    col = (values < lo) | (values > hi)
                flags = np.column_stack((flags, col))
                names.append(name)
        for name, seen in self.categories.items():
            if name in frame.columns:
                col = frame[name]
                unseen = col.notna().to_numpy() & ~col.astype(str).isin(seen).to_numpy()
                flags = np.column_stack((flags, unseen))
                names.append(name)
        if not names or not flags.any():
            return None
        return [
            (int(i), [names[j] for j in np.flatnonzero(flags[i])])
            for i in np.flatnonzero(flags.any(axis=1))
        ]
