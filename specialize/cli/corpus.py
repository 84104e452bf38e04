"""``specialize corpus``: build, stats, verify (the logic lives in beam_jobs/ and specialize/corpus/)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="Build and examine tokenized corpus shards.", no_args_is_help=True)


def _parse_key_values(pairs: list[str], flag: str) -> dict[str, str]:
    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r}: expected KEY=VALUE", param_hint=flag)
        settings[key.strip()] = value
    return settings


_STORAGE_HELP = "KEY=VALUE object-store client setting for s3:// paths (s3_endpoint_url, s3_region_name, s3_access_key_id, ...); repeatable."


def _use_storage_options(pairs: list[str] | None) -> None:
    """Configure Beam's filesystems in this process for a corpus on an object store."""
    if not pairs:
        return
    from beam_jobs.runner import pipeline_options, use_options_for_filesystems
    from beam_jobs.runners import RunnerSettingsError

    try:
        use_options_for_filesystems(pipeline_options(settings=_parse_key_values(pairs, "--storage-option")))
    except RunnerSettingsError as err:
        raise typer.BadParameter(str(err), param_hint="--storage-option") from None


@app.command()
def build(
    domain: str = typer.Option(..., "--domain", help="code, math or text (general replay text): picks the domain profile."),
    input: Optional[list[str]] = typer.Option(None, "--input", "-i", help="File or directory (local, gs://, s3://); repeatable. Default: the embedded corpus."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Output directory. Default: checkpoints/corpus/DOMAIN."),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help="qwen.tiktoken file or checkpoint directory. Default: embedded tiny-bbpe."),
    seq_length: int = typer.Option(2048, "--seq-length", help="Training sequence length (recorded; samples counted for it)."),
    runner: str = typer.Option("direct", "--runner", help="direct (FnApiRunner, local) | dataflow | flink | spark."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Local SDK worker processes (or bundle threads with --runner-mode multi_threading). Default: one per 32 MiB of input text, at most one per core, while they fit in half the memory (one with --no-quality); tokenization uses all cores either way (threads)."),
    runner_mode: str = typer.Option("auto", "--runner-mode", help="Local runner: auto (processes when --workers > 1) | in_memory | multi_threading (bundles on threads, as on Dataflow) | multi_processing."),
    num_shards: Optional[int] = typer.Option(None, "--num-shards", help="Number of shards (default: ~256 MB of text each)."),
    profile: Optional[Path] = typer.Option(None, "--profile", help="Domain profile YAML replacing the built-in one."),
    strict: bool = typer.Option(False, "--strict", help="Fail on the first bad input instead of counting and skipping it."),
    runner_config: Optional[Path] = typer.Option(None, "--runner-config", help="YAML of remote runner settings."),
    runner_option: Optional[list[str]] = typer.Option(None, "--runner-option", help="KEY=VALUE runner setting (remote runners), or object-store setting such as s3_endpoint_url (every runner); repeatable."),
    # Quality stages (README "Corpus quality"; thresholds in the profile). All on by default.
    no_quality: bool = typer.Option(False, "--no-quality", help="Turn every quality stage off."),
    no_filters: bool = typer.Option(False, "--no-filters", help="Skip the rule filters."),
    no_secrets: bool = typer.Option(False, "--no-secrets", help="Keep files with secrets (code)."),
    no_exact_dedup: bool = typer.Option(False, "--no-exact-dedup", help="Skip exact deduplication."),
    no_near_dedup: bool = typer.Option(False, "--no-near-dedup", help="Skip MinHash near-deduplication."),
    near_dedup: Optional[list[str]] = typer.Option(None, "--near-dedup", help="KEY=VALUE near-dedup setting (ngram, bands, rows, seed, verify_threshold, rounds, components); repeatable."),
    decontaminate: Optional[list[str]] = typer.Option(None, "--decontaminate", help="Benchmark NAME (humaneval; mbpp, gsm8k, math: cached download) or NAME=PATH (JSONL/Parquet); repeatable. Replaces the profile's list."),
    no_decontaminate: bool = typer.Option(False, "--no-decontaminate", help="Skip decontamination."),
    decontaminate_ngram: Optional[int] = typer.Option(None, "--decontaminate-ngram", help="Shared n-gram length in whitespace tokens (default 10)."),
    quality_model: Optional[str] = typer.Option(None, "--quality-model", help="Model from `specialize quality train`: scores go in the shard's quality column."),
    min_quality: Optional[float] = typer.Option(None, "--min-quality", help="Drop documents scoring below this (needs --quality-model)."),
    source_weight: Optional[list[str]] = typer.Option(None, "--source-weight", help="INPUT=W up-sampling weight of an --input (2 = twice, 0.5 = half); repeatable."),
    languages: Optional[str] = typer.Option(None, "--languages", help="Languages to keep, ISO codes comma-separated (text: default en,zh as the profile says; `all` keeps every language, still tagged)."),
    no_language_filter: bool = typer.Option(False, "--no-language-filter", help="Skip language identification (text)."),
    repo_level: bool = typer.Option(False, "--repo-level", help="One document per repository (each subfolder of an --input, or the records' repo field), files in dependency order with <|repo_name|>/<|file_sep|> markers."),
    repo_max_bytes: int = typer.Option(131072, "--repo-max-bytes", help="With --repo-level: split longer repositories on file boundaries."),
    instructions: Optional[list[str]] = typer.Option(None, "--instructions", help="Chat JSONL (the SFT formats) rendered into plain role-labelled pretraining documents (instruction-augmented pretraining); repeatable."),
    instructions_exclude: Optional[list[str]] = typer.Option(None, "--instructions-exclude", help="An SFT split (JSONL): its conversations are left out of --instructions, so none is both pretraining text and SFT data; repeatable."),
) -> None:
    """Read raw code, math or text files, clean them and write tokenized Arrow shards plus a manifest."""
    from beam_jobs.corpus_build import BuildSettings, run_build
    from beam_jobs.runner import LOCAL_RUNNERS
    from specialize.cli.quality import build_quality_config
    from specialize.corpus import defaults
    from specialize.corpus.report import print_summary

    remote: dict = {}
    if runner_config:
        import yaml

        remote.update(yaml.safe_load(runner_config.read_text()) or {})
    remote.update(_parse_key_values(runner_option or [], "--runner-option"))
    inputs = list(input or []) or defaults.default_inputs(domain)
    settings = BuildSettings(
        domain=domain,
        inputs=inputs,
        output=output or str(defaults.default_output(domain)),
        tokenizer=tokenizer,
        seq_length=seq_length,
        profile=str(profile) if profile else None,
        num_shards=num_shards,
        strict=strict,
        runner=runner,
        workers=None if workers is None else max(1, workers),
        runner_mode=runner_mode,
        tokenizer_threads=None,  # decided by each shard task: its machine's cores over the shards written at once
        remote_settings=remote,
        repo_level=repo_level,
        repo_max_bytes=repo_max_bytes,
        instructions=list(instructions or []),
        instructions_exclude=list(instructions_exclude or []),
        quality=build_quality_config(
            no_quality=no_quality, no_filters=no_filters, no_secrets=no_secrets, no_exact_dedup=no_exact_dedup,
            no_near_dedup=no_near_dedup, near_dedup=near_dedup or [], decontaminate=decontaminate or [],
            no_decontaminate=no_decontaminate, decontaminate_ngram=decontaminate_ngram, quality_model=quality_model,
            min_quality=min_quality, source_weight=source_weight or [], languages=languages,
            no_language_filter=no_language_filter),
    )
    workers_text = (settings.workers or "auto") if runner.lower() in LOCAL_RUNNERS else "the runner's"
    typer.echo(f"corpus build: domain={domain} inputs={', '.join(inputs)} -> {settings.output} (runner {runner}, workers {workers_text})", err=True)
    from beam_jobs.runners import RunnerSettingsError

    try:
        manifest = run_build(settings)
    except RunnerSettingsError as err:
        raise typer.BadParameter(str(err), param_hint="--runner/--runner-option/--runner-config") from None
    print_summary(manifest, settings.output)


@app.command()
def stats(
    directory: str = typer.Argument(..., help="A corpus build output directory."),
    histogram: Optional[Path] = typer.Option(None, "--histogram", help="Write a PNG histogram of document lengths (tokens)."),
    storage_option: Optional[list[str]] = typer.Option(None, "--storage-option", help=_STORAGE_HELP),
) -> None:
    """Print the manifest's figures as tables."""
    _use_storage_options(storage_option)
    from specialize.corpus.manifest import read_manifest
    from specialize.corpus.report import print_summary, write_length_histogram

    manifest = read_manifest(directory)
    print_summary(manifest, directory)
    if histogram:
        write_length_histogram(directory, manifest, histogram)
        typer.echo(f"wrote {histogram}")


@app.command()
def verify(
    directory: str = typer.Argument(..., help="A corpus build output directory."),
    storage_option: Optional[list[str]] = typer.Option(None, "--storage-option", help=_STORAGE_HELP),
) -> None:
    """Check every shard against the manifest (sha256, rows, tokens, no strays); exit 1 on a problem."""
    _use_storage_options(storage_option)
    from specialize.corpus.manifest import read_manifest, verify_shards

    problems = verify_shards(directory)
    count = len(read_manifest(directory)["shards"])
    for problem in problems:
        typer.echo(f"{directory}/{problem.shard}: {problem.problem}", err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"{count} shards OK")


def _show_repositories(directory: str, tokenizer_source: str | None, limit: int, chars: int) -> None:
    from specialize.corpus.manifest import read_manifest
    from specialize.corpus.outputs import join
    from specialize.corpus.repos import REPO_LANGUAGE, show_repository_document
    from specialize.corpus.shards import open_shard
    from specialize.tokenization import load_tokenizer

    try:
        manifest = read_manifest(directory)
        tok = load_tokenizer(tokenizer_source or manifest["tokenizer"].get("source"))
    except (FileNotFoundError, ValueError) as err:
        raise typer.BadParameter(str(err), param_hint="DIR/--tokenizer") from None
    if tok.fingerprint != manifest["tokenizer"]["fingerprint"]:
        raise typer.BadParameter(f"{directory} was tokenized with {manifest['tokenizer']['name']}; pass it with --tokenizer",
                                 param_hint="--tokenizer")
    shown = 0
    for shard in manifest["shards"]:
        for row in open_shard(join(directory, shard["path"])).to_pylist():
            if row["language"] != REPO_LANGUAGE or shown >= limit:
                continue
            text = show_repository_document(row["tokens"], tok)
            typer.echo(f"=== {row['source']}  ({len(row['tokens']):,} tokens)")
            typer.echo(text[:chars].rstrip() + ("\n..." if len(text) > chars else ""))
            shown += 1
    repos = manifest.get("stages", {}).get("repos", {})
    typer.echo(f"({shown} repository document(s) shown; {repos.get('repositories', 0)} repositories, "
               f"{repos.get('documents', 0)} documents in the build)")


@app.command()
def inspect(
    directory: str = typer.Argument(..., help="A corpus build output directory."),
    reason: Optional[str] = typer.Option(None, "--reason", "-r", help="Only this removal reason (e.g. data_like, near_duplicate)."),
    stage: Optional[str] = typer.Option(None, "--stage", help="Only this stage (e.g. rules, near_dedup, decontaminate)."),
    limit: int = typer.Option(5, "--limit", "-n", help="Documents to show."),
    chars: int = typer.Option(600, "--chars", help="Characters of each document to show."),
    storage_option: Optional[list[str]] = typer.Option(None, "--storage-option", help=_STORAGE_HELP),
    repository: bool = typer.Option(False, "--repository", help="Show assembled repository documents (a --repo-level build) instead of removed ones."),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help="With --repository: the build's tokenizer (default: the manifest's source)."),
) -> None:
    """Show removed documents (first by source) per stage and reason, to tune thresholds by looking; with
    --repository, the assembled repository documents as the model reads them."""
    _use_storage_options(storage_option)
    if repository:
        _show_repositories(directory, tokenizer, limit, chars)
        return
    from specialize.quality.inspect import removed_samples

    try:
        samples = removed_samples(directory, reason=reason, stage=stage)
    except (FileNotFoundError, ValueError) as err:
        raise typer.BadParameter(str(err), param_hint="DIR/--reason/--stage") from None
    for sample in samples[:limit]:
        typer.echo(f"=== {sample['stage']}/{sample['reason']}  {sample['source']}  ({sample['bytes']:,} bytes)  {sample['detail']}")
        typer.echo(sample["text"][:chars].rstrip() + ("\n..." if len(sample["text"]) > chars else ""))
    typer.echo(f"({min(limit, len(samples))} of {len(samples)} kept samples shown; counts per reason: `specialize corpus stats {directory}`)")
