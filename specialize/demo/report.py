"""The demo report: one Markdown page with PNG plots, built only from what the stages wrote.

Inputs are the corpus manifests and shards, the runs' ``metrics.jsonl`` and the held-out evaluations,
so the report can be regenerated from a finished demo directory without re-running anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from specialize.corpus.manifest import read_manifest
from specialize.corpus.shards import open_shard


@dataclass(frozen=True)
class Evaluation:
    """Mean next-token loss of one model on one held-out set."""

    model: str  # e.g. "qwen-tiny (init)", "after continual pretraining", "after SFT"
    dataset: str  # e.g. "code (held out)"
    loss: float
    tokens: int


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_corpus_funnel(manifests: dict[str, dict], png: Path) -> None:
    plt = _pyplot()
    figure, axes = plt.subplots(len(manifests), 1, figsize=(8, 1.2 + 0.35 * sum(
        2 + sum(len(r) for r in m["removed"].values()) for m in manifests.values())), squeeze=False)
    for axis, (domain, manifest) in zip(axes[:, 0], manifests.items()):
        labels = [f"kept ({manifest['totals']['tokens']:,} tokens)"]
        values = [manifest["totals"]["documents"]]
        for stage, reasons in manifest["removed"].items():
            for reason, entry in sorted(reasons.items(), key=lambda kv: -kv[1]["documents"]):
                labels.append(f"{stage} / {reason}")
                values.append(entry["documents"])
        colors = ["#2e7d32"] + ["#c62828"] * (len(values) - 1)
        axis.barh(labels[::-1], values[::-1], color=colors[::-1])
        axis.set_xscale("symlog")
        for y, value in enumerate(values[::-1]):
            axis.text(value, y, f" {value:,}", va="center", fontsize=8)
        axis.set_title(f"{domain} corpus: documents kept and removed per stage / reason", fontsize=10)
        axis.tick_params(axis="y", labelsize=8)
    figure.tight_layout()
    figure.savefig(png, dpi=100)
    plt.close(figure)


def _document_stats(directory: Path, manifest: dict) -> tuple[np.ndarray, np.ndarray]:
    lengths, bytes_per_token = [], []
    for shard in manifest["shards"]:
        table = open_shard(directory / shard["path"])
        tokens = np.concatenate([np.diff(c.offsets.to_numpy()) for c in table.column("tokens").chunks])
        text_bytes = table.column("num_bytes").to_numpy()
        lengths.append(tokens)
        bytes_per_token.append(text_bytes / np.maximum(tokens - 1, 1))
    return np.concatenate(lengths), np.concatenate(bytes_per_token)


def plot_document_histograms(corpora: dict[str, Path], manifests: dict[str, dict], png: Path) -> None:
    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for domain, directory in corpora.items():
        lengths, ratio = _document_stats(directory, manifests[domain])
        bins = np.logspace(0, np.log10(max(lengths.max(), 10)), 40)
        left.hist(lengths, bins=bins, alpha=0.6, label=f"{domain} ({len(lengths):,} docs)")
        right.hist(ratio, bins=40, alpha=0.6, label=f"{domain} (mean {ratio.mean():.2f})")
    left.set_xscale("log")
    left.set_xlabel("document length (tokens)")
    left.set_ylabel("documents")
    left.legend()
    right.set_xlabel("compression (UTF-8 bytes per token)")
    right.set_ylabel("documents")
    right.legend()
    figure.tight_layout()
    figure.savefig(png, dpi=100)
    plt.close(figure)


def read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_loss_curves(runs: dict[str, Path], png: Path) -> None:
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(runs), figsize=(5.5 * len(runs), 4), squeeze=False)
    for axis, (name, run_dir) in zip(axes[0], runs.items()):
        records = read_metrics(run_dir)
        train = [(r["step"], r["loss"]) for r in records if r.get("kind") == "train" and r.get("loss") is not None]
        valid = [(r["step"], r["loss"]) for r in records if r.get("kind") == "valid" and r.get("loss") is not None]
        if train:
            axis.plot(*zip(*train), label="train", color="#3a6ea5", linewidth=1)
        if valid:
            axis.plot(*zip(*valid), "o-", label="validation", color="#c62828")
        axis.set_title(name)
        axis.set_xlabel("step")
        axis.set_ylabel("loss (nats/token)")
        axis.legend()
    figure.tight_layout()
    figure.savefig(png, dpi=100)
    plt.close(figure)


def plot_heldout(evaluations: list[Evaluation], png: Path) -> None:
    plt = _pyplot()
    models = list(dict.fromkeys(e.model for e in evaluations))
    datasets = list(dict.fromkeys(e.dataset for e in evaluations))
    width = 0.8 / max(len(models), 1)
    figure, axis = plt.subplots(figsize=(7, 4))
    for i, model in enumerate(models):
        values = [next((e.loss for e in evaluations if e.model == model and e.dataset == d), np.nan) for d in datasets]
        positions = np.arange(len(datasets)) + i * width
        axis.bar(positions, values, width, label=model)
        for x, v in zip(positions, values):
            axis.text(x, v, f"{v:.2f}", ha="center", va="bottom", fontsize=8)
    axis.set_xticks(np.arange(len(datasets)) + width * (len(models) - 1) / 2, datasets)
    axis.set_ylabel("mean loss (nats/token)")
    axis.set_title("held-out loss before and after specialisation")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(png, dpi=100)
    plt.close(figure)


def _benchmark_section(documents: dict[str, dict]) -> list[str]:
    from specialize.eval.runner import markdown_compare

    return ["", "## Benchmarks (`specialize eval`)", "",
            "pass@1 (HumanEval, code run in the sandbox) and accuracy (held-out generated math problems, MATH format), greedy; "
            "base models few-shot, the SFT model zero-shot in ChatML. Expect scores near zero: the model has a few million "
            "parameters, a vocabulary of 8,400 ids and minutes of CPU training, where the Qwen report's models have billions "
            "of parameters and trillions of tokens. The stage is here so that every step of the pipeline runs, and the same "
            "commands measure a real model (`specialize eval --from RUN --task humaneval,mbpp,gsm8k,math`).", "",
            markdown_compare(documents), "",
            "Per-sample prompts, completions and verdicts: `bench/<model>/samples-TASK.jsonl`."]


def write_report(
    directory: Path,
    *,
    corpora: dict[str, Path],
    runs: dict[str, Path],
    evaluations: list[Evaluation],
    export_dir: Path | None,
    timings: dict[str, float],
    sample_generation: str | None = None,
    benchmarks: dict[str, dict] | None = None,
) -> Path:
    """Write ``report.md`` and its PNGs into ``directory``; returns the Markdown path."""
    directory.mkdir(parents=True, exist_ok=True)
    manifests = {domain: read_manifest(str(path)) for domain, path in corpora.items()}
    plot_corpus_funnel(manifests, directory / "corpus_funnel.png")
    plot_document_histograms(corpora, manifests, directory / "document_histograms.png")
    plot_loss_curves(runs, directory / "loss_curves.png")
    plot_heldout(evaluations, directory / "heldout_loss.png")

    lines = ["# specialize demo report", ""]
    lines += ["| stage | seconds |", "|---|---:|"] + [f"| {k} | {v:.1f} |" for k, v in timings.items()]
    lines += ["", "## Corpus", ""]
    lines += ["| domain | documents | tokens | text MB | bytes/token | shards | tokenizer |", "|---|---:|---:|---:|---:|---:|---|"]
    for domain, m in manifests.items():
        t = m["totals"]
        lines.append(f"| {domain} | {t['documents']:,} | {t['tokens']:,} | {t['text_bytes'] / 1e6:.2f} | "
                     f"{t['bytes_per_token']} | {len(m['shards'])} | {m['tokenizer']['name']} |")
    lines += ["", "![corpus funnel](corpus_funnel.png)", "", "![document lengths and compression](document_histograms.png)", ""]
    lines += ["## Training", "", "![loss curves](loss_curves.png)", ""]
    for name, run_dir in runs.items():
        records = read_metrics(run_dir)
        valid = [r for r in records if r.get("kind") == "valid"]
        train = [r for r in records if r.get("kind") == "train"]
        if train:
            lines.append(f"- **{name}** (`{run_dir}`): {len(train)} steps, train loss {train[0]['loss']:.3f} -> "
                         f"{train[-1]['loss']:.3f}" + (f", validation loss {valid[0]['loss']:.3f} -> {valid[-1]['loss']:.3f}" if valid else ""))
    lines += ["", "## Held-out loss before and after specialisation", "", "![held-out loss](heldout_loss.png)", ""]
    lines += ["| model | dataset | loss | tokens |", "|---|---|---:|---:|"]
    lines += [f"| {e.model} | {e.dataset} | {e.loss:.4f} | {e.tokens:,} |" for e in evaluations]
    if benchmarks:
        lines += _benchmark_section(benchmarks)
    if export_dir is not None:
        lines += ["", "## Export", "", f"Hugging Face checkpoint (Qwen2ForCausalLM, tokenizer, ChatML template): `{export_dir}`", "",
                  "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer",
                  f"tok = AutoTokenizer.from_pretrained({str(export_dir)!r})",
                  f"model = AutoModelForCausalLM.from_pretrained({str(export_dir)!r})", "```"]
    if sample_generation:
        lines += ["", "Greedy sample from the exported chat model:", "", "```", sample_generation, "```"]
    path = directory / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
