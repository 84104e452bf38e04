"""Corpus build throughput on the Python standard library sources vs raw tiktoken.

    python benchmarks/corpus_build.py [--tokenizer ../shared/tokenizers/qwen.tiktoken] [--workers 2] [--input DIR ...]
    python benchmarks/corpus_build.py --runner-mode multi_threading --threads 4   # bundles on threads (as Dataflow)

Prints, for the whole pipeline (discovery, read, normalise, tokenize, shuffle to shards, write,
manifest), with the quality stages off and on, MB/s and docs/s, next to tiktoken's ``encode_ordinary_batch`` over the same documents
with the same vocabulary (text already in memory: the upper bound for tokenization alone).
Target (issue 2): pipeline >= 50% of raw tiktoken throughput on 2 cores. Workers default to what the
CLI chooses (one process per 32 MiB of input, at most one per core); ``--workers N`` fixes them. A
larger input shows the throughput once the fixed cost (graph, worker start-up: ~3 s) is paid, e.g.
``--input .venv/lib/python3.11/site-packages/torch --input .venv/lib/python3.11/site-packages/transformers``
(137 MB of code the build has never seen).

With ``--stage-shares`` it prints the default build's wall time beside each stage's own CPU time on the
same documents, measured in one process without Beam (reading, rules, secrets, exact and near dedup,
decontamination, tokenization), and the rest: the runner's per-stage set-up, the shuffles of keys and
the launcher. (Switching one stage off at a time, as this used to, measured noise: builds differ by
more than a small stage costs.)

With ``--runner-mode multi_threading --threads N`` the builds run N bundles at once on threads of one
process (what a Dataflow worker does) and are compared with the same build in the default mode:
throughput of each and whether the shards are identical (sha256).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from beam_jobs.corpus_build import BuildSettings, run_build  # noqa: E402
from beam_jobs.quality import QualityConfig  # noqa: E402
from beam_jobs.runner import default_workers  # noqa: E402
from specialize.corpus.defaults import stdlib_source_dir  # noqa: E402
from specialize.corpus.document import Document  # noqa: E402
from specialize.corpus.profile import load_profile  # noqa: E402
from specialize.corpus.sources import discover_inputs, read_input_file  # noqa: E402
from specialize.tokenization import load_tokenizer  # noqa: E402

DEFAULT_QWEN = Path(__file__).resolve().parent.parent.parent / "shared" / "tokenizers" / "qwen.tiktoken"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", default=str(DEFAULT_QWEN) if DEFAULT_QWEN.is_file() else None)
    parser.add_argument("--workers", type=int, default=None, help="SDK worker processes (default: as the CLI, by input size)")
    parser.add_argument("--input", action="append", help="input tree (repeatable; default: the standard library)")
    parser.add_argument("--repeats", type=int, default=2, help="best of N for each measurement")
    parser.add_argument("--runner-mode", default="auto", help="auto | in_memory | multi_threading | multi_processing")
    parser.add_argument("--threads", type=int, default=4, help="bundle threads with --runner-mode multi_threading")
    parser.add_argument("--stage-shares", action="store_true", help="each quality stage's share of the default build")
    parser.add_argument("--one-dump", action="store_true",
                        help="build from one JSONL file holding every input document (a dataset dump) instead of the trees")
    args = parser.parse_args()
    args.input = args.input or [str(stdlib_source_dir())]
    if args.one_dump:
        args.input = [write_one_dump(args.input)]
    if args.runner_mode == "multi_threading":
        compare_threaded(args)
        return
    if args.stage_shares:
        stage_shares(args)
        return

    tokenizer = load_tokenizer(args.tokenizer)
    profile = load_profile("code")
    files, _, _ = discover_inputs(args.input, profile)
    texts = [r.text for f in files for r in read_input_file(f, profile, "code") if isinstance(r, Document)]
    total_mb = sum(len(t.encode()) for t in texts) / 1e6
    print(f"corpus: {', '.join(args.input)}: {len(texts):,} documents, {total_mb:.1f} MB of text read; tokenizer {tokenizer.name} "
          f"({tokenizer.vocab_size:,} ids); workers {args.workers or 'as the CLI chooses'}")

    raw = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        tokens = sum(len(ids) for ids in tokenizer.encoding.encode_ordinary_batch(texts))
        raw.append(time.perf_counter() - start)
    raw_s = min(raw)
    print(f"raw tiktoken encode_ordinary_batch: {raw_s:6.2f} s  {total_mb / raw_s:7.2f} MB/s  {len(texts) / raw_s:9.0f} docs/s  ({tokens:,} tokens)")

    for label, quality in (("read -> tokenize -> shards (--no-quality)", QualityConfig.off()),
                           ("with every quality stage (default)", QualityConfig())):
        runs = []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as out:
                start = time.perf_counter()
                manifest = run_build(BuildSettings(domain="code", inputs=args.input, output=out, quality=quality,
                                                   tokenizer=args.tokenizer, workers=args.workers))
                runs.append(time.perf_counter() - start)
        pipe_s = min(runs)
        docs = manifest["totals"]["documents"]
        print(f"corpus build, {label}: {pipe_s:6.2f} s  {total_mb / pipe_s:7.2f} MB/s  {docs / pipe_s:6.0f} docs/s  "
              f"({docs:,} documents kept, {manifest['totals']['tokens']:,} tokens, {manifest['settings']['workers']} worker(s)); "
              f"{raw_s / pipe_s:.0%} of raw tiktoken")
    print("target (issue 2): the read -> tokenize -> shards pipeline >= 50% of raw tiktoken throughput")

#: QualityConfig switches of each stage the default code build runs, in build order.
def write_one_dump(inputs: list[str]) -> str:
    """The inputs' documents as records of one JSONL file (``content`` and ``path``, as The Stack's
    dumps): how datasets usually arrive, and the case where one file must be read by every worker."""
    import json

    profile = load_profile("code")
    files, _, _ = discover_inputs(inputs, profile)
    directory = tempfile.mkdtemp(prefix="one-dump-")
    with open(Path(directory) / "dump.jsonl", "w", encoding="utf-8") as out:
        for f in files:
            for document in read_input_file(f, profile, "code"):
                if isinstance(document, Document):
                    out.write(json.dumps({"content": document.text, "path": document.source}, ensure_ascii=False) + "\n")
    return directory


def stage_cpu_seconds(inputs: list[str], tokenizer: str | None) -> dict[str, float]:
    """CPU seconds of each stage's own work on the documents the default build judges, in one process
    (no Beam): what the stage costs wherever it runs, without the runner's overhead around it."""
    from beam_jobs.decontam import build_index
    from specialize.dedup.exact import exact_key
    from specialize.dedup.minhash import MinHasher, bottom_k_sketch
    from specialize.quality.code_rules import CodeFilterSettings, code_verdict
    from specialize.quality.secrets import secret_verdict

    profile = load_profile("code")
    timings: dict[str, float] = {}
    start = time.process_time()
    files, _, _ = discover_inputs(inputs, profile)
    documents = [d for f in files for d in read_input_file(f, profile, "code") if isinstance(d, Document)]
    timings["read and normalise (each of the two reads)"] = time.process_time() - start
    rules = CodeFilterSettings.from_profile(profile.section("filters"), "code profile filters:")
    hasher = MinHasher()
    index = build_index(list(profile.section("decontamination").get("benchmarks") or []))

    def near(text: str):
        shingles = hasher.shingles(text)
        return (hasher.band_keys(hasher.signature_of_shingles(shingles)), bottom_k_sketch(shingles)) if shingles.size else None

    for name, fn in (("rules", lambda d: code_verdict(d.text, d.language, rules)), ("secrets", lambda d: secret_verdict(d.text)),
                     ("exact dedup (hash)", lambda d: exact_key(d.text)), ("near dedup (shingles, MinHash, sketch)", lambda d: near(d.text)),
                     ("decontamination (n-gram check)", lambda d: index.check(d.text))):
        start = time.process_time()
        for document in documents:
            fn(document)
        timings[name] = time.process_time() - start
    encoder = load_tokenizer(tokenizer)
    start = time.perf_counter()
    encoder.encode_batch([d.text for d in documents], num_threads=default_workers())
    timings[f"tokenize (wall, {default_workers()} threads)"] = time.perf_counter() - start
    return timings


def stage_shares(args) -> None:
    """The default build's wall time beside each stage's own CPU time on the same documents; what is
    left is the runner: Beam's per-stage set-up, the shuffles of keys, the launcher's work."""

    def best(quality: QualityConfig) -> float:
        runs = []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as out:
                start = time.perf_counter()
                run_build(BuildSettings(domain="code", inputs=args.input, output=out, quality=quality, tokenizer=args.tokenizer,
                                        workers=args.workers))
                runs.append(time.perf_counter() - start)
        return min(runs)

    full = best(QualityConfig())
    base = best(QualityConfig.off())
    print(f"corpus: {args.input}; default build {full:.2f} s, --no-quality {base:.2f} s (best of {args.repeats})")
    timings = stage_cpu_seconds(args.input, args.tokenizer)
    print(f"{'stage (its own work, one process)':<46}{'seconds':>9}{'of build':>10}")
    for name, seconds in timings.items():
        print(f"{name:<46}{seconds:9.2f}{seconds / full:10.0%}")
    own = sum(timings.values()) + timings["read and normalise (each of the two reads)"]
    print(f"{'the rest: runner, shuffles of keys, launcher':<46}{full - own:9.2f}{(full - own) / full:10.0%}")


def _timed_build(args, out: str, **mode) -> tuple[float, dict]:
    start = time.perf_counter()
    manifest = run_build(BuildSettings(domain="code", inputs=args.input, output=out, quality=QualityConfig(),
                                       tokenizer=args.tokenizer, num_shards=4, **mode))
    return time.perf_counter() - start, manifest


def compare_threaded(args) -> None:
    with tempfile.TemporaryDirectory() as one, tempfile.TemporaryDirectory() as many:
        single_s, single = _timed_build(args, one, workers=1, tokenizer_threads=default_workers())
        threaded_s, threaded = _timed_build(args, many, workers=args.threads, runner_mode="multi_threading",
                                            tokenizer_threads=max(1, default_workers() // args.threads))
    mb = single["totals"]["text_bytes"] / 1e6
    same = [s["sha256"] for s in single["shards"]] == [s["sha256"] for s in threaded["shards"]]
    print(f"corpus: {args.input}, every quality stage on, 4 shards, {mb:.1f} MB of text kept")
    print(f"in_memory, 1 bundle at a time:        {single_s:6.2f} s  {mb / single_s:6.2f} MB/s")
    print(f"multi_threading, {args.threads} bundle threads:     {threaded_s:6.2f} s  {mb / threaded_s:6.2f} MB/s")
    print(f"shards identical (sha256): {same}; removed counts identical: {single['removed'] == threaded['removed']}")


if __name__ == "__main__":
    main()
