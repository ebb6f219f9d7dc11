"""``wellml endpoints``: deploy, serve, call and stop real-time endpoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from wellml.cli.context import state
from wellml.cli.output import (
    Format,
    console,
    emit_json,
    err_console,
    show_mapping,
    show_table,
    when,
)
from wellml.errors import InvalidInput

app = typer.Typer(help="Real-time endpoints.", no_args_is_help=True)

FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table or json")]


@app.command("serve")
def serve(
    model: Annotated[str, typer.Argument(help="The model version to serve: NAME@ALIAS or NAME@N.")],
    name: Annotated[str | None, typer.Option(help="Endpoint name (default: model name).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    capture_percent: Annotated[
        float, typer.Option(help="Share of requests recorded for monitoring (0-100).")
    ] = 100.0,
    auth: Annotated[
        bool, typer.Option("--auth/--no-auth", help="Require a token to invoke.")
    ] = True,
    allow_unapproved: Annotated[
        bool, typer.Option("--allow-unapproved", help="Serve a version that is not approved.")
    ] = False,
    feature_service: Annotated[
        str | None,
        typer.Option(help="Fetch the model's inputs from the online store by entity keys."),
    ] = None,
) -> None:
    """Deploy a model version and serve it here until stopped (Ctrl-C)."""
    ws = state.open()
    ep = ws.endpoints.deploy(
        model,
        name=name,
        host=host,
        port=port,
        capture_percent=capture_percent,
        auth=auth,
        allow_unapproved=allow_unapproved,
        feature_service=feature_service,
    )
    err_console.print(
        f"serving {ep.model_version} as endpoint [bold]{ep.name}[/] at {ep.url} "
        "(POST /invocations, GET /ping)"
    )
    if auth:
        err_console.print(
            f"callers need a token: wellml endpoints token {ep.name} --principal NAME"
        )
    ws.endpoints.serve(ep.name)


@app.command("up")
def up(name: Annotated[str, typer.Argument(help="A deployed endpoint.")]) -> None:
    """Serve an already deployed endpoint here until stopped."""
    state.open().endpoints.serve(name)


@app.command("list")
def list_(format: FormatOpt = Format.table) -> None:
    """List endpoints."""
    eps = state.open().endpoints.list()
    if format is Format.json:
        emit_json([e.to_dict() for e in eps])
        return
    show_table(
        "endpoints",
        ("name", "model version", "status", "url", "updated"),
        [(e.name, e.model_version, e.status, e.url, when(e.updated_at)) for e in eps],
    )


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Endpoint name.")], format: FormatOpt = Format.table
) -> None:
    """Show an endpoint with its configuration and deployment history."""
    ep = state.open().endpoints.get(name)
    data = ep.to_dict()
    if format is Format.json:
        emit_json(data)
        return
    show_mapping(ep.name, {k: v for k, v in data.items() if k != "deployments"})
    show_table(
        "deployments",
        ("started", "ended", "outcome", "by", "origin"),
        [
            (when(d["started_at"]), when(d["ended_at"]), d["outcome"], d["actor"], d["origin"])
            for d in ep.deployments
        ],
    )


@app.command("stop")
def stop(name: Annotated[str, typer.Argument(help="Endpoint name.")]) -> None:
    """Stop a running endpoint (it flushes captured data first)."""
    ep = state.open().endpoints.stop(name)
    console.print(f"endpoint {ep.name} is {ep.status}")


@app.command("token")
def token(
    name: Annotated[str, typer.Argument(help="Endpoint name.")],
    principal: Annotated[str, typer.Option(help="Who the token is for.")],
    ttl_days: Annotated[float, typer.Option(help="Days until it expires.")] = 90,
    format: FormatOpt = Format.table,
) -> None:
    """Issue a token that may invoke the endpoint (the secret is shown once)."""
    issued = state.open().endpoints.issue_token(name, principal, ttl_days=ttl_days)
    if format is Format.json:
        emit_json(
            {
                "id": issued.id,
                "principal": issued.principal,
                "scopes": list(issued.scopes),
                "expires_at": issued.expires_at,
                "token": issued.secret,
            }
        )
        return
    console.print(issued.secret)
    err_console.print(
        f"token {issued.id} for {principal}, scope invoke:{name}; "
        "store it now, it is not shown again"
    )


@app.command("invoke")
def invoke(
    name: Annotated[str, typer.Argument(help="Endpoint name.")],
    input: Annotated[Path, typer.Option("--input", "-i", help="CSV or JSON records file.")],
    token: Annotated[str | None, typer.Option(envvar="WELLML_TOKEN", help="Bearer token.")] = None,
) -> None:
    """Send rows from a file to a running endpoint and print its answer as JSON."""
    if not input.is_file():
        raise InvalidInput(f"no such file: {input}")
    try:
        if input.suffix == ".csv":
            rows = pd.read_csv(input).to_dict(orient="records")
        else:
            rows = json.loads(input.read_text())
    except (ValueError, pd.errors.ParserError) as exc:
        raise InvalidInput(f"{input}: cannot read: {exc}") from None
    emit_json(state.open().endpoints.invoke(name, rows, token=token))
