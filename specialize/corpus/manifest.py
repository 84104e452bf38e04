"""``manifest.json``: what a corpus build produced, how, and what it dropped.

The manifest is assembled by the launcher after the pipeline finishes, from the per-shard statistics the
workers wrote next to each shard (``_stats/``): no worker ever needs the whole picture. Training checks
shards against it (tokenizer fingerprint, sha256) before its first step; ``corpus verify`` does too.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass

from specialize.corpus import outputs
from specialize.corpus.shards import SHARD_SUFFIX, open_shard, sha256_of

MANIFEST_NAME = "manifest.json"
FORMAT = "specialize-corpus-v1"
STATS_DIR = "_stats"
EXAMPLES_PER_REASON = 5


def _ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def assemble_manifest(
    output_dir: str,
    *,
    build_id: str | None = None,
    domain: str,
    tokenizer: dict,
    seq_length: int,
    inputs: list[dict],
    discovery: dict,
    settings: dict,
) -> dict:
    """Combine the workers' shard statistics and rejection counts into the manifest (and write it).

    Reads only this build's statistics (``_stats/<build_id>/``); writing ``manifest.json`` (atomically)
    is what switches readers from the previous build to this one.
    """
    stats_dir = build_stats_dir(output_dir, build_id)
    shard_stats = [
        json.loads(outputs.read_bytes(outputs.join(stats_dir, name)))
        for name in outputs.list_names(stats_dir, "shard-")
        if name.endswith(".json")
    ]
    shard_stats.sort(key=lambda s: s["path"])
    rejections_path = outputs.join(stats_dir, "rejections.json")
    rejections = json.loads(outputs.read_bytes(rejections_path)) if outputs.list_names(stats_dir, "rejections.json") else {}
    for reason, count in discovery.get("pruned_dir_count", {}).items():
        rejections.setdefault("discover", {})[reason] = {"documents": count, "bytes": 0}
    samples_path = outputs.join(stats_dir, "rejected-samples.jsonl")
    if outputs.list_names(stats_dir, "rejected-samples.jsonl"):
        for line in outputs.read_bytes(samples_path).decode("utf-8").splitlines():
            sample = json.loads(line)
            entry = rejections.get(sample["stage"], {}).get(sample["reason"])
            if entry is not None and len(entry.setdefault("examples", [])) < EXAMPLES_PER_REASON:
                entry["examples"].append({"source": sample["source"], "detail": sample["detail"]})
    for reason, dirs in discovery.get("pruned_dirs", {}).items():
        rejections["discover"][reason]["examples"] = [{"source": d, "detail": "folder skipped"} for d in dirs[:EXAMPLES_PER_REASON]]

    languages: dict[str, dict[str, int]] = {}
    for shard in shard_stats:
        for language, figures in shard.pop("languages").items():
            entry = languages.setdefault(language, {"documents": 0, "tokens": 0, "text_bytes": 0})
            for key in entry:
                entry[key] += figures[key]
    for entry in languages.values():
        entry["bytes_per_token"] = _ratio(entry["text_bytes"], entry["tokens"])
    documents = sum(s["rows"] for s in shard_stats)
    tokens = sum(s["tokens"] for s in shard_stats)
    text_bytes = sum(s["text_bytes"] for s in shard_stats)
    manifest = {
        "format": FORMAT,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "build_id": build_id,  # its statistics are in _stats/<build_id>/ (stats_dir_of_manifest)
        "domain": domain,
        "tokenizer": tokenizer,
        "seq_length": seq_length,
        "settings": settings,
        "inputs": inputs,
        "shards": shard_stats,
        "totals": {
            "documents": documents,
            "tokens": tokens,
            "text_bytes": text_bytes,
            "bytes_per_token": _ratio(text_bytes, tokens),
            "training_samples": tokens // (seq_length + 1) if seq_length else None,
        },
        "languages": dict(sorted(languages.items(), key=lambda kv: -kv[1]["tokens"])),
        "removed": rejections,
        "discovery": discovery,
        # stage facts beyond removal counts (near-dedup convergence, decontamination item ids, up-sampling)
        "stages": {name[len("stage-"):-len(".json")]: json.loads(outputs.read_bytes(outputs.join(stats_dir, name)))
                   for name in outputs.list_names(stats_dir, "stage-") if name.endswith(".json")},
    }
    manifest["warnings"] = build_warnings(manifest)
    outputs.write_atomic(outputs.join(output_dir, MANIFEST_NAME), json.dumps(manifest, indent=1).encode())
    return manifest


def build_warnings(manifest: dict) -> list[str]:
    """What a user must look at although the build succeeded (the CLI prints them; ``--strict`` fails)."""
    warnings = []
    near = manifest["stages"].get("near_dedup")
    if near and not near.get("converged", True):
        warnings.append(
            f"near dedup: connected components did not converge in {near.get('rounds')} rounds "
            f"({near.get('unconverged_nodes')} documents still off a star): some near-duplicate clusters keep "
            f"more than one document. Rebuild with --near-dedup rounds={2 * int(near.get('rounds') or 8)}")
    unreadable = manifest["removed"].get("read", {}).get("unreadable")
    if unreadable:
        examples = ", ".join(e["source"] for e in unreadable.get("examples", [])[:3])
        warnings.append(f"{unreadable['documents']} input file(s) or part(s) unreadable (records lost): {examples}")
    return warnings


def build_stats_dir(output_dir: str, build_id: str | None) -> str:
    return outputs.join(output_dir, STATS_DIR, build_id) if build_id else outputs.join(output_dir, STATS_DIR)


def stats_dir_of_manifest(directory: str, manifest: dict) -> str:
    """Where this build's statistics are (builds before build ids: ``_stats/``)."""
    return build_stats_dir(directory, manifest.get("build_id"))


def read_manifest(directory: str) -> dict:
    path = outputs.join(directory, MANIFEST_NAME)
    try:
        manifest = json.loads(outputs.read_bytes(path))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no manifest; is {directory} the output of `specialize corpus build`?") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: manifest is not valid JSON ({err})") from err
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown manifest format {manifest.get('format')!r} (expected {FORMAT})")
    return manifest


@dataclass(frozen=True)
class ShardProblem:
    shard: str
    problem: str


def verify_shards(directory: str, *, tokenizer_fingerprint: str | None = None, part: tuple[int, int] = (0, 1),
                  read_shards: bool = True, strays: bool = True) -> list[ShardProblem]:
    """Check every shard against the manifest: present, same sha256, rows and tokens; no strays.

    Returns the problems found (empty list: all good). With ``tokenizer_fingerprint`` the manifest's
    tokenizer must match too (training passes its model's tokenizer). ``part=(i, n)`` checks only
    shards i, i+n, i+2n... (and the manifest-level checks only in part 0), so n ranks can share the
    hashing of a large corpus. ``read_shards=False`` keeps only the checks that read no shard.
    ``strays=False`` does not report shard files the manifest does not list (training reads only
    listed shards, so a rebuild running or failed beside the current build must not stop it).
    """
    index, parts = part
    manifest = read_manifest(directory)
    problems: list[ShardProblem] = []
    if index == 0 and tokenizer_fingerprint and manifest["tokenizer"]["fingerprint"] != tokenizer_fingerprint:
        problems.append(ShardProblem(MANIFEST_NAME, (
            f"tokenizer fingerprint {manifest['tokenizer']['fingerprint']} ({manifest['tokenizer'].get('name')}) "
            f"differs from the model's {tokenizer_fingerprint}: rebuild the corpus with the model's tokenizer")))
    listed = {s["path"] for s in manifest["shards"]}
    for name in outputs.list_names(directory, "shard-") if index == 0 and strays else ():
        if name.endswith(SHARD_SUFFIX) and name not in listed:
            problems.append(ShardProblem(name, "shard file not listed in the manifest (from a build that failed, "
                                               "was cancelled or is running; the next successful build removes it)"))
    for shard in manifest["shards"][index::parts] if read_shards else ():
        path = outputs.join(directory, shard["path"])
        try:
            data = outputs.read_bytes(path)
        except (FileNotFoundError, OSError):
            problems.append(ShardProblem(shard["path"], "missing"))
            continue
        if sha256_of(data) != shard["sha256"]:
            problems.append(ShardProblem(shard["path"], "sha256 differs from the manifest (corrupt or replaced)"))
            continue
        if not outputs.is_remote(path):
            table = open_shard(path)
            column = table.column("tokens")
            tokens = sum(len(chunk.values) for chunk in column.chunks)
            if table.num_rows != shard["rows"] or tokens != shard["tokens"]:
                problems.append(ShardProblem(shard["path"], f"rows/tokens {table.num_rows}/{tokens} != manifest {shard['rows']}/{shard['tokens']}"))
    return problems
