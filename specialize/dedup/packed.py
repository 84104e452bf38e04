"""Dedup signals packed many documents to a blob, and the duplicate searches that run on them in one place.

Why: a local Beam runner (FnApiRunner) holds every shuffle in memory, and its grouping buffers decode
each element into Python objects. Near dedup's 14 band keys per document, each a ``(bytes, str)``
pair with its own dict entry and list, cost about 20 KB of RSS per document once the allocator's
fragmentation is counted: three quarters of a local build's memory growth. Packed, the same signals
are arrays in a few large byte strings (``pack``): 8 bytes per band, the bottom-k sketch at 4 bytes
per value, and the document's ``source`` once. The search then runs over all of them in one call with
numpy sorts instead of a shuffle per band (datatrove does the same on sorted signature files).

The decisions are the element-wise stages' (``beam_jobs/dedup.py``), which distributed runners keep:
the survivor of a duplicate set is its smallest ``source``; near-duplicate candidates are the
documents sharing a band, linked to the bucket's smallest member, verified on their sketches and
joined by union-find. One difference: a band is compared by a 64-bit hash of its rows instead of the
rows' 32 bytes; a false candidate needs a 2**-64 collision, and verification still checks it.
"""

from __future__ import annotations

import os
import pickle
import uuid
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from specialize.dedup.components import components_union_find
from specialize.dedup.minhash import SKETCH_SIZE, sketch_jaccard

_Q = np.uint64(0x9E3779B97F4A7C15)


def band_hashes(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """uint32 signatures ``[n, bands * rows]`` -> one uint64 hash per band ``[n, bands]``."""
    grouped = signatures.reshape(len(signatures), bands, rows).astype(np.uint64)
    hashes = np.zeros((len(signatures), bands), dtype=np.uint64)
    for row in range(rows):
        hashes *= _Q
        hashes += grouped[:, :, row] + np.uint64(1)
    hashes ^= hashes >> np.uint64(31)  # spread the last rows over the high bits
    hashes *= np.uint64(0xBF58476D1CE4E5B9)
    hashes ^= hashes >> np.uint64(29)
    return hashes


@dataclass
class Batch:
    """Signals of many documents: ``sources[i]`` owns row ``i`` of every array in ``arrays``; a ragged
    array (one sketch per document) is ``values`` with per-document ``ends`` (``ragged``)."""

    sources: list[str]
    arrays: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.sources)


def pack(sources: list[str], **arrays: np.ndarray) -> bytes:
    """One blob: the sources as one UTF-8 string with their ends, then the arrays' raw buffers."""
    encoded = [source.encode("utf-8") for source in sources]
    ends = np.cumsum([len(e) for e in encoded], dtype=np.int64)
    return pickle.dumps((b"".join(encoded), ends, arrays), protocol=5)


def spill(blob: bytes, directory: str, suffix: str = ".signals") -> str:
    """Write a blob to a new file of ``directory`` (atomically: a retried bundle writes another); its path."""
    path = os.path.join(directory, f"{uuid.uuid4().hex}{suffix}")
    temporary = path + ".tmp"
    with open(temporary, "wb") as handle:
        handle.write(blob)
    os.replace(temporary, path)
    return path


def _blob(item: bytes | str) -> bytes:
    """A blob as it travelled: itself, or the path ``spill`` wrote it to."""
    if isinstance(item, bytes):
        return item
    with open(item, "rb") as handle:
        return handle.read()


def unpack(blob: bytes | str) -> Batch:
    text, ends, arrays = pickle.loads(_blob(blob))
    starts = np.concatenate(([0], ends[:-1])) if len(ends) else ends
    return Batch([text[s:e].decode("utf-8") for s, e in zip(starts.tolist(), ends.tolist())], arrays)


def ragged(values: list[np.ndarray], dtype) -> tuple[np.ndarray, np.ndarray]:
    """Variable-length rows -> (concatenated values, end of each row)."""
    ends = np.cumsum([len(v) for v in values], dtype=np.int64)
    return (np.concatenate(values).astype(dtype, copy=False) if values else np.zeros(0, dtype)), ends


class _Corpus:
    """The batches side by side: documents numbered by their ``source`` order (rank 0 is the smallest),
    so "the smallest member" is an integer minimum. A source seen twice counts once (its first row).

    Only the ``columns`` asked for are kept in memory (the band hashes: 8 bytes per band); a ragged
    array such as the sketches is read back, batch by batch, for the ranks that need it (``rows_of``),
    so the sketches of documents without a candidate pair are never held together."""

    def __init__(self, batches: Iterable[bytes | str], columns: tuple[str, ...]):
        self._items = list(batches)
        sources: list[str] = []
        kept: dict[str, list[np.ndarray]] = {name: [] for name in columns}
        starts = [0]
        for item in self._items:
            batch = unpack(item)
            sources.extend(batch.sources)
            for name in columns:
                kept[name].append(batch.arrays[name])
            starts.append(starts[-1] + len(batch))
        first_row: dict[str, int] = {}
        for row, source in enumerate(sources):
            first_row.setdefault(source, row)
        del sources
        self.sources = sorted(first_row)
        self.rows = np.fromiter((first_row[s] for s in self.sources), dtype=np.int64, count=len(self.sources))
        del first_row
        self._starts = np.asarray(starts, dtype=np.int64)
        self._columns = {name: np.concatenate(parts)[self.rows] if parts else np.zeros(0) for name, parts in kept.items()}

    def column(self, name: str) -> np.ndarray:
        """A per-document array, rows in rank order."""
        return self._columns[name]

    def rows_of(self, values: str, ends: str, ranks: np.ndarray) -> dict[int, np.ndarray]:
        """Rank -> its row of a ragged array (``values`` cut at ``ends``), for ``ranks`` only."""
        wanted = np.unique(ranks)
        rows = self.rows[wanted]
        batch_of = np.searchsorted(self._starts, rows, side="right") - 1
        found: dict[int, np.ndarray] = {}
        for batch_index in np.unique(batch_of).tolist():
            batch = unpack(self._items[batch_index])
            batch_ends = batch.arrays[ends]
            for rank, row in zip(wanted[batch_of == batch_index].tolist(), rows[batch_of == batch_index].tolist()):
                local = row - int(self._starts[batch_index])
                start = int(batch_ends[local - 1]) if local else 0
                found[rank] = batch.arrays[values][start:int(batch_ends[local])].copy()  # not a view of the whole batch
        return found


def _groups_to_smallest(*keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ranks ``0..n-1`` with one key each (a key may span several columns) -> edges (member, smallest
    rank of its key's group) for every member of a group of two or more that is not that smallest."""
    ranks = np.arange(len(keys[0]), dtype=np.int64)
    order = np.lexsort((ranks, *reversed(keys)))  # by key, then rank: a group's first entry is its smallest member
    opens = np.zeros(len(order), dtype=bool)
    opens[:1] = True
    for column in keys:
        ordered = column[order]
        opens[1:] |= ordered[1:] != ordered[:-1]
    group_first = order[np.flatnonzero(opens)]
    centre = group_first[np.cumsum(opens) - 1]
    members = ~opens
    return order[members], centre[members]


def exact_duplicates(batches: Iterable[bytes | str]) -> Iterator[tuple[str, str]]:
    """Batches of (source, 16-byte ``hash``) -> (duplicate, survivor): the survivor of a hash is its
    smallest source, as ``_exact_losers`` decides per group."""
    corpus = _Corpus(batches, ("hash",))
    if not corpus.sources:
        return
    digests = corpus.column("hash")  # uint64 [n, 2]: the 16-byte digest as two words
    members, centres = _groups_to_smallest(digests[:, 0], digests[:, 1])
    for member, centre in zip(members.tolist(), centres.tolist()):
        yield corpus.sources[member], corpus.sources[centre]


@dataclass
class NearSearch:
    """What ``near_duplicates`` found: leaf edges (member, component's smallest source) and the stage's counts."""

    leaves: list[tuple[str, str]]
    candidate_pairs: int
    rejected_by_jaccard: int
    clusters: int
    clustered_documents: int


def near_duplicates(batches: Iterable[bytes | str], verify_threshold: float | None, sketch_size: int = SKETCH_SIZE) -> NearSearch:
    """Batches of (source, ``bands`` uint64 [n, b], ``sketch`` values with ``sketch_ends``) -> clusters.

    Candidates: per band, each document sharing the band's hash with a smaller one links to the
    smallest (a star per bucket, as ``_bucket_edges``); distinct over bands. Each candidate pair is
    verified on the two sketches (``sketch_jaccard``) unless ``verify_threshold`` is None; the verified
    pairs are joined by union-find into components centred on their smallest source.
    """
    corpus = _Corpus(batches, ("bands",))
    n = len(corpus.sources)
    if n == 0:
        return NearSearch([], 0, 0, 0, 0)
    bands = corpus.column("bands")
    codes = []
    for band in range(bands.shape[1]):
        members, centres = _groups_to_smallest(bands[:, band])
        codes.append(members * n + centres)
    edges = np.unique(np.concatenate(codes)) if codes else np.zeros(0, dtype=np.int64)
    members, centres = edges // n, edges % n
    rejected = 0
    if verify_threshold is not None and len(edges):
        sketches = corpus.rows_of("sketch", "sketch_ends", np.concatenate((members, centres)))
        keep = np.array([sketch_jaccard(sketches[m], sketches[c], sketch_size) >= verify_threshold
                         for m, c in zip(members.tolist(), centres.tolist())], dtype=bool)
        rejected = int((~keep).sum())
        members, centres = members[keep], centres[keep]
    roots = components_union_find(zip(members.tolist(), centres.tolist()))  # ranks: the root is the smallest source
    leaves = [(corpus.sources[node], corpus.sources[root]) for node, root in roots.items() if node != root]
    return NearSearch(sorted(leaves), len(edges), rejected, len(set(roots.values())), len(roots))
