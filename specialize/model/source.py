"""``--from``: the one place that knows what a model argument can name and where its files are.

Every command that takes a model (``train``, ``sft``, ``evaluate``, ``eval``, ``chat``, ``convert``,
``model info``) resolves it here, so they accept the same forms and behave alike:

- a **run directory** of ``specialize train`` or ``specialize sft`` (``<run>/checkpoints/latest``):
  the newest complete checkpoint's model;
- a **training step** directory (``<run>/checkpoints/step-000100``): its ``model/``;
- a **specialize model checkpoint** (a directory with ``specialize.json``);
- a **Hugging Face checkpoint directory** (``config.json`` of Qwen 1.0, Qwen2 or Qwen3): converted
  once by the command that trains from it;
- a **preset name or Hub id** (``qwen2.5-7b``, ``Qwen/Qwen3-8B-Base``, ``owner/repo``): downloaded
  from the Hub (safetensors, config and tokenizer only; never remote code) and converted;
- a **project preset without weights** (``qwen-tiny``): random initialisation from the run's seed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from specialize.model import FROM_HELP  # noqa: F401 - the help text of the forms resolved here
from specialize.model.architecture import ModelPreset
from specialize.model.presets import preset_for_name, preset_from_hf_config

Kind = Literal["run", "step", "checkpoint", "hf", "hub", "preset"]

#: What a conversion needs from a Hub repo: no *.bin (pickles), no *.py (remote code).
DOWNLOAD_PATTERNS = (
    "config.json", "generation_config.json", "*.safetensors", "model.safetensors.index.json",
    "qwen.tiktoken", "tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json",
)
#: Files that make an HF directory carry its own tokenizer (any of Qwen's formats).
HF_TOKENIZER_FILES = ("qwen.tiktoken", "tokenizer.json", "vocab.json")


@dataclass(frozen=True)
class ResolvedModel:
    """What ``--from`` named, and where each part of it is."""

    source: str  # as given
    kind: Kind
    #: The architecture; None only for a Hub repo no preset names, until ``download``.
    preset: ModelPreset | None
    checkpoint: Path | None = None  # a specialize model checkpoint to load (run, step, checkpoint)
    hf_directory: Path | None = None  # a local Hugging Face checkpoint (hf)
    hub_repo: str | None = None  # the Hub repo to download (hub)
    tokenizer: str | None = None  # tokenizer source (None: the embedded tiny vocabulary)
    run_directory: Path | None = None  # the run a run/step checkpoint belongs to

    @property
    def needs_conversion(self) -> bool:
        """Hugging Face weights that a training command imports into ``<output>/converted`` first."""
        return self.kind in ("hf", "hub")

    @property
    def random_init(self) -> bool:
        return self.kind == "preset"

    def describe(self) -> str:
        where = self.checkpoint or self.hf_directory or self.hub_repo
        name = self.preset.name if self.preset else self.source
        return {"run": f"run {self.run_directory}: newest checkpoint {where}", "step": f"training step {where}",
                "checkpoint": f"specialize checkpoint {where}", "hf": f"Hugging Face checkpoint {where}",
                "hub": f"Hub repo {where}", "preset": f"preset {name} (random initialisation)"}[self.kind]


def resolve(source: str | Path) -> ResolvedModel:
    """Resolve a model argument without downloading or converting anything (see the module doc)."""
    text = str(source)
    path = Path(text).expanduser()
    if path.is_dir():
        return _resolve_directory(text, path)
    if path.exists():
        raise NotADirectoryError(f"--from {text}: expected a directory (run, checkpoint or Hugging Face export), got a file")
    preset = preset_for_name(text)
    if preset is not None:
        if preset.hf_repo is None:
            return ResolvedModel(text, "preset", preset, tokenizer=preset.tokenizer)
        return ResolvedModel(text, "hub", preset, hub_repo=preset.hf_repo)
    if _looks_like_hub_id(text):
        return ResolvedModel(text, "hub", None, hub_repo=text)
    from specialize.model.presets import known_presets

    raise FileNotFoundError(
        f"--from {text}: no such run or checkpoint directory, and not a preset or Hugging Face repo id "
        f"(presets: {', '.join(known_presets())}; a run starts with `specialize train --from qwen-tiny`)"
    )


def _looks_like_hub_id(text: str) -> bool:
    """``owner/repo``, unless its first part is a local directory (then it is a missing local path)."""
    if text.count("/") != 1 or text.startswith((".", "/", "~")):
        return False
    return not Path(text.split("/")[0]).is_dir()


def _resolve_directory(text: str, path: Path) -> ResolvedModel:
    from specialize.model.checkpoint import META_FILE

    if (path / META_FILE).is_file():
        return _checkpoint(text, "checkpoint", path, run=_run_of(path))
    if (path / "model" / META_FILE).is_file():
        return _checkpoint(text, "step", path / "model", run=_run_of(path))
    if (path / "checkpoints").is_dir():
        from specialize.train.checkpointing import latest_checkpoint

        latest = latest_checkpoint(path)
        if latest is None:
            raise FileNotFoundError(f"--from {text}: a run directory without a complete checkpoint yet "
                                    f"(no {path / 'checkpoints' / 'latest'})")
        return _checkpoint(text, "run", latest / "model", run=path)
    if (path / "config.json").is_file():
        return ResolvedModel(text, "hf", hf_directory_preset(path), hf_directory=path, tokenizer=_hf_tokenizer(path))
    raise FileNotFoundError(
        f"--from {text}: {path} is not a model: no specialize.json (checkpoint), model/ (training step), "
        f"checkpoints/ (run directory) or config.json (Hugging Face checkpoint)"
    )


def _checkpoint(text: str, kind: Kind, directory: Path, *, run: Path | None) -> ResolvedModel:
    from specialize.model.checkpoint import read_checkpoint_meta, resolve_tokenizer_source

    meta = read_checkpoint_meta(directory)
    tokenizer = resolve_tokenizer_source(directory, meta.get("tokenizer_source"))
    preset = ModelPreset.from_dict({**meta["preset"], "tokenizer": tokenizer})
    return ResolvedModel(text, kind, preset, checkpoint=directory, tokenizer=tokenizer, run_directory=run)


def _run_of(path: Path) -> Path | None:
    """The run directory above a step or model checkpoint (``<run>/checkpoints/step-N[/model]``)."""
    for parent in path.resolve().parents:
        if parent.name == "checkpoints":
            return parent.parent
    return None


def _hf_tokenizer(directory: Path) -> str | None:
    return str(directory) if any((directory / name).is_file() for name in HF_TOKENIZER_FILES) else None


def read_hf_config(directory: Path) -> dict[str, Any]:
    path = directory / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{directory}: not a Hugging Face checkpoint (no config.json)") from err
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: invalid JSON ({err})") from err
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return config


def hf_directory_preset(directory: Path) -> ModelPreset:
    """The preset of a Hugging Face checkpoint directory, from its ``config.json``."""
    return preset_from_hf_config(read_hf_config(directory), name=directory.name,
                                 source=str(directory / "config.json"), tokenizer=_hf_tokenizer(directory))


def model_preset(source: str | Path) -> ModelPreset:
    """The architecture a model argument names (a Hub repo no preset names is downloaded to read it)."""
    resolved = resolve(source)
    return resolved.preset if resolved.preset is not None else download(resolved).preset


def download(resolved: ResolvedModel, *, cache_dir: str | Path | None = None, offline: bool | None = None) -> ResolvedModel:
    """A Hub model as a local Hugging Face directory (``huggingface_hub``'s cache); others unchanged.

    Offline, or when the Hub cannot be reached, the error says what to download and where to put it.
    """
    if resolved.kind != "hub":
        return resolved
    from huggingface_hub import snapshot_download

    repo = resolved.hub_repo
    if offline is None:
        offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    try:
        directory = Path(snapshot_download(repo_id=repo, cache_dir=cache_dir, allow_patterns=list(DOWNLOAD_PATTERNS),
                                           local_files_only=offline))
    except Exception as err:  # network errors, offline mode, missing repo: all end the same way
        raise RuntimeError(
            f"cannot get {repo} from the Hugging Face Hub ({type(err).__name__}: {err}). "
            f"On a machine with internet run `huggingface-cli download {repo} --local-dir DIR` "
            f"(safetensors, config and tokenizer files are enough), copy DIR here and pass --from DIR"
        ) from err
    return replace(resolved, kind="hf", preset=hf_directory_preset(directory), hf_directory=directory,
                   tokenizer=_hf_tokenizer(directory))


def megatron_checkpoint(source: str | Path) -> ResolvedModel:
    """``source`` as a specialize model checkpoint (a run's newest, a step's, or one itself): what an
    export or a megatron chat reads; a clear error for Hugging Face weights or a preset."""
    resolved = resolve(source)
    if resolved.checkpoint is None:
        raise ValueError(f"{source}: expected a specialize checkpoint, training step or run directory, "
                         f"got a {resolved.describe()}")
    return resolved


def local_hf_model(source: str | Path) -> ResolvedModel:
    """``source`` as a local Hugging Face checkpoint (downloaded when it names a Hub model), its preset read."""
    resolved = download(resolve(source))
    if resolved.kind != "hf":
        raise ValueError(f"--from {source}: expected a Hugging Face checkpoint, got a {resolved.describe()}")
    return resolved
