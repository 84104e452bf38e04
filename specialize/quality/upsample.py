"""Selective up-sampling: per-input weights, applied after dedup and decontamination.

Weight ``w`` for an input means: each of its documents appears ``floor(w)`` times, plus once more
with probability ``w - floor(w)``; ``w < 1`` keeps a document with probability ``w``. The coin is a
hash of the document's source, so a rebuild picks the same documents. Copies get the source
``<source>#copy<k>`` (k >= 1), so shard assignment spreads them and no two rows share a source.
It runs after deduplication on purpose: dedup would otherwise remove the copies again.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace
from typing import TypeVar

from specialize.corpus.document import Document, DocumentKey

D = TypeVar("D", Document, DocumentKey)


def parse_weights(pairs: list[str]) -> dict[str, float]:
    """``["path/a=2", "b=0.5"]`` -> {"path/a": 2.0, "b": 0.5}, with errors naming the bad pair."""
    weights = {}
    for pair in pairs:
        name, sep, value = pair.rpartition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = -1.0
        if not sep or not name or not math.isfinite(weight) or weight < 0:
            raise ValueError(f"--source-weight {pair!r}: expected INPUT=WEIGHT with WEIGHT a number >= 0")
        weights[name] = weight
    return weights


def _coin(source: str, seed: int) -> float:
    digest = hashlib.blake2b(f"{seed}:{source}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


def copies_of(document: D, weight: float, seed: int = 0) -> list[D]:
    """The document (or its key) repeated per ``weight`` (the original first); empty when it is sampled out."""
    count = int(math.floor(weight)) + (1 if _coin(document.source, seed) < weight - math.floor(weight) else 0)
    return [document if k == 0 else replace(document, source=f"{document.source}#copy{k}", meta=dict(document.meta))
            for k in range(count)]
