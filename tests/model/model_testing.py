"""Helpers for the model tests: tiny random Hugging Face Qwen checkpoints (Qwen2 and Qwen 1.0 names).

A uniquely named module (not conftest) so test files can import it without clashing with other
test directories' conftest modules.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

#: Tiny Qwen2 shape: GQA (4 heads, 2 groups), 2 layers. 8500 embedding rows for an 8400-id tokenizer
#: (like Qwen's 151936 rows for 151646 ids); megatron pads them to 8576 at TP=1 and 8704 at TP=2.
TINY = dict(vocab_size=8500, hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=512, rms_norm_eps=1e-6, rope_theta=1e6)


#: Tiny Qwen3: the same shape with head_dim 32 instead of hidden / heads = 16 (as Qwen3-0.6B: 128 vs 64).
TINY_QWEN3 = {**TINY, "head_dim": 32}


def make_hf_qwen2(directory: Path, *, tied: bool, seed: int = 0, **overrides):
    """A random fp32 Qwen2ForCausalLM saved as sharded safetensors + tokenizer files; returns the model."""
    return make_hf_model(directory, "qwen2", tied=tied, seed=seed, **overrides)


def make_hf_model(directory: Path, family: str, *, tied: bool, seed: int = 0, **overrides):
    """A random fp32 ``Qwen2ForCausalLM`` or ``Qwen3ForCausalLM`` saved as sharded safetensors +
    tokenizer files; returns the model.

    Every parameter (biases and norms, Qwen3's q/k norms included) is drawn at random so that a
    swapped or mis-split tensor shows in the logits.
    """
    transformers = pytest.importorskip("transformers")
    from specialize.tokenization import load_tokenizer

    torch.manual_seed(seed)
    if family == "qwen3":
        config = transformers.Qwen3Config(**{**TINY_QWEN3, **overrides}, tie_word_embeddings=tied)
        model = transformers.Qwen3ForCausalLM(config).float().eval()
    else:
        config = transformers.Qwen2Config(**{**TINY, **overrides}, tie_word_embeddings=tied)
        model = transformers.Qwen2ForCausalLM(config).float().eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.uniform_(0.5, 1.5)
            else:
                param.normal_(0.0, 0.1)
    model.save_pretrained(directory, max_shard_size="200KB")
    load_tokenizer(None).save_hf(directory)
    return model


def hf_logits(model, tokens: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(tokens).logits


def sample_tokens(batch: int = 2, length: int = 24) -> torch.Tensor:
    return torch.randint(0, 8400, (batch, length), generator=torch.Generator().manual_seed(7))


def write_qwen1_checkpoint(model, directory: Path, *, old_keys: bool) -> None:
    """The same function under Qwen 1.0 names (QWenLMHeadModel) with a Qwen 1.0 config.json.

    Qwen 1.0 has no GQA: each K/V head of a GQA model is repeated for the query heads it serves
    (what Qwen2's ``repeat_kv`` does at run time), which leaves the function unchanged.
    """
    from safetensors.torch import save_file

    from specialize.tokenization.qwen import TINY_VOCAB_PATH

    cfg = model.config
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    repeat = cfg.num_attention_heads // cfg.num_key_value_heads

    def as_mha(tensor):  # [groups * d, ...] -> [heads * d, ...], each group's head repeated in place
        grouped = tensor.reshape(cfg.num_key_value_heads, head_dim, *tensor.shape[1:])
        return grouped.repeat_interleave(repeat, dim=0).reshape(cfg.num_attention_heads * head_dim, *tensor.shape[1:])

    hf = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    qwen1 = {"transformer.wte.weight": hf["model.embed_tokens.weight"], "transformer.ln_f.weight": hf["model.norm.weight"],
             "lm_head.weight": hf["lm_head.weight"]}
    for i in range(cfg.num_hidden_layers):
        src, dst = f"model.layers.{i}.", f"transformer.h.{i}."
        for kind in ("weight", "bias"):
            q, k, v = (hf[f"{src}self_attn.{p}_proj.{kind}"] for p in ("q", "k", "v"))
            qwen1[f"{dst}attn.c_attn.{kind}"] = torch.cat([q, as_mha(k), as_mha(v)], dim=0)
        qwen1[f"{dst}attn.c_proj.weight"] = hf[f"{src}self_attn.o_proj.weight"]
        qwen1[f"{dst}ln_1.weight"] = hf[f"{src}input_layernorm.weight"]
        qwen1[f"{dst}ln_2.weight"] = hf[f"{src}post_attention_layernorm.weight"]
        qwen1[f"{dst}mlp.w2.weight"] = hf[f"{src}mlp.gate_proj.weight"]  # Qwen's w2 is the SiLU gate
        qwen1[f"{dst}mlp.w1.weight"] = hf[f"{src}mlp.up_proj.weight"]
        qwen1[f"{dst}mlp.c_proj.weight"] = hf[f"{src}mlp.down_proj.weight"]
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in qwen1.items()}, str(directory / "model.safetensors"))
    if old_keys:
        config = {"n_embd": cfg.hidden_size, "n_head": cfg.num_attention_heads, "n_layer": cfg.num_hidden_layers,
                  "ffn_hidden_size": 2 * cfg.intermediate_size, "padded_vocab_size": cfg.vocab_size,
                  "n_positions": cfg.max_position_embeddings, "seq_length": cfg.max_position_embeddings}
    else:
        config = {"hidden_size": cfg.hidden_size, "num_attention_heads": cfg.num_attention_heads,
                  "num_hidden_layers": cfg.num_hidden_layers, "intermediate_size": 2 * cfg.intermediate_size,
                  "vocab_size": cfg.vocab_size, "max_position_embeddings": cfg.max_position_embeddings,
                  "seq_length": cfg.max_position_embeddings}
    config.update({"architectures": ["QWenLMHeadModel"], "model_type": "qwen", "kv_channels": head_dim,
                   "rotary_emb_base": cfg.rope_parameters["rope_theta"] if getattr(cfg, "rope_parameters", None) else cfg.rope_theta,
                   "layer_norm_epsilon": cfg.rms_norm_eps, "rotary_pct": 1.0, "no_bias": True})
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    shutil.copyfile(TINY_VOCAB_PATH, directory / "qwen.tiktoken")
