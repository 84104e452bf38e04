"""Where a run's weights come from: ``--from`` resolved, Hugging Face weights imported, the long-context
changes applied to the architecture, before the first step.

Every form ``specialize.model.source`` accepts works (a run's newest checkpoint, a step, a checkpoint, a
Hugging Face directory or Hub model, a preset). Hugging Face weights are converted once into
``<output>/converted``, before any process group exists (``convert_before_process_group``).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch.distributed as dist

from specialize.train.config import RunConfig


def resolve_model_source(source: str, output: Path, tp: int, pp: int):
    """(preset, checkpoint dir to load or None, tokenizer source) for ``--from`` (any form
    ``specialize.model.source`` accepts: a run's newest checkpoint, a step, a checkpoint, ...).

    Hugging Face weights (a directory or a Hub model) are converted once into ``<output>/converted``;
    a project preset without weights starts from random initialisation.
    """
    from specialize.model.checkpoint import META_FILE
    from specialize.model.source import resolve

    resolved = resolve(source)
    if resolved.random_init:
        return resolved.preset, None, resolved.tokenizer
    if not resolved.needs_conversion:
        return resolved.preset, resolved.checkpoint, resolved.tokenizer
    converted = output / "converted"
    if not (converted / META_FILE).is_file():
        if dist.get_rank() == 0:
            from specialize.convert import hf_to_megatron

            hf_to_megatron(source, str(converted), tp, pp)
        dist.barrier()
    imported = resolve(converted)
    return imported.preset, imported.checkpoint, imported.tokenizer


CONVERSION_DONE, CONVERSION_FAILED = "converted.done", "converted.failed"


def needs_conversion(source: str) -> bool:
    """Whether ``--from`` names Hugging Face weights (a directory or a Hub model) to import first."""
    from specialize.model.source import resolve

    return resolve(source).needs_conversion


def convert_before_process_group(source: str, output: Path, tp: int, pp: int, *, rank: int | None = None,
                                 wait_s: float = 24 * 3600.0, poll_s: float = 2.0) -> None:
    """Import a Hugging Face ``--from`` into ``<output>/converted`` before any process group exists.

    A 72B import reads ~1.2 TB; done on rank 0 after the group is up, the other ranks waited for it
    under the collectives' timeout (NCCL's 10 minutes by default) and the job died. Here the launcher's
    rank 0 converts in a child process (the converter sets up its own group of tp x pp ranks, on CPU
    when a job is running) and every other rank waits on the shared output directory for
    ``converted.done`` (or ``converted.failed``, whose message it raises), with no collective pending.
    """
    import subprocess
    import sys
    import time

    from specialize.model.checkpoint import META_FILE
    from specialize.model.parallel import launcher_free_environment

    converted = output / "converted"
    done, failed = output / CONVERSION_DONE, output / CONVERSION_FAILED
    if not needs_conversion(source) or (converted / META_FILE).is_file():
        return  # nothing to import, or imported by an earlier start of this run (the metadata is written last)
    if (int(os.environ.get("RANK", "0")) if rank is None else rank) == 0:
        output.mkdir(parents=True, exist_ok=True)
        failed.unlink(missing_ok=True)
        done.unlink(missing_ok=True)
        command = [sys.executable, "-m", "specialize.cli", "convert", "hf-to-megatron", "--from", source, "--to", str(converted),
                   "--tp", str(tp), "--pp", str(pp)]
        result = subprocess.run(command, env=launcher_free_environment(), capture_output=True, text=True)
        if result.returncode != 0:
            message = f"--from {source}: conversion to {converted} failed: {(result.stderr or result.stdout).strip()[-2000:]}"
            failed.write_text(message, encoding="utf-8")
            raise RuntimeError(message)
        done.write_text(source + "\n", encoding="utf-8")
        return
    deadline = time.monotonic() + wait_s
    while not (done.is_file() and (converted / META_FILE).is_file()):
        if failed.is_file():
            raise RuntimeError(failed.read_text(encoding="utf-8"))
        if time.monotonic() > deadline:
            raise TimeoutError(f"--from {source}: rank 0 did not finish converting into {converted} within {wait_s:.0f} s")
        time.sleep(poll_s)


def long_context_preset(preset, config: RunConfig) -> tuple[object, list[str]]:
    """The preset trained: ``model.rotary_base`` replaces the checkpoint's RoPE base, and a
    ``train.seq_length`` beyond ``max_position_embeddings`` raises it (both recorded in every checkpoint
    and written to the export's config.json). Returns (preset, messages for the log)."""
    m, t = config.model, config.train
    notes, changes = [], {}
    if m.rotary_base is not None and m.rotary_base != preset.rotary_base:
        changes["rotary_base"] = float(m.rotary_base)
        notes.append(f"RoPE base {preset.rotary_base:g} -> {m.rotary_base:g} (model.rotary_base)")
    if t.seq_length > preset.max_position_embeddings:
        changes["max_position_embeddings"] = t.seq_length
        notes.append(f"max_position_embeddings {preset.max_position_embeddings} -> {t.seq_length} (train.seq_length)")
    return (dataclasses.replace(preset, **changes) if changes else preset), notes
