"""Bad checkpoints fail before any conversion work, with an error naming the file and the tensor."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from specialize.convert import hf_to_megatron
from specialize.convert.hf_io import SAFETENSORS_INDEX, CheckpointError, HFWeights
from specialize.model.source import download, local_hf_model, resolve


@pytest.fixture
def broken(hf_untied, tmp_path):
    """A private copy of the tiny untied checkpoint to damage."""
    directory = tmp_path / "hf"
    shutil.copytree(hf_untied[0], directory)
    return directory


def shard_of(directory, name):
    index = json.loads((directory / SAFETENSORS_INDEX).read_text())
    return directory / index["weight_map"][name], index


def test_missing_tensor(broken, tmp_path):
    name = "model.layers.1.mlp.up_proj.weight"
    shard, index = shard_of(broken, name)
    tensors = load_file(shard)
    del tensors[name]
    save_file(tensors, str(shard))
    del index["weight_map"][name]
    (broken / SAFETENSORS_INDEX).write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=f"{broken}: tensor {name} is missing"):
        hf_to_megatron(broken, tmp_path / "out")


def test_tensor_listed_in_index_but_absent_from_its_shard(broken):
    name = "model.norm.weight"
    shard, _ = shard_of(broken, name)
    tensors = load_file(shard)
    del tensors[name]
    save_file(tensors, str(shard))
    with pytest.raises(CheckpointError, match=f"{shard.name}: tensor {name} listed in"):
        HFWeights(broken)


def test_wrong_shape(broken, tmp_path):
    name = "model.layers.0.self_attn.k_proj.weight"
    shard, _ = shard_of(broken, name)
    tensors = load_file(shard)
    tensors[name] = torch.zeros(64, 64)  # MHA-sized, but the config says 2 KV groups: 32 rows
    save_file(tensors, str(shard))
    with pytest.raises(CheckpointError, match=rf"{shard.name}: tensor {name} has shape \[64, 64\], expected \[32, 64\]"):
        hf_to_megatron(broken, tmp_path / "out")


def test_unexpected_tensor_means_wrong_architecture(broken, tmp_path):
    shard, _ = shard_of(broken, "model.norm.weight")
    tensors = load_file(shard)
    tensors["model.layers.0.self_attn.q_norm.weight"] = torch.ones(16)  # a Qwen3 weight
    save_file(tensors, str(shard))
    with pytest.raises(CheckpointError, match="unexpected tensor model.layers.0.self_attn.q_norm.weight"):
        hf_to_megatron(broken, tmp_path / "out")


def test_unknown_architecture(broken, tmp_path):
    config = json.loads((broken / "config.json").read_text())
    config.update(architectures=["MistralForCausalLM"], model_type="mistral")
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"config.json: unsupported architecture \['MistralForCausalLM'\]"):
        hf_to_megatron(broken, tmp_path / "out")


def test_truncated_safetensors(broken, tmp_path):
    shard, _ = shard_of(broken, "model.embed_tokens.weight")
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=f"{shard}: not a readable safetensors file.*truncated"):
        hf_to_megatron(broken, tmp_path / "out")


class Payload:
    """Unpickling this would run code; weights_only loading must refuse it."""

    def __reduce__(self):
        return (print, ("pickle executed",))


def test_pickle_with_code_is_refused(tmp_path):
    torch.save({"model.embed_tokens.weight": torch.zeros(2), "evil": Payload()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pytorch_model.bin: cannot load as a weights-only PyTorch file"):
        HFWeights(tmp_path)


def test_resolve_local_directory_and_unknown_name(hf_untied, tmp_path):
    assert local_hf_model(hf_untied[0]).hf_directory == hf_untied[0]
    with pytest.raises(FileNotFoundError, match="not a preset or Hugging Face repo id"):
        resolve(tmp_path / "nowhere")


def test_resolve_known_name_offline_says_what_to_download(tmp_path):
    with pytest.raises(RuntimeError, match=r"huggingface-cli download Qwen/Qwen2\.5-7B --local-dir DIR.*--from DIR"):
        download(resolve("qwen2.5-7b"), cache_dir=tmp_path, offline=True)
    with pytest.raises(RuntimeError, match="huggingface-cli download Qwen/Qwen-14B"):
        download(resolve("Qwen/Qwen-14B"), cache_dir=tmp_path, offline=True)
