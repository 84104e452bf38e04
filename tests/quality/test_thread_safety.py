"""The hashers and DoFns under concurrent bundles: Dataflow runs many bundle threads per SDK process
(FnApiRunner's default runs one, so nothing showed locally). Module-level state must be safe to share."""

from __future__ import annotations

import threading

import numpy as np

from specialize.dedup import minhash
from specialize.dedup.minhash import MinHashConfig, MinHasher


def _texts(count: int) -> list[str]:
    # Sizes straddle the power tables' growth points (64 Ki and up), so threads grow them concurrently.
    rng = np.random.default_rng(7)
    words = [f"w{i}" for i in range(500)]
    return [" ".join(rng.choice(words, size=int(size))) for size in np.geomspace(2_000, 120_000, count)]


def test_minhash_from_many_threads_equals_one_thread(monkeypatch):
    texts = _texts(16)
    config = MinHashConfig()
    expected = [MinHasher(config).signature(t).tobytes() for t in texts]
    shared = MinHasher(config)  # one instance too: its scratch space must not be shared between calls
    failures: list[str] = []
    for trial in range(40):
        monkeypatch.setattr(minhash, "_POWERS", minhash._Powers())  # fresh tables: growth races with reads
        barrier = threading.Barrier(8)
        results: dict[int, bytes] = {}

        def work(index: int) -> None:
            barrier.wait()
            try:
                for j in range(index, len(texts), 8):
                    results[j] = shared.signature(texts[j]).tobytes()
            except Exception as error:  # noqa: BLE001 - the test reports every failure
                failures.append(f"trial {trial}: {type(error).__name__}: {error}")

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not failures, failures[:3]
        assert [results[j] for j in range(len(texts))] == expected, f"trial {trial}: signatures differ"
