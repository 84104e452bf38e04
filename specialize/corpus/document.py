"""The element every corpus stage passes along, and the record of a dropped one."""

from __future__ import annotations

import hashlib
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

    @property
    def num_bytes(self) -> int:
        return len(self.text.encode("utf-8"))

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Rejection:
    """A document or file that a stage dropped, with the reason (a short snake_case tag)."""

    stage: str
    reason: str
    source: str
    num_bytes: int
    detail: str = ""
    text_sample: str = ""  # first characters of the dropped text, for `corpus inspect`
