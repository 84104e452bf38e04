"""``specialize convert``: Hugging Face <-> megatron checkpoints (logic in specialize/convert/)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="Convert checkpoints between Hugging Face and megatron-core formats.", no_args_is_help=True)

_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


@app.command("hf-to-megatron")
def hf_to_megatron_command(
    source: str = typer.Option(..., "--from", help="HF checkpoint directory, or a name: qwen-14b, Qwen/Qwen-14B, qwen2.5-7b, qwen3-8b..."),
    destination: Path = typer.Option(..., "--to", help="Output directory for the megatron checkpoint."),
    tp: int = typer.Option(1, "--tp", help="Tensor parallel size to convert at (the result loads at any)."),
    pp: int = typer.Option(1, "--pp", help="Pipeline parallel size to convert at (the result loads at any)."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="bf16 | fp16 | fp32 (default: the checkpoint's)."),
) -> None:
    """Import a Qwen 1.0 / Qwen1.5 / Qwen2 / Qwen2.5 Hugging Face checkpoint as a megatron dist checkpoint."""
    import torch

    from specialize.convert import hf_to_megatron

    if dtype is not None and dtype not in _DTYPES:
        raise typer.BadParameter(f"{dtype!r}: expected one of {', '.join(_DTYPES)}", param_hint="--dtype")
    try:
        out = hf_to_megatron(source, destination, tp=tp, pp=pp, dtype=getattr(torch, _DTYPES[dtype]) if dtype else None)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from err
    typer.echo(f"wrote megatron checkpoint {out}")


@app.command("megatron-to-hf")
def megatron_to_hf_command(
    source: Path = typer.Option(..., "--from", help="specialize megatron checkpoint, training step or run directory (its newest checkpoint)."),
    destination: Path = typer.Option(..., "--to", help="Output directory for the Hugging Face checkpoint."),
    chat_template: Optional[Path] = typer.Option(None, "--chat-template", help="Jinja chat template file (SFT models)."),
    max_shard_gb: float = typer.Option(4.0, "--max-shard-gb", help="Largest safetensors shard, in GiB."),
    rope_scaling: Optional[str] = typer.Option(None, "--rope-scaling", help="YaRN context extension written to config.json: yarn:FACTOR[:TRAINED_LENGTH] (default trained length: the model's max_position_embeddings)."),
) -> None:
    """Export as a Hugging Face checkpoint (Qwen2ForCausalLM, or Qwen3ForCausalLM for Qwen3): safetensors, config, tokenizer."""
    from specialize.convert import megatron_to_hf

    template = chat_template.read_text(encoding="utf-8") if chat_template else None
    try:
        out = megatron_to_hf(source, destination, chat_template=template, max_shard_bytes=int(max_shard_gb * 1024**3),
                             rope_scaling=rope_scaling)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from err
    typer.echo(f"wrote Hugging Face checkpoint {out}")
