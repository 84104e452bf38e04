"""The model families specialize converts, trains and exports: one module each, registered here.

Adding a family is its own module (see ``base.ModelFamily``) and one line in ``FAMILIES``.
"""

from __future__ import annotations

from typing import Any

from specialize.model.families import qwen1, qwen2, qwen3
from specialize.model.families.base import ModelFamily

FAMILIES: dict[str, ModelFamily] = {family.name: family for family in (qwen1.FAMILY, qwen2.FAMILY, qwen3.FAMILY)}


def family_of_config(config: dict[str, Any], source: str) -> ModelFamily:
    """The family a Hugging Face config.json describes; a clear error listing what is supported."""
    for family in FAMILIES.values():
        if family.matches(config):
            return family
    supported = "; ".join(family.title for family in FAMILIES.values())
    raise ValueError(
        f"{source}: unsupported architecture {sorted(config.get('architectures') or []) or None} "
        f"(model_type={config.get('model_type')!r}); specialize converts {supported}"
    )


__all__ = ["FAMILIES", "ModelFamily", "family_of_config"]
