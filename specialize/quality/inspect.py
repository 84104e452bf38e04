"""Reading back what a build removed, to tune thresholds by looking at examples.

The build keeps the first removed documents of every (stage, reason), by source, in
``_stats/<build id>/rejected-samples.jsonl`` (text truncated; secrets redacted); the counts are in the manifest.
"""

from __future__ import annotations

import json

from specialize.corpus import outputs
from specialize.corpus.manifest import read_manifest, stats_dir_of_manifest

SAMPLES_NAME = "rejected-samples.jsonl"


def removed_samples(directory: str, *, reason: str | None = None, stage: str | None = None) -> list[dict]:
    """Samples ``{stage, reason, source, bytes, detail, text}`` matching ``reason`` / ``stage`` (None: any)."""
    manifest = read_manifest(directory)  # a clear error when DIR is not a build output
    path = outputs.join(stats_dir_of_manifest(directory, manifest), SAMPLES_NAME)
    try:
        lines = outputs.read_bytes(path).decode("utf-8").splitlines()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no removed-document samples (built by an older version?)") from None
    samples = [json.loads(line) for line in lines if line.strip()]
    chosen = [s for s in samples if (reason is None or s["reason"] == reason) and (stage is None or s["stage"] == stage)]
    if not chosen and (reason or stage):
        known = sorted({f"{st}/{r}" for st, reasons in manifest.get("removed", {}).items() for r in reasons})
        raise ValueError(f"no removed documents for stage={stage or '*'} reason={reason or '*'} in {directory}; "
                         f"removed there: {', '.join(known) or 'nothing'}")
    return chosen
