"""``specialize plot RUN_DIR``: loss (train and validation) and learning rate against step, as a PNG."""

from __future__ import annotations

from pathlib import Path

from specialize.train.metrics import read_metrics


def plot_run(run_dir: str | Path, output: str | Path | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on training nodes
    import matplotlib.pyplot as plt

    records = read_metrics(run_dir)
    train = [r for r in records if r.get("kind") == "train"]
    valid = [r for r in records if r.get("kind") == "valid"]
    if not train:
        raise ValueError(f"{Path(run_dir) / 'metrics.jsonl'}: no training records yet")
    figure, (loss_axis, lr_axis) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    loss_axis.plot([r["step"] for r in train], [r["loss"] for r in train], label="train", linewidth=1)
    if valid:
        loss_axis.plot([r["step"] for r in valid], [r["loss"] for r in valid], "o-", label="validation")
    loss_axis.set_ylabel("loss")
    loss_axis.legend()
    loss_axis.grid(alpha=0.3)
    lr_axis.plot([r["step"] for r in train], [r["lr"] for r in train], color="tab:green")
    lr_axis.set_ylabel("learning rate")
    lr_axis.set_xlabel("step")
    lr_axis.grid(alpha=0.3)
    figure.suptitle(str(Path(run_dir).resolve().name))
    figure.tight_layout()
    path = Path(output) if output else Path(run_dir) / "curves.png"
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
