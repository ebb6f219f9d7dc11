"""The contract every pipeline executor passes (local, process pool, Ray, ...).

Subclass :class:`ExecutorContract` and provide an ``executor`` fixture::

    class TestProcess(ExecutorContract):
        @pytest.fixture
        def executor(self):
            with ProcessExecutor(2) as exe:
                yield exe

The steps below live at module level so that worker processes can import them by name.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wellml.pipelines.definition import Step, Value, step
from wellml.pipelines.executors import Executor, StepTask, TaskResult
from wellml.pipelines.values import StoredValue, load_value, store_value
from wellml.store.artifacts import ArtifactStore


@step
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@step
def count_rows(table: Any) -> int:
    """The number of rows of a DataFrame."""
    return len(table)


@step
def explode(message: str) -> int:
    """Raise a ValueError."""
    raise ValueError(message)


@step(timeout=0.5)
def sleep_for(seconds: float) -> float:
    """Sleep, then return how long."""
    time.sleep(seconds)
    return seconds


@step
def unsupported() -> Any:
    """Return something no output format can store."""
    return {1, 2, 3}


@step
def wrong_type() -> int:
    """Return a str although annotated int."""
    return "not a number"  # type: ignore[return-value]


@step(resources={"num_cpus": 1})
def one_cpu(x: int) -> int:
    """Double a number on one CPU."""
    return 2 * x


class ExecutorContract:
    """Subclass and provide an ``executor`` fixture yielding an open :class:`Executor`."""

    #: The longest an attempt with a 0.5 s timeout may take to be reported, generous enough
    #: for a loaded machine; the step would sleep for a minute otherwise.
    TIMEOUT_BOUND = 20.0

    @pytest.fixture
    def executor(self) -> Iterator[Executor]:
        raise NotImplementedError

    @pytest.fixture
    def store(self, tmp_path: Path) -> ArtifactStore:
        return ArtifactStore(str(tmp_path / "artifacts"))

    def _run(
        self,
        executor: Executor,
        store: ArtifactStore,
        st: Step[..., Any],
        timeout: float = 120,
        **inputs: Any,
    ) -> TaskResult:
        task = self._task(store, st, **inputs)
        return executor.submit(task).result(timeout=timeout)

    def _task(self, store: ArtifactStore, st: Step[..., Any], **inputs: Any) -> StepTask:
        return StepTask(
            run_id="contract",
            node=st.name,
            step=st,
            inputs={k: v if isinstance(v, StoredValue) else Value(v) for k, v in inputs.items()},
            artifacts_url=store.url,
            timeout=st.options.timeout,
            resources=dict(st.options.resources),
        )

    def test_is_an_executor_with_a_name(self, executor: Executor) -> None:
        assert isinstance(executor, Executor)
        assert isinstance(executor.name, str) and executor.name

    def test_runs_a_step_and_stores_its_output(
        self, executor: Executor, store: ArtifactStore
    ) -> None:
        result = self._run(executor, store, add, a=2, b=3)
        assert result.ok and result.error is None
        assert result.output is not None and result.output.format == "json"
        assert store.exists(result.output.digest)
        assert load_value(store, result.output) == 5
        assert result.node == "add" and result.attempt == 1
        assert result.started_at <= result.ended_at

    def test_reads_inputs_from_stored_outputs(
        self, executor: Executor, store: ArtifactStore
    ) -> None:
        pd = pytest.importorskip("pandas")
        stored = store_value(store, pd.DataFrame({"x": range(7)}), "input")
        result = self._run(executor, store, count_rows, table=stored)
        assert result.ok and result.output is not None
        assert load_value(store, result.output) == 7

    def test_equal_outputs_have_equal_digests(
        self, executor: Executor, store: ArtifactStore
    ) -> None:
        first = self._run(executor, store, add, a=1, b=4)
        second = self._run(executor, store, add, a=2, b=3)
        assert first.output is not None and second.output is not None
        assert first.output.digest == second.output.digest

    def test_a_raising_step_is_reported_not_raised(
        self, executor: Executor, store: ArtifactStore
    ) -> None:
        result = self._run(executor, store, explode, message="boom 42")
        assert not result.ok and result.output is None
        assert result.error is not None
        assert result.error.kind == "user" and result.error.retryable
        assert result.error.type == "ValueError" and result.error.message == "boom 42"
        assert "explode" in result.error.traceback and "boom 42" in result.error.traceback
        assert isinstance(result.exception, ValueError)
        assert str(result.exception) == "boom 42"

    def test_a_step_over_its_timeout_fails_in_time(
        self, executor: Executor, store: ArtifactStore
    ) -> None:
        began = time.monotonic()
        result = self._run(executor, store, sleep_for, seconds=60.0)
        assert time.monotonic() - began < self.TIMEOUT_BOUND
        assert not result.ok and result.error is not None
        assert result.error.kind == "timeout" and result.error.retryable
        assert "0.5" in result.error.message

    def test_a_step_within_its_timeout_succeeds(
        self, executor: Executor, store: ArtifactStore
    ) -> None:
        result = self._run(executor, store, sleep_for, seconds=0.01)
        assert result.ok and result.output is not None
        assert load_value(store, result.output) == 0.01

    def test_an_unstorable_output_is_invalid_and_not_retryable(
        self, executor: Executor, store: ArtifactStore
    ) -> None:
        result = self._run(executor, store, unsupported)
        assert result.error is not None
        assert result.error.kind == "invalid" and not result.error.retryable
        assert "supported outputs" in result.error.message

    def test_an_output_of_the_wrong_type_is_invalid(
        self, executor: Executor, store: ArtifactStore
    ) -> None:
        result = self._run(executor, store, wrong_type)
        assert result.error is not None and result.error.kind == "invalid"
        assert "annotated to return int" in result.error.message

    def test_many_tasks_all_complete_with_their_own_results(
        self, executor: Executor, store: ArtifactStore
    ) -> None:
        futures = [executor.submit(self._task(store, add, a=i, b=100)) for i in range(6)]
        results = [f.result(timeout=120) for f in futures]
        assert all(r.ok for r in results)
        assert [load_value(store, r.output) for r in results if r.output] == [
            100 + i for i in range(6)
        ]

    def test_resource_requests_are_honoured_or_ignored_not_refused(
        self, executor: Executor, store: ArtifactStore
    ) -> None:
        result = self._run(executor, store, one_cpu, x=21)
        assert result.ok and result.output is not None
        assert load_value(store, result.output) == 42
