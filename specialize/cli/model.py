"""``specialize model``: inspect model presets and checkpoints (logic in specialize/model/)."""

from __future__ import annotations

from typing import Optional

import typer

app = typer.Typer(help="Model presets: architecture, parameter count, memory per GPU.", no_args_is_help=True)


@app.command()
def info(
    name: str = typer.Argument("qwen-tiny", help="Preset name (qwen-7b, qwen2.5-7b, qwen3-8b, Qwen/Qwen-14B...), checkpoint or run directory."),
    tp: Optional[int] = typer.Option(None, "--tp", help="Tensor parallel size (default: the preset's)."),
    pp: Optional[int] = typer.Option(None, "--pp", help="Pipeline parallel size (default: the preset's)."),
    dp: int = typer.Option(1, "--dp", help="Data parallel size (divides optimizer state with the distributed optimizer)."),
    cp: int = typer.Option(1, "--cp", help="Context parallel size: each sequence split over this many GPUs (GPU only)."),
    seq_length: int = typer.Option(4096, "--seq-length", help="Training sequence length."),
    micro_batch: int = typer.Option(1, "--micro-batch", help="Micro-batch size per GPU."),
    recompute: str = typer.Option("selective", "--recompute", help="Activation recomputation: none | selective | full."),
    flash: bool = typer.Option(True, "--flash/--no-flash", help="Flash attention (never stores the s x s attention scores)."),
    sequence_parallel: Optional[bool] = typer.Option(None, "--sequence-parallel/--no-sequence-parallel",
                                                     help="Sequence parallelism (default: on when --tp > 1)."),
) -> None:
    """Print the architecture, parameter count and a per-GPU training memory estimate."""
    from specialize.model.memory import GIB, estimate_memory
    from specialize.model.source import model_preset

    try:
        preset = model_preset(name)
        tp, pp = tp or preset.default_tp, pp or preset.default_pp
        estimate = estimate_memory(preset, tp=tp, pp=pp, dp=dp, cp=cp, seq_length=seq_length, micro_batch=micro_batch,
                                   recompute=recompute, sequence_parallel=sequence_parallel, flash_attention=flash)
    except (ValueError, FileNotFoundError) as err:
        raise typer.BadParameter(str(err), param_hint="NAME / --tp / --pp / --cp / --recompute") from err
    sp = tp > 1 if sequence_parallel is None else sequence_parallel
    activations = f"activations ({recompute} recompute{', flash' if flash else ''}{', seq. parallel' if sp else ''})"
    long_note = (f"; beyond the preset's {preset.max_position_embeddings} positions: train with a larger "
                 f"model.rotary_base" if seq_length > preset.max_position_embeddings else "")
    rows = [
        ("model", f"{preset.name} ({preset.family}; {preset.hf_repo or preset.source})"),
        ("layers x hidden", f"{preset.num_layers} x {preset.hidden_size}, ffn {preset.ffn_hidden_size}"),
        ("attention", f"{preset.num_attention_heads} heads, {preset.num_query_groups} KV groups, head dim {preset.head_dim}"),
        ("vocabulary", f"{preset.vocab_size} (padded to {preset.padded_vocab_size(tp)} at TP={tp})"),
        ("embeddings", "tied" if preset.tie_word_embeddings else "untied"),
        ("RoPE base / max positions", f"{preset.rotary_base:g} / {preset.max_position_embeddings}"),
        ("parameters", f"{estimate.parameters:,} ({estimate.parameters / 1e9:.2f} B)"),
        ("layout", f"TP={tp} PP={pp} CP={cp} DP={dp} ({tp * pp * cp * dp} GPUs), seq {seq_length}, "
                   f"micro-batch {micro_batch}{long_note}"),
        ("parameters per GPU", f"{estimate.parameters_per_gpu:,}"),
        ("weights (bf16)", f"{estimate.weights_bytes / GIB:.2f} GiB"),
        ("grads (fp32)", f"{estimate.grads_bytes / GIB:.2f} GiB"),
        ("optimizer (fp32 Adam, distributed)", f"{estimate.optimizer_bytes / GIB:.2f} GiB"),
        (activations, f"{estimate.activations_bytes / GIB:.2f} GiB"),
        ("total per GPU", f"{estimate.total_bytes / GIB:.2f} GiB (+ a few GiB CUDA context and buffers)"),
    ]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        typer.echo(f"{label:<{width}}  {value}")


@app.command("list")
def list_presets() -> None:
    """List the known presets with their Hugging Face repos and default TP/PP."""
    from specialize.model.presets import get_preset, known_presets

    for name in known_presets():
        preset = get_preset(name)
        typer.echo(f"{name:<14} {preset.num_parameters() / 1e9:7.2f} B  tp={preset.default_tp} pp={preset.default_pp}  "
                   f"{preset.hf_repo or '(embedded tokenizer)'}")
