"""Secrets in code: private keys, cloud/API tokens, and passwords in config-like assignments.

Policy: a file with a secret is DROPPED (reason ``secret_<kind>``), not redacted. A file that leaks one
credential often leaks others our patterns miss (the matching secret key of an access key id, a
connection string), so redacting only what matched would give a false sense of safety; such files
are rare, so dropping costs little. Patterns follow the well-known formats (as in gitleaks /
detect-secrets); password assignments need a quoted literal of 8+ characters with a letter and a
digit or symbol, and skip obvious placeholders, so ``password = os.environ["PW"]`` and
``password = "changeme"`` stay.
"""

from __future__ import annotations

import re

# (kind, gate, pattern): every match contains a match of the gate, a literal checked with ``in`` or a
# prefix-led expression, both at memory speed (one scan for the five GitHub prefixes, not five), so
# the full expressions (whose leading ``\b`` defeats the regex engine's prefix search) only scan the
# rare files that could match.
_PATTERNS: list[tuple[str, str | re.Pattern, re.Pattern]] = [
    ("private_key", "PRIVATE KEY",
     re.compile(r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |PGP |ENCRYPTED )?PRIVATE KEY(?: BLOCK)?-----")),
    ("aws_access_key", re.compile(r"A[KS]IA"), re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("github_token", re.compile(r"gh[pousr]_|github_pat_"), re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})\b")),
    ("slack_token", "xox", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("google_api_key", "AIza", re.compile(r"\bAIza[0-9A-Za-z_\-]{35}\b")),
    ("openai_key", "sk-", re.compile(r"\bsk-(?:proj-)?[A-Za-z0-9_\-]{32,}\b")),
    ("stripe_key", "_live_", re.compile(r"\b[rs]k_live_[0-9A-Za-z]{20,}\b")),
]
_ASSIGNMENT = re.compile(
    r"""(?ix)
    \b(?:password|passwd|pwd|secret|secret_key|api_key|apikey|access_token|auth_token|private_key|client_secret)\b
    ["']?\s*[:=]\s*                  # key: value / key = value / "key": "value"
    (["'])(?P<value>[^"'\s]{8,})\1   # a quoted literal without spaces, 8+ characters
    """
)
#: Where an assignment can start: a key word, found in the lower-cased text with ``str.find`` (memory
#: speed); the case-insensitive pattern then runs anchored there instead of scanning the whole file.
_KEY_STARTS = ("passw", "pwd", "secret", "api_key", "apikey", "access_token", "auth_token", "private_key", "client_secret")
_PLACEHOLDER = re.compile(r"(?i)example|your|placeholder|changeme|dummy|xxxx|\*\*\*|<|>|\$\{|\{\{|%s|\.\.\.|redacted")


def _looks_real(value: str) -> bool:
    has_letter = any(c.isalpha() for c in value)
    has_other = any(c.isdigit() or not c.isalnum() for c in value)
    return has_letter and has_other and not _PLACEHOLDER.search(value) and len(set(value)) > 3


def find_secret(text: str) -> tuple[str, str] | None:
    """``(kind, where)`` of the first secret found, else None. ``where`` never contains the secret."""
    for kind, gate, pattern in _PATTERNS:
        if (gate in text) if isinstance(gate, str) else gate.search(text):
            match = pattern.search(text)
            if match:
                return kind, f"line {text.count(chr(10), 0, match.start()) + 1}"
    lowered = text.lower()
    if len(lowered) == len(text):
        matches = (_ASSIGNMENT.match(text, start) for start in sorted(_key_positions(lowered)))
    else:  # lower-casing changed the length (a few Unicode letters): offsets differ, scan the whole text
        matches = _ASSIGNMENT.finditer(text)
    for match in matches:
        if match and _looks_real(match.group("value")):
            return "password_assignment", f"line {text.count(chr(10), 0, match.start()) + 1}"
    return None


def _key_positions(lowered: str) -> set[int]:
    """Offsets where a key word of an assignment starts (the anchored pattern checks the rest)."""
    positions = set()
    for word in _KEY_STARTS:
        start = lowered.find(word)
        while start != -1:
            positions.add(start)
            start = lowered.find(word, start + 1)
    return positions


def secret_verdict(text: str) -> tuple[str, str] | None:
    """Filter form: ``("secret_<kind>", where)`` or None."""
    found = find_secret(text)
    return None if found is None else (f"secret_{found[0]}", found[1])


def redact_secrets(text: str) -> str:
    """``text`` with every match replaced by ``<REDACTED:kind>``: for samples shown by `corpus inspect`."""
    for kind, _, pattern in _PATTERNS:
        text = pattern.sub(f"<REDACTED:{kind}>", text)
    if "PRIVATE KEY" in text:  # drop a key body that follows its BEGIN line
        text = re.sub(r"(<REDACTED:private_key>)[\s\S]*?(?:-----END[^-]*-----|$)", r"\1", text)
    return _ASSIGNMENT.sub(lambda m: m.group(0).replace(m.group("value"), "<REDACTED:password>")
                           if _looks_real(m.group("value")) else m.group(0), text)
