"""Schedules and triggers: run pipelines on cron slots, on new dataset versions, and when a
monitor asks for retraining.

A **schedule** names a pipeline, its parameters and the executor, and either a cron expression
(evaluated in UTC) or a dataset whose new versions trigger a run. A :class:`Scheduler` checks
them every few seconds:

- **cron**: the newest slot at or before now runs once, if no scheduler has run it yet. A
  scheduler that was down over several slots runs only the newest one when it comes back.
- **dataset**: every version registered after the trigger was made runs once, oldest first;
  ``dataset_param`` names the pipeline parameter that receives ``name@version``.
- **retrain triggers** that monitors leave behind (status ``pending``) are claimed and run with
  the pipeline and parameters they name; they end ``completed`` or ``failed``.

Claims come first and are atomic: each schedule keeps a cursor (the newest slot or dataset
version claimed), and a scheduler moves it forward with one conditional UPDATE in the same
transaction that records the firing; only then does it run the pipeline. Of two schedulers only
one gets a slot, and a restarted scheduler never runs a slot again. The price is at-most-once:
a scheduler killed while running a pipeline leaves the firing ``interrupted`` (its pipeline run
too), and ``wellml pipelines resume RUN_ID`` finishes it.

Schedules and triggers may also be declared in ``wellml.yaml`` (``schedules:``, ``triggers:``);
:meth:`Schedules.apply` makes the records match them, idempotently, and the scheduler command
applies them at its start.
"""

from __future__ import annotations

import builtins
import datetime as dt
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import sqlalchemy.exc

from wellml.config import SPEC_FILE, current_user
from wellml.errors import Conflict, InvalidInput, NotFound, WellmlError
from wellml.names import check_name
from wellml.pipelines.executors import EXECUTORS
from wellml.processes import HOST, died_here
from wellml.store import pipelines as sql
from wellml.store.metadata import new_id, now

if TYPE_CHECKING:
    from wellml.config import ProjectSpec
    from wellml.pipelines.records import PipelineRun
    from wellml.pipelines.service import Pipelines

log = logging.getLogger("wellml.pipelines")
KINDS = ("cron", "dataset")
FIRING_STATUSES = ("running", "completed", "blocked", "failed", "interrupted")


# --- cron ------------------------------------------------------------------------------------


def _utc(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, tz=dt.UTC)


def check_cron(expr: str) -> str:
    """Return ``expr`` if it is a valid five-field cron expression.

    Raises:
        InvalidInput: it is not.
    """
    from croniter import croniter

    if not isinstance(expr, str) or len(expr.split()) != 5 or not croniter.is_valid(expr):
        raise InvalidInput(
            f"invalid cron expression {expr!r}: use five fields, minute hour day month weekday "
            "(e.g. '0 3 * * *' for 03:00 UTC every day)"
        )
    return expr


def latest_slot(expr: str, at: float) -> float:
    """The newest slot of the cron expression at or before ``at`` (epoch seconds, UTC)."""
    from croniter import croniter

    prev = float(croniter(expr, _utc(at)).get_prev(float))
    following = float(croniter(expr, _utc(prev)).get_next(float))
    return following if following <= at else prev


def next_slot(expr: str, after: float) -> float:
    """The first slot of the cron expression strictly after ``after``."""
    from croniter import croniter

    return float(croniter(expr, _utc(after)).get_next(float))


def slot_key(slot: float) -> str:
    """A slot as an ISO-8601 UTC time, the key its firing is recorded under."""
    return _utc(slot).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- records -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """A pipeline schedule (``kind="cron"``) or dataset trigger (``kind="dataset"``).

    ``cursor`` is the newest cron slot (epoch seconds) or dataset version already claimed.
    """

    id: str
    name: str
    pipeline: str
    kind: str
    cron: str | None
    dataset: str | None
    dataset_param: str | None
    params: dict[str, Any]
    executor: str
    enabled: bool
    cursor: float | None
    created_at: float
    created_by: str
    updated_at: float

    def next_at(self, at: float | None = None) -> float | None:
        """When a cron schedule fires next (None for triggers and disabled schedules)."""
        if self.kind != "cron" or not self.enabled or self.cron is None:
            return None
        return next_slot(self.cron, max(at if at is not None else now(), self.cursor or 0.0))

    @property
    def when(self) -> str:
        """The cron expression, or what the trigger waits for."""
        if self.kind == "cron":
            return f"cron {self.cron} (UTC)"
        return f"each new version of dataset {self.dataset!r}"

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return {
            "id": self.id,
            "name": self.name,
            "pipeline": self.pipeline,
            "kind": self.kind,
            "cron": self.cron,
            "dataset": self.dataset,
            "dataset_param": self.dataset_param,
            "params": self.params,
            "executor": self.executor,
            "enabled": self.enabled,
            "cursor": self.cursor,
            "next_at": self.next_at(),
            "created_at": self.created_at,
            "created_by": self.created_by,
            "updated_at": self.updated_at,
        }


def _schedule(row: dict[str, Any]) -> Schedule:
    return Schedule(
        id=row["id"],
        name=row["name"],
        pipeline=row["pipeline"],
        kind=row["kind"],
        cron=row["cron"],
        dataset=row["dataset"],
        dataset_param=row["dataset_param"],
        params=dict(row["params"] or {}),
        executor=row["executor"],
        enabled=bool(row["enabled"]),
        cursor=row["cursor"],
        created_at=row["created_at"],
        created_by=row["created_by"],
        updated_at=row["updated_at"],
    )


@dataclass(frozen=True)
class Firing:
    """One time a scheduler ran a pipeline: what for (``source`` and ``key``), and how it went.

    ``source`` is ``cron`` (``key`` is the slot, ISO-8601 UTC), ``dataset`` (``key`` is
    ``name@version``) or ``retrain`` (``key`` is the retrain trigger's id).
    """

    id: str
    schedule_id: str | None
    retrain_trigger_id: str | None
    source: str
    key: str
    pipeline: str
    params: dict[str, Any]
    status: str
    claimed_by: str
    host: str
    pid: int | None
    pipeline_run_id: str | None
    error: str | None
    claimed_at: float
    ended_at: float | None
    schedule: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return {
            "id": self.id,
            "schedule": self.schedule,
            "schedule_id": self.schedule_id,
            "retrain_trigger_id": self.retrain_trigger_id,
            "source": self.source,
            "key": self.key,
            "pipeline": self.pipeline,
            "params": self.params,
            "status": self.status,
            "claimed_by": self.claimed_by,
            "pipeline_run_id": self.pipeline_run_id,
            "error": self.error,
            "claimed_at": self.claimed_at,
            "ended_at": self.ended_at,
        }


def _firing(row: dict[str, Any], schedule: str | None = None) -> Firing:
    return Firing(
        id=row["id"],
        schedule_id=row["schedule_id"],
        retrain_trigger_id=row["retrain_trigger_id"],
        source=row["source"],
        key=row["key"],
        pipeline=row["pipeline"],
        params=dict(row["params"] or {}),
        status=row["status"],
        claimed_by=row["claimed_by"],
        host=row["host"],
        pid=row["pid"],
        pipeline_run_id=row["pipeline_run_id"],
        error=row["error"],
        claimed_at=row["claimed_at"],
        ended_at=row["ended_at"],
        schedule=schedule,
    )


def check_executor(executor: str) -> str:
    """Return ``executor`` if a schedule can run on it: a known executor or a ``ray://``
    address.

    Raises:
        InvalidInput: it is neither.
    """
    if not isinstance(executor, str) or not (
        executor in EXECUTORS or executor.startswith("ray://")
    ):
        raise InvalidInput(
            f"unknown executor {executor!r}: use {', '.join(EXECUTORS)} or a ray:// address"
        )
    return executor


_DEFINITION = ("pipeline", "kind", "cron", "dataset", "dataset_param", "params", "executor")


def _same_definition(existing: Mapping[str, Any], row: Mapping[str, Any]) -> bool:
    return bool(existing["enabled"]) and all(
        (existing[k] or None) == (row[k] or None) for k in _DEFINITION
    )


@dataclass(frozen=True)
class AppliedSchedule:
    """What applying ``wellml.yaml`` did to one declared schedule or trigger.

    Attributes:
        name: the schedule's name.
        action: ``created``, ``updated`` (changed or re-enabled) or ``unchanged``.
    """

    name: str
    action: str

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return {"name": self.name, "action": self.action}


def default_name(pipeline: str, suffix: str = "") -> str:
    """A schedule name made from a pipeline reference (``pkg.mod:fn`` → ``pkg.mod.fn``)."""
    base = re.sub(r"[^A-Za-z0-9_.-]+", ".", pipeline).strip(".-_") or "pipeline"
    return (base + suffix)[:128]


# --- the book of schedules -----------------------------------------------------------------------


class Schedules:
    """Creates, lists and disables schedules (``ws.pipelines.schedule(...)`` and friends)."""

    def __init__(self, pipelines: Pipelines) -> None:
        self._pipes = pipelines
        self._store = pipelines._store

    def _check_pipeline(
        self, pipeline: str, params: Mapping[str, Any], extra_param: str | None = None
    ) -> None:
        target = self._pipes.load(pipeline)
        spec = self._pipes.declared().get(pipeline)
        values = {**(spec.params if spec is not None else {}), **params}
        if extra_param is not None:
            if extra_param not in target.params:
                known = ", ".join(sorted(target.params)) or "none"
                raise InvalidInput(
                    f"pipeline {target.name!r} has no parameter {extra_param!r} to receive the "
                    f"dataset version (its parameters: {known})"
                )
            values[extra_param] = "dataset@1"
        target.bind_params(values)

    def create(
        self,
        pipeline: str,
        *,
        cron: str | None = None,
        on_dataset: str | None = None,
        dataset_param: str | None = None,
        params: Mapping[str, Any] | None = None,
        name: str | None = None,
        executor: str = "local",
        replace: bool = False,
    ) -> Schedule:
        """Create (or replace) a cron schedule or a dataset trigger; see :meth:`Pipelines.schedule`
        and :meth:`Pipelines.trigger`."""
        row = self._prepare(
            pipeline,
            cron=cron,
            on_dataset=on_dataset,
            dataset_param=dataset_param,
            params=params,
            name=name,
            executor=executor,
        )
        try:
            with self._store.write() as conn:
                existing = sql.schedule_by_name(conn, row["name"])
                if existing is not None and existing["enabled"] and not replace:
                    raise Conflict(
                        f"schedule {row['name']!r} exists ({_schedule(existing).when}); pass "
                        "replace (--replace) to change it, or choose another name"
                    )
                self._write(conn, existing, row)
        except sqlalchemy.exc.IntegrityError:
            raise Conflict(
                f"schedule {row['name']!r} was created at the same moment elsewhere"
            ) from None
        return self.get(row["name"])

    def _prepare(
        self,
        pipeline: str,
        *,
        cron: str | None,
        on_dataset: str | None,
        dataset_param: str | None,
        params: Mapping[str, Any] | None,
        name: str | None,
        executor: str,
    ) -> dict[str, Any]:
        """Check a schedule's definition and return its row (without id and creator)."""
        if (cron is None) == (on_dataset is None):
            raise InvalidInput("give either a cron expression or a dataset to trigger on")
        if not isinstance(pipeline, str) or not pipeline:
            raise InvalidInput("name the pipeline: a declared name or module:function")
        params = dict(params or {})
        check_executor(executor)
        at = now()
        if cron is not None:
            kind = "cron"
            check_cron(cron)
            cursor: float | None = latest_slot(cron, at)
            name = check_name(name or default_name(pipeline), "schedule name")
        else:
            assert on_dataset is not None
            kind = "dataset"
            check_name(on_dataset, "dataset name")
            versions = self._pipes._ws.data.versions(on_dataset)
            if not versions:
                raise NotFound(f"no dataset named {on_dataset!r} to trigger on")
            cursor = float(max((v.version for v in versions), default=0))
            name = check_name(name or default_name(pipeline, f"-on-{on_dataset}"), "schedule name")
        if dataset_param is not None and kind != "dataset":
            raise InvalidInput("dataset_param is for dataset triggers only")
        self._check_pipeline(pipeline, params, dataset_param)
        return {
            "name": name,
            "pipeline": pipeline,
            "kind": kind,
            "cron": cron,
            "dataset": on_dataset,
            "dataset_param": dataset_param,
            "params": params,
            "executor": executor,
            "enabled": True,
            "cursor": cursor,
            "updated_at": at,
        }

    @staticmethod
    def _write(conn: Any, existing: dict[str, Any] | None, row: dict[str, Any]) -> None:
        if existing is None:
            sql.insert_schedule(
                conn,
                {
                    "id": new_id(),
                    "created_at": row["updated_at"],
                    "created_by": current_user(),
                    **row,
                },
            )
        else:
            sql.update_schedule(conn, existing["id"], **row)

    def apply(self, spec: ProjectSpec) -> builtins.list[AppliedSchedule]:
        """Make the schedules and triggers declared in ``wellml.yaml`` exist as declared.

        Idempotent: a declared schedule that exists, enabled and with the same definition, is
        left alone (its cursor too, so no slot runs twice); a changed or disabled one is
        replaced (its cursor starts again from now, as for a new schedule); a missing one is
        created. Schedules the file does not name are not touched. Every entry is checked
        before anything is written, so a bad entry changes nothing.

        Raises:
            InvalidInput, NotFound: an entry whose pipeline, parameters or dataset is wrong
                (the message names the entry).
        """
        wanted: builtins.list[tuple[str, dict[str, Any]]] = [
            (
                name,
                {
                    "cron": s.cron,
                    "on_dataset": None,
                    "dataset_param": None,
                    "params": s.params,
                    "executor": s.executor,
                    "pipeline": s.pipeline,
                },
            )
            for name, s in spec.schedules.items()
        ] + [
            (
                name,
                {
                    "cron": None,
                    "on_dataset": t.dataset,
                    "dataset_param": t.dataset_param,
                    "params": t.params,
                    "executor": t.executor,
                    "pipeline": t.pipeline,
                },
            )
            for name, t in spec.triggers.items()
        ]
        rows = []
        for name, definition in wanted:
            try:
                rows.append(self._prepare(name=name, **definition))
            except (InvalidInput, NotFound) as exc:
                where = "schedules" if definition["cron"] is not None else "triggers"
                raise type(exc)(f"{SPEC_FILE}: {where}.{name}: {exc}") from None
        for attempt in range(2):
            applied: builtins.list[AppliedSchedule] = []
            try:
                with self._store.write() as conn:
                    for row in rows:
                        existing = sql.schedule_by_name(conn, row["name"])
                        if existing is not None and _same_definition(existing, row):
                            applied.append(AppliedSchedule(row["name"], "unchanged"))
                            continue
                        self._write(conn, existing, row)
                        action = "created" if existing is None else "updated"
                        applied.append(AppliedSchedule(row["name"], action))
                break
            except sqlalchemy.exc.IntegrityError:
                # Another process applied the same file at the same moment; look again.
                if attempt:
                    raise Conflict("schedules were being applied elsewhere; try again") from None
        for a in applied:
            if a.action != "unchanged":
                log.info("%s: schedule %r %s", SPEC_FILE, a.name, a.action)
        return applied

    def get(self, name: str) -> Schedule:
        """A schedule by name.

        Raises:
            NotFound: no such schedule.
        """
        with self._store.read() as conn:
            row = sql.schedule_by_name(conn, name)
        if row is None:
            raise NotFound(f"no pipeline schedule named {name!r}")
        return _schedule(row)

    def list(self) -> builtins.list[Schedule]:
        """Every schedule and trigger, by name (disabled ones too)."""
        with self._store.read() as conn:
            return [_schedule(r) for r in sql.list_schedules(conn)]

    def disable(self, name: str) -> Schedule:
        """Stop a schedule from firing; its record and firings are kept.

        Raises:
            NotFound: no such schedule.
        """
        sched = self.get(name)
        with self._store.write() as conn:
            sql.update_schedule(conn, sched.id, enabled=False, updated_at=now())
        return self.get(name)

    def firings(self, name: str | None = None, limit: int = 50) -> builtins.list[Firing]:
        """Firings, newest first: of one schedule, or all (retrain triggers included).

        Raises:
            NotFound: no such schedule.
        """
        sched = self.get(name) if name is not None else None
        with self._store.read() as conn:
            rows = sql.firings(conn, schedule_id=sched.id if sched else None, limit=limit)
            names = {s["id"]: s["name"] for s in sql.list_schedules(conn)}
        return [_firing(r, names.get(r["schedule_id"] or "")) for r in rows]


# --- the scheduler -------------------------------------------------------------------------------


@dataclass
class Scheduler:
    """Runs due schedules, dataset triggers and retrain triggers (``wellml pipelines
    scheduler``).

    Several schedulers may run against one workspace (on one host or many): every slot, dataset
    version and retrain trigger is claimed atomically before it runs, so each runs once.

    Attributes:
        pipelines: the workspace's pipeline service.
        executor: where retrain triggers run (schedules carry their own executor).
        on_firing: called with each firing when it is claimed and again when it has ended.
    """

    pipelines: Pipelines
    executor: str = "local"
    on_firing: Callable[[Firing], None] | None = None
    identity: str = field(default_factory=lambda: f"{HOST}:{os.getpid()}")

    def __post_init__(self) -> None:
        check_executor(self.executor)
        self._store = self.pipelines._store

    # -- one pass ----------------------------------------------------------------------------

    def tick(self, at: float | None = None) -> builtins.list[Firing]:
        """Run everything that is due at ``at`` (default: now), one pipeline at a time.

        Returns:
            The firings this call ran, as they ended.
        """
        at = now() if at is None else at
        self.reap()
        done: builtins.list[Firing] = []
        with self._store.read() as conn:
            schedules = [_schedule(r) for r in sql.list_schedules(conn, enabled_only=True)]
        for sched in schedules:
            if sched.kind == "cron":
                assert sched.cron is not None
                slot = latest_slot(sched.cron, at)
                if sched.cursor is None or slot > sched.cursor:
                    fired = self._fire_schedule(sched, slot, slot_key(slot), dict(sched.params))
                    if fired is not None:
                        done.append(fired)
            else:
                done.extend(self._fire_dataset(sched))
        done.extend(self._fire_retrain_triggers())
        return done

    def _fire_dataset(self, sched: Schedule) -> builtins.list[Firing]:
        assert sched.dataset is not None
        done = []
        try:
            versions = sorted(
                self.pipelines._ws.data.versions(sched.dataset), key=lambda v: v.version
            )
        except WellmlError as exc:
            log.warning("schedule %r: cannot list dataset %r: %s", sched.name, sched.dataset, exc)
            return []
        for v in versions:
            if sched.cursor is not None and v.version <= sched.cursor:
                continue
            params = dict(sched.params)
            if sched.dataset_param:
                params[sched.dataset_param] = v.ref
            fired = self._fire_schedule(sched, float(v.version), v.ref, params)
            if fired is not None:
                done.append(fired)
        return done

    def _fire_schedule(
        self, sched: Schedule, cursor: float, key: str, params: dict[str, Any]
    ) -> Firing | None:
        row = self._firing_row(sched.kind, key, sched.pipeline, params, schedule_id=sched.id)
        try:
            with self._store.write() as conn:
                if not sql.claim_cursor(conn, sched.id, cursor):
                    return None
                sql.insert_firing(conn, row)
        except sqlalchemy.exc.IntegrityError:
            return None  # the same slot recorded by another scheduler: not ours to run
        log.info("schedule %r: running %s for %s", sched.name, sched.pipeline, key)
        return self._run(_firing(row, sched.name), sched.executor)

    def _fire_retrain_triggers(self) -> builtins.list[Firing]:
        done = []
        with self._store.read() as conn:
            pending = sql.pending_retrain_triggers(conn)
        for trig in pending:
            row = self._firing_row(
                "retrain",
                trig["id"],
                trig["pipeline"],
                dict(trig["params"] or {}),
                retrain_trigger_id=trig["id"],
            )
            with self._store.write() as conn:
                if not sql.claim_retrain_trigger(conn, trig["id"], by=self.identity, at=now()):
                    continue
                sql.insert_firing(conn, row)
            log.info("retrain trigger %s: running %s", trig["id"][:12], trig["pipeline"])
            done.append(self._run(_firing(row), self.executor))
        return done

    def _firing_row(
        self,
        source: str,
        key: str,
        pipeline: str,
        params: dict[str, Any],
        *,
        schedule_id: str | None = None,
        retrain_trigger_id: str | None = None,
    ) -> dict[str, Any]:
        return {
            "id": new_id(),
            "schedule_id": schedule_id,
            "retrain_trigger_id": retrain_trigger_id,
            "source": source,
            "key": key,
            "pipeline": pipeline,
            "params": params,
            "status": "running",
            "claimed_by": self.identity,
            "host": HOST,
            "pid": os.getpid(),
            "pipeline_run_id": None,
            "error": None,
            "claimed_at": now(),
            "ended_at": None,
        }

    def _run(self, firing: Firing, executor: str) -> Firing:
        if self.on_firing is not None:
            self.on_firing(firing)
        status, run_id, error = "failed", None, None
        try:
            record: PipelineRun = self.pipelines.run(
                firing.pipeline, firing.params, executor=executor, raise_on_failure=False
            )
            status, run_id, error = record.status, record.id, record.error
        except KeyboardInterrupt:
            self._end(firing, "interrupted", None, "the scheduler was interrupted")
            raise
        except WellmlError as exc:
            error = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # keep the scheduler alive; the firing says what happened
            log.exception("firing %s of %s failed", firing.id[:12], firing.pipeline)
            error = f"{type(exc).__name__}: {exc}"
        return self._end(firing, status, run_id, error)

    def _end(self, firing: Firing, status: str, run_id: str | None, error: str | None) -> Firing:
        ended = now()
        with self._store.write() as conn:
            sql.finish_firing(
                conn,
                firing.id,
                status=status,
                pipeline_run_id=run_id,
                error=error,
                ended_at=ended,
            )
            if firing.retrain_trigger_id is not None:
                sql.finish_retrain_trigger(
                    conn,
                    firing.retrain_trigger_id,
                    status="completed" if status in ("completed", "blocked") else "failed",
                    pipeline_run_id=run_id,
                    error=error if status not in ("completed", "blocked") else None,
                    at=ended,
                )
        log.info("firing %s of %s ended %s", firing.id[:12], firing.pipeline, status)
        out = replace(firing, status=status, pipeline_run_id=run_id, error=error, ended_at=ended)
        if self.on_firing is not None:
            self.on_firing(out)
        return out

    def reap(self) -> int:
        """Mark firings whose scheduler process on this host has died as interrupted (and their
        retrain triggers failed); return how many."""
        with self._store.read() as conn:
            dead = [r for r in sql.running_firings(conn) if died_here(r["host"], r["pid"])]
        for r in dead:
            error = f"scheduler process {r['pid']} on {HOST} exited before the run ended"
            with self._store.write() as conn:
                if (
                    sql.interrupt_firing(conn, r["id"], ended_at=now(), error=error)
                    and r["retrain_trigger_id"]
                ):
                    sql.finish_retrain_trigger(
                        conn,
                        r["retrain_trigger_id"],
                        status="failed",
                        pipeline_run_id=r["pipeline_run_id"],
                        error=error,
                        at=now(),
                    )
        return len(dead)

    # -- the loop ----------------------------------------------------------------------------

    def run_forever(self, *, interval: float = 30.0, stop: threading.Event | None = None) -> None:
        """Tick every ``interval`` seconds until ``stop`` is set (or the process is stopped).

        Raises:
            InvalidInput: ``interval`` is not a positive number.
        """
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval <= 0:
            raise InvalidInput("interval must be a number of seconds > 0")
        stop = stop or threading.Event()
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.tick()
            except WellmlError as exc:
                # A store that is briefly unreachable must not end a long-running scheduler.
                log.error("scheduler tick failed: %s", exc)
            stop.wait(max(0.0, interval - (time.monotonic() - started)))
