"""Checking a training run's corpora before the first step: shared across ranks, remembered across restarts.

A 90B-token corpus is ~360 GB of shards; hashing it on rank 0 alone takes longer than NCCL's timeout
that the other ranks wait under, and did so again on every restart. Here every rank hashes its share
(shard i on rank i mod world) and the problems are gathered; once a corpus has passed, the run
remembers it in ``<cache_dir>/verified-shards.json`` by the manifest's sha256 and each shard's size and
modification time, and a restart whose files still match skips the hashing (the tokenizer and stray
files are still checked: they cost a listing, not a read).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from specialize.corpus import outputs
from specialize.corpus.manifest import MANIFEST_NAME, ShardProblem, verify_shards
from specialize.corpus.shards import sha256_of

VERIFIED_FILE = "verified-shards.json"


def corpus_stamp(directory: str) -> dict | None:
    """What identifies a verified corpus: the manifest's hash and each shard's (size, mtime); None when remote."""
    if outputs.is_remote(directory):
        return None  # object stores: no cheap stat here; verify every time
    manifest_bytes = (Path(directory) / MANIFEST_NAME).read_bytes()
    shards = {}
    for shard in json.loads(manifest_bytes)["shards"]:
        try:
            info = os.stat(Path(directory) / shard["path"])
        except FileNotFoundError:
            return {"manifest_sha256": "", "shards": {}}  # a missing shard never matches
        shards[shard["path"]] = [info.st_size, info.st_mtime_ns]
    return {"manifest_sha256": sha256_of(manifest_bytes), "shards": shards}


def _remembered(cache_dir: Path | None) -> dict:
    if cache_dir is None or not (cache_dir / VERIFIED_FILE).is_file():
        return {}
    try:
        return json.loads((cache_dir / VERIFIED_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}  # unreadable memory: verify again


def already_verified(directory: str, cache_dir: Path | None) -> bool:
    stamp = corpus_stamp(directory)
    return stamp is not None and _remembered(cache_dir).get(str(Path(directory).resolve())) == stamp


def remember_verified(directories: list[str], cache_dir: Path | None) -> None:
    if cache_dir is None:
        return
    remembered = _remembered(cache_dir)
    for directory in directories:
        stamp = corpus_stamp(directory)
        if stamp is not None:
            remembered[str(Path(directory).resolve())] = stamp
    cache_dir.mkdir(parents=True, exist_ok=True)
    temporary = cache_dir / (VERIFIED_FILE + ".tmp")
    temporary.write_text(json.dumps(remembered, indent=1), encoding="utf-8")
    temporary.replace(cache_dir / VERIFIED_FILE)


def check_part(directory: str, fingerprint: str, verify_checksums: bool, rank: int, world: int,
               cache_dir: Path | None) -> list[ShardProblem]:
    """This rank's share of the checks of one corpus (the manifest-level checks fall to rank 0)."""
    if not verify_checksums or already_verified(directory, cache_dir):
        if rank != 0:
            return []
        return verify_shards(directory, tokenizer_fingerprint=fingerprint, read_shards=False, strays=False)
    return verify_shards(directory, tokenizer_fingerprint=fingerprint, part=(rank, world), strays=False)
