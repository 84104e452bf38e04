"""HF <-> megatron conversion, single process: logits equal transformers', round trips are bit-identical."""

from __future__ import annotations

import json

import pytest
import torch
from model_testing import TINY, hf_logits, sample_tokens, write_qwen1_checkpoint

from specialize.convert import hf_to_megatron, megatron_to_hf
from specialize.convert.hf_io import HFWeights

transformers = pytest.importorskip("transformers")


def megatron_logits(checkpoint, tokens):
    """Logits of a converted checkpoint, computed by megatron-core at TP=1/PP=1."""
    from specialize.model.build import build_gpt_model, transformer_config
    from specialize.model.checkpoint import load_model_checkpoint
    from specialize.model.parallel import destroy_parallel, initialize_parallel
    from specialize.model.source import model_preset

    initialize_parallel(1, 1)
    try:
        preset = model_preset(checkpoint)
        model = build_gpt_model(preset, transformer_config(preset), parallel_output=False)
        load_model_checkpoint(model, checkpoint)
        model.eval()
        positions = torch.arange(tokens.shape[1]).unsqueeze(0).expand_as(tokens)
        with torch.no_grad():
            return model(tokens, positions, None)
    finally:
        destroy_parallel()


def all_tensors(directory):
    weights = HFWeights(directory)
    return {name: weights.get(name) for name in weights.names()}


@pytest.mark.parametrize("fixture", ["hf_untied", "hf_tied", "hf_qwen3_untied", "hf_qwen3_tied"])
def test_import_matches_transformers_and_exports_bit_identically(fixture, request, tmp_path):
    hf_dir, hf_model = request.getfixturevalue(fixture)
    tokens = sample_tokens()
    hf_to_megatron(hf_dir, tmp_path / "megatron")

    logits = megatron_logits(tmp_path / "megatron", tokens)
    vocab = TINY["vocab_size"]
    assert logits.shape[-1] == 8576  # padded to a multiple of 128
    assert (logits[..., :vocab] - hf_logits(hf_model, tokens)).abs().max().item() <= 1e-4
    assert torch.all(logits[..., vocab:] == 0)  # padding rows of the LM head are zero

    megatron_to_hf(tmp_path / "megatron", tmp_path / "exported")
    original, exported = all_tensors(hf_dir), all_tensors(tmp_path / "exported")
    assert sorted(exported) == sorted(original)
    for name, tensor in original.items():
        assert exported[name].dtype == tensor.dtype and torch.equal(exported[name], tensor), name
    assert ("lm_head.weight" in exported) is fixture.endswith("_untied")

    config = json.loads((tmp_path / "exported" / "config.json").read_text())
    assert config["architectures"] == hf_model.config.architectures and config["vocab_size"] == vocab
    assert config.get("head_dim", 16) == getattr(hf_model.config, "head_dim", 16)
    assert type(transformers.AutoConfig.from_pretrained(tmp_path / "exported")) is type(hf_model.config)
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "exported").eval()
    assert torch.equal(hf_logits(reloaded, tokens), hf_logits(hf_model, tokens))
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "exported")
    from specialize.tokenization import load_tokenizer

    text = "def area(r):\n    return 3.14159 * r ** 2\n"
    assert tokenizer(text)["input_ids"] == load_tokenizer(None).encode(text)
    generation = json.loads((tmp_path / "exported" / "generation_config.json").read_text())
    assert generation["eos_token_id"] == load_tokenizer(None).eod_id


@pytest.mark.parametrize("old_keys", [False, True], ids=["new-config-keys", "old-config-keys"])
def test_qwen1_checkpoint_of_the_same_weights_imports_to_the_same_function(old_keys, hf_untied, tmp_path):
    _, hf_model = hf_untied  # GQA; written as Qwen 1.0 MHA with K/V heads repeated
    write_qwen1_checkpoint(hf_model, tmp_path / "qwen1", old_keys=old_keys)
    hf_to_megatron(tmp_path / "qwen1", tmp_path / "megatron")
    meta = json.loads((tmp_path / "megatron" / "specialize.json").read_text())
    assert meta["preset"]["family"] == "qwen" and meta["preset"]["ffn_hidden_size"] == TINY["intermediate_size"]
    assert meta["preset"]["num_query_groups"] == TINY["num_attention_heads"]
    assert (tmp_path / "megatron" / "tokenizer" / "qwen.tiktoken").is_file()
    tokens = sample_tokens()
    logits = megatron_logits(tmp_path / "megatron", tokens)
    assert (logits[..., : TINY["vocab_size"]] - hf_logits(hf_model, tokens)).abs().max().item() <= 1e-4


def test_converting_inside_a_running_job_leaves_its_parallel_state_alone(megatron_single, hf_tied, tmp_path):
    """A training job converts its --from on rank 0 with its own groups and seeds already set up."""
    from megatron.core import parallel_state
    from megatron.core.tensor_parallel import get_cuda_rng_tracker

    states_before = {name: state.clone() for name, state in get_cuda_rng_tracker().get_states().items()}
    hf_to_megatron(hf_tied[0], tmp_path / "megatron")  # runs in a spawned process group
    assert parallel_state.model_parallel_is_initialized()
    states_after = get_cuda_rng_tracker().get_states()
    assert all(torch.equal(states_after[name], state) for name, state in states_before.items())
    assert (tmp_path / "megatron" / "specialize.json").is_file()


def test_moved_checkpoint_still_finds_its_tokenizer(hf_tied, tmp_path):
    import shutil

    from specialize.model.checkpoint import checkpoint_tokenizer, read_checkpoint_meta
    from specialize.model.source import model_preset

    hf_to_megatron(hf_tied[0], tmp_path / "first")
    recorded = read_checkpoint_meta(tmp_path / "first")["tokenizer_source"]
    assert recorded == str((tmp_path / "first" / "tokenizer").resolve())
    shutil.move(tmp_path / "first", tmp_path / "moved")
    assert checkpoint_tokenizer(tmp_path / "moved").vocab_size == 8400
    assert model_preset(tmp_path / "moved").tokenizer == str(tmp_path / "moved" / "tokenizer")
