"""Model presets by name: the architecture numbers of every Qwen checkpoint we can start from.

The numbers live in one place, ``megatron_configs/models/<name>.yaml`` (one file per size, with the
default TP/PP for that size); this module reads them, and builds a preset from a Hugging Face
``config.json`` through its family's reader (``specialize/model/families``). Where a ``--from`` points
(a run, a checkpoint, an HF directory, a name) is decided by ``specialize.model.source`` alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

#: Where the YAML presets live (the repository's ``megatron_configs/models``, also inside a built wheel).
from specialize.configs import PRESET_DIR
from specialize.model.architecture import VOCAB_PAD_MULTIPLE, ModelPreset, padded_vocab_size
from specialize.model.families import family_of_config

#: The embedded default model.
DEFAULT_PRESET = "qwen-tiny"

__all__ = ["DEFAULT_PRESET", "ModelPreset", "VOCAB_PAD_MULTIPLE", "get_preset", "known_presets", "padded_vocab_size",
           "preset_for_name", "preset_from_hf_config", "with_named_layout"]


# -- YAML presets ----------------------------------------------------------------------------------

def _read_yaml_preset(path: Path) -> ModelPreset:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: cannot read model preset ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a model preset must be a mapping, got {type(data).__name__}")
    data = dict(data)
    parallel = data.pop("parallel", None) or {}
    data["default_tp"] = int(parallel.get("tp", 1))
    data["default_pp"] = int(parallel.get("pp", 1))
    data["source"] = str(path)
    return ModelPreset.from_dict(data)


def known_presets() -> dict[str, Path]:
    """Preset name -> YAML file, for every file in ``megatron_configs/models``."""
    return {path.stem: path for path in sorted(PRESET_DIR.glob("*.yaml"))}


def preset_for_name(name: str) -> ModelPreset | None:
    """The YAML preset for a short name (``qwen2.5-7b``, ``qwen-1_8b``) or its exact Hub repo id
    (``Qwen/Qwen2.5-7B``), or None. Other ``owner/repo`` ids (``Qwen/Qwen3-8B``, a post-trained model,
    ``checkpoints/qwen-tiny``, a path) are not presets, even when their last part is a preset's name."""
    text = name.strip().rstrip("/")
    presets = known_presets()
    if "/" not in text:
        key = text.lower().replace("_", ".")
        return _read_yaml_preset(presets[key]) if key in presets else None
    for path in presets.values():
        preset = _read_yaml_preset(path)
        if preset.hf_repo and preset.hf_repo.lower() == text.lower():
            return preset
    return None


# -- config.json -----------------------------------------------------------------------------------

def preset_from_hf_config(config: dict[str, Any], *, name: str, source: str, tokenizer: str | None) -> ModelPreset:
    """A preset from a checkpoint's ``config.json``, read by the family that config describes."""
    family = family_of_config(config, source)
    preset = ModelPreset(name=name, family=family.name, tokenizer=tokenizer, source=source,
                         **family.read_config(config, source))
    return with_named_layout(preset)


def with_named_layout(preset: ModelPreset) -> ModelPreset:
    """Keep the default TP/PP (and Hub repo) of the named preset of the same shape, if there is one."""
    for path in known_presets().values():
        named = _read_yaml_preset(path)
        if (named.family, named.hidden_size, named.num_layers, named.num_attention_heads) == (
            preset.family, preset.hidden_size, preset.num_layers, preset.num_attention_heads
        ):
            preset.default_tp, preset.default_pp = named.default_tp, named.default_pp
            preset.hf_repo = preset.hf_repo or named.hf_repo
            break
    return preset


def get_preset(name: str = DEFAULT_PRESET) -> ModelPreset:
    """A named preset (``qwen-tiny``, ``qwen-14b``, ``Qwen/Qwen2.5-7B``, ``qwen3-8b``...).

    Directories (runs, checkpoints, HF exports) are ``specialize.model.source.resolve``'s job.
    """
    preset = preset_for_name(str(name))
    if preset is None:
        raise ValueError(f"unknown model {str(name)!r}: not a preset (known: {', '.join(known_presets())})")
    return preset
