"""Experiment tracking: experiments, runs, params, metrics with steps, tags and artifacts."""

from __future__ import annotations

import functools
import math
import os
import re
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import sqlalchemy.exc

from wellml.config import current_user
from wellml.errors import Conflict, InvalidInput, NotFound
from wellml.lineage.graph import LineageService
from wellml.names import check_key, check_name
from wellml.processes import HOST, died_here
from wellml.store import tracking as sql
from wellml.store.artifacts import ArtifactStore
from wellml.store.metadata import MetadataStore, new_id, now
from wellml.tracking.resources import ResourceMeter, cpu_watts

RUN_STATUSES = ("running", "finished", "failed", "killed")


@dataclass(frozen=True)
class RunRecord:
    """A run as stored: its info, params, tags, latest metric values and artifacts."""

    id: str
    experiment: str
    name: str
    status: str
    kind: str
    user: str
    started_at: float
    ended_at: float | None
    parent_run_id: str | None
    error: str | None
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float | None] = field(default_factory=dict)
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    lineage_execution_id: str = ""

    @property
    def duration(self) -> float | None:
        """Seconds from start to end (None while running)."""
        return None if self.ended_at is None else self.ended_at - self.started_at

    @property
    def lineage_ref(self) -> str:
        """This run's node in the lineage graph."""
        return f"run:{self.id}"

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output (NaN metrics become None)."""
        return {
            "id": self.id,
            "experiment": self.experiment,
            "name": self.name,
            "status": self.status,
            "kind": self.kind,
            "user": self.user,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration": self.duration,
            "parent_run_id": self.parent_run_id,
            "error": self.error,
            "params": self.params,
            "tags": self.tags,
            "metrics": {
                k: (None if v is None or math.isnan(v) else v) for k, v in self.metrics.items()
            },
            "artifacts": self.artifacts,
        }


def _record(row: dict[str, Any]) -> RunRecord:
    return RunRecord(
        id=row["id"],
        experiment=row["experiment"],
        name=row["name"],
        status=row["status"],
        kind=row["kind"],
        user=row["user"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        parent_run_id=row["parent_run_id"],
        error=row["error"],
        params=row["params"],
        tags=row["tags"],
        metrics=row["metrics"],
        artifacts=row["artifacts"],
        lineage_execution_id=row["lineage_execution_id"],
    )


def _as_float(key: str, value: Any) -> float:
    if isinstance(value, bool):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"metric {key!r}: {value!r} is not a number") from None


class ActiveRun:
    """A run being recorded. Use as a context manager: it ends as finished, or as failed with
    the error when the block raises."""

    def __init__(self, tracking: Tracking, record: RunRecord) -> None:
        self._tracking = tracking
        self.id = record.id
        self.name = record.name
        self.experiment = record.experiment
        self.lineage_execution_id = record.lineage_execution_id
        self._ended = False
        # Wall and CPU time, peak memory and energy, recorded as system.* tags at the end.
        self.meter: ResourceMeter | None = None

    @property
    def lineage_ref(self) -> str:
        """This run's node in the lineage graph."""
        return f"run:{self.id}"

    # -- logging (batch is the primitive; the single-item calls delegate to it) ---------------

    def log_batch(
        self,
        *,
        metrics: Mapping[str, Any] | Sequence[tuple[str, Any, int, float]] | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        step: int = 0,
    ) -> None:
        """Log metrics, params and tags in one transaction.

        Args:
            metrics: ``{key: value}`` (all at ``step``, now), or ``(key, value, step,
                timestamp)`` tuples.

        Raises:
            InvalidInput: a bad key or a value that is not a number.
            Conflict: a param already logged with another value, or the run has ended.
        """
        self._check_open()
        ts = time.time()
        points: list[tuple[str, float, int, float]] = []
        if isinstance(metrics, Mapping):
            points = [
                (check_key(k, "metric"), _as_float(k, v), int(step), ts) for k, v in metrics.items()
            ]
        elif metrics:
            points = [
                (check_key(k, "metric"), _as_float(k, v), int(s), float(t))
                for k, v, s, t in metrics
            ]
        p = {check_key(k, "param"): str(v) for k, v in (params or {}).items()}
        t = {check_key(k, "tag"): str(v) for k, v in (tags or {}).items()}
        with self._tracking._store.write() as conn:
            sql.write_batch(conn, self.id, metrics=points, params=p, tags=t)

    def log_metric(self, key: str, value: float, step: int = 0) -> None:
        """Log one metric point."""
        self.log_batch(metrics={key: value}, step=step)

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Log several metrics at one step."""
        self.log_batch(metrics=metrics, step=step)

    def log_param(self, key: str, value: Any) -> None:
        """Log one param (immutable once logged)."""
        self.log_batch(params={key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log several params."""
        self.log_batch(params=params)

    def set_tag(self, key: str, value: Any) -> None:
        """Set one tag (tags may change)."""
        self.log_batch(tags={key: value})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set several tags."""
        self.log_batch(tags=tags)

    def log_artifact(self, path: str | os.PathLike[str], name: str | None = None) -> str:
        """Store a local file as a run artifact; return its digest.

        Raises:
            NotFound: the file does not exist.
        """
        self._check_open()
        digest = self._tracking._artifacts.put_file(path)
        size = self._tracking._artifacts.size(digest)
        with self._tracking._store.write() as conn:
            sql.add_artifact(conn, self.id, name or Path(path).name, digest, size)
        return digest

    def log_bytes(self, data: bytes, name: str) -> str:
        """Store bytes as a run artifact named ``name``; return the digest."""
        self._check_open()
        digest = self._tracking._artifacts.put_bytes(data)
        with self._tracking._store.write() as conn:
            sql.add_artifact(conn, self.id, name, digest, len(data))
        return digest

    def log_input(self, dataset_version: Any, role: str = "train") -> None:
        """Record that this run read a dataset version (an input edge in the lineage graph).

        Args:
            dataset_version: a :class:`~wellml.data.catalog.DatasetVersion`.
            role: how it was used: train, validation, test, ...
        """
        self._check_open()
        lineage_id = getattr(dataset_version, "lineage_artifact_id", None)
        if not lineage_id:
            raise InvalidInput("log_input takes a registered dataset version")
        with self._tracking._store.write() as conn:
            self._tracking._lineage.link(
                conn, self.lineage_execution_id, inputs=[(lineage_id, role)]
            )
            sql.write_batch(conn, self.id, tags={f"input.{role}": dataset_version.ref})

    def log_output(self, lineage_artifact_id: str, role: str) -> None:
        """Record that this run produced an artifact node (e.g. a model version)."""
        with self._tracking._store.write() as conn:
            self._tracking._lineage.link(
                conn, self.lineage_execution_id, outputs=[(lineage_artifact_id, role)]
            )

    # -- ending ----------------------------------------------------------------------------

    def end(self, status: str = "finished", error: str | None = None) -> None:
        """End the run with ``status`` (finished, failed or killed)."""
        if self._ended:
            return
        if status not in RUN_STATUSES[1:]:
            raise InvalidInput(f"status must be one of {RUN_STATUSES[1:]}, not {status!r}")
        usage = self.meter.stop().to_tags() if self.meter is not None else {}
        with self._tracking._store.write() as conn:
            if usage:
                sql.write_batch(conn, self.id, tags=usage)
            sql.set_run_status(conn, self.id, status, error)
            self._tracking._lineage.finish(conn, self.lineage_execution_id, status=status)
        self._ended = True

    def _check_open(self) -> None:
        if self._ended:
            raise Conflict(f"run {self.id} has ended; start a new run to log more")

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.end("finished")
        elif isinstance(exc, KeyboardInterrupt):
            self.end("killed", "interrupted")
        else:
            detail = "".join(traceback.format_exception(exc_type, exc, tb))[-4000:]
            self.end("failed", detail)

    def record(self) -> RunRecord:
        """The run as stored now."""
        return self._tracking.get_run(self.id)


_FILTER = re.compile(
    r"""^\s*(?P<scope>metrics|metric|params|param|tags|tag|attributes|attribute|attr)\.
        (?P<key>`[^`]+`|"[^"]+"|[A-Za-z0-9_.\-/:]+)\s*
        (?P<op>>=|<=|!=|=|>|<|\s+like\s+)\s*(?P<value>'[^']*'|"[^"]*"|[^\s]+)\s*$""",
    re.X | re.I,
)
_ATTRIBUTES = {
    "status": "status",
    "name": "name",
    "user": "user",
    "kind": "kind",
    "started_at": "started_at",
    "start_time": "started_at",
    "ended_at": "ended_at",
    "run_id": "id",
    "id": "id",
}


def parse_filter(text: str) -> dict[str, list[tuple[str, str, Any]]]:
    """Parse ``metrics.acc > 0.5 and params.C = '1'`` into filters by scope.

    Raises:
        InvalidInput: a clause is not ``scope.key op value``.
    """
    out: dict[str, list[tuple[str, str, Any]]] = {
        "metrics": [],
        "params": [],
        "tags": [],
        "attributes": [],
    }
    if not text or not text.strip():
        return out
    for clause in re.split(r"\s+and\s+", text.strip(), flags=re.I):
        m = _FILTER.match(clause)
        if not m:
            raise InvalidInput(
                f"cannot parse filter clause {clause!r}; write e.g. metrics.auc > 0.8, "
                "params.model = 'rf', tags.team = 'a', attributes.status = 'finished'"
            )
        scope = m["scope"].lower().rstrip("s")
        key = m["key"].strip('`"')
        op = m["op"].strip().lower()
        raw = m["value"]
        quoted = raw[:1] in ("'", '"')
        value: Any = raw[1:-1] if quoted else raw
        if scope == "metric":
            if quoted:
                raise InvalidInput(f"metric filter {clause!r} needs a number, not a string")
            value = _as_float(key, value)
            out["metrics"].append((key, op, value))
        elif scope == "param":
            out["params"].append((key, op, str(value)))
        elif scope == "tag":
            out["tags"].append((key, op, str(value)))
        else:
            if key not in _ATTRIBUTES:
                raise InvalidInput(
                    f"unknown run attribute {key!r}; use one of {', '.join(sorted(_ATTRIBUTES))}"
                )
            col = _ATTRIBUTES[key]
            if col in ("started_at", "ended_at"):
                value = _as_float(key, value)
            out["attributes"].append((col, op, value))
    return out


def _sort_key(order: str) -> tuple[str, str, bool]:
    parts = order.strip().split()
    if not parts or len(parts) > 2 or (len(parts) == 2 and parts[1].lower() not in ("asc", "desc")):
        raise InvalidInput(f"cannot parse order {order!r}; write e.g. 'metrics.auc desc'")
    field_, _, key = parts[0].partition(".")
    desc = len(parts) == 2 and parts[1].lower() == "desc"
    field_ = field_.lower().rstrip("s")
    if field_ not in ("metric", "param", "tag", "attribute") or not key:
        raise InvalidInput(
            f"cannot order by {parts[0]!r}; use metrics.X, params.X, tags.X or attributes.X"
        )
    return field_, key, desc


class Tracking:
    """Experiments and runs of a workspace."""

    def __init__(
        self, store: MetadataStore, artifacts: ArtifactStore, lineage: LineageService
    ) -> None:
        self._store = store
        self._artifacts = artifacts
        self._lineage = lineage
        self._experiments: dict[str, dict[str, Any]] = {}

    # -- experiments -------------------------------------------------------------------------

    def experiment(self, name: str, *, create: bool = True) -> dict[str, Any]:
        """The experiment named ``name``, created if missing (unless ``create`` is False).

        Raises:
            NotFound: it does not exist and ``create`` is False.
        """
        check_name(name, "experiment name")
        if name in self._experiments:
            return self._experiments[name]
        with self._store.read() as conn:
            exp = sql.experiment_by_name(conn, name)
        if exp is not None:
            self._experiments[name] = exp  # experiments are never renamed or deleted
            return exp
        if not create:
            raise NotFound(f"no experiment named {name!r}")
        try:
            with self._store.write() as conn:
                exp = sql.experiment_by_name(conn, name) or sql.create_experiment(conn, name)
        except sqlalchemy.exc.IntegrityError:
            with self._store.read() as conn:
                exp = sql.experiment_by_name(conn, name)
        assert exp is not None
        self._experiments[name] = exp
        return exp

    def experiments(self) -> list[dict[str, Any]]:
        """Every experiment with its run count."""
        with self._store.read() as conn:
            return sql.list_experiments(conn)

    # -- runs --------------------------------------------------------------------------------

    def start_run(
        self,
        experiment: str = "default",
        *,
        name: str | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        parent: ActiveRun | str | None = None,
        kind: str = "train",
    ) -> ActiveRun:
        """Start a run; use the result as a context manager.

        Raises:
            InvalidInput: bad experiment name or keys.
            NotFound: ``parent`` is not a run.
        """
        exp = self.experiment(experiment)
        run_id = new_id()
        parent_id = parent.id if isinstance(parent, ActiveRun) else parent
        run_name = name or f"run-{run_id[:8]}"
        if parent_id is not None:
            self.get_run(parent_id)
        watts = cpu_watts()  # a bad WELLML_CPU_WATTS fails here, before anything is written
        with self._store.write() as conn:
            exec_id = self._lineage.record_execution(
                conn,
                kind="run",
                ref=f"run:{run_id}",
                name=run_name,
                status="running",
                properties={"experiment": exp["name"], "run_kind": kind},
            )
            sql.insert_run(
                conn,
                {
                    "id": run_id,
                    "experiment_id": exp["id"],
                    "name": run_name,
                    "status": "running",
                    "kind": kind,
                    "parent_run_id": parent_id,
                    "user": current_user(),
                    "started_at": now(),
                    "heartbeat_at": now(),
                    "pid": os.getpid(),
                    "host": HOST,
                    "lineage_execution_id": exec_id,
                },
            )
        record = RunRecord(
            id=run_id,
            experiment=exp["name"],
            name=run_name,
            status="running",
            kind=kind,
            user=current_user(),
            started_at=now(),
            ended_at=None,
            parent_run_id=parent_id,
            error=None,
            lineage_execution_id=exec_id,
        )
        run = ActiveRun(self, record)
        run.meter = ResourceMeter(watts=watts)
        if params or tags:
            run.log_batch(params=params, tags=tags)
        return run

    @contextmanager
    def run(self, experiment: str = "default", **kwargs: Any) -> Iterator[ActiveRun]:
        """``with tracking.run("exp") as run:`` — the same as :meth:`start_run`."""
        with self.start_run(experiment, **kwargs) as run:
            yield run

    def get_run(self, run_id: str) -> RunRecord:
        """A run by id (a unique prefix of at least 6 characters works too).

        Raises:
            NotFound: no such run.
        """
        self.reap_dead_runs()
        with self._store.read() as conn:
            rows = sql.get_runs(conn, [run_id])
            if not rows and len(run_id) >= 6:
                ids = sql.search_run_ids(
                    conn,
                    experiment_ids=None,
                    attribute_filters=[("id", "like", run_id + "%")],
                    limit=2,
                )
                if len(ids) == 1:
                    rows = sql.get_runs(conn, ids)
        if not rows:
            raise NotFound(f"no run {run_id!r}")
        return _record(rows[0])

    def runs_by_lineage_ids(self, ids: Sequence[str]) -> list[RunRecord]:
        """The runs behind these lineage execution ids."""
        with self._store.read() as conn:
            run_ids = sql.runs_by_lineage_ids(conn, ids)
            return [_record(r) for r in sql.get_runs(conn, run_ids)]

    def search_runs(
        self,
        experiments: Sequence[str] | str | None = None,
        *,
        filter: str = "",
        order_by: Sequence[str] = (),
        max_results: int = 1000,
    ) -> list[RunRecord]:
        """Runs matching a filter such as ``metrics.auc > 0.8 and params.model = 'rf'``.

        A metric filter or ordering uses the metric's latest value. Without ``order_by``, the
        newest runs come first.

        Raises:
            InvalidInput: the filter or ordering cannot be parsed.
            NotFound: an experiment does not exist.
        """
        self.reap_dead_runs()
        filters = parse_filter(filter)
        sorts = [_sort_key(o) for o in order_by]
        with self._store.read() as conn:
            exp_ids = None
            if experiments is not None:
                names = [experiments] if isinstance(experiments, str) else list(experiments)
                exp_ids = []
                for n in names:
                    exp = sql.experiment_by_name(conn, n)
                    if exp is None:
                        raise NotFound(f"no experiment named {n!r}")
                    exp_ids.append(exp["id"])
            query = sql.search_query(
                experiment_ids=exp_ids,
                metric_filters=filters["metrics"],
                param_filters=filters["params"],
                tag_filters=filters["tags"],
                attribute_filters=filters["attributes"],
                limit=None if sorts else max_results,
            )
            records = [_record(r) for r in sql.get_runs(conn, query)]
        for field_, key, desc in reversed(sorts):
            records.sort(key=functools.partial(_order_value, field_=field_, key=key, desc=desc))
        return records[:max_results]

    def metric_history(self, run_id: str, key: str) -> list[dict[str, Any]]:
        """Every point of metric ``key`` of a run, by step.

        Raises:
            NotFound: no such run.
        """
        run = self.get_run(run_id)
        with self._store.read() as conn:
            return sql.metric_history(conn, run.id, key)

    def compare(self, run_ids: Sequence[str]) -> dict[str, Any]:
        """Params and latest metrics of several runs side by side, and which of them differ.

        Raises:
            NotFound: a run does not exist.
        """
        records = [self.get_run(r) for r in run_ids]
        params = sorted({k for r in records for k in r.params})
        metrics = sorted({k for r in records for k in r.metrics})
        return {
            "runs": [r.to_dict() for r in records],
            "params": {k: [r.params.get(k) for r in records] for k in params},
            "metrics": {k: [r.to_dict()["metrics"].get(k) for r in records] for k in metrics},
            "differing_params": [k for k in params if len({r.params.get(k) for r in records}) > 1],
        }

    def reap_dead_runs(self) -> int:
        """Mark runs whose process on this host has died as killed; return how many."""
        with self._store.read() as conn:
            candidates = [r for r in sql.running_runs(conn) if died_here(r["host"], r["pid"])]
        for r in candidates:
            with self._store.write() as conn:
                sql.set_run_status(
                    conn,
                    r["id"],
                    "killed",
                    f"process {r['pid']} on {HOST} exited without ending the run",
                )
                row = sql.get_runs(conn, [r["id"]])
                if row:
                    self._lineage.finish(conn, row[0]["lineage_execution_id"], status="killed")
        return len(candidates)


def _order_value(r: RunRecord, field_: str, key: str, desc: bool) -> tuple[int, Any]:
    if field_ == "metric":
        v: Any = r.metrics.get(key)
        if v is not None and math.isnan(v):
            v = None
    elif field_ == "param":
        v = r.params.get(key)
    elif field_ == "tag":
        v = r.tags.get(key)
    else:
        v = r.to_dict().get(key)
    # Missing values sort last in either direction.
    if v is None:
        return (1, 0)
    if desc:
        return (0, -v) if isinstance(v, (int, float)) else (0, _Reverse(v))
    return (0, v)


class _Reverse:
    """Inverts the ordering of a string for descending sorts."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __lt__(self, other: _Reverse) -> bool:
        return bool(self.value > other.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Reverse) and self.value == other.value

    def __hash__(self) -> int:
        return hash(self.value)
