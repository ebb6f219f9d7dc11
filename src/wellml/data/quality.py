"""Data quality rules: not null, range, allowed values and uniqueness, each with a severity,
evaluated against an Arrow table into a report with one clear sentence per rule."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SEVERITIES = ("critical", "error", "warning")
_SAMPLES = 5


@dataclass(frozen=True)
class RuleResult:
    """The outcome of one rule."""

    rule: str
    columns: tuple[str, ...]
    passed: bool
    failing_rows: int
    total_rows: int
    severity: str
    message: str
    sample_failures: tuple[Any, ...] = ()

    @property
    def failing_fraction(self) -> float:
        """Share of rows that broke the rule."""
        return self.failing_rows / self.total_rows if self.total_rows else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "rule": self.rule,
            "columns": list(self.columns),
            "passed": self.passed,
            "failing_rows": self.failing_rows,
            "total_rows": self.total_rows,
            "failing_fraction": self.failing_fraction,
            "severity": self.severity,
            "message": self.message,
            "sample_failures": [_plain(v) for v in self.sample_failures],
        }


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    return str(v)


@dataclass(frozen=True)
class QualityReport:
    """Every rule's result; ``passed`` unless an error or critical rule failed."""

    results: tuple[RuleResult, ...]

    @property
    def passed(self) -> bool:
        """No rule of severity error or critical failed."""
        return all(r.passed or r.severity == "warning" for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {"passed": self.passed, "results": [r.to_dict() for r in self.results]}


@dataclass(frozen=True, kw_only=True)
class Rule:
    """Base of every rule: subclasses say which rows fail in :meth:`_failures`."""

    severity: str = "error"
    name = "rule"

    @property
    def columns(self) -> tuple[str, ...]:
        """Columns the rule reads."""
        raise NotImplementedError

    def check(self, table: pa.Table) -> RuleResult:
        """Evaluate the rule; a missing column fails the rule rather than raising."""
        missing = [c for c in self.columns if c not in table.column_names]
        n = table.num_rows
        if missing:
            return self._result(False, n, n, f"column {missing[0]!r} is missing")
        try:
            mask, failed, held = self._failures(table)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, TypeError) as exc:
            return self._result(False, n, n, f"cannot be checked: {exc}")
        bad = int(pc.sum(mask).as_py() or 0) if n else 0
        samples: tuple[Any, ...] = ()
        if bad and len(self.columns) == 1:
            vals = pc.filter(table.column(self.columns[0]), mask).slice(0, _SAMPLES)
            samples = tuple(vals.to_pylist())
        if not bad:
            return self._result(True, 0, n, f"{self._label()}: all {n:,} rows {held}")
        eg = "; e.g. " + ", ".join(str(s) for s in samples) if samples else ""
        return self._result(
            False,
            bad,
            n,
            f"{self._label()}: {bad:,} of {n:,} rows ({bad / n:.2%}) {failed}{eg}",
            samples,
        )

    def _label(self) -> str:
        return ", ".join(self.columns)

    def _result(
        self, passed: bool, bad: int, n: int, message: str, samples: tuple[Any, ...] = ()
    ) -> RuleResult:
        return RuleResult(self.name, self.columns, passed, bad, n, self.severity, message, samples)

    def _failures(self, table: pa.Table) -> tuple[Any, str, str]:
        """A boolean mask of failing rows, and phrases for failing and passing rows."""
        raise NotImplementedError

    def spec(self) -> dict[str, Any]:
        """The rule as a plain dict that :func:`parse_rules` reads back."""
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class NotNull(Rule):
    """Every row has a value."""

    column: str
    name = "not_null"

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def _failures(self, table: pa.Table) -> tuple[Any, str, str]:
        # NaN counts as missing, as it does in pandas.
        return (
            pc.is_null(table.column(self.column), nan_is_null=True),
            "are missing",
            "have a value",
        )

    def check(self, table: pa.Table) -> RuleResult:
        res = super().check(table)
        # The sample values of missing rows are all None: they say nothing.
        return RuleResult(
            res.rule,
            res.columns,
            res.passed,
            res.failing_rows,
            res.total_rows,
            res.severity,
            res.message.split("; e.g.")[0],
        )

    def spec(self) -> dict[str, Any]:
        return {"rule": self.name, "column": self.column, "severity": self.severity}


@dataclass(frozen=True, kw_only=True)
class Range(Rule):
    """Values lie within ``[min, max]`` (either bound optional); missing values pass."""

    column: str
    min: float | None = None
    max: float | None = None
    inclusive: bool = True
    name = "range"

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def _failures(self, table: pa.Table) -> tuple[Any, str, str]:
        col = table.column(self.column)
        if not (
            pa.types.is_integer(col.type)
            or pa.types.is_floating(col.type)
            or pa.types.is_decimal(col.type)
        ):
            raise TypeError(f"{self.column} is {col.type}, not numeric")
        lo_op, hi_op = (
            (pc.less, pc.greater) if self.inclusive else (pc.less_equal, pc.greater_equal)
        )
        bad = pa.chunked_array([pa.array(np.zeros(len(col), dtype=bool))])
        if self.min is not None:
            bad = pc.or_(bad, pc.fill_null(lo_op(col, self.min), False))
        if self.max is not None:
            bad = pc.or_(bad, pc.fill_null(hi_op(col, self.max), False))
        lo = "-inf" if self.min is None else f"{self.min:g}"
        hi = "inf" if self.max is None else f"{self.max:g}"
        # An open end is never included: "[0, inf)".
        left = "[" if self.inclusive and self.min is not None else "("
        right = "]" if self.inclusive and self.max is not None else ")"
        span = f"{left}{lo}, {hi}{right}"
        return bad, f"are outside {span}", f"are within {span}"

    def spec(self) -> dict[str, Any]:
        return {
            "rule": self.name,
            "column": self.column,
            "min": self.min,
            "max": self.max,
            "inclusive": self.inclusive,
            "severity": self.severity,
        }


@dataclass(frozen=True, kw_only=True)
class AllowedValues(Rule):
    """Values are among ``values``; missing values pass."""

    column: str
    values: tuple[Any, ...]
    name = "allowed_values"

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def _failures(self, table: pa.Table) -> tuple[Any, str, str]:
        col = table.column(self.column)
        allowed = pa.array(list(self.values)).cast(col.type)
        # Missing values are NotNull's business, not this rule's.
        bad = pc.and_(pc.invert(pc.is_in(col, value_set=allowed)), pc.is_valid(col))
        shown = ", ".join(str(v) for v in self.values[:8])
        domain = f"{{{shown}{', ...' if len(self.values) > 8 else ''}}}"
        return bad, f"are not in {domain}", f"are in {domain}"

    def spec(self) -> dict[str, Any]:
        return {
            "rule": self.name,
            "column": self.column,
            "values": list(self.values),
            "severity": self.severity,
        }


@dataclass(frozen=True, kw_only=True)
class Unique(Rule):
    """No two rows share a value (or a combination of values) in these columns."""

    key: tuple[str, ...]
    name = "unique"

    @property
    def columns(self) -> tuple[str, ...]:
        return self.key

    def _failures(self, table: pa.Table) -> tuple[Any, str, str]:
        frame = table.select(list(self.key)).to_pandas()
        dup = frame.duplicated(keep=False).to_numpy()
        return pa.chunked_array([pa.array(dup)]), "share their value with another row", "are unique"

    def spec(self) -> dict[str, Any]:
        return {"rule": self.name, "columns": list(self.key), "severity": self.severity}


@dataclass(frozen=True)
class _Parser:
    cls: type[Rule]
    required: tuple[str, ...]
    optional: tuple[str, ...] = field(default=())


_RULES = {
    "not_null": _Parser(NotNull, ("column",)),
    "range": _Parser(Range, ("column",), ("min", "max", "inclusive")),
    "allowed_values": _Parser(AllowedValues, ("column", "values")),
    "unique": _Parser(Unique, ("columns",)),
}


def parse_rules(spec: Sequence[dict[str, Any]]) -> list[Rule]:
    """Rules from plain dicts such as ``{"rule": "range", "column": "age", "min": 0}``.

    Raises:
        ValueError: naming the rule's position and what is wrong with it.
    """
    rules: list[Rule] = []
    for i, raw in enumerate(spec):
        where = f"rule {i + 1}"
        if not isinstance(raw, dict):
            raise ValueError(f"{where}: expected a mapping, got {raw!r}")
        kind = raw.get("rule")
        if kind not in _RULES:
            raise ValueError(f"{where}: unknown rule {kind!r}; use one of {', '.join(_RULES)}")
        parser = _RULES[kind]
        missing = [k for k in parser.required if k not in raw]
        if missing:
            raise ValueError(f"{where} ({kind}): missing {', '.join(missing)}")
        extra = set(raw) - {"rule", "severity", *parser.required, *parser.optional}
        if extra:
            raise ValueError(f"{where} ({kind}): unknown field(s) {', '.join(sorted(extra))}")
        severity = raw.get("severity", "error")
        if severity not in SEVERITIES:
            raise ValueError(f"{where}: severity must be one of {', '.join(SEVERITIES)}")
        args = {k: raw[k] for k in (*parser.required, *parser.optional) if k in raw}
        if kind == "unique":
            cols = args.pop("columns")
            args["key"] = (cols,) if isinstance(cols, str) else tuple(cols)
            if not args["key"]:
                raise ValueError(f"{where} (unique): columns is empty")
        if kind == "allowed_values":
            if not isinstance(args["values"], list) or not args["values"]:
                raise ValueError(f"{where} (allowed_values): values must be a non-empty list")
            args["values"] = tuple(args["values"])
        if kind == "range":
            if args.get("min") is None and args.get("max") is None:
                raise ValueError(f"{where} (range): give min, max or both")
            for bound in ("min", "max"):
                if args.get(bound) is not None and not isinstance(args[bound], (int, float)):
                    raise ValueError(f"{where} (range): {bound} must be a number")
        rules.append(parser.cls(severity=severity, **args))
    return rules


def evaluate(table: pa.Table, rules: Sequence[Rule]) -> QualityReport:
    """Evaluate every rule against the table."""
    return QualityReport(tuple(rule.check(table) for rule in rules))
