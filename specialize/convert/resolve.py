"""``--from`` names: a local checkpoint directory, a preset name, or a Hugging Face repo id.

Known names (``qwen-14b``, ``Qwen/Qwen-14B``, ``qwen2.5-7b``...) resolve to their Hugging Face repo
through the presets and are downloaded with ``huggingface_hub`` into its cache: weights as
safetensors only, plus config and tokenizer files, never Python files (no remote code runs).
Offline, the error says what to download and where to put it.
"""

from __future__ import annotations

import os
from pathlib import Path

from specialize.model.presets import preset_for_name

#: What a conversion needs from a Hub repo: no *.bin (pickles), no *.py (remote code).
DOWNLOAD_PATTERNS = (
    "config.json", "generation_config.json", "*.safetensors", "model.safetensors.index.json",
    "qwen.tiktoken", "tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json",
)


def hub_repo_for(name: str) -> str | None:
    """The Hugging Face repo id a name refers to (preset short names included), or None."""
    preset = preset_for_name(name)
    if preset is not None and preset.hf_repo:
        return preset.hf_repo
    if name.count("/") == 1 and not name.startswith((".", "/", "~")):
        return name  # an explicit "owner/repo"
    return None


def resolve_checkpoint(name_or_dir: str | Path, *, cache_dir: str | Path | None = None,
                       offline: bool | None = None) -> Path:
    """A local directory holding the checkpoint, downloading a known name if needed."""
    text = str(name_or_dir)
    location = Path(text).expanduser()
    if location.is_dir():
        return location
    repo = hub_repo_for(text)
    if repo is None:
        if location.exists():
            raise NotADirectoryError(f"{location}: expected a checkpoint directory, got a file")
        raise FileNotFoundError(
            f"{text}: no such directory, and not a known model name or Hugging Face repo id "
            f"(e.g. qwen2.5-7b, Qwen/Qwen-14B)"
        )
    from huggingface_hub import snapshot_download

    if offline is None:
        offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    try:
        return Path(snapshot_download(
            repo_id=repo, cache_dir=cache_dir, allow_patterns=list(DOWNLOAD_PATTERNS), local_files_only=offline,
        ))
    except Exception as err:  # network errors, offline mode, missing repo: all end the same way
        raise RuntimeError(
            f"cannot get {repo} from the Hugging Face Hub ({type(err).__name__}: {err}). "
            f"On a machine with internet run `huggingface-cli download {repo} --local-dir DIR` "
            f"(safetensors, config and tokenizer files are enough), copy DIR here and pass --from DIR"
        ) from err
