"""Finding input files and turning each into documents, without Beam.

Every way a file can be bad ends in a ``Rejection`` with a reason tag, never an exception, so one
corrupt file costs exactly itself. ``--strict`` turns the first rejection into an error instead.
Paths may be local or on any filesystem Beam knows (gs://, s3://...).
"""

from __future__ import annotations

import json
import logging
import os
import string
from dataclasses import dataclass
from typing import Iterator

from specialize.corpus.document import Document, Rejection, shared_string
from specialize.corpus.normalize import NormalizationError, decode_and_normalize
from specialize.corpus.outputs import is_remote
from specialize.corpus.profile import DomainProfile
from specialize.corpus.streams import BrokenStream, decompressed_chunks, lines, open_binary, read_limited, split_compression

logger = logging.getLogger(__name__)

READ_STAGE = "read"
BINARY_SNIFF_BYTES = 8192


class StrictModeError(RuntimeError):
    """Raised instead of skipping bad input when the user asked for ``--strict``."""


def strict_error(rejection: Rejection) -> StrictModeError:
    """The error ``--strict`` raises for the first thing that would have been skipped."""
    return StrictModeError(f"{rejection.source}: {rejection.reason}: {rejection.detail} (--strict)")


@dataclass(frozen=True, slots=True)
class InputFile:
    """One file to read, found at launch time (so shard counts and ordering are fixed up front)."""

    path: str
    size: int  # bytes on disk (compressed, for a compressed file)
    kind: str  # "source" (one document), "jsonl", "parquet"
    input_name: str  # the --input it came from
    language: str | None = None  # known for source files from the extension
    compression: str | None = None  # gzip, bzip2, xz, zstd, deflate (from the extension), None: plain

    def __reduce__(self):
        """Field values only (no names): a shard plan carries one per file of the corpus (211 -> ~110
        bytes for a source file)."""
        return _input_file, (self.path, self.size, self.kind, self.input_name, self.language, self.compression)

    def fields(self) -> dict:
        """The fields as a flat dict (for the listing's JSON; ``vars`` needs a ``__dict__``)."""
        return {name: getattr(self, name) for name in self.__slots__}


def _input_file(path, size, kind, input_name, language, compression) -> InputFile:
    return InputFile(path, size, shared_string(kind), shared_string(input_name), shared_string(language),
                     shared_string(compression))


def file_kind(path: str) -> str:
    """The kind of a file by its name without the compression suffix (``x.jsonl.zst`` is JSONL)."""
    base = split_compression(path)[0].lower()
    compressed = base != path.lower()
    # A plain .json is a source file (code domain: JSON is a language); a compressed one is a dump.
    if base.endswith((".jsonl", ".ndjson")) or (compressed and base.endswith(".json")):
        return "jsonl"
    if base.endswith(".parquet"):
        return "parquet"
    return "source"


def discover_inputs(
    inputs: list[str], profile: DomainProfile
) -> tuple[list[InputFile], list[Rejection], dict[str, list[str]]]:
    """List every file under the inputs, sorted; returns (files, rejections, pruned dirs by reason).

    Files whose extension marks them binary or gives no language are rejected here without reading.
    A path that does not exist is an error: that is a typo, not bad data.
    """
    files: list[InputFile] = []
    rejections: list[Rejection] = []
    pruned: dict[str, list[str]] = {}
    for given in inputs:
        for path, size in _list_files(given, profile, pruned):
            found = classify_file(path, size, given, profile)
            (files if isinstance(found, InputFile) else rejections).append(found)
    files.sort(key=lambda f: f.path)
    return files, rejections, pruned


def classify_file(path: str, size: int, given: str, profile: DomainProfile) -> InputFile | Rejection:
    """A listed file -> what to read it as, or why it is skipped without reading (by its name)."""
    kind = file_kind(path)
    base, compression = split_compression(path)
    if kind != "source":
        return InputFile(path, size, kind, given, compression=compression)
    ext = os.path.splitext(base)[1].lower()
    if ext in profile.binary_extensions:
        return Rejection(READ_STAGE, "binary", path, size, f"binary extension {ext}")
    language = profile.language_of_path(base)
    if language is None:
        return Rejection(READ_STAGE, "unknown_extension", path, size, f"no {profile.domain} language for {ext or 'no extension'}")
    return InputFile(path, size, kind, given, language, compression)


GLOB_CHARACTERS = "*?["


def literal_prefix(given: str) -> str:
    """The part of an input before its first glob character (all of it when it is no glob)."""
    for position, char in enumerate(given):
        if char in GLOB_CHARACTERS:
            return given[:position]
    return given


def is_glob(given: str) -> bool:
    return literal_prefix(given) != given


def match_pattern(given: str) -> str:
    """The Beam match pattern of an object-store input: a glob as given, else everything under it."""
    return given if is_glob(given) else given.rstrip("/") + "/**"


def in_skipped_dir(path: str, profile: DomainProfile) -> bool:
    return any(part in profile.skip_dirs for part in path.split("/")[:-1])


def remote_input_pattern(given: str) -> str:
    """The pattern that lists an object-store input (``given/**`` for a folder, ``given`` for one
    object), found with listing calls that stop at the first match: a typo fails at launch without
    listing 10^8 objects; the pipeline lists the rest."""
    from apache_beam.io.filesystems import FileSystems

    pattern = match_pattern(given)
    if FileSystems.match([pattern], limits=[1])[0].metadata_list:
        return pattern
    if not is_glob(given) and FileSystems.match([given], limits=[1])[0].metadata_list:
        return given
    raise FileNotFoundError(f"{given}: no files match")


def _list_files(given: str, profile: DomainProfile, pruned: dict[str, list[str]]) -> Iterator[tuple[str, int]]:
    if is_remote(given):  # builds list object stores in the pipeline (MatchInputs); this serves direct callers
        from apache_beam.io.filesystems import FileSystems

        for meta in FileSystems.match([remote_input_pattern(given)])[0].metadata_list:
            if not in_skipped_dir(meta.path, profile):
                yield meta.path, meta.size_in_bytes
        return
    if os.path.isfile(given):
        yield os.path.abspath(given), os.path.getsize(given)
        return
    if not os.path.isdir(given):
        raise FileNotFoundError(f"{given}: input does not exist")
    for root, dirs, names in os.walk(given):
        kept = []
        for d in sorted(dirs):
            if d in profile.skip_dirs:
                pruned.setdefault("vcs_or_vendored_dir", []).append(os.path.join(root, d))
            else:
                kept.append(d)
        dirs[:] = kept
        for name in sorted(names):
            full = os.path.abspath(os.path.join(root, name))
            try:
                if os.path.islink(full) and not os.path.exists(full):
                    continue
                yield full, os.path.getsize(full)
            except OSError:
                yield full, 0  # reported as unreadable when read


def read_input_file(item: InputFile, profile: DomainProfile, domain: str, meter: list[int] | None = None,
                    records: tuple[int, int | None] | None = None, offset: int | None = None) -> Iterator[Document | Rejection]:
    """Documents of one file, or the rejections explaining what was skipped and why.

    Record files (JSONL, Parquet) are streamed, one record at a time; a source file is one document,
    read up to ``max_file_bytes`` (after decompression). ``meter[0]`` is increased by the bytes read
    after decompression (Parquet: the text of its records), which the build sizes shards by.
    ``records=(first, last)``: only the records numbered ``first..last`` (JSONL lines from 1, Parquet
    rows from 0; ``last`` None: to the end); reading stops after ``last``. ``offset``: the byte offset of line ``first`` in a plain
    JSONL file, which the first read noted on each document; reading starts there, so the piece of a
    dump written by each shard does not read the dump from its start (which made writing a dump cut into
    k pieces read it k/2 times over). Without it (a compressed file cannot seek), lines before ``first``
    are read and skipped unparsed. A Parquet piece reads only the row groups holding its rows.
    """
    meter = meter if meter is not None else [0]
    if item.kind == "source" and item.compression is None and item.size > profile.max_file_bytes:
        yield Rejection(READ_STAGE, "too_large", item.path, item.size, f"{item.size} bytes > max_file_bytes {profile.max_file_bytes}")
        return
    try:
        if item.kind == "source":
            data, too_large = read_limited(item.path, item.compression, profile.max_file_bytes)
            meter[0] += len(data)
            if too_large:
                yield Rejection(READ_STAGE, "too_large", item.path, item.size,
                                f"more than max_file_bytes {profile.max_file_bytes} bytes after {item.compression} decompression")
                return
            yield from _source_document(item, data, profile, domain)
        elif item.kind == "jsonl":
            yield from _jsonl_documents(item, profile, domain, meter, records, offset)
        else:
            for result in _parquet_documents(item, profile, domain, records):
                if isinstance(result, Document):
                    meter[0] += result.num_bytes
                yield result
    except BrokenStream as err:  # a compressed source file or Parquet dump: nothing of it is kept
        yield _unreadable(item, item.path, str(err))
    except OSError as err:
        yield _unreadable(item, item.path, f"{type(err).__name__}: {err.strerror or err}")


def _unreadable(item: InputFile, source: str, detail: str) -> Rejection:
    """A dataset file that cannot be read loses many records (``--strict`` makes it an error); the
    build's first read warns about it (``warn_unreadable``), the second, which reads it again, does not."""
    return Rejection(READ_STAGE, "unreadable", source, item.size, detail)


def warn_unreadable(item: InputFile, result: Document | Rejection) -> None:
    """Loud: log an unreadable dataset file (JSONL, Parquet) once, where it is first read."""
    if isinstance(result, Rejection) and result.reason == "unreadable" and item.kind != "source":
        logger.warning("corpus input %s is unreadable: %s", result.source, result.detail)


def _source_document(item: InputFile, data: bytes, profile: DomainProfile, domain: str) -> Iterator[Document | Rejection]:
    if not data.strip():
        yield Rejection(READ_STAGE, "empty", item.path, len(data), "file is empty or whitespace only")
        return
    if b"\x00" in data[:BINARY_SNIFF_BYTES]:
        yield Rejection(READ_STAGE, "binary", item.path, len(data), "NUL byte in the first 8 KiB")
        return
    try:
        text = decode_and_normalize(data)
    except NormalizationError as err:
        yield Rejection(READ_STAGE, "non_utf8", item.path, len(data), str(err))
        return
    yield Document(text, item.path, domain, item.language or "unknown", item.input_name, file=item.path)


def _record_to_document(
    record: object, source: str, item: InputFile, profile: DomainProfile, domain: str, index: int = 0,
    offset: int | None = None,
) -> Document | Rejection:
    if not isinstance(record, dict):
        return Rejection(READ_STAGE, "malformed_record", source, 0, f"expected a JSON object, got {type(record).__name__}")
    text = next((record[f] for f in profile.text_fields if isinstance(record.get(f), str)), None)
    if text is None:
        for template in profile.record_templates:
            try:
                text = template.format_map(_StrictFields(record))
                break
            except KeyError:
                continue
    if text is None:
        fields = ", ".join(profile.text_fields)
        return Rejection(READ_STAGE, "missing_text_field", source, 0, f"no text field ({fields}) nor a record template matched")
    raw_bytes = len(text.encode("utf-8", "surrogatepass"))
    if raw_bytes > profile.max_record_bytes:
        return Rejection(READ_STAGE, "too_large", source, raw_bytes, f"record text {raw_bytes} bytes > max_record_bytes")
    if not text.strip():
        return Rejection(READ_STAGE, "empty", source, raw_bytes, "record text is empty")
    try:
        text = decode_and_normalize(text.encode("utf-8"))
    except (UnicodeEncodeError, NormalizationError) as err:
        return Rejection(READ_STAGE, "non_utf8", source, raw_bytes, f"record text is not valid Unicode: {err}")
    language = next((str(record[f]).lower() for f in profile.language_fields if record.get(f)), None)
    path = next((str(record[f]) for f in profile.path_fields if record.get(f)), None)
    if language is None:
        language = profile.language_of_path(path) if path else None
    repo = next((str(record[f]) for f in profile.repo_fields if record.get(f)), None)
    meta = {"repo": repo, "repo_path": path or source} if repo else {}  # for --repo-level assembly
    return Document(text, source, domain, language or profile.default_record_language, item.input_name, meta,
                    file=item.path, record=index, offset=offset)


def _template_fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


class _StrictFields(dict):
    """``str.format_map`` view of a record that only accepts string fields."""

    def __missing__(self, key: str) -> str:
        raise KeyError(key)

    def __getitem__(self, key: str) -> str:
        value = dict.__getitem__(self, key)
        if not isinstance(value, str):
            raise KeyError(key)
        return value


def _start_at(handle, item: InputFile, records: tuple[int, int] | None, offset: int | None) -> tuple[int, int] | None:
    """(first line number, its byte offset) when reading may start at ``offset``: a plain file whose
    handle seeks (local files and Beam's object-store readers do); None: read from the start."""
    if records is None or offset is None or item.compression is not None:
        return None
    try:
        handle.seek(offset)
    except (OSError, AttributeError, ValueError, NotImplementedError):
        return None
    return records[0], offset


def _jsonl_documents(item: InputFile, profile: DomainProfile, domain: str, meter: list[int],
                     records: tuple[int, int] | None = None, offset: int | None = None) -> Iterator[Document | Rejection]:
    any_line = False
    line_number = 0
    start = meter[0]
    first, last = records or (1, None)
    plain = item.compression is None  # byte offsets of lines are only meaningful (seekable) in a plain file
    with open_binary(item.path) as handle:
        first_line, position = _start_at(handle, item, records, offset) or (1, 0)
        try:
            for line_number, line in enumerate(lines(decompressed_chunks(handle, item.compression)), start=first_line):
                line_start, position = position, position + len(line) + 1
                if line_number < first:
                    continue
                if last is not None and line_number > last:
                    return
                meter[0] += len(line) + 1
                if not line.strip():
                    continue
                any_line = True
                source = f"{item.path}#{line_number}"
                try:
                    record = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError) as err:
                    yield Rejection(READ_STAGE, "malformed_jsonl", source, len(line), f"line {line_number}: {err}")
                    continue
                yield _record_to_document(record, source, item, profile, domain, line_number, line_start if plain else None)
        except BrokenStream as err:
            yield _unreadable(item, f"{item.path}#{line_number + 1}", f"{err}: records after line {line_number} lost")
            return
    if not any_line and records is None:
        yield Rejection(READ_STAGE, "empty", item.path, meter[0] - start, "file has no records")


def _parquet_documents(item: InputFile, profile: DomainProfile, domain: str,
                       records: tuple[int, int] | None = None) -> Iterator[Document | Rejection]:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    with open_binary(item.path) as handle:
        # Parquet needs random access: a plain file is read row group by row group from its handle; an
        # externally compressed one (rare: Parquet compresses inside) is decompressed in memory first.
        source = handle if item.compression is None else io.BytesIO(b"".join(decompressed_chunks(handle, item.compression)))
        try:
            parquet = pq.ParquetFile(source)
        except (pa.ArrowException, OSError) as err:
            yield _unreadable(item, item.path, f"not a readable Parquet file: {err}")
            return
        names = set(parquet.schema_arrow.names)
        template_fields = [_template_fields(t) for t in profile.record_templates]
        usable_templates = [fields for fields in template_fields if fields <= names]
        if not any(f in names for f in profile.text_fields) and not usable_templates:
            yield Rejection(READ_STAGE, "missing_text_field", item.path, item.size, f"no column among {list(profile.text_fields)}")
            return
        wanted = [f for f in (*profile.text_fields, *profile.language_fields, *profile.path_fields, *profile.repo_fields)
                  if f in names]
        wanted += sorted({f for fields in usable_templates for f in fields} - set(wanted))
        if parquet.metadata.num_rows == 0:
            yield Rejection(READ_STAGE, "empty", item.path, item.size, "file has no rows")
            return
        first, last = records or (0, None)
        last = parquet.metadata.num_rows - 1 if last is None else last
        groups, row, group_start = [], 0, 0  # only the row groups that hold rows first..last are read
        for index in range(parquet.metadata.num_row_groups):
            group_rows = parquet.metadata.row_group(index).num_rows
            if group_start + group_rows > first and group_start <= last:
                if not groups:
                    row = group_start
                groups.append(index)
            group_start += group_rows
        try:
            for batch in parquet.iter_batches(columns=wanted or None, batch_size=1024, row_groups=groups):
                if row + batch.num_rows <= first:  # before the wanted rows: not converted to Python
                    row += batch.num_rows
                    continue
                for record in batch.to_pylist():
                    if row > last:
                        return
                    if row >= first:
                        yield _record_to_document(record, f"{item.path}#{row}", item, profile, domain, row)
                    row += 1
        except (pa.ArrowException, OSError) as err:
            yield _unreadable(item, f"{item.path}#{row}", f"Parquet read failed at row {row}: {err}")


@dataclass(frozen=True)
class ReadPart:
    """A run of records of a large record file, read by one call of the build's first read: lines
    ``first..last`` of a plain JSONL file (``last`` None: to the end) starting at byte ``offset``, or
    rows ``first..last`` of a Parquet file (whole row groups). ``size``: the part's bytes, which count
    for the shard count (None for Parquet: its record text, measured while reading, counts)."""

    file: InputFile
    first: int
    last: int | None
    offset: int | None
    size: int | None

    @property
    def records(self) -> tuple[int, int | None]:
        return self.first, self.last


def split_into_parts(item: InputFile, part_bytes: int) -> list[InputFile | ReadPart]:
    """A plain JSONL or Parquet file larger than ``part_bytes`` -> runs of records of about
    ``part_bytes`` each; any other file as it is.

    Why: the first read takes a file in one call, so a single large dump is judged by one worker while
    the others wait. Parts keep every record's number (its id), so a build's documents and shards are
    the same either way. A JSONL file is cut at line ends found by one pass that only counts newlines
    (no parsing); a Parquet file at row-group boundaries, from its footer (sized by the groups'
    uncompressed bytes). Compressed JSONL cannot start mid-stream and stays whole.
    """
    if item.size <= part_bytes or item.compression is not None:
        return [item]
    if item.kind == "parquet":
        return _parquet_parts(item, part_bytes)
    if item.kind != "jsonl":
        return [item]
    starts = [(1, 0)]  # (line number, byte offset) where each part starts
    newlines = position = 0
    target = part_bytes
    with open_binary(item.path) as handle:
        for chunk in decompressed_chunks(handle, None):
            search = 0
            while target < position + len(chunk):
                cut = chunk.find(b"\n", max(search, target - position))
                if cut < 0:
                    break
                starts.append((newlines + chunk.count(b"\n", 0, cut + 1) + 1, position + cut + 1))
                target, search = position + cut + 1 + part_bytes, cut + 1
            newlines += chunk.count(b"\n")
            position += len(chunk)
    if starts[-1][1] >= position:  # a cut at the very end starts no part
        starts.pop()
    if len(starts) == 1:
        return [item]
    parts = []
    for index, (first, offset) in enumerate(starts):
        following = starts[index + 1] if index + 1 < len(starts) else None
        last, end = (following[0] - 1, following[1]) if following else (None, position)
        parts.append(ReadPart(item, first, last, offset, end - offset))
    return parts


def _parquet_parts(item: InputFile, part_bytes: int) -> list[InputFile | ReadPart]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with open_binary(item.path) as handle:
            metadata = pq.ParquetFile(handle).metadata
    except (pa.ArrowException, OSError):
        return [item]  # the read reports it
    parts, first, row, size = [], 0, 0, 0
    for index in range(metadata.num_row_groups):
        group = metadata.row_group(index)
        row, size = row + group.num_rows, size + group.total_byte_size
        if size >= part_bytes and index < metadata.num_row_groups - 1:
            parts.append(ReadPart(item, first, row - 1, None, None))
            first, size = row, 0
    if not parts:
        return [item]
    parts.append(ReadPart(item, first, row - 1, None, None))
    return parts
