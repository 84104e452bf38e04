"""``specialize train`` (continual pretraining) and ``specialize plot`` (loss/LR curves of a run).

Parses options into a ``RunConfig`` and delegates to ``specialize.train.runtime``; run it under
``torchrun --nproc-per-node N`` for several processes (TP x PP x DP = N).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from specialize.configs import CONFIG_DIR
from specialize.model import FROM_HELP

TINY_CONFIG = CONFIG_DIR / "cpt-tiny.yaml"


def train(
    source: Optional[str] = typer.Option(None, "--from", help="Default: the config's model.source (qwen-tiny). " + FROM_HELP + " Hugging Face weights are converted once into RUN/converted."),
    data: Optional[list[str]] = typer.Option(None, "--data", help="Shard directory of `specialize corpus build`, optionally DIR:WEIGHT; repeat to blend (e.g. code:7 text:2 math:1). Default: checkpoints/corpus/code."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Run directory (checkpoints, metrics.jsonl, tensorboard/). Default: checkpoints/cpt/<model>."),
    config: Optional[Path] = typer.Option(None, "--config", help="Run config YAML (see megatron_configs/cpt-*.yaml). Default: cpt-tiny.yaml for qwen-tiny, built-in defaults otherwise."),
    overrides: Optional[list[str]] = typer.Option(None, "--set", help="section.key=value override, repeatable (e.g. --set optimizer.lr=3e-5 --set model.tp=2)."),
) -> None:
    """Continue pretraining a Qwen model on tokenized Arrow shards with megatron-core."""
    from specialize.train.config import ConfigError, apply_override, load_config

    if config is None and (source or "qwen-tiny") == "qwen-tiny" and TINY_CONFIG.is_file():
        config = TINY_CONFIG
    try:
        run_config = load_config(config, [])
        if source:
            run_config.model.source = source
        if data:
            run_config.data.paths = list(data)
        if output:
            run_config.output = output
        elif config is None:
            run_config.output = f"checkpoints/cpt/{Path(run_config.model.source).name}"
        for assignment in overrides or []:
            apply_override(run_config, assignment)
    except ConfigError as err:
        raise typer.BadParameter(str(err)) from None

    from specialize.train.runtime import run_training

    try:
        result = run_training(run_config)
    except (FileNotFoundError, ValueError, ConfigError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    finally:
        from specialize.model.parallel import destroy_parallel

        destroy_parallel()
    state = "stopped by signal" if result.interrupted else "finished"
    typer.echo(f"{state} at step {result.steps_done}; loss {result.last_loss}; validation loss "
               f"{result.last_valid_loss}; checkpoint {result.checkpoint}")


def plot(
    run_dir: Path = typer.Argument(..., help="The --output directory of a `specialize train` run."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="PNG path. Default: RUN_DIR/curves.png."),
) -> None:
    """Draw training/validation loss and learning rate of a run to a PNG."""
    from specialize.train.plot import plot_run

    try:
        path = plot_run(run_dir, output)
    except (FileNotFoundError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    typer.echo(str(path))


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("plot")(plot)
