"""Reading filter thresholds from a profile section, with errors that name the key and the file."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def from_section(cls: type[T], section: dict[str, Any], where: str) -> T:
    """Build dataclass ``cls`` from ``section``: every field required, no unknown keys, types coerced.

    ``where`` names the origin (e.g. ``code profile filters.code``) so a typo is easy to find.
    """
    if not isinstance(section, dict):
        raise ValueError(f"{where}: expected a mapping of thresholds, got {type(section).__name__}")
    names = {f.name: f for f in fields(cls)}
    unknown = sorted(set(section) - set(names))
    missing = sorted(n for n in names if n not in section)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(names)}")
    if missing:
        raise ValueError(f"{where}: missing key(s) {missing} (every threshold is set in the profile)")
    values = {}
    for name, spec in names.items():
        value = section[name]
        kind = spec.type if isinstance(spec.type, str) else getattr(spec.type, "__name__", str(spec.type))
        try:
            if value is None:
                values[name] = None
            elif kind.startswith("int"):
                values[name] = int(value)
            elif kind.startswith("float"):
                values[name] = float(value)
            elif kind.startswith("tuple"):
                values[name] = tuple(str(v) for v in value)
            elif kind.startswith("bool"):
                values[name] = bool(value)
            else:
                values[name] = value
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: {name}={value!r} is not a valid {kind} ({err})") from None
    return cls(**values)
