"""The build's second read: the kept documents' texts, read again from their files, become shards.

    kept keys + rejected (key, Rejection) --PlanShards--> (shard, Piece) --GroupByKey--> one task per shard
      task: read each piece's file (only the records it needs) -> restore -> [assemble repositories]
            -> tokenize in batches -> append record batches to the shard file -> shard stats
            (and each rejection of a corpus-wide stage, with its text sample now that the text is here)

Only keys cross the shuffle (``GroupByKey`` by shard), and a task holds one batch of text at a time
(``--repo-level``: the texts of its repositories), so memory does not grow with the corpus; this is
how datatrove writes too (a task per group of input files, the dedup's ids applied on a second read).
A local runner, which would hold both shuffles in memory, groups the same plan in spill files instead
(``beam_jobs/spilled_plan.py``); ``WriteShards`` takes either.

A shard is a group of whole files, chosen by a stable hash of the file's path. A record file (JSONL,
Parquet) holding more than ``piece_bytes`` of kept text is cut into pieces of consecutive records,
each on the next shard, so one large dump still spreads over the shards. A piece of a plain JSONL file
starts reading at its first record's byte offset (which the first read noted) and stops after its
last, a Parquet piece reads only its row groups: every byte of a dump is read once more in all, not
once per piece. A compressed JSONL piece still decompresses the file from its start (no seeking).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from dataclasses import dataclass

import apache_beam as beam
import numpy as np

from beam_jobs.corpus_wide import restore
from beam_jobs.stage_stats import WriteStageStats
from beam_jobs.stages import REJECTED
from specialize.corpus import outputs
from specialize.corpus.document import Document, DocumentKey, Rejection
from specialize.corpus.manifest import build_stats_dir
from specialize.corpus.profile import DomainProfile
from specialize.corpus.shards import ShardWriter, shard_name
from specialize.corpus.sources import InputFile, read_input_file
from specialize.tokenization import TokenizerSpec

#: The kind of an input file that holds rendered documents as JSON lines (instruction documents).
DOCUMENTS_KIND = "documents"
REPO_STATS = "repo_stats"


def stable_hash(text: str) -> int:
    """A 64-bit hash that is the same on every machine, run and Python version (unlike ``hash``)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def read_planned(item: InputFile, profile: DomainProfile, domain: str, records: tuple[int, int] | None = None,
                 meter: list[int] | None = None, offset: int | None = None):
    """The documents (and rejections) of one input file, both reads: a corpus file, or a file of
    rendered documents (instruction documents written at launch, one JSON object per line)."""
    if item.kind != DOCUMENTS_KIND:
        yield from read_input_file(item, profile, domain, meter=meter, records=records, offset=offset)
        return
    first, last = records or (1, math.inf)
    for number, line in enumerate(outputs.read_bytes(item.path).decode("utf-8").splitlines(), start=1):
        if first <= number <= last:
            yield Document(**json.loads(line))


def write_documents_file(path: str, documents: list[Document], input_name: str) -> InputFile:
    """Rendered documents as a ``documents`` input file both reads take like any other file."""
    lines = []
    for number, document in enumerate(documents, start=1):
        fields = {"text": document.text, "source": document.source, "domain": document.domain, "language": document.language,
                  "input_name": document.input_name, "meta": document.meta, "file": path, "record": number}
        lines.append(json.dumps(fields, ensure_ascii=False))
    data = "\n".join(lines).encode("utf-8")
    outputs.write_atomic(path, data)
    return InputFile(path, len(data), DOCUMENTS_KIND, input_name)


# ---------------------------------------------------------------------------------------------
# Layout: how many shards, how much text a piece of a large file holds


@dataclass(frozen=True)
class ShardLayout:
    num_shards: int
    piece_bytes: int  # kept text of one piece of a record file at most: the kept text of a shard


def shard_count(total_bytes: int, fixed: int | None, target_bytes: int) -> int:
    return fixed or max(1, math.ceil(total_bytes / target_bytes))


class ShardCount(beam.PTransform):
    """Sizes of the files read -> the number of shards: ``fixed``, or one per ``target_bytes`` of text read."""

    def __init__(self, fixed: int | None, target_bytes: int, stats_dir: str | None = None):
        super().__init__()
        self._fixed, self._target, self._stats_dir = fixed, target_bytes, stats_dir

    def expand(self, sizes):
        fixed, target = self._fixed, self._target
        total = sizes | "Total" >> beam.CombineGlobally(sum)
        count = total | "Shards" >> beam.Map(shard_count, fixed, target)
        if self._stats_dir is not None:
            (total
             | "Describe" >> beam.Map(lambda n: {"bytes_read": n, "target_bytes_per_shard": target, "fixed": fixed is not None,
                                                 "num_shards": shard_count(n, fixed, target)})
             | "Stats" >> WriteStageStats(self._stats_dir, "sharding"))
        return count


class Layout(beam.PTransform):
    """The kept keys and the shard count -> the ``ShardLayout``: pieces hold the kept text of a shard,
    so one large dump fills every shard."""

    def __init__(self, num_shards):
        super().__init__()
        self._num_shards = num_shards

    def expand(self, keys):
        return (
            keys
            | "KeptBytes" >> beam.Map(lambda key: key.num_bytes)
            | "Total" >> beam.CombineGlobally(sum)
            | "Layout" >> beam.Map(lambda kept, n: ShardLayout(n, max(1, math.ceil(kept / n))),
                                   beam.pvalue.AsSingleton(self._num_shards))
        )


# ---------------------------------------------------------------------------------------------
# Plan: keys grouped by file, cut into pieces, placed on shards


@dataclass(slots=True)
class Piece:
    """What one shard task reads from one file: its records ``first..last`` (None: the whole file)
    and the decisions on the documents there."""

    file: InputFile
    records: tuple[int, int] | None
    entries: list  # (DocumentKey, Rejection | None), in record order
    repository: str | None = None  # --repo-level: the repository these files belong to
    offset: int | None = None  # byte offset of record ``first`` in a plain JSONL file: reading starts there

    def __reduce__(self):
        """Field values only: the shard plan holds one piece per file (or per shard of a dump)."""
        return Piece, (self.file, self.records, self.entries, self.repository, self.offset)


#: Key prefix of documents that belong to no repository (records without a repo field, instruction documents):
#: keyed by their own source, so they are placed like any file instead of as one hot key.
STANDALONE = "\1"


def repository_of(key: DocumentKey, inputs: tuple[str, ...]) -> str:
    """The repository a document belongs to: its record's repo field, else its folder under its input
    (``specialize.corpus.repos.repo_and_path``); ``STANDALONE`` + its source when it has none."""
    from specialize.corpus.repos import repo_and_path

    if "repo" in key.meta:
        return key.meta["repo"]
    if key.input_name in inputs and "#" not in key.origin:
        repo, _ = repo_and_path(key.origin, key.input_name)
        return f"{key.input_name}\0{repo}"
    return STANDALONE + key.origin


def path_in_repository(document: Document) -> str:
    from specialize.corpus.repos import repo_and_path

    if "repo" in document.meta:
        return document.meta.get("repo_path") or document.source
    return repo_and_path(document.source, document.input_name)[1]


def _pieces(item, layout: ShardLayout, repo_inputs: tuple[str, ...] | None):
    _, grouped = item
    files, entries = list(grouped["file"]), list(grouped["entries"])
    if not files or not entries:
        return
    file = files[0]
    entries.sort(key=lambda entry: (entry[0].record, entry[0].source))
    start = stable_hash(file.path)
    if repo_inputs is not None:  # one piece per repository the file holds, on the repository's shard
        by_repository: dict[str, list] = {}
        for entry in entries:
            by_repository.setdefault(repository_of(entry[0], repo_inputs), []).append(entry)
        for repository, members in by_repository.items():
            shard = (stable_hash(repository) if not repository.startswith(STANDALONE) else start) % layout.num_shards
            yield shard, Piece(file, None, members, repository)
        return
    if file.kind == "source" or len(entries) == 1:
        yield start % layout.num_shards, Piece(file, None, entries)
        return
    for index, members in enumerate(_cut(entries, layout.piece_bytes)):
        records = (members[0][0].record, members[-1][0].record)
        yield (start + index) % layout.num_shards, Piece(file, records, members, offset=members[0][0].offset)


def _cut(entries: list, piece_bytes: int) -> list[list]:
    """Entries in record order -> runs of consecutive records, a record in run ``floor(kept text
    before it / piece_bytes)``: at most one run per shard (``piece_bytes`` is the kept text over the
    shard count), each about ``piece_bytes``. The entries of one record (a document and its up-sampled
    copies, or its rejection) stay together."""
    pieces: list[list] = []
    last_index, last_record, before = -1, None, 0
    for entry in entries:
        key, rejection = entry
        index = before // piece_bytes
        if key.record != last_record and index > last_index:
            pieces.append([])
            last_index = index
        pieces[-1].append(entry)
        last_record = key.record
        before += 0 if rejection is not None else key.num_bytes
    return pieces


def _layout_argument(layout):
    """A fixed ``ShardLayout`` as it is, or the one-element PCollection ``Layout`` gave as a side input."""
    return layout if isinstance(layout, ShardLayout) else beam.pvalue.AsSingleton(layout)


class PlanShards(beam.PTransform):
    """(key, rejection or None) entries + the input files -> (shard index, Piece), keys only."""

    def __init__(self, files, layout, repo_inputs: tuple[str, ...] | None = None):
        """``layout``: a ``ShardLayout`` or the one-element PCollection ``Layout`` gave;
        ``repo_inputs``: the --input paths under --repo-level (None: documents are written as they are)."""
        super().__init__()
        self._files, self._layout, self._repo_inputs = files, layout, repo_inputs

    def expand(self, entries):
        layout = _layout_argument(self._layout)
        return (
            {"file": self._files | "FileByPath" >> beam.Map(lambda f: (f.path, f)),
             "entries": entries | "EntryByFile" >> beam.Map(lambda entry: (entry[0].file, entry))}
            | "GroupByFile" >> beam.CoGroupByKey()
            | "Pieces" >> beam.FlatMap(_pieces, layout, self._repo_inputs)
        )


# ---------------------------------------------------------------------------------------------
# Writing one shard


class _BatchEncoder:
    """Documents -> shard rows in batches: tiktoken releases the GIL, so a batch uses every thread."""

    def __init__(self, tokenizer, threads: int, batch_bytes: int):
        self._tokenizer, self._threads, self._batch_bytes = tokenizer, threads, batch_bytes
        self._markers: dict[str, int] | None = None  # repository markers' control ids (--repo-level)
        self._batch: list[Document] = []
        self._size = 0

    def add(self, document: Document) -> list[dict]:
        self._batch.append(document)
        self._size += len(document.text)
        return self.flush() if self._size >= self._batch_bytes else []

    def _encode_parts(self, parts) -> list[int]:
        """A repository document: markers as their control ids, every text part as ordinary text."""
        if self._markers is None:
            from specialize.corpus.repos import marker_ids

            self._markers = marker_ids(self._tokenizer.special_tokens)
        ids: list[int] = []
        for kind, text in parts:
            ids.extend([self._markers[text]] if kind == "special" else self._tokenizer.encode(text))
        return ids

    def flush(self) -> list[dict]:
        batch, self._batch, self._size = self._batch, [], 0
        if not batch:
            return []
        plain = iter(self._tokenizer.encode_batch([d.text for d in batch if "parts" not in d.meta], num_threads=self._threads))
        rows = []
        for document in batch:
            ids = self._encode_parts(document.meta["parts"]) if "parts" in document.meta else next(plain)
            ids.append(self._tokenizer.eod_id)
            rows.append({"tokens": np.asarray(ids, dtype=np.uint32), "source": document.source, "domain": document.domain,
                         "language": document.language, "num_bytes": document.num_bytes,
                         "quality": document.meta.get("quality")})
        return rows


class _ShardStats:
    def __init__(self) -> None:
        self.rows = self.tokens = self.text_bytes = 0
        self.languages: dict[str, dict[str, int]] = {}

    def add(self, rows: list[dict]) -> None:
        for row in rows:
            self.rows += 1
            self.tokens += len(row["tokens"])
            self.text_bytes += row["num_bytes"]
            entry = self.languages.setdefault(row["language"], {"documents": 0, "tokens": 0, "text_bytes": 0})
            entry["documents"] += 1
            entry["tokens"] += len(row["tokens"])
            entry["text_bytes"] += row["num_bytes"]


#: Text tokenized (and appended to the shard) per batch. tiktoken returns a batch's ids as Python lists,
#: ~36 bytes per token until they become a uint32 array: 8 MB batches made the write stage the build's
#: memory peak (132 MB of Python heap at its height on the stdlib, Qwen vocabulary); 2 MB batches hold
#: 62 MB and run as fast (4x stdlib: 23.2 s and 512 MB peak RSS with 8 MB, 23.3 s and 463 MB with 2 MB).
BATCH_TEXT_BYTES = 2 << 20


def tokenizer_threads(cores: int, local_workers: int | None, num_shards: int) -> int:
    """Tokenizer threads for one shard task: the cores shared by the shard tasks that can run at once.

    Locally ``local_workers`` processes share this machine, but a build with fewer shards than workers
    writes fewer shards at once: one shard on two workers gets both cores, not one (measured on 127 MB
    of code: 41% of raw tiktoken against 38%). A remote worker (``local_workers`` None) runs one shard
    task per core it has, each tokenizing on all of them, as tiktoken's threads release the GIL.
    """
    concurrent = min(local_workers, num_shards) if local_workers else 1
    return max(1, cores // max(1, concurrent))


class _WriteShardFn(beam.DoFn):
    def __init__(self, profile: DomainProfile, domain: str, spec: TokenizerSpec, output_dir: str, build_id: str | None,
                 threads: int | None, repo_max_bytes: int | None, batch_bytes: int = BATCH_TEXT_BYTES,
                 local_workers: int | None = None):
        self._profile, self._domain, self._spec = profile, domain, spec
        self._output_dir, self._build_id, self._threads = output_dir, build_id, threads
        self._repo_max_bytes, self._batch_bytes, self._local_workers = repo_max_bytes, batch_bytes, local_workers
        self._tokenizer = None

    def setup(self):
        self._tokenizer = self._spec.load()

    def threads_for(self, layout: ShardLayout) -> int:
        """The given thread count, else decided on the worker from its own cores (not the launcher's)."""
        if self._threads is not None:
            return self._threads
        from beam_jobs.runner import default_workers

        return tokenizer_threads(default_workers(), self._local_workers, layout.num_shards)

    def _documents(self, pieces: list[Piece]):
        """(repository or None, restored document or rejection) for every planned document of the
        pieces, in order; pieces that read one file whole (its repositories) read it once."""
        groups: list[tuple[Piece, list[Piece]]] = []
        for piece in pieces:
            if groups and piece.records is None and groups[-1][0].records is None and groups[-1][0].file.path == piece.file.path:
                groups[-1][1].append(piece)
            else:
                groups.append((piece, [piece]))
        for first, group in groups:
            planned: dict[str, list] = {}
            for piece in group:
                for key, rejection in piece.entries:
                    planned.setdefault(key.origin, []).append((piece.repository, key, rejection))
            for document in read_planned(first.file, self._profile, self._domain, first.records, offset=first.offset):
                if isinstance(document, Rejection):  # counted by the first read
                    continue
                for repository, key, rejection in planned.pop(document.source, ()):
                    for result in restore(document, [(key, rejection)]):
                        yield repository, result
            if planned:
                raise RuntimeError(f"{first.file.path}: changed while the build ran: {len(planned)} document(s) read "
                                   f"the first time are gone (e.g. {next(iter(planned))}); build again from unchanging inputs")

    def process(self, keyed_pieces, layout: ShardLayout):
        index, planned = keyed_pieces
        pieces = sorted(_planned_pieces(planned), key=lambda p: (p.file.path, p.records or (0, 0), p.repository or ""))
        name = shard_name(index, layout.num_shards, self._build_id)
        encoder = _BatchEncoder(self._tokenizer, self.threads_for(layout), self._batch_bytes)
        stats = _ShardStats()
        repositories: dict[str, list] = {}
        with contextlib.ExitStack() as stack:
            writer = None

            def write(rows: list[dict]) -> None:
                nonlocal writer
                if not rows:
                    return
                if writer is None:  # no file for a shard whose every document was dropped
                    writer = stack.enter_context(ShardWriter(outputs.join(self._output_dir, name)))
                writer.write(rows)
                stats.add(rows)

            for repository, result in self._documents(pieces):
                if isinstance(result, Rejection):
                    yield beam.pvalue.TaggedOutput(REJECTED, result)
                elif repository is not None and not repository.startswith(STANDALONE):
                    repositories.setdefault(repository, []).append(result)
                else:
                    write(encoder.add(result))
            for repository in sorted(repositories):
                assembled, repo_stats = _assemble_repository(repository, repositories.pop(repository), self._repo_max_bytes)
                for document in assembled:
                    write(encoder.add(document))
                yield beam.pvalue.TaggedOutput(REPO_STATS, repo_stats)
            write(encoder.flush())
        if writer is None:
            return
        shard = {"path": name, "rows": stats.rows, "tokens": stats.tokens, "text_bytes": stats.text_bytes,
                 "file_bytes": writer.file_bytes, "sha256": writer.sha256, "languages": stats.languages}
        stats_path = outputs.join(build_stats_dir(self._output_dir, self._build_id), name.replace(".arrow", ".json"))
        outputs.write_atomic(stats_path, json.dumps(shard).encode())
        yield shard


def _planned_pieces(planned) -> list[Piece]:
    """A shard's pieces as the plan gave them: Pieces (``PlanShards``), or the files of a local
    runner's plan that hold them (``beam_jobs.spilled_plan``)."""
    from beam_jobs.spilled_plan import load_spilled

    return [piece for item in planned for piece in (load_spilled(item) if isinstance(item, str) else (item,))]


def _assemble_repository(repository: str, documents: list[Document], max_bytes: int):
    """The files of one repository -> its documents (split on file boundaries) and its statistics."""
    from specialize.corpus.repos import REPO_LANGUAGE, RepoFile, assemble, parts_text

    members = sorted(((path_in_repository(d), d) for d in documents), key=lambda member: member[0])
    name = repository.split("\0")[-1]
    files = [RepoFile(path, document.text, document.source) for path, document in members]
    first = members[0][1]
    assembled, sizes = [], []
    for index, parts in enumerate(assemble(name, files, max_bytes)):
        text = parts_text(parts)
        sizes.append(len(text.encode("utf-8")))
        assembled.append(Document(text, f"repo:{name}#{index}", first.domain, REPO_LANGUAGE, first.input_name,
                                  meta={"parts": parts, "repo": name}))
    stats = {"repositories": 1, "files": len(files), "documents": len(assembled),
             "documents_per_repository": {str(len(assembled)): 1}, "document_bytes": _bucket_counts(sizes)}
    return assembled, stats


def _size_bucket(size: int) -> str:
    """Power-of-two upper bound of a size in KiB ("<=4KiB", "<=8KiB", ...)."""
    bound = 4
    while size > bound * 1024:
        bound *= 2
    return f"<={bound}KiB"


def _bucket_counts(sizes: list[int]) -> dict[str, int]:
    import collections

    return dict(collections.Counter(map(_size_bucket, sizes)))


class WriteShards(beam.PTransform):
    """(shard index, Piece) -> shards written batch by batch, a stats file per shard; returns
    (shard stats, rejections with samples, repository stats)."""

    def __init__(self, profile: DomainProfile, domain: str, spec: TokenizerSpec, output_dir: str, layout,
                 build_id: str | None = None, threads: int | None = 1, repo_max_bytes: int | None = None,
                 local_workers: int | None = None):
        super().__init__()
        self._fn = _WriteShardFn(profile, domain, spec, output_dir, build_id, threads, repo_max_bytes,
                                 local_workers=local_workers)
        self._layout = layout

    def expand(self, keyed_pieces):
        layout = _layout_argument(self._layout)
        outputs_ = (
            keyed_pieces
            | "GroupByShard" >> beam.GroupByKey()
            | "Write" >> beam.ParDo(self._fn, layout=layout).with_outputs(REJECTED, REPO_STATS, main="shards")
        )
        return outputs_["shards"], outputs_[REJECTED], outputs_[REPO_STATS]
