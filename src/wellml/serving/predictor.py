"""Turning validated rows into predictions, with two shortcuts that give the same answers:

* rows of an all-numeric signature are read straight into a float matrix, without pandas,
  whenever every value is a plain number (anything else takes the general path, which gives
  the precise error);
* a scikit-learn pipeline of scalers ending in a linear model is evaluated as the matrix
  arithmetic it is. The shortcut is kept only when it reproduces the model's own
  ``predict``/``predict_proba`` on probe rows at load time; otherwise the model is called.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np
import pandas as pd

from wellml.errors import SchemaMismatch
from wellml.registry.signature import Signature, validate_frame

log = logging.getLogger("wellml.serving")

NUMERIC = ("integer", "float")
_PLAIN_NUMBERS = frozenset((int, float))


class ModelFailure(Exception):
    """The model raised on rows that passed validation (an answer of 500, not 4xx)."""


@dataclass(frozen=True)
class Outputs:
    """A model's answer for a batch of rows."""

    prediction: list[Any]
    probabilities: list[list[float]] | None = None
    classes: list[Any] | None = None

    def body(self) -> dict[str, Any]:
        """The JSON body of an answer."""
        out: dict[str, Any] = {"predictions": self.prediction}
        if self.probabilities is not None:
            out["probabilities"] = self.probabilities
            out["classes"] = self.classes
        return out

    def per_row(self) -> dict[str, list[Any]]:
        """Per-row columns for data capture: the prediction and the top probability."""
        out: dict[str, list[Any]] = {"prediction": self.prediction}
        if self.probabilities is not None:
            out["probability"] = [max(p) for p in self.probabilities]
        return out


def _scalar(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _linear_pipeline(model: Any, width: int) -> Callable[[np.ndarray], tuple[Any, Any]] | None:
    """A numpy version of scalers + a linear model, or None when the model is not one."""
    try:
        from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import MinMaxScaler, StandardScaler
    except ImportError:  # pragma: no cover - scikit-learn is a dependency
        return None
    steps = [s for _, s in model.steps] if isinstance(model, Pipeline) else [model]
    if any(s in (None, "passthrough") for s in steps):
        return None
    *scalers, last = steps
    shifts: list[tuple[np.ndarray, np.ndarray]] = []  # x -> (x - a) * b
    for s in scalers:
        if type(s) is StandardScaler:
            mean = s.mean_ if s.mean_ is not None else np.zeros(width)
            scale = s.scale_ if s.scale_ is not None else np.ones(width)
            shifts.append((np.asarray(mean, float), 1.0 / np.asarray(scale, float)))
        elif type(s) is MinMaxScaler and not s.clip:
            shifts.append((-np.asarray(s.min_, float) / s.scale_, np.asarray(s.scale_, float)))
        else:
            return None
    if type(last) is LogisticRegression:
        coef = np.asarray(last.coef_, float)
        intercept = np.asarray(last.intercept_, float)
        classes = last.classes_
        if coef.shape[1] != width:
            return None
        binary = coef.shape[0] == 1

        def classify(X: np.ndarray) -> tuple[Any, Any]:
            for a, b in shifts:
                X = (X - a) * b
            z = X @ coef.T + intercept
            if binary:
                p1 = 1.0 / (1.0 + np.exp(-z[:, 0]))
                proba = np.column_stack((1.0 - p1, p1))
            else:
                z = z - z.max(axis=1, keepdims=True)
                e = np.exp(z)
                proba = e / e.sum(axis=1, keepdims=True)
            return classes[np.argmax(proba, axis=1)], proba

        return classify
    if type(last) in (LinearRegression, Ridge):
        coef = np.asarray(last.coef_, float)
        intercept = np.asarray(last.intercept_, float)
        if coef.ndim != 1 or coef.shape[0] != width:
            return None

        def regress(X: np.ndarray) -> tuple[Any, Any]:
            for a, b in shifts:
                X = (X - a) * b
            return X @ coef + intercept, None

        return regress
    return None


def _blameable_on_input(clean: pd.DataFrame, exc: Exception) -> bool:
    """Whether a model's ValueError/TypeError on validated rows comes from the rows' values."""
    if "unknown categor" in str(exc).lower():
        return True
    if clean.isna().to_numpy().any():
        return True
    numeric = clean.select_dtypes(include="number")
    return bool(len(numeric.columns)) and not np.isfinite(numeric.to_numpy(dtype=float)).all()


class Predictor:
    """Validates rows against a signature and calls the model, taking the shortcuts in the
    module docstring when they apply."""

    def __init__(self, model: Any, signature: Signature) -> None:
        self.model = model
        self.signature = signature
        self.columns = signature.columns
        self.numeric = bool(self.columns) and all(c.type in NUMERIC for c in signature.inputs)
        self._getter = itemgetter(*self.columns) if self.columns else None
        self._int_idx = np.array(
            [i for i, c in enumerate(signature.inputs) if c.type == "integer"], dtype=int
        )
        self._has_proba = hasattr(model, "predict_proba")
        self._classes = (
            [_scalar(c) for c in model.classes_]
            if getattr(model, "classes_", None) is not None
            else None
        )
        self._compiled: Callable[[np.ndarray], tuple[Any, Any]] | None = None
        if self.numeric:
            self._compiled = self._compile()

    @property
    def compiled(self) -> bool:
        """Whether the linear shortcut is in use."""
        return self._compiled is not None

    def _compile(self) -> Callable[[np.ndarray], tuple[Any, Any]] | None:
        try:
            fn = _linear_pipeline(self.model, len(self.columns))
        except Exception:
            log.debug("no linear shortcut for this model", exc_info=True)
            return None
        if fn is None:
            return None
        rng = np.random.default_rng(0)
        probe = rng.normal(0, 3, size=(64, len(self.columns)))
        if len(self._int_idx):
            probe[:, self._int_idx] = np.round(probe[:, self._int_idx])
        frame = self._frame(probe)
        try:
            pred, proba = fn(probe)
            same = np.array_equal(np.asarray(pred), np.asarray(self.model.predict(frame)))
            if proba is not None:
                same = same and np.allclose(proba, self.model.predict_proba(frame), atol=1e-9)
            elif self._has_proba:
                same = False
        except Exception:
            return None
        return fn if same else None

    def _frame(self, matrix: np.ndarray) -> pd.DataFrame:
        frame = pd.DataFrame(matrix, columns=self.columns)
        for i in self._int_idx:
            frame[self.columns[i]] = frame[self.columns[i]].astype("int64")
        return frame

    # -- reading rows ---------------------------------------------------------------------------

    def matrix_from_records(
        self, rows: list[Any], *, no_booleans: bool = False
    ) -> np.ndarray | None:
        """A float matrix from JSON records or positional rows when every value is a plain
        number; None when the general path must read them."""
        if not self.numeric or not rows:
            return None
        first = rows[0]
        try:
            if isinstance(first, dict):
                if not all(type(r) is dict for r in rows):
                    return None
                assert self._getter is not None
                values = list(map(self._getter, rows))
                if len(self.columns) == 1:
                    values = [(v,) for v in values]
            elif isinstance(first, list):
                width = len(self.columns)
                if not all(type(r) is list and len(r) == width for r in rows):
                    return None
                values = rows
            else:
                return None
        except KeyError:
            return None
        return self.matrix_from_values(values, no_booleans=no_booleans)

    def matrix_from_values(
        self, values: list[Any], *, no_booleans: bool = False
    ) -> np.ndarray | None:
        """A float matrix from rows of values in signature order, when every value is a plain
        int or float (not bool, not None) and integer columns hold whole numbers.

        Args:
            no_booleans: the caller knows no value is a boolean (the JSON text holds no
                ``true``/``false``), so numpy's own type inference is check enough.
        """
        width = len(self.columns)
        if not all(len(row) == width for row in values):
            return None
        try:
            if no_booleans:
                # Any string or null makes the inferred type something other than a number.
                matrix = np.array(values)
                if matrix.dtype.kind not in "fi":
                    return None
                matrix = matrix.astype(np.float64, copy=False)
            else:
                kinds = set(map(type, chain.from_iterable(values)))
                if not kinds <= _PLAIN_NUMBERS:
                    return None
                matrix = np.fromiter(
                    chain.from_iterable(values), dtype=np.float64, count=len(values) * width
                ).reshape(len(values), width)
        except (ValueError, OverflowError, TypeError):
            return None
        if matrix.ndim != 2 or matrix.shape[1] != len(self.columns):
            return None
        if len(self._int_idx):
            ints = matrix[:, self._int_idx]
            if not np.all(np.isfinite(ints)) or not np.array_equal(ints, np.round(ints)):
                return None
        return matrix

    # -- predicting -----------------------------------------------------------------------------

    def validate(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Rows checked and coerced to the signature.

        Raises:
            SchemaMismatch: the rows do not fit the signature.
        """
        return validate_frame(frame, self.signature)

    def predict_matrix(self, matrix: np.ndarray) -> Outputs:
        """Predict rows already read into a float matrix in signature order.

        Raises:
            SchemaMismatch: the model rejects the values (e.g. infinities).
            ModelFailure: the model raised anything else.
        """
        if self._compiled is not None:
            if not np.all(np.isfinite(matrix)):
                raise SchemaMismatch(
                    "the model cannot use these values: input contains NaN or infinity"
                )
            pred, proba = self._compiled(matrix)
            return self._outputs(pred, proba)
        return self.predict_frame(self._frame(matrix))

    def predict_frame(self, clean: pd.DataFrame) -> Outputs:
        """Predict validated rows.

        Raises:
            SchemaMismatch: the model rejects the values.
            ModelFailure: the model raised anything else.
        """
        try:
            pred = self.model.predict(clean)
            proba = self.model.predict_proba(clean) if self._has_proba else None
        except (ValueError, TypeError) as exc:
            # Rows that passed the signature can still hold values a model cannot take
            # (missing or infinite numbers, categories it never saw): the caller's to fix.
            # Anything else on valid rows is the model's own failure.
            if _blameable_on_input(clean, exc):
                raise SchemaMismatch(f"the model cannot use these values: {exc}") from None
            raise ModelFailure(f"the model failed: {type(exc).__name__}: {exc}") from exc
        except Exception as exc:
            raise ModelFailure(f"the model failed: {type(exc).__name__}: {exc}") from exc
        return self._outputs(pred, proba)

    def _outputs(self, pred: Any, proba: Any) -> Outputs:
        prediction = np.asarray(pred).tolist()
        if proba is None:
            return Outputs(prediction)
        classes = self._classes
        if classes is None:
            classes = list(range(np.asarray(proba).shape[1]))
        return Outputs(prediction, np.round(proba, 6).tolist(), classes)
