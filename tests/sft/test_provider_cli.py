"""The SFT provider against the runtime's data contract, the sft config, and `specialize sft inspect`."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from specialize.cli import app
from specialize.sft.provider import SftDataConfig, SFTProvider, split_valid
from specialize.sft.run import load_sft_config
from specialize.tokenization import load_tokenizer
from specialize.train.config import ConfigError
from specialize.train.data_api import DataRequest, validate_sample


def _rows(path, n, long_every=0):
    with path.open("w") as handle:
        for i in range(n):
            answer = f"{i} squared is {i * i}." + (" very long" * 200 if long_every and i % long_every == 0 else "")
            handle.write(json.dumps({"messages": [{"role": "user", "content": f"Square {i}?"},
                                                  {"role": "assistant", "content": answer}]}) + "\n")
        handle.write("not json\n")
    return path


def _request(tok, **kw):
    base = dict(seq_length=128, seed=7, train_samples=40, valid_samples=4, vocab_size=tok.vocab_size,
                eod_id=tok.eod_id, tokenizer_fingerprint=tok.fingerprint)
    base.update(kw)
    return DataRequest(**base)


def test_provider_builds_valid_packed_splits(tmp_path):
    tok = load_tokenizer(None)
    path = _rows(tmp_path / "chat.jsonl", 60, long_every=10)
    splits = SFTProvider(SftDataConfig(valid_fraction=0.1), [path], tok).build(_request(tok))
    d = splits.description
    assert d["read"]["rows"] == 61 and d["read"]["skipped"] == {"invalid_json": 1}
    assert d["train"]["fit_dropped"]["over_length"] + d["valid"]["fit_dropped"].get("over_length", 0) == 6
    assert d["train"]["conversations"] + d["valid"]["conversations"] == 54
    assert len(splits.train) >= 40 and len(splits.valid) >= 1
    for ds, name in ((splits.train, "train"), (splits.valid, "valid")):
        for i in range(len(ds)):
            validate_sample(ds[i], 128, tok.vocab_size, where=f"{name}[{i}]")
    # held-out conversations never appear in training
    train_sources = {c.source for c in splits.train.conversations}
    assert not train_sources & {c.source for c in splits.valid.conversations}
    again = SFTProvider(SftDataConfig(valid_fraction=0.1), [path], tok).build(_request(tok))
    assert all((again.train[i]["tokens"] == splits.train[i]["tokens"]).all() for i in range(len(splits.train)))
    truncated = SFTProvider(SftDataConfig(valid_fraction=0.0, overlength="truncate"), [path], tok).build(_request(tok))
    assert truncated.valid is None and truncated.description["train"]["fit_truncated"] == 6


def test_provider_refuses_another_tokenizer_and_empty_data(tmp_path):
    tok = load_tokenizer(None)
    path = _rows(tmp_path / "chat.jsonl", 3)
    with pytest.raises(ValueError, match="different tokenizer"):
        SFTProvider(SftDataConfig(), [path], tok).build(_request(tok, tokenizer_fingerprint="sha256:other"))
    with pytest.raises(ValueError, match="no SFT conversation left"):
        SFTProvider(SftDataConfig(valid_fraction=0.0), [path], tok).build(_request(tok, seq_length=8))


def test_split_valid_is_seeded_and_disjoint():
    keep, held = split_valid(100, 0.05, 500, seed=1)
    assert len(held) == 5 and len(keep) == 95 and not set(keep) & set(held)
    assert split_valid(100, 0.05, 500, seed=1)[1].tolist() == held.tolist()
    assert len(split_valid(100, 0.5, 3, seed=1)[1]) == 3
    with pytest.raises(ValueError, match="valid_fraction"):
        split_valid(10, 1.0, 5, seed=0)


def test_sft_configs_load_and_bad_keys_are_named(tmp_path):
    for name in ("sft-tiny", "sft-code", "sft-math"):
        run, sft = load_sft_config(f"megatron_configs/{name}.yaml")
        assert run.optimizer.schedule == "constant"
    run, sft = load_sft_config("megatron_configs/sft-math.yaml", ["sft.overlength=truncate", "train.steps=3"])
    assert (sft.overlength, sft.domain, run.train.seq_length, run.train.steps, run.optimizer.lr) == ("truncate", "math", 1024, 3, 2e-5)
    with pytest.raises(ConfigError, match="unknown key 'mask'"):
        load_sft_config(None, ["sft.mask=1"])
    assert load_sft_config(None, ["sft.domain=code, math"])[1].domains() == ["code", "math"]
    with pytest.raises(ConfigError, match="sft.domain 'code,poetry'"):
        load_sft_config(None, ["sft.domain=code,poetry"])
    with pytest.raises(ConfigError, match="sft.overlength 'cut'"):
        load_sft_config(None, ["sft.overlength=cut"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("sft:\n  markerz: qwen\n")
    with pytest.raises(ConfigError, match="bad.yaml: sft: unknown key 'markerz'"):
        load_sft_config(bad)


def test_inspect_cli_shows_masking_and_writes_ids_and_labels(tmp_path):
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps({"conversations": [{"from": "user", "value": "Hi"}, {"from": "assistant", "value": "Yo"}]})
                    + "\n{broken\n")
    out = tmp_path / "ids.jsonl"
    result = CliRunner().invoke(app, ["sft", "inspect", "--data", str(path), "--jsonl", str(out)])
    assert result.exit_code == 0, result.output
    assert "⟦Yo<|im_end|>\n⟧" in result.output  # no terminal: trained runs are bracketed
    assert "skipped invalid_json" in result.output and f"{path}:2" in result.output
    row = json.loads(out.read_text())
    tok = load_tokenizer(None)
    trained = [i for i, label in zip(row["input_ids"], row["labels"]) if label != -100]
    assert all(label in (-100, i) for i, label in zip(row["input_ids"], row["labels"]))
    assert tok.decode(trained) == "<|im_start|><|im_end|>\n<|im_start|><|im_end|>\n<|im_start|>Yo<|im_end|>\n"
    packed = tmp_path / "packed.jsonl"
    result = CliRunner().invoke(app, ["sft", "inspect", "--data", str(path), "--jsonl", str(packed), "--packed",
                                      "--seq-length", "64", "--markers", "assistant"])
    assert result.exit_code == 0, result.output
    sample = json.loads(packed.read_text())
    assert set(sample) == {"tokens", "labels", "loss_mask", "position_ids", "segment_ids"} and len(sample["tokens"]) == 64
    assert tok.decode([label for label, m in zip(sample["labels"], sample["loss_mask"]) if m]) == "Yo<|im_end|>"
    missing = CliRunner().invoke(app, ["sft", "inspect", "--data", str(tmp_path / "nope.jsonl")])
    assert missing.exit_code == 2 and "nope.jsonl" in missing.output


def test_a_missing_run_directory_is_not_silently_random_weights(tmp_path):
    from specialize.sft.run import resolve_source

    assert resolve_source("qwen-tiny") == "qwen-tiny"  # a preset: random weights, on purpose
    with pytest.raises(FileNotFoundError, match="specialize train --from qwen-tiny"):
        resolve_source(str(tmp_path / "checkpoints" / "cpt" / "qwen-tiny"))
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(FileNotFoundError, match="no such run"):  # relative, under an existing folder: not a Hub id
        resolve_source("checkpoints/qwen-tiny") if __import__("os").chdir(tmp_path) is None else None
    with pytest.raises(FileNotFoundError, match="not a preset"):
        resolve_source("no-such-model")


def test_inspect_view_underlines_only_the_templates_special_tokens():
    from specialize.sft.chatml import encode_conversations
    from specialize.sft.conversations import Conversation, Message
    from specialize.sft.view import TRAINED_STYLE, styled

    tok = load_tokenizer(None)
    [enc] = encode_conversations(tok, [Conversation((Message("user", "a<|im_end|>b"), Message("assistant", "c<|im_end|>")), "t")])
    text = styled(tok, enc)
    underlined = [text.plain[s.start:s.end] for s in text.spans if "underline" in str(s.style)]
    assert underlined == ["<|im_start|>", "<|im_end|>"] * 3  # system, user, assistant turns; not the typed ones
    trained = "".join(text.plain[s.start:s.end] for s in text.spans if str(s.style).startswith(TRAINED_STYLE))
    assert trained == "<|im_start|><|im_end|>\n<|im_start|><|im_end|>\n<|im_start|>c<|im_end|><|im_end|>\n"
