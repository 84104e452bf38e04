"""The corpus build, top to bottom: read and judge, then read again and write.

    files --ReadSources--> documents --(per-document filters)--> documents
          --measure (corpus-wide stages' signals)--> keys --(dedup, decontamination, up-sampling)--> kept keys
    kept keys --PlanShards (a local runner: SpilledPlan)--> (shard, pieces of files)
          --WriteShards: read again, tokenize--> shard-XXXXX-of-YYYYY.arrow + _stats/
    every stage's rejections --ReportRejections--> _stats/rejections.json (+ samples)

No shuffle carries a document's text: the texts exist while their file's bundle is judged, and again
while their shard is written (``beam_jobs/corpus_wide.py``, ``beam_jobs/shard_writing.py``). That is
what keeps a local build's memory from growing with the corpus.

The launcher (``run_build``) lists the input files first (so the shard count and order are fixed
before any worker starts), runs the pipeline, then assembles ``manifest.json`` from ``_stats/``.
Every element-wise step is a pure function of its input and every output name is deterministic, so
bundles that a runner retries rewrite identical files: no duplicated or lost shards.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, replace

import apache_beam as beam
from apache_beam.io import fileio

from beam_jobs.malloc_arenas import one_malloc_arena
from beam_jobs.quality import QualityConfig, quality_stages
from beam_jobs.runner import (
    LOCAL_RUNNERS,
    auto_local_workers,
    check_filesystems,
    create_pipeline,
    pipeline_options,
    use_options_for_filesystems,
)
from beam_jobs.shard_writing import Layout, PlanShards, ShardCount, WriteShards, read_planned, write_documents_file
from beam_jobs.spilled_plan import SpilledPlan
from beam_jobs.stage_stats import WriteStageStats
from beam_jobs.stages import KEPT, REJECTED, DocumentStage, ReportRejections
from specialize.corpus import outputs
from specialize.corpus.document import Document, Rejection
from specialize.corpus.instructions import instruction_documents
from specialize.corpus.manifest import STATS_DIR, assemble_manifest, build_stats_dir
from specialize.corpus.profile import DomainProfile, load_profile
from specialize.corpus.repos import DEFAULT_REPO_MAX_BYTES
from specialize.corpus.sources import (
    InputFile,
    ReadPart,
    StrictModeError,
    classify_file,
    discover_inputs,
    in_skipped_dir,
    literal_prefix,
    match_pattern,
    remote_input_pattern,
    split_into_parts,
    strict_error,
    warn_unreadable,
)
from specialize.tokenization import TokenizerSpec

DEFAULT_SHARD_TEXT_BYTES = 256 << 20  # ~256 MB of text per shard (about as many bytes of uint32 tokens)


@dataclass
class BuildSettings:
    domain: str
    inputs: list[str]
    output: str
    tokenizer: str | None = None  # file or checkpoint dir; None = embedded tiny vocabulary
    seq_length: int = 2048
    profile: str | None = None  # custom profile YAML
    num_shards: int | None = None  # default: from input size / shard_text_bytes
    shard_text_bytes: int = DEFAULT_SHARD_TEXT_BYTES
    strict: bool = False
    runner: str = "direct"
    workers: int | None = None  # local SDK workers (processes, or bundle threads with runner_mode="multi_threading"); None: by input size
    runner_mode: str = "auto"  # local FnApiRunner mode: auto | in_memory | multi_threading | multi_processing
    tokenizer_threads: int | None = None  # tiktoken threads per shard task (it releases the GIL); None: decided there (tokenizer_threads)
    remote_settings: dict = field(default_factory=dict)
    samples_per_reason: int = 20
    quality: QualityConfig = field(default_factory=QualityConfig)  # filters, dedup, decontamination switches
    repo_level: bool = False  # one document per repository, files in dependency order (specialize/corpus/repos.py)
    repo_max_bytes: int = DEFAULT_REPO_MAX_BYTES  # split longer repositories on file boundaries
    instructions: list[str] = field(default_factory=list)  # chat JSONL rendered into documents (instruction-augmented)
    instructions_exclude: list[str] = field(default_factory=list)  # SFT splits whose conversations are left out


# ---------------------------------------------------------------------------------------------
# Stages


SIZES = "sizes"
#: With several local workers, plain JSONL and Parquet files larger than this are read in parts of about
#: this size at least (``first_read_part_bytes``).
FIRST_READ_PART_BYTES = 32 << 20


def first_read_part_bytes(files: list[InputFile], workers: int) -> int:
    """Parts only as fine as balancing ``workers`` needs (about four per worker over the input): a
    corpus of many large files is already spread by its files and skips the newline-counting pass
    that splitting costs; one dump is cut into parts for every worker."""
    return max(FIRST_READ_PART_BYTES, sum(f.size for f in files) // (4 * workers))


def _routed(result, strict: bool):
    """A reader's result for a multi-output DoFn: a document as is, a rejection to ``REJECTED``, or,
    under ``--strict``, the error instead."""
    if isinstance(result, Rejection):
        if strict:
            raise strict_error(result)
        return beam.pvalue.TaggedOutput(REJECTED, result)
    return result
DISCOVERY_STAGE = "discovery"


class _ClassifyFn(beam.DoFn):
    """A matched object -> InputFile (main) or a Rejection by its name; objects under skipped folders
    (``.git``, ``node_modules``...) are dropped, as the launcher's walk prunes them locally."""

    def __init__(self, inputs: list[str], profile: DomainProfile, strict: bool):
        # Longest first: an object belongs to the most specific input that contains it.
        self._prefixes = sorted(((literal_prefix(given), given) for given in inputs), key=lambda p: -len(p[0]))
        self._profile, self._strict = profile, strict

    def process(self, path_and_size):
        path, size = path_and_size
        if in_skipped_dir(path, self._profile):
            return
        given = next((g for prefix, g in self._prefixes if path.startswith(prefix)), self._prefixes[-1][1])
        yield _routed(classify_file(path, size, given, self._profile), self._strict)


class MatchInputs(beam.PTransform):
    """Object-store inputs -> (InputFiles, discovery rejections), listed on the workers by Beam's
    ``fileio.MatchAll``; files and bytes per input go to ``stage-discovery.json``."""

    def __init__(self, inputs: list[str], patterns: list[str], profile: DomainProfile, strict: bool, stats_dir: str):
        super().__init__()
        self._inputs, self._patterns, self._profile, self._strict, self._stats_dir = inputs, patterns, profile, strict, stats_dir

    def expand(self, pipeline):
        classified = (
            pipeline
            | "Patterns" >> beam.Create(sorted(set(self._patterns)))
            | "MatchAll" >> fileio.MatchAll()
            | "PathAndSize" >> beam.Map(lambda metadata: (metadata.path, metadata.size_in_bytes))
            | "Distinct" >> beam.Distinct()
            | "Spread" >> beam.Reshuffle()
            | "Classify" >> beam.ParDo(_ClassifyFn(self._inputs, self._profile, self._strict)).with_outputs(REJECTED, main=KEPT)
        )
        base = {"inputs": {given: {"files": 0, "bytes": 0} for given in self._inputs}}
        (classified[KEPT]
         | "Count" >> beam.Map(lambda f: {"inputs": {f.input_name: {"files": 1, "bytes": f.size}}})
         | "Stats" >> WriteStageStats(self._stats_dir, DISCOVERY_STAGE, base))
        return classified[KEPT], classified[REJECTED]


class _ReadFn(beam.DoFn):
    """One file -> its documents (main), rejections, and its size for shard sizing (``sizes``)."""

    def __init__(self, profile: DomainProfile, domain: str, strict: bool):
        self._profile, self._domain, self._strict = profile, domain, strict

    def process(self, item: InputFile | ReadPart):
        meter = [0]
        part = item if isinstance(item, ReadPart) else None  # records of a large JSONL or Parquet file
        file, records, offset = (part.file, part.records, part.offset) if part else (item, None, None)
        for result in read_planned(file, self._profile, self._domain, records, meter, offset=offset):
            warn_unreadable(file, result)
            yield _routed(result, self._strict)
        size = (part.size if part.size is not None else meter[0]) if part else sharding_bytes(file, meter[0])
        yield beam.pvalue.TaggedOutput(SIZES, size)


#: Text per byte on disk assumed for a compressed file or Parquet (code and prose compress 3-6x) when
#: choosing local workers, before anything is read.
COMPRESSED_TEXT_RATIO = 5


def estimated_text_bytes(files: list[InputFile]) -> int:
    """The text the launcher expects the files to hold: sizes on disk, compressed ones scaled up."""
    return sum(f.size * (COMPRESSED_TEXT_RATIO if f.compression or f.kind == "parquet" else 1) for f in files)


def sharding_bytes(item: InputFile, measured: int) -> int:
    """The bytes a file counts for the shard count: its size when that is its text (a plain source or
    JSONL file: exactly what the launcher counted before), else what reading it measured (a compressed
    file's decompressed bytes, a Parquet file's record text), 3-6x its size on disk."""
    return item.size if item.compression is None and item.kind != "parquet" else measured


class ReadSources(beam.PTransform):
    """Input files -> (documents, rejections, sizes). Decoding and normalisation happen here, per file."""

    def __init__(self, profile: DomainProfile, domain: str, strict: bool):
        super().__init__()
        self._profile, self._domain, self._strict = profile, domain, strict

    def expand(self, files):
        outputs = files | "ReadFiles" >> beam.ParDo(_ReadFn(self._profile, self._domain, self._strict)).with_outputs(
            REJECTED, SIZES, main=KEPT)
        return outputs[KEPT], outputs[REJECTED], outputs[SIZES]


# ---------------------------------------------------------------------------------------------
# The pipeline


def build_pipeline(
    pipeline: beam.Pipeline,
    settings: BuildSettings,
    profile: DomainProfile,
    files: list[InputFile],
    discovered_rejections: list[Rejection],
    build_id: str | None = None,
    remote_patterns: list[str] | None = None,
    instructions: tuple[list[Document], list[Rejection]] = ((), ()),
    spill_dir: str | None = None,
) -> None:
    """``instructions``: rendered instruction documents and their rejections (``instruction_documents``),
    joined after the per-document filters, before dedup, decontamination and up-sampling.
    ``spill_dir``: a local directory for dedup's packed signals and the shard plan on a local runner
    (``run_build`` makes one per build and deletes it after); None keeps them in the pipeline."""
    spec = TokenizerSpec(settings.tokenizer)
    stats_dir = build_stats_dir(settings.output, build_id)
    local_runner = settings.runner.lower() in LOCAL_RUNNERS
    # The file list travels as listing files, not inside the pipeline graph: a corpus of millions of
    # files would blow past a runner's job-size limit (Dataflow: 10 MB) and slow graph construction.
    # Object-store inputs are listed by the pipeline itself (fileio.MatchAll), so 10^8 objects never
    # pass through the launcher; local inputs were listed at launch (pruning .git & co. while walking).
    listing_parts = write_listing(outputs.join(stats_dir, "listing"), files, discovered_rejections) if files or discovered_rejections else []
    files_pc, listed_rejections = (
        pipeline
        | "ListingParts" >> beam.Create(listing_parts)
        | "ReadListing" >> DocumentStage(read_listing, label="ReadListing")
    )
    rejected = [listed_rejections]
    remote_inputs = [given for given in settings.inputs if outputs.is_remote(given)]
    if remote_inputs:
        patterns = remote_patterns or [match_pattern(given) for given in remote_inputs]
        matched, matched_rejections = pipeline | "DiscoverRemote" >> MatchInputs(remote_inputs, patterns, profile,
                                                                                  settings.strict, stats_dir)
        files_pc = (files_pc, matched) | "AllFiles" >> beam.Flatten()
        rejected.append(matched_rejections)

    # First read: every stage judges; what leaves it is keys (no text) and rejections. With several
    # local workers a large plain JSONL or Parquet file is read in parts, so no worker judges a whole
    # dump alone (a distributed runner spreads the records instead, below).
    to_read = files_pc
    if local_runner and (settings.workers or 1) > 1:
        to_read = files_pc | "SplitLargeFiles" >> beam.FlatMap(split_into_parts, first_read_part_bytes(files, settings.workers))
    if not local_runner or (settings.workers or 1) > 1:
        # Spread the files over the workers. One local worker reads them where they are listed: the
        # reshuffle would only hold every file's record in the runner's memory while the first read runs.
        to_read = to_read | "Spread" >> beam.Reshuffle()
    documents, read_rejected, sizes = to_read | "ReadSources" >> ReadSources(profile, settings.domain, settings.strict)
    rejected.append(read_rejected)
    # Decided from what was read (decompressed bytes for compressed files), not from sizes on disk;
    # the count and the bytes it came from are in the manifest's stages.sharding.
    num_shards = sizes | "ShardCount" >> ShardCount(settings.num_shards, settings.shard_text_bytes, stats_dir)
    if not local_runner:
        # A record file's documents all come out of one DoFn call; spread them over the workers before
        # the expensive stages, so one large dump is not a straggler (Beam's ReadAllFromText does the
        # same). Only on a distributed runner, whose shuffles spill to disk: a local runner holds a
        # shuffle in memory, and this one carries the texts.
        documents = documents | "SpreadRecords" >> beam.Reshuffle()

    # Stages in order (beam_jobs/quality.py): per-document filters on the texts (language, rules,
    # secrets, quality model); then the corpus-wide ones (exact dedup, near dedup, decontamination,
    # up-sampling) measure each text once, fused with the reading, and decide on keys.
    stages = quality_stages(settings.quality, profile, stats_dir, settings.profile or f"{settings.domain} profile",
                            local_runner=local_runner, spill_dir=spill_dir if local_runner else None)
    for label, stage in stages:
        if not stage.corpus_wide:
            documents, dropped = documents | label >> stage
            rejected.append(dropped)
    instruction_docs, instruction_rejections = instructions
    branches = [documents]  # kept apart until they are keys: a Flatten of documents would serialise the texts
    if instruction_docs:  # they skip the filters (which judge code or pages, not dialogue), not the rest
        instruction_files = [write_documents_file(outputs.join(stats_dir, "instructions", "part-00000.jsonl"),
                                                  list(instruction_docs), "instructions")]
        instruction_files_pc = pipeline | "InstructionFiles" >> beam.Create(instruction_files)
        from_instructions, _, _ = instruction_files_pc | "ReadInstructions" >> ReadSources(profile, settings.domain, settings.strict)
        branches.append(from_instructions)
        files_pc = (files_pc, instruction_files_pc) | "WithInstructionFiles" >> beam.Flatten()
    if instruction_rejections:
        rejected.append(pipeline | "InstructionRejections" >> beam.Create(list(instruction_rejections)))
    for label, stage in stages:
        if stage.corpus_wide:
            tuple(branches) | f"Measure{label}" >> stage.measuring()
    keys = tuple(branch | f"Keys{index}" >> beam.Map(Document.key) for index, branch in enumerate(branches)) | "Keys" >> beam.Flatten()
    decided = []
    for label, stage in stages:
        if stage.corpus_wide:
            keys, dropped = keys | label >> stage
            decided.append(dropped)

    # Second read: the kept texts (and the rejected ones' samples), file by file, into shards.
    entries = (keys | "KeptEntries" >> beam.Map(lambda key: (key, None)), *decided)
    layout = keys | "Layout" >> Layout(num_shards)
    repo_inputs = tuple(settings.inputs) if settings.repo_level else None
    if spill_dir is not None and local_runner:  # the plan waits in files, not in the runner's memory
        planned = entries | "PlanShards" >> SpilledPlan(files_pc, layout, spill_dir, repo_inputs)
    else:
        planned = entries | "Entries" >> beam.Flatten() | "PlanShards" >> PlanShards(files_pc, layout, repo_inputs)
    shards, samples, repo_stats = (
        planned
        | "WriteShards" >> WriteShards(profile, settings.domain, spec, settings.output, layout, build_id,
                                       settings.tokenizer_threads, settings.repo_max_bytes if settings.repo_level else None,
                                       local_workers=settings.workers if local_runner else None)
    )
    rejected.append(samples)
    if settings.repo_level:  # after the file-level filters and dedup, as StarCoder2 and Qwen2.5-Coder
        repo_stats | "RepoStats" >> WriteStageStats(stats_dir, "repos")
    (
        tuple(rejected)  # a tuple: Beam takes a list for one value to Create, not for several inputs
        | "ReportRejections" >> ReportRejections(stats_dir, settings.samples_per_reason)
    )


LISTING_PART_SIZE = 2000


def write_listing(directory: str, files: list[InputFile], rejections: list[Rejection]) -> list[str]:
    """Write the discovered files (and files rejected at discovery) as JSONL parts; return their paths."""
    # Flat dicts, not asdict(): its deep copy took 0.15 s for 15k files
    entries = [json.dumps({"file": f.fields()}) for f in files] + [json.dumps({"rejection": vars(r)}) for r in rejections]
    parts = []
    for index in range(0, max(len(entries), 1), LISTING_PART_SIZE):
        path = outputs.join(directory, f"part-{index // LISTING_PART_SIZE:05d}.jsonl")
        outputs.write_atomic(path, "\n".join(entries[index : index + LISTING_PART_SIZE]).encode())
        parts.append(path)
    return parts


def read_listing(path: str):
    for line in outputs.read_bytes(path).decode("utf-8").splitlines():
        entry = json.loads(line)
        yield InputFile(**entry["file"]) if "file" in entry else Rejection(**entry["rejection"])


def remove_other_builds(output_dir: str, manifest: dict) -> list[str]:
    """After the manifest switched to a build: delete every shard it does not list and every other
    build's statistics (an older build, or one that failed or was cancelled). Returns what was deleted.

    Lists files instead of testing directories: object stores have none (``exists(prefix)`` is false
    for a prefix, which is how a stale ``_stats/`` once survived rebuilds there).
    """
    listed = {shard["path"] for shard in manifest["shards"]}
    stale = [outputs.join(output_dir, name) for name in outputs.list_names(output_dir, "shard-") if name not in listed]
    stats_root, build_id = outputs.join(output_dir, STATS_DIR), manifest.get("build_id")
    if outputs.is_remote(output_dir):
        keep = build_stats_dir(output_dir, build_id).rstrip("/") + "/"
        stale += [path for path in outputs.list_tree(stats_root) if not path.startswith(keep)]
    elif os.path.isdir(stats_root):
        stale += [os.path.join(stats_root, name) for name in sorted(os.listdir(stats_root)) if name != build_id]
    outputs.delete(stale)
    return stale


def _matched_inputs(output_dir: str, build_id: str) -> dict[str, dict]:
    """Files and bytes per object-store input, as the pipeline's listing counted them."""
    from beam_jobs.stage_stats import STAGE_STATS_PREFIX

    path = outputs.join(build_stats_dir(output_dir, build_id), f"{STAGE_STATS_PREFIX}{DISCOVERY_STAGE}.json")
    return json.loads(outputs.read_bytes(path))["inputs"]


def _user_paths(settings: BuildSettings, *, workers_only: bool = False) -> dict[str, str]:
    """The build's paths by the flag that gave them: every one, or only those the workers open
    (decontamination sets are read by the launcher, which ships the index to the workers)."""
    paths = {"--output": settings.output, **{f"--input {p}": p for p in settings.inputs}}
    if settings.tokenizer:
        paths["--tokenizer"] = settings.tokenizer
    if settings.quality.quality_model:
        paths["--quality-model"] = settings.quality.quality_model
    if not workers_only:
        for item in settings.quality.decontaminate or []:
            if "=" in item:
                paths[f"--decontaminate {item}"] = item.split("=", 1)[1]
    return paths


def run_build(settings: BuildSettings) -> dict:
    """Discover inputs, run the Beam pipeline, write and return the manifest."""
    options = pipeline_options(settings.runner, settings.workers or 1, settings.remote_settings, settings.runner_mode)
    use_options_for_filesystems(options)  # before the launcher touches gs:// or s3://
    check_filesystems(_user_paths(settings))
    if settings.runner.lower() not in LOCAL_RUNNERS:
        from beam_jobs.runners import check_pipeline_paths

        check_pipeline_paths(settings.runner, _user_paths(settings, workers_only=True))
    profile = load_profile(settings.domain, settings.profile)
    local_inputs = [given for given in settings.inputs if not outputs.is_remote(given)]
    remote_inputs = [given for given in settings.inputs if outputs.is_remote(given)]
    files, discovered_rejections, pruned_dirs = discover_inputs(local_inputs, profile) if local_inputs else ([], [], {})
    patterns = [remote_input_pattern(given) for given in remote_inputs]  # the pipeline lists them
    if settings.strict and discovered_rejections:
        raise strict_error(discovered_rejections[0])
    if not files and not remote_inputs:
        raise FileNotFoundError(f"no readable {settings.domain} input files under {', '.join(settings.inputs)}")
    tokenizer = TokenizerSpec(settings.tokenizer).load()  # fail fast on a bad tokenizer, before Beam starts
    total_bytes = sum(f.size for f in files)
    if settings.workers is None:  # without per-document stages the work is tokenization, whose threads use the cores
        workers = auto_local_workers(None if remote_inputs else estimated_text_bytes(files)) if settings.quality.judges_text() else 1
        settings = replace(settings, workers=workers)
        options = pipeline_options(settings.runner, settings.workers, settings.remote_settings, settings.runner_mode)
    instructions = ((), ())
    if settings.instructions:
        instructions = instruction_documents(settings.instructions, settings.domain, exclude=settings.instructions_exclude,
                                             strict=settings.strict)
    elif settings.instructions_exclude:
        raise ValueError("--instructions-exclude names SFT splits to leave out of --instructions; give --instructions FILE too")

    # A new build id: the running build writes beside the current one, which stays readable (its
    # manifest unchanged) until this build's manifest replaces it; only then are older files deleted.
    build_id = outputs.new_build_id()
    outputs.make_dirs(settings.output)
    pipeline = create_pipeline(settings.runner, options=options)
    with contextlib.ExitStack() as scratch:
        spill_dir = None
        if settings.runner.lower() in LOCAL_RUNNERS:  # every local worker sees this machine's temporary directory
            spill_dir = scratch.enter_context(tempfile.TemporaryDirectory(prefix="specialize-spill-"))
            scratch.enter_context(one_malloc_arena())
        build_pipeline(pipeline, settings, profile, files, discovered_rejections, build_id, patterns, instructions, spill_dir)
        result = pipeline.run()
        result.wait_until_finish()

    matched = _matched_inputs(settings.output, build_id) if remote_inputs else {}
    inputs_summary = []
    for given in settings.inputs:
        listed = matched.get(given) or {"files": sum(1 for f in files if f.input_name == given),
                                        "bytes": sum(f.size for f in files if f.input_name == given)}
        inputs_summary.append({"path": given, "files": listed["files"], "bytes": listed["bytes"]})
    if not sum(entry["files"] for entry in inputs_summary):
        raise FileNotFoundError(f"no readable {settings.domain} input files under {', '.join(settings.inputs)}")
    discovery = {
        "files": len(files) + sum(entry["files"] for entry in matched.values()),
        "bytes": total_bytes + sum(entry["bytes"] for entry in matched.values()),
        "pruned_dirs": {reason: dirs[:20] for reason, dirs in pruned_dirs.items()},
        "pruned_dir_count": {reason: len(dirs) for reason, dirs in pruned_dirs.items()},
    }
    if settings.instructions:
        excluded = sum(1 for r in instructions[1] if r.reason == "in_sft_split")
        discovery["instructions"] = {"files": list(settings.instructions), "format": "plain role-labelled paragraphs",
                                     "documents": len(instructions[0]), "in_sft_split": excluded,
                                     "malformed_rows": len(instructions[1]) - excluded}
    recorded = {k: v for k, v in asdict(settings).items() if k not in ("remote_settings",)}
    manifest = assemble_manifest(
        settings.output,
        build_id=build_id,
        domain=settings.domain,
        tokenizer=tokenizer.describe(),
        seq_length=settings.seq_length,
        inputs=inputs_summary,
        discovery=discovery,
        settings=recorded,
    )
    remove_other_builds(settings.output, manifest)
    if settings.strict and manifest["warnings"]:
        raise StrictModeError(f"{settings.output}: built, but --strict: " + "; ".join(manifest["warnings"]))
    return manifest
