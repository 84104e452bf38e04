"""Where the shipped YAML lives, in a source checkout and in an installed package alike.

Users read and edit the top-level ``megatron_configs/`` (model presets in ``models/``, run configs
``cpt-*.yaml``, ``sft-*.yaml``). ``specialize/megatron_configs`` is a link to it, so the files are package
data of every built wheel: the Docker image's non-editable install, run from any working directory,
finds them as a source checkout does. A ``--config`` that is not a file here names a shipped config:
``cpt-code``, ``cpt-code.yaml`` or ``megatron_configs/cpt-code.yaml`` (the spelling in our docs and
Kubernetes manifests, which pods run from their own working directory).
"""

from __future__ import annotations

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent / "megatron_configs"
PRESET_DIR = CONFIG_DIR / "models"


def shipped_run_configs() -> dict[str, Path]:
    """Run config name (``cpt-code``) -> file, for every shipped run config."""
    return {path.stem: path for path in sorted(CONFIG_DIR.glob("*.yaml"))}


def resolve_config_path(value: str | Path) -> Path:
    """The file a ``--config`` value means: a path that exists, else the shipped config of that name.

    A value that is neither is returned unchanged, so the reader's "not found" error names what the
    user typed (with the shipped names beside it).
    """
    path = Path(value).expanduser()
    if path.exists():
        return path
    name = path.name.removesuffix(".yaml").removesuffix(".yml")
    relative_to_docs = path.parent.name in ("megatron_configs", "") and len(path.parts) <= 2
    shipped = shipped_run_configs().get(name)
    return shipped if shipped is not None and relative_to_docs else path
