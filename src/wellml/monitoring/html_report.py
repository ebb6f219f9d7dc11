"""A monitor execution as one self-contained HTML page with Plotly figures.

The figures are built here, from the stored report, only when a page is asked for: a monitor
run stores small histograms of both distributions per feature (a few dozen numbers each) and
never touches Plotly. The page embeds plotly.js, so it opens without a network.
"""

from __future__ import annotations

import html
import itertools
import json
from collections.abc import Mapping
from typing import Any

from wellml.errors import BackendUnavailable

__all__ = ["render_html"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; font-size: 0.9em; }
th { background: #f3f3f3; }
.bad { color: #b00020; font-weight: bold; }
.ok { color: #1b5e20; }
.figs { display: flex; flex-wrap: wrap; gap: 1em; }
.fig { width: 520px; }
"""


def _esc(value: Any) -> str:
    return html.escape("-" if value is None else str(value))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return _esc(value)


def _table(columns: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _shares(counts: list[int]) -> list[float]:
    total = sum(counts) or 1
    return [c / total for c in counts]


def _figure(go: Any, title: str, shown: Mapping[str, Any]) -> Any:
    """Both distributions of one feature as overlaid bars of shares."""
    if shown.get("type") == "histogram":
        edges = shown["edges"]
        x = [(lo + hi) / 2 for lo, hi in itertools.pairwise(edges)]
        width = (edges[1] - edges[0]) if len(edges) > 1 else 1
    else:
        x = list(shown["categories"])
        width = None
    fig = go.Figure()
    for name, key, colour in (
        ("reference", "reference", "#1f77b4"),
        ("current", "current", "#d62728"),
    ):
        fig.add_bar(
            x=x,
            y=_shares(shown[key]),
            name=name,
            marker_color=colour,
            opacity=0.6,
            width=width,
        )
    fig.update_layout(
        title=title,
        barmode="overlay",
        height=320,
        margin={"l": 40, "r": 10, "t": 40, "b": 40},
        yaxis_title="share of rows",
    )
    return fig


def _stats_display(base: Mapping[str, Any], cur: Mapping[str, Any]) -> dict[str, Any] | None:
    """Histograms of a feature's baseline and current statistics on the baseline's buckets."""
    if "histogram" in base and "sketch" in cur:
        edges = base["histogram"]["edges"]
        # The current counts per baseline bucket, from the current CDF sketch.
        values, cdf = cur["sketch"]["values"], cur["sketch"]["cdf"]
        import numpy as np

        at = np.interp(edges, values, cdf, left=0.0, right=1.0)
        shares = np.diff(at)
        return {
            "type": "histogram",
            "edges": edges,
            "reference": base["histogram"]["counts"],
            "current": [round(float(s) * 1_000_000) for s in shares],
        }
    if "categories" in base and "categories" in cur:
        ref = dict(zip(map(str, base["categories"]["values"]), base["categories"]["counts"]))
        now = dict(zip(map(str, cur["categories"]["values"]), cur["categories"]["counts"]))
        labels = list(ref)[:20] + [k for k in now if k not in ref][:5]
        return {
            "type": "categories",
            "categories": labels,
            "reference": [ref.get(k, 0) for k in labels],
            "current": [now.get(k, 0) for k in labels],
        }
    return None


def render_html(
    execution: Mapping[str, Any], baseline_statistics: Mapping[str, Any] | None = None
) -> str:
    """The page for one execution (``MonitorExecution.to_dict()``).

    Args:
        execution: The stored execution with its report.
        baseline_statistics: The baseline's statistics, for data-quality figures.

    Raises:
        BackendUnavailable: Plotly is not installed.
    """
    try:
        import plotly.graph_objects as go
    except ImportError:  # pragma: no cover - plotly is a dependency
        raise BackendUnavailable("the HTML report needs plotly: pip install plotly") from None
    report = execution.get("report") or {}
    kind = execution.get("kind", "data_drift")
    parts = [
        f"<h1>{_esc(execution.get('monitor'))}: {_esc(kind)}</h1>",
        _table(
            ["execution", "status", "data", "baseline", "started"],
            [
                [
                    execution.get("id"),
                    execution.get("status"),
                    execution.get("dataset"),
                    execution.get("baseline"),
                    execution.get("started_at"),
                ]
            ],
        ),
    ]
    violations = execution.get("violations") or []
    parts.append(f"<h2>Violations ({len(violations)})</h2>")
    if violations:
        keys = sorted({k for v in violations for k in v}, key=lambda k: (k != "feature_name", k))
        parts.append(_table(keys, [[v.get(k) for k in keys] for v in violations]))
    else:
        parts.append('<p class="ok">none</p>')

    figures: list[Any] = []
    if kind == "data_drift":
        feats = report.get("features", [])
        parts.append(
            f"<h2>Drift: {len(report.get('drifted_features', []))} of {len(feats)} features "
            f"(share {report.get('share_drifted', 0):.2f}; dataset drift "
            f"{'YES' if report.get('dataset_drift') else 'no'})</h2>"
        )
        parts.append(
            _table(
                ["feature", "kind", "test", "statistic", "p-value", "threshold", "drifted"],
                [
                    [
                        f["feature"],
                        f["kind"],
                        f["method"],
                        f["statistic"],
                        f["p_value"],
                        f["threshold"],
                        "YES" if f["drifted"] else "no",
                    ]
                    for f in feats
                ],
            )
        )
        for f in feats:
            shown = (f.get("details") or {}).get("distribution")
            if shown:
                mark = " (drifted)" if f["drifted"] else ""
                figures.append(_figure(go, f"{f['feature']}{mark}", shown))
    elif kind == "data_quality":
        parts.append("<h2>Features</h2>")
        measured = report.get("features", [])
        keys = [
            "name",
            "completeness",
            "nonconforming_share",
            "out_of_range_share",
            "unknown_share",
            "distance",
        ]
        parts.append(_table(keys, [[m.get(k) for k in keys] for m in measured]))
        base = {f["name"]: f for f in (baseline_statistics or {}).get("features", [])}
        for cur in (report.get("statistics") or {}).get("features", []):
            shown = _stats_display(base.get(cur["name"], {}), cur)
            if shown:
                figures.append(_figure(go, cur["name"], shown))
    elif kind == "model_quality":
        comps = report.get("comparisons", [])
        parts.append("<h2>Metrics</h2>")
        keys = ["metric", "current", "baseline", "limit", "tolerance", "violation"]
        parts.append(_table(keys, [[c.get(k) for k in keys] for c in comps]))
        if comps:
            fig = go.Figure()
            fig.add_bar(
                x=[c["metric"] for c in comps], y=[c["baseline"] for c in comps], name="baseline"
            )
            fig.add_bar(
                x=[c["metric"] for c in comps], y=[c["current"] for c in comps], name="current"
            )
            fig.update_layout(title="metrics", barmode="group", height=320)
            figures.append(fig)
    elif kind == "bias_drift":
        comps = report.get("comparisons", [])
        parts.append("<h2>Bias metrics</h2>")
        keys = [
            "facet",
            "facet_value",
            "metric",
            "current",
            "baseline",
            "ideal",
            "tolerance",
            "violation",
        ]
        parts.append(_table(keys, [[c.get(k) for k in keys] for c in comps]))
    elif kind == "feature_attribution_drift":
        feats = report.get("features", [])
        parts.append(
            f"<h2>Attributions of {_esc(report.get('model_version'))} (NDCG "
            f"{report.get('ndcg', float('nan')):.4f}, threshold {report.get('threshold')})</h2>"
        )
        keys = ["feature", "baseline", "current", "baseline_rank", "current_rank"]
        parts.append(_table(keys, [[f.get(k) for k in keys] for f in feats]))
        if feats:
            fig = go.Figure()
            names = [f["feature"] for f in feats]
            fig.add_bar(x=names, y=[f["baseline"] for f in feats], name="baseline")
            fig.add_bar(x=names, y=[f["current"] for f in feats], name="current")
            fig.update_layout(title="mean |SHAP| per feature", barmode="group", height=320)
            figures.append(fig)

    if figures:
        parts.append('<h2>Distributions</h2><div class="figs">')
        for i, fig in enumerate(figures):
            inner = fig.to_html(full_html=False, include_plotlyjs=(i == 0))
            parts.append(f'<div class="fig">{inner}</div>')
        parts.append("</div>")
    parts.append(
        "<h2>Report (JSON)</h2><details><summary>show</summary><pre>"
        + _esc(json.dumps(report, indent=1, default=str)[:200_000])
        + "</pre></details>"
    )
    title = _esc(f"{execution.get('monitor')} {execution.get('id')}")
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>"
    )
