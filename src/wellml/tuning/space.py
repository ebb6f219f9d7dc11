"""Search spaces: what each hyperparameter may take, as Optuna distributions.

A search space maps parameter names to one of:

- an Optuna distribution (``FloatDistribution``, ``IntDistribution``,
  ``CategoricalDistribution``);
- a list of choices: ``["gini", "entropy"]``;
- a range tuple: ``(1, 10)`` (integers when both ends are ints), ``(1e-3, 10.0, "log")``;
- a mapping: ``{"low": 1, "high": 100, "log": True}``, ``{"low": 0, "high": 1, "step": 0.1}``,
  ``{"choices": [...]}``; ``"type": "int"`` or ``"float"`` fixes the kind.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from wellml.errors import InvalidInput


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _range(name: str, low: Any, high: Any, *, log: bool, step: Any, kind: str | None) -> Any:
    from optuna.distributions import FloatDistribution, IntDistribution

    if not _number(low) or not _number(high) or low > high:
        raise InvalidInput(f"search space {name!r}: low and high must be numbers, low <= high")
    if log and low <= 0:
        raise InvalidInput(f"search space {name!r}: a log range must start above 0")
    if step is not None and (not _number(step) or step <= 0):
        raise InvalidInput(f"search space {name!r}: step must be a number > 0")
    if log and step is not None:
        raise InvalidInput(f"search space {name!r}: a range is either log or stepped, not both")
    as_int = kind == "int" or (
        kind is None and isinstance(low, int) and isinstance(high, int)
        and (step is None or isinstance(step, int))
    )  # fmt: skip
    if kind not in (None, "int", "float"):
        raise InvalidInput(f"search space {name!r}: type must be 'int' or 'float', not {kind!r}")
    if as_int:
        if int(low) != low or int(high) != high:
            raise InvalidInput(f"search space {name!r}: an int range needs whole-number ends")
        return IntDistribution(int(low), int(high), log=log, step=int(step or 1))
    return FloatDistribution(float(low), float(high), log=log, step=step)


def _choices(name: str, choices: Any) -> Any:
    from optuna.distributions import CategoricalDistribution

    if not isinstance(choices, (list, tuple)) or not choices:
        raise InvalidInput(f"search space {name!r}: choices must be a non-empty list")
    for c in choices:
        if c is not None and not isinstance(c, (bool, int, float, str)):
            raise InvalidInput(
                f"search space {name!r}: choices must be None, bool, int, float or str, "
                f"not {type(c).__name__}"
            )
    return CategoricalDistribution(list(choices))


def parse_space(space: Mapping[str, Any]) -> dict[str, Any]:
    """The Optuna distribution of each parameter.

    Raises:
        InvalidInput: an empty space or a parameter whose range cannot be read, naming it.
    """
    from optuna.distributions import BaseDistribution

    if not isinstance(space, Mapping) or not space:
        raise InvalidInput("the search space must be a non-empty mapping of parameter names")
    out: dict[str, Any] = {}
    for name, spec in space.items():
        if not isinstance(name, str) or not name:
            raise InvalidInput(f"search space parameter names must be strings, not {name!r}")
        if isinstance(spec, BaseDistribution):
            out[name] = spec
        elif isinstance(spec, list):
            out[name] = _choices(name, spec)
        elif isinstance(spec, tuple):
            if len(spec) == 3 and spec[2] == "log":
                out[name] = _range(name, spec[0], spec[1], log=True, step=None, kind=None)
            elif len(spec) == 2:
                out[name] = _range(name, spec[0], spec[1], log=False, step=None, kind=None)
            else:
                raise InvalidInput(
                    f"search space {name!r}: write a range as (low, high) or (low, high, 'log')"
                )
        elif isinstance(spec, Mapping):
            unknown = set(spec) - {"low", "high", "log", "step", "type", "choices"}
            if unknown:
                raise InvalidInput(
                    f"search space {name!r}: unknown key(s) {', '.join(sorted(unknown))}"
                )
            if "choices" in spec:
                out[name] = _choices(name, spec["choices"])
            else:
                out[name] = _range(
                    name,
                    spec.get("low"),
                    spec.get("high"),
                    log=bool(spec.get("log", False)),
                    step=spec.get("step"),
                    kind=spec.get("type"),
                )
        else:
            raise InvalidInput(
                f"search space {name!r}: expected a list of choices, a (low, high) range, a "
                f"mapping or an Optuna distribution, not {type(spec).__name__}"
            )
    return out


def space_to_json(space: Mapping[str, Any]) -> dict[str, str]:
    """Each distribution as Optuna's JSON text (what a study's record keeps)."""
    from optuna.distributions import distribution_to_json

    return {k: distribution_to_json(v) for k, v in space.items()}


def space_from_json(data: Mapping[str, str]) -> dict[str, Any]:
    """The distributions back from :func:`space_to_json`."""
    from optuna.distributions import json_to_distribution

    return {k: json_to_distribution(v) for k, v in data.items()}


def contains(distribution: Any, value: Any) -> bool:
    """Whether ``value`` is one the distribution can take."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(distribution, CategoricalDistribution):
        return any(value == c and type(value) is type(c) for c in distribution.choices)
    if not _number(value):
        return False
    if isinstance(distribution, IntDistribution) and int(value) != value:
        return False
    return bool(distribution.low <= value <= distribution.high)


def describe(space: Mapping[str, Any]) -> dict[str, str]:
    """A short text per parameter, for run params and model cards."""
    from optuna.distributions import CategoricalDistribution

    out = {}
    for name, d in space.items():
        if isinstance(d, CategoricalDistribution):
            out[name] = "one of " + ", ".join(repr(c) for c in d.choices)
        else:
            scale = " (log)" if getattr(d, "log", False) else ""
            out[name] = f"{d.low:g} to {d.high:g}{scale}"
    return out
