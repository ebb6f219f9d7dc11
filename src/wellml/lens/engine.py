"""The lens review: every practice of the lens evaluated against the workspace's records.

Each practice ends as ``pass``, ``fail``, ``manual`` (a question for the team) or
``not-evaluated`` (no automated check yet, or nothing in scope to judge). A missing record is
never read as compliance: a check that finds nothing in scope says so and does not pass.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from wellml.config import current_user
from wellml.errors import InvalidInput, NotFound
from wellml.lens.catalog import PILLARS, Practice, get_practice, load_practices
from wellml.lens.checks import CHECKS, CheckOutcome, Evidence
from wellml.store import lens as sql

if TYPE_CHECKING:
    from wellml.workspace import Workspace

STATUSES = ("pass", "fail", "manual", "not-evaluated")

_CAPABILITY_NAMES = {
    "spec": "project spec",
    "cat": "data catalog",
    "dq": "data quality",
    "fs": "feature store",
    "exp": "experiment tracking",
    "lin": "lineage",
    "pipe": "pipelines",
    "hpo": "tuning/AutoML",
    "reg": "model registry",
    "ep": "endpoints",
    "mon": "model monitor",
    "clr": "clarify",
    "hrq": "human review",
    "cost": "cost tracking",
    "nrg": "energy tracking",
    "sec": "security",
    "lens": "lens engine",
}


@dataclass(frozen=True)
class PracticeResult:
    """The verdict on one practice, with the records it looked at."""

    id: str
    title: str
    pillar: str
    phase: str
    risk: str
    mode: str
    status: str
    reason: str
    evidence: tuple[str, ...] = ()
    failing: tuple[str, ...] = ()
    question: str | None = None
    self_attested: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return {
            "id": self.id,
            "title": self.title,
            "pillar": self.pillar,
            "phase": self.phase,
            "risk": self.risk,
            "mode": self.mode,
            "status": self.status,
            "reason": self.reason,
            "evidence": list(self.evidence),
            "failing": list(self.failing),
            "question": self.question,
            "self_attested": self.self_attested,
        }


@dataclass(frozen=True)
class Review:
    """A whole review: one result per practice, and the roll-up."""

    id: str | None
    project: str
    created_at: float
    results: tuple[PracticeResult, ...]
    summary: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return {
            "id": self.id,
            "project": self.project,
            "created_at": self.created_at,
            "summary": self.summary,
            "results": [r.to_dict() for r in self.results],
        }

    def to_markdown(self) -> str:
        """A readable report: the roll-up, then improvement items by risk, then every result."""
        s = self.summary
        lines = [
            f"# Lens review of {self.project}",
            "",
            f"{s['total']} practices: "
            + ", ".join(f"{s['by_status'].get(k, 0)} {k}" for k in STATUSES),
            "",
            "| pillar | pass | fail | manual | not-evaluated | high-risk fails |",
            "|---|---|---|---|---|---|",
        ]
        for pillar in PILLARS:
            p = s["by_pillar"][pillar]
            lines.append(
                f"| {pillar} | {p.get('pass', 0)} | {p.get('fail', 0)} | "
                f"{p.get('manual', 0)} | {p.get('not-evaluated', 0)} | "
                f"{p.get('high_risk_fail', 0)} |"
            )
        fails = sorted(
            (r for r in self.results if r.status == "fail"), key=lambda r: (r.risk != "high", r.id)
        )
        if fails:
            lines += ["", "## Improvement items", ""]
            lines += [f"- **{r.id}** ({r.risk}) {r.title}: {r.reason}" for r in fails]
        lines += [
            "",
            "## All practices",
            "",
            "| id | status | risk | title | reason |",
            "|---|---|---|---|---|",
        ]
        for r in self.results:
            reason = r.reason.replace("|", "/").replace("\n", " ")
            lines.append(f"| {r.id} | {r.status} | {r.risk} | {r.title} | {reason} |")
        return "\n".join(lines) + "\n"


def _summary(results: list[PracticeResult]) -> dict[str, Any]:
    by_pillar: dict[str, Counter[str]] = {p: Counter() for p in PILLARS}
    by_phase: dict[str, Counter[str]] = {}
    for r in results:
        by_pillar[r.pillar][r.status] += 1
        if r.status == "fail" and r.risk == "high":
            by_pillar[r.pillar]["high_risk_fail"] += 1
        by_phase.setdefault(r.phase, Counter())[r.status] += 1
    return {
        "total": len(results),
        "by_status": dict(Counter(r.status for r in results)),
        "by_pillar": {k: dict(v) for k, v in by_pillar.items()},
        "by_phase": {k: dict(v) for k, v in by_phase.items()},
        "automated_checks": sorted(CHECKS),
    }


class LensReviewer:
    """Runs lens reviews of a workspace and keeps manual answers and review snapshots."""

    def __init__(self, ws: Workspace) -> None:
        self._ws = ws

    def review(self, *, save: bool = True) -> Review:
        """Evaluate every practice; store the review as a snapshot when ``save``."""
        import time

        evidence = Evidence(self._ws)
        with self._ws.metadata.read() as conn:
            answers = sql.answers(conn)
        results = [self._evaluate(p, evidence, answers) for p in load_practices()]
        summary = _summary(results)
        rid = None
        if save:
            with self._ws.metadata.write() as conn:
                rid = sql.add_review(conn, summary, [r.to_dict() for r in results], current_user())
        return Review(rid, self._ws.spec.name, time.time(), tuple(results), summary)

    def _evaluate(
        self, p: Practice, evidence: Evidence, answers: dict[str, dict[str, Any]]
    ) -> PracticeResult:
        def result(**fields: Any) -> PracticeResult:
            return PracticeResult(
                id=p.id,
                title=p.title,
                pillar=p.pillar,
                phase=p.phase,
                risk=p.risk,
                mode=p.mode,
                **fields,
            )

        if p.mode == "manual":
            ans = answers.get(p.id)
            if ans is None:
                return result(
                    status="manual",
                    question=p.question,
                    reason=f"needs an answer: wellml lens answer {p.id} CHOICE",
                )
            choice = next((c for c in p.choices if c.key == ans["choice"]), None)
            passed = bool(choice and choice.passes)
            return result(
                status="pass" if passed else "fail",
                question=p.question,
                self_attested=True,
                reason=f"answered ({ans['choice']}) by {ans['answered_by']}: "
                + (choice.text if choice else "unknown choice")
                + (f" — {ans['note']}" if ans["note"] else ""),
            )
        check = CHECKS.get(p.id)
        if check is None:
            needs = ", ".join(_CAPABILITY_NAMES.get(c, c) for c in p.capabilities)
            return result(
                status="not-evaluated", reason=f"no automated check yet; it needs: {needs}"
            )
        try:
            outcome: CheckOutcome = check(evidence)
        except Exception as exc:
            return result(
                status="not-evaluated",
                reason=f"the check failed to run: {type(exc).__name__}: {exc}",
            )
        return result(
            status=outcome.status,
            reason=outcome.reason,
            evidence=tuple(outcome.evidence),
            failing=tuple(outcome.failing),
        )

    def answer(self, practice_id: str, choice: str, *, note: str = "") -> None:
        """Record the team's answer to a manual practice.

        Raises:
            NotFound: no such practice.
            InvalidInput: the practice is not manual, or the choice is not one of its choices.
        """
        try:
            p = get_practice(practice_id.upper())
        except KeyError:
            raise NotFound(f"no lens practice {practice_id!r}") from None
        if p.mode != "manual":
            raise InvalidInput(f"{p.id} is checked automatically; it takes no answer")
        keys = [c.key for c in p.choices]
        if choice not in keys:
            raise InvalidInput(f"{p.id}: choose one of {', '.join(keys)}")
        with self._ws.metadata.write() as conn:
            sql.put_answer(conn, p.id, choice, note, current_user())

    def reviews(self, limit: int = 20) -> list[dict[str, Any]]:
        """Stored review snapshots, newest first."""
        with self._ws.metadata.read() as conn:
            return sql.reviews(conn, limit)


def render(review: Review, fmt: str) -> str:
    """The review as ``md`` or ``json`` text.

    Raises:
        InvalidInput: an unknown format.
    """
    if fmt == "json":
        return json.dumps(review.to_dict(), indent=2, default=str)
    if fmt in ("md", "markdown"):
        return review.to_markdown()
    raise InvalidInput(f"unknown format {fmt!r}; use md or json")
