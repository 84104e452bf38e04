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
