"""``wellml features``: plan, apply, list, show, materialize, get and history."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from wellml.cli.context import state
from wellml.cli.output import Format, console, emit_json, show_mapping, show_table, when
from wellml.config import FeatureDefinitions
from wellml.errors import InvalidInput, NotFound
from wellml.features.definitions import (
    Definition,
    Entity,
    FeatureService,
    FeatureView,
    OnDemandFeatureView,
    from_spec,
)
from wellml.features.service import FeaturePlan

app = typer.Typer(
    help="Feature store: entities, feature views, services; materialize and serve.",
    no_args_is_help=True,
)

FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table or json")]
FileOpt = Annotated[
    Path | None,
    typer.Option(
        "--file",
        help="A Python module or YAML file with the definitions (default: wellml.yaml's "
        "features section).",
    ),
]
KindOpt = Annotated[
    str | None,
    typer.Option(help="entity, feature_view, on_demand or feature_service"),
]


def load_definitions(path: Path) -> list[Definition]:
    """Definitions from a Python module (its module-level definition objects, in order) or a
    YAML file (a ``features:`` section, or the section's contents at the top level).

    Raises:
        NotFound: the file does not exist.
        InvalidInput: it cannot be read, or holds no definitions.
    """
    if not path.is_file():
        raise NotFound(f"no such file: {path}")
    if path.suffix == ".py":
        # Imported under its own name with its folder on sys.path, so that on-demand functions
        # defined in it are importable by module path, as serving will import them.
        folder = str(path.resolve().parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:
            raise InvalidInput(f"{path}: cannot be imported")
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        try:
            spec.loader.exec_module(module)
        except InvalidInput:
            raise
        except Exception as exc:
            raise InvalidInput(f"{path}: importing it failed: {type(exc).__name__}: {exc}") from exc
        kinds = (Entity, FeatureView, OnDemandFeatureView, FeatureService)
        found = [v for v in vars(module).values() if isinstance(v, kinds)]
        if not found:
            raise InvalidInput(f"{path}: defines no entities, feature views or services")
        return found
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path}: not valid YAML: {exc}") from None
    if isinstance(data, dict) and "features" in data:
        data = data["features"]
    try:
        parsed = FeatureDefinitions.model_validate(data)
    except Exception as exc:
        raise InvalidInput(f"{path}: {exc}") from None
    return from_spec(parsed)


def _definitions(file: Path | None) -> list[Definition] | None:
    return load_definitions(file) if file is not None else None


def _show_plan(plan: FeaturePlan, format: Format) -> None:
    if format is Format.json:
        emit_json(plan.to_dict())
        return
    rows = []
    for item in plan.items:
        version = (
            f"v{item.new_version}"
            if item.current_version in (None, item.new_version)
            else f"v{item.current_version} -> v{item.new_version}"
        )
        rows.append((item.action, item.kind, item.name, version, "; ".join(item.changes)))
    show_table(
        "applied" if plan.applied else "plan",
        ("action", "kind", "name", "version", "changes"),
        rows,
    )
    changed = len(plan.changed)
    verb = "applied" if plan.applied else "would apply"
    console.print(f"{changed} change(s) {verb}, {len(plan.items) - changed} unchanged")


@app.command("plan")
def plan(file: FileOpt = None, format: FormatOpt = Format.table) -> None:
    """Show what `apply` would create or change, without changing anything."""
    _show_plan(state.open().features.plan(_definitions(file)), format)


@app.command("apply")
def apply(file: FileOpt = None, format: FormatOpt = Format.table) -> None:
    """Apply definitions: each changed one becomes a new version; nothing is overwritten."""
    _show_plan(state.open().features.apply(_definitions(file)), format)


@app.command("list")
def list_(kind: KindOpt = None, format: FormatOpt = Format.table) -> None:
    """List the latest version of every entity, feature view and feature service."""
    rows = state.open().features.list(kind)
    if format is Format.json:
        emit_json(rows)
        return
    show_table(
        "feature definitions",
        ("kind", "name", "version", "versions", "features", "owner"),
        [
            (
                r["kind"],
                r["name"],
                r["version"],
                r["versions"],
                ", ".join(r["features"]),
                r["owner"],
            )
            for r in rows
        ],
    )


@app.command("show")
def show(
    ref: Annotated[str, typer.Argument(help="name or name@N")],
    kind: KindOpt = None,
    format: FormatOpt = Format.table,
) -> None:
    """Show a definition version: its resolved spec and, for a view, its last materialization."""
    fs = state.open().features
    d = fs.get(ref, kind)
    info = d.to_dict()
    last = None
    if d.kind == "feature_view":
        history = fs.materializations(d.ref, limit=1)
        last = history[0].to_dict() if history else None
    info["last_materialization"] = last
    if format is Format.json:
        emit_json(info)
        return
    spec = info.pop("spec")
    info.pop("last_materialization")
    show_mapping(f"{d.kind} {d.ref}", info)
    features = spec.pop("features", None)
    show_mapping(
        "spec", {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in spec.items()}
    )
    if features and d.kind != "feature_service":
        show_table(
            "features",
            ("name", "dtype", "description"),
            [(f["name"], f["dtype"], f["description"]) for f in features],
        )
    elif features:
        show_table(
            "features",
            ("view", "version", "features"),
            [(g["view"], g["version"], ", ".join(g["features"])) for g in features],
        )
    if last is not None:
        show_mapping(
            "last materialization",
            {k: last[k] for k in ("id", "status", "rows_read", "rows_written", "online_store")}
            | {"finished": when(last["finished_at"])},
        )


@app.command("materialize")
def materialize(
    view: Annotated[str, typer.Argument(help="Feature view: name or name@N")],
    start: Annotated[str | None, typer.Option(help="Window start (inclusive), ISO time.")] = None,
    end: Annotated[
        str | None, typer.Option(help="Window end (inclusive), ISO time; default now.")
    ] = None,
    incremental: Annotated[
        bool, typer.Option(help="Start where the last completed materialization ended.")
    ] = False,
    format: FormatOpt = Format.table,
) -> None:
    """Copy the latest feature values per entity to the online store."""
    fs = state.open().features
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True, disable=format is Format.json) as bar:
        task = bar.add_task(f"materializing {view}", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        m = fs.materialize(view, start=start, end=end, incremental=incremental, progress=progress)
    if format is Format.json:
        emit_json(m.to_dict())
        return
    console.print(
        f"{m.view}@{m.version}: {m.rows_read:,} rows read, {m.rows_written:,} entities written "
        f"to {m.online_store}"
    )


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _entity_rows(entities: list[str]) -> list[dict[str, Any]]:
    rows = []
    for text in entities:
        row: dict[str, Any] = {}
        for pair in text.split(","):
            key, sep, value = pair.partition("=")
            if not sep or not key.strip():
                raise InvalidInput(f"invalid --entity {text!r}: use key=value[,key=value]")
            row[key.strip()] = _value(value.strip())
        rows.append(row)
    return rows


@app.command("get")
def get(
    features: Annotated[
        str,
        typer.Argument(help="A feature service (name[@N]) or comma-separated view:feature refs"),
    ],
    entity: Annotated[
        list[str],
        typer.Option("--entity", "-e", help="One entity row: key=value[,key=value]; repeatable."),
    ],
    full_feature_names: Annotated[bool, typer.Option(help="Name columns view__feature.")] = False,
    format: FormatOpt = Format.table,
) -> None:
    """Fetch online feature values for entities (with on-demand features computed)."""
    refs: str | list[str] = (
        features if ":" not in features else [f.strip() for f in features.split(",")]
    )
    result = state.open().features.get_online_features(
        _entity_rows(entity), refs, full_feature_names=full_feature_names
    )
    if format is Format.json:
        emit_json(result.rows())
        return
    columns = list(result.columns)
    show_table("online features", columns, [list(r.values()) for r in result.rows()])


@app.command("history")
def history(
    name: Annotated[str, typer.Argument(help="A definition name")],
    kind: KindOpt = None,
    format: FormatOpt = Format.table,
) -> None:
    """Every version of a definition and, for a feature view, its materializations."""
    fs = state.open().features
    versions = fs.versions(name, kind)
    runs = fs.materializations(versions[0].name) if versions[0].kind == "feature_view" else []
    if format is Format.json:
        emit_json(
            {
                "versions": [v.to_dict() for v in versions],
                "materializations": [m.to_dict() for m in runs],
            }
        )
        return
    show_table(
        f"versions of {versions[0].kind} {versions[0].name}",
        ("version", "created", "by", "digest", "features"),
        [
            (v.version, when(v.created_at), v.created_by, v.digest[:12], ", ".join(v.feature_names))
            for v in versions
        ],
    )
    if runs:
        show_table(
            "materializations",
            ("version", "status", "window end", "rows read", "written", "started", "error"),
            [
                (
                    m.version,
                    m.status,
                    when(m.end_time),
                    f"{m.rows_read:,}",
                    f"{m.rows_written:,}",
                    when(m.started_at),
                    m.error,
                )
                for m in runs
            ],
        )
