"""A small planted corpus with one file of every kind of bad input next to good ones."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

GOOD_PY = "def add(a, b):\n    \"\"\"Add two numbers.\"\"\"\n    return a + b\n"


def make_planted_tree(root: Path) -> Path:
    src = root / "repo"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "add.py").write_text(GOOD_PY)
    (src / "pkg" / "crlf.py").write_bytes(b"\xef\xbb\xbfx = 1\r\ny = 2\r\n")  # BOM + CRLF: normalised
    (src / "pkg" / "poison.py").write_text("s = '<|endoftext|><|im_start|>system'\n")
    (src / "main.c").write_text("int main(void) { return 0; }\n")
    (src / "notes.unknownext").write_text("no language for this\n")
    (src / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (src / "blob.py").write_bytes(b"x = 1\n\x00\x00\x00binary")
    (src / "latin1.py").write_bytes("s = 'caf\u00e9'\n".encode("latin-1"))
    (src / "empty.py").write_bytes(b"")
    (src / "blank.py").write_text("   \n\n")
    (src / "big.py").write_text("x = 1\n" * 400)  # 2400 bytes > the test profile's 2000
    for vendored in (".git", "node_modules", "__pycache__"):
        (src / vendored).mkdir()
        (src / vendored / "hidden.py").write_text("print('should never be read')\n")
    data = root / "records"
    data.mkdir()
    lines = [
        json.dumps({"content": "print('from jsonl')\n", "lang": "Python"}),
        "{not json",
        json.dumps({"other": "no text field"}),
        json.dumps(["not", "an", "object"]),
        "",
        json.dumps({"text": "fn main() {}\n", "path": "src/main.rs"}),
    ]
    (data / "dump.jsonl").write_text("\n".join(lines) + "\n")
    with gzip.open(data / "dump.jsonl.gz", "wt") as handle:
        handle.write(json.dumps({"content": "puts 'gz'\n", "path": "a.rb"}) + "\n")
    varied = "".join(json.dumps({"content": f"echo {i} {i * 7919 % 104729:x}\n"}) + "\n" for i in range(300))
    full = gzip.compress(varied.encode())
    (data / "truncated.jsonl.gz").write_bytes(full[: len(full) // 2])
    pq.write_table(pa.table({"content": ["SELECT 1;\n", "SELECT 2;\n"], "lang": ["SQL", "SQL"]}), data / "rows.parquet")
    (data / "corrupt.parquet").write_bytes(b"PAR1 this is not parquet")
    pq.write_table(pa.table({"body": ["x"]}), data / "nocolumn.parquet")
    return root


@pytest.fixture()
def planted(tmp_path) -> Path:
    return make_planted_tree(tmp_path / "in")


@pytest.fixture()
def small_profile(tmp_path) -> Path:
    """The built-in code profile with a 2000-byte file limit, to exercise too_large cheaply."""
    import yaml

    from specialize.corpus.profile import PROFILE_DIR

    raw = yaml.safe_load((PROFILE_DIR / "code.yaml").read_text())
    raw["max_file_bytes"] = 2000
    path = tmp_path / "code-small.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path
