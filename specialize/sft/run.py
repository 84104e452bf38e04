"""``specialize sft``: SFT config + the model's tokenizer + the SFT provider -> the shared training
runtime (``specialize.train.runtime.run_training``) -> a Hugging Face export with the chat template.

Nothing here trains: the loop, parallelism, checkpoints, exact resume and logging are the runtime's.
A run directory holds the runtime's files plus ``sft.yaml`` (the ``sft:`` section, read back by the
export for the system prompt of the chat template) and ``hf/`` (the export).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import yaml

from specialize.configs import CONFIG_DIR
from specialize.sft.chatml import chat_template
from specialize.sft.provider import SftDataConfig
from specialize.tokenization import QwenTokenizer, load_tokenizer

SFT_FILE = "sft.yaml"
HF_DIR = "hf"


def default_config_path(source: str | None, domain: str) -> Path:
    """sft-tiny.yaml for the embedded tiny model, else sft-<domain>.yaml (the first domain's)."""
    if source is None or _preset_name(source) == "qwen-tiny":
        return CONFIG_DIR / "sft-tiny.yaml"
    return CONFIG_DIR / f"sft-{domain.split(',')[0].strip()}.yaml"


def load_sft_config(path: str | Path | None, overrides: list[str] = ()):
    """(RunConfig, SftDataConfig) from a YAML whose ``sft:`` section is ours and the rest the runtime's.

    Unknown keys are errors naming the file or the override (the runtime's config rules).
    """
    from specialize.train.config import RunConfig, apply_mapping, read_config_file

    run, sft = RunConfig(), SftDataConfig()
    if path is not None:
        mapping = read_config_file(path, examples="megatron_configs/sft-*.yaml")
        apply_mapping(sft, mapping.pop("sft", None) or {}, f"{path}: sft")
        apply_mapping(run, mapping, str(path))
    apply_overrides(run, sft, overrides)
    return run, sft


def apply_overrides(run, sft: SftDataConfig, overrides: list[str]) -> None:
    """``--set sft.key=value`` goes to the SFT section, every other ``--set`` to the run config."""
    from specialize.train.config import apply_override

    for assignment in overrides:
        if assignment.startswith("sft."):
            apply_override(sft, assignment[len("sft."):])
        else:
            apply_override(run, assignment)
    check_sft_config(sft)


def check_sft_config(sft: SftDataConfig) -> None:
    from specialize.sft.packing import OVERLENGTH_POLICIES
    from specialize.sft.samples import DOMAINS
    from specialize.train.config import ConfigError

    if not sft.domains() or any(d not in DOMAINS for d in sft.domains()):
        raise ConfigError(f"sft.domain {sft.domain!r}: expected {' or '.join(DOMAINS)}, or both comma-separated")
    if sft.overlength not in OVERLENGTH_POLICIES:
        raise ConfigError(f"sft.overlength {sft.overlength!r}: expected one of {', '.join(OVERLENGTH_POLICIES)}")
    try:
        sft.mask_options()
    except ValueError as err:
        raise ConfigError(f"sft.{err}") from None


def resolve_source(source: str) -> str:
    """A run directory becomes its newest model checkpoint, recorded as such in the run's config (so a
    resumed SFT run keeps fine-tuning the step it started from, whatever the CPT run saved since)."""
    from specialize.model.source import resolve

    resolved = resolve(source)
    return str(resolved.checkpoint) if resolved.kind == "run" else source


def _preset_name(source: str) -> str | None:
    from specialize.model.source import resolve

    try:
        resolved = resolve(source)
    except FileNotFoundError:
        return None
    return resolved.preset.name if resolved.preset is not None else None


def model_tokenizer(source: str) -> QwenTokenizer:
    """The tokenizer the runtime will use for ``--from source`` (its checkpoint's, or the preset's)."""
    from specialize.model.source import download, resolve

    return load_tokenizer(download(resolve(source)).tokenizer)


def data_files(sft: SftDataConfig, output: Path) -> list[Path]:
    """The configured files, or the embedded sample of each ``sft.domain`` (written once under the run)."""
    if sft.data:
        return [Path(p) for p in sft.data]
    from specialize.sft.samples import write_embedded

    paths = []
    for domain in sft.domains():
        path = output / "data" / f"embedded-{domain}.jsonl"
        if not path.is_file():
            write_embedded(domain, path)
        paths.append(path)
    return paths


def run_sft(run, sft: SftDataConfig):
    """Train (collective under torchrun) and, on rank 0, export. Returns (RunResult, hf dir or None)."""
    from specialize.model.parallel import destroy_parallel
    from specialize.train.runtime import run_training

    run.model.source = resolve_source(run.model.source)  # a missing run directory is an error, not random weights
    output = Path(run.output)
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0:
        output.mkdir(parents=True, exist_ok=True)
        files = data_files(sft, output)
        (output / SFT_FILE).write_text(yaml.safe_dump(asdict(sft), sort_keys=False), encoding="utf-8")
    else:
        files = None
    provider = _DeferredFiles(sft, run.model.source, output, files)
    try:
        result = run_training(run, provider)
    finally:
        destroy_parallel()
    hf = None
    if sft.export and rank == 0 and not result.interrupted:
        # Always a fresh process: this one holds the run's GPU memory and the attention backend's NVTE_*
        # variables, which megatron checks against the export's model (a crash after single-GPU
        # flash/local runs); a torchrun job's process is also part of a group the export must not join.
        hf = export_in_subprocess(output, sft.export_dir)
    return result, hf


class _DeferredFiles:
    """The SFT provider, with files decided on rank 0 (the embedded sample is written there once)."""

    def __init__(self, sft: SftDataConfig, source: str, output: Path, files: list[Path] | None) -> None:
        self.sft, self.source, self.output, self.files = sft, source, output, files

    def build(self, request):
        import torch.distributed as dist

        from specialize.sft.provider import SFTProvider

        dist.barrier()  # rank 0 has written the embedded sample
        files = self.files if self.files is not None else data_files(self.sft, self.output)
        converted = self.output / "converted"  # where the runtime put a converted Hugging Face model
        source = str(converted) if (converted / "specialize.json").is_file() else self.source
        return SFTProvider(self.sft, files, model_tokenizer(source)).build(request)


def export_run(run_dir: str | Path, destination: str | Path | None = None) -> Path:
    """Export the newest checkpoint of an SFT run as a HF Qwen2ForCausalLM with the ChatML template."""
    from specialize.convert import megatron_to_hf
    from specialize.train.checkpointing import latest_checkpoint

    run_dir = Path(run_dir)
    latest = latest_checkpoint(run_dir)
    if latest is None:
        raise FileNotFoundError(f"{run_dir}: no checkpoint to export (no checkpoints/latest)")
    return megatron_to_hf(latest / "model", Path(destination or run_dir / HF_DIR), chat_template=run_chat_template(run_dir))


def run_chat_template(run_dir: Path) -> str:
    """The ChatML template an SFT run's export carries: with the system prompt its ``sft.yaml`` recorded."""
    sft_file = run_dir / SFT_FILE
    system_prompt = SftDataConfig().system_prompt
    if sft_file.is_file():
        system_prompt = (yaml.safe_load(sft_file.read_text(encoding="utf-8")) or {}).get("system_prompt", system_prompt)
    return chat_template(system_prompt)


def export_in_subprocess(run_dir: Path, destination: str | None = None) -> Path:
    """The export in a fresh single process (it reshards to TP=1/PP=1), free of the run's environment:
    no launcher variables, no Transformer Engine attention switches (``NVTE_*``)."""
    from specialize.model.parallel import launcher_free_environment

    env = {k: v for k, v in launcher_free_environment().items() if not k.startswith("NVTE_")}
    destination = Path(destination or run_dir / HF_DIR)
    subprocess.run([sys.executable, "-m", "specialize.cli", "sft", "export", str(run_dir), "--output", str(destination)],
                   check=True, env=env)
    return destination
