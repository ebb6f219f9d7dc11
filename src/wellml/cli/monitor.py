"""``wellml monitor``: baselines and constraints, monitors of endpoints and datasets, their
runs, schedules, alerts, ground truth and the data-poisoning guard."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from wellml.cli.context import state
from wellml.cli.output import (
    Format,
    console,
    emit,
    emit_json,
    err_console,
    show_mapping,
    show_table,
    when,
)
from wellml.errors import InvalidInput

if TYPE_CHECKING:
    from wellml.monitoring.service import Baseline, Monitoring

app = typer.Typer(
    help="Model monitors: baselines, data quality and drift, model quality, bias and "
    "feature-attribution drift, alerts, human review.",
    no_args_is_help=True,
)

FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table or json")]


def _pairs(items: list[str] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"{what} {item!r} is not KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def _value(text: str) -> Any:
    """A command-line value: JSON when it parses (numbers, true, lists), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _numbers(items: list[str] | None, what: str) -> dict[str, float]:
    out = {}
    for key, text in _pairs(items, what).items():
        try:
            out[key] = float(text)
        except ValueError:
            raise InvalidInput(f"{what} {key} takes a number, not {text!r}") from None
    return out


def _show_execution(result: Any) -> None:
    data = result.to_dict()
    report = data["report"]
    title = f"{data['kind']} {data['monitor']}: {data['dataset']}" + (
        f" vs baseline {data['baseline']}" if data["baseline"] else ""
    )
    if data["kind"] == "data_drift":
        show_table(
            title,
            ("feature", "kind", "test", "statistic", "p-value", "threshold", "drifted"),
            [
                (
                    f["feature"],
                    f["kind"],
                    f["method"],
                    f"{f['statistic']:.4f}" if f["statistic"] is not None else "-",
                    "-" if f["p_value"] is None else f"{f['p_value']:.3g}",
                    f["threshold"],
                    "YES" if f["drifted"] else "no",
                )
                for f in report.get("features", [])
            ],
        )
    elif data["kind"] == "model_quality":
        show_table(
            title,
            ("metric", "current", "baseline", "limit", "violation"),
            [
                (
                    c["metric"],
                    f"{c['current']:.4f}",
                    f"{c['baseline']:.4f}",
                    f"{c['limit']:.4f}",
                    "YES" if c["violation"] else "no",
                )
                for c in report.get("comparisons", [])
            ],
        )
    elif data["kind"] == "feature_attribution_drift":
        show_table(
            f"{title} (NDCG {report['ndcg']:.4f}, threshold {report['threshold']})",
            ("feature", "baseline", "current", "rank", "was"),
            [
                (
                    f["feature"],
                    f"{f['baseline']:.4g}",
                    f"{f['current']:.4g}",
                    f["current_rank"],
                    f["baseline_rank"],
                )
                for f in report.get("features", [])
            ],
        )
    else:
        console.print(title)
    if data["violations"]:
        show_table(
            "violations",
            ("feature / metric", "check", "description"),
            [
                (
                    v.get("feature_name") or v.get("metric_name") or "-",
                    v.get("constraint_check_type"),
                    v.get("description"),
                )
                for v in data["violations"]
            ],
        )
    if data["drifted_features"]:
        console.print(
            f"[bold red]drift[/] in {len(data['drifted_features'])} feature(s): "
            + ", ".join(data["drifted_features"])
        )
    elif data["kind"] == "data_drift":
        console.print("no drift")
    for alert in data["alerts"]:
        delivered = {True: "delivered", False: "NOT delivered", None: "logged"}[alert["delivered"]]
        console.print(f"alert ({alert['severity']}, {delivered}): {alert['message']}")


@app.command("create")
def create(
    name: Annotated[
        str | None, typer.Argument(help="Monitor name (default from the target).")
    ] = None,
    endpoint: Annotated[
        str | None, typer.Option("--endpoint", "-e", help="Endpoint to watch.")
    ] = None,
    dataset: Annotated[
        str | None, typer.Option("--dataset", "-d", help="Dataset name to watch instead.")
    ] = None,
    kind: Annotated[
        str,
        typer.Option(
            help="data_drift, data_quality, model_quality, bias_drift or feature_attribution_drift."
        ),
    ] = "data_drift",
    baseline: Annotated[str | None, typer.Option(help="Baseline reference (name@N).")] = None,
    schedule: Annotated[str | None, typer.Option(help="Cron expression, e.g. '0 * * * *'.")] = None,
    threshold: Annotated[
        list[str] | None, typer.Option("--threshold", "-t", help="KEY=NUMBER, repeatable.")
    ] = None,
    option: Annotated[
        list[str] | None, typer.Option("--option", "-o", help="KEY=VALUE (JSON), repeatable.")
    ] = None,
    webhook: Annotated[str | None, typer.Option(help="URL that receives alerts as JSON.")] = None,
    min_severity: Annotated[
        str, typer.Option(help="info, warning or critical: the least sent to the webhook.")
    ] = "warning",
    retrain: Annotated[
        str | None, typer.Option(help="Pipeline (module:function or name) to retrain on drift.")
    ] = None,
    retrain_param: Annotated[
        list[str] | None, typer.Option(help="KEY=VALUE (JSON) for the retrain run, repeatable.")
    ] = None,
    retrain_when: Annotated[str, typer.Option(help="drift or dataset_drift.")] = "drift",
    format: FormatOpt = Format.table,
) -> None:
    """Create or update a monitor of an endpoint's traffic or of a dataset."""
    route: dict[str, Any] | None = None
    if webhook or retrain:
        route = {"webhook": webhook, "min_severity": min_severity}
        if retrain:
            params = {k: _value(v) for k, v in _pairs(retrain_param, "retrain param").items()}
            route["retrain"] = {"pipeline": retrain, "params": params, "when": retrain_when}
    options = {k: _value(v) for k, v in _pairs(option, "option").items()}
    mon = state.open().monitoring.create_monitor(
        endpoint,
        kind=kind,
        name=name,
        dataset=dataset,
        baseline=baseline,
        thresholds=_numbers(threshold, "threshold"),
        alert_route=route,
        schedule=schedule,
        options=options,
    )
    if format is Format.json:
        emit_json(mon)
        return
    err_console.print(
        f"monitor [bold]{mon['name']}[/] ({mon['kind']}) watches "
        + (f"endpoint {mon['endpoint']}" if mon["endpoint"] else f"dataset {mon['target_dataset']}")
        + (f", baseline {mon['baseline']['ref']}" if mon["baseline"] else "")
        + (f", schedule {schedule}" if schedule else "")
    )


@app.command("list")
def list_(format: FormatOpt = Format.table) -> None:
    """List monitors."""
    mons = state.open().monitoring.monitors()
    if format is Format.json:
        emit_json(mons)
        return
    show_table(
        "monitors",
        ("name", "kind", "schedule", "alerts to", "created"),
        [
            (
                m["name"],
                m["kind"],
                m["config"].get("schedule") or "-",
                m["config"].get("alert_webhook") or "log",
                when(m["created_at"]),
            )
            for m in mons
        ],
    )


@app.command("run")
def run(
    target: Annotated[
        str, typer.Argument(help="Monitor name, or an endpoint (its drift monitor).")
    ],
    dataset: Annotated[
        str | None, typer.Option("--dataset", "-d", help="Check this dataset version instead.")
    ] = None,
    all_captured: Annotated[
        bool,
        typer.Option("--all", help="Check the latest data again if nothing new arrived."),
    ] = False,
    html: Annotated[
        Path | None, typer.Option(help="Also write the report as HTML here (JSON beside it).")
    ] = None,
    format: FormatOpt = Format.table,
) -> None:
    """Run a monitor now. Exits 0 either way; the result lists the violations."""
    ws = state.open()
    names = {m["name"] for m in ws.monitoring.monitors()}
    if target in names:
        result = ws.monitoring.run_monitor(target, dataset=dataset, all_captured=all_captured)
    elif dataset is not None:
        raise InvalidInput(f"no monitor named {target!r}")
    else:
        result = ws.monitoring.run(target, all_captured=all_captured)
    if html is not None:
        path = ws.monitoring.report_html(result.id, html)
        err_console.print(f"report written to {path}")
    emit(format, result.to_dict(), lambda: _show_execution(result))


@app.command("run-due")
def run_due(
    loop: Annotated[bool, typer.Option(help="Keep checking, every --interval seconds.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between checks with --loop.")] = 60.0,
    dispatch: Annotated[
        bool, typer.Option(help="Also run the pipelines of pending retrain triggers.")
    ] = False,
    review: Annotated[
        bool, typer.Option(help="Also queue new low-confidence predictions for review.")
    ] = True,
    format: FormatOpt = Format.table,
) -> None:
    """Run every scheduled monitor whose cron slot is due (once per slot, even across
    restarts), and fill the review queues. For cron, call it every minute; or keep it
    running with --loop (with --format json, one JSON document per line and pass)."""
    if not interval > 0:
        raise InvalidInput(f"--interval must be a positive number of seconds, not {interval}")
    ws = state.open()
    while True:
        results = ws.monitoring.run_due()
        dispatched = ws.monitoring.dispatch_retraining() if dispatch else []
        scans = [s.to_dict() for s in ws.monitoring.reviews.fill()] if review else []
        if format is Format.json:
            doc = {"runs": results, "retraining": dispatched, "review": scans}
            if loop:
                sys.stdout.write(json.dumps(doc, default=str) + "\n")
                sys.stdout.flush()
            else:
                emit_json(doc)
        else:
            for r in results:
                console.print(f"{when(r['slot'])} {r['monitor']}: {r['outcome']} ({r['message']})")
            for d in dispatched:
                console.print(f"retrain trigger {d['trigger']}: {d['status']}")
            for sc in scans:
                if sc["queued"]:
                    console.print(f"review queue of {sc['endpoint']}: {sc['queued']} new item(s)")
            if not results and not loop:
                console.print("nothing due")
        if not loop:
            return
        time.sleep(interval)


@app.command("history")
def history(
    monitor: Annotated[str, typer.Argument(help="Monitor name (default ENDPOINT-drift).")],
    limit: Annotated[int, typer.Option(help="How many executions.")] = 20,
    format: FormatOpt = Format.table,
) -> None:
    """Past executions of a monitor, newest first."""
    rows = state.open().monitoring.executions(monitor, limit)
    if format is Format.json:
        emit_json(rows)
        return
    show_table(
        f"executions of {monitor}",
        ("id", "started", "trigger", "status", "violations"),
        [
            (r["id"][:12], when(r["started_at"]), r["trigger"], r["status"], len(r["violations"]))
            for r in rows
        ],
    )


@app.command("report")
def report(
    execution: Annotated[str, typer.Argument(help="Execution id.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="HTML file to write.")] = None,
) -> None:
    """Write an execution's report as self-contained HTML (with Plotly) and JSON beside it."""
    path = state.open().monitoring.report_html(execution, out)
    console.print(str(path))


@app.command("alerts")
def alerts(
    monitor: Annotated[str | None, typer.Argument(help="Only this monitor's alerts.")] = None,
    limit: Annotated[int, typer.Option(help="How many events.")] = 50,
    format: FormatOpt = Format.table,
) -> None:
    """The alert event log, newest first: severity, message, and webhook delivery."""
    rows = state.open().monitoring.alerts(monitor, limit)
    if format is Format.json:
        emit_json(rows)
        return
    show_table(
        "alerts",
        ("time", "monitor", "severity", "delivered", "message"),
        [
            (
                when(r["created_at"]),
                r["monitor"],
                r["severity"],
                {True: "yes", False: f"NO ({r['error']})", None: "log only"}[r["delivered"]],
                r["message"],
            )
            for r in rows
        ],
    )


@app.command("triggers")
def triggers(
    status: Annotated[
        str | None, typer.Option(help="pending, claimed, completed or failed.")
    ] = None,
    dispatch: Annotated[bool, typer.Option(help="Run the pending ones' pipelines now.")] = False,
    format: FormatOpt = Format.table,
) -> None:
    """Retrain triggers recorded by drift alerts."""
    ws = state.open()
    if dispatch:
        ws.monitoring.dispatch_retraining()
    rows = ws.monitoring.retrain_triggers(status)
    if format is Format.json:
        emit_json(rows)
        return
    show_table(
        "retrain triggers",
        ("id", "time", "monitor", "pipeline", "status", "run"),
        [
            (
                r["id"][:12],
                when(r["created_at"]),
                r["monitor"],
                r["pipeline"],
                r["status"],
                r["pipeline_run_id"] or "-",
            )
            for r in rows
        ],
    )


@app.command("baseline")
def baseline(
    dataset: Annotated[str, typer.Argument(help="Dataset version (name@N) to baseline.")],
    features: Annotated[
        str | None, typer.Option(help="Comma-separated columns (default: all).")
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Baseline name (default: the dataset's).")
    ] = None,
    export: Annotated[
        Path | None, typer.Option(help="Write statistics.json and constraints.json here.")
    ] = None,
    format: FormatOpt = Format.table,
) -> None:
    """Compute (or reuse) the baseline of a dataset version: statistics and constraints."""
    mon = state.open().monitoring
    feats = [f.strip() for f in features.split(",") if f.strip()] if features else None
    base = mon.baseline(dataset, features=feats, name=name)
    _exported_and_shown(mon, base, export, format)


def _exported_and_shown(
    mon: Monitoring, base: Baseline, export: Path | None, format: Format
) -> None:
    """Write a baseline's two files when asked, then print it."""
    if export is not None:
        paths = mon.export_baseline(base, export)
        err_console.print(f"wrote {paths['statistics']} and {paths['constraints']}")
    emit(format, base.to_dict(), lambda: _show_constraints(base))


def _show_constraints(base: Any) -> None:
    rows = []
    for c in base.constraints["features"]:
        nums = c.get("num_constraints") or {}
        domain = (c.get("string_constraints") or {}).get("domains")
        rows.append(
            (
                c["name"],
                c["inferred_type"],
                f"{c['completeness']:.4f}",
                "-" if not nums else f"[{nums.get('min')}, {nums.get('max')}]",
                "-" if not nums else str(nums.get("is_non_negative")),
                "-"
                if domain is None
                else ", ".join(map(str, domain[:8])) + (" ..." if len(domain) > 8 else ""),
            )
        )
    show_table(
        f"baseline {base.ref} of {base.dataset_ref}",
        ("feature", "type", "completeness", "range", "non-negative", "domain"),
        rows,
    )
    show_mapping("monitoring_config", base.constraints.get("monitoring_config", {}))


@app.command("constraints")
def constraints(
    baseline: Annotated[str, typer.Argument(help="Baseline reference (name or name@N).")],
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="FEATURE.SETTING=VALUE or monitoring_config.SETTING=VALUE; makes a new version.",
        ),
    ] = None,
    export: Annotated[
        Path | None, typer.Option(help="Write statistics.json and constraints.json here.")
    ] = None,
    format: FormatOpt = Format.table,
) -> None:
    """Show a baseline's constraints, or edit them into a new baseline version."""
    mon = state.open().monitoring
    base = mon.get_baseline(baseline)
    if set_:
        base = mon.edit_constraints(base, _pairs(set_, "--set"))
        err_console.print(f"new baseline version [bold]{base.ref}[/]")
    _exported_and_shown(mon, base, export, format)


@app.command("ground-truth")
def ground_truth(
    endpoint: Annotated[str, typer.Argument(help="The endpoint that made the predictions.")],
    source: Annotated[str, typer.Argument(help="A CSV/Parquet file or a dataset reference.")],
    label: Annotated[str, typer.Option(help="The label column.")] = "label",
    id_column: Annotated[
        str, typer.Option("--id", help="The inference id column.")
    ] = "inference_id",
    format: FormatOpt = Format.table,
) -> None:
    """Send ground-truth labels for an endpoint's inferences (joined on inference id)."""
    ws = state.open()
    data: Any = source
    path = Path(source)
    if path.exists():
        from wellml.data.catalog import read_source

        # One reader for every file the CLI takes: CSV, Parquet or JSON lines, and a clear
        # error for anything else (rather than reading it as CSV).
        data = read_source(path)[0].to_pandas()
    result = ws.monitoring.ingest_ground_truth(endpoint, data, label=label, inference_id=id_column)
    emit(
        format,
        result.to_dict(),
        lambda: show_mapping(f"ground truth for {endpoint}", result.to_dict()),
    )


@app.command("poisoning")
def poisoning(
    new: Annotated[str, typer.Argument(help="The new training dataset version.")],
    key: Annotated[str, typer.Option(help="Comma-separated record key column(s).")],
    label: Annotated[str, typer.Option(help="The label column.")],
    previous: Annotated[
        str | None, typer.Option(help="Version to compare with (default: the one before).")
    ] = None,
    threshold: Annotated[
        list[str] | None, typer.Option("--threshold", "-t", help="KEY=NUMBER, repeatable.")
    ] = None,
    format: FormatOpt = Format.table,
) -> None:
    """Check a new training dataset version for signs of poisoning; exit 1 when blocked."""
    report = state.open().monitoring.poisoning_check(
        new,
        previous,
        key=[k.strip() for k in key.split(",") if k.strip()],
        label=label,
        thresholds=_numbers(threshold, "threshold"),
    )
    if format is Format.json:
        emit_json(report.to_dict())
    else:
        show_table(
            f"poisoning check of {report.new} against {report.previous}",
            ("signal", "value", "threshold", "blocks"),
            [
                (name, f"{s['value']:.4f}", s["threshold"], "YES" if s["blocked"] else "no")
                for name, s in report.signals.items()
            ],
        )
        console.print("[bold red]BLOCKED[/]" if report.blocked else "passed")
    if report.blocked:
        raise typer.Exit(1)


# -- human review ------------------------------------------------------------------------------

review_app = typer.Typer(
    help="Human review of low-confidence predictions; labels become ground truth.",
    no_args_is_help=True,
)
app.add_typer(review_app, name="review")


def _show_review_summary(summary: dict[str, Any]) -> None:
    counts = summary["counts"]
    figures = [f"{n} {status}" for status, n in counts.items()]
    if summary.get("pending_age_p95_s") is not None:
        figures.append(f"pending age p95 {summary['pending_age_p95_s'] / 3600:.1f} h")
    if summary.get("disagreement_rate") is not None:
        figures.append(f"reviewers disagree with the model on {summary['disagreement_rate']:.0%}")
    console.print(
        f"review queue of {summary['endpoint']} (probability < {summary['threshold']}): "
        + ", ".join(figures)
    )


@review_app.command("setup")
def review_setup(
    endpoint: Annotated[str, typer.Argument(help="The endpoint whose predictions are reviewed.")],
    threshold: Annotated[
        float, typer.Option(help="Queue rows whose predicted-class probability is below this.")
    ] = 0.6,
    format: FormatOpt = Format.table,
) -> None:
    """Create an endpoint's review queue, or change its threshold."""
    summary = state.open().monitoring.reviews.configure(endpoint, threshold=threshold)
    emit(format, summary, lambda: _show_review_summary(summary))


@review_app.command("fill")
def review_fill(
    endpoint: Annotated[
        str | None, typer.Argument(help="One endpoint (default: every review queue).")
    ] = None,
    format: FormatOpt = Format.table,
) -> None:
    """Queue the low-confidence rows captured since the last scan."""
    scans = state.open().monitoring.reviews.fill(endpoint)
    if format is Format.json:
        emit_json([s.to_dict() for s in scans])
        return
    for s in scans:
        console.print(f"{s.endpoint}: {s.queued} of {s.scanned_rows} new row(s) queued")
    if not scans:
        console.print("no review queues")


@review_app.command("list")
def review_list(
    endpoint: Annotated[str, typer.Argument(help="The endpoint.")],
    status: Annotated[str, typer.Option(help="pending, labelled, skipped or all.")] = "pending",
    limit: Annotated[int, typer.Option(help="At most this many items.")] = 50,
    format: FormatOpt = Format.table,
) -> None:
    """Items of an endpoint's review queue, least confident first."""
    reviews = state.open().monitoring.reviews
    items = reviews.items(endpoint, status=None if status == "all" else status, limit=limit)
    if format is Format.json:
        emit_json([i.to_dict() for i in items])
        return
    _show_review_summary(reviews.summary(endpoint))
    show_table(
        None,
        ("item", "confidence", "prediction", "inputs", "status", "label", "reviewer"),
        [
            (
                i.id,
                f"{i.confidence:.3f}",
                i.prediction,
                json.dumps(i.inputs, default=str)[:80],
                i.status,
                i.label,
                i.reviewer,
            )
            for i in items
        ],
    )


@review_app.command("label")
def review_label(
    endpoint: Annotated[str, typer.Argument(help="The endpoint.")],
    labels: Annotated[
        list[str] | None, typer.Argument(help="ITEM=LABEL pairs.", show_default=False)
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", help="CSV/Parquet/JSON lines with item_id and label columns."),
    ] = None,
    reviewer: Annotated[str | None, typer.Option(help="Who labelled (default: you).")] = None,
    note: Annotated[str | None, typer.Option(help="A note kept on each item.")] = None,
    format: FormatOpt = Format.table,
) -> None:
    """Label review items; the labels are sent as the endpoint's ground truth."""
    if (file is None) == (not labels):
        raise InvalidInput("give ITEM=LABEL pairs or --file, not both or neither")
    given: Any = (
        file if file is not None else {k: _value(v) for k, v in _pairs(labels, "label").items()}
    )
    result = state.open().monitoring.reviews.label(endpoint, given, reviewer=reviewer, note=note)
    if format is Format.json:
        emit_json(result)
        return
    truth = result["ground_truth"]
    console.print(
        f"{result['labelled']} item(s) labelled; ground truth {truth['dataset']} "
        f"({truth['matched']} matched a captured inference)"
    )


@review_app.command("skip")
def review_skip(
    endpoint: Annotated[str, typer.Argument(help="The endpoint.")],
    items: Annotated[list[str], typer.Argument(help="Item ids.")],
    reviewer: Annotated[str | None, typer.Option(help="Who skipped (default: you).")] = None,
    note: Annotated[str | None, typer.Option(help="Why.")] = None,
) -> None:
    """Close review items without a label."""
    n = state.open().monitoring.reviews.skip(endpoint, items, reviewer=reviewer, note=note)
    console.print(f"{n} item(s) skipped")


@review_app.command("export")
def review_export(
    endpoint: Annotated[str, typer.Argument(help="The endpoint.")],
    path: Annotated[Path, typer.Argument(help="The CSV file to write.")],
) -> None:
    """Write the pending items as CSV with an empty label column, for `label --file`."""
    target = state.open().monitoring.reviews.export(endpoint, path)
    err_console.print(f"wrote {target}")


@review_app.command("resend")
def review_resend(
    endpoint: Annotated[str, typer.Argument(help="The endpoint.")],
    format: FormatOpt = Format.table,
) -> None:
    """Send as ground truth the labelled items that have none yet (after a crash)."""
    result = state.open().monitoring.reviews.resend(endpoint)
    emit(
        format,
        result,
        lambda: console.print(
            "nothing to resend" if result is None else f"sent {result['rows']} label(s)"
        ),
    )
