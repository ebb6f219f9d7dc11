"""Executors: where step attempts run.

An executor is a small protocol: :meth:`Executor.submit` takes a :class:`StepTask` and returns a
future that always resolves to a :class:`TaskResult` (success or failure, never an exception),
and :meth:`Executor.close` releases what it holds. The orchestrator in
:mod:`wellml.pipelines.runner` decides what to run, retries, caches and records; an executor
only runs one attempt and enforces its timeout. Workers read inputs from and write outputs to
the artifact store themselves, so only digests travel between processes; they never touch the
metadata store.

==========  ======================================================  ==========================
executor    where an attempt runs                                   how a timeout is enforced
==========  ======================================================  ==========================
local       in this process, one step at a time; a step with a      the child process is
            timeout runs in a child process                         killed at the deadline
process     a pool of worker processes (``max_workers``); steps     a timer signal in the
            on independent branches run in parallel                 worker interrupts the step
ray         Ray tasks with the step's resource requests, on a       a timer signal in the Ray
            local Ray or a cluster (``ray://`` address)             worker; if the step ignores
                                                                    it, the worker process
                                                                    ends 5 s later
==========  ======================================================  ==========================
"""

from __future__ import annotations

import contextlib
import copy
import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from wellml.errors import BackendUnavailable, InvalidInput
from wellml.pipelines.definition import Step, Value, type_name, value_fits
from wellml.pipelines.values import StoredValue, load_value, store_value
from wellml.store.artifacts import ArtifactStore

EXECUTORS = ("local", "process", "ray")


@dataclass(frozen=True)
class StepTask:
    """One attempt of one step, as an executor receives it.

    Attributes:
        run_id: the pipeline run.
        node: the step's name in the pipeline.
        step: the step (pickled by reference: workers import it by module and name).
        inputs: each argument: a stored output of an upstream step, or a literal value.
        artifacts_url: the artifact store workers read inputs from and write the output to.
        attempt: 1 for the first attempt.
        timeout: seconds the attempt may take (None: no limit).
        resources: the step's resource requests.
    """

    run_id: str
    node: str
    step: Step[..., Any]
    inputs: Mapping[str, StoredValue | Value]
    artifacts_url: str
    attempt: int = 1
    timeout: float | None = None
    resources: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class StepError:
    """Why an attempt failed.

    Attributes:
        kind: ``user`` (the step raised), ``timeout``, ``invalid`` (an output that cannot be
            stored or does not match the step's annotation, or a step this executor cannot
            run as defined) or ``executor`` (the executor or a worker failed).
        type: the exception's class name.
        message: the exception's message.
        traceback: the formatted traceback.
    """

    kind: str
    type: str
    message: str
    traceback: str = ""

    @property
    def retryable(self) -> bool:
        """Whether another attempt could succeed (not when the step is invalid)."""
        return self.kind != "invalid"

    def summary(self) -> str:
        """One line: ``Type: message``."""
        return f"{self.type}: {self.message}" if self.message else self.type


@dataclass(frozen=True)
class TaskResult:
    """The outcome of one attempt; ``exception`` is the original when it could travel back."""

    node: str
    attempt: int
    started_at: float
    ended_at: float
    output: StoredValue | None = None
    error: StepError | None = None
    exception: BaseException | None = field(default=None, compare=False)
    pid: int = 0

    @property
    def ok(self) -> bool:
        """Whether the attempt succeeded."""
        return self.error is None and self.output is not None


@runtime_checkable
class Executor(Protocol):
    """Runs step attempts; see the module docstring for the contract."""

    name: str

    def submit(self, task: StepTask) -> Future[TaskResult]:
        """Start one attempt; the future resolves to its result, never to an exception."""
        ...

    def close(self) -> None:
        """Release workers; attempts still running are abandoned."""
        ...


# --- running one attempt (in whichever process the executor chose) ---------------------------

_STORES: dict[str, ArtifactStore] = {}
_STORES_LOCK = threading.Lock()


def _artifact_store(url: str) -> ArtifactStore:
    with _STORES_LOCK:
        store = _STORES.get(url)
        if store is None:
            store = _STORES[url] = ArtifactStore(url)
        return store


class TimeLimitExceeded(BaseException):
    """Raised inside the code under :func:`time_limit` when its time is up; a BaseException
    so that ``except Exception`` in user code does not swallow it.

    Attributes:
        limit: the :class:`TimeLimit` that ran out (None when the time was up before the
            block started).
    """

    def __init__(self, message: str, limit: TimeLimit | None = None) -> None:
        super().__init__(message)
        self.limit = limit


@dataclass(frozen=True, eq=False)
class TimeLimit:
    """The handle :func:`time_limit` yields: tells its own expiry from an enclosing one's.

    Attributes:
        seconds: the limit; ``enforced`` is False where no timer signal can interrupt the
            block (not the main thread, or no ``setitimer`` on the platform).
    """

    seconds: float | None
    enforced: bool

    def owns(self, exc: TimeLimitExceeded) -> bool:
        """Whether ``exc`` is this limit running out (not an enclosing limit's)."""
        return exc.limit is self


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[TimeLimit]:
    """Interrupt the block with :class:`TimeLimitExceeded` after ``seconds`` (a timer signal).

    Limits nest: an enclosing limit that runs out first still interrupts the block with its
    own exception, and is re-armed afterwards. Only the main thread of a process on a platform
    with ``setitimer`` can be interrupted; elsewhere, and with ``seconds=None``, the block runs
    without a limit. Code stuck in a native call is interrupted when it returns to Python.

    Raises:
        TimeLimitExceeded: ``seconds`` is 0 or less (the time is already up).
    """
    enforced = (
        seconds is not None
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    limit = TimeLimit(seconds, enforced)
    if seconds is not None and seconds <= 0:
        raise TimeLimitExceeded("the time limit was up before the work started", limit)
    if not enforced or seconds is None:
        yield limit
        return
    previous = signal.getsignal(signal.SIGALRM)
    outer_left = signal.getitimer(signal.ITIMER_REAL)[0]
    started = time.monotonic()
    outer_at = started + outer_left if outer_left > 0 else None

    def _fire(signum: int, frame: Any) -> None:
        if outer_at is not None and time.monotonic() >= outer_at - 1e-3 and callable(previous):
            previous(signum, frame)  # the enclosing limit's handler raises its own exception
        raise TimeLimitExceeded(f"the time limit of {seconds:g} s ran out", limit)

    signal.signal(signal.SIGALRM, _fire)
    signal.setitimer(signal.ITIMER_REAL, min(seconds, outer_left) if outer_left > 0 else seconds)
    try:
        yield limit
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)
        if outer_at is not None:
            signal.setitimer(signal.ITIMER_REAL, max(outer_at - time.monotonic(), 1e-3))


@contextlib.contextmanager
def _watchdog(seconds: float | None) -> Iterator[None]:
    # The last resort when the timer signal cannot interrupt the step (native code, or not
    # the main thread): end the whole worker process, which the caller reports as a timeout.
    if seconds is None:
        yield
        return
    timer = threading.Timer(seconds, os._exit, args=(_WATCHDOG_EXIT,))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


_WATCHDOG_EXIT = 124
_WATCHDOG_GRACE = 5.0


def execute(
    task: StepTask, *, portable: bool = True, alarm: bool = False, watchdog: bool = False
) -> TaskResult:
    """Run one attempt here: load the inputs, call the step, store the output.

    Args:
        portable: the result will cross a process boundary: keep the original exception only
            if it survives pickling.
        alarm: enforce ``task.timeout`` with a timer signal (main thread only).
        watchdog: also end this process a few seconds after ``task.timeout`` if the step has
            not returned by then (for workers whose executor replaces dead processes).

    Returns:
        The result; failures are described in it, never raised.
    """
    started = time.time()
    hard_limit = task.timeout + _WATCHDOG_GRACE if watchdog and task.timeout is not None else None
    with _watchdog(hard_limit):
        return _execute(task, started, portable, alarm)


def _execute(task: StepTask, started: float, portable: bool, alarm: bool) -> TaskResult:
    what = f"step {task.node!r}"
    try:
        store = _artifact_store(task.artifacts_url)
        kwargs = {
            name: load_value(store, v) if isinstance(v, StoredValue) else copy.deepcopy(v.value)
            for name, v in task.inputs.items()
        }
    except Exception as exc:
        return _failure(task, started, "executor", exc, portable)
    try:
        with time_limit(task.timeout if alarm else None):
            value = task.step.fn(**kwargs)
    except TimeLimitExceeded:
        return _timed_out(task, started)
    except Exception as exc:
        return _failure(task, started, "user", exc, portable, skip_frames=1)
    try:
        declared = task.step.output_type
        if not task.step.options.gate and not value_fits(value, declared):
            raise InvalidInput(
                f"{what} is annotated to return {type_name(declared)} but returned "
                f"{type(value).__name__}"
            )
        if task.step.options.gate and not _gate_value(value):
            raise InvalidInput(
                f"gate {task.node!r} must return a GateResult or a bool, not {type(value).__name__}"
            )
        stored = store_value(store, value, what)
    except InvalidInput as exc:
        return _failure(task, started, "invalid", exc, portable)
    except Exception as exc:
        return _failure(task, started, "executor", exc, portable)
    return TaskResult(task.node, task.attempt, started, time.time(), output=stored, pid=os.getpid())


def _gate_value(value: Any) -> bool:
    from wellml.pipelines.definition import GateResult

    return isinstance(value, (GateResult, bool))


def _failure(
    task: StepTask,
    started: float,
    kind: str,
    exc: BaseException,
    portable: bool,
    skip_frames: int = 0,
) -> TaskResult:
    tb = exc.__traceback__
    for _ in range(skip_frames):
        if tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    error = StepError(kind, type(exc).__name__, str(exc), text[-20000:])
    original: BaseException | None = exc
    if portable:
        original = _portable(exc)
    return TaskResult(
        task.node,
        task.attempt,
        started,
        time.time(),
        error=error,
        exception=original,
        pid=os.getpid(),
    )


def _portable(exc: BaseException) -> BaseException | None:
    try:
        copy_ = pickle.loads(pickle.dumps(exc))
    except Exception:
        return None
    return copy_ if isinstance(copy_, BaseException) else None


def _timed_out(task: StepTask, started: float, pid: int = 0) -> TaskResult:
    return TaskResult(
        task.node,
        task.attempt,
        started,
        time.time(),
        error=StepError("timeout", "Timeout", f"timed out after {task.timeout:g} s"),
        pid=pid or os.getpid(),
    )


def _executor_failure(
    task: StepTask, started: float, message: str, *, kind: str = "executor"
) -> TaskResult:
    return TaskResult(
        task.node,
        task.attempt,
        started,
        time.time(),
        error=StepError(kind, "ExecutorError", message),
    )


def _exit_with_parent(interval: float = 0.2) -> None:
    """End this worker process soon after the process that started it has died (killed
    with SIGKILL, say), instead of lingering as an orphan."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="wellml-parent-watch", daemon=True).start()


def _default_start_method() -> str:
    # Forking reuses the modules this process has imported, so a worker starts in
    # milliseconds; where there is no fork, workers import what they need.
    return "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


def check_importable(st: Step[..., Any]) -> str | None:
    """Why a worker process could not import the step, or None if it can."""
    module, qualname = st.fn.__module__, st.fn.__qualname__
    if "<locals>" in qualname or "<lambda>" in qualname:
        return (
            f"step {st.name!r} ({module}:{qualname}) is defined inside a function; worker "
            "processes import steps by name, so define it at module level"
        )
    try:
        import importlib

        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        return f"step {st.name!r}: worker processes cannot import {module}:{qualname} ({exc})"
    fn = obj.fn if isinstance(obj, Step) else obj
    if fn is not st.fn:
        return f"step {st.name!r}: {module}:{qualname} names another object than the step"
    return None


# --- local -------------------------------------------------------------------------------------


class LocalExecutor:
    """Runs steps one at a time in this process; a step with a timeout runs in a child process
    that is killed when the timeout passes."""

    name = "local"

    def __init__(self, *, start_method: str | None = None) -> None:
        self._ctx: Any = multiprocessing.get_context(start_method or _default_start_method())

    def submit(self, task: StepTask) -> Future[TaskResult]:
        """Run the attempt now; the returned future is already resolved."""
        future: Future[TaskResult] = Future()
        if task.timeout is None:
            future.set_result(execute(task, portable=False))
        else:
            future.set_result(self._in_child(task))
        return future

    def _in_child(self, task: StepTask) -> TaskResult:
        started = time.time()
        if self._ctx.get_start_method() != "fork":
            problem = check_importable(task.step)
            if problem:
                return _executor_failure(task, started, problem, kind="invalid")
        receiver, sender = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(target=_child_main, args=(task, sender), daemon=True)
        proc.start()
        sender.close()
        result: TaskResult | None = None
        try:
            assert task.timeout is not None
            if receiver.poll(task.timeout):
                with contextlib.suppress(EOFError):
                    result = receiver.recv()
            else:
                proc.kill()
                result = _timed_out(task, started, proc.pid or 0)
        finally:
            receiver.close()
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join()
        if result is None:
            return _executor_failure(
                task, started, f"the step's process exited with code {proc.exitcode}"
            )
        return result

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _child_main(task: StepTask, sender: Any) -> None:
    _exit_with_parent()
    result = execute(task, portable=True)
    try:
        sender.send(result)
    except Exception:
        sender.send(
            TaskResult(
                result.node,
                result.attempt,
                result.started_at,
                result.ended_at,
                output=result.output,
                error=result.error,
                pid=result.pid,
            )
        )
    finally:
        sender.close()


# --- process pool ------------------------------------------------------------------------------


class ProcessExecutor:
    """Runs steps in a pool of worker processes, so independent branches run in parallel.

    A step's timeout is enforced inside the worker by a timer signal, which interrupts Python
    code and sleeps; a step stuck inside native code that never returns to the interpreter is
    interrupted only when it does.
    """

    name = "process"

    def __init__(self, max_workers: int | None = None, *, start_method: str | None = None) -> None:
        if max_workers is not None and max_workers < 1:
            raise InvalidInput("max_workers must be at least 1")
        self.max_workers = max_workers or os.cpu_count() or 1
        self._start_method = start_method or _default_start_method()
        self._pool = ProcessPoolExecutor(
            max_workers=self.max_workers,
            mp_context=multiprocessing.get_context(self._start_method),
            initializer=_exit_with_parent,
        )
        self._running: set[Future[TaskResult]] = set()
        self._lock = threading.Lock()

    def submit(self, task: StepTask) -> Future[TaskResult]:
        """Queue the attempt on the pool."""
        started = time.time()
        out: Future[TaskResult] = Future()
        problem = check_importable(task.step)
        if problem:
            out.set_result(_executor_failure(task, started, problem, kind="invalid"))
            return out
        try:
            inner = self._pool.submit(_pool_main, task)
        except Exception as exc:  # a broken or shut-down pool
            out.set_result(_executor_failure(task, started, f"process pool: {exc}"))
            return out

        with self._lock:
            self._running.add(inner)

        def _done(f: Future[TaskResult]) -> None:
            with self._lock:
                self._running.discard(f)
            try:
                out.set_result(f.result())
            except BaseException as exc:
                out.set_result(
                    _executor_failure(
                        task, started, f"worker process failed: {type(exc).__name__}: {exc}"
                    )
                )

        inner.add_done_callback(_done)
        return out

    def close(self) -> None:
        """Stop the workers; queued attempts are cancelled and running ones abandoned."""
        # Worker processes are not part of the pool's public interface, but a step still
        # running when the run is interrupted must not outlive it.
        if not self._running:
            self._pool.shutdown(wait=True)
            return
        workers = list((getattr(self._pool, "_processes", None) or {}).values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        for proc in workers:
            if proc.is_alive():
                proc.terminate()
        for proc in workers:
            proc.join(5)

    def __enter__(self) -> ProcessExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pool_main(task: StepTask) -> TaskResult:
    return execute(task, portable=True, alarm=True)


# --- Ray ---------------------------------------------------------------------------------------


def ray_options(resources: Mapping[str, float]) -> dict[str, Any]:
    """Ray task options for a step's resource requests (unknown names are custom resources)."""
    opts: dict[str, Any] = {}
    custom: dict[str, float] = {}
    for key, value in resources.items():
        if key in ("num_cpus", "num_gpus"):
            opts[key] = value
        elif key == "memory":
            opts["memory"] = int(value)
        else:
            custom[key] = value
    if custom:
        opts["resources"] = custom
    return opts


def import_ray() -> Any:
    """The ``ray`` module.

    Raises:
        BackendUnavailable: Ray is not installed.
    """
    try:
        import ray
    except ImportError:
        raise BackendUnavailable("the Ray executor needs Ray: pip install 'wellml[ray]'") from None
    return ray


class RayExecutor:
    """Runs each attempt as a Ray task that requests the step's resources.

    A timeout counts from when the task starts on a worker, not while it waits for resources.

    Connects to Ray at ``address`` (``ray://host:10001``, ``auto``), or starts a local Ray
    with ``num_cpus`` when Ray is not initialised yet. Retries are the pipeline's, not Ray's.
    Workers import steps by module name: on a cluster, ship your code with ``runtime_env``
    (e.g. ``{"working_dir": "."}``).

    Raises:
        BackendUnavailable: Ray is not installed or cannot be reached.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        runtime_env: Mapping[str, Any] | None = None,
        shutdown: bool = False,
    ) -> None:
        ray = import_ray()
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {
                "include_dashboard": False,
                "logging_level": logging.WARNING,
                "configure_logging": True,
            }
            if address:
                kwargs["address"] = address
            else:
                kwargs["num_cpus"] = num_cpus
            if runtime_env:
                kwargs["runtime_env"] = dict(runtime_env)
            try:
                ray.init(**kwargs)
            except Exception as exc:
                raise BackendUnavailable(f"cannot start or reach Ray at {address}: {exc}") from exc
            self._started = True
        self._shutdown = shutdown and self._started
        self._remote = ray.remote(_ray_main)

    def submit(self, task: StepTask) -> Future[TaskResult]:
        """Start the attempt as a Ray task."""
        started = time.time()
        out: Future[TaskResult] = Future()
        lock = threading.Lock()

        def settle(result: TaskResult) -> bool:
            with lock:
                if out.done():
                    return False
                out.set_result(result)
                return True

        problem = check_importable(task.step)
        if problem:
            settle(_executor_failure(task, started, problem, kind="invalid"))
            return out
        try:
            ref = self._remote.options(
                **ray_options(task.resources), max_retries=0, retry_exceptions=False
            ).remote(task)
        except Exception as exc:
            settle(_executor_failure(task, started, f"Ray: {type(exc).__name__}: {exc}"))
            return out

        def _done(f: Future[Any]) -> None:
            try:
                settle(f.result())
            except BaseException as exc:
                if task.timeout is not None and time.time() - started >= task.timeout:
                    # The worker's watchdog ended the process of a step that ignored its timer.
                    settle(_timed_out(task, started))
                else:
                    settle(_executor_failure(task, started, f"Ray task failed: {exc}"))

        ref.future().add_done_callback(_done)
        return out

    def close(self) -> None:
        """Shut Ray down if this executor started it and was asked to."""
        if self._shutdown:
            self._ray.shutdown()

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ray_main(task: StepTask) -> TaskResult:
    return execute(task, portable=True, alarm=True, watchdog=True)


# --- choosing ----------------------------------------------------------------------------------


def make_executor(
    spec: str | Executor,
    *,
    max_workers: int | None = None,
    ray_address: str | None = None,
) -> tuple[Executor, bool]:
    """An executor from a name (``local``, ``process``, ``ray``, or a ``ray://`` address).

    Returns:
        The executor, and whether the caller made it (and so should close it).

    Raises:
        InvalidInput: an unknown executor name.
        BackendUnavailable: Ray is asked for but not installed or reachable.
    """
    if not isinstance(spec, str):
        if not isinstance(spec, Executor):
            raise InvalidInput(f"not an executor: {spec!r}")
        return spec, False
    if spec == "local":
        return LocalExecutor(), True
    if spec == "process":
        return ProcessExecutor(max_workers), True
    if spec == "ray" or spec.startswith("ray://"):
        address = spec if spec.startswith("ray://") else ray_address
        return RayExecutor(address, num_cpus=max_workers), True
    raise InvalidInput(f"unknown executor {spec!r}: use {', '.join(EXECUTORS)} or a ray:// address")
