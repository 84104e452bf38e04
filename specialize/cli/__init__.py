"""The ``specialize`` command line: parses arguments and delegates; no logic lives here.

Each command group is its own module and imports heavy libraries (torch, megatron, beam) inside
its commands, so ``specialize --help`` stays fast.
"""

from __future__ import annotations

import logging

import typer

from specialize.cli import corpus


def _drop_beam_bigquery_notice(record: logging.LogRecord) -> bool:
    """``import apache_beam`` logs that the BigQuery client (an extra we do not use) is missing, on every run."""
    return not str(record.msg).startswith("apitools not found")


logging.getLogger().addFilter(_drop_beam_bigquery_notice)

app = typer.Typer(
    name="specialize",
    help="Turn a base Qwen checkpoint into a code or math specialist.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(corpus.app, name="corpus")
# Command groups register below, one line each.
from specialize.cli import model as _model; app.add_typer(_model.app, name="model")  # noqa: E402,E702
from specialize.cli import convert as _convert; app.add_typer(_convert.app, name="convert")  # noqa: E402,E702
from specialize.cli import quality as _quality; app.add_typer(_quality.app, name="quality")  # noqa: E402,E702
from specialize.cli import launch  # noqa: E402
app.add_typer(launch.app, name="launch")
from specialize.cli import train as _train  # noqa: E402
_train.register(app)  # `train` and `plot`
from specialize.cli import evaluate as _evaluate  # noqa: E402
_evaluate.register(app)  # `evaluate`
from specialize.cli import demo as _demo  # noqa: E402
_demo.register(app)  # `demo`
from specialize.cli import sft as _sft; app.add_typer(_sft.app, name="sft")  # noqa: E402,E702
app.command("chat")(_sft.chat)  # `chat`


def main() -> None:
    app()
