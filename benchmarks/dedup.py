"""Near-dedup throughput: our Beam NearDedup vs datatrove's MinHash dedup, same data, same settings, one run.

Three sides, each in a fresh subprocess, on the same JSONL: ours, datatrove with its default English word
tokenizer (spaCy), and datatrove with a whitespace word tokenizer (its fastest configuration).

    python benchmarks/dedup.py [--workers 2] [--our-workers 1] [--copies 1] [--datatrove-venv DIR]
    python benchmarks/dedup.py --recall      # which edits the default settings catch (no datatrove)

Data: every ``.py`` file of the running Python's standard library (sysconfig ``stdlib``, no
site-packages) as JSONL ``{"id", "text"}``; ``--copies K`` appends K edited copies of 10% of the files
so there is something to remove. Every side reads that JSONL and writes the kept documents as JSONL.

Settings, every side: 5-word shingles, 14 bands x 8 rows (112 signature values: datatrove's from 112
permutations, ours from one permutation's 112 bins with densification), 32-bit signature values.
datatrove: ``--workers`` processes (``LocalPipelineExecutor(tasks=workers, workers=workers)``
for signatures and filtering, ``num_buckets`` tasks for buckets, 1 for clustering). Ours: as the corpus
build runs it with ``--workers N`` (``--our-workers``, default 1: FnApiRunner in one process, the
build's default; > 1: ``multi_processing`` SDK workers), measuring the texts, deciding on keys and
writing the kept documents from a second read filtered by the removed ids, as datatrove does. Ours
verifies candidate pairs with a Jaccard check (>= 0.7, on 256-hash shingle sketches) and datatrove
does not, so ours does strictly more work.

datatrove word tokenizers (``MinhashDedupSignature(language=...)``, resolved by
``datatrove.utils.word_tokenizers.load_word_tokenizer``, which also accepts a ``WordTokenizer`` instance):

- ``datatrove``: the default ``language=Languages.english`` ("eng"), i.e. ``SpaCyTokenizer("en")``, a blank
  spaCy English pipeline run on every document.
- ``datatrove-whitespace``: a ``WordTokenizer`` subclass whose ``word_tokenize`` is ``str.split``, passed as
  ``language``. datatrove's own ``WhitespaceTokenizer`` is not used because in 0.10.1 its ``word_tokenize``
  delegates to spaCy's blank ``"xx"`` pipeline and is no faster than the default. Signatures are computed on
  ``simplify_text`` output (lower-cased, punctuation turned into spaces, whitespace collapsed), so splitting on
  whitespace gives nearly the same words as spaCy.

datatrove pins a different pyarrow than this project, so it runs in its own virtual environment,
created on first use (``pip install datatrove[io,processing]==0.10.1 spacy``: its English word
tokenizer is spaCy's) under ``~/.cache/specialize/datatrove-venv``. Each side runs in a fresh
subprocess; peak memory is the largest sum of RSS over that process tree, sampled every 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATATROVE_REQUIREMENTS = ["datatrove[io,processing]==0.10.1", "spacy>=3.8"]
NGRAM, BANDS, ROWS = 5, 14, 8
SIDES = ["ours", "datatrove", "datatrove-whitespace"]


# ---------------------------------------------------------------------------------------------
# Data


def write_stdlib_jsonl(path: Path, copies: int) -> tuple[int, int]:
    import random

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in stdlib.rglob("*.py") if "site-packages" not in p.parts)
    rng = random.Random(0)
    count = size = 0
    with open(path, "w", encoding="utf-8") as out:
        records = []
        for file in files:
            try:
                text = file.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            records.append((str(file.relative_to(stdlib)), text))
        for k in range(copies):
            for name, text in rng.sample(records, len(records) // 10):
                lines = text.split("\n")
                i = rng.randrange(len(lines))
                records.append((f"copies/{k}/{name}", "\n".join(lines[:i] + ["# edited copy"] + lines[i + 1:])))
        for name, text in records:
            out.write(json.dumps({"id": name, "text": text}) + "\n")
            count += 1
            size += len(text.encode("utf-8"))
    return count, size


# ---------------------------------------------------------------------------------------------
# The sides (each runs in its own subprocess: `--side ours|datatrove|datatrove-whitespace`)


def run_ours(data: Path, out: Path, workers: int) -> None:
    sys.path.insert(0, str(REPO))
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from beam_jobs.corpus_wide import Measure
    from beam_jobs.dedup import NearDedup, NearDedupSettings
    from specialize.corpus.document import Document
    from specialize.dedup.minhash import MinHashConfig

    def to_document(line: str) -> Document:
        record = json.loads(line)
        return Document(text=record["text"], source=record["id"], domain="code", language="python")

    from beam_jobs.runner import local_running_mode

    mode = local_running_mode(workers)  # as `corpus build --workers N` runs: 1 is one process (the default)
    options = PipelineOptions(flags=[], direct_num_workers=workers, direct_running_mode=mode)
    settings = NearDedupSettings(minhash=MinHashConfig(ngram=NGRAM, bands=BANDS, rows=ROWS))
    with beam.Pipeline(runner=FnApiRunner(), options=options) as pipeline:
        # As the corpus build runs it (and as datatrove does): the stage measures the texts and decides on
        # keys; the kept texts come from a second read, filtered by the removed ids. No text is shuffled.
        stage = NearDedup(settings, stats_dir=str(out / "stats"))
        documents = pipeline | "Read" >> beam.io.ReadFromText(str(data)) | "Parse" >> beam.Map(to_document)
        documents | "Measure" >> Measure(stage)
        _, removed = documents | "Keys" >> beam.Map(Document.key) | "NearDedup" >> stage
        removed_ids = removed | "RemovedIds" >> beam.Map(lambda pair: pair[0].source)
        gone = beam.pvalue.AsDict(removed_ids | "AsPairs" >> beam.Map(lambda source: (source, True)))
        (pipeline
         | "ReadAgain" >> beam.io.ReadFromText(str(data))
         | "Kept" >> beam.Filter(lambda line, gone: json.loads(line)["id"] not in gone, gone=gone)
         | "WriteKept" >> beam.io.WriteToText(str(out / "kept" / "part"), file_name_suffix=".jsonl"))
        removed_ids | "WriteRemoved" >> beam.io.WriteToText(str(out / "removed" / "part"), file_name_suffix=".txt")


def run_datatrove(data: Path, out: Path, workers: int, whitespace: bool = False) -> None:
    """datatrove's four MinHash stages; ``whitespace`` swaps its default spaCy tokenizer for ``str.split``."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import MinhashDedupCluster, MinhashDedupFilter, MinhashDedupSignature
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupBuckets
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.hashing import HashConfig
    from datatrove.utils.typeshelper import Languages
    from datatrove.utils.word_tokenizers import WordTokenizer

    class SplitTokenizer(WordTokenizer):
        """Whitespace split; only ``word_tokenize`` is used by MinHash (the rest is for the ABC)."""

        def word_tokenize(self, text: str) -> list[str]:
            return text.split()

        def sent_tokenize(self, text: str) -> list[str]:
            return [text]

        def span_tokenize(self, text: str) -> list[tuple[int, int]]:
            return [(0, len(text))]

    language = SplitTokenizer() if whitespace else Languages.english
    config = MinhashConfig(n_grams=NGRAM, num_buckets=BANDS, hashes_per_bucket=ROWS,
                           hash_config=HashConfig(precision=32))
    reader = lambda: JsonlReader(str(data.parent), glob_pattern=data.name, id_key="id", text_key="text")  # noqa: E731
    logs = str(out / "logs")
    stage1 = LocalPipelineExecutor(
        pipeline=[reader(), MinhashDedupSignature(output_folder=str(out / "signatures"), config=config,
                                                 language=language)],
        tasks=workers, workers=workers, logging_dir=f"{logs}/signatures", skip_completed=False)
    stage2 = LocalPipelineExecutor(
        pipeline=[MinhashDedupBuckets(input_folder=str(out / "signatures"), output_folder=str(out / "buckets"),
                                      config=config)],
        tasks=BANDS, workers=workers, logging_dir=f"{logs}/buckets", depends=stage1, skip_completed=False)
    stage3 = LocalPipelineExecutor(
        pipeline=[MinhashDedupCluster(input_folder=str(out / "buckets"), output_folder=str(out / "remove_ids"),
                                      config=config)],
        tasks=1, logging_dir=f"{logs}/clusters", depends=stage2, skip_completed=False)
    stage4 = LocalPipelineExecutor(
        pipeline=[reader(),
                  MinhashDedupFilter(input_folder=str(out / "remove_ids"),
                                     exclusion_writer=JsonlWriter(str(out / "removed"), compression=None)),
                  JsonlWriter(str(out / "kept"), compression=None)],
        tasks=workers, workers=workers, logging_dir=f"{logs}/filter", depends=stage3, skip_completed=False)
    stage4.run()


# ---------------------------------------------------------------------------------------------
# Driver


def _peak_tree_rss(process: subprocess.Popen, stop: threading.Event, peak: list[int]) -> None:
    import psutil

    root = psutil.Process(process.pid)
    while not stop.is_set():
        try:
            total = root.memory_info().rss + sum(c.memory_info().rss for c in root.children(recursive=True))
            peak[0] = max(peak[0], total)
        except psutil.Error:
            pass
        time.sleep(0.05)


def measure(command: list[str], env: dict | None = None) -> tuple[float, int]:
    """(wall seconds, peak process-tree RSS bytes) of a subprocess; raises if it fails."""
    stop, peak = threading.Event(), [0]
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watcher = threading.Thread(target=_peak_tree_rss, args=(process, stop, peak), daemon=True)
    watcher.start()
    output, _ = process.communicate()
    wall = time.perf_counter() - start
    stop.set()
    watcher.join()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} ... failed ({process.returncode}):\n{output[-3000:]}")
    return wall, peak[0]


def ensure_datatrove_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import datatrove, spacy, regex, xxhash"]
    if python.is_file() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"creating {venv} with {' '.join(DATATROVE_REQUIREMENTS)} (once) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *DATATROVE_REQUIREMENTS], check=True)
    return python


def _count_lines(pattern: Path, suffix: str) -> int:
    return sum(sum(1 for _ in open(f, encoding="utf-8")) for f in sorted(pattern.rglob(f"*{suffix}")))


def recall_table(files: int = 300, seed: int = 0) -> None:
    """Which edits the default settings catch: share an LSH band with the original AND exact Jaccard >= 0.7.

    Plain functions, one process (no Beam, no datatrove): it characterises the thresholds, not speed.
    """
    import random
    import re

    sys.path.insert(0, str(REPO))
    from specialize.dedup.minhash import MinHasher, jaccard

    rng = random.Random(seed)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in sorted(stdlib.glob("*.py"))]
    texts = [t for t in texts if len(t) > 2000]
    texts = rng.sample(texts, min(files, len(texts)))
    filler = [line for t in texts for line in t.split("\n") if len(line.strip()) > 20]

    def edit_lines(text: str, share: float) -> str:
        lines = text.split("\n")
        for i in rng.sample(range(len(lines)), int(len(lines) * share)):
            lines[i] = rng.choice(filler)
        return "\n".join(lines)

    def rename(text: str, count: int) -> str:
        names = [n for n, _ in __import__("collections").Counter(re.findall(r"\b[a-z_][a-z0-9_]{3,}\b", text)).most_common(count)]
        for k, name in enumerate(names):
            text = re.sub(rf"\b{name}\b", f"renamed_{k}", text)
        return text

    def recomment(text: str) -> str:
        return "\n".join(line.split("#")[0] + "# reworded comment" if "#" in line else line for line in text.split("\n"))

    variants = {"5% lines edited": lambda t: edit_lines(t, 0.05), "10% lines edited": lambda t: edit_lines(t, 0.10),
                "20% lines edited": lambda t: edit_lines(t, 0.20), "30% lines edited": lambda t: edit_lines(t, 0.30),
                "1 identifier renamed": lambda t: rename(t, 1), "3 identifiers renamed": lambda t: rename(t, 3),
                "every comment reworded": recomment}
    from specialize.dedup.minhash import MinHashConfig

    settings = {"default (5-gram, 14x8, J>=0.7)": (MinHasher(), 0.7),
                "looser (3-gram, 20x5, J>=0.5)": (MinHasher(MinHashConfig(ngram=3, bands=20, rows=5)), 0.5)}
    print(f"near-duplicate detection of edited copies of {len(texts)} stdlib modules > 2 kB "
          "(detected = shares an LSH band with the original and passes the Jaccard check)")
    print(f"{'edit':26s}" + "".join(f"{label:>34s}" for label in settings))
    for name, edit in variants.items():
        cells = []
        edited = [edit(text) for text in texts]
        for hasher, threshold in settings.values():
            hits, sims = 0, []
            for text, copy in zip(texts, edited):
                a, b = hasher.shingles(text), hasher.shingles(copy)
                sa, sb = hasher.signature_of_shingles(a), hasher.signature_of_shingles(b)
                candidate = bool(set(hasher.band_keys(sa)) & set(hasher.band_keys(sb)))
                similarity = jaccard(a, b)
                sims.append(similarity)
                hits += candidate and similarity >= threshold
            cells.append(f"detected {hits / len(texts):.2f}, mean J {sum(sims) / len(sims):.2f}")
        print(f"{name:26s}" + "".join(f"{cell:>34s}" for cell in cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recall", action="store_true", help="print which edits near dedup catches, then exit")
    parser.add_argument("--workers", type=int, default=2, help="datatrove's worker processes")
    parser.add_argument("--our-workers", type=int, default=1, help="ours: corpus build --workers (1: one process, the default)")
    parser.add_argument("--copies", type=int, default=1, help="edited copies of 10%% of the files to plant")
    parser.add_argument("--datatrove-venv", type=Path, default=Path.home() / ".cache" / "specialize" / "datatrove-venv")
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side == "ours":
        return run_ours(args.data, args.out, args.our_workers)
    if args.side in ("datatrove", "datatrove-whitespace"):
        return run_datatrove(args.data, args.out, args.workers, whitespace=args.side == "datatrove-whitespace")
    if args.recall:
        return recall_table()

    datatrove_python = ensure_datatrove_venv(args.datatrove_venv)
    version = subprocess.run([str(datatrove_python), "-c", "from importlib.metadata import version; print(version('datatrove'))"],
                             capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data_dir = tmp / "data"
        data_dir.mkdir()
        data = data_dir / "stdlib.jsonl"
        docs, size = write_stdlib_jsonl(data, args.copies)
        print(f"data: {docs} documents, {size / 1e6:.1f} MB (Python {sys.version.split()[0]} stdlib + "
              f"{args.copies} edited copies of 10%); 5-word shingles, {BANDS}x{ROWS} MinHash; datatrove {args.workers} workers, "
              f"ours {args.our_workers} (corpus build --workers)")
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        results = {}
        for side in SIDES:
            python = sys.executable if side == "ours" else str(datatrove_python)
            out = tmp / side
            command = [python, __file__, "--side", side, "--data", str(data), "--out", str(out),
                       "--workers", str(args.workers), "--our-workers", str(args.our_workers)]
            wall, peak = measure(command, env if side == "ours" else None)
            removed = _count_lines(out / "removed", ".txt" if side == "ours" else ".jsonl")
            kept = _count_lines(out / "kept", ".jsonl")
            results[side] = (wall, peak, removed, kept)
        labels = {"ours": "specialize (Beam)", "datatrove": f"datatrove {version} (spaCy)",
                  "datatrove-whitespace": f"datatrove {version} (whitespace)"}
        print(f"{'':32s}{'wall s':>8s}{'docs/s':>9s}{'MB/s':>7s}{'peak RSS MB':>13s}{'removed':>9s}{'kept':>7s}")
        for side, (wall, peak, removed, kept) in results.items():
            print(f"{labels[side]:32s}{wall:8.1f}{docs / wall:9.1f}{size / 1e6 / wall:7.2f}{peak / 2**20:13.0f}"
                  f"{removed:9d}{kept:7d}")
        for side in SIDES[1:]:
            speedup = results[side][0] / results["ours"][0]
            print(f"speed-up (docs/s, ours / {labels[side]}): {speedup:.2f}x")


if __name__ == "__main__":
    main()
