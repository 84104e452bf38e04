"""What a run reports: JSONL (the source of truth, one record per line), TensorBoard, a progress line.

Only the logging rank writes. ``metrics.jsonl`` records look like
``{"kind": "train", "step": 12, "loss": 6.93, "lr": 3e-4, "grad_norm": 1.2, "tokens_per_s": ..., ...}``
and ``{"kind": "valid", "step": 50, "loss": 6.1}``. On resume the records after the resumed step are
dropped first (they came from the part of the run that is being redone), so the file always reads as
one uninterrupted history; that is what the exact-resume test compares.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

METRICS_FILE = "metrics.jsonl"

# Dense (no sparsity) bf16 peak TFLOP/s of one accelerator, for MFU, as its data sheet states. The first key
# found in ``torch.cuda.get_device_name()`` wins, so the PCIe/NVL parts come before the SXM ones they
# share a name with ("NVIDIA H100 PCIe" vs "NVIDIA H100 80GB HBM3"), and "A100" before "A10".
_PEAK_TFLOPS = (
    ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H200 NVL", 835.0), ("GH200", 989.0), ("H200", 989.0), ("H100", 989.0),
    ("B200", 2250.0), ("A100", 312.0), ("L40S", 362.0), ("A10", 125.0),
)


def peak_tflops_for(device_name: str) -> float | None:
    for key, tflops in _PEAK_TFLOPS:
        if key in device_name:
            return tflops
    return None


def peak_flops(configured_tflops: float | None) -> float | None:
    """Peak FLOP/s per device: the configured value, else a lookup by GPU name; None on CPU or an unknown GPU."""
    if configured_tflops:
        return configured_tflops * 1e12
    import torch

    if not torch.cuda.is_available():
        return None
    tflops = peak_tflops_for(torch.cuda.get_device_name())
    return tflops * 1e12 if tflops else None


def dense_flops_per_token(preset) -> float:
    """Training FLOPs per token of every matmul but attention's: 6 x (non-embedding params incl. the LM head).

    6 = 2 (multiply-add) x 3 (forward, and backward for activations and weights), as in Megatron-LM's
    ``num_floating_point_operations`` and PaLM (arXiv 2204.02311, appendix B).
    """
    embedding = preset.vocab_size * preset.hidden_size
    dense = preset.num_parameters() - embedding
    if preset.tie_word_embeddings:
        dense += embedding  # the tied matrix still does the LM-head matmul
    return 6.0 * dense


def attention_flops(preset, attended_pairs: float) -> float:
    """Training FLOPs of attention's two matmuls (QK^T and AV) for this many query-key pairs.

    Per pair, head and layer: 2 x head_dim multiply-adds forward for each matmul, times 3 with the
    backward pass: 12 x head_dim. A causal sequence of l tokens has l^2/2 pairs (Megatron-LM counts the
    causal mask as half) and packed documents count by their own lengths: see ``attended_pairs``.
    """
    return 12.0 * preset.num_layers * preset.num_attention_heads * preset.head_dim * attended_pairs


def step_flops(preset, tokens: int, attended_pairs: float) -> float:
    return dense_flops_per_token(preset) * tokens + attention_flops(preset, attended_pairs)


def truncate_after(path: Path, step: int) -> None:
    """Drop records with step > ``step`` (the redone part of an interrupted run)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (ValueError, KeyError):
            continue  # a line cut by a kill -9: drop it
    path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics; is {run_dir} the --output of `specialize train`?")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            records.append(json.loads(line))
        except ValueError as err:
            raise ValueError(f"{path}:{number}: not JSON ({err})") from err
    return records


class RunLogger:
    def __init__(self, output: Path, *, enabled: bool, tensorboard: bool, progress: str, total_steps: int,
                 start_step: int) -> None:
        self.enabled = enabled
        self.path = output / METRICS_FILE
        self.total = total_steps
        self._writer = None
        self._bar = None
        self._plain = False
        if not enabled:
            return
        output.mkdir(parents=True, exist_ok=True)
        truncate_after(self.path, start_step)
        self._file = open(self.path, "a", encoding="utf-8")
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(output / "tensorboard"), purge_step=start_step + 1)
        if progress == "bar" or (progress == "auto" and sys.stdout.isatty()):
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                 TextColumn("{task.fields[status]}"))
            self._task = self._bar.add_task("train", total=total_steps, completed=start_step, status="")
            self._bar.start()
        else:
            self._plain = progress in ("plain", "auto")
        self._last_print = 0.0

    def record(self, record: dict) -> None:
        if not self.enabled:
            return
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._writer is not None:
            prefix = record["kind"]
            for key, value in record.items():
                if key not in ("kind", "step") and isinstance(value, (int, float)) and math.isfinite(value):
                    self._writer.add_scalar(f"{prefix}/{key}", value, record["step"])
        status = self._status(record)
        if self._bar is not None:
            if record["kind"] == "train":
                self._bar.update(self._task, completed=record["step"], status=status)
            else:
                self._bar.console.print(status)
        elif self._plain and (record["kind"] != "train" or time.monotonic() - self._last_print > 5
                              or record["step"] == self.total):
            print(status, flush=True)
            self._last_print = time.monotonic()

    def _status(self, record: dict) -> str:
        if record["kind"] == "valid":
            return f"step {record['step']}/{self.total}  validation loss {record['loss']:.4f}"
        text = f"step {record['step']}/{self.total}  loss {record['loss']:.4f}  lr {record['lr']:.2e}"
        text += f"  {record['tokens_per_s']:.0f} tok/s"
        if record.get("mfu") is not None:
            text += f"  MFU {100 * record['mfu']:.1f}%"
        return text

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.console.print(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.stop()
        if self._writer is not None:
            self._writer.close()
        self._file.close()
