"""An n-gram index of benchmark items and the document check against it.

Text on both sides is normalised the same way: GSM8K's calculator annotations (``<<48/2=24>>``)
removed, ASCII lower-cased, split on whitespace. Every run of ``n`` tokens (default 10, as in the
Qwen and GPT-3 reports' overlap checks) is hashed to 64 bits with the same vectorised hashing as
MinHash; the index is one sorted array of hashes with the item each came from, so a document check is
a ``searchsorted`` over its n-gram hashes: no Python loop per n-gram, and the index of all of
HumanEval + MBPP + GSM8K + MATH is a few MB, small enough to ship to every worker with the DoFn.

``min_shared`` (default 1: any shared n-gram, the conservative rule of the GPT-3 and Qwen reports) is
the number of distinct n-grams a document must share with one item. Generic enumerations in a prompt
("0, 1, 2, 3, 4, 5, 6, 7, 8, 9,") can match unrelated files once; a copied problem shares dozens.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from specialize.decontam.benchmarks import BenchmarkItem
from specialize.dedup.minhash import ngram_hashes, sorted_unique, whitespace_token_hashes

_CALCULATOR = re.compile(r"<<[^<>\n]{0,200}>>")


def normalize_for_overlap(text: str) -> str:
    return _CALCULATOR.sub("", text) if "<<" in text else text


def text_gram_hashes(text: str, n: int) -> np.ndarray:
    """The n-gram hashes of ``text`` in order, repeats included (empty when it has fewer than ``n`` tokens)."""
    return ngram_hashes(whitespace_token_hashes(normalize_for_overlap(text)), n)


def text_ngrams(text: str, n: int) -> np.ndarray:
    """Unique n-gram hashes of ``text`` (empty when it has fewer than ``n`` tokens)."""
    return sorted_unique(text_gram_hashes(text, n))


def _presence_table(hashes: np.ndarray) -> tuple[np.ndarray, np.uint64]:
    """A table indexed by a hash's low bits that is True wherever an indexed hash lands: at least 16
    slots per hash (so about 1 in 16 absent n-grams passes it), 64 KB to 4 MB."""
    bits = int(np.clip(np.ceil(np.log2(max(hashes.size, 1) * 16)), 16, 22))
    mask = np.uint64((1 << bits) - 1)
    table = np.zeros(1 << bits, dtype=bool)
    table[hashes & mask] = True
    return table, mask


@dataclass(frozen=True)
class Contamination:
    """Which benchmark items a document overlaps: {benchmark: sorted item ids}."""

    matches: dict[str, list[str]]

    @property
    def benchmarks(self) -> list[str]:
        return sorted(self.matches)


class NgramIndex:
    """Sorted n-gram hashes of all items of all benchmarks; picklable for Beam side inputs."""

    def __init__(self, items: list[BenchmarkItem], n: int = 10, min_shared: int = 1):
        if n < 1 or min_shared < 1:
            raise ValueError(f"decontamination n-gram size and min shared n-grams must be >= 1, got {n}, {min_shared}")
        self.n, self.min_shared = n, min_shared
        self.items = [(item.benchmark, item.item_id) for item in items]
        hashes, owners, self.too_short = [], [], {}
        for position, item in enumerate(items):
            grams = text_ngrams(item.text, n)
            if grams.size == 0:  # shorter than n tokens: it cannot be matched at this n
                self.too_short[item.benchmark] = self.too_short.get(item.benchmark, 0) + 1
                continue
            hashes.append(grams)
            owners.append(np.full(grams.size, position, dtype=np.int32))
        all_hashes = np.concatenate(hashes) if hashes else np.zeros(0, dtype=np.uint64)
        all_owners = np.concatenate(owners) if owners else np.zeros(0, dtype=np.int32)
        order = np.argsort(all_hashes, kind="stable")
        self.hashes, self.owners = all_hashes[order], all_owners[order]
        self._presence: tuple[np.ndarray, np.uint64] | None = None  # built where it is used (``_presence_of``)

    def __getstate__(self) -> dict:
        """Pickled without the presence table: the index travels inside the pipeline graph (Dataflow
        caps a job at 10 MB), and the table, up to 4 MB, is rebuilt from the hashes in milliseconds."""
        return {**self.__dict__, "_presence": None}

    def _presence_of(self) -> tuple[np.ndarray, np.uint64]:
        if self._presence is None:  # two threads may both build it: the same table, one assignment wins
            self._presence = _presence_table(self.hashes)
        return self._presence

    def summary(self) -> dict[str, dict[str, int]]:
        """{benchmark: {items, too_short}} for the manifest."""
        out: dict[str, dict[str, int]] = {}
        for benchmark, _ in self.items:
            out.setdefault(benchmark, {"items": 0, "too_short": self.too_short.get(benchmark, 0)})["items"] += 1
        return out

    def check(self, text: str) -> Contamination | None:
        """The items ``text`` shares at least one n-gram with, or None when it is clean."""
        if self.hashes.size == 0:
            return None
        grams = text_gram_hashes(text, self.n)
        # Almost no n-gram of a document is in the index: the presence table rules most out with one
        # lookup each, and only the rest are deduplicated and binary-searched.
        may_hold, mask = self._presence_of()
        grams = grams[np.take(may_hold, grams & mask)]
        if grams.size == 0:
            return None
        grams = sorted_unique(grams)
        left = np.searchsorted(self.hashes, grams, side="left")
        hit = left < self.hashes.size
        hit[hit] = self.hashes[left[hit]] == grams[hit]
        if not hit.any():
            return None
        right = np.searchsorted(self.hashes, grams[hit], side="right")
        owners, shared = np.unique(np.concatenate([self.owners[a:b] for a, b in zip(left[hit], right)]), return_counts=True)
        owners = owners[shared >= self.min_shared]  # distinct n-grams this document shares with each item
        if owners.size == 0:
            return None
        matches: dict[str, set[str]] = {}
        for position in owners.tolist():
            benchmark, item_id = self.items[position]
            matches.setdefault(benchmark, set()).add(item_id)
        return Contamination({b: sorted(ids) for b, ids in sorted(matches.items())})
