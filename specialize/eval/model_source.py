"""What ``eval --from`` accepts, as a Hugging Face directory that every generation backend loads.

One generation path serves all checkpoints: a Hugging Face directory is used as it is; a specialize
run directory, training step or model checkpoint is exported (``convert.megatron_to_hf``, the
converter users run) into a scratch directory first, with the ChatML template when it comes from an
``specialize sft`` run; a preset with a Hub repo is fetched like ``train --from``; a project preset
without weights (``qwen-tiny``) is the model a run starts from: random weights from the seed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class EvalModel:
    directory: Path  # a Hugging Face checkpoint directory
    origin: str  # "huggingface", "specialize checkpoint (exported)", "preset ... (random init)", ...
    has_chat_template: bool


def _has_chat_template(directory: Path) -> bool:
    config = directory / "tokenizer_config.json"
    if not config.is_file():
        return False
    try:
        return bool(json.loads(config.read_text(encoding="utf-8")).get("chat_template")) or (directory / "chat_template.jinja").is_file()
    except json.JSONDecodeError as err:
        raise ValueError(f"{config}: not valid JSON ({err})") from None


def _sft_run_dir(model_dir: Path) -> Path | None:
    """The ``specialize sft`` run a checkpoint belongs to (its ``sft.yaml`` carries the system prompt)."""
    from specialize.sft.run import SFT_FILE

    for parent in [model_dir, *model_dir.parents][:5]:
        if (parent / SFT_FILE).is_file():
            return parent
    return None


def _export(model_dir: Path, destination: Path) -> bool:
    """Export a megatron checkpoint; True when it got the chat template (an SFT run's checkpoint)."""
    from specialize.convert import megatron_to_hf
    from specialize.sft.run import run_chat_template

    run = _sft_run_dir(model_dir)
    template = run_chat_template(run) if run is not None else None
    megatron_to_hf(model_dir, destination, chat_template=template)
    return template is not None


def _random_init_checkpoint(preset, destination: Path, seed: int) -> Path:
    """The starting point of ``train --from PRESET`` for a preset without weights: seeded random init."""
    from specialize.model.build import build_gpt_model, transformer_config
    from specialize.model.checkpoint import save_model_checkpoint
    from specialize.model.parallel import destroy_parallel, initialize_parallel
    initialize_parallel(1, 1, seed=seed)
    try:
        model = build_gpt_model(preset, transformer_config(preset))
        save_model_checkpoint(model, destination, preset, preset.tokenizer)
    finally:
        destroy_parallel()
    return destination


def resolve_eval_model(source: str, scratch: Path, *, seed: int = 1234) -> EvalModel:
    from specialize.model.source import download, resolve

    resolved = resolve(source)
    if resolved.needs_conversion:  # Hugging Face weights: used as they are (a Hub model downloaded once)
        directory = download(resolved).hf_directory
        origin = "huggingface" if resolved.kind == "hf" else f"huggingface {source}"
        return EvalModel(directory, origin, _has_chat_template(directory))
    if resolved.random_init:
        model_dir = _random_init_checkpoint(resolved.preset, scratch / "init", seed)
        exported = scratch / "hf"
        _export(model_dir, exported)
        return EvalModel(exported, f"preset {resolved.preset.name} (random initialisation, seed {seed})", False)
    exported = scratch / "hf"
    chat = _export(resolved.checkpoint, exported)
    return EvalModel(exported, f"specialize checkpoint {resolved.checkpoint} (exported for generation)", chat)
