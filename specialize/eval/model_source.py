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


def _random_init_checkpoint(preset_name: str, destination: Path, seed: int) -> Path:
    """The starting point of ``train --from PRESET`` for a preset without weights: seeded random init."""
    from specialize.model.build import build_gpt_model, transformer_config
    from specialize.model.checkpoint import save_model_checkpoint
    from specialize.model.parallel import destroy_parallel, initialize_parallel
    from specialize.model.presets import get_preset

    preset = get_preset(preset_name)
    initialize_parallel(1, 1, seed=seed)
    try:
        model = build_gpt_model(preset, transformer_config(preset))
        save_model_checkpoint(model, destination, preset, preset.tokenizer)
    finally:
        destroy_parallel()
    return destination


def resolve_eval_model(source: str, scratch: Path, *, seed: int = 1234) -> EvalModel:
    from specialize.sft.chat import is_hf_checkpoint, megatron_checkpoint_dir

    path = Path(source).expanduser()
    if path.exists():
        if not path.is_dir():
            raise NotADirectoryError(f"--from {source}: expected a directory (run, checkpoint or Hugging Face export), got a file")
        if is_hf_checkpoint(path):
            return EvalModel(path, "huggingface", _has_chat_template(path))
        model_dir = megatron_checkpoint_dir(path)  # raises naming the path when it is neither
        exported = scratch / "hf"
        chat = _export(model_dir, exported)
        return EvalModel(exported, f"specialize checkpoint {model_dir} (exported for generation)", chat)
    from specialize.model.presets import preset_for_name

    preset = preset_for_name(source)
    if preset is not None and preset.hf_repo is None:
        model_dir = _random_init_checkpoint(source, scratch / "init", seed)
        exported = scratch / "hf"
        _export(model_dir, exported)
        return EvalModel(exported, f"preset {preset.name} (random initialisation, seed {seed})", False)
    from specialize.convert import resolve_checkpoint

    directory = resolve_checkpoint(source)  # a Hub name or owner/repo, downloaded once (errors say how offline)
    return EvalModel(Path(directory), f"huggingface {source}", _has_chat_template(Path(directory)))
