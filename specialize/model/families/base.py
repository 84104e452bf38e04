"""What a model family is: the one object that knows a Qwen generation's checkpoint format.

A family (``qwen1.py``, ``qwen2.py``, ``qwen3.py``; registered in ``__init__.py``) holds, in one file,
its Hugging Face ``config.json`` parsing in both directions, its weight-name table, the megatron
``TransformerConfig`` flags that make megatron compute its function, and the format it exports to.
This is the layout of Megatron-Bridge's per-model bridges (``qwen2_bridge.py``, ``qwen3_bridge.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from specialize.model.families.tables import ConversionTable

if TYPE_CHECKING:  # type hints only: architecture imports the families at run time
    from specialize.model.architecture import ModelPreset

#: HF config.json -> the preset's architecture fields (everything but name, source, tokenizer).
ConfigReader = Callable[[dict[str, Any], str], dict[str, Any]]
#: preset -> the architecture part of an exported config.json (the exporter adds dtype and token ids).
ConfigWriter = Callable[["ModelPreset"], dict[str, Any]]


@dataclass(frozen=True)
class ModelFamily:
    name: str  # the preset's ``family`` value
    title: str  # for messages: "Qwen3 (Qwen3ForCausalLM)"
    architectures: frozenset[str]  # config.json "architectures" entries that mean this family
    model_types: frozenset[str]  # config.json "model_type" values that mean this family
    table: ConversionTable  # megatron parameter <-> this family's HF tensors
    qkv_bias: bool  # bias on the fused QKV projection (Qwen 1.0/2) or none (Qwen3)
    qk_layernorm: bool  # per-head RMSNorm on q and k before RoPE (Qwen3)
    read_config: ConfigReader
    #: The family whose HF format an export of this family is written in (Qwen 1.0 exports as Qwen2:
    #: same function, and loadable by ``transformers`` without remote code).
    export_as: str
    write_config: ConfigWriter | None = None  # None: this family is only imported, never exported

    def matches(self, config: dict[str, Any]) -> bool:
        return bool(set(config.get("architectures") or []) & self.architectures) or config.get("model_type") in self.model_types

    def transformer_flags(self) -> dict[str, Any]:
        """The ``TransformerConfig`` fields that differ between families."""
        return {"add_qkv_bias": self.qkv_bias, "qk_layernorm": self.qk_layernorm}


# -- config.json helpers shared by the family modules ----------------------------------------------

def require(config: dict[str, Any], keys: tuple[str, ...], source: str) -> Any:
    """The first of ``keys`` that config.json sets; a clear error naming the file if none is."""
    for key in keys:
        if config.get(key) is not None:
            return config[key]
    raise ValueError(f"{source}: config.json lacks {' or '.join(keys)}")


def rope_theta(config: dict[str, Any], default: float) -> float:
    # transformers 5 writes rope settings under "rope_parameters"; 4.x writes "rope_theta".
    params = config.get("rope_parameters") or {}
    return float(config.get("rope_theta", params.get("rope_theta", default)))


def refuse_rope_scaling(config: dict[str, Any], source: str) -> None:
    """Continual pretraining starts from the unscaled RoPE: scaling is an inference-time export option."""
    scaling = config.get("rope_scaling") or {}
    params = config.get("rope_parameters") or {}
    rope_type = scaling.get("rope_type", scaling.get("type")) or params.get("rope_type")
    if rope_type not in (None, "default"):
        raise ValueError(
            f"{source}: rope scaling {rope_type!r} is not supported on import; remove it for continual "
            f"pretraining (it is an export option: specialize convert megatron-to-hf --rope-scaling)"
        )


def refuse_sliding_window(config: dict[str, Any], source: str) -> None:
    if config.get("use_sliding_window"):
        raise ValueError(f"{source}: use_sliding_window=true is not supported (Qwen base models train without it)")
