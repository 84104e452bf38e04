"""`--from` a Hugging Face Qwen2 directory: converted once into RUN/converted, then trained from."""

from __future__ import annotations

import json

import pytest

from tests.model.model_testing import make_hf_qwen2
from tests.train.helpers import pattern_corpus, run_cli, tiny_overrides


@pytest.mark.slow
def test_train_from_hugging_face_checkpoint(tmp_path):
    hf = tmp_path / "hf"
    make_hf_qwen2(hf, tied=False)
    corpus = pattern_corpus(tmp_path / "corpus", tokenizer_source=hf)
    run = tmp_path / "run"
    run_cli(tiny_overrides(run, corpus, 3, **{"model.source": hf}))
    converted = json.loads((run / "converted" / "specialize.json").read_text())
    assert converted["preset"]["vocab_size"] == 8500 and converted["preset"]["num_layers"] == 2
    saved = json.loads((run / "checkpoints" / "step-000003" / "model" / "specialize.json").read_text())
    assert {**saved["preset"], "tokenizer": None} == {**converted["preset"], "tokenizer": None}
    assert saved["preset"]["tokenizer"] == str(run / "checkpoints" / "step-000003" / "model" / "tokenizer")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3] and all(r["loss"] == r["loss"] for r in records)


@pytest.mark.slow
def test_train_a_qwen3_checkpoint_then_continue_from_the_run_directory(tmp_path):
    """Qwen3 (q/k norms, head_dim != hidden/heads, tied) trains; a run directory is a ``--from`` like any other:
    the second run starts from the first one's newest checkpoint (its validation loss at step 0 is the
    first run's at its last step, on the same held-out samples)."""
    from tests.model.model_testing import make_hf_model

    hf = tmp_path / "hf"
    make_hf_model(hf, "qwen3", tied=True)
    corpus = pattern_corpus(tmp_path / "corpus", tokenizer_source=hf)
    first, second = tmp_path / "first", tmp_path / "second"
    evaluation = {"log.eval_every": 4, "log.eval_iters": 1}
    run_cli(tiny_overrides(first, corpus, 4, **{"model.source": hf}, **evaluation))
    run_cli(tiny_overrides(second, corpus, 3, **{"model.source": first}, **evaluation))
    saved = json.loads((first / "checkpoints" / "step-000004" / "model" / "specialize.json").read_text())
    assert saved["preset"]["family"] == "qwen3" and saved["preset"]["kv_channels"] == 32
    valid = lambda run: {r["step"]: r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
                         if r["kind"] == "valid"}
    assert valid(second)[0] == pytest.approx(valid(first)[4], rel=1e-6)
    assert not (second / "converted").exists()  # a specialize checkpoint is loaded as it is
