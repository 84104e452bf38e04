"""The rejection report: exact counts and the smallest sources' samples, summed where each branch rejects."""

from __future__ import annotations

import json
import random

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from beam_jobs.stages import ReportRejections
from specialize.corpus.document import Rejection


def test_report_sums_every_branch_and_keeps_the_smallest_sources_per_reason(tmp_path):
    rng = random.Random(2)
    branches = [[Rejection(stage, rng.choice(["a", "b"]), f"src/{rng.randint(0, 10**6):07d}", rng.randint(1, 99),
                           "why", "text")
                 for _ in range(rng.randint(0, 300))] for stage in ("rules", "rules", "near_dedup")]
    options = PipelineOptions(flags=[], direct_num_workers=2, direct_running_mode="multi_threading")
    with beam.Pipeline(runner=FnApiRunner(), options=options) as pipeline:
        pcolls = tuple(pipeline | f"Branch{i}" >> beam.Create(branch) for i, branch in enumerate(branches))
        _ = pcolls | ReportRejections(str(tmp_path), samples_per_reason=5)
    every = [r for branch in branches for r in branch]
    counts = json.loads((tmp_path / "rejections.json").read_text())
    samples = [json.loads(line) for line in (tmp_path / "rejected-samples.jsonl").read_text().splitlines()]
    for stage, reason in {(r.stage, r.reason) for r in every}:
        mine = [r for r in every if (r.stage, r.reason) == (stage, reason)]
        assert counts[stage][reason] == {"documents": len(mine), "bytes": sum(r.num_bytes for r in mine)}
        shown = [s["source"] for s in samples if (s["stage"], s["reason"]) == (stage, reason)]
        assert shown == sorted(r.source for r in mine)[:5]
    assert sum(len(reasons) for reasons in counts.values()) == len({(r.stage, r.reason) for r in every})
