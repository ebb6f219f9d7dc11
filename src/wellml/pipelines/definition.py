"""Steps and pipelines: typed Python functions wired into a DAG that is checked before it runs.

A step is a function decorated with :func:`step`; a pipeline is a function decorated with
:func:`pipeline` whose body calls steps and passes one step's output to another. Calling the
pipeline body does not run anything: each step call inside it records a node and returns a
placeholder for the step's output, and the nodes form the graph that
:meth:`Pipeline.graph` validates (unknown or missing inputs, cycles, and outputs whose
annotated type does not fit the consumer's annotated input).
"""

from __future__ import annotations

import ast
import contextvars
import functools
import hashlib
import importlib
import inspect
import json
import math
import textwrap
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Generic, ParamSpec, TypeVar, overload

from wellml.errors import InvalidInput
from wellml.names import check_name

P = ParamSpec("P")
R = TypeVar("R")

_RESOURCE_KEYS = ("num_cpus", "num_gpus", "memory")


# --- gate results ------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateResult:
    """What a quality gate decided: pass or fail, and why."""

    passed: bool
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def beats(
        cls,
        candidate: float,
        baseline: float,
        *,
        margin: float = 0.0,
        metric: str = "score",
        higher_is_better: bool = True,
    ) -> GateResult:
        """Pass when ``candidate`` beats ``baseline`` by at least ``margin``.

        Args:
            candidate: the new model's metric value.
            baseline: the value to beat (e.g. the production model's).
            margin: how much better the candidate must be (in the metric's units).
            metric: the metric's name, for the reason text.
            higher_is_better: False for losses and errors.

        Returns:
            A failed result when either value is NaN.
        """
        cand, base = float(candidate), float(baseline)
        gain = cand - base if higher_is_better else base - cand
        details = {
            "metric": metric,
            "candidate": cand,
            "baseline": base,
            "margin": margin,
            "gain": gain,
        }
        if math.isnan(gain):
            return cls(False, f"{metric} is NaN (candidate {cand}, baseline {base})", details)
        passed = gain >= margin
        verb = "beats" if passed else "does not beat"
        reason = (
            f"candidate {metric} {cand:.6g} {verb} baseline {base:.6g} "
            f"by the margin {margin:.6g} (difference {gain:+.6g})"
        )
        return cls(passed, reason, details)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return {"passed": self.passed, "reason": self.reason, "details": self.details}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateResult:
        """Rebuild from :meth:`to_dict` output."""
        return cls(bool(data["passed"]), str(data.get("reason", "")), dict(data.get("details", {})))


# --- steps -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepFailure:
    """What a failure handler is told about a step that failed for good."""

    run_id: str
    pipeline: str
    step: str
    error: BaseException
    traceback: str
    attempts: int


FailureHandler = Callable[[StepFailure], object]


@dataclass(frozen=True)
class StepOptions:
    """How a step runs: retries, timeout, caching, resources, failure handling.

    Attributes:
        name: the step's name in a pipeline (default: the function's name).
        retries: how many times a failed attempt is tried again.
        backoff: seconds before the first retry; each further retry waits twice as long.
        max_backoff: the longest wait between two attempts.
        timeout: seconds one attempt may take before it fails (None: no limit).
        cache: reuse the outputs of an earlier run with the same cache key.
        resources: what one attempt needs (``num_cpus``, ``num_gpus``, ``memory`` in bytes,
            or custom resource names); the Ray executor schedules by them.
        version: bump it to invalidate cached outputs when code the step calls has changed.
        gate: the step is a quality gate: a failed result blocks every step after it.
        on_failure: called with a :class:`StepFailure` when the step fails for good.
    """

    name: str
    retries: int = 0
    backoff: float = 1.0
    max_backoff: float = 60.0
    timeout: float | None = None
    cache: bool = True
    resources: Mapping[str, float] = field(default_factory=dict)
    version: str = ""
    gate: bool = False
    on_failure: FailureHandler | None = None

    def __post_init__(self) -> None:
        check_name(self.name, "step name")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise InvalidInput(f"step {self.name!r}: retries must be an integer >= 0")
        if not _number(self.backoff) or self.backoff < 0:
            raise InvalidInput(f"step {self.name!r}: backoff must be a number >= 0")
        if not _number(self.max_backoff) or self.max_backoff < 0:
            raise InvalidInput(f"step {self.name!r}: max_backoff must be a number >= 0")
        if self.timeout is not None and (not _number(self.timeout) or self.timeout <= 0):
            raise InvalidInput(f"step {self.name!r}: timeout must be a number of seconds > 0")
        if not isinstance(self.resources, Mapping):
            raise InvalidInput(f"step {self.name!r}: resources must be a mapping")
        for key, value in self.resources.items():
            if not isinstance(key, str) or not _number(value) or value < 0:
                raise InvalidInput(
                    f"step {self.name!r}: resource {key!r} must be a number >= 0, not {value!r}"
                )
        if self.on_failure is not None and not callable(self.on_failure):
            raise InvalidInput(f"step {self.name!r}: on_failure must be callable")

    def backoff_delays(self) -> list[float]:
        """The waits before each retry: ``backoff``, doubling, capped at ``max_backoff``."""
        return [min(self.backoff * 2**i, self.max_backoff) for i in range(self.retries)]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class Step(Generic[P, R]):
    """A function that runs as one step of a pipeline.

    Called inside a pipeline body it records a node and returns a placeholder for its output;
    called anywhere else it simply calls the function, so steps can be unit-tested directly.
    """

    def __init__(self, fn: Callable[P, R], options: StepOptions) -> None:
        if not inspect.isfunction(fn):
            raise InvalidInput(f"a step must be a plain function, not {type(fn).__name__}")
        if inspect.iscoroutinefunction(fn) or inspect.isgeneratorfunction(fn):
            raise InvalidInput(
                f"step {options.name!r}: async and generator functions can't be steps"
            )
        for p in inspect.signature(fn).parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY):
                raise InvalidInput(
                    f"step {options.name!r}: *args, **kwargs and positional-only inputs are "
                    "not supported; name every input"
                )
        self.fn = fn
        self.options = options
        functools.update_wrapper(self, fn)

    @property
    def name(self) -> str:
        """The step's name."""
        return self.options.name

    @property
    def function_ref(self) -> str:
        """``module:qualname`` of the function."""
        return f"{self.fn.__module__}:{self.fn.__qualname__}"

    @functools.cached_property
    def signature(self) -> inspect.Signature:
        """The function's signature."""
        return inspect.signature(self.fn)

    @functools.cached_property
    def hints(self) -> dict[str, Any]:
        """The function's resolved annotations (unresolvable ones count as ``Any``)."""
        try:
            return typing.get_type_hints(self.fn, include_extras=False)
        except Exception:
            # A name the annotations use but the module no longer has: check nothing.
            return {}

    @property
    def output_type(self) -> Any:
        """The annotated return type (``Any`` when not annotated)."""
        return self.hints.get("return", Any)

    def input_type(self, name: str) -> Any:
        """The annotated type of input ``name`` (``Any`` when not annotated)."""
        return self.hints.get(name, Any)

    @functools.cached_property
    def code_digest(self) -> str:
        """A digest of the function's code: its syntax tree without decorators, docstring,
        comments or formatting, so only a change to what the code does changes it."""
        return code_digest(self.fn)

    def with_options(self, **changes: Any) -> Step[P, R]:
        """A copy of this step with some options changed (e.g. ``name=`` to use one step
        twice in a pipeline, or ``retries=``).

        Raises:
            InvalidInput: an unknown option or an invalid value.
        """
        known = {f for f in StepOptions.__dataclass_fields__}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise InvalidInput(f"step {self.name!r}: unknown option(s) {', '.join(unknown)}")
        return Step(self.fn, replace(self.options, **changes))

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        trace = _TRACE.get()
        if trace is None:
            return self.fn(*args, **kwargs)
        return typing.cast(R, trace.add(self, args, kwargs))

    def __reduce__(self) -> tuple[Any, ...]:
        # Worker processes import the function by name instead of unpickling code.
        opts = {
            k: getattr(self.options, k)
            for k in ("name", "retries", "backoff", "max_backoff", "timeout", "cache", "gate")
        }
        opts["resources"] = dict(self.options.resources)
        opts["version"] = self.options.version
        return (_step_by_ref, (self.fn.__module__, self.fn.__qualname__, opts))

    def __repr__(self) -> str:
        return f"Step({self.name!r}, {self.function_ref})"


def _step_by_ref(module: str, qualname: str, options: dict[str, Any]) -> Step[Any, Any]:
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    fn = obj.fn if isinstance(obj, Step) else obj
    return Step(fn, StepOptions(**options))


@overload
def step(fn: Callable[P, R], /) -> Step[P, R]: ...


@overload
def step(
    *,
    name: str | None = None,
    retries: int = 0,
    backoff: float = 1.0,
    max_backoff: float = 60.0,
    timeout: float | None = None,
    cache: bool = True,
    resources: Mapping[str, float] | None = None,
    version: str = "",
    on_failure: FailureHandler | None = None,
) -> Callable[[Callable[P, R]], Step[P, R]]: ...


def step(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    retries: int = 0,
    backoff: float = 1.0,
    max_backoff: float = 60.0,
    timeout: float | None = None,
    cache: bool = True,
    resources: Mapping[str, float] | None = None,
    version: str = "",
    on_failure: FailureHandler | None = None,
) -> Step[P, R] | Callable[[Callable[P, R]], Step[P, R]]:
    """Make a function a pipeline step: ``@step`` or ``@step(retries=2, timeout=60)``.

    Inputs are the function's parameters and the output is its return value; annotate both,
    so that the pipeline is checked before it runs. See :class:`StepOptions` for the options.

    Raises:
        InvalidInput: an invalid option, or a function that cannot be a step.
    """
    return _decorate(
        fn,
        name=name,
        retries=retries,
        backoff=backoff,
        max_backoff=max_backoff,
        timeout=timeout,
        cache=cache,
        resources=resources,
        version=version,
        on_failure=on_failure,
        gate=False,
    )


@overload
def gate(fn: Callable[P, R], /) -> Step[P, R]: ...


@overload
def gate(
    *,
    name: str | None = None,
    retries: int = 0,
    backoff: float = 1.0,
    timeout: float | None = None,
    cache: bool = True,
    version: str = "",
    on_failure: FailureHandler | None = None,
) -> Callable[[Callable[P, R]], Step[P, R]]: ...


def gate(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    retries: int = 0,
    backoff: float = 1.0,
    timeout: float | None = None,
    cache: bool = True,
    version: str = "",
    on_failure: FailureHandler | None = None,
) -> Step[P, R] | Callable[[Callable[P, R]], Step[P, R]]:
    """Make a function a quality gate: a step returning a :class:`GateResult` (or a bool).

    When the gate fails, every step that uses its output or runs :func:`after` it is
    ``blocked`` with the gate's reason, and the run ends ``blocked`` instead of completed.

    Raises:
        InvalidInput: an invalid option.
    """
    return _decorate(
        fn,
        name=name,
        retries=retries,
        backoff=backoff,
        max_backoff=60.0,
        timeout=timeout,
        cache=cache,
        resources=None,
        version=version,
        on_failure=on_failure,
        gate=True,
    )


def _decorate(
    fn: Callable[P, R] | None, **kwargs: Any
) -> Step[P, R] | Callable[[Callable[P, R]], Step[P, R]]:
    def wrap(f: Callable[P, R]) -> Step[P, R]:
        name = kwargs.pop("name", None) or getattr(f, "__name__", "")
        resources = dict(kwargs.pop("resources", None) or {})
        return Step(f, StepOptions(name=name, resources=resources, **kwargs))

    return wrap(fn) if fn is not None else wrap


def code_digest(fn: Callable[..., Any]) -> str:
    """A sha256 of a function's syntax tree (decorators and docstring left out); falls back to
    its bytecode when the source is not available."""
    text: str
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
        node = tree.body[0]
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            raise TypeError("not a function definition")
        node.decorator_list = []
        body = node.body
        first = body[0] if body else None
        if (
            isinstance(first, ast.Expr)
            and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
        text = ast.dump(node, annotate_fields=False, include_attributes=False)
    except (OSError, TypeError, SyntaxError, IndexError):
        text = _bytecode_text(fn.__code__)
    return hashlib.sha256(text.encode()).hexdigest()


def _bytecode_text(code: types.CodeType) -> str:
    consts = [
        _bytecode_text(c) if isinstance(c, types.CodeType) else repr(c) for c in code.co_consts
    ]
    return repr((code.co_code.hex(), consts, code.co_names, code.co_varnames))


# --- the graph ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FromStep:
    """An input bound to another node's output."""

    node: str


@dataclass(frozen=True)
class FromParam:
    """An input bound to a pipeline parameter."""

    name: str


@dataclass(frozen=True)
class Value:
    """An input bound to a literal value written in the pipeline (must be JSON-able)."""

    value: Any


Binding = FromStep | FromParam | Value


@dataclass(frozen=True)
class Condition:
    """Run a node only when ``predicate(source value)`` is true; otherwise skip it."""

    source: FromStep | FromParam
    predicate: Callable[[Any], Any]
    description: str


@dataclass(frozen=True)
class Node:
    """One step in a pipeline graph.

    Attributes:
        name: unique within the pipeline.
        step: what runs.
        inputs: the step's arguments, each bound to a node's output, a parameter or a value.
        after: nodes that must finish first although no data flows from them (gates, ...).
        conditions: all must hold for the node to run.
    """

    name: str
    step: Step[..., Any]
    inputs: Mapping[str, Binding] = field(default_factory=dict)
    after: tuple[str, ...] = ()
    conditions: tuple[Condition, ...] = ()

    def upstream(self) -> list[str]:
        """Every node this one waits for, in a stable order."""
        seen: dict[str, None] = {}
        for b in self.inputs.values():
            if isinstance(b, FromStep):
                seen[b.node] = None
        for a in self.after:
            seen[a] = None
        for c in self.conditions:
            if isinstance(c.source, FromStep):
                seen[c.source.node] = None
        return list(seen)

    def to_dict(self) -> dict[str, Any]:
        """Plain data: how the node is wired (stored with each run)."""
        inputs: dict[str, Any] = {}
        for k, b in self.inputs.items():
            if isinstance(b, FromStep):
                inputs[k] = {"step": b.node}
            elif isinstance(b, FromParam):
                inputs[k] = {"param": b.name}
            else:
                inputs[k] = {"value": b.value}
        return {
            "name": self.name,
            "function": self.step.function_ref,
            "gate": self.step.options.gate,
            "inputs": inputs,
            "after": list(self.after),
            "conditions": [c.description for c in self.conditions],
            "upstream": self.upstream(),
        }


@dataclass(frozen=True)
class PipelineParam:
    """A declared pipeline parameter."""

    name: str
    annotation: Any = Any
    default: Any = inspect.Parameter.empty

    @property
    def required(self) -> bool:
        """Whether a run must give a value."""
        return self.default is inspect.Parameter.empty


@dataclass(frozen=True)
class PipelineGraph:
    """A validated graph: nodes in an order where every node follows its upstream nodes."""

    nodes: tuple[Node, ...]

    def node(self, name: str) -> Node:
        """The node called ``name``.

        Raises:
            InvalidInput: there is none.
        """
        for n in self.nodes:
            if n.name == name:
                return n
        raise InvalidInput(f"no step {name!r} in the pipeline")

    def downstream(self, name: str) -> set[str]:
        """Every node that depends on ``name``, directly or not."""
        out: set[str] = set()
        frontier = {name}
        while frontier:
            nxt = {n.name for n in self.nodes if frontier & set(n.upstream())} - out
            out |= nxt
            frontier = nxt
        return out


class Pipeline:
    """A named DAG of steps with typed parameters.

    Make one with :func:`pipeline` from a function whose body calls steps, or with
    :meth:`from_nodes` from nodes wired by name (for graphs that code generates).
    """

    def __init__(
        self,
        name: str,
        *,
        params: Sequence[PipelineParam] = (),
        build: Callable[[], Sequence[Node]],
        ref: str | None = None,
        on_failure: FailureHandler | None = None,
        description: str = "",
    ) -> None:
        self.name = check_name(name, "pipeline name")
        self.params = {p.name: p for p in params}
        self.ref = ref
        self.on_failure = on_failure
        self.description = description
        self._build = build

    @classmethod
    def from_nodes(
        cls,
        name: str,
        nodes: Sequence[Node],
        *,
        params: Sequence[PipelineParam] = (),
        on_failure: FailureHandler | None = None,
    ) -> Pipeline:
        """A pipeline from explicit nodes (validated by :meth:`graph`, like any other)."""
        frozen = tuple(nodes)
        return cls(name, params=params, build=lambda: frozen, on_failure=on_failure)

    @functools.cached_property
    def _graph(self) -> PipelineGraph:
        return validate(self.name, self._build(), self.params)

    def graph(self) -> PipelineGraph:
        """The validated graph.

        Raises:
            InvalidInput: naming the step: an input bound to an unknown step or parameter,
                a required input left out, an unknown input, a type mismatch between an
                annotated output and the annotated input it feeds, or a cycle.
        """
        return self._graph

    def bind_params(self, values: Mapping[str, Any] | None) -> dict[str, Any]:
        """The parameter values of a run: ``values`` over the defaults, checked.

        Raises:
            InvalidInput: an unknown parameter, a missing required one, a value of the wrong
                type, or a value that is not JSON-able.
        """
        values = dict(values or {})
        unknown = sorted(set(values) - set(self.params))
        if unknown:
            known = ", ".join(sorted(self.params)) or "none"
            raise InvalidInput(
                f"pipeline {self.name!r} has no parameter(s) {', '.join(unknown)} "
                f"(parameters: {known})"
            )
        out: dict[str, Any] = {}
        for p in self.params.values():
            if p.name in values:
                value = values[p.name]
            elif p.required:
                raise InvalidInput(f"pipeline {self.name!r}: parameter {p.name!r} is required")
            else:
                value = p.default
            if not value_fits(value, p.annotation):
                raise InvalidInput(
                    f"pipeline {self.name!r}: parameter {p.name!r} expects "
                    f"{type_name(p.annotation)}, got {type(value).__name__} {value!r}"
                )
            out[p.name] = canonical_json(value, f"pipeline {self.name!r}: parameter {p.name!r}")
        return out

    def parse_params(self, pairs: Sequence[str]) -> dict[str, Any]:
        """Parameters from ``key=value`` strings: a ``str`` parameter takes the text as it is,
        any other reads it as YAML (``3``, ``0.5``, ``true``, ``[1, 2]``).

        Raises:
            InvalidInput: a pair without ``=`` or a value that is not valid YAML.
        """
        import yaml

        out: dict[str, Any] = {}
        for pair in pairs:
            key, sep, text = pair.partition("=")
            key = key.strip()
            if not sep or not key:
                raise InvalidInput(f"parameter {pair!r} is not key=value")
            param = self.params.get(key)
            if param is not None and param.annotation is str:
                out[key] = text
                continue
            try:
                out[key] = yaml.safe_load(text) if text else ""
            except yaml.YAMLError as exc:
                raise InvalidInput(f"parameter {key!r}: {text!r} is not a value: {exc}") from None
        return out

    def __repr__(self) -> str:
        return f"Pipeline({self.name!r})"


@overload
def pipeline(fn: Callable[..., Any], /) -> Pipeline: ...


@overload
def pipeline(
    *, name: str | None = None, on_failure: FailureHandler | None = None
) -> Callable[[Callable[..., Any]], Pipeline]: ...


def pipeline(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    on_failure: FailureHandler | None = None,
) -> Pipeline | Callable[[Callable[..., Any]], Pipeline]:
    """Make a function a pipeline: ``@pipeline`` or ``@pipeline(name=..., on_failure=...)``.

    The function's parameters (annotated, with defaults where optional) are the pipeline's
    parameters; its body calls steps to wire them. The body runs once, to build the graph,
    with placeholders for parameters and outputs: it can pass them to steps, and use
    :func:`when` and :func:`after`, but cannot look at their values.

    Args:
        on_failure: called with a :class:`StepFailure` when a run of the pipeline fails.

    Returns:
        A :class:`Pipeline`.
    """

    def wrap(f: Callable[..., Any]) -> Pipeline:
        pname = name or f.__name__
        sig = inspect.signature(f)
        try:
            hints = typing.get_type_hints(f)
        except Exception:
            hints = {}
        params: list[PipelineParam] = []
        for p in sig.parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY):
                raise InvalidInput(f"pipeline {pname!r}: parameters must be named (no *args)")
            params.append(PipelineParam(p.name, hints.get(p.name, Any), p.default))

        def build() -> Sequence[Node]:
            trace = _Trace(pname)
            token = _TRACE.set(trace)
            try:
                f(**{p.name: ParamRef(p.name, p.annotation) for p in params})
            finally:
                _TRACE.reset(token)
            return trace.finish()

        pipe = Pipeline(
            pname,
            params=params,
            build=build,
            ref=f"{f.__module__}:{f.__qualname__}",
            on_failure=on_failure,
            description=inspect.getdoc(f) or "",
        )
        functools.update_wrapper(pipe, f)  # type: ignore[arg-type]
        return pipe

    return wrap(fn) if fn is not None else wrap


# --- tracing a pipeline body -------------------------------------------------------------------


class _Placeholder:
    """A value that exists only once the pipeline runs."""

    def _refuse(self, what: str) -> InvalidInput:
        return InvalidInput(
            f"{self!r} is a placeholder while the pipeline is defined, so it cannot be {what}; "
            "pass it to a step, or use `when(...)` to decide at run time"
        )

    def __bool__(self) -> bool:
        raise self._refuse("tested for truth")

    def __iter__(self) -> Iterator[Any]:
        raise self._refuse("iterated")

    def __getitem__(self, key: Any) -> Any:
        raise self._refuse("indexed")

    def __len__(self) -> int:
        raise self._refuse("measured")

    def __lt__(self, other: object) -> bool:
        raise self._refuse("compared")

    def __le__(self, other: object) -> bool:
        raise self._refuse("compared")

    def __gt__(self, other: object) -> bool:
        raise self._refuse("compared")

    def __ge__(self, other: object) -> bool:
        raise self._refuse("compared")


class OutputRef(_Placeholder):
    """The output of a step call inside a pipeline body."""

    def __init__(self, trace: _Trace, node: str, annotation: Any) -> None:
        self._trace = trace
        self.node = node
        self.annotation = annotation

    def __repr__(self) -> str:
        return f"<output of step {self.node!r}>"


class ParamRef(_Placeholder):
    """A pipeline parameter inside a pipeline body."""

    def __init__(self, name: str, annotation: Any) -> None:
        self.name = name
        self.annotation = annotation

    def __repr__(self) -> str:
        return f"<pipeline parameter {self.name!r}>"


class _Trace:
    """The nodes recorded while a pipeline body runs."""

    def __init__(self, pipeline: str) -> None:
        self.pipeline = pipeline
        self.nodes: list[Node] = []
        self.names: set[str] = set()
        self.after: list[tuple[str, ...]] = []
        self.conditions: list[Condition] = []

    def add(self, st: Step[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> OutputRef:
        name = st.name
        if name in self.names:
            i = 2
            while f"{name}_{i}" in self.names:
                i += 1
            name = f"{name}_{i}"
        try:
            bound = st.signature.bind_partial(*args, **kwargs)
        except TypeError as exc:
            raise InvalidInput(f"step {name!r}: {exc}") from None
        inputs: dict[str, Binding] = {}
        for arg, value in bound.arguments.items():
            inputs[arg] = self._binding(name, arg, value)
        self.names.add(name)
        self.nodes.append(
            Node(
                name=name,
                step=st,
                inputs=inputs,
                after=tuple(dict.fromkeys(a for group in self.after for a in group)),
                conditions=tuple(self.conditions),
            )
        )
        return OutputRef(self, name, st.output_type)

    def _binding(self, node: str, arg: str, value: Any) -> Binding:
        if isinstance(value, OutputRef):
            if value._trace is not self:
                raise InvalidInput(
                    f"step {node!r}: input {arg!r} is an output from another pipeline"
                )
            return FromStep(value.node)
        if isinstance(value, ParamRef):
            return FromParam(value.name)
        return Value(
            canonical_json(
                value,
                f"step {node!r}: input {arg!r}",
                "pass data to a step as another step's output",
            )
        )

    def source(self, value: Any, what: str) -> FromStep | FromParam:
        if isinstance(value, OutputRef) and value._trace is self:
            return FromStep(value.node)
        if isinstance(value, ParamRef):
            return FromParam(value.name)
        raise InvalidInput(
            f"pipeline {self.pipeline!r}: {what} takes a step's output or a pipeline parameter, "
            f"not {type(value).__name__}"
        )

    def finish(self) -> list[Node]:
        return self.nodes


_TRACE: contextvars.ContextVar[_Trace | None] = contextvars.ContextVar(
    "wellml_pipeline_trace", default=None
)


def _current_trace(what: str) -> _Trace:
    trace = _TRACE.get()
    if trace is None:
        raise InvalidInput(f"{what} can only be used inside a @pipeline function's body")
    return trace


@contextmanager
def when(value: Any, predicate: Callable[[Any], Any], description: str = "") -> Iterator[None]:
    """Run the steps called inside the block only if ``predicate(value)`` is true at run time.

    ``value`` is a step's output or a pipeline parameter. When the predicate is false, the
    steps are ``skipped`` (and so is anything that needs their outputs).

    Raises:
        InvalidInput: used outside a pipeline body, or ``value`` is not a placeholder.
    """
    trace = _current_trace("when()")
    if not callable(predicate):
        raise InvalidInput("when(): the predicate must be callable")
    source = trace.source(value, "when()")
    label = description or f"{getattr(predicate, '__name__', 'predicate')}({value!r})"
    trace.conditions.append(Condition(source, predicate, label))
    try:
        yield
    finally:
        trace.conditions.pop()


@contextmanager
def after(*upstream: Any) -> Iterator[None]:
    """Run the steps called inside the block after the given steps, although they use none of
    their outputs; a failed gate among them blocks the steps.

    Raises:
        InvalidInput: used outside a pipeline body, or an argument is not a step's output.
    """
    trace = _current_trace("after()")
    names = []
    for value in upstream:
        src = trace.source(value, "after()")
        if not isinstance(src, FromStep):
            raise InvalidInput("after() takes step outputs, not pipeline parameters")
        names.append(src.node)
    trace.after.append(tuple(names))
    try:
        yield
    finally:
        trace.after.pop()


# --- validation --------------------------------------------------------------------------------


def validate(
    pipeline_name: str, nodes: Sequence[Node], params: Mapping[str, PipelineParam]
) -> PipelineGraph:
    """Check a graph and order it so that every node comes after its upstream nodes.

    Raises:
        InvalidInput: see :meth:`Pipeline.graph`.
    """
    if not nodes:
        raise InvalidInput(f"pipeline {pipeline_name!r} has no steps")
    by_name: dict[str, Node] = {}
    for n in nodes:
        check_name(n.name, "step name")
        if n.name in by_name:
            raise InvalidInput(f"pipeline {pipeline_name!r}: two steps are named {n.name!r}")
        by_name[n.name] = n
    for n in nodes:
        _check_inputs(n, by_name, params)
    return PipelineGraph(tuple(_topological(pipeline_name, nodes, by_name)))


def _check_inputs(
    n: Node, by_name: Mapping[str, Node], params: Mapping[str, PipelineParam]
) -> None:
    sig = n.step.signature
    unknown = sorted(set(n.inputs) - set(sig.parameters))
    if unknown:
        raise InvalidInput(f"step {n.name!r}: unknown input(s) {', '.join(unknown)}")
    missing = [
        p.name for p in sig.parameters.values() if p.default is p.empty and p.name not in n.inputs
    ]
    if missing:
        raise InvalidInput(f"step {n.name!r}: missing input(s) {', '.join(missing)}")
    for dep in (*n.after, *(c.source.node for c in n.conditions if isinstance(c.source, FromStep))):
        if dep not in by_name:
            raise InvalidInput(f"step {n.name!r}: waits for unknown step {dep!r}")
    for c in n.conditions:
        if isinstance(c.source, FromParam) and c.source.name not in params:
            raise InvalidInput(f"step {n.name!r}: condition on unknown parameter {c.source.name!r}")
    for arg, b in n.inputs.items():
        expected = n.step.input_type(arg)
        if isinstance(b, FromStep):
            producer = by_name.get(b.node)
            if producer is None:
                raise InvalidInput(
                    f"step {n.name!r}: input {arg!r} comes from unknown step {b.node!r}"
                )
            produced = producer.step.output_type
            if producer.step.options.gate and produced is Any:
                produced = GateResult
            if not types_compatible(produced, expected):
                raise InvalidInput(
                    f"step {n.name!r}: input {arg!r} expects {type_name(expected)}, but step "
                    f"{producer.name!r} outputs {type_name(produced)}"
                )
        elif isinstance(b, FromParam):
            param = params.get(b.name)
            if param is None:
                raise InvalidInput(
                    f"step {n.name!r}: input {arg!r} uses unknown parameter {b.name!r}"
                )
            if not types_compatible(param.annotation, expected):
                raise InvalidInput(
                    f"step {n.name!r}: input {arg!r} expects {type_name(expected)}, but "
                    f"parameter {b.name!r} is {type_name(param.annotation)}"
                )
        else:
            canonical_json(b.value, f"step {n.name!r}: input {arg!r}")
            if value_fits(b.value, expected):
                continue
            raise InvalidInput(
                f"step {n.name!r}: input {arg!r} expects {type_name(expected)}, "
                f"got {type(b.value).__name__} {b.value!r}"
            )


def _topological(
    pipeline_name: str, nodes: Sequence[Node], by_name: Mapping[str, Node]
) -> list[Node]:
    # Depth-first, in definition order, so the order is stable and a cycle can be named.
    order: list[Node] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[str] = []

    def visit(name: str) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = [*stack[stack.index(name) :], name]
            raise InvalidInput(
                f"pipeline {pipeline_name!r}: steps form a cycle: {' -> '.join(cycle)} "
                f"(step {name!r} waits for itself)"
            )
        state[name] = 1
        stack.append(name)
        for dep in by_name[name].upstream():
            visit(dep)
        stack.pop()
        state[name] = 2
        order.append(by_name[name])

    for n in nodes:
        visit(n.name)
    return order


# --- types -------------------------------------------------------------------------------------


def type_name(tp: Any) -> str:
    """A short readable name for a type annotation."""
    if tp is Any:
        return "Any"
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _union_args(tp: Any) -> tuple[Any, ...] | None:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        return typing.get_args(tp)
    return None


def _strip(tp: Any) -> Any:
    if typing.get_origin(tp) is typing.Annotated:
        return typing.get_args(tp)[0]
    if tp is None:
        return type(None)
    return tp


def types_compatible(produced: Any, expected: Any) -> bool:
    """Whether a value annotated ``produced`` may be passed where ``expected`` is annotated.

    Unannotated (``Any``), type variables and anything this check cannot reason about count as
    compatible; ``int`` fits ``float``; unions must fit member by member.
    """
    produced, expected = _strip(produced), _strip(expected)
    if produced is Any or expected is Any or produced is inspect.Parameter.empty:
        return True
    if isinstance(produced, TypeVar) or isinstance(expected, TypeVar):
        return True
    exp_union = _union_args(expected)
    prod_union = _union_args(produced)
    if prod_union is not None:
        return all(types_compatible(p, expected) for p in prod_union)
    if exp_union is not None:
        return any(types_compatible(produced, e) for e in exp_union)
    p_origin = typing.get_origin(produced) or produced
    e_origin = typing.get_origin(expected) or expected
    if p_origin is typing.Literal:
        return all(value_fits(v, expected) for v in typing.get_args(produced))
    if not isinstance(p_origin, type) or not isinstance(e_origin, type):
        return True
    if e_origin is float and p_origin is int:
        return True
    try:
        if not issubclass(p_origin, e_origin):
            return False
    except TypeError:
        return True
    p_args, e_args = typing.get_args(produced), typing.get_args(expected)
    if p_args and e_args and len(p_args) == len(e_args) and Ellipsis not in (*p_args, *e_args):
        return all(types_compatible(p, e) for p, e in zip(p_args, e_args))
    return True


def value_fits(value: Any, annotation: Any) -> bool:
    """Whether ``value`` fits ``annotation`` at the level :func:`types_compatible` checks."""
    annotation = _strip(annotation)
    if annotation is Any or isinstance(annotation, TypeVar):
        return True
    union = _union_args(annotation)
    if union is not None:
        return any(value_fits(value, a) for a in union)
    origin = typing.get_origin(annotation) or annotation
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if not isinstance(origin, type):
        return True
    if origin is float and isinstance(value, int) and not isinstance(value, bool):
        return True
    if origin in (list, tuple, Sequence) and isinstance(value, list):
        return True
    try:
        return isinstance(value, origin)
    except TypeError:
        return True


def canonical_json(value: Any, what: str, hint: str = "") -> Any:
    """``value`` as plain JSON data (tuples become lists), so that it hashes the same way
    every time.

    Raises:
        InvalidInput: the value is not JSON-able (naming ``what``).
    """
    try:
        text = json.dumps(_plain(value), sort_keys=True, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            f"{what} must be JSON-able (None, bool, number, str, list, str-keyed dict): {exc}"
            + (f"; {hint}" if hint else "")
        ) from None
    return json.loads(text)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        for k in value:
            if not isinstance(k, str):
                raise TypeError(f"dict key {k!r} is not a string")
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    item = getattr(value, "item", None)
    if callable(item) and type(value).__module__ == "numpy":
        return _plain(item())
    raise TypeError(f"{type(value).__name__} is not JSON-able")
