"""Corpus building blocks that run without Beam: reading, normalising, shard format, manifest."""
