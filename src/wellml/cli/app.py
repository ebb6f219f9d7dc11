"""The ``wellml`` command: one Typer app, one module per command group."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from wellml.cli import (
    automl,
    clarify,
    data,
    demo,
    endpoints,
    features,
    lens,
    lineage,
    models,
    monitor,
    pipelines,
    runs,
)
from wellml.cli.context import state
from wellml.cli.output import err_console
from wellml.errors import WellmlError
from wellml.workspace import Workspace

app = typer.Typer(
    name="wellml",
    help="The whole ML lifecycle on one lineage graph, reviewed against the ML Lens.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    workspace: Annotated[
        Path | None,
        typer.Option(
            "--workspace",
            "-w",
            envvar="WELLML_WORKSPACE",
            help="The workspace folder (default: found from the current folder upward).",
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    state.workspace = workspace
    state.debug = debug


@app.command("init")
def init(
    path: Annotated[Path, typer.Argument(help="Folder for the new workspace.")] = Path("."),
    name: Annotated[str | None, typer.Option(help="Project name (default: folder name).")] = None,
    owner: Annotated[str, typer.Option(help="Owner of the project.")] = "",
) -> None:
    """Create a workspace: wellml.yaml and the .wellml/ folder."""
    ws = Workspace.init(path, name=name, owner=owner)
    err_console.print(f"created workspace [bold]{ws.spec.name}[/] in {ws.root}")


app.add_typer(data.app, name="data")
app.add_typer(features.app, name="features")
app.add_typer(runs.app, name="runs")
app.add_typer(models.app, name="models")
app.add_typer(lineage.app, name="lineage")
app.add_typer(pipelines.app, name="pipelines")
app.add_typer(endpoints.app, name="endpoints")
app.add_typer(monitor.app, name="monitor")
app.add_typer(clarify.app, name="clarify")
app.add_typer(lens.app, name="lens")
app.command("demo")(demo.demo)
app.command("automl")(automl.automl)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; a wellml error is one line on stderr and exit code 1, a usage error exit 2."""
    args = sys.argv[1:] if argv is None else argv
    command = typer.main.get_command(app)
    try:
        # Without standalone mode the parser returns an Exit's code instead of raising it.
        result = command.main(args=args, prog_name="wellml", standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        return 130
    except WellmlError as exc:
        if state.debug or "--debug" in args:
            raise
        message = str(exc).replace("\n", "\n  ")
        err_console.print(f"[red]error:[/] {escape(message)}", soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # Usage errors come from the command-line parser (typer bundles its own click).
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            exc.show()
            return int(exc.exit_code)
        raise
    return result if isinstance(result, int) else 0
