"""``wellml endpoints``: create, update, roll back, serve, call and stop real-time endpoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

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
from wellml.serving.config import (
    AutoScaling,
    DeploymentPolicy,
    ProductionVariant,
    RateLimit,
    ShadowVariant,
    parse_alarm,
    parse_variant,
)

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
def up(
    name: Annotated[str, typer.Argument(help="A deployed endpoint.")],
    backend: Annotated[
        str, typer.Option(help="local (replica processes on this host) or ray (Ray Serve).")
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(help="Ray to deploy on (ray://HOST:10001, auto); default: a local Ray."),
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Ray Serve's HTTP port (default: the endpoint's port).")
    ] = None,
) -> None:
    """Serve an already deployed endpoint until stopped (Ctrl-C or SIGTERM)."""
    if backend not in ("local", "ray"):
        raise InvalidInput(f"unknown backend {backend!r}; use local or ray")
    if backend == "local":
        if ray_address is not None or port is not None:
            raise InvalidInput("--ray-address and --port go with --backend ray")
        state.open().endpoints.serve(name)
        return
    from wellml.serving.ray_serve import stop_requested

    # SIGTERM (`wellml endpoints stop`) may come while the application is still coming up.
    with stop_requested() as done:
        running = state.open().endpoints.deploy_ray(name, address=ray_address, port=port)
        err_console.print(f"endpoint {name} serves on Ray Serve at {running.url}")
        running.serve_until_stopped(done)


@app.command("list")
def list_(format: FormatOpt = Format.table) -> None:
    """List endpoints."""
    eps = state.open().endpoints.list()
    if format is Format.json:
        emit_json([e.to_dict() for e in eps])
        return
    show_table(
        "endpoints",
        ("name", "variants", "config", "status", "url", "updated"),
        [
            (
                e.name,
                ", ".join(
                    f"{v['name']}="
                    + (
                        "multi-model[" + ",".join(v["multi_model"]["models"]) + "]"
                        if v.get("multi_model")
                        else v["model_version"]
                    )
                    + (f" ({v['weight']:g})" if len(e.config.get("variants", [])) > 1 else "")
                    for v in e.config.get("variants", [])
                ),
                f"v{e.config_version}" if e.config_version else "-",
                e.status,
                e.url,
                when(e.updated_at),
            )
            for e in eps
        ],
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
    show_mapping(
        ep.name,
        {k: v for k, v in data.items() if k not in ("deployments", "config", "runtime")},
    )
    runtime = (ep.runtime or {}).get("variants", {})
    show_table(
        "variants",
        ("name", "model version", "weight", "replicas", "ready", "requests", "5xx", "p99 ms"),
        [
            (
                v.name,
                "multi-model[" + ",".join(v.multi_model.models) + "]"
                if isinstance(v, ProductionVariant) and v.multi_model is not None
                else v.model_version,
                f"{v.weight:g}"
                if isinstance(v, ProductionVariant)
                else f"shadow {v.sampling_percent:g}%",
                v.replicas,
                sum(r["ready"] for r in runtime.get(v.name, {}).get("replicas", []))
                if runtime
                else "-",
                (runtime.get(v.name, {}).get("total") or {}).get("requests"),
                (runtime.get(v.name, {}).get("total") or {}).get("errors_5xx"),
                (runtime.get(v.name, {}).get("last_60s") or {}).get("p99_ms"),
            )
            for v in ep.endpoint_config.all_variants()
        ],
    )
    show_table(
        "deployments",
        ("started", "ended", "strategy", "config", "outcome", "by", "origin", "reason"),
        [
            (
                when(d["started_at"]),
                when(d["ended_at"]),
                d.get("strategy"),
                f"v{d.get('from_version')} -> v{d.get('to_version')}",
                d["outcome"],
                d["actor"],
                d["origin"],
                d.get("reason"),
            )
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
    rate: Annotated[
        float | None, typer.Option(help="This token's own limit, requests a second.")
    ] = None,
    burst: Annotated[int | None, typer.Option(help="Burst above --rate.")] = None,
    format: FormatOpt = Format.table,
) -> None:
    """Issue a token that may invoke the endpoint (the secret is shown once)."""
    issued = state.open().endpoints.issue_token(
        name, principal, ttl_days=ttl_days, rate_limit=(rate, burst) if rate is not None else None
    )
    if format is Format.json:
        emit_json(
            {
                "id": issued.id,
                "principal": issued.principal,
                "scopes": list(issued.scopes),
                "expires_at": issued.expires_at,
                "rate_limit": issued.rate_limit,
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
    variant: Annotated[
        str | None, typer.Option(help="Send to this production variant, whatever the weights.")
    ] = None,
    target_model: Annotated[
        str | None,
        typer.Option(help="The model version to answer, on a multi-model endpoint: NAME@V."),
    ] = None,
    explain: Annotated[
        str | None,
        typer.Option(
            help="Also return SHAP explanations of the rows this JMESPath filter selects: "
            "'`true`' for all, 'probability < `0.6`' for the unsure ones."
        ),
    ] = None,
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
    emit_json(
        state.open().endpoints.invoke(
            name, rows, token=token, variant=variant, target_model=target_model, explain=explain
        )
    )


# -- managed endpoints ---------------------------------------------------------------------------

VariantOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--variant",
        help="NAME=MODEL@V[,weight=W][,replicas=N][,min=N,max=N,target=X]; repeat for A/B.",
    ),
]
ShadowOpt = Annotated[
    list[str] | None,
    typer.Option("--shadow", help="NAME=MODEL@V[,percent=P][,replicas=N]: a shadow variant."),
]
AlarmOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--alarm",
        help="error_rate=0.01[,4xx] | p99_ms=50 | capture:COLUMN:mean<=X; repeatable.",
    ),
]


def _variants(texts: list[str]) -> list[ProductionVariant]:
    out = []
    for text in texts:
        v = parse_variant(text)
        scaling = None
        if any(k in v for k in ("min", "max", "target")):
            scaling = AutoScaling(
                min_replicas=int(v.get("min", v.get("replicas", 1))),
                max_replicas=int(v.get("max", max(v.get("replicas", 1), 4))),
                target_inflight=float(v.get("target", 4.0)),
            )
        out.append(
            ProductionVariant(
                v["name"],
                v["model"],
                int(v.get("replicas", scaling.min_replicas if scaling else 1)),
                float(v.get("weight", 1.0)),
                scaling,
            )
        )
    return out


def _shadows(texts: list[str]) -> list[ShadowVariant]:
    out = []
    for text in texts:
        v = parse_variant(text, shadow=True)
        out.append(
            ShadowVariant(
                v["name"], v["model"], int(v.get("replicas", 1)), float(v.get("percent", 100.0))
            )
        )
    return out


def _policy(
    strategy: str | None,
    canary_percent: float,
    step_percent: float,
    bake: float,
    alarms: list[str] | None,
    smoke_test: bool,
) -> DeploymentPolicy | None:
    if strategy is None and not alarms:
        return None
    return DeploymentPolicy(
        strategy=strategy or "canary",
        canary_percent=canary_percent,
        linear_step_percent=step_percent,
        bake_seconds=bake,
        smoke_test=smoke_test,
        alarms=tuple(parse_alarm(a) for a in alarms or []),
    )


def _rate(rate: float | None, burst: int | None) -> RateLimit | None:
    return RateLimit(rate, burst) if rate is not None else None


def _emit_deployment(dep: dict[str, Any], format: Format) -> None:
    if format is Format.json:
        emit_json(dep)
        return
    show_table(
        f"deployment {dep['id']} ({dep.get('strategy')}): {dep['outcome']}",
        ("at", "step", "detail"),
        [
            (
                when(s["at"]),
                s["action"],
                ", ".join(f"{k}={v}" for k, v in s.items() if k not in ("at", "action")),
            )
            for s in dep.get("steps") or []
        ],
    )
    if dep.get("reason"):
        err_console.print(f"reason: {dep['reason']}")


StrategyOpt = Annotated[
    str | None, typer.Option(help="all-at-once, canary or linear (default: the endpoint's).")
]
CanaryOpt = Annotated[float, typer.Option(help="Canary share of traffic, percent.")]
StepOpt = Annotated[float, typer.Option(help="Linear step, percent of traffic.")]
BakeOpt = Annotated[float, typer.Option(help="Seconds each traffic step bakes.")]
SmokeOpt = Annotated[
    bool, typer.Option("--smoke-test/--no-smoke-test", help="Test new variants first.")
]


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Endpoint name.")],
    variant: VariantOpt = None,
    shadow: ShadowOpt = None,
    model: Annotated[
        str | None, typer.Option(help="One model version as the only variant, 'primary'.")
    ] = None,
    replicas: Annotated[int, typer.Option(help="Replicas of --model.")] = 1,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    capture_percent: Annotated[float, typer.Option(help="Share of requests captured.")] = 100.0,
    auth: Annotated[bool, typer.Option("--auth/--no-auth", help="Require a token.")] = True,
    rate: Annotated[
        float | None, typer.Option(help="Requests a second allowed per consumer token.")
    ] = None,
    burst: Annotated[int | None, typer.Option(help="Burst allowed above the rate.")] = None,
    feature_service: Annotated[
        str | None, typer.Option(help="Fetch the model's inputs from the online store.")
    ] = None,
    strategy: StrategyOpt = None,
    canary_percent: CanaryOpt = 10.0,
    step_percent: StepOpt = 25.0,
    bake: BakeOpt = 60.0,
    alarm: AlarmOpt = None,
    smoke_test: SmokeOpt = True,
    allow_unapproved: Annotated[
        bool, typer.Option("--allow-unapproved", help="Serve versions that are not approved.")
    ] = False,
    multi_model: Annotated[
        bool,
        typer.Option(
            "--multi-model", help="Serve many model versions, chosen per request (--models)."
        ),
    ] = False,
    models: Annotated[
        list[str] | None,
        typer.Option(
            "--models",
            help="With --multi-model: model names (any approved version) or NAME@V, "
            "comma-separated or repeated.",
        ),
    ] = None,
    memory_budget: Annotated[
        str | None,
        typer.Option(help="With --multi-model: memory for loaded models per replica, e.g. 512MiB."),
    ] = None,
    max_models: Annotated[
        int | None, typer.Option(help="With --multi-model: most models loaded per replica.")
    ] = None,
    format: FormatOpt = Format.table,
) -> None:
    """Create an endpoint from production variants (and shadows); start it with `up`."""
    variants = _variants(variant or [])
    if model is not None:
        variants.insert(0, ProductionVariant("primary", model, replicas, 1.0))
    if multi_model:
        if variants:
            raise InvalidInput("--multi-model takes --models, not --model or --variant")
        names = [m.strip() for text in models or [] for m in text.split(",") if m.strip()]
        if not names or memory_budget is None:
            raise InvalidInput("--multi-model needs --models and --memory-budget")
        variants = [
            ProductionVariant.multi(
                "primary",
                names,
                memory_budget=memory_budget,
                max_models=max_models,
                replicas=replicas,
            )
        ]
    elif models or memory_budget is not None or max_models is not None:
        raise InvalidInput("--models, --memory-budget and --max-models go with --multi-model")
    if not variants:
        raise InvalidInput("give --model or at least one --variant")
    ep = state.open().endpoints.create(
        name,
        variants,
        shadows=_shadows(shadow or []),
        host=host,
        port=port,
        auth=auth,
        capture_percent=capture_percent,
        feature_service=feature_service,
        rate_limit=_rate(rate, burst),
        policy=_policy(strategy, canary_percent, step_percent, bake, alarm, smoke_test),
        allow_unapproved=allow_unapproved,
    )
    if format is Format.json:
        emit_json(ep.to_dict())
        return
    console.print(
        f"endpoint {ep.name} created (config v{ep.config_version}); start it with "
        f"wellml endpoints up {ep.name}"
    )


@app.command("update")
def update(
    name: Annotated[str, typer.Argument(help="Endpoint name.")],
    model: Annotated[
        str | None, typer.Option(help="Replace the production variants with this version.")
    ] = None,
    new_variant: Annotated[
        str | None, typer.Option("--name-variant", help="Name of the new variant of --model.")
    ] = None,
    replicas: Annotated[int | None, typer.Option(help="Replicas (of --model, or all).")] = None,
    variant: VariantOpt = None,
    weight: Annotated[
        list[str] | None, typer.Option("--weight", help="VARIANT=W: change a variant's weight.")
    ] = None,
    shadow: ShadowOpt = None,
    no_shadows: Annotated[bool, typer.Option("--no-shadows", help="Remove shadows.")] = False,
    rate: Annotated[float | None, typer.Option(help="Requests a second per token.")] = None,
    burst: Annotated[int | None, typer.Option(help="Burst above the rate.")] = None,
    strategy: StrategyOpt = None,
    canary_percent: CanaryOpt = 10.0,
    step_percent: StepOpt = 25.0,
    bake: BakeOpt = 60.0,
    alarm: AlarmOpt = None,
    smoke_test: SmokeOpt = True,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for the outcome.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait.")] = 900,
    format: FormatOpt = Format.table,
) -> None:
    """Move an endpoint to a new configuration by a deployment strategy (blue/green with
    canary or linear steps, bakes and alarms that roll back)."""
    weights = None
    if weight:
        weights = {}
        for w in weight:
            key, sep, value = w.partition("=")
            try:
                weights[key.strip()] = float(value)
            except ValueError:
                raise InvalidInput(f"cannot read weight {w!r}; write VARIANT=NUMBER") from None
            if not sep:
                raise InvalidInput(f"cannot read weight {w!r}; write VARIANT=NUMBER")
    dep = state.open().endpoints.update(
        name,
        model=model,
        variant=new_variant,
        replicas=replicas,
        variants=_variants(variant) if variant else None,
        weights=weights,
        shadows=_shadows(shadow) if shadow else ([] if no_shadows else None),
        rate_limit=_rate(rate, burst),
        policy=_policy(strategy, canary_percent, step_percent, bake, alarm, smoke_test),
        wait=wait,
        timeout=timeout,
    )
    _emit_deployment(dep, format)
    if dep["outcome"] in ("rolled-back", "failed"):
        raise typer.Exit(1)


@app.command("rollback")
def rollback(
    name: Annotated[str, typer.Argument(help="Endpoint name.")],
    to_version: Annotated[
        int | None, typer.Option("--to", help="Configuration version (default: the previous).")
    ] = None,
    drill: Annotated[
        bool, typer.Option("--drill", help="Roll back, then forward again: a recorded drill.")
    ] = False,
    format: FormatOpt = Format.table,
) -> None:
    """Go back to an earlier configuration version of an endpoint."""
    deps = state.open().endpoints.rollback(name, to_version=to_version, drill=drill)
    if format is Format.json:
        emit_json(deps)
        return
    for dep in deps:
        _emit_deployment(dep, format)


@app.command("delete")
def delete(name: Annotated[str, typer.Argument(help="Endpoint name.")]) -> None:
    """Delete an endpoint (stopping it if it runs here); its history is kept."""
    state.open().endpoints.delete(name)
    console.print(f"endpoint {name} deleted")


@app.command("history")
def history(
    name: Annotated[str, typer.Argument(help="Endpoint name.")], format: FormatOpt = Format.table
) -> None:
    """Configuration versions and supervisor events (restarts, scaling) of an endpoint."""
    eps = state.open().endpoints
    configs = eps.configs(name)
    events = eps.events(name)
    if format is Format.json:
        emit_json({"configs": configs, "events": events})
        return
    show_table(
        "configurations",
        ("version", "created", "by", "variants"),
        [
            (
                c["version"],
                when(c["created_at"]),
                c["created_by"],
                ", ".join(f"{v['name']}={v['model_version']}" for v in c["config"]["variants"]),
            )
            for c in configs
        ],
    )
    show_table(
        "events",
        ("at", "kind", "variant", "detail"),
        [(when(e["at"]), e["kind"], e["variant"], e["detail"]) for e in events],
    )


@app.command("compare")
def compare(
    name: Annotated[str, typer.Argument(help="Endpoint name.")], format: FormatOpt = Format.table
) -> None:
    """Per-variant figures of an A/B or shadow test: traffic, errors, latency, predictions."""
    data = state.open().endpoints.compare(name)
    if format is Format.json:
        emit_json(data)
        return
    show_table(
        f"{name}: variants",
        ("variant", "model version", "weight", "requests", "5xx", "p99 ms", "mean prediction"),
        [
            (
                k,
                v.get("model_version"),
                "shadow" if v.get("shadow") else v.get("weight"),
                (v.get("traffic") or {}).get("requests"),
                (v.get("traffic") or {}).get("errors_5xx"),
                (v.get("last_60s") or {}).get("p99_ms"),
                (v.get("predictions") or {}).get("mean"),
            )
            for k, v in data["variants"].items()
        ],
    )
    for k, v in data["shadows"].items():
        show_mapping(f"shadow {k}", v)


@app.command("batch")
def batch(
    model: Annotated[str, typer.Argument(help="Model version: NAME@N or NAME@ALIAS.")],
    input: Annotated[Path, typer.Argument(help="A CSV or Parquet file.")],
    output: Annotated[Path, typer.Argument(help="Folder for the part-NNNNN.parquet files.")],
    chunk_rows: Annotated[int, typer.Option(help="Rows per chunk.")] = 100_000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 2,
    format: FormatOpt = Format.table,
) -> None:
    """Batch transform: predict every row of a file larger than memory, chunk by chunk;
    run it again to resume a job that stopped."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=format is Format.json,
    ) as bar:
        task = bar.add_task(f"{input.name} -> {output.name}", total=None)

        def show(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        job = state.open().endpoints.batch_transform(
            model, input, output, chunk_rows=chunk_rows, workers=workers, progress=show
        )
    if format is Format.json:
        emit_json(job.to_dict())
        return
    console.print(
        f"{job.rows:,} rows in {job.chunks_total} chunks -> {job.output}"
        + (" (resumed)" if job.resumed else "")
    )
