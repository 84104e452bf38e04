"""Deduplication: exact (hash of normalised text) and near-duplicate (MinHash + LSH).

The plain functions live here; ``beam_jobs/dedup.py`` wires them into Beam transforms.
"""
