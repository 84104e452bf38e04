"""Shared fixtures: paths into ../shared (skipped with a reason when absent) and small helpers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SPECIALIZE_SHARED", REPO.parent / "shared"))

if str(REPO) not in sys.path:  # beam_jobs/ is importable from a plain checkout too
    sys.path.insert(0, str(REPO))


@pytest.fixture(scope="session")
def qwen_tiktoken() -> Path:
    path = SHARED / "tokenizers" / "qwen.tiktoken"
    if not path.is_file():
        pytest.skip(f"real Qwen vocabulary not found at {path} (set SPECIALIZE_SHARED to the shared/ folder)")
    return path


@pytest.fixture(scope="session")
def gsm8k_dir() -> Path:
    path = SHARED / "benchmarks" / "gsm8k"
    if not (path / "test.jsonl").is_file():
        pytest.skip(f"GSM8K not found at {path} (set SPECIALIZE_SHARED to the shared/ folder)")
    return path
