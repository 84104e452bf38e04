"""Packing: positions restart and segments change at every conversation, the over-length policy,
determinism, and every packed sample honours the runtime's data contract."""

from __future__ import annotations

import numpy as np
import pytest

from specialize.sft.chatml import EncodedConversation, MaskOptions, encode_conversations
from specialize.sft.conversations import Conversation, Message
from specialize.sft.packing import PackedConversations, build_sample, first_fit, fit_to_length
from specialize.tokenization import load_tokenizer
from specialize.train.data_api import validate_sample


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(None)


def fake(n: int, source: str, first_target: int = 1) -> EncodedConversation:
    ids = np.arange(10, 10 + n, dtype=np.int64)
    targets = np.zeros(n, dtype=bool)
    targets[first_target:] = True
    return EncodedConversation(ids, targets, np.zeros(n, np.int8), np.zeros(n, np.int16), source)


def test_build_sample_layout():
    a, b = fake(4, "a"), fake(3, "b", first_target=2)
    s = build_sample([a, b], 10, eod_id=7)
    assert s["tokens"].tolist() == [10, 11, 12, 13, 10, 11, 12, 7, 7, 7]
    assert s["labels"].tolist() == [11, 12, 13, 7, 11, 12, 7, 7, 7, 7]
    assert s["loss_mask"].tolist() == [1, 1, 1, 0, 0, 1, 0, 0, 0, 0]
    assert s["position_ids"].tolist() == [0, 1, 2, 3, 0, 1, 2, 0, 1, 2]
    assert s["segment_ids"].tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    validate_sample(s, 10, vocab_size=100)
    full = build_sample([fake(5, "c")], 5, eod_id=7)  # exactly full: one span, no padding segment
    assert full["segment_ids"].tolist() == [0] * 5 and full["loss_mask"].tolist() == [1, 1, 1, 1, 0]


def test_overlength_drop_and_truncate():
    convs = [fake(5, "short"), fake(12, "long"), fake(12, "late", first_target=9)]
    kept, report = fit_to_length(convs, 8, "drop")
    assert [c.source for c in kept] == ["short"]
    assert report.dropped == {"over_length": 2} and report.truncated == 0
    assert report.examples["over_length"][0] == "long: 12 tokens > seq_length 8"
    kept, report = fit_to_length(convs, 8, "truncate")
    assert [(c.source, len(c)) for c in kept] == [("short", 5), ("long", 8)]
    assert report.truncated == 1 and report.dropped == {"no_target_after_truncation": 1}
    assert kept[1].ids.tolist() == list(range(10, 18))
    with pytest.raises(ValueError, match="overlength='cut'"):
        fit_to_length(convs, 8, "cut")


def test_first_fit_fills_earlier_bins():
    assert first_fit([5, 4, 3, 2, 1], [0, 1, 2, 3, 4], 6) == [[0, 4], [1, 3], [2]]
    assert first_fit([6, 6], [1, 0], 6) == [[1], [0]]
    with pytest.raises(ValueError, match="apply fit_to_length"):
        first_fit([7], [0], 6)


def test_packed_dataset_is_deterministic_covers_every_conversation_and_honours_the_contract(tok):
    conversations = [Conversation((Message("user", f"What is {i} + {i}?"), Message("assistant", f"{2 * i}.")), f"t:{i}")
                     for i in range(40)]
    encoded = encode_conversations(tok, conversations, MaskOptions())
    ds = PackedConversations(encoded, 96, tok.eod_id, seed=3, min_samples=30)
    again = PackedConversations(encoded, 96, tok.eod_id, seed=3, min_samples=30)
    other = PackedConversations(encoded, 96, tok.eod_id, seed=4, min_samples=30)
    assert len(ds) >= 30 and ds.epochs >= 2
    assert ds.bins == again.bins and ds.bins != other.bins
    assert sorted(i for b in ds.bins for i in b) == sorted(list(range(40)) * ds.epochs)
    for index in range(len(ds)):
        sample = ds[index]
        validate_sample(sample, 96, tok.vocab_size, where=f"sample {index}")
        seg = sample["segment_ids"]
        pos = sample["position_ids"]
        starts = np.flatnonzero(np.diff(seg, prepend=-1))
        assert (pos[starts] == 0).all()  # positions restart at every boundary
        # every conversation starts with <|im_start|>, and no trained label crosses a boundary
        for start, end in zip(starts, list(starts[1:]) + [96]):
            if sample["tokens"][start] == tok.im_start_id:
                assert sample["loss_mask"][end - 1] == 0
        assert np.array_equal(ds[index]["tokens"], again[index]["tokens"])
    assert 0.5 < ds.fill <= 1.0
