"""The shard format: Arrow IPC files, one row per document, memory-mappable.

One place for the schema. Training reads ``tokens`` zero-copy through ``pyarrow.memory_map``:
the list column's flat ``values`` buffer is the concatenated token stream of the shard.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pyarrow as pa

TOKEN_DTYPE = np.uint32

SHARD_SCHEMA = pa.schema(
    [
        pa.field("tokens", pa.large_list(pa.uint32()), nullable=False),  # document ids + trailing EOD
        pa.field("source", pa.string(), nullable=False),
        pa.field("domain", pa.string(), nullable=False),
        pa.field("language", pa.string(), nullable=False),
        pa.field("num_bytes", pa.int64(), nullable=False),  # UTF-8 bytes of the text
        pa.field("quality", pa.float32(), nullable=True),  # model quality score, when one ran
    ],
    metadata={b"format": b"specialize-shard-v1"},
)

SHARD_SUFFIX = ".arrow"


def shard_name(index: int, count: int, build_id: str | None = None) -> str:
    """``shard-00003-of-00016-<build id>.arrow``: the build id keeps a rebuild's files apart from the
    current build's until its manifest replaces the old one."""
    suffix = f"-{build_id}" if build_id else ""
    return f"shard-{index:05d}-of-{count:05d}{suffix}{SHARD_SUFFIX}"


def rows_to_table(rows: list[dict]) -> pa.Table:
    """Rows (dicts with numpy token arrays) -> table, building the token list without Python ints."""
    lengths = np.fromiter((len(r["tokens"]) for r in rows), dtype=np.int64, count=len(rows))
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.concatenate([r["tokens"] for r in rows]).astype(TOKEN_DTYPE, copy=False) if rows else np.zeros(0, TOKEN_DTYPE)
    tokens = pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(flat, type=pa.uint32()))
    return pa.Table.from_arrays(
        [
            tokens,
            pa.array([r["source"] for r in rows], pa.string()),
            pa.array([r["domain"] for r in rows], pa.string()),
            pa.array([r["language"] for r in rows], pa.string()),
            pa.array([r["num_bytes"] for r in rows], pa.int64()),
            pa.array([r.get("quality") for r in rows], pa.float32()),
        ],
        schema=SHARD_SCHEMA,
    )


class _HashingSink:
    """A write-only stream that hashes and counts what passes through it to ``target``."""

    def __init__(self, target) -> None:
        self._target, self.digest, self.size = target, hashlib.sha256(), 0
        self.closed = False

    def write(self, data) -> int:
        view = memoryview(data)
        self.digest.update(view)
        self.size += view.nbytes
        self._target.write(view)
        return view.nbytes

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class ShardWriter:
    """One shard written batch by batch (an Arrow IPC file of several record batches), so writing it
    holds one batch in memory, not the shard. Atomic: the shard appears complete or not at all.
    ``sha256`` and ``file_bytes`` are known once the block ends."""

    def __init__(self, path: str) -> None:
        self.path, self.sha256, self.file_bytes = path, "", 0

    def __enter__(self) -> "ShardWriter":
        from specialize.corpus import outputs

        self._opened = outputs.open_atomic(self.path)
        self._sink = _HashingSink(self._opened.__enter__())
        self._writer = pa.ipc.new_file(self._sink, SHARD_SCHEMA)
        return self

    def write(self, rows: list[dict]) -> None:
        if rows:
            self._writer.write_table(rows_to_table(rows))

    def __exit__(self, kind, error, trace) -> bool:
        try:
            if kind is None:
                self._writer.close()
                self.sha256, self.file_bytes = self._sink.digest.hexdigest(), self._sink.size
        finally:
            self._opened.__exit__(kind, error, trace)
        return False


def table_to_ipc_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)  # one record batch: a memory-mapped shard reads as one zero-copy chunk
    return sink.getvalue()


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def open_shard(path: str | Path) -> pa.Table:
    """Memory-map a shard; the returned table's buffers point into the page cache, not the heap."""
    source = pa.memory_map(str(path), "r")
    table = pa.ipc.open_file(source).read_all()
    if table.schema.metadata is None or table.schema.metadata.get(b"format") != b"specialize-shard-v1":
        raise ValueError(f"{path}: not a specialize shard (schema metadata 'format' missing or different)")
    return table


def shard_token_chunks(table: pa.Table) -> list[tuple[np.ndarray, np.ndarray]]:
    """(flat uint32 token ids, int64 document offsets) of each record batch of a shard, zero-copy:
    a shard is written batch by batch, and joining its batches would copy it into memory."""
    chunks = []
    for column in table.column("tokens").chunks:
        if len(column) == 0:
            continue
        offsets = column.offsets.to_numpy()
        values = column.values.to_numpy(zero_copy_only=True)
        chunks.append((values[offsets[0] : offsets[-1]], offsets - offsets[0]))
    return chunks
