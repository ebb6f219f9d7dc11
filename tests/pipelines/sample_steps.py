"""Steps and pipelines the pipeline tests run; at module level so worker processes (and a
killed subprocess) can import them. Steps count their executions in files under
``marker_dir``, which works whichever process runs them."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from wellml.pipelines import GateResult, StepFailure, after, gate, pipeline, step, when


def tick(marker_dir: str, name: str) -> int:
    """Count one execution of ``name``; return how many there have been."""
    path = Path(marker_dir) / f"{name}.count"
    with path.open("a") as fh:
        fh.write("x\n")
    return len(path.read_text().splitlines())


# --- a small chain -----------------------------------------------------------------------------


@step
def make_numbers(n: int, marker_dir: str) -> list[int]:
    tick(marker_dir, "make_numbers")
    return list(range(n))


@step
def total(numbers: list[int], marker_dir: str) -> float:
    tick(marker_dir, "total")
    return float(sum(numbers))


@step
def scale(value: float, factor: float, marker_dir: str) -> float:
    tick(marker_dir, "scale")
    return value * factor


@pipeline
def arithmetic(marker_dir: str, n: int = 5, factor: float = 2.0) -> None:
    """make_numbers -> total -> scale."""
    numbers = make_numbers(n, marker_dir)
    value = total(numbers, marker_dir)
    scale(value, factor, marker_dir)


# --- content-addressed inputs ------------------------------------------------------------------


@step(cache=False)
def read_text(path: str, marker_dir: str) -> str:
    tick(marker_dir, "read_text")
    return Path(path).read_text()


@step
def count_words(text: str, marker_dir: str) -> int:
    tick(marker_dir, "count_words")
    return len(text.split())


@pipeline
def words(path: str, marker_dir: str) -> None:
    """read_text (never cached) -> count_words."""
    count_words(read_text(path, marker_dir), marker_dir)


# --- data frames -------------------------------------------------------------------------------


@step
def frame(rows: int) -> pd.DataFrame:
    return pd.DataFrame({"x": range(rows), "y": [f"r{i}" for i in range(rows)]})


@step
def describe(data: pd.DataFrame) -> dict[str, float]:
    return {"rows": float(len(data)), "x_mean": float(data["x"].mean())}


@step
def wants_text(text: str) -> int:
    return len(text)


@pipeline
def frames(rows: int = 4) -> None:
    """frame -> describe."""
    describe(frame(rows))


@pipeline
def mistyped() -> None:
    """A DataFrame fed to a step that wants a str."""
    wants_text(frame(3))


@pipeline
def missing_input() -> None:
    """describe called without its data."""
    describe()  # type: ignore[call-arg]


@step
def returns_a_set() -> list[int]:
    return {1, 2}  # type: ignore[return-value]


@step(retries=2, backoff=0.01)
def unstorable() -> object:
    return {1, 2}


@pipeline
def bad_output() -> None:
    """A step whose output cannot be stored."""
    unstorable()


# --- retries, timeouts, failures ---------------------------------------------------------------


@step(retries=2, backoff=0.05)
def flaky(marker_dir: str, fail_times: int) -> str:
    attempt = tick(marker_dir, "flaky")
    if attempt <= fail_times:
        raise ConnectionError(f"attempt {attempt} failed")
    return f"succeeded on attempt {attempt}"


@pipeline
def flaky_pipeline(marker_dir: str, fail_times: int = 2) -> None:
    """One step that fails ``fail_times`` times before it works."""
    flaky(marker_dir, fail_times)


@step(timeout=0.5)
def sleepy(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@step
def after_sleep(seconds: float) -> float:
    return seconds


@pipeline
def slow_pipeline(seconds: float = 60.0) -> None:
    """A step that overruns its 0.5 s timeout, and one that needs it."""
    after_sleep(sleepy(seconds))


STEP_FAILURES: list[StepFailure] = []
PIPELINE_FAILURES: list[StepFailure] = []


@step(on_failure=STEP_FAILURES.append)
def explode(message: str) -> int:
    raise ValueError(message)


@step
def independent(marker_dir: str) -> int:
    return tick(marker_dir, "independent")


@step
def consume(x: int) -> int:
    return x


@pipeline(on_failure=PIPELINE_FAILURES.append)
def exploding(marker_dir: str, message: str = "boom") -> None:
    """A failing step, a step that needs it, and an independent one."""
    consume(explode(message))
    independent(marker_dir)


# --- conditions and gates ----------------------------------------------------------------------


@step
def score(value: float) -> float:
    return value


@step
def celebrate(s: float, marker_dir: str) -> str:
    tick(marker_dir, "celebrate")
    return f"score {s}"


@step
def announce(message: str) -> str:
    return message.upper()


@step
def always(s: float) -> float:
    return s


@pipeline
def conditional(marker_dir: str, value: float = 0.9) -> None:
    """celebrate -> announce only when the score is above 0.5; always regardless."""
    s = score(value)
    with when(s, lambda v: v > 0.5, "score above 0.5"):
        announce(celebrate(s, marker_dir))
    always(s)


@step
def evaluate(candidate: float) -> dict[str, float]:
    return {"auc": candidate}


@gate
def beats_baseline(metrics: dict[str, float], baseline: float, margin: float) -> GateResult:
    return GateResult.beats(metrics["auc"], baseline, margin=margin, metric="auc")


@step
def register(metrics: dict[str, float], marker_dir: str) -> str:
    tick(marker_dir, "register")
    return f"registered a model with auc {metrics['auc']}"


@step
def notify(message: str) -> str:
    return message


@pipeline
def promote(marker_dir: str, candidate: float, baseline: float = 0.8, margin: float = 0.02) -> None:
    """Register the candidate only if it beats the baseline by the margin."""
    metrics = evaluate(candidate)
    ok = beats_baseline(metrics, baseline, margin)
    with after(ok):
        notify(register(metrics, marker_dir))


# --- resume after a kill -----------------------------------------------------------------------


@step
def first(marker_dir: str) -> int:
    tick(marker_dir, "first")
    return 1


@step
def second(x: int, marker_dir: str) -> int:
    tick(marker_dir, "second")
    return x + 1


@step
def third(x: int, marker_dir: str) -> int:
    """Blocks while the file ``hold`` exists in ``marker_dir``."""
    tick(marker_dir, "third")
    hold = Path(marker_dir) / "hold"
    (Path(marker_dir) / "third.started").touch()
    deadline = time.time() + 120
    while hold.exists() and time.time() < deadline:
        time.sleep(0.05)
    return x + 1


@pipeline
def resumable(marker_dir: str) -> None:
    """first -> second -> third (which can be held)."""
    third(second(first(marker_dir), marker_dir), marker_dir)


# --- parallel branches -------------------------------------------------------------------------


@step(cache=False)
def nap(seconds: float, label: str) -> str:
    time.sleep(seconds)
    return label


@step
def join(a: str, b: str) -> str:
    return a + b


@pipeline
def two_naps(seconds: float = 1.0) -> None:
    """Two independent naps, then a join."""
    join(nap(seconds, "a"), nap(seconds, "b"))


# --- resources (for Ray) -----------------------------------------------------------------------


@step(resources={"num_cpus": 1})
def square(x: int) -> int:
    return x * x


@step(resources={"num_cpus": 1})
def negate(x: int) -> int:
    return -x


@step
def add_up(a: int, b: int) -> int:
    return a + b


@pipeline
def diamond(x: int = 3) -> None:
    """square and negate of x in parallel, then their sum."""
    add_up(square(x), negate(x))


@step(resources={"num_cpus": 2}, cache=False)
def assigned_resources() -> dict[str, float]:
    """What Ray gave this task."""
    import ray

    return {k: float(v) for k, v in ray.get_runtime_context().get_assigned_resources().items()}


@pipeline
def resources_seen() -> None:
    """One step that reports the resources it was given."""
    assigned_resources()


@pipeline
def broken_condition(value: float = 1.0) -> None:
    """A condition whose predicate raises."""
    s = score(value)
    with when(s, lambda v: v["missing"], "looks up a key a float does not have"):
        always(s)


# --- scheduled pipelines -----------------------------------------------------------------------


@step(cache=False)
def note_dataset(dataset: str, marker_dir: str) -> str:
    tick(marker_dir, f"dataset-{dataset}")
    return dataset


@pipeline
def on_data(marker_dir: str, dataset: str = "none") -> None:
    """note_dataset, never cached: one marker line per run and dataset version."""
    note_dataset(dataset, marker_dir)
