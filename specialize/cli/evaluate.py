"""``specialize evaluate``: held-out loss of a model on a corpus build's validation split."""

from __future__ import annotations

import json
from typing import Optional

import typer

from specialize.model import FROM_HELP


def evaluate(
    source: str = typer.Option(..., "--from", help=FROM_HELP),
    data: list[str] = typer.Option(..., "--data", help="Corpus build directory; repeatable."),
    seq_length: int = typer.Option(128, "--seq-length"),
    samples: int = typer.Option(64, "--samples", help="Held-out samples per corpus."),
    split: str = typer.Option("98,2,0", "--split", help="train,valid,test document split (as in training)."),
    seed: int = typer.Option(1234, "--seed"),
    json_out: Optional[str] = typer.Option(None, "--json", help="Also write the results as JSON here."),
) -> None:
    """Mean next-token loss on the held-out documents of each corpus."""
    from specialize.evaluate import heldout_loss

    results = [heldout_loss(source, d, seq_length=seq_length, samples=samples, split=split, seed=seed).to_dict() for d in data]
    for r in results:
        typer.echo(f"{r['corpus']}: loss {r['loss']:.4f} over {r['tokens']:,} held-out tokens ({r['samples']} samples)")
    if json_out:
        with open(json_out, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=1)


def register(app: typer.Typer) -> None:
    app.command(name="evaluate")(evaluate)
