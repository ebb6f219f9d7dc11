"""Feature store definitions: entities, feature views, on-demand features, feature services.

Definitions are frozen dataclasses written in Python or read from the ``features:`` section of
``wellml.yaml`` (:func:`from_spec`). They say *what* should exist; :class:`FeatureStore.apply`
resolves them against the workspace (pinning dataset versions, reading source schemas,
hashing on-demand code) and stores each changed one as a new immutable version.

Feature references name features the way training and serving code asks for them:

* ``view:feature`` — one feature of the latest applied version of a view;
* ``view@2:feature`` — of version 2;
* ``view:*`` — every feature of the view;
* a name with no ``:`` (``churn`` or ``churn@3``) — a feature service.
"""

from __future__ import annotations

import datetime as dt
import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

from wellml.config import FeatureDefinitions
from wellml.errors import InvalidInput
from wellml.names import check_name, parse_ref

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DTYPES",
    "Entity",
    "FeatureRef",
    "FeatureService",
    "FeatureView",
    "Field",
    "OnDemandFeatureView",
    "Source",
    "from_spec",
    "on_demand_feature_view",
    "parse_feature_ref",
    "parse_ttl",
]

#: The feature types a definition may declare, and the source column types each accepts.
DTYPES: dict[str, frozenset[str]] = {
    "int64": frozenset({"integer"}),
    "int32": frozenset({"integer"}),
    "float64": frozenset({"integer", "float"}),
    "float32": frozenset({"integer", "float"}),
    "string": frozenset({"string"}),
    "bool": frozenset({"bool"}),
    "timestamp": frozenset({"timestamp"}),
}


def _column(name: str, what: str) -> str:
    if not isinstance(name, str) or not name or name.startswith("__"):
        raise InvalidInput(f"{what}: invalid column name {name!r}")
    return name


def _names(values: Any, what: str) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise InvalidInput(f"{what} must be a list of names, got {values!r}")
    out = tuple(values)
    dupes = sorted({v for v in out if out.count(v) > 1})
    if dupes:
        raise InvalidInput(f"{what} has duplicates: {dupes}")
    return out


@dataclass(frozen=True)
class Field:
    """A typed feature or request field.

    Raises:
        InvalidInput: an empty or reserved name, or a dtype not in :data:`DTYPES`.
    """

    name: str
    dtype: str
    description: str = ""

    def __post_init__(self) -> None:
        _column(self.name, "field")
        if self.dtype not in DTYPES:
            raise InvalidInput(
                f"field {self.name!r}: unknown dtype {self.dtype!r}; use one of {', '.join(DTYPES)}"
            )

    def to_dict(self) -> dict[str, str]:
        """Plain data."""
        return {"name": self.name, "dtype": self.dtype, "description": self.description}


def _fields(values: Any, what: str) -> tuple[Field, ...]:
    if isinstance(values, Field):
        values = [values]
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise InvalidInput(f"{what} must be a list of Field, got {values!r}")
    out = []
    for value in values:
        if isinstance(value, Mapping):
            value = Field(**value)
        if not isinstance(value, Field):
            raise InvalidInput(f"{what} must hold Field objects, got {value!r}")
        out.append(value)
    _names([f.name for f in out], what)
    return tuple(out)


def _tags(tags: Any, what: str) -> dict[str, str]:
    if not isinstance(tags, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
    ):
        raise InvalidInput(f"{what}: tags must map strings to strings, got {tags!r}")
    return dict(tags)


@dataclass(frozen=True)
class Entity:
    """Something features describe (a customer, a device), identified by its join keys.

    Attributes:
        name: The entity's name.
        join_keys: The columns that identify one instance; defaults to ``(name,)``.
    """

    name: str
    join_keys: tuple[str, ...] = ()
    description: str = ""
    owner: str = ""
    tags: dict[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        check_name(self.name, "entity name")
        keys = _names(self.join_keys, f"entity {self.name!r}: join_keys") or (self.name,)
        for key in keys:
            _column(key, f"entity {self.name!r}: join key")
        object.__setattr__(self, "join_keys", keys)
        object.__setattr__(self, "tags", _tags(self.tags, f"entity {self.name!r}"))


@dataclass(frozen=True)
class Source:
    """Where a feature view's rows come from: exactly one of

    * ``dataset``: a data catalog dataset (``name`` pins the latest version at apply time,
      ``name@3`` a given one);
    * ``path``: a Parquet file or glob, local or any fsspec URL DuckDB can read;
    * ``query``: a DuckDB ``SELECT`` in which ``{dataset}`` or ``{dataset@3}`` stands for a
      catalog dataset version's rows.
    """

    dataset: str | None = None
    path: str | None = None
    query: str | None = None

    def __post_init__(self) -> None:
        given = [k for k in ("dataset", "path", "query") if getattr(self, k) is not None]
        if len(given) != 1:
            raise InvalidInput(
                "a feature source needs exactly one of dataset, path or query, "
                f"got {given or 'none'}"
            )
        value = getattr(self, given[0])
        if not isinstance(value, str) or not value.strip():
            raise InvalidInput(f"feature source {given[0]} must be a non-empty string")
        if self.dataset is not None:
            parse_ref(self.dataset, "source dataset")

    @property
    def kind(self) -> str:
        """``dataset``, ``path`` or ``query``."""
        return "dataset" if self.dataset else "path" if self.path else "query"


_TTL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def parse_ttl(ttl: Any) -> float | None:
    """Seconds from ``None``, a number of seconds, a ``timedelta`` or text like ``90d``/``12h``.

    Raises:
        InvalidInput: anything else, or a negative value.
    """
    if ttl is None:
        return None
    if isinstance(ttl, dt.timedelta):
        seconds = ttl.total_seconds()
    elif isinstance(ttl, bool):
        raise InvalidInput(f"invalid ttl {ttl!r}")
    elif isinstance(ttl, int | float):
        seconds = float(ttl)
    elif isinstance(ttl, str) and (m := _TTL.match(ttl)):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise InvalidInput(f"invalid ttl {ttl!r}: use seconds, a timedelta, or e.g. '90d', '12h'")
    if not seconds >= 0 or seconds == float("inf"):
        raise InvalidInput(f"invalid ttl {ttl!r}: must be finite and >= 0")
    return seconds


@dataclass(frozen=True)
class FeatureView:
    """Typed features of one or more entities, over event time, read from a source.

    Attributes:
        name: The view's name (shared namespace with on-demand feature views).
        entities: Names of the entities whose join keys identify a row.
        source: Where the rows come from.
        timestamp_field: The event-time column.
        features: The features; empty means every source column other than the join keys and
            timestamps, with types read from the source.
        ttl: How old a feature row may be and still be used (None: no limit).
        created_timestamp_field: Breaks ties between rows with equal event time.
        online: Whether the view is materialized to the online store.
    """

    name: str
    entities: tuple[str, ...]
    source: Source
    timestamp_field: str
    features: tuple[Field, ...] = ()
    ttl: float | str | dt.timedelta | None = None
    created_timestamp_field: str | None = None
    online: bool = True
    description: str = ""
    owner: str = ""
    tags: dict[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        check_name(self.name, "feature view name")
        what = f"feature view {self.name!r}"
        entities = _names(self.entities, f"{what}: entities")
        if not entities:
            raise InvalidInput(f"{what}: needs at least one entity")
        object.__setattr__(self, "entities", entities)
        if isinstance(self.source, Mapping):
            object.__setattr__(self, "source", Source(**self.source))
        elif isinstance(self.source, str):
            object.__setattr__(self, "source", Source(dataset=self.source))
        if not isinstance(self.source, Source):
            raise InvalidInput(f"{what}: source must be a Source, got {self.source!r}")
        _column(self.timestamp_field, f"{what}: timestamp_field")
        if self.created_timestamp_field is not None:
            _column(self.created_timestamp_field, f"{what}: created_timestamp_field")
        object.__setattr__(self, "features", _fields(self.features, f"{what}: features"))
        object.__setattr__(self, "ttl", parse_ttl(self.ttl))
        object.__setattr__(self, "tags", _tags(self.tags, what))

    @property
    def ttl_seconds(self) -> float | None:
        """The TTL in seconds."""
        return self.ttl if isinstance(self.ttl, float) else parse_ttl(self.ttl)


#: The signature of an on-demand transformation: a DataFrame with one column per input
#: (request fields, and input features by their feature names) in, one column per output
#: feature out, with the same number of rows.
Transformation: TypeAlias = "Callable[[pd.DataFrame], pd.DataFrame]"


@dataclass(frozen=True)
class OnDemandFeatureView:
    """Features computed from request data and other features by a Python function.

    The same function runs when a training set is built and when features are served online,
    so a transformation cannot drift between the two. It must be importable by
    ``module:qualname`` wherever features are served (a module-level function, not a lambda or
    a closure); its source code is hashed at apply time, and a function whose code has changed
    since is refused until it is applied again.

    Attributes:
        name: The view's name.
        function: The transformation, or its ``module:qualname``.
        features: The output features.
        inputs: Feature references (``view:feature``) the function reads.
        request: Fields that come with the request (or the entity rows) rather than from a view.
    """

    name: str
    function: Transformation | str
    features: tuple[Field, ...]
    inputs: tuple[str, ...] = ()
    request: tuple[Field, ...] = ()
    description: str = ""
    owner: str = ""
    tags: dict[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        check_name(self.name, "on-demand feature view name")
        what = f"on-demand feature view {self.name!r}"
        if not (callable(self.function) or isinstance(self.function, str)):
            raise InvalidInput(f"{what}: function must be a callable or 'module:qualname'")
        object.__setattr__(self, "features", _fields(self.features, f"{what}: features"))
        if not self.features:
            raise InvalidInput(f"{what}: needs at least one output feature")
        object.__setattr__(self, "request", _fields(self.request, f"{what}: request"))
        inputs = _names(self.inputs, f"{what}: inputs")
        for ref in inputs:
            parsed = parse_feature_ref(ref)
            if parsed.feature == "*":
                raise InvalidInput(f"{what}: inputs must name features, not {ref!r}")
        object.__setattr__(self, "inputs", inputs)
        if not inputs and not self.request:
            raise InvalidInput(f"{what}: needs inputs or request fields")
        object.__setattr__(self, "tags", _tags(self.tags, what))

    @property
    def function_path(self) -> str:
        """``module:qualname`` of the function."""
        if isinstance(self.function, str):
            return self.function
        return function_path(self.function)


def function_path(function: Callable[..., Any]) -> str:
    """``module:qualname`` of a module-level function.

    Raises:
        InvalidInput: a lambda, a nested function or a callable without a module.
    """
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        raise InvalidInput(
            f"on-demand function {function!r} must be a module-level function "
            "(no lambdas or nested functions), so that serving can import it"
        )
    return f"{module}:{qualname}"


def on_demand_feature_view(
    *,
    features: Sequence[Field],
    inputs: Sequence[str] = (),
    request: Sequence[Field] = (),
    name: str | None = None,
    description: str = "",
    owner: str = "",
    tags: dict[str, str] | None = None,
) -> Callable[[Transformation], OnDemandFeatureView]:
    """Decorate a transformation to make it an :class:`OnDemandFeatureView`.

    The decorated name becomes the view; the function stays reachable as ``.function`` and
    importable by its module path, because the decorator returns a new object and the module
    attribute is the view, whose ``function`` has the same qualname.
    """

    def wrap(function: Transformation) -> OnDemandFeatureView:
        return OnDemandFeatureView(
            name=name or function.__name__,
            function=function,
            features=tuple(features),
            inputs=tuple(inputs),
            request=tuple(request),
            description=description or inspect.getdoc(function) or "",
            owner=owner,
            tags=dict(tags or {}),
        )

    return wrap


@dataclass(frozen=True)
class FeatureService:
    """A named, versioned set of features a model consumes.

    Attributes:
        features: Feature references (``view:feature``, ``view@2:feature``, ``view:*``).
    """

    name: str
    features: tuple[str, ...]
    description: str = ""
    owner: str = ""
    tags: dict[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        check_name(self.name, "feature service name")
        what = f"feature service {self.name!r}"
        refs = _names(self.features, f"{what}: features")
        if not refs:
            raise InvalidInput(f"{what}: needs at least one feature")
        for ref in refs:
            parse_feature_ref(ref)
        object.__setattr__(self, "features", refs)
        object.__setattr__(self, "tags", _tags(self.tags, what))


Definition: TypeAlias = Entity | FeatureView | OnDemandFeatureView | FeatureService


@dataclass(frozen=True)
class FeatureRef:
    """A parsed ``view[@N]:feature`` reference (``feature`` may be ``*``)."""

    view: str
    version: int | None
    feature: str

    def __str__(self) -> str:
        at = f"@{self.version}" if self.version is not None else ""
        return f"{self.view}{at}:{self.feature}"


def parse_feature_ref(text: str) -> FeatureRef:
    """Parse ``view:feature``, ``view@2:feature`` or ``view:*``.

    Raises:
        InvalidInput: anything else.
    """
    if not isinstance(text, str) or text.count(":") != 1:
        raise InvalidInput(f"invalid feature reference {text!r}: use view:feature or view:*")
    view_part, feature = text.split(":")
    ref = parse_ref(view_part, "feature view reference")
    if ref.alias is not None:
        raise InvalidInput(f"invalid feature reference {text!r}: feature views have no aliases")
    if feature != "*":
        _column(feature, f"feature reference {text!r}")
    return FeatureRef(ref.name, ref.version, feature)


def from_spec(spec: FeatureDefinitions) -> list[Definition]:
    """The definitions declared in the ``features:`` section of ``wellml.yaml``.

    Raises:
        InvalidInput: a declaration is invalid (the message names it).
    """
    out: list[Definition] = []
    for e in spec.entities:
        out.append(Entity(e.name, tuple(e.join_keys), e.description, e.owner, dict(e.tags)))
    for v in spec.feature_views:
        out.append(
            FeatureView(
                name=v.name,
                entities=tuple(v.entities),
                source=Source(v.source.dataset, v.source.path, v.source.query),
                timestamp_field=v.timestamp_field,
                features=tuple(Field(f.name, f.dtype, f.description) for f in v.features),
                ttl=v.ttl,
                created_timestamp_field=v.created_timestamp_field,
                online=v.online,
                description=v.description,
                owner=v.owner,
                tags=dict(v.tags),
            )
        )
    for o in spec.on_demand_features:
        out.append(
            OnDemandFeatureView(
                name=o.name,
                function=o.function,
                features=tuple(Field(f.name, f.dtype, f.description) for f in o.features),
                inputs=tuple(o.inputs),
                request=tuple(Field(f.name, f.dtype, f.description) for f in o.request),
                description=o.description,
                owner=o.owner,
                tags=dict(o.tags),
            )
        )
    for s in spec.feature_services:
        out.append(FeatureService(s.name, tuple(s.features), s.description, s.owner, dict(s.tags)))
    return out
