"""Shard datasets through megatron's GPTDataset: windows, boundaries, determinism, blend, manifest checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from specialize.train.config import DataConfig
from specialize.train.data import ShardBlendProvider, ShardCorpus
from specialize.train.data_api import DataRequest, validate_sample
from tests.train.corpus_fixture import random_documents, write_corpus

EOD = 99
VOCAB = 100
FP = "fp-test"


@pytest.fixture(scope="module", autouse=True)
def process_group():
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("gloo", init_method="tcp://127.0.0.1:0", rank=0, world_size=1)
    yield


def _request(tmp_path, **kw):
    base = dict(seq_length=16, seed=7, train_samples=40, valid_samples=4, vocab_size=VOCAB, eod_id=EOD,
                tokenizer_fingerprint=FP, cache_dir=str(tmp_path / "cache"))
    base.update(kw)
    return DataRequest(**base)


def test_shard_corpus_reads_documents_in_manifest_order(tmp_path):
    docs = random_documents(7, EOD, seed=1)
    write_corpus(tmp_path / "c", docs, fingerprint=FP, eod_id=EOD, shards=3)
    corpus = ShardCorpus(tmp_path / "c")
    assert len(corpus) == 7
    for i, doc in enumerate(docs):
        np.testing.assert_array_equal(corpus.get(i), np.append(doc, EOD))
        np.testing.assert_array_equal(corpus.get(i, offset=2, length=3), doc[2:5])
    assert list(corpus.sequence_lengths) == [len(d) + 1 for d in docs]


def test_samples_are_windows_of_the_concatenated_stream(tmp_path):
    docs = random_documents(50, EOD, seed=2)
    write_corpus(tmp_path / "c", docs, fingerprint=FP, eod_id=EOD)
    provider = ShardBlendProvider(DataConfig(paths=[str(tmp_path / "c")], split="90,10,0", reset_attention_mask=True))
    splits = provider.build(_request(tmp_path))
    whole = {tuple(np.append(d, EOD)) for d in docs}
    for i in range(5):
        sample = splits.train[i]
        validate_sample(sample, 16, VOCAB, where=f"train[{i}]")
        np.testing.assert_array_equal(sample["labels"][:-1], sample["tokens"][1:])
        window = np.append(sample["tokens"], sample["labels"][-1])
        cuts = np.flatnonzero(window == EOD) + 1
        pieces = np.split(window, cuts)
        # documents are concatenated whole (in shuffled order): every piece between two EODs is a
        # complete document, the first piece ends one and the last piece begins one
        if len(pieces) == 1:  # inside one document
            assert any(window.tobytes() in np.array(d).tobytes() for d in whole)
            continue
        for piece in pieces[1:-1]:
            assert tuple(piece) in whole
        assert any(tuple(d[len(d) - len(pieces[0]):]) == tuple(pieces[0]) for d in whole)
        assert any(tuple(d[: len(pieces[-1])]) == tuple(pieces[-1]) for d in whole)
        for e in np.flatnonzero(sample["tokens"][:-1] == EOD):  # a new segment starts right after every EOD
            assert sample["segment_ids"][e + 1] == sample["segment_ids"][e] + 1
    assert splits.valid is not None and len(splits.valid) >= 4


def test_same_seed_same_order_other_seed_other_order(tmp_path):
    write_corpus(tmp_path / "c", random_documents(50, EOD, seed=3), fingerprint=FP, eod_id=EOD)
    provider = ShardBlendProvider(DataConfig(paths=[str(tmp_path / "c")]))
    first = provider.build(_request(tmp_path, cache_dir=str(tmp_path / "a"))).train
    again = provider.build(_request(tmp_path, cache_dir=str(tmp_path / "b"))).train
    other = provider.build(_request(tmp_path, seed=8, cache_dir=str(tmp_path / "d"))).train
    order = lambda ds: np.stack([ds[i]["tokens"] for i in range(10)])
    np.testing.assert_array_equal(order(first), order(again))
    assert not np.array_equal(order(first), order(other))


def test_blend_follows_weights(tmp_path):
    a = write_corpus(tmp_path / "a", [np.full(40, 1)] * 60, fingerprint=FP, eod_id=EOD)
    b = write_corpus(tmp_path / "b", [np.full(40, 2)] * 60, fingerprint=FP, eod_id=EOD)
    provider = ShardBlendProvider(DataConfig(paths=[f"{a}:3", f"{b}:1"], split="100,0,0"))
    train = provider.build(_request(tmp_path, train_samples=200, valid_samples=0)).train
    firsts = np.array([train[i]["tokens"][0] for i in range(200)])
    share = np.mean(firsts == 1)
    assert 0.70 <= share <= 0.80, share


def test_wrong_tokenizer_is_a_clear_error(tmp_path):
    write_corpus(tmp_path / "c", random_documents(20, EOD, seed=4), fingerprint="other", eod_id=EOD)
    with pytest.raises(ValueError, match="fingerprint"):
        ShardBlendProvider(DataConfig(paths=[str(tmp_path / "c")])).build(_request(tmp_path))


def test_corrupt_shard_is_a_clear_error(tmp_path):
    corpus = write_corpus(tmp_path / "c", random_documents(20, EOD, seed=5), fingerprint=FP, eod_id=EOD)
    shard = sorted(corpus.glob("shard-*"))[0]
    data = bytearray(shard.read_bytes())
    data[-100] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        ShardBlendProvider(DataConfig(paths=[str(corpus)])).build(_request(tmp_path))


def test_missing_default_corpus_says_how_to_build_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="specialize corpus build --domain code"):
        ShardBlendProvider(DataConfig()).build(_request(tmp_path))
