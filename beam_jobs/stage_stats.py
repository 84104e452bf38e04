"""Stage figures that are not per-document rejections (dedup convergence, decontamination item ids).

Rejections are counted by ``beam_jobs.stages.ReportRejections``; some stages also have facts about the
whole run (how many candidate pairs near-dedup verified, which benchmark items matched). Each such
stage emits small dicts; ``WriteStageStats`` merges them (numbers add, lists union, sorted) and writes
``_stats/stage-<name>.json``, which the manifest assembler folds into ``manifest["stages"][name]``.
"""

from __future__ import annotations

import json

import apache_beam as beam

from specialize.corpus.outputs import join, write_atomic

STAGE_STATS_PREFIX = "stage-"


def merge_stats(dicts) -> dict:
    """Numbers add, lists and sets union (sorted), nested dicts merge recursively, booleans AND."""
    merged: dict = {}
    for item in dicts:
        for key, value in item.items():
            if key not in merged:
                merged[key] = merge_stats([value]) if isinstance(value, dict) else (
                    sorted(set(value)) if isinstance(value, (list, set, tuple)) else value)
            elif isinstance(value, bool):
                merged[key] = merged[key] and value
            elif isinstance(value, (int, float)):
                merged[key] += value
            elif isinstance(value, dict):
                merged[key] = merge_stats([merged[key], value])
            elif isinstance(value, (list, set, tuple)):
                merged[key] = sorted(set(merged[key]) | set(value))
            else:
                merged[key] = value
    return merged


class WriteStageStats(beam.PTransform):
    """PCollection[dict] -> ``<stats_dir>/stage-<name>.json`` (written even when the input is empty)."""

    def __init__(self, stats_dir: str, name: str, base: dict | None = None, finalize=None):
        super().__init__(f"WriteStageStats[{name}]")
        self._stats_dir, self._name, self._base = stats_dir, name, dict(base or {})
        self._finalize = finalize  # optional dict -> dict (e.g. derive "converged" from counts)

    def expand(self, stats):
        stats_dir, name, base, finalize = self._stats_dir, self._name, self._base, self._finalize

        def write(merged: dict) -> None:
            payload = merge_stats([base, merged])
            if finalize is not None:
                payload = finalize(payload)
            write_atomic(join(stats_dir, f"{STAGE_STATS_PREFIX}{name}.json"), json.dumps(payload, indent=1).encode())

        return stats | "Merge" >> beam.CombineGlobally(merge_stats) | "Write" >> beam.Map(write)
