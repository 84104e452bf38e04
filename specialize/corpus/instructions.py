"""Instruction-augmented pretraining: chat data rendered into plain pretraining documents.

The Qwen report lists instruction data mixed into pretraining among its data steps; DeepSeek-Coder,
Qwen2.5-Coder and MiniCPM do the same. A conversation (any format ``specialize sft`` reads: OpenAI
``messages``, ShareGPT ``conversations``) becomes one document of role-labelled paragraphs::

    System: You are a careful mathematician.

    User: What is 3 + 4?

    Assistant: 7

Plain Q/A text, not ChatML: pretraining documents are tokenized with ``encode_ordinary`` (every
special-token string in any document, ``<|im_start|>`` typed into a chat included, is ordinary text, so
data can never inject control ids), and the ChatML control tokens stay what SFT teaches.

Conversations that are also in an SFT split the user names (``--instructions-exclude SFT.jsonl``) are
dropped (``instructions/in_sft_split``), compared by their normalised messages, so the same
conversation is not both pretraining text and SFT data. The rendered documents then go through the
build's dedup and decontamination like every other document (not through the domain's rule filters,
which judge code or web pages, not dialogue).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable

from specialize.corpus.document import Document, Rejection

INSTRUCTIONS_STAGE = "instructions"
INSTRUCTION_LANGUAGE = "instruction"  # the shard's language column for these documents
ROLE_LABELS = {"system": "System", "user": "User", "assistant": "Assistant"}


def render_conversation(conversation) -> str:
    """The plain-text pretraining document of one conversation (see the module doc)."""
    return "\n\n".join(f"{ROLE_LABELS[m.role]}: {m.content.strip()}" for m in conversation.messages) + "\n"


def conversation_key(conversation) -> str:
    """Identity of a conversation across files: roles and whitespace-normalised contents."""
    digest = hashlib.sha256()
    for message in conversation.messages:
        digest.update(message.role.encode() + b"\0" + " ".join(message.content.split()).encode("utf-8") + b"\0")
    return digest.hexdigest()


def instruction_documents(paths: Iterable[str], domain: str, *, exclude: Iterable[str] = (),
                          strict: bool = False) -> tuple[list[Document], list[Rejection]]:
    """Documents of every usable conversation in ``paths``, minus those in the ``exclude`` SFT files;
    malformed rows and excluded conversations come back as rejections (``--strict``: malformed rows raise)."""
    from specialize.sft.conversations import read_conversations

    paths, exclude = list(paths), list(exclude)
    for path in paths + exclude:
        if "://" in path:
            raise ValueError(f"{path}: instruction and SFT files are read on the launching machine; copy it here first")
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such instruction/SFT JSONL file")
    conversations, report = read_conversations(paths)
    rejections = []
    for reason, count in report.skipped.items():  # every skipped row counted; the first few named
        named = report.examples.get(reason, [])
        for index in range(count):
            where, _, detail = (named[index] if index < len(named) else "(row not named): ").partition(": ")
            rejections.append(Rejection(INSTRUCTIONS_STAGE, reason, where, 0, detail))
    if strict and rejections:
        first = rejections[0]
        raise ValueError(f"--strict: {len(rejections)} malformed instruction row(s); first: {first.source}: {first.detail}")
    excluded_keys = set()
    if exclude:
        sft, _ = read_conversations(exclude)
        excluded_keys = {conversation_key(c) for c in sft}
    documents = []
    for conversation in conversations:
        text = render_conversation(conversation)
        if conversation_key(conversation) in excluded_keys:
            rejections.append(Rejection(INSTRUCTIONS_STAGE, "in_sft_split", conversation.source, len(text.encode("utf-8")),
                                        "the same conversation is in the SFT split (--instructions-exclude)", text[:200]))
            continue
        documents.append(Document(text=text, source=conversation.source, domain=domain,
                                  language=INSTRUCTION_LANGUAGE, input_name="instructions"))
    return documents, rejections
