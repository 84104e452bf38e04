"""Human-readable views of a manifest: terminal tables and a document-length histogram."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table


def _mb(n: int) -> str:
    return f"{n / 1e6:,.2f}"


def print_summary(manifest: dict, directory: str, console: Console | None = None) -> None:
    console = console or Console(stderr=False)
    totals = manifest["totals"]
    tok = manifest["tokenizer"]
    console.print(f"[bold]{directory}[/]: {manifest['domain']} corpus, {len(manifest['shards'])} shards, "
                  f"{totals['documents']:,} documents, {totals['tokens']:,} tokens, "
                  f"{_mb(totals['text_bytes'])} MB text, {totals['bytes_per_token']} bytes/token; "
                  f"tokenizer {tok['name']} ({tok['fingerprint'][:19]}...)")
    languages = Table(title="Languages")
    for column in ("language", "documents", "tokens", "text MB", "bytes/token"):
        languages.add_column(column, justify="left" if column == "language" else "right")
    for name, entry in list(manifest["languages"].items())[:25]:
        languages.add_row(name, f"{entry['documents']:,}", f"{entry['tokens']:,}", _mb(entry["text_bytes"]), str(entry["bytes_per_token"]))
    console.print(languages)
    removed = Table(title="Removed (stage / reason)")
    for column in ("stage", "reason", "documents", "MB", "first example"):
        removed.add_column(column, justify="right" if column in ("documents", "MB") else "left")
    for stage, reasons in manifest["removed"].items():
        for reason, entry in sorted(reasons.items()):
            example = (entry.get("examples") or [{}])[0]
            source = example.get("source", "")
            source = source if len(source) <= 40 else "..." + source[-37:]
            removed.add_row(stage, reason, f"{entry['documents']:,}", _mb(entry["bytes"]), source)
    console.print(removed)
    for warning in manifest.get("warnings", []):
        console.print(f"[bold yellow]warning:[/] {warning}")


def write_length_histogram(directory: str, manifest: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from specialize.corpus import outputs
    from specialize.corpus.shards import open_shard

    lengths = []
    for shard in manifest["shards"]:
        table = open_shard(outputs.join(directory, shard["path"]))
        for chunk in table.column("tokens").chunks:
            lengths.append(np.diff(chunk.offsets.to_numpy()))
    values = np.concatenate(lengths) if lengths else np.zeros(0)
    figure, axis = plt.subplots(figsize=(7, 4))
    bins = np.logspace(0, np.log10(max(values.max(), 10)), 50) if len(values) else 10
    axis.hist(values, bins=bins, color="#3a6ea5")
    axis.set_xscale("log")
    axis.set_xlabel("document length (tokens, incl. EOD)")
    axis.set_ylabel("documents")
    axis.set_title(f"{manifest['domain']} corpus: {len(values):,} documents")
    figure.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png, dpi=110)
    plt.close(figure)
