"""The orchestrator of one pipeline run: decides what runs, caches, retries and records.

It walks the validated graph in order. A node whose upstream nodes have all ended is decided:
blocked (an upstream step failed or a gate did not pass), skipped (an upstream step was
skipped or a condition does not hold), cached (a completed step with the same cache key
exists and its output blob is still stored), or submitted to the executor. A failed attempt
is tried again after a backoff while retries remain. Each completed, cached or failed step is
recorded in one metadata transaction as soon as it ends (its lineage execution, output
artifact and step row), so a run killed mid-way keeps every finished step; skipped and
blocked steps are written with the run's final status.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wellml.config import current_user
from wellml.errors import BackendUnavailable, InvalidInput, UserCodeError, WellmlError
from wellml.lineage.graph import LineageService
from wellml.pipelines.definition import (
    FromParam,
    FromStep,
    GateResult,
    Node,
    Pipeline,
    PipelineGraph,
    StepFailure,
    Value,
)
from wellml.pipelines.executors import Executor, StepError, StepTask, TaskResult
from wellml.pipelines.records import OUTPUT, StepRun, output_ref, step_from_row, step_ref
from wellml.pipelines.values import StoredValue, load_value
from wellml.store import pipelines as sql
from wellml.store.artifacts import ArtifactStore
from wellml.store.metadata import MetadataStore, new_id, now

if TYPE_CHECKING:
    from wellml.pipelines.service import Pipelines

log = logging.getLogger("wellml.pipelines")

CACHE_FORMAT = 1
_FINAL = frozenset({"completed", "cached", "skipped", "failed", "blocked"})


class RemoteStepError(Exception):
    """Stands in for an exception a step raised in another process that could not be sent
    back; its message and traceback are the original's."""


def cache_key(node: Node, inputs: dict[str, StoredValue | Value]) -> str:
    """The digest that decides whether a step's earlier outputs can be reused: the step's code
    (and ``version`` option), its parameter and literal values, and its input digests."""
    payload = {
        "format": CACHE_FORMAT,
        "code": node.step.code_digest,
        "version": node.step.options.version,
        "inputs": {
            name: {"digest": v.digest} if isinstance(v, StoredValue) else {"value": v.value}
            for name, v in sorted(inputs.items())
        },
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class _Failure:
    node: str
    error: StepError
    exception: BaseException
    attempts: int


@dataclass
class _Attempt:
    node: Node
    attempt: int
    first_started: float


class RunOrchestrator:
    """Runs one pipeline run to its end; use :meth:`Pipelines.run` rather than this."""

    def __init__(
        self,
        service: Pipelines,
        pipeline: Pipeline,
        graph: PipelineGraph,
        params: dict[str, Any],
        executor: Executor,
        run_id: str,
        progress: Callable[[StepRun], None] | None = None,
    ) -> None:
        self._svc = service
        self._store: MetadataStore = service._store
        self._artifacts: ArtifactStore = service._artifacts
        self._lineage: LineageService = service._lineage
        self.pipeline = pipeline
        self.graph = graph
        self.params = params
        self.executor = executor
        self.run_id = run_id
        self._progress = progress
        self.status: dict[str, str] = {}
        self.reasons: dict[str, str] = {}
        self.outputs: dict[str, StoredValue] = {}
        self.artifact_ids: dict[str, str] = {}
        self.gate_failures: dict[str, str] = {}
        self.failures: list[_Failure] = []
        self._deferred: list[dict[str, Any]] = []
        self._inflight: dict[Future[TaskResult], _Attempt] = {}
        self._retries: list[tuple[float, int, str, int, float]] = []
        self._seq = 0
        self._waiting: set[str] = set()
        # Each step's cache key, computed once when the step is decided and reused when its
        # completion is recorded (None for steps with ``cache=False``).
        self._cache_keys: dict[str, str | None] = {}

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> None:
        """Run every node to a final status (failures are recorded, not raised)."""
        while True:
            self._schedule()
            now_ = time.time()
            while self._retries and self._retries[0][0] <= now_:
                _, _, name, attempt, first = heapq.heappop(self._retries)
                self._waiting.discard(name)
                self._submit(self.graph.node(name), attempt, first)
            if not self._inflight:
                if self._retries:
                    time.sleep(max(0.0, self._retries[0][0] - time.time()))
                    continue
                if all(n.name in self.status for n in self.graph.nodes):
                    return
                if not self._schedule():
                    raise RuntimeError("pipeline scheduling made no progress")  # a bug if seen
                continue
            timeout = max(0.0, self._retries[0][0] - time.time()) if self._retries else None
            done, _ = wait(list(self._inflight), timeout=timeout, return_when=FIRST_COMPLETED)
            for fut in done:
                self._handle(fut)

    def _schedule(self) -> bool:
        progressed = False
        busy = {a.node.name for a in self._inflight.values()} | self._waiting
        for node in self.graph.nodes:
            if node.name in self.status or node.name in busy:
                continue
            if not all(self.status.get(u) in _FINAL for u in node.upstream()):
                continue
            progressed = True
            self._decide(node)
            busy = {a.node.name for a in self._inflight.values()} | self._waiting
        return progressed

    def _decide(self, node: Node) -> None:
        verdict = self._blocked_or_skipped(node)
        if verdict is not None:
            status, reason = verdict
            if status != "recorded":
                self._defer(node, status, reason)
            return
        key = cache_key(node, self._inputs(node)) if node.step.options.cache else None
        self._cache_keys[node.name] = key
        if key is not None:
            hit = self._cache_hit(key)
            if hit is not None:
                self._record_cached(node, key, hit)
                return
        self._submit(node, 1, time.time())

    def _blocked_or_skipped(self, node: Node) -> tuple[str, str] | None:
        ups = node.upstream()
        for u in ups:
            if self.status[u] == "failed":
                return "blocked", f"upstream step {u!r} failed"
            if self.status[u] == "blocked":
                return "blocked", self.reasons[u]
            if u in self.gate_failures:
                return "blocked", f"gate {u!r} did not pass: {self.gate_failures[u]}"
        for u in ups:
            if self.status[u] == "skipped":
                return "skipped", f"upstream step {u!r} was skipped"
        for cond in node.conditions:
            if isinstance(cond.source, FromStep):
                value = load_value(self._artifacts, self.outputs[cond.source.node])
            else:
                value = self.params[cond.source.name]
            try:
                holds = bool(cond.predicate(value))
            except Exception as exc:
                self._record_failed(
                    node,
                    StepError(
                        "user",
                        type(exc).__name__,
                        f"condition {cond.description!r} raised: {exc}",
                        _format(exc),
                    ),
                    exc,
                    attempts=0,
                    started_at=time.time(),
                )
                return "recorded", ""
            if not holds:
                return "skipped", f"condition not met: {cond.description}"
        return None

    def _inputs(self, node: Node) -> dict[str, StoredValue | Value]:
        out: dict[str, StoredValue | Value] = {}
        for arg, b in node.inputs.items():
            if isinstance(b, FromStep):
                out[arg] = self.outputs[b.node]
            elif isinstance(b, FromParam):
                out[arg] = Value(self.params[b.name])
            else:
                out[arg] = b
        return out

    def _submit(self, node: Node, attempt: int, first_started: float) -> None:
        task = StepTask(
            run_id=self.run_id,
            node=node.name,
            step=node.step,
            inputs=self._inputs(node),
            artifacts_url=self._artifacts.url,
            attempt=attempt,
            timeout=node.step.options.timeout,
            resources=dict(node.step.options.resources),
        )
        fut = self.executor.submit(task)
        self._inflight[fut] = _Attempt(node, attempt, first_started)
        if fut.done():
            # A synchronous executor: record the step before anything else runs, so a kill
            # between two steps loses nothing finished.
            self._handle(fut)

    def _handle(self, fut: Future[TaskResult]) -> None:
        attempt = self._inflight.pop(fut, None)
        if attempt is None:
            return
        node = attempt.node
        try:
            result = fut.result()
        except Exception as exc:  # an executor that broke its contract
            result = TaskResult(
                node.name,
                attempt.attempt,
                attempt.first_started,
                time.time(),
                error=StepError("executor", type(exc).__name__, str(exc), _format(exc)),
                exception=exc,
            )
        if result.ok:
            assert result.output is not None
            self._record_completed(node, result, attempt)
            return
        assert result.error is not None
        options = node.step.options
        if result.error.retryable and attempt.attempt <= options.retries:
            delay = options.backoff_delays()[attempt.attempt - 1]
            log.warning(
                "run %s: step %r attempt %d failed (%s); retrying in %.3g s",
                self.run_id[:12],
                node.name,
                attempt.attempt,
                result.error.summary(),
                delay,
            )
            self._seq += 1
            heapq.heappush(
                self._retries,
                (
                    time.time() + delay,
                    self._seq,
                    node.name,
                    attempt.attempt + 1,
                    attempt.first_started,
                ),
            )
            self._waiting.add(node.name)
            return
        self._record_failed(
            node,
            result.error,
            result.exception,
            attempts=attempt.attempt,
            started_at=attempt.first_started,
        )

    # -- cache ---------------------------------------------------------------------------------

    def _cache_hit(self, key: str) -> dict[str, Any] | None:
        with self._store.read() as conn:
            row = sql.completed_step_by_cache_key(conn, key)
        if row is None:
            return None
        out = (row["outputs"] or {}).get(OUTPUT)
        if not out or not self._artifacts.exists(out["digest"]):
            return None
        return row

    # -- recording -----------------------------------------------------------------------------

    def _lineage_inputs(self, node: Node) -> list[tuple[str, str]]:
        return [
            (self.artifact_ids[b.node], arg)
            for arg, b in node.inputs.items()
            if isinstance(b, FromStep) and b.node in self.artifact_ids
        ]

    def _properties(self, node: Node, **extra: Any) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline.name,
            "run_id": self.run_id,
            "step": node.name,
            "function": node.step.function_ref,
            **extra,
        }

    def _step_row(self, node: Node, status: str, **values: Any) -> dict[str, Any]:
        row: dict[str, Any] = {
            "id": new_id(),
            "run_id": self.run_id,
            "name": node.name,
            "function": node.step.function_ref,
            "status": status,
            "cache_key": None,
            "cached_from": None,
            "attempts": 0,
            "outputs": {},
            "reason": "",
            "error": None,
            "started_at": None,
            "ended_at": now(),
            "lineage_execution_id": None,
        }
        row.update(values)
        return row

    def _record_completed(self, node: Node, result: TaskResult, attempt: _Attempt) -> None:
        assert result.output is not None
        stored = result.output
        key = self._cache_keys.get(node.name)
        reason = ""
        if node.step.options.gate:
            verdict = load_value(self._artifacts, stored)
            gate = verdict if isinstance(verdict, GateResult) else GateResult(bool(verdict))
            reason = f"gate {'passed' if gate.passed else 'did not pass'}" + (
                f": {gate.reason}" if gate.reason else ""
            )
            if not gate.passed:
                self.gate_failures[node.name] = gate.reason or "the gate returned False"
        out_ref = output_ref(self.run_id, node.name)
        with self._store.write() as conn:
            art_id = self._lineage.add_artifact(
                conn,
                kind="pipeline_output",
                ref=out_ref,
                uri=f"sha256:{stored.digest}",
                digest=stored.digest,
                properties={
                    "pipeline": self.pipeline.name,
                    "run_id": self.run_id,
                    "step": node.name,
                    "format": stored.format,
                    "type": stored.type,
                    "size": stored.size,
                },
            )
            exec_id = self._lineage.record_execution(
                conn,
                kind="pipeline_step",
                ref=step_ref(self.run_id, node.name),
                name=node.name,
                inputs=self._lineage_inputs(node),
                outputs=[(art_id, OUTPUT)],
                status="running",
                properties=self._properties(node, cache_key=key, attempts=attempt.attempt),
                started_at=attempt.first_started,
            )
            self._lineage.finish(conn, exec_id, status="completed")
            row = self._step_row(
                node,
                "completed",
                cache_key=key,
                attempts=attempt.attempt,
                outputs={
                    OUTPUT: {
                        **stored.to_dict(),
                        "lineage_artifact_id": art_id,
                        "lineage_ref": out_ref,
                    }
                },
                reason=reason,
                started_at=attempt.first_started,
                ended_at=result.ended_at,
                lineage_execution_id=exec_id,
            )
            sql.insert_steps(conn, [row])
        self.outputs[node.name] = stored
        self.artifact_ids[node.name] = art_id
        self._final(node, "completed", reason, row)
        log.info(
            "run %s: step %r completed in %.3f s (attempt %d)",
            self.run_id[:12],
            node.name,
            result.ended_at - attempt.first_started,
            attempt.attempt,
        )

    def _record_cached(self, node: Node, key: str, hit: dict[str, Any]) -> None:
        out = dict(hit["outputs"][OUTPUT])
        stored = StoredValue.from_dict(out)
        reason = f"cache hit: run {hit['run_id'][:12]}, step {hit['name']!r}"
        if node.step.options.gate:
            verdict = load_value(self._artifacts, stored)
            gate = verdict if isinstance(verdict, GateResult) else GateResult(bool(verdict))
            if not gate.passed:
                self.gate_failures[node.name] = gate.reason or "the gate returned False"
            reason += f"; gate {'passed' if gate.passed else 'did not pass'}" + (
                f": {gate.reason}" if gate.reason else ""
            )
        started = now()
        with self._store.write() as conn:
            exec_id = self._lineage.record_execution(
                conn,
                kind="pipeline_step",
                ref=step_ref(self.run_id, node.name),
                name=node.name,
                inputs=self._lineage_inputs(node),
                outputs=[(out["lineage_artifact_id"], OUTPUT)],
                status="cached",
                properties=self._properties(
                    node, cache_key=key, cached_from_run=hit["run_id"], cached_from_step=hit["id"]
                ),
                started_at=started,
            )
            row = self._step_row(
                node,
                "cached",
                cache_key=key,
                cached_from=hit["id"],
                outputs={OUTPUT: out},
                reason=reason,
                started_at=started,
                ended_at=started,
                lineage_execution_id=exec_id,
            )
            sql.insert_steps(conn, [row])
        self.outputs[node.name] = stored
        self.artifact_ids[node.name] = out["lineage_artifact_id"]
        self._final(node, "cached", reason, row)
        log.info("run %s: step %r cached (%s)", self.run_id[:12], node.name, reason)

    def _record_failed(
        self,
        node: Node,
        error: StepError,
        exception: BaseException | None,
        *,
        attempts: int,
        started_at: float,
    ) -> None:
        if error.kind == "timeout":
            what = f"timed out after {node.step.options.timeout:g} s"
        else:
            what = f"failed: {error.summary()}"
        tries = f" after {attempts} attempt{'s' if attempts != 1 else ''}" if attempts else ""
        reason = f"{what}{tries}"
        with self._store.write() as conn:
            exec_id = self._lineage.record_execution(
                conn,
                kind="pipeline_step",
                ref=step_ref(self.run_id, node.name),
                name=node.name,
                inputs=self._lineage_inputs(node),
                status="running",
                properties=self._properties(node, attempts=attempts, error=error.summary()),
                started_at=started_at,
            )
            self._lineage.finish(conn, exec_id, status="failed")
            row = self._step_row(
                node,
                "failed",
                attempts=attempts,
                reason=reason,
                error=error.traceback or error.summary(),
                started_at=started_at,
                lineage_execution_id=exec_id,
            )
            sql.insert_steps(conn, [row])
        cause = exception or RemoteStepError(f"{error.summary()}\n{error.traceback}".strip())
        failure = _Failure(node.name, error, cause, attempts)
        self.failures.append(failure)
        self._final(node, "failed", reason, row)
        log.error("run %s: step %r %s", self.run_id[:12], node.name, reason)
        handler = node.step.options.on_failure
        if handler is not None:
            self._call_handler(handler, failure, f"step {node.name!r}")

    def _defer(self, node: Node, status: str, reason: str) -> None:
        row = self._step_row(node, status, reason=reason)
        self._deferred.append(row)
        self._final(node, status, reason, row)
        log.info("run %s: step %r %s (%s)", self.run_id[:12], node.name, status, reason)

    def _final(self, node: Node, status: str, reason: str, row: dict[str, Any]) -> None:
        self.status[node.name] = status
        self.reasons[node.name] = reason
        if self._progress is not None:
            self._progress(step_from_row(row))

    def _call_handler(
        self, handler: Callable[[StepFailure], object], failure: _Failure, whose: str
    ) -> None:
        info = StepFailure(
            run_id=self.run_id,
            pipeline=self.pipeline.name,
            step=failure.node,
            error=self.error_for(failure),
            traceback=failure.error.traceback,
            attempts=failure.attempts,
        )
        try:
            handler(info)
        except Exception:
            log.exception("run %s: the on_failure handler of %s raised", self.run_id[:12], whose)

    # -- the end -------------------------------------------------------------------------------

    def final_status(self) -> tuple[str, str | None]:
        """The run's status and error text from its steps."""
        if self.failures:
            first = self.failures[0]
            return "failed", f"step {first.node!r} {self.reasons[first.node]}"
        if self.gate_failures:
            blocked = sorted(n for n, s in self.status.items() if s == "blocked")
            gates = "; ".join(f"gate {g!r}: {r}" for g, r in self.gate_failures.items())
            return "blocked", f"{gates} (blocked: {', '.join(blocked) or 'nothing'})"
        return "completed", None

    def finish(self, status: str, error: str | None) -> None:
        """Write deferred step rows and the run's final status in one transaction."""
        with self._store.write() as conn:
            sql.insert_steps(conn, self._deferred)
            sql.finish_run(conn, self.run_id, status=status, ended_at=now(), error=error)
        self._deferred = []
        if status == "failed" and self.failures and self.pipeline.on_failure is not None:
            self._call_handler(
                self.pipeline.on_failure, self.failures[0], f"pipeline {self.pipeline.name!r}"
            )

    def error_for(self, failure: _Failure) -> WellmlError:
        """The error that stands for a failed step: user code and timeouts are
        :class:`UserCodeError` (with the original exception as ``__cause__``)."""
        where = f"pipeline {self.pipeline.name!r} run {self.run_id}: step {failure.node!r}"
        reason = self.reasons.get(failure.node) or failure.error.summary()
        error: WellmlError
        if failure.error.kind in ("user", "timeout"):
            error = UserCodeError(f"{where} {reason}")
        elif failure.error.kind == "invalid":
            error = InvalidInput(f"{where}: {failure.error.message}")
        else:
            error = BackendUnavailable(f"{where} {reason}")
        error.__cause__ = failure.exception
        return error

    def run_row(self, executor_name: str, resumed_from: str | None) -> dict[str, Any]:
        """The row that starts the run."""
        import os
        import socket

        return {
            "id": self.run_id,
            "pipeline": self.pipeline.name,
            "pipeline_ref": self.pipeline.ref,
            "status": "running",
            "executor": executor_name,
            "params": self.params,
            "graph": [n.to_dict() for n in self.graph.nodes],
            "user": current_user(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": now(),
            "ended_at": None,
            "error": None,
            "resumed_from": resumed_from,
        }


def _format(exc: BaseException) -> str:
    import traceback

    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
