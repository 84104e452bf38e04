"""Model presets: the architecture numbers of every Qwen checkpoint we can start from.

The numbers live in one place, ``megatron_configs/models/<name>.yaml`` (one file per size, with the
default TP/PP for that size); this module reads them. A checkpoint directory with a ``config.json``
builds its preset from that file instead, in any of the three schemes Qwen has shipped:

- Qwen 1.0, newer keys: ``hidden_size/num_attention_heads/num_hidden_layers/intermediate_size/
  kv_channels/rotary_emb_base/layer_norm_epsilon``;
- Qwen 1.0, older keys: ``n_embd/n_head/n_layer/ffn_hidden_size/padded_vocab_size``;
- Qwen1.5/2/2.5 (``Qwen2ForCausalLM``): ``num_key_value_heads``, ``rope_theta``, ``rms_norm_eps``,
  ``tie_word_embeddings``.

Qwen 1.0's ``intermediate_size`` (and ``ffn_hidden_size``) is the width of w1 and w2 *together*: the
SwiGLU width megatron calls ``ffn_hidden_size`` is half of it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

#: Where the YAML presets live (the repository's ``megatron_configs/models``, also inside a built wheel).
from specialize.configs import PRESET_DIR

#: The embedded default model.
DEFAULT_PRESET = "qwen-tiny"

#: Megatron pads the vocabulary so that each TP rank holds a multiple of this many rows.
VOCAB_PAD_MULTIPLE = 128


def padded_vocab_size(vocab_size: int, tp: int = 1) -> int:
    """The ONE vocabulary padding rule: round up to a multiple of ``128 * tp``.

    Megatron's VocabParallelEmbedding splits rows evenly across TP ranks, and 128 keeps each rank's
    slice aligned for the GEMMs. The true size is kept in the preset and restored on export.
    """
    if vocab_size <= 0 or tp <= 0:
        raise ValueError(f"vocab_size and tp must be positive, got vocab_size={vocab_size}, tp={tp}")
    multiple = VOCAB_PAD_MULTIPLE * tp
    return int(math.ceil(vocab_size / multiple) * multiple)


@dataclass
class ModelPreset:
    """Everything that fixes a Qwen model's function (and its default parallel layout)."""

    name: str
    family: Literal["qwen", "qwen2"]  # "qwen": Qwen 1.0 weight names; "qwen2": Qwen1.5/2/2.5
    hidden_size: int
    num_layers: int
    num_attention_heads: int
    num_query_groups: int
    ffn_hidden_size: int  # SwiGLU width (one of gate/up)
    vocab_size: int  # true number of embedding rows (HF checkpoint rows, or tokenizer size)
    max_position_embeddings: int
    rotary_base: float
    norm_epsilon: float
    tie_word_embeddings: bool
    hf_repo: str | None = None
    #: Where the tokenizer comes from: None = the embedded tiny vocabulary for ``qwen-tiny``; a
    #: checkpoint directory for presets read from one. Named HF presets have none until downloaded.
    tokenizer: str | None = None
    kv_channels: int | None = None  # head dim; None means hidden_size // num_attention_heads
    default_tp: int = 1
    default_pp: int = 1
    source: str = ""  # the YAML or config.json this preset came from (for error messages)

    def __post_init__(self) -> None:
        where = self.source or self.name
        if self.family not in ("qwen", "qwen2"):
            raise ValueError(f"{where}: family must be 'qwen' or 'qwen2', got {self.family!r}")
        for key in ("hidden_size", "num_layers", "num_attention_heads", "num_query_groups",
                    "ffn_hidden_size", "vocab_size", "max_position_embeddings"):
            if int(getattr(self, key)) <= 0:
                raise ValueError(f"{where}: {key} must be positive, got {getattr(self, key)}")
        if self.num_attention_heads % self.num_query_groups:
            raise ValueError(
                f"{where}: num_attention_heads={self.num_attention_heads} is not a multiple of "
                f"num_query_groups={self.num_query_groups}"
            )
        if self.kv_channels is None and self.hidden_size % self.num_attention_heads:
            raise ValueError(f"{where}: hidden_size is not a multiple of num_attention_heads; set kv_channels")

    @property
    def head_dim(self) -> int:
        return self.kv_channels or self.hidden_size // self.num_attention_heads

    def padded_vocab_size(self, tp: int = 1) -> int:
        return padded_vocab_size(self.vocab_size, tp)

    def num_parameters(self, *, padded_tp: int | None = None) -> int:
        """Exact parameter count of the megatron model (vocab padded for ``padded_tp`` if given)."""
        vocab = self.padded_vocab_size(padded_tp) if padded_tp else self.vocab_size
        h, d = self.hidden_size, self.head_dim
        q, kv = self.num_attention_heads * d, self.num_query_groups * d
        attention = h * (q + 2 * kv) + (q + 2 * kv) + q * h  # QKV weight + bias, output projection
        mlp = 3 * h * self.ffn_hidden_size
        per_layer = attention + mlp + 2 * h  # + two RMSNorm weights
        embeddings = vocab * h * (1 if self.tie_word_embeddings else 2)
        return self.num_layers * per_layer + embeddings + h

    def validate_parallel(self, tp: int, pp: int) -> None:
        """Raise a clear error if this model cannot be split ``tp`` x ``pp`` ways."""
        problems = []
        if self.num_attention_heads % tp:
            problems.append(f"num_attention_heads={self.num_attention_heads} not divisible by tp={tp}")
        if self.num_query_groups % tp:
            problems.append(f"num_query_groups={self.num_query_groups} not divisible by tp={tp}")
        if self.ffn_hidden_size % tp:
            problems.append(f"ffn_hidden_size={self.ffn_hidden_size} not divisible by tp={tp}")
        if self.num_layers % pp:
            problems.append(f"num_layers={self.num_layers} not divisible by pp={pp}")
        if problems:
            raise ValueError(f"{self.name}: cannot use tp={tp}, pp={pp}: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelPreset":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{data.get('source') or data.get('name')}: unknown preset keys {unknown}")
        return cls(**data)

    def load_tokenizer(self):
        """The tokenizer this model was trained with (raises if it must come from a checkpoint)."""
        from specialize.tokenization import load_tokenizer

        if self.tokenizer is None and self.hf_repo is not None:
            raise ValueError(
                f"{self.name}: its tokenizer ships with the checkpoint {self.hf_repo}; convert or point at "
                f"the checkpoint directory (specialize convert hf-to-megatron --from {self.name} ...)"
            )
        return load_tokenizer(self.tokenizer)


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


def _normalise_name(name: str) -> str:
    """``Qwen/Qwen2.5-7B`` and ``qwen2.5-7b`` name the same preset; so do ``Qwen/Qwen-1_8B`` and ``qwen-1.8b``."""
    stem = name.strip().rstrip("/").split("/")[-1].lower().replace("_", ".")
    return stem


def preset_for_name(name: str) -> ModelPreset | None:
    """The YAML preset for a short name or a Hugging Face repo id, or None if unknown."""
    presets = known_presets()
    key = _normalise_name(name)
    if key in presets:
        return _read_yaml_preset(presets[key])
    for path in presets.values():  # match by hf_repo, e.g. "Qwen/Qwen-1_8B"
        preset = _read_yaml_preset(path)
        if preset.hf_repo and preset.hf_repo.lower() == name.strip().lower():
            return preset
    return None


# -- config.json -----------------------------------------------------------------------------------

QWEN1_ARCHITECTURES = {"QWenLMHeadModel"}
QWEN2_ARCHITECTURES = {"Qwen2ForCausalLM"}


def checkpoint_family(config: dict[str, Any], source: str) -> Literal["qwen", "qwen2"]:
    """Which weight-name family a config.json describes; a clear error for anything else."""
    architectures = set(config.get("architectures") or [])
    model_type = config.get("model_type")
    if architectures & QWEN2_ARCHITECTURES or model_type == "qwen2":
        return "qwen2"
    if architectures & QWEN1_ARCHITECTURES or model_type == "qwen":
        return "qwen"
    raise ValueError(
        f"{source}: unsupported architecture {sorted(architectures) or None} (model_type={model_type!r}); "
        f"specialize converts Qwen 1.0 (QWenLMHeadModel) and Qwen1.5/2/2.5 (Qwen2ForCausalLM) checkpoints"
    )


def _require(config: dict[str, Any], keys: tuple[str, ...], source: str) -> Any:
    for key in keys:
        if config.get(key) is not None:
            return config[key]
    raise ValueError(f"{source}: config.json lacks {' or '.join(keys)}")


def _rope_theta(config: dict[str, Any], default: float) -> float:
    # transformers 5 writes rope settings under "rope_parameters"; 4.x writes "rope_theta".
    params = config.get("rope_parameters") or {}
    theta = config.get("rope_theta", params.get("rope_theta", default))
    return float(theta)


def preset_from_hf_config(config: dict[str, Any], *, name: str, source: str, tokenizer: str | None) -> ModelPreset:
    """Build a preset from a checkpoint's ``config.json`` (Qwen 1.0 either key scheme, or Qwen2)."""
    family = checkpoint_family(config, source)
    if family == "qwen":
        hidden = int(_require(config, ("hidden_size", "n_embd"), source))
        heads = int(_require(config, ("num_attention_heads", "n_head"), source))
        two_ffn = int(_require(config, ("intermediate_size", "ffn_hidden_size"), source))
        if two_ffn % 2:
            raise ValueError(f"{source}: Qwen 1.0 intermediate_size={two_ffn} must be even (it is 2 x the SwiGLU width)")
        return ModelPreset(
            name=name,
            family="qwen",
            hidden_size=hidden,
            num_layers=int(_require(config, ("num_hidden_layers", "n_layer"), source)),
            num_attention_heads=heads,
            num_query_groups=heads,
            ffn_hidden_size=two_ffn // 2,
            vocab_size=int(_require(config, ("padded_vocab_size", "vocab_size"), source)),
            max_position_embeddings=int(
                _require(config, ("max_position_embeddings", "seq_length", "n_positions"), source)
            ),
            rotary_base=float(config.get("rotary_emb_base", 10000.0)),
            norm_epsilon=float(config.get("layer_norm_epsilon", 1e-6)),
            tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
            kv_channels=int(config["kv_channels"]) if config.get("kv_channels") else None,
            tokenizer=tokenizer,
            source=source,
        )
    if config.get("use_sliding_window"):
        raise ValueError(f"{source}: use_sliding_window=true is not supported (Qwen2 base models train without it)")
    scaling = config.get("rope_scaling") or {}
    rope_type = scaling.get("rope_type", scaling.get("type")) or (config.get("rope_parameters") or {}).get("rope_type")
    if rope_type not in (None, "default"):
        raise ValueError(f"{source}: rope scaling {rope_type!r} is not supported; remove it for continual pretraining")
    heads = int(_require(config, ("num_attention_heads",), source))
    hidden = int(_require(config, ("hidden_size",), source))
    head_dim = config.get("head_dim")
    return ModelPreset(
        name=name,
        family="qwen2",
        hidden_size=hidden,
        num_layers=int(_require(config, ("num_hidden_layers",), source)),
        num_attention_heads=heads,
        num_query_groups=int(config.get("num_key_value_heads") or heads),
        ffn_hidden_size=int(_require(config, ("intermediate_size",), source)),
        vocab_size=int(_require(config, ("vocab_size",), source)),
        max_position_embeddings=int(_require(config, ("max_position_embeddings",), source)),
        rotary_base=_rope_theta(config, 10000.0),
        norm_epsilon=float(config.get("rms_norm_eps", 1e-6)),
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        kv_channels=int(head_dim) if head_dim and int(head_dim) != hidden // heads else None,
        tokenizer=tokenizer,
        source=source,
    )


def read_hf_config(directory: Path) -> dict[str, Any]:
    path = directory / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{directory}: not a Hugging Face checkpoint (no config.json)") from err
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: invalid JSON ({err})") from err
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return config


def preset_from_directory(directory: Path) -> ModelPreset:
    """A preset from a HF checkpoint (config.json) or a specialize megatron checkpoint (specialize.json)."""
    directory = Path(directory)
    meta = directory / "specialize.json"
    if meta.is_file():
        data = json.loads(meta.read_text(encoding="utf-8"))
        if "preset" not in data:
            raise ValueError(f"{meta}: no 'preset' entry")
        preset = ModelPreset.from_dict(data["preset"])
        from specialize.model.checkpoint import resolve_tokenizer_source

        preset.tokenizer = resolve_tokenizer_source(directory, preset.tokenizer)
        return preset
    config = read_hf_config(directory)
    has_tokenizer = any(
        (directory / f).is_file() for f in ("qwen.tiktoken", "tokenizer.json", "vocab.json")
    )
    preset = preset_from_hf_config(
        config,
        name=directory.name,
        source=str(directory / "config.json"),
        tokenizer=str(directory) if has_tokenizer else None,
    )
    # Keep the default layout of the matching named preset, if any (same shape).
    for path in known_presets().values():
        named = _read_yaml_preset(path)
        if (named.hidden_size, named.num_layers, named.num_attention_heads) == (
            preset.hidden_size, preset.num_layers, preset.num_attention_heads
        ) and named.family == preset.family:
            preset.default_tp, preset.default_pp = named.default_tp, named.default_pp
            preset.hf_repo = preset.hf_repo or named.hf_repo
            break
    return preset


def get_preset(name_or_dir: str | Path = DEFAULT_PRESET) -> ModelPreset:
    """A preset by name (``qwen-tiny``, ``qwen-14b``, ``Qwen/Qwen2.5-7B``...) or from a checkpoint directory."""
    location = Path(str(name_or_dir)).expanduser()
    if location.is_dir():
        return preset_from_directory(location)
    preset = preset_for_name(str(name_or_dir))
    if preset is None:
        raise ValueError(
            f"unknown model {str(name_or_dir)!r}: not a directory and not a preset "
            f"(known: {', '.join(known_presets())})"
        )
    return preset
