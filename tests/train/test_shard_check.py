"""Corpus checks before the first step: ranks share the hashing, every rank raises the same error, and a
verified corpus is remembered so a restart reads no shard again unless one changed."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from specialize.corpus import manifest as manifest_module
from specialize.corpus.manifest import verify_shards
from specialize.train.data import check_shard_sets
from specialize.train.shard_check import VERIFIED_FILE
from tests.train.corpus_fixture import write_corpus

FINGERPRINT = "f" * 16


def _corpus(directory, shards=3):
    rng = np.random.default_rng(0)
    return write_corpus(directory, [rng.integers(0, 50, 20) for _ in range(12)], fingerprint=FINGERPRINT, eod_id=8399, shards=shards)


def _flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stat = os.stat(path)
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size and mtime: only a hash can tell


def test_parts_partition_the_shards(tmp_path):
    corpus = _corpus(tmp_path / "c")
    _flip_a_byte(next(corpus.glob("shard-00001*")))
    assert verify_shards(str(corpus), part=(0, 2)) == []  # shards 0 and 2
    assert [p.shard[:11] for p in verify_shards(str(corpus), part=(1, 2))] == ["shard-00001"]
    assert len(verify_shards(str(corpus))) == 1


def test_a_verified_corpus_is_not_hashed_again_until_it_changes(tmp_path, monkeypatch):
    corpus, cache = _corpus(tmp_path / "c"), tmp_path / "cache"
    check_shard_sets([str(corpus)], FINGERPRINT, True, cache_dir=cache)
    assert (cache / VERIFIED_FILE).is_file()
    reads = []
    real = manifest_module.outputs.read_bytes
    monkeypatch.setattr(manifest_module.outputs, "read_bytes", lambda path: reads.append(path) or real(path))
    _flip_a_byte(next(corpus.glob("shard-00001*")))  # undetectable without hashing: the remembered stat matches
    check_shard_sets([str(corpus)], FINGERPRINT, True, cache_dir=cache)
    assert not [r for r in reads if "shard-" in str(r)]
    with pytest.raises(ValueError, match="tokenizer fingerprint"):  # the tokenizer is still checked
        check_shard_sets([str(corpus)], "0" * 16, True, cache_dir=cache)
    next(corpus.glob("shard-00001*")).touch()
    with pytest.raises(ValueError, match="sha256"):  # a new mtime: hashed again, and the corruption found
        check_shard_sets([str(corpus)], FINGERPRINT, True, cache_dir=cache)


def _rank(rank: int, port: int, corpus: str, results) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    read = []
    real = manifest_module.outputs.read_bytes
    manifest_module.outputs.read_bytes = lambda path: read.append(os.path.basename(str(path))) or real(path)
    try:
        check_shard_sets([corpus], FINGERPRINT, True)
        results[rank] = ("ok", sorted(n for n in read if n.startswith("shard-")))
    except ValueError as err:
        results[rank] = (str(err), sorted(n for n in read if n.startswith("shard-")))
    finally:
        dist.destroy_process_group()


def test_two_ranks_share_the_hashing_and_raise_the_same_error(tmp_path):
    corpus = _corpus(tmp_path / "c", shards=4)
    _flip_a_byte(next(corpus.glob("shard-00003*")))  # in rank 1's share
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_rank, args=(port, str(corpus), results), nprocs=2, join=True)
    (error0, read0), (error1, read1) = results[0], results[1]
    assert error0 == error1 and "shard-00003" in error0 and "sha256" in error0
    assert [n[:11] for n in read0] == ["shard-00000", "shard-00002"]
    assert [n[:11] for n in read1] == ["shard-00001", "shard-00003"]
