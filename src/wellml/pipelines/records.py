"""What a pipeline run leaves behind: the run and the record of each of its steps."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from wellml.errors import NotFound
from wellml.pipelines.values import StoredValue

RUN_STATUSES = ("running", "completed", "blocked", "failed", "interrupted")
STEP_STATUSES = ("completed", "cached", "skipped", "failed", "blocked")
# Steps of the graph without a record: not decided yet, or never reached.
UNRECORDED = ("pending", "not-run")
OUTPUT = "output"


def step_ref(run_id: str, step: str) -> str:
    """The lineage ref of a step's execution in a run."""
    return f"pipeline-step:{run_id}/{step}"


def output_ref(run_id: str, step: str) -> str:
    """The lineage ref of the output a step computed in a run."""
    return f"pipeline-output:{run_id}/{step}"


@dataclass(frozen=True)
class StepRun:
    """One step of a run: how it ended, when, after how many attempts, and its output.

    ``status`` is completed, cached (outputs reused from an earlier run with the same cache
    key), skipped (a condition did not hold), failed, blocked (a gate failed or an upstream
    step failed), or — for steps without a record — pending or not-run.
    """

    run_id: str
    name: str
    function: str
    status: str
    attempts: int = 0
    started_at: float | None = None
    ended_at: float | None = None
    cache_key: str | None = None
    cached_from: str | None = None
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    reason: str = ""
    error: str | None = None
    lineage_execution_id: str | None = None
    id: str = ""

    @property
    def duration(self) -> float | None:
        """Seconds from the first attempt's start to the end (None if it never ran)."""
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at

    @property
    def output(self) -> StoredValue | None:
        """The stored output (None unless completed or cached)."""
        data = self.outputs.get(OUTPUT)
        return StoredValue.from_dict(data) if data else None

    @property
    def digest(self) -> str | None:
        """The output's content digest."""
        out = self.output
        return out.digest if out else None

    @property
    def lineage_ref(self) -> str | None:
        """The step's execution in the lineage graph (None if it did not run or get cached)."""
        return step_ref(self.run_id, self.name) if self.lineage_execution_id else None

    @property
    def output_lineage_ref(self) -> str | None:
        """The lineage ref of the output artifact (for a cached step, the original's)."""
        data = self.outputs.get(OUTPUT)
        return data.get("lineage_ref") if data else None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return {
            "name": self.name,
            "function": self.function,
            "status": self.status,
            "attempts": self.attempts,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration": self.duration,
            "cache_key": self.cache_key,
            "cached_from": self.cached_from,
            "outputs": self.outputs,
            "reason": self.reason,
            "error": self.error,
            "lineage_ref": self.lineage_ref,
        }


@dataclass(frozen=True)
class PipelineRun:
    """A run of a pipeline: its parameters, status, and every step of its graph in order."""

    id: str
    pipeline: str
    pipeline_ref: str | None
    status: str
    executor: str
    params: dict[str, Any]
    user: str
    host: str
    pid: int | None
    started_at: float
    ended_at: float | None
    error: str | None
    resumed_from: str | None
    graph: tuple[dict[str, Any], ...]
    steps: tuple[StepRun, ...]

    @property
    def duration(self) -> float | None:
        """Seconds from start to end (None while running)."""
        return None if self.ended_at is None else self.ended_at - self.started_at

    def step(self, name: str) -> StepRun:
        """The step called ``name``.

        Raises:
            NotFound: the pipeline has no such step.
        """
        for s in self.steps:
            if s.name == name:
                return s
        raise NotFound(f"run {self.id} has no step {name!r}")

    def counts(self) -> dict[str, int]:
        """How many steps ended in each status."""
        return dict(Counter(s.status for s in self.steps))

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return {
            "id": self.id,
            "pipeline": self.pipeline,
            "pipeline_ref": self.pipeline_ref,
            "status": self.status,
            "executor": self.executor,
            "params": self.params,
            "user": self.user,
            "host": self.host,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration": self.duration,
            "error": self.error,
            "resumed_from": self.resumed_from,
            "counts": self.counts(),
            "steps": [s.to_dict() for s in self.steps],
            "graph": list(self.graph),
        }


def step_from_row(row: dict[str, Any]) -> StepRun:
    """A step record from its stored row."""
    return StepRun(
        run_id=row["run_id"],
        name=row["name"],
        function=row["function"],
        status=row["status"],
        attempts=row["attempts"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        cache_key=row["cache_key"],
        cached_from=row["cached_from"],
        outputs=row["outputs"] or {},
        reason=row["reason"] or "",
        error=row["error"],
        lineage_execution_id=row["lineage_execution_id"],
        id=row["id"],
    )


def run_from_rows(row: dict[str, Any], step_rows: list[dict[str, Any]]) -> PipelineRun:
    """A run record from its stored row and step rows, with every node of its graph in order."""
    recorded = {r["name"]: step_from_row(r) for r in step_rows}
    unrecorded = "pending" if row["status"] == "running" else "not-run"
    graph = tuple(row["graph"] or ())
    steps = [
        recorded.pop(n["name"])
        if n["name"] in recorded
        else StepRun(run_id=row["id"], name=n["name"], function=n["function"], status=unrecorded)
        for n in graph
    ]
    steps.extend(recorded.values())
    return PipelineRun(
        id=row["id"],
        pipeline=row["pipeline"],
        pipeline_ref=row["pipeline_ref"],
        status=row["status"],
        executor=row["executor"],
        params=row["params"] or {},
        user=row["user"],
        host=row["host"],
        pid=row["pid"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        error=row["error"],
        resumed_from=row["resumed_from"],
        graph=graph,
        steps=tuple(steps),
    )
