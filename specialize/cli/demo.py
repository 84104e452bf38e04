"""``specialize demo``: corpus build -> continual pretraining -> SFT -> HF export -> report, offline on CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def demo(
    output: Path = typer.Option(Path("checkpoints/demo"), "--output", "-o", help="Where every stage writes."),
    cpt_steps: int = typer.Option(150, "--cpt-steps", help="Continual pretraining steps (16 x 128 tokens each)."),
    sft_steps: int = typer.Option(60, "--sft-steps", help="SFT steps."),
    eval_samples: int = typer.Option(48, "--eval-samples", help="Held-out samples per corpus for the before/after losses."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch threads per training process (default: torch's)."),
) -> None:
    """Run the whole mission on the embedded defaults (about 5 minutes on a 2-core CPU) and write a report."""
    from specialize.demo.pipeline import DemoSettings, StageFailed, run_demo

    try:
        report = run_demo(DemoSettings(output=output, cpt_steps=cpt_steps, sft_steps=sft_steps,
                                       eval_samples=eval_samples, threads=threads))
    except StageFailed as err:
        typer.echo(f"demo stopped: {err}", err=True)
        raise typer.Exit(1) from None
    typer.echo(str(report))


def register(app: typer.Typer) -> None:
    app.command(name="demo")(demo)
