"""A local runner's shard plan, grouped in spill files (beam_jobs/spilled_plan.py), writes the same
shards and the same rejections as the in-pipeline plan a distributed runner uses (PlanShards)."""

from __future__ import annotations

import json
from pathlib import Path

import apache_beam as beam
import pytest

import beam_jobs.corpus_build as corpus_build
from beam_jobs.corpus_build import BuildSettings, run_build
from beam_jobs.shard_writing import PlanShards
from beam_jobs.spilled_plan import PLAN_BUCKETS, _SpillByBucket, load_spilled
from specialize.corpus.manifest import build_stats_dir, read_manifest


class _InPipelinePlan(beam.PTransform):
    """What a distributed runner's build does with the same branches: Flatten, then PlanShards."""

    def __init__(self, files, layout, spill_dir, repo_inputs=None):
        super().__init__()
        self._files, self._layout, self._repo_inputs = files, layout, repo_inputs

    def expand(self, branches):
        return branches | beam.Flatten() | PlanShards(self._files, self._layout, self._repo_inputs)


def _corpus(root: Path) -> list[str]:
    repos = root / "repos"
    for repo in ("alpha", "beta", "gamma"):
        for index in range(6):
            body = "".join(f"def {repo}_{index}_{n}(value):\n    return value * {n} + {index}\n\n" for n in range(12))
            if index == 5:  # the same module in every repository: exact duplicates to reject
                body = "".join(f"def shared_{n}(value):\n    return value - {n}\n\n" for n in range(12))
            path = repos / repo / f"module_{index}.py"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body)
    dump = root / "dump" / "records.jsonl"
    dump.parent.mkdir(parents=True)
    lines = []
    for index in range(120):
        number = index % 100  # 20 repeated records
        text = "".join(f"def record_{number}_{n}(items):\n    return [item + {n} for item in items]\n\n" for n in range(8))
        lines.append(json.dumps({"text": text, "source": f"rec-{index}"}))
    dump.write_text("\n".join(lines) + "\n")
    return [str(repos), str(dump.parent)]


def _build(inputs: list[str], out: Path, repo_level: bool) -> tuple[list[tuple], dict]:
    run_build(BuildSettings(domain="code", inputs=inputs, output=str(out), num_shards=3, workers=1, repo_level=repo_level,
                            shard_text_bytes=4096))
    manifest = read_manifest(str(out))
    shards = [(shard["rows"], shard["tokens"], shard["sha256"]) for shard in manifest["shards"]]
    rejections = json.loads(Path(build_stats_dir(str(out), manifest["build_id"]), "rejections.json").read_text())
    return shards, rejections


@pytest.mark.parametrize("repo_level", [False, True])
def test_the_spilled_plan_writes_what_the_in_pipeline_plan_writes(tmp_path, monkeypatch, repo_level):
    inputs = _corpus(tmp_path / "in")
    spilled = _build(inputs, tmp_path / "spilled", repo_level)
    monkeypatch.setattr(corpus_build, "SpilledPlan", _InPipelinePlan)
    in_pipeline = _build(inputs, tmp_path / "in-pipeline", repo_level)
    assert spilled == in_pipeline
    shards, rejections = spilled
    # which shards fill hangs on the hashes of the (temporary) paths: a dump's pieces spread over all of
    # them, three repositories may share one
    assert len(shards) >= (1 if repo_level else 2) and all(rows for rows, _, _ in shards)
    assert rejections["exact_dedup"]["exact_duplicate"]["documents"] >= 2 + (0 if repo_level else 20)


def test_spilled_entries_are_grouped_by_a_stable_hash_of_their_file_and_read_back_in_order(tmp_path, monkeypatch):
    from types import SimpleNamespace

    monkeypatch.setattr("beam_jobs.spilled_plan.SPILL_EVERY", 3)  # several appends to the same bucket file
    fn = _SpillByBucket(str(tmp_path), "entries")
    fn.start_bundle()
    entries = [(SimpleNamespace(file=f"/data/file-{index % 5}.jsonl"), index) for index in range(20)]
    for entry in entries:
        fn.process(entry)
    emitted = [value.value for value in fn.finish_bundle()]
    assert len({bucket for bucket, _ in emitted}) == len(emitted) and all(0 <= b < PLAN_BUCKETS for b, _ in emitted)
    back = {path: load_spilled(path) for _, path in emitted}
    assert sorted(index for items in back.values() for _, index in items) == list(range(20))
    for items in back.values():  # one file per bucket, its entries in the order they came
        assert [index for _, index in items] == sorted(index for _, index in items)
    files_of = {path: {key.file for key, _ in items} for path, items in back.items()}
    assert sum(len(files) for files in files_of.values()) == 5  # a file's entries never span two buckets
