"""``specialize quality``: train and try the document-quality model (logic in specialize/quality/)."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Train and apply the model-based quality scorer.", no_args_is_help=True)


@app.command()
def train(
    positive: list[Path] = typer.Option(..., "--positive", "-p", help="Good examples: file, folder, JSONL or Parquet (text/content/code field); repeatable."),
    negative: list[Path] = typer.Option(..., "--negative", "-n", help="Bad examples, same formats; repeatable."),
    output: Path = typer.Option(..., "--output", "-o", help="Model file to write (.npz; no pickle)."),
    c: float = typer.Option(4.0, "--c", help="Inverse regularisation strength of the logistic regression."),
) -> None:
    """Fit a logistic regression over hashed n-grams; print held-out accuracy and AUC; save the model.

    Use it in a build with `specialize corpus build --quality-model MODEL --min-quality X`.
    """
    from specialize.quality.examples import read_examples
    from specialize.quality.model import train_quality_model

    try:
        positives = [t for p in positive for t in read_examples(p)]
        negatives = [t for p in negative for t in read_examples(p)]
        model, report = train_quality_model(positives, negatives, c=c)
    except (FileNotFoundError, ValueError) as err:
        raise typer.BadParameter(str(err)) from None
    output.parent.mkdir(parents=True, exist_ok=True)
    model.save(output)
    typer.echo(f"trained on {report.positives} positive and {report.negatives} negative examples")
    if report.validation_auc is not None:
        typer.echo(f"held-out 20%: accuracy {report.validation_accuracy:.3f}, AUC {report.validation_auc:.3f}")
    else:
        typer.echo("too few examples for a held-out check (need >= 4 held out, both labels)")
    typer.echo(f"saved {output}")


@app.command()
def score(
    model: Path = typer.Option(..., "--model", "-m", help="Model file from `specialize quality train`."),
    paths: list[Path] = typer.Argument(..., help="Files, folders, JSONL or Parquet to score."),
) -> None:
    """Print the quality score (P(good)) of each example, to pick a --min-quality threshold."""
    from specialize.quality.examples import read_examples
    from specialize.quality.model import QualityModel

    try:
        scorer = QualityModel.load(model)
        for path in paths:
            texts = read_examples(path)
            for number, value in enumerate(scorer.score(texts) if texts else []):
                typer.echo(f"{value:.4f}\t{path}" + (f"#{number}" if len(texts) > 1 else ""))
    except (FileNotFoundError, ValueError) as err:
        raise typer.BadParameter(str(err)) from None


def build_quality_config(*, no_quality: bool, no_filters: bool, no_secrets: bool, no_exact_dedup: bool,
                         no_near_dedup: bool, near_dedup: list[str], decontaminate: list[str], no_decontaminate: bool,
                         decontaminate_ngram: int | None, quality_model: str | None, min_quality: float | None,
                         source_weight: list[str], languages: str | None = None, no_language_filter: bool = False):
    """`corpus build`'s quality flags -> ``QualityConfig`` (bad values raise BadParameter naming the flag)."""
    import yaml

    from beam_jobs.quality import QualityConfig
    from specialize.quality.upsample import parse_weights

    overrides = {}
    for pair in near_dedup:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{pair!r}: expected KEY=VALUE (ngram, bands, rows, seed, verify_threshold, rounds, components)",
                                     param_hint="--near-dedup")
        overrides[key.strip()] = yaml.safe_load(value)  # numbers and null as in the profile
    try:
        weights = parse_weights(source_weight)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--source-weight") from None
    if min_quality is not None and not 0.0 <= min_quality <= 1.0:
        raise typer.BadParameter(f"{min_quality} is not a probability in [0, 1]", param_hint="--min-quality")
    if no_quality:
        config = QualityConfig.off()
    else:
        config = QualityConfig(filters=not no_filters, secrets=not no_secrets, exact_dedup=not no_exact_dedup,
                               near_dedup=not no_near_dedup,
                               decontaminate=[] if no_decontaminate else (list(decontaminate) or None))
    config.near_dedup_settings = overrides
    config.decontaminate_ngram = decontaminate_ngram
    if no_language_filter:
        config.language_filter = False
    if languages is not None:
        config.languages = [] if languages.strip().lower() == "all" else [c for c in languages.split(",") if c.strip()]
    config.quality_model, config.min_quality = quality_model, min_quality
    config.source_weights = weights
    return config
