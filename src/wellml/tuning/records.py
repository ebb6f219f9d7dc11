"""What a tuning study leaves behind: the study and each of its trials."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from wellml.errors import NotFound


@dataclass(frozen=True)
class TrialRecord:
    """One trial: its parameters, how it ended (complete, pruned or failed), its value, the
    intermediate values it reported, and its run in tracking (a child of the study's run)."""

    number: int
    state: str
    params: dict[str, Any]
    value: float | None
    intermediate: list[tuple[int, float]]
    run_id: str | None
    error: str | None
    started_at: float
    ended_at: float

    @property
    def duration(self) -> float:
        """Seconds the trial took."""
        return self.ended_at - self.started_at

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return {
            "number": self.number,
            "state": self.state,
            "params": self.params,
            "value": self.value,
            "intermediate": [list(p) for p in self.intermediate],
            "run_id": self.run_id,
            "error": self.error,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration": self.duration,
        }


def trial_from_row(row: dict[str, Any]) -> TrialRecord:
    """A trial record from its stored row."""
    return TrialRecord(
        number=row["number"],
        state=row["state"],
        params=dict(row["params"] or {}),
        value=row["value"],
        intermediate=[(int(s), float(v)) for s, v in (row["intermediate"] or [])],
        run_id=row["run_id"],
        error=row["error"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
    )


@dataclass(frozen=True)
class TuningResult:
    """A tuning study: its settings, status, best trial and every trial.

    ``best_estimator`` is the estimator refitted on all the data with the best parameters, when
    :meth:`Tuning.tune` tuned an estimator with ``refit=True`` (not stored; ``None`` when read
    back later — the model is the study run's ``model.skops`` artifact).
    """

    id: str
    name: str
    metric: str
    direction: str
    search_space: dict[str, str]
    settings: dict[str, Any]
    status: str
    parent_run_id: str | None
    best_trial: int | None
    best_value: float | None
    best_params: dict[str, Any] | None
    error: str | None
    created_at: float
    created_by: str
    ended_at: float | None
    trials: tuple[TrialRecord, ...]
    best_estimator: Any = field(default=None, compare=False, repr=False)

    def trial(self, number: int) -> TrialRecord:
        """The trial numbered ``number``.

        Raises:
            NotFound: no such trial.
        """
        for t in self.trials:
            if t.number == number:
                return t
        raise NotFound(f"study {self.id} has no trial {number}")

    @property
    def best_run_id(self) -> str | None:
        """The run of the best trial."""
        return None if self.best_trial is None else self.trial(self.best_trial).run_id

    def counts(self) -> dict[str, int]:
        """How many trials ended in each state."""
        return dict(Counter(t.state for t in self.trials))

    @property
    def duration(self) -> float | None:
        """Seconds from start to end (None while running)."""
        return None if self.ended_at is None else self.ended_at - self.created_at

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return {
            "id": self.id,
            "name": self.name,
            "metric": self.metric,
            "direction": self.direction,
            "search_space": self.search_space,
            "settings": self.settings,
            "status": self.status,
            "parent_run_id": self.parent_run_id,
            "best_trial": self.best_trial,
            "best_value": self.best_value,
            "best_params": self.best_params,
            "best_run_id": self.best_run_id,
            "error": self.error,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "ended_at": self.ended_at,
            "duration": self.duration,
            "counts": self.counts(),
            "trials": [t.to_dict() for t in self.trials],
        }


def study_from_rows(row: dict[str, Any], trial_rows: list[dict[str, Any]]) -> TuningResult:
    """A study record from its stored row and trial rows."""
    return TuningResult(
        id=row["id"],
        name=row["name"],
        metric=row["metric"],
        direction=row["direction"],
        search_space=dict(row["search_space"] or {}),
        settings=dict(row["settings"] or {}),
        status=row["status"],
        parent_run_id=row["parent_run_id"],
        best_trial=row["best_trial"],
        best_value=row["best_value"],
        best_params=row["best_params"],
        error=row["error"],
        created_at=row["created_at"],
        created_by=row["created_by"],
        ended_at=row["ended_at"],
        trials=tuple(trial_from_row(r) for r in trial_rows),
    )
