"""The ML Lens's 105 best practices, shipped as package data.

Each practice carries its lens identity (id, title, lifecycle phase, pillar) and wellml's design
for it: how the review engine gathers evidence (mode), the default risk of a failure, the wellml
capabilities the check reads, and, for practices only people can judge, the question and its
answer choices. The data lives in ``practices.json`` next to this module.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

PHASES: tuple[str, ...] = (
    "business-goal",
    "problem-framing",
    "data-processing",
    "model-development",
    "deployment",
    "monitoring",
)
"""Lifecycle phases of the lens, in lifecycle order."""

PILLARS: tuple[str, ...] = (
    "operational-excellence",
    "security",
    "reliability",
    "performance-efficiency",
    "cost-optimization",
    "sustainability",
)
"""Well-Architected pillars, in the order the lens lists them."""

PILLAR_PREFIX: dict[str, str] = {
    "operational-excellence": "MLOE",
    "security": "MLSEC",
    "reliability": "MLREL",
    "performance-efficiency": "MLPER",
    "cost-optimization": "MLCOST",
    "sustainability": "MLSUS",
}
"""Pillar -> the prefix of its practice ids."""

MODES: tuple[str, ...] = ("auto", "proxy", "decl", "manual")
"""How evidence is gathered: records, an observable correlate, a declaration, or people."""

RISKS: tuple[str, ...] = ("high", "medium")
"""Default risk recorded when a practice's check fails."""

CAPABILITIES: tuple[str, ...] = (
    "spec",
    "cat",
    "dq",
    "fs",
    "exp",
    "lin",
    "pipe",
    "hpo",
    "reg",
    "ep",
    "mon",
    "clr",
    "hrq",
    "cost",
    "nrg",
    "sec",
    "lens",
)
"""Codes of the wellml capabilities a check can depend on."""

PRACTICE_COUNT = 105
"""The lens defines exactly this many best practices."""

_RESOURCE = "practices.json"
_ID_RE = re.compile(r"^(ML[A-Z]+)-(\d{2})$")


@dataclass(frozen=True)
class Choice:
    """One answer to a manual practice's question.

    Attributes:
        key: Short key the team answers with, e.g. ``"c"``.
        text: What the answer states.
        passes: Whether choosing it satisfies the practice.
    """

    key: str
    text: str
    passes: bool


@dataclass(frozen=True)
class Practice:
    """One best practice of the lens and how wellml reviews it.

    Attributes:
        id: Lens id, e.g. ``"MLOE-07"``.
        title: Title exactly as the lens words it.
        phase: Lifecycle phase, one of :data:`PHASES`.
        pillar: Pillar, one of :data:`PILLARS`.
        mode: Evidence mode, one of :data:`MODES`.
        risk: Default risk of a failure, one of :data:`RISKS`.
        capabilities: Capability codes the check needs, primary first.
        optional_capabilities: Codes the check reads when present, to widen its scope.
        check: What the engine verifies, in a sentence or two.
        question: The question put to the team; only manual practices have one.
        choices: Possible answers to ``question``; empty for automated practices.
    """

    id: str
    title: str
    phase: str
    pillar: str
    mode: str
    risk: str
    capabilities: tuple[str, ...]
    optional_capabilities: tuple[str, ...]
    check: str
    question: str | None
    choices: tuple[Choice, ...]


def _field(raw: Mapping[str, Any], name: str, kind: type, where: str) -> Any:
    # Reporting the entry and field beats a bare KeyError/TypeError from deep in the parser.
    if name not in raw:
        raise ValueError(f"{where}: missing field {name!r}")
    value = raw[name]
    if not isinstance(value, kind):
        raise ValueError(f"{where}: field {name!r} must be {kind.__name__}, got {value!r}")
    return value


def _strings(raw: Mapping[str, Any], name: str, where: str) -> tuple[str, ...]:
    values = _field(raw, name, list, where)
    if not all(isinstance(v, str) for v in values):
        raise ValueError(f"{where}: field {name!r} must be a list of strings")
    return tuple(values)


def _choice(raw: object, where: str) -> Choice:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: each choice must be an object, got {raw!r}")
    return Choice(
        key=_field(raw, "key", str, where),
        text=_field(raw, "text", str, where),
        passes=_field(raw, "passes", bool, where),
    )


def _practice(raw: object, index: int) -> Practice:
    if not isinstance(raw, Mapping):
        raise ValueError(f"practice #{index}: must be an object, got {type(raw).__name__}")
    where = f"practice {raw.get('id', f'#{index}')}"
    question = raw.get("question")
    if question is not None and not isinstance(question, str):
        raise ValueError(f"{where}: field 'question' must be a string or absent")
    raw_choices = raw.get("choices", [])
    if not isinstance(raw_choices, list):
        raise ValueError(f"{where}: field 'choices' must be a list")
    return Practice(
        id=_field(raw, "id", str, where),
        title=_field(raw, "title", str, where),
        phase=_field(raw, "phase", str, where),
        pillar=_field(raw, "pillar", str, where),
        mode=_field(raw, "mode", str, where),
        risk=_field(raw, "risk", str, where),
        capabilities=_strings(raw, "capabilities", where),
        optional_capabilities=_strings(raw, "optional_capabilities", where),
        check=_field(raw, "check", str, where),
        question=question,
        choices=tuple(_choice(c, where) for c in raw_choices),
    )


def _problems(p: Practice) -> list[str]:
    problems = []
    if p.phase not in PHASES:
        problems.append(f"phase {p.phase!r} is not one of {', '.join(PHASES)}")
    if p.pillar not in PILLARS:
        problems.append(f"pillar {p.pillar!r} is not one of {', '.join(PILLARS)}")
    else:
        m = _ID_RE.match(p.id)
        if not m or m.group(1) != PILLAR_PREFIX[p.pillar]:
            problems.append(f"id does not read {PILLAR_PREFIX[p.pillar]}-NN for pillar {p.pillar}")
    if p.mode not in MODES:
        problems.append(f"mode {p.mode!r} is not one of {', '.join(MODES)}")
    if p.risk not in RISKS:
        problems.append(f"risk {p.risk!r} is not one of {', '.join(RISKS)}")
    if not p.title.strip() or not p.check.strip():
        problems.append("title and check must not be empty")
    if not p.capabilities:
        problems.append("no capabilities listed")
    unknown = sorted(set(p.capabilities + p.optional_capabilities) - set(CAPABILITIES))
    if unknown:
        problems.append(f"unknown capability codes {', '.join(unknown)}")
    if p.mode == "manual":
        # A manual practice the team cannot both pass and fail would make its answer meaningless.
        if not p.question:
            problems.append("manual practice without a question")
        if not any(c.passes for c in p.choices) or all(c.passes for c in p.choices):
            problems.append("manual practice needs at least one passing and one failing choice")
        keys = [c.key for c in p.choices]
        if len(set(keys)) != len(keys):
            problems.append("choice keys repeat")
    elif p.question is not None or p.choices:
        problems.append(f"{p.mode} practice must not carry a question or choices")
    return problems


def validate(practices: Sequence[Practice]) -> None:
    """Check that a catalog is complete, consistent and in pillar-then-number order.

    Args:
        practices: The practices to check.

    Raises:
        ValueError: A wrong count, a duplicate id, a value outside the allowed sets, a manual
            practice without a usable question, or entries out of order.
    """
    if len(practices) != PRACTICE_COUNT:
        raise ValueError(
            f"the lens has {PRACTICE_COUNT} practices but the catalog holds {len(practices)}"
        )
    ids = [p.id for p in practices]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"duplicate practice ids: {', '.join(duplicates)}")
    for p in practices:
        problems = _problems(p)
        if problems:
            raise ValueError(f"practice {p.id}: " + "; ".join(problems))
    # Reports list practices in catalog order, so the order is part of the contract.
    order = [(PILLARS.index(p.pillar), int(p.id.rsplit("-", 1)[1])) for p in practices]
    if order != sorted(order):
        raise ValueError("practices must be ordered by pillar, then by number")


def parse_practices(data: object) -> tuple[Practice, ...]:
    """Build and validate the catalog from the decoded JSON document.

    Args:
        data: The decoded document, ``{"lens": ..., "version": ..., "practices": [...]}``.

    Returns:
        The practices in pillar-then-number order.

    Raises:
        ValueError: The document is malformed or fails :func:`validate`.
    """
    if not isinstance(data, Mapping) or not isinstance(data.get("practices"), list):
        raise ValueError("the practice catalog must be an object with a 'practices' list")
    if data.get("lens") != "machine-learning":
        raise ValueError(f"expected the machine-learning lens, got {data.get('lens')!r}")
    practices = tuple(_practice(raw, i) for i, raw in enumerate(data["practices"]))
    validate(practices)
    return practices


@functools.cache
def load_practices() -> tuple[Practice, ...]:
    """Load the shipped catalog of lens practices.

    Returns:
        All 105 practices, ordered by pillar, then by number.

    Raises:
        ValueError: The shipped ``practices.json`` is not valid JSON or is malformed.
    """
    text = resources.files("wellml.lens").joinpath(_RESOURCE).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{_RESOURCE} is not valid JSON: {exc}") from exc
    return parse_practices(data)


@functools.cache
def _by_id() -> dict[str, Practice]:
    return {p.id: p for p in load_practices()}


def get_practice(practice_id: str) -> Practice:
    """Look up one practice by its lens id.

    Args:
        practice_id: A lens id such as ``"MLOE-07"``; the match is exact.

    Returns:
        The practice with that id.

    Raises:
        KeyError: No practice has this id.
    """
    try:
        return _by_id()[practice_id]
    except KeyError:
        raise KeyError(
            f"unknown lens practice id {practice_id!r}; lens ids look like MLOE-01 or MLCOST-29"
        ) from None
