"""Exact deduplication key: a hash of the text after whitespace normalisation.

Two files that differ only in indentation width, trailing spaces, blank lines or line endings are the
same training signal, so they hash alike. Case and punctuation are kept: ``Foo`` and ``foo`` differ in
code. Anything looser is the near-duplicate stage's job.
"""

from __future__ import annotations

import hashlib


def normalize_for_exact(text: str) -> str:
    """Collapse every run of whitespace to one space and strip the ends (``str.split`` runs in C)."""
    return " ".join(text.split())


def exact_key(text: str) -> bytes:
    """16-byte BLAKE2b digest of the normalised text: collisions are negligible at corpus scale."""
    return hashlib.blake2b(normalize_for_exact(text).encode("utf-8"), digest_size=16).digest()
