"""Pipelines: DAGs of typed steps with caching, retries, timeouts, conditions, quality gates
and resume, run in this process, in a process pool or on Ray.

    from wellml.pipelines import GateResult, gate, pipeline, step

    @step
    def load(n: int) -> pd.DataFrame: ...

    @pipeline
    def train(n: int = 100) -> None:
        data = load(n)
        ...

    run = ws.pipelines.run(train, params={"n": 500}, executor="process")
    ws.pipelines.schedule("train", cron="0 3 * * *")     # a declared pipeline, nightly
    ws.pipelines.scheduler().run_forever(interval=30)
"""

from wellml.pipelines.definition import (
    Condition,
    FromParam,
    FromStep,
    GateResult,
    Node,
    Pipeline,
    PipelineParam,
    Step,
    StepFailure,
    StepOptions,
    Value,
    after,
    gate,
    pipeline,
    step,
    when,
)
from wellml.pipelines.executors import (
    Executor,
    LocalExecutor,
    ProcessExecutor,
    RayExecutor,
    StepError,
    StepTask,
    TaskResult,
)
from wellml.pipelines.records import PipelineRun, StepRun
from wellml.pipelines.schedules import AppliedSchedule, Firing, Schedule, Scheduler
from wellml.pipelines.service import Pipelines

__all__ = [
    "AppliedSchedule",
    "Condition",
    "Executor",
    "Firing",
    "FromParam",
    "FromStep",
    "GateResult",
    "LocalExecutor",
    "Node",
    "Pipeline",
    "PipelineParam",
    "PipelineRun",
    "Pipelines",
    "ProcessExecutor",
    "RayExecutor",
    "Schedule",
    "Scheduler",
    "Step",
    "StepError",
    "StepFailure",
    "StepOptions",
    "StepRun",
    "StepTask",
    "TaskResult",
    "Value",
    "after",
    "gate",
    "pipeline",
    "step",
    "when",
]
