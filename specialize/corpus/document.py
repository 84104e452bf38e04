"""The element every corpus stage passes along, and the record of a dropped one."""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field


@dataclass
class Document:
    """One training document (a source file, a JSONL record, a Parquet row).

    ``source`` identifies it uniquely and stably (``path`` or ``path#record``): shard assignment,
    dedup survivors and ordering all key on it, so the same input always yields the same shards.
    """

    text: str
    source: str
    domain: str
    language: str
    input_name: str = ""  # which --input it came from (for per-source weights and reporting)
    meta: dict = field(default_factory=dict)  # stage annotations, e.g. quality score
    file: str = ""  # the input file it was read from: the build reads it again to write the kept text
    record: int = 0  # its line (JSONL) or row (Parquet) in that file; 0 for a whole-file document
    offset: int | None = None  # byte offset of its line in a plain (uncompressed) JSONL file: the second read seeks there

    @property
    def num_bytes(self) -> int:
        return len(self.text.encode("utf-8"))

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def key(self) -> "DocumentKey":
        return DocumentKey(self.source, self.source, self.file, self.record, self.domain, self.language,
                           self.input_name, self.num_bytes, dict(self.meta), self.offset)


@dataclass(slots=True)
class DocumentKey:
    """A document without its text: what the build's corpus-wide stages (dedup, decontamination,
    up-sampling) decide on, and what crosses their shuffles.

    Keeping text out of every shuffle is what bounds a build's memory: on a local runner a shuffle is
    held in memory whole, so a shuffle of texts costs the corpus, a shuffle of keys ~200 bytes per
    document. The kept text is read again from ``file`` when its shard is written (``record`` finds it).
    ``origin`` is the source of the document as read; an up-sampled copy has a source of its own.
    """

    source: str
    origin: str
    file: str
    record: int
    domain: str
    language: str
    input_name: str
    num_bytes: int
    meta: dict = field(default_factory=dict)  # small annotations only (quality score, language score, repo)
    offset: int | None = None  # where ``record`` starts in ``file`` when the file can be seeked (plain JSONL)

    def __reduce__(self):
        """A compact pickle (what Beam's coders fall back to): field values in order, no field names,
        ``origin`` and ``file`` left out when they repeat ``source`` (every file of a source tree), an
        empty ``meta`` as None. 262 -> ~150 bytes on the wire for a source file, and ~650 -> ~350
        bytes once decoded, for each of the several copies a local runner holds per document."""
        same_origin, same_file = self.origin == self.source, self.file == self.source
        return _key_from_fields, (self.source, None if same_origin else self.origin, None if same_file else self.file,
                                  self.record, self.domain, self.language, self.input_name, self.num_bytes,
                                  self.meta or None, self.offset)


def shared_string(value: str | None) -> str | None:
    """One string object for a field with a handful of values (domain, language, input, kind) when
    records are unpickled by the thousand; None stays None."""
    return None if value is None else sys.intern(value)


def _key_from_fields(source, origin, file, record, domain, language, input_name, num_bytes, meta, offset) -> DocumentKey:
    return DocumentKey(source, source if origin is None else origin, source if file is None else file, record,
                       shared_string(domain), shared_string(language), shared_string(input_name), num_bytes,
                       {} if meta is None else meta, offset)


@dataclass(frozen=True)
class Rejection:
    """A document or file that a stage dropped, with the reason (a short snake_case tag)."""

    stage: str
    reason: str
    source: str
    num_bytes: int
    detail: str = ""
    text_sample: str = ""  # first characters of the dropped text, for `corpus inspect`
