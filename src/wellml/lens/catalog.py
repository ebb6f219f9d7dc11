"""The lens's 105 best practices as package data: id, title, lifecycle phase, pillar, how
wellml finds evidence for it, and, for the practices only people can answer, the question."""

from __future__ import annotations

import functools
import json
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
PILLARS: tuple[str, ...] = (
    "operational-excellence",
    "security",
    "reliability",
    "performance-efficiency",
    "cost-optimization",
    "sustainability",
)
PILLAR_PREFIX: dict[str, str] = {
    "operational-excellence": "MLOE",
    "security": "MLSEC",
    "reliability": "MLREL",
    "performance-efficiency": "MLPER",
    "cost-optimization": "MLCOST",
    "sustainability": "MLSUS",
}
MODES = ("auto", "proxy", "decl", "manual")
RISKS = ("high", "medium")
PRACTICE_COUNT = 105


@dataclass(frozen=True)
class Choice:
    """One answer to a manual practice's question; ``passes`` says whether it meets it."""

    key: str
    text: str
    passes: bool


@dataclass(frozen=True)
class Practice:
    """One best practice of the lens."""

    id: str
    title: str
    phase: str
    pillar: str
    mode: str
    risk: str
    capabilities: tuple[str, ...]
    optional_capabilities: tuple[str, ...]
    check: str
    question: str | None = None
    choices: tuple[Choice, ...] = ()


def _practice(raw: dict[str, Any]) -> Practice:
    return Practice(
        id=raw["id"],
        title=raw["title"],
        phase=raw["phase"],
        pillar=raw["pillar"],
        mode=raw["mode"],
        risk=raw["risk"],
        capabilities=tuple(raw["capabilities"]),
        optional_capabilities=tuple(raw.get("optional_capabilities", ())),
        check=raw["check"],
        question=raw.get("question"),
        choices=tuple(
            Choice(c["key"], c["text"], bool(c["passes"])) for c in raw.get("choices", ())
        ),
    )


def validate(practices: list[Practice]) -> None:
    """Check the catalog's shape.

    Raises:
        ValueError: a wrong count, a duplicate id, or a value outside the allowed sets.
    """
    if len(practices) != PRACTICE_COUNT:
        raise ValueError(f"the lens has {PRACTICE_COUNT} practices, the data {len(practices)}")
    ids = [p.id for p in practices]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ValueError(f"duplicate practice ids: {', '.join(dupes)}")
    for p in practices:
        problems = []
        if p.phase not in PHASES:
            problems.append(f"phase {p.phase!r}")
        if p.pillar not in PILLARS:
            problems.append(f"pillar {p.pillar!r}")
        elif not p.id.startswith(PILLAR_PREFIX[p.pillar] + "-"):
            problems.append(f"id prefix for pillar {p.pillar}")
        if p.mode not in MODES:
            problems.append(f"mode {p.mode!r}")
        if p.risk not in RISKS:
            problems.append(f"risk {p.risk!r}")
        if p.mode == "manual" and (not p.question or not p.choices):
            problems.append("a manual practice without a question and choices")
        if problems:
            raise ValueError(f"{p.id}: bad " + "; ".join(problems))


@functools.cache
def load_practices() -> tuple[Practice, ...]:
    """Every practice, in pillar then number order.

    Raises:
        ValueError: the shipped data is malformed.
    """
    text = resources.files("wellml.lens").joinpath("practices.json").read_text("utf-8")
    practices = [_practice(p) for p in json.loads(text)["practices"]]
    validate(practices)
    return tuple(practices)


def get_practice(practice_id: str) -> Practice:
    """A practice by id, e.g. ``MLOE-07``.

    Raises:
        KeyError: no practice has this id.
    """
    for p in load_practices():
        if p.id == practice_id:
            return p
    raise KeyError(f"no lens practice {practice_id!r}")
