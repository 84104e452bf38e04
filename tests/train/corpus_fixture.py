"""Write a small shard set in the exact format of `specialize corpus build` (shards + manifest.json)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from specialize.corpus.manifest import FORMAT, MANIFEST_NAME
from specialize.corpus.shards import ShardWriter, shard_name


def write_corpus(directory: Path, documents: list[np.ndarray], *, fingerprint: str, eod_id: int,
                 shards: int = 2, domain: str = "code") -> Path:
    """Each document gets a trailing EOD, as the corpus build writes them; documents split over shards,
    each shard written as the build does, in record batches (of 3 rows here, so readers meet several)."""
    directory.mkdir(parents=True, exist_ok=True)
    entries = []
    chunks = np.array_split(np.arange(len(documents)), shards)
    for index, chunk in enumerate(chunks):
        rows = [
            {"tokens": np.append(documents[i], eod_id).astype(np.uint32), "source": f"doc{i}", "domain": domain,
             "language": "python", "num_bytes": 4 * len(documents[i])}
            for i in chunk
        ]
        name = shard_name(index, shards)
        with ShardWriter(str(directory / name)) as writer:
            for start in range(0, len(rows), 3):
                writer.write(rows[start : start + 3])
        entries.append({"path": name, "rows": len(rows), "tokens": int(sum(len(r["tokens"]) for r in rows)),
                        "sha256": writer.sha256})
    manifest = {"format": FORMAT, "domain": domain, "tokenizer": {"name": "test", "fingerprint": fingerprint},
                "seq_length": 0, "shards": entries}
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest))
    return directory


def random_documents(count: int, vocab: int, seed: int, low: int = 5, high: int = 60) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, vocab, size=int(rng.integers(low, high))) for _ in range(count)]
