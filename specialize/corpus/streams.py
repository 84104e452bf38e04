"""Reading input files as streams: local or any Beam filesystem, plain or gzip/bzip2/xz/zstd.

Why not Beam's ``ReadFromText``/``ReadFromParquet``: every record here needs its file and line (the
document's ``source``), a broken compressed stream must keep the records before the break and report
the rest as lost (one rejection, not a failed bundle), and a file's records must stay in one place
to keep a record's id stable across runs. So each file is read by one DoFn call, but as a stream: a
5 GB ``.jsonl.zst`` costs one decompression buffer and one line at a time, never the file. The build
reshuffles the documents right after reading, so a large file does not keep its records on one
worker (Beam's own file sources reshuffle after ``ReadAllFiles`` for the same reason).

The compression is chosen by extension, like Beam's ``CompressionTypes.AUTO``.
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from collections.abc import Iterator
from typing import BinaryIO

from specialize.corpus.outputs import is_remote

#: file suffix -> compression name (the suffixes Beam's AUTO detection knows, plus .zstd).
COMPRESSIONS = {".gz": "gzip", ".bz2": "bzip2", ".xz": "xz", ".zst": "zstd", ".zstd": "zstd", ".deflate": "deflate"}
CHUNK_BYTES = 1 << 20


class BrokenStream(Exception):
    """A compressed stream is corrupt or truncated; everything before the break was delivered."""


def split_compression(path: str) -> tuple[str, str | None]:
    """``data/x.jsonl.zst`` -> (``data/x.jsonl``, ``"zstd"``); an uncompressed path -> (path, None)."""
    lower = path.lower()
    for suffix, name in COMPRESSIONS.items():
        if lower.endswith(suffix):
            return path[: -len(suffix)], name
    return path, None


def open_binary(path: str) -> BinaryIO:
    """The raw bytes of ``path`` (a local path or a URL Beam's filesystems open), not decompressed."""
    if is_remote(path):
        from apache_beam.io.filesystems import FileSystems

        return FileSystems.open(path, compression_type="uncompressed")
    return open(path, "rb")


def _decompressor(compression: str):
    if compression == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if compression == "deflate":
        return zlib.decompressobj()
    if compression == "bzip2":
        return bz2.BZ2Decompressor()
    if compression == "xz":
        return lzma.LZMADecompressor()
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj()
    raise ValueError(f"unknown compression {compression!r}")


_ERRORS = (zlib.error, OSError, EOFError, lzma.LZMAError, ValueError)


def decompressed_chunks(handle: BinaryIO, compression: str | None, chunk_bytes: int | None = None) -> Iterator[bytes]:
    """The file's bytes after decompression, chunk by chunk (``CHUNK_BYTES`` read at a time by
    default); concatenated members (``cat a.gz b.gz``) are read through. Raises ``BrokenStream`` after
    the last good chunk when the stream is corrupt or ends early."""
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    if compression is None:
        while chunk := handle.read(chunk_bytes):
            yield chunk
        return
    try:
        import zstandard

        errors = (*_ERRORS, zstandard.ZstdError)
    except ImportError:
        errors = _ERRORS
    decompressor = _decompressor(compression)
    finished = False
    try:
        while compressed := handle.read(chunk_bytes):
            while compressed:
                if finished:  # a new member after a complete one
                    decompressor, finished = _decompressor(compression), False
                out = decompressor.decompress(compressed)
                if out:
                    yield out
                if getattr(decompressor, "eof", False):
                    finished = True
                    compressed = getattr(decompressor, "unused_data", b"")
                else:
                    compressed = b""
        if not finished:
            raise BrokenStream(f"{compression} stream is truncated")
    except errors as err:
        raise BrokenStream(f"{compression} stream is corrupt ({err})") from None


def lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Lines (without ``\\n``) of a chunk stream. When the stream breaks, the line it cut is dropped
    and ``BrokenStream`` propagates."""
    tail = b""
    for chunk in chunks:
        parts = (tail + chunk).split(b"\n")
        tail = parts.pop()
        yield from parts
    if tail:
        yield tail


def read_limited(path: str, compression: str | None, limit: int) -> tuple[bytes, bool]:
    """(the decompressed bytes, whether they exceed ``limit``): stops reading once past the limit."""
    parts, total = [], 0
    with open_binary(path) as handle:
        for chunk in decompressed_chunks(handle, compression):
            parts.append(chunk)
            total += len(chunk)
            if total > limit:
                return b"".join(parts), True
    return b"".join(parts), False
