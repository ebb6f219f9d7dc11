"""``wellml models``: the registry's versions, approval and aliases."""

from __future__ import annotations

from typing import Annotated

import typer

from wellml.cli.context import state
from wellml.cli.output import Format, console, emit_json, fmt_num, show_mapping, show_table, when

app = typer.Typer(
    help="Registered models: versions, approval, aliases, model cards.", no_args_is_help=True
)

FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table or json")]


@app.command("list")
def list_(
    name: Annotated[str | None, typer.Argument(help="List this model's versions.")] = None,
    status: Annotated[str | None, typer.Option(help="pending, approved or rejected")] = None,
    format: FormatOpt = Format.table,
) -> None:
    """List registered models, or the versions of one."""
    reg = state.open().registry
    if name is None and status is None:
        rows = reg.list()
        if format is Format.json:
            emit_json(
                [
                    {
                        "name": r["name"],
                        "owner": r["owner"],
                        "description": r["description"],
                        "versions": r["versions"],
                        "latest": r["latest"],
                    }
                    for r in rows
                ]
            )
            return
        show_table(
            "models",
            ("name", "versions", "latest", "owner"),
            [(r["name"], r["versions"], r["latest"], r["owner"]) for r in rows],
        )
        return
    versions = reg.versions(name, status=status)
    if name is not None and not versions and status is None:
        reg.get(name)
    if format is Format.json:
        emit_json([v.to_dict() for v in versions])
        return
    show_table(
        "model versions",
        ("ref", "status", "aliases", "run", "created", "by"),
        [
            (
                v.ref,
                v.status,
                ", ".join(v.aliases),
                (v.run_id or "-")[:12],
                when(v.created_at),
                v.created_by,
            )
            for v in versions
        ],
    )


@app.command("show")
def show(
    ref: Annotated[str, typer.Argument(help="name, name@N or name@alias")],
    format: FormatOpt = Format.table,
) -> None:
    """Show a model version: status, signature, requirements, model card, history."""
    reg = state.open().registry
    mv = reg.get(ref)
    data = mv.to_dict()
    data["history"] = reg.history(mv.ref)
    if format is Format.json:
        emit_json(data)
        return
    show_mapping(
        mv.ref,
        {
            k: data[k]
            for k in (
                "status",
                "status_by",
                "status_reason",
                "aliases",
                "run_id",
                "flavor",
                "created_by",
            )
        }
        | {"created_at": when(mv.created_at)},
    )
    show_table(
        "signature",
        ("input", "type", "nullable"),
        [(c.name, c.type, c.nullable) for c in mv.signature.inputs],
    )
    show_table("metrics", ("metric", "value"), [(k, fmt_num(v)) for k, v in mv.metrics.items()])
    show_mapping("model card", mv.card)
    show_table(
        "history",
        ("when", "action", "by", "reason"),
        [(when(e["at"]), e["action"], e["actor"], e["reason"]) for e in data["history"]],
    )


@app.command("approve")
def approve(
    ref: Annotated[str, typer.Argument(help="name@N")],
    reason: Annotated[str, typer.Option(help="Why it is approved.")] = "",
    format: FormatOpt = Format.table,
) -> None:
    """Approve a model version for deployment."""
    mv = state.open().registry.approve(ref, reason=reason)
    if format is Format.json:
        emit_json(mv.to_dict())
    else:
        console.print(f"{mv.ref} approved by {mv.status_by}")


@app.command("reject")
def reject(
    ref: Annotated[str, typer.Argument(help="name@N")],
    reason: Annotated[str, typer.Option(help="Why it is rejected (required).")] = "",
    format: FormatOpt = Format.table,
) -> None:
    """Reject a model version."""
    mv = state.open().registry.reject(ref, reason=reason)
    if format is Format.json:
        emit_json(mv.to_dict())
    else:
        console.print(f"{mv.ref} rejected by {mv.status_by}: {mv.status_reason}")


@app.command("alias")
def alias(
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str, typer.Argument(help="Alias, e.g. production.")],
    version: Annotated[
        str | None, typer.Argument(help="Version number (omit with --delete).")
    ] = None,
    delete: Annotated[bool, typer.Option("--delete", help="Remove the alias.")] = False,
    format: FormatOpt = Format.table,
) -> None:
    """Point NAME@ALIAS at a version, or remove the alias."""
    reg = state.open().registry
    if delete:
        reg.delete_alias(name, alias)
        console.print(f"removed {name}@{alias}")
        return
    if version is None:
        raise typer.BadParameter("give the version the alias should point at")
    mv = reg.set_alias(name, alias, version)
    if format is Format.json:
        emit_json(mv.to_dict())
    else:
        console.print(f"{name}@{alias} -> {mv.ref}")


@app.command("compare")
def compare(
    a: Annotated[str, typer.Argument(help="First version.")],
    b: Annotated[str, typer.Argument(help="Second version.")],
    format: FormatOpt = Format.table,
) -> None:
    """Compare two versions: metrics and signature changes."""
    result = state.open().registry.compare(a, b)
    if format is Format.json:
        emit_json(result)
        return
    show_table(
        f"{result['a']} vs {result['b']}",
        ("metric", result["a"], result["b"], "diff"),
        [
            (k, fmt_num(v["a"]), fmt_num(v["b"]), fmt_num(v["diff"]))
            for k, v in result["metrics"].items()
        ],
    )
    show_mapping("signature changes", result["signature"])
