"""Domain profiles: the YAML that decides which files and fields count for a domain.

Profiles ship in ``specialize/profiles/``; ``--profile FILE`` replaces the built-in one, so a user tunes
languages, fields, size limits and (issue 3) filter thresholds without touching code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PROFILE_DIR = Path(__file__).resolve().parent.parent / "profiles"
DOMAINS = ("code", "math", "text")


@dataclass(frozen=True)
class DomainProfile:
    domain: str
    extensions: dict[str, str]
    filenames: dict[str, str]
    text_fields: tuple[str, ...]
    record_templates: tuple[str, ...]
    language_fields: tuple[str, ...]
    path_fields: tuple[str, ...]
    default_record_language: str
    skip_dirs: frozenset[str]
    binary_extensions: frozenset[str]
    max_file_bytes: int
    max_record_bytes: int
    raw: dict[str, Any] = field(default_factory=dict, compare=False)  # every key, for later stages
    repo_fields: tuple[str, ...] = ()  # record fields naming the repository a file belongs to (--repo-level)

    def language_of_path(self, path: str) -> str | None:
        name = path.rsplit("/", 1)[-1]
        if name in self.filenames:
            return self.filenames[name]
        dot = name.rfind(".")
        return self.extensions.get(name[dot:].lower()) if dot > 0 else None

    def section(self, name: str) -> dict[str, Any]:
        """A later stage's settings (e.g. ``filters``), empty when the profile has none."""
        return dict(self.raw.get(name) or {})


def load_profile(domain: str, path: str | Path | None = None) -> DomainProfile:
    source = Path(path) if path else PROFILE_DIR / f"{domain}.yaml"
    if not path and domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}: choose one of {', '.join(DOMAINS)} or pass --profile FILE")
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"{source}: cannot read domain profile ({err})") from err
    try:
        return DomainProfile(
            domain=str(raw.get("domain", domain)),
            extensions={k.lower(): str(v) for k, v in (raw.get("extensions") or {}).items()},
            filenames={str(k): str(v) for k, v in (raw.get("filenames") or {}).items()},
            text_fields=tuple(raw.get("text_fields") or ("text",)),
            record_templates=tuple(raw.get("record_templates") or ()),
            language_fields=tuple(raw.get("language_fields") or ()),
            path_fields=tuple(raw.get("path_fields") or ()),
            default_record_language=str(raw.get("default_record_language", "unknown")),
            skip_dirs=frozenset(raw.get("skip_dirs") or ()),
            binary_extensions=frozenset(e.lower() for e in raw.get("binary_extensions") or ()),
            max_file_bytes=int(raw.get("max_file_bytes", 1 << 20)),
            max_record_bytes=int(raw.get("max_record_bytes", 1 << 20)),
            raw=raw,
            repo_fields=tuple(raw.get("repo_fields") or ()),
        )
    except (TypeError, ValueError, AttributeError) as err:
        raise ValueError(f"{source}: malformed domain profile ({err})") from err
