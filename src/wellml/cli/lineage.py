"""``wellml lineage``: what a record came from and what came of it."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.tree import Tree

from wellml.cli.context import state
from wellml.cli.output import Format, console, emit_json, show_table, when
from wellml.errors import InvalidInput
from wellml.lineage.graph import Direction
from wellml.workspace import Workspace

app = typer.Typer(
    help="The lineage graph across data, runs, models, endpoints, monitors.", no_args_is_help=True
)


def resolve(ws: Workspace, ref: str) -> str:
    """Turn a user's reference into a lineage ref: ``dataset:NAME[@N]``, ``model:NAME@ALIAS``,
    ``run:ID`` (a prefix works), ``endpoint:NAME``; other kinds pass through."""
    kind, sep, rest = ref.partition(":")
    if not sep:
        raise InvalidInput(
            f"write KIND:NAME, e.g. dataset:churn@1, model:churn@production, "
            f"run:ID, endpoint:churn (got {ref!r})"
        )
    if kind == "dataset":
        return ws.data.get(rest).lineage_ref
    if kind == "model":
        return ws.registry.get(rest).lineage_ref
    if kind == "run":
        return ws.tracking.get_run(rest).lineage_ref
    if kind == "endpoint":
        return ws.endpoints.get(rest).lineage_ref
    return ref


@app.command("show")
def show(
    ref: Annotated[str, typer.Argument(help="e.g. model:churn@production, endpoint:churn")],
    upstream: Annotated[bool, typer.Option("--upstream", help="Only what it came from.")] = False,
    downstream: Annotated[bool, typer.Option("--downstream", help="Only what came of it.")] = False,
    depth: Annotated[int | None, typer.Option(help="How many hops to follow.")] = None,
    format: Annotated[Format, typer.Option("--format", "-f", help="table or json")] = Format.table,
) -> None:
    """Show the lineage around a record."""
    if upstream and downstream:
        raise typer.BadParameter("choose --upstream or --downstream, or neither for both")
    ws = state.open()
    lref = resolve(ws, ref)
    direction: Direction = "upstream" if upstream else "downstream" if downstream else "both"
    graph = ws.lineage.walk(lref, direction=direction, depth=depth)
    if format is Format.json:
        emit_json({"direction": direction, **graph.to_dict()})
        return
    by_id = {n.id: n for n in graph.nodes}
    root = next(n for n in graph.nodes if n.ref == graph.root)

    def label(n_id: str) -> str:
        n = by_id[n_id]
        extra = f" [{n.status}]" if n.type == "execution" else ""
        return escape(f"{n.ref}{extra} ({n.kind}, {when(n.created_at)})")

    for d in ("upstream", "downstream") if direction == "both" else (direction,):
        tree = Tree(f"[bold]{d} of {escape(graph.root)}[/]")
        _grow(tree, root.id, graph.edges, d, label, set())
        console.print(tree)
    if direction == "both":
        show_table(None, ("node", "kind", "type"), [(n.ref, n.kind, n.type) for n in graph.nodes])


def _grow(tree: Tree, node: str, edges: tuple, direction: str, label, seen: set[str]) -> None:  # type: ignore[type-arg,no-untyped-def]
    if node in seen:
        return
    seen.add(node)
    nxt = (
        [(e.source, e.role) for e in edges if e.target == node]
        if direction == "upstream"
        else [(e.target, e.role) for e in edges if e.source == node]
    )
    for other, role in sorted(nxt):
        branch = tree.add(f"{label(other)}" + (f" as {role}" if role else ""))
        _grow(branch, other, edges, direction, label, seen)


@app.command("path")
def path(
    source: Annotated[str, typer.Argument(help="Where data starts, e.g. dataset:churn@1")],
    target: Annotated[str, typer.Argument(help="Where it ends up, e.g. endpoint:churn")],
    format: Annotated[Format, typer.Option("--format", "-f", help="table or json")] = Format.table,
) -> None:
    """The data-flow path from one record to another."""
    ws = state.open()
    hops = ws.lineage.path(resolve(ws, source), resolve(ws, target))
    if format is Format.json:
        emit_json([n.to_dict() for n in hops])
        return
    if not hops:
        console.print(f"no data-flow path from {source} to {target}")
        raise typer.Exit(1)
    console.print(" -> ".join(n.ref for n in hops))
