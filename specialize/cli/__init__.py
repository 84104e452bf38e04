"""The ``specialize`` command line: parses arguments and delegates; no logic lives here.

Each command group is its own module and imports heavy libraries (torch, megatron, beam) inside
its commands, so ``specialize --help`` stays fast.
"""

from __future__ import annotations

import logging

import typer

from specialize.cli import convert, corpus, demo, evaluate, launch, model, quality, sft, train
from specialize.cli import eval as eval_cli


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
app.add_typer(model.app, name="model")
app.add_typer(convert.app, name="convert")
app.add_typer(quality.app, name="quality")
app.add_typer(launch.app, name="launch")
app.add_typer(sft.app, name="sft")
train.register(app)  # `train` and `plot`
evaluate.register(app)  # `evaluate`
demo.register(app)  # `demo`
eval_cli.register(app)  # `eval` (score, compare) and `serve`
app.command("chat")(sft.chat)  # `chat`


def main() -> None:
    app()
