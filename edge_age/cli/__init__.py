"""The ``edge-age`` command line: argument parsing only, one module per command group (``data``, ``train``,
``evaluate`` and ``fit-correction``, ``convert``, ``device``, ``bench``), the work done by the library. Heavy
libraries (TensorFlow, matplotlib) load inside commands. The library logs to ``logging.getLogger("edge_age")``;
``main`` decides what reaches the terminal and words a library error's hint as a flag."""
from __future__ import annotations

import sys

import typer

from edge_age.cli import bench, convert, data, device, evaluate, train
from firmware_host.errors import EdgeAgeError
from firmware_host.logs import to_terminal

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Face age and gender estimation from training to small devices.")


@app.callback()
def _global_options(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also show TensorFlow's and LiteRT's own log "
                                 "lines (absl, oneDNN, CUDA, the XNNPACK delegate), hidden by default."),
) -> None:
    """Face age and gender estimation from training to small devices."""
    if verbose:
        from firmware_host.quiet import set_verbose
        set_verbose()


app.add_typer(data.data_app, name="data")
app.command()(train.train)
app.command()(train.teacher)
app.command()(evaluate.evaluate)
app.command("fit-correction")(evaluate.fit_correction)
app.command()(convert.convert)
app.command()(device.run)
app.command()(device.predict)
app.command()(device.serve)
app.command("run-table")(device.run_table)
app.command()(bench.bench)
app.command()(train.models)
app.command(hidden=True)(train.bundle)
app.command()(bench.report)
app.command("members-table")(bench.members_table)


def main() -> None:
    """Entry point: user errors (and any failed file operation, such as a full disk) become one line on
    stderr and exit code 2; warnings of the library's loggers show as ``edge-age: warning: ...``, its status
    lines as they are."""
    from firmware_host.errors import user_message

    to_terminal()
    try:
        app()
    except (EdgeAgeError, OSError) as exc:
        typer.echo(f"edge-age: error: {user_message(exc)}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("edge-age: interrupted", err=True)
        sys.exit(130)
