"""Reading chat data: OpenAI ``messages`` rows and Qwen ``conversations`` rows, one JSON object a line.

Both formats become the same ``Conversation`` (a tuple of ``Message(role, content)``). A row that
cannot be used is counted under a reason and skipped; the first few are named with ``file:line`` so
the data can be fixed. A missing file is an error (a typo, not bad data).

Accepted shapes::

    {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}     # OpenAI
    {"conversations": [{"from": "system"|"user"|"assistant", "value": "..."}, ...]}  # Qwen finetune.py

ShareGPT's ``human`` / ``gpt`` are read as ``user`` / ``assistant``. An OpenAI content given as a list
of ``{"type": "text", "text": ...}`` parts is joined; any other part type makes the row malformed.
A conversation may start with one system message; it needs at least one assistant message (there
would be nothing to learn otherwise).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

ROLES = ("system", "user", "assistant")
ROLE_ALIASES = {"human": "user", "gpt": "assistant"}
MAX_EXAMPLES = 5  # malformed rows named per reason


@dataclass(frozen=True)
class Message:
    role: str  # one of ROLES
    content: str


@dataclass(frozen=True)
class Conversation:
    messages: tuple[Message, ...]
    source: str  # "file:line", so every sample can be traced back to its row


@dataclass
class ReadReport:
    """What was read and what was skipped, by reason, with the first rows of each reason named."""

    rows: int = 0
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, reason: str, where: str, detail: str) -> None:
        self.skipped[reason] += 1
        named = self.examples.setdefault(reason, [])
        if len(named) < MAX_EXAMPLES:
            named.append(f"{where}: {detail}")

    def merge(self, other: "ReadReport") -> None:
        self.rows += other.rows
        self.kept += other.kept
        self.skipped.update(other.skipped)
        for reason, named in other.examples.items():
            mine = self.examples.setdefault(reason, [])
            mine.extend(named[: MAX_EXAMPLES - len(mine)])

    def as_dict(self) -> dict:
        return {"rows": self.rows, "kept": self.kept, "skipped": dict(self.skipped), "examples": self.examples}

    def summary(self) -> str:
        if not self.skipped:
            return f"{self.kept} conversations read, none skipped"
        lines = [f"{self.kept} of {self.rows} conversations read; skipped {sum(self.skipped.values())}:"]
        for reason, count in sorted(self.skipped.items()):
            lines.append(f"  {reason}: {count} (e.g. {self.examples[reason][0]})")
        return "\n".join(lines)


class MalformedRow(ValueError):
    """A row that cannot become a conversation; ``reason`` is the counter key."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def _content_text(content, index: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                raise MalformedRow("content_not_text", f"message {index}: content part {str(part)[:60]!r} is not a text part")
            parts.append(part["text"])
        return "".join(parts)
    raise MalformedRow("content_not_text", f"message {index}: content is {type(content).__name__}, not a string")


def parse_row(row) -> tuple[Message, ...]:
    """Messages of one decoded JSON row, in either format; raises MalformedRow with the reason."""
    if not isinstance(row, dict):
        raise MalformedRow("not_an_object", f"a JSON {type(row).__name__}, expected an object")
    if "messages" in row:
        name, role_key, content_key = "messages", "role", "content"
    elif "conversations" in row:
        name, role_key, content_key = "conversations", "from", "value"
    else:
        raise MalformedRow("no_messages_field", f"no 'messages' or 'conversations' field (keys: {sorted(row)[:6]})")
    turns = row[name]
    if not isinstance(turns, list):
        raise MalformedRow("messages_not_a_list", f"{name!r} is a {type(turns).__name__}, expected a list")
    if not turns:
        raise MalformedRow("empty_conversation", "no messages")
    messages = []
    for index, turn in enumerate(turns):
        if not isinstance(turn, dict) or role_key not in turn or content_key not in turn:
            raise MalformedRow("bad_message", f"message {index} needs {role_key!r} and {content_key!r}: {str(turn)[:60]!r}")
        role = ROLE_ALIASES.get(turn[role_key], turn[role_key])
        if role not in ROLES:
            raise MalformedRow("unknown_role", f"message {index} has role {turn[role_key]!r} (known: {', '.join(ROLES)})")
        if role == "system" and index != 0:
            raise MalformedRow("misplaced_system", f"message {index} is a system message; only the first may be")
        messages.append(Message(role, _content_text(turn[content_key], index)))
    if not any(m.role == "assistant" for m in messages):
        raise MalformedRow("no_assistant_turn", "no assistant message, nothing to train on")
    return tuple(messages)


def read_jsonl(path: str | Path, report: ReadReport) -> Iterator[Conversation]:
    """Conversations of one JSONL file; bad rows go to ``report``. Blank lines are not rows."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: SFT data file does not exist")
    with path.open("r", encoding="utf-8", errors="strict") as handle:
        line_number = 0
        while True:
            try:
                line = handle.readline()
            except UnicodeDecodeError as err:
                raise ValueError(f"{path}: after line {line_number}: not UTF-8 ({err.reason})") from err
            if not line:
                break
            line_number += 1
            if not line.strip():
                continue
            where = f"{path}:{line_number}"
            report.rows += 1
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                report.skip("invalid_json", where, err.msg)
                continue
            try:
                messages = parse_row(row)
            except MalformedRow as err:
                report.skip(err.reason, where, str(err))
                continue
            report.kept += 1
            yield Conversation(messages, where)


def read_conversations(paths: Iterable[str | Path]) -> tuple[list[Conversation], ReadReport]:
    """Every usable conversation of ``paths`` in order, and the report of what was skipped."""
    report = ReadReport()
    conversations: list[Conversation] = []
    for path in paths:
        conversations.extend(read_jsonl(path, report))
    return conversations, report


def to_openai_row(conversation: Conversation) -> dict:
    """The OpenAI ``messages`` row of a conversation (how embedded samples are written)."""
    return {"messages": [{"role": m.role, "content": m.content} for m in conversation.messages]}
