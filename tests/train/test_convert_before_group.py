"""`train --from HF` imports the checkpoint before any process group exists: the launcher's rank 0
converts, the other ranks wait on the file system (no collective pending under NCCL's timeout)."""

from __future__ import annotations

import json
import threading
import time

import pytest

from specialize.model.checkpoint import META_FILE
from specialize.train.starting_point import CONVERSION_FAILED, convert_before_process_group, needs_conversion
from tests.model.model_testing import make_hf_qwen2


def test_which_sources_need_an_import(tmp_path):
    from specialize.model.presets import get_preset

    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({
        "architectures": ["Qwen2ForCausalLM"], "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
        "intermediate_size": 176, "vocab_size": 8448, "max_position_embeddings": 512}))
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / META_FILE).write_text(json.dumps({"format": "specialize-megatron", "format_version": 1,
                                                    "preset": get_preset("qwen-tiny").to_dict(), "tokenizer_source": None}))
    assert needs_conversion(str(hf)) and needs_conversion("qwen-14b")  # a directory, a Hub preset
    assert not needs_conversion(str(checkpoint)) and not needs_conversion("qwen-tiny")
    with pytest.raises(FileNotFoundError, match="is not a model"):  # before any process group or rank waits
        needs_conversion(str(tmp_path))


def _waiting_rank(output, source, outcome):
    try:
        convert_before_process_group(source, output, 1, 1, rank=1, wait_s=300, poll_s=0.1)
        outcome["rank1"] = "returned"
    except Exception as err:  # noqa: BLE001 - the test reads what rank 1 raised
        outcome["rank1"] = err


def test_rank_0_converts_while_the_others_wait_on_the_directory(tmp_path):
    hf, output = tmp_path / "hf", tmp_path / "run"
    make_hf_qwen2(hf, tied=False)
    outcome: dict = {}
    waiter = threading.Thread(target=_waiting_rank, args=(output, str(hf), outcome))
    waiter.start()
    time.sleep(0.5)
    assert waiter.is_alive()  # rank 1 waits: nothing converted yet
    convert_before_process_group(str(hf), output, 1, 1, rank=0)
    waiter.join(timeout=60)
    assert outcome["rank1"] == "returned"
    meta = json.loads((output / "converted" / META_FILE).read_text())
    assert meta["preset"]["num_layers"] == 2
    started = time.monotonic()
    convert_before_process_group(str(hf), output, 1, 1, rank=0)  # a restart: already imported, nothing to do
    assert time.monotonic() - started < 1.0


def test_a_failed_conversion_stops_every_rank_with_its_message(tmp_path):
    hf, output = tmp_path / "hf", tmp_path / "run"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({  # a Qwen2 config without any weights: the converter fails
        "architectures": ["Qwen2ForCausalLM"], "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
        "intermediate_size": 176, "vocab_size": 8448, "max_position_embeddings": 512}))
    outcome: dict = {}
    waiter = threading.Thread(target=_waiting_rank, args=(output, str(hf), outcome))
    waiter.start()
    with pytest.raises(RuntimeError, match="conversion to .*converted failed") as raised:
        convert_before_process_group(str(hf), output, 1, 1, rank=0)
    waiter.join(timeout=60)
    assert isinstance(outcome["rank1"], RuntimeError) and str(outcome["rank1"]) == str(raised.value)
    assert (output / CONVERSION_FAILED).is_file()
