"""The shard plan of a local runner, grouped in files of the build's spill directory instead of in the
runner's memory.

``PlanShards`` joins every document's entry with its file (a CoGroupByKey) and the pieces then meet by
shard (``WriteShards``' GroupByKey). A distributed runner spills those shuffles to disk; FnApiRunner
holds each one whole, decoded, with encoded copies on both sides of its data plane: about 2 KB per
document for the 4x stdlib build, most of what was left of its memory growth.

Here the entries (each branch on its own, fused into the stage that produces it) and the input files
are appended, a few thousand at a time, to per-bucket files chosen by a stable hash of the file's path;
only the paths reach the runner. One task per bucket groups its files' entries and cuts them into
pieces exactly as ``PlanShards`` does (``_pieces``), then writes one plan file per shard it filled; the
shard task reads its shard's plan files. A task holds one bucket's entries (1/``PLAN_BUCKETS`` of the
plan), a shard task one shard's: neither grows with the corpus beyond its share.

The spill directory must be one every local worker sees (``run_build`` makes it under ``$TMPDIR``).
"""

from __future__ import annotations

import os
import pickle
import uuid

import apache_beam as beam

from beam_jobs.shard_writing import _layout_argument, _pieces, stable_hash
from specialize.dedup.packed import spill

#: Buckets of the plan: the planning task of one holds 1/64 of the corpus's entries.
PLAN_BUCKETS = 64
#: Entries a spilling DoFn gathers before it appends them to their buckets' files.
SPILL_EVERY = 4096


def _append(path: str, items: list) -> None:
    with open(path, "ab") as handle:
        pickle.dump(items, handle, protocol=pickle.HIGHEST_PROTOCOL)


def load_spilled(path: str) -> list:
    """Every item appended to ``path``, in order."""
    items: list = []
    with open(path, "rb") as handle:
        while True:
            try:
                items.extend(pickle.load(handle))
            except EOFError:
                return items


class _SpillByBucket(beam.DoFn):
    """Elements -> (bucket, file path) once per bucket the bundle filled: the elements themselves are
    appended to that file. A bundle writes files of its own, named only when it finishes, so a retried
    bundle's files are never read."""

    def __init__(self, spill_dir: str, kind: str):
        self._spill_dir, self._kind = spill_dir, kind

    def start_bundle(self):
        self._waiting: dict[int, list] = {}
        self._count = 0
        self._paths: dict[int, str] = {}

    def _file_path(self, element) -> str:
        return element[0].file if self._kind == "entries" else element.path

    def process(self, element):
        bucket = stable_hash(self._file_path(element)) % PLAN_BUCKETS
        self._waiting.setdefault(bucket, []).append(element)
        self._count += 1
        if self._count >= SPILL_EVERY:
            self._flush()

    def _flush(self) -> None:
        for bucket, items in self._waiting.items():
            path = self._paths.get(bucket)
            if path is None:
                path = self._paths[bucket] = os.path.join(self._spill_dir, f"{self._kind}-{bucket:03d}-{uuid.uuid4().hex}.plan")
            _append(path, items)
        self._waiting, self._count = {}, 0

    def finish_bundle(self):
        self._flush()
        for bucket, path in self._paths.items():
            yield beam.transforms.window.GlobalWindows.windowed_value((bucket, path))


class _PlanBucketFn(beam.DoFn):
    """(bucket, its spilled entries and files) -> (shard, plan file) for each shard its pieces go to."""

    def __init__(self, spill_dir: str):
        self._spill_dir = spill_dir

    def process(self, bucket_paths, layout, repo_inputs):
        _, paths = bucket_paths
        files, entries = {}, {}
        for path in sorted(paths):
            items = load_spilled(path)
            if os.path.basename(path).startswith("files-"):
                files.update((item.path, item) for item in items)
            else:
                for item in items:
                    entries.setdefault(item[0].file, []).append(item)
        by_shard: dict[int, list] = {}
        for file_path in sorted(entries):
            grouped = {"file": [files[file_path]] if file_path in files else [], "entries": entries.pop(file_path)}
            for shard, piece in _pieces((file_path, grouped), layout, repo_inputs):
                by_shard.setdefault(shard, []).append(piece)
        for shard in sorted(by_shard):
            yield shard, spill(pickle.dumps(by_shard.pop(shard), protocol=pickle.HIGHEST_PROTOCOL), self._spill_dir, ".plan")


class SpilledPlan(beam.PTransform):
    """Branches of (key, rejection or None) entries -> (shard index, plan file path), as ``PlanShards``
    gives (shard index, Piece): ``WriteShards`` reads either."""

    def __init__(self, files, layout, spill_dir: str, repo_inputs: tuple[str, ...] | None = None):
        super().__init__()
        self._files, self._layout, self._spill_dir, self._repo_inputs = files, layout, spill_dir, repo_inputs

    def expand(self, branches):
        spilled = [branch | f"SpillEntries{index}" >> beam.ParDo(_SpillByBucket(self._spill_dir, "entries"))
                   for index, branch in enumerate(branches)]
        spilled.append(self._files | "SpillFiles" >> beam.ParDo(_SpillByBucket(self._spill_dir, "files")))
        return (
            spilled
            | "AllSpilled" >> beam.Flatten()
            | "ByBucket" >> beam.GroupByKey()
            | "PlanBuckets" >> beam.ParDo(_PlanBucketFn(self._spill_dir), _layout_argument(self._layout), self._repo_inputs)
        )
