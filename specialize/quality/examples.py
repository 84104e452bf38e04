"""Reading labelled examples for ``specialize quality train``: files, folders, JSONL and Parquet."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

TEXT_FIELDS = ("text", "content", "code")
MAX_FILE_BYTES = 4 << 20


def _record_text(record, path: Path, where: str) -> str:
    if not isinstance(record, dict):
        raise ValueError(f"{path}: {where} is not an object")
    for field in TEXT_FIELDS:
        if isinstance(record.get(field), str):
            return record[field]
    raise ValueError(f"{path}: {where} has none of the text fields {', '.join(TEXT_FIELDS)}")


def read_examples(path: str | Path) -> list[str]:
    """Texts from ``path``: a JSONL(.gz) or Parquet file (one example per record, field text/content/code),
    any other file (one example), or a folder (every file below it, recursively, sorted)."""
    path = Path(path)
    if path.is_dir():
        return [text for child in sorted(p for p in path.rglob("*") if p.is_file()) for text in read_examples(child)]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file or folder of examples")
    name = path.name.lower()
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        return [_record_text(r, path, f"row {i}") for i, r in enumerate(pq.read_table(path).to_pylist())]
    if name.endswith((".jsonl", ".jsonl.gz")):
        opener = gzip.open if name.endswith(".gz") else open
        texts = []
        with opener(path, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as err:
                        raise ValueError(f"{path}: line {number} is not valid JSON ({err})") from None
                    texts.append(_record_text(record, path, f"line {number}"))
        return texts
    data = path.read_bytes()[:MAX_FILE_BYTES]
    if b"\0" in data[:8192]:
        return []  # binary: not an example
    return [data.decode("utf-8", errors="replace")]
