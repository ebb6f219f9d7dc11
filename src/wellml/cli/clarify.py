"""``wellml clarify``: bias metrics and SHAP explanations, stored as reports."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from wellml.cli.context import state
from wellml.cli.output import Format, console, emit_json, fmt_num, show_mapping, show_table, when
from wellml.errors import InvalidInput

if TYPE_CHECKING:
    from wellml.clarify.bias import ValuesOrThreshold
    from wellml.clarify.service import ClarifyReport

app = typer.Typer(
    help="Clarify: bias metrics and SHAP explanations of datasets and models.",
    no_args_is_help=True,
)

FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table or json")]
HtmlOpt = Annotated[
    Path | None,
    typer.Option("--html", help="Also write the report as an HTML page here (JSON beside it)."),
]


def _values_or_threshold(
    values: list[str] | None, threshold: float | None, what: str, *, required: bool
) -> ValuesOrThreshold | None:
    if values and threshold is not None:
        raise InvalidInput(f"give --{what}-value or --{what}-threshold, not both")
    if threshold is not None:
        from wellml.clarify.bias import Threshold

        return Threshold(threshold)
    if values:
        return values[0] if len(values) == 1 else list(values)
    if required:
        raise InvalidInput(f"give the positive {what} with --{what}-value or --{what}-threshold")
    return None


@app.command("bias")
def bias(
    dataset: Annotated[str, typer.Argument(help="Dataset version: name or name@N.")],
    label: Annotated[str, typer.Option("--label", help="The label column.")],
    facet: Annotated[str, typer.Option("--facet", help="The facet (sensitive) column.")],
    label_value: Annotated[
        list[str] | None,
        typer.Option("--label-value", help="A positive label value (repeat for several)."),
    ] = None,
    label_threshold: Annotated[
        float | None,
        typer.Option("--label-threshold", help="Labels greater than this are positive."),
    ] = None,
    facet_value: Annotated[
        list[str] | None,
        typer.Option(
            "--facet-value",
            help="Facet value(s) selecting group d (repeat for several); "
            "default: each value in turn.",
        ),
    ] = None,
    facet_threshold: Annotated[
        float | None,
        typer.Option("--facet-threshold", help="Facet values greater than this form group d."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", help="Also measure this model version's predictions."),
    ] = None,
    group: Annotated[
        str | None,
        typer.Option("--group-variable", help="Column CDDL and CDDPL condition on."),
    ] = None,
    probability_threshold: Annotated[
        float | None,
        typer.Option(
            "--probability-threshold", help="Predictions are scores, positive above this."
        ),
    ] = None,
    html: HtmlOpt = None,
    format: FormatOpt = Format.table,
) -> None:
    """Measure pre-training bias on a dataset (and post-training bias with --model)."""
    positive = _values_or_threshold(label_value, label_threshold, "label", required=True)
    assert positive is not None
    report = state.open().clarify.bias(
        dataset,
        label=label,
        label_values_or_threshold=positive,
        facet=facet,
        facet_values_or_threshold=_values_or_threshold(
            facet_value, facet_threshold, "facet", required=False
        ),
        model=model,
        group_variable=group,
        probability_threshold=probability_threshold,
        html=html,
    )
    if format is Format.json:
        emit_json(report.to_dict())
        return
    _show_bias(report)
    _footer(report)


@app.command("explain")
def explain(
    model: Annotated[str, typer.Argument(help="Model version: name, name@N or name@alias.")],
    dataset: Annotated[str, typer.Argument(help="Dataset version whose rows to explain.")],
    rows: Annotated[int, typer.Option("--rows", help="Explain at most this many rows.")] = 100,
    target_class: Annotated[
        str | None,
        typer.Option("--class", help="Class whose probability to explain (multi-class)."),
    ] = None,
    method: Annotated[
        str, typer.Option("--method", help="auto, tree or kernel (Kernel SHAP).")
    ] = "auto",
    baseline: Annotated[
        str, typer.Option("--baseline", help="kmeans (cluster centres) or mean.")
    ] = "kmeans",
    samples: Annotated[
        int, typer.Option("--samples", help="Kernel SHAP coalitions per row.")
    ] = 256,
    seed: Annotated[int, typer.Option("--seed", help="Seed of every random choice.")] = 0,
    dependence: Annotated[
        list[str] | None,
        typer.Option(
            "--pd", help="Feature for partial dependence (repeat); default: the top three."
        ),
    ] = None,
    html: HtmlOpt = None,
    format: FormatOpt = Format.table,
) -> None:
    """Explain a model version's predictions on a dataset with SHAP values."""
    if method not in ("auto", "tree", "kernel"):
        raise InvalidInput(f"--method must be auto, tree or kernel, not {method!r}")
    if baseline not in ("kmeans", "mean"):
        raise InvalidInput(f"--baseline must be kmeans or mean, not {baseline!r}")
    report = state.open().clarify.explain(
        model,
        dataset,
        rows=rows,
        target_class=target_class,
        method=method,  # type: ignore[arg-type]
        baseline=baseline,  # type: ignore[arg-type]
        n_samples=samples,
        seed=seed,
        partial_dependence=list(dependence) if dependence else 3,
        html=html,
    )
    if format is Format.json:
        emit_json(report.to_dict())
        return
    _show_explanation(report)
    _footer(report)


@app.command("report")
def report(
    report_id: Annotated[str, typer.Argument(help="Report id (or clarify-report:ID).")],
    html: HtmlOpt = None,
    format: FormatOpt = Format.table,
) -> None:
    """Show a stored report (and write it as an HTML page with --html)."""
    clarify = state.open().clarify
    rep = clarify.get_report(report_id)
    if html is not None:
        page, _ = clarify.write_html(rep, html)
        rep = dataclasses.replace(rep, html_path=str(page))
    if format is Format.json:
        emit_json(rep.to_dict())
        return
    show_mapping(
        f"report {rep.id}",
        {
            "kinds": ", ".join(rep.info.kinds),
            "model": rep.info.model,
            "dataset": rep.info.dataset,
            "created": when(rep.info.created_at),
            "by": rep.info.created_by,
            "digest": rep.info.digest,
        },
    )
    if rep.document.get("type") == "bias":
        _show_bias(rep)
    else:
        _show_explanation(rep)
    if rep.html_path:
        console.print(f"html: {rep.html_path}")


@app.command("list")
def list_(
    model: Annotated[
        str | None, typer.Option("--model", help="Only reports on this model version.")
    ] = None,
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="Only reports on this dataset version.")
    ] = None,
    format: FormatOpt = Format.table,
) -> None:
    """List stored reports, newest first."""
    infos = state.open().clarify.reports(model=model, dataset=dataset)
    if format is Format.json:
        emit_json([i.to_dict() for i in infos])
        return
    show_table(
        "clarify reports",
        ("id", "kinds", "model", "dataset", "created", "by"),
        [
            (
                i.id,
                ", ".join(i.kinds),
                i.model or "-",
                i.dataset,
                when(i.created_at),
                i.created_by,
            )
            for i in infos
        ],
    )


def _show_bias(rep: ClarifyReport) -> None:
    rows: list[tuple[Any, ...]] = []
    for key, section in rep.document.get("analysis", {}).items():
        stage = key.removesuffix("_bias_metrics").replace("_", "-")
        for facet, groups in section.get("facets", {}).items():
            for group in groups:
                for m in group["metrics"]:
                    rows.append(
                        (
                            stage,
                            f"{facet} = {group['value_or_threshold']}",
                            m["name"],
                            fmt_num(m["value"]),
                            m.get("error", ""),
                        )
                    )
    show_table(
        f"bias of {rep.info.model or rep.info.dataset} (facet d = the value shown)",
        ("stage", "facet d", "metric", "value", "undefined because"),
        rows,
    )


def _show_explanation(rep: ClarifyReport) -> None:
    summary = rep.info.summary
    values: dict[str, Any] = summary.get("global_shap_values", {})
    show_table(
        f"mean |SHAP| of {rep.info.model} on {rep.info.dataset} "
        f"(explained: {summary.get('label')})",
        ("rank", "feature", "mean |SHAP|"),
        [(i + 1, f, fmt_num(v)) for i, (f, v) in enumerate(values.items())],
    )
    console.print(
        f"method {summary.get('method')}, {summary.get('rows')} rows, "
        f"expected value {fmt_num(summary.get('expected_value'))}"
    )
    for note in rep.document.get("local_shap", {}).get("notes", []):
        console.print(f"note: {note}")


def _footer(rep: ClarifyReport) -> None:
    console.print(f"report {rep.id} ({rep.info.ref})")
    if rep.html_path:
        console.print(f"html: {rep.html_path}")
