"""MinHash signatures over word shingles, fully vectorised with numpy, and LSH band keys.

Why hand-written rather than ``datasketch``: datasketch hashes one shingle at a time in Python (as does
datatrove's signature step), which is the bottleneck of every MinHash dedup we measured. Here no Python
code runs per word or per shingle:

1. the UTF-8 bytes of the text go through a lookup table (ASCII lower-casing, byte class); a word is
   a maximal run of ``[A-Za-z0-9_]`` or non-ASCII bytes, or of operator characters ``+-*/=<>^%&|!~``
   (signs change meaning in math and code); other punctuation and whitespace never matter;
2. every word gets a 64-bit polynomial hash from one prefix sum over the bytes
   (``H[end] - H[start]`` times the inverse power of the start, all mod 2**64), then a splitmix64 mix;
3. an n-word shingle hash is a polynomial combination of n shifted word-hash arrays, mixed again;
4. the signature is one-permutation MinHash (Li, Owen & Zhang, NIPS 2012) with optimal densification
   (Shrivastava, ICML 2017): each shingle hash is re-mixed with the seed once; its high 32 bits pick
   one of ``bands * rows`` bins and its low 32 bits are its value; a bin keeps its minimum value, and
   an empty bin (a document with fewer shingles than bins) takes the value of the first non-empty bin
   on a probe sequence fixed per bin and seed. Two documents agree on a bin with probability equal to
   their Jaccard similarity, exactly as with ``bands * rows`` independent permutations, at the cost of
   one hash per shingle instead of 112: the signature went from 44% of near dedup's time to 6%.

With the defaults (5-word shingles, 14 bands x 8 rows) two documents become LSH candidates with
probability 1 - (1 - J**8)**14, which is 0.5 at Jaccard J ~ 0.72 and > 0.95 at J = 0.85.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass

import numpy as np

_M64 = (1 << 64) - 1
_P = 0x100000001B3  # odd multiplier of the byte-level polynomial (the FNV-64 prime)
_P_INV = pow(_P, -1, 1 << 64)
_Q = 0x9E3779B97F4A7C15  # odd multiplier that combines word hashes into a shingle hash
_EMPTY_BIN = np.uint64(1 << 32)  # above every 32-bit bin value
_PROBES = 4096  # densification probes per bin: a bin of a 1-shingle document misses all with p ~ 1e-16


def _byte_tables() -> tuple[np.ndarray, np.ndarray]:
    lower = np.arange(256, dtype=np.uint64)
    lower[ord("A") : ord("Z") + 1] += 32
    word = np.zeros(256, dtype=np.int8)  # 0 separator, 1 word byte, 2 operator byte
    for lo, hi in (("0", "9"), ("A", "Z"), ("a", "z")):
        word[ord(lo) : ord(hi) + 1] = 1
    word[ord("_")] = 1
    word[0x80:] = 1  # every byte of a multi-byte UTF-8 character belongs to a word
    # Operators are tokens of their own: "9x - 28 = -91" and "9x + 28 = 91" are different problems,
    # "a < b" and "a > b" different code, so signs must not vanish with the punctuation.
    word[np.frombuffer(b"+-*/=<>^%&|!~", dtype=np.uint8)] = 2
    return (lower + 1).astype(np.uint16), word  # +1: a zero byte value would not change the polynomial


_BYTE_VALUE, _WORD_BYTE = _byte_tables()


class _Powers:
    """P**i and P**-i mod 2**64 for i < n, grown by doubling (shared by every document of a process).

    Thread-safe: Beam runs several bundles at once in one SDK process (Dataflow: a thread per bundle).
    The two tables are one immutable pair replaced in a single assignment under a lock, and readers
    take the pair once, so no thread can see a new ``pow`` with the old, shorter ``inv``.
    """

    def __init__(self) -> None:
        self._tables = (np.ones(1, dtype=np.uint64), np.ones(1, dtype=np.uint64))
        self._lock = threading.Lock()

    def tables(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(powers, inverse powers), each of length >= ``n``."""
        tables = self._tables
        if len(tables[0]) >= n:
            return tables
        with self._lock:
            tables = self._tables
            if len(tables[0]) < n:
                size = max(n, 2 * len(tables[0]), 1 << 16)
                tables = (_cumprod_from_one(_P, size), _cumprod_from_one(_P_INV, size))  # numpy integers wrap mod 2**64
                self._tables = tables
            return tables


def _cumprod_from_one(multiplier: int, size: int) -> np.ndarray:
    out = np.empty(size, dtype=np.uint64)
    out[0] = 1
    np.cumprod(np.full(size - 1, multiplier, dtype=np.uint64), out=out[1:])
    return out


_POWERS = _Powers()


def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, in place: spreads every input bit over the whole word."""
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return z


_TOKEN_BYTE = (~np.isin(np.arange(256), np.frombuffer(b" \t\n\r\x0b\x0c", dtype=np.uint8))).astype(np.int8)


def word_hashes(text: str) -> np.ndarray:
    """64-bit hashes of the lower-cased words of ``text``, in order (uint64 array)."""
    return _run_hashes(text, _WORD_BYTE)


def whitespace_token_hashes(text: str) -> np.ndarray:
    """64-bit hashes of the lower-cased whitespace-separated tokens of ``text`` (decontamination)."""
    return _run_hashes(text, _TOKEN_BYTE)


def _run_hashes(text: str, byte_class: np.ndarray) -> np.ndarray:
    """Hashes of the maximal runs of bytes of one non-zero class of ``byte_class`` (0 separates).

    Every step is one numpy pass over bytes or over the run boundaries, except the prefix sum: the only
    uint64 array per byte, filled, multiplied and summed in place (``np.take`` rather than fancy
    indexing, no int64 temporaries): 2x faster than the straightforward expressions."""
    data, prefix = _bytes_and_prefix(text)
    n = data.size
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    classes = np.zeros(n + 2, dtype=np.int8)  # a separator on either side
    np.take(byte_class, data, out=classes[1:-1])
    change = np.flatnonzero(classes[1:] != classes[:-1])  # run boundaries, as byte offsets
    opens = classes[change[:-1] + 1] != 0  # a boundary that opens a non-separator run
    starts, ends = change[:-1][opens], change[1:][opens]
    if starts.size == 0:
        return np.zeros(0, dtype=np.uint64)
    inverse_powers = _POWERS.tables(n + 1)[1]
    hashes = (prefix[ends] - prefix[starts]) * inverse_powers[starts]
    hashes += (ends - starts).astype(np.uint64)  # length in the hash: 'ab' and 'ab\0' never meet
    return _mix64(hashes)


class _LastText(threading.local):
    """The last text hashed on this thread, its bytes and their polynomial prefix sums: near dedup's
    words and decontamination's whitespace tokens are runs of the same bytes, and both stages see the
    same ``str`` object one after the other, so the second reuses the first's prefix (about half of
    the cost of each). Per thread, as Beam runs bundles on several threads of one process."""

    text: str | None = None
    data: np.ndarray | None = None
    prefix: np.ndarray | None = None


_LAST_TEXT = _LastText()
_REUSED_TEXT_BYTES = 1 << 20  # a longer text's prefix (8 bytes per byte: 8 MB at this size) is not kept after its call


def _bytes_and_prefix(text: str) -> tuple[np.ndarray, np.ndarray]:
    """(UTF-8 bytes, prefix sums of ``byte value * P**i``) of ``text``, from the last call when it was this text."""
    last = _LAST_TEXT
    if last.text is text:
        return last.data, last.prefix
    data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    n = data.size
    powers = _POWERS.tables(n + 1)[0]
    prefix = np.empty(n + 1, dtype=np.uint64)
    prefix[0] = 0
    terms = prefix[1:]
    terms[:] = np.take(_BYTE_VALUE, data)  # a uint16 gather then a widening copy: 4x faster than a uint64 gather
    terms *= powers[:n]
    np.cumsum(terms, out=terms)
    if n <= _REUSED_TEXT_BYTES:
        last.text, last.data, last.prefix = text, data, prefix
    else:
        last.text = last.data = last.prefix = None
    return data, prefix


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique`` by sorting: numpy 2's ``unique`` goes through a hash table and is ~10x slower on
    the few thousand hashes of a document (measured: 3,000 uint64 in 281 us against 24 us)."""
    ordered = np.sort(values)
    if ordered.size < 2:
        return ordered
    keep = np.empty(ordered.size, dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def shingle_hashes(text: str, ngram: int) -> np.ndarray:
    """Sorted unique 64-bit hashes of the ``ngram``-word shingles of ``text``.

    A text shorter than ``ngram`` words is one shingle of all its words (so short documents still
    dedup); a text without words has no shingles.
    """
    words = word_hashes(text)
    if words.size == 0:
        return words
    return sorted_unique(ngram_hashes(words, min(ngram, words.size)))


def ngram_hashes(tokens: np.ndarray, n: int) -> np.ndarray:
    """Mixed 64-bit hashes of every run of ``n`` consecutive token hashes (empty when fewer tokens)."""
    count = tokens.size - n + 1
    if count <= 0:
        return np.zeros(0, dtype=np.uint64)
    grams = tokens[:count].copy()
    for k in range(1, n):
        grams *= np.uint64(_Q)
        grams += tokens[k : k + count]
    return _mix64(grams)


def _seeded_u64(seed: int, label: str, count: int) -> np.ndarray:
    """``count`` uint64 values from BLAKE2b: stable across numpy versions, unlike RNG streams."""
    stream = b"".join(
        hashlib.blake2b(f"{label}:{seed}:{i}".encode(), digest_size=8).digest() for i in range(count)
    )
    return np.frombuffer(stream, dtype="<u8").astype(np.uint64)


@dataclass(frozen=True)
class MinHashConfig:
    """Shingle and LSH parameters; ``bands * rows`` is the number of signature values (bins)."""

    ngram: int = 5
    bands: int = 14
    rows: int = 8
    seed: int = 1

    def __post_init__(self) -> None:
        for name in ("ngram", "bands", "rows"):
            if getattr(self, name) < 1:
                raise ValueError(f"MinHash {name} must be >= 1, got {getattr(self, name)}")

    @property
    def num_perm(self) -> int:
        return self.bands * self.rows

    def threshold(self) -> float:
        """Jaccard at which two documents become candidates with probability ~0.5: (1/b)**(1/r)."""
        return (1.0 / self.bands) ** (1.0 / self.rows)


class MinHasher:
    """Signatures and band keys for one configuration (build once per worker, reuse; thread-safe:
    nothing is written after construction)."""

    def __init__(self, config: MinHashConfig = MinHashConfig()):
        self.config = config
        self._mixer = _seeded_u64(config.seed, "oph", 1)[0]
        # The densification probe sequence of every bin: bin ``i``'s ``t``-th probe is a hash of
        # (seed, i, t) scaled to a bin, by wrapping uint64 arithmetic (the same on every numpy).
        counter = np.arange(config.num_perm * _PROBES, dtype=np.uint64) + self._mixer
        probes = (_mix64(counter) >> np.uint64(32)) * np.uint64(config.num_perm) >> np.uint64(32)
        self._probes = probes.astype(np.int32).reshape(config.num_perm, _PROBES)

    def shingles(self, text: str) -> np.ndarray:
        return shingle_hashes(text, self.config.ngram)

    def signature_of_shingles(self, shingles: np.ndarray) -> np.ndarray | None:
        """uint32 signature of length ``num_perm`` (one value per bin); None when there are no shingles."""
        if shingles.size == 0:
            return None
        bins_count = np.uint64(self.config.num_perm)
        mixed = _mix64(shingles ^ self._mixer)
        bins = ((mixed >> np.uint64(32)) * bins_count >> np.uint64(32)).astype(np.intp)
        best = np.full(self.config.num_perm, _EMPTY_BIN, dtype=np.uint64)
        np.minimum.at(best, bins, mixed & np.uint64(0xFFFFFFFF))
        empty = np.flatnonzero(best == _EMPTY_BIN)
        if empty.size:
            best = self._densify(best, empty)
        return best.astype(np.uint32)

    def _densify(self, best: np.ndarray, empty: np.ndarray) -> np.ndarray:
        """Each empty bin takes the value of the first non-empty bin on its probe sequence, probing a
        few at a time (most bins find one in the first probes)."""
        filled, out = best != _EMPTY_BIN, best.copy()
        start, step = 0, 8
        while empty.size and start < _PROBES:
            probes = self._probes[empty, start : start + step]
            hits = filled[probes]
            found = hits.any(axis=1)
            first = probes[found, hits[found].argmax(axis=1)]
            out[empty[found]] = best[first]
            empty, start, step = empty[~found], start + step, step * 2
        if empty.size:  # every probe missed (p < 1e-16 per bin): the smallest value, still deterministic
            out[empty] = best[filled].min()
        return out

    def signature(self, text: str) -> np.ndarray | None:
        return self.signature_of_shingles(self.shingles(text))

    def band_keys(self, signature: np.ndarray) -> list[bytes]:
        """One key per band: the band index and its rows' bytes (exact, no second hashing)."""
        rows = signature.reshape(self.config.bands, self.config.rows)
        return [band.to_bytes(2, "little") + rows[band].tobytes() for band in range(self.config.bands)]


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard similarity of two sorted unique shingle-hash arrays."""
    if a.size == 0 and b.size == 0:
        return 1.0
    inter = np.intersect1d(a, b, assume_unique=True).size
    return inter / (a.size + b.size - inter)


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """The fraction of equal MinHash values: an unbiased Jaccard estimate (std ~ 0.05 at 112 perms)."""
    return float(np.mean(sig_a == sig_b))


#: Shingles kept per document to verify LSH candidates: 256 x 4 bytes, a bounded cost per document
#: however long it is (the verification shuffle carries these, never the text).
SKETCH_SIZE = 256


def bottom_k_sketch(shingles: np.ndarray, k: int = SKETCH_SIZE) -> np.ndarray:
    """The ``k`` smallest shingle hashes (top 32 bits, sorted unique uint32): a uniform sample of the
    shingle set that two documents draw alike, so it estimates their Jaccard (Broder's bottom-k)."""
    return sorted_unique((shingles[:k] >> np.uint64(32)).astype(np.uint32))


def sketch_jaccard(a: np.ndarray, b: np.ndarray, k: int = SKETCH_SIZE) -> float:
    """Jaccard of two documents from their bottom-k sketches: exact when both sketches hold the whole
    shingle set (fewer than ``k`` shingles each), else the bottom-k estimate (std ~ 0.03 at J = 0.7):
    the share of the union's ``k`` smallest hashes that both documents have."""
    if a.size < k and b.size < k:
        return jaccard(a, b)
    union = np.union1d(a, b)[:k]
    if union.size == 0:
        return 1.0
    cutoff = union[-1]
    both = np.intersect1d(a[a <= cutoff], b[b <= cutoff], assume_unique=True).size
    return both / union.size
