"""ChatML rendering with per-token loss targets, as Qwen's official fine-tuning script does.

A conversation becomes, turn after turn (a default system turn first when it has none)::

    <|im_start|>{role}\\n{content}<|im_end|>\\n

Special tokens come only from this template: ``<|im_start|>`` / ``<|im_end|>`` are the tokenizer's ids,
and every text (role header and content) goes through ``QwenTokenizer.encode``, which never emits a
special id, so a message that contains the text ``<|im_end|>`` cannot end its turn.

Tokenization equals what ``transformers`` gives for the rendered text (``CHAT_TEMPLATE`` +
``apply_chat_template``): the text between two special tokens, ``{role}\\n{content}``, is encoded as one
string. (Qwen's script encodes ``\\n`` and the content separately; the two differ only when a content
starts with a newline, where BPE merges it with the header's ``\\n``. We follow what inference sees.)

Which tokens are trained ("targets": the model is taught to produce them), per turn, by default
(``markers="qwen"``, exactly Qwen's ``finetune.py`` ``preprocess``)::

    token              system/user turn   assistant turn
    <|im_start|>       trained            trained
    role + "\\n"        masked             masked
    content            masked             trained
    <|im_end|>         trained            trained
    "\\n" after it      trained            trained

``markers="assistant"`` trains only assistant contents and their closing ``<|im_end|>`` (nothing of
system/user turns, no ``<|im_start|>``, no trailing ``\\n``). ``last_assistant_only`` masks the contents
(and, with ``markers="assistant"``, the ``<|im_end|>``) of every assistant turn but the last.
``train_on_prompt`` trains every token (plain language modelling of the rendered conversation).
The first token of a conversation is never a target in practice: nothing precedes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from specialize.sft.conversations import Conversation, Message
from specialize.tokenization import QwenTokenizer
from specialize.tokenization.special import IM_END, IM_START

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
MARKER_POLICIES = ("qwen", "assistant")

# What each token of an encoded conversation is (for masking and for ``sft inspect``).
KIND_START, KIND_HEADER, KIND_CONTENT, KIND_END, KIND_NEWLINE = range(5)
KIND_NAMES = ("im_start", "header", "content", "im_end", "newline")


@dataclass(frozen=True)
class MaskOptions:
    """How a conversation is rendered and which of its tokens are trained (see the module docstring)."""

    train_on_prompt: bool = False
    last_assistant_only: bool = False
    markers: str = "qwen"  # qwen | assistant
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT  # inserted when a conversation has none; None: no system turn

    def __post_init__(self) -> None:
        if self.markers not in MARKER_POLICIES:
            raise ValueError(f"markers={self.markers!r}: expected one of {', '.join(MARKER_POLICIES)}")


@dataclass(frozen=True)
class EncodedConversation:
    """Token ids of one rendered conversation and, per token, whether it is a training target."""

    ids: np.ndarray  # int64 [n]
    targets: np.ndarray  # bool [n]: the model is trained to produce this token (from the ones before it)
    kinds: np.ndarray  # int8 [n]: KIND_* of each token
    turns: np.ndarray  # int16 [n]: index of the rendered turn (0 is the system turn when one is rendered)
    source: str

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def num_targets(self) -> int:
        """Targets the model can actually learn (the first token has no context)."""
        return int(self.targets[1:].sum())

    def truncated(self, length: int) -> "EncodedConversation":
        return EncodedConversation(self.ids[:length], self.targets[:length], self.kinds[:length], self.turns[:length], self.source)


def with_system(messages: Sequence[Message], system_prompt: str | None) -> tuple[Message, ...]:
    """The messages as rendered: the default system prompt first when there is no system message."""
    messages = tuple(messages)
    if system_prompt is not None and (not messages or messages[0].role != "system"):
        return (Message("system", system_prompt), *messages)
    return messages


def render_text(messages: Sequence[Message], system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
                add_generation_prompt: bool = False) -> str:
    """The ChatML text of ``messages`` (what ``CHAT_TEMPLATE`` renders in transformers)."""
    text = "".join(f"{IM_START}{m.role}\n{m.content}{IM_END}\n" for m in with_system(messages, system_prompt))
    return text + (f"{IM_START}assistant\n" if add_generation_prompt else "")


def _jinja_string(text: str) -> str:
    """``text`` as a single-quoted Jinja string literal (Jinja unescapes backslash sequences)."""
    escaped = text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\r", "\\r")
    return f"'{escaped}'"


def chat_template(system_prompt: str | None = DEFAULT_SYSTEM_PROMPT) -> str:
    """Jinja chat template for ``tokenizer_config.json`` that renders exactly ``render_text``.

    Qwen2's own template with our default system prompt, so ``apply_chat_template`` in transformers
    gives the ids we trained on (for contents without special-token text: transformers' tokenizer
    turns a literal ``<|im_end|>`` inside a message into the special id, ours never does).
    """
    default = (
        "{%- if loop.first and message['role'] != 'system' %}"
        "{{- '<|im_start|>system\\n' + " + _jinja_string(system_prompt) + " + '<|im_end|>\\n' }}"
        "{%- endif %}"
    ) if system_prompt is not None else ""
    return (
        "{%- for message in messages %}" + default
        + "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
        "{%- endfor %}"
        "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
    )


def _split_header(tokenizer: QwenTokenizer, role: str, joint: list[int]) -> int:
    """Number of leading tokens of ``encode(role + "\\n" + content)`` that belong to the role header.

    Normally ``encode(role + "\\n")``; when the content starts with a newline BPE may merge it with the
    header's, and the merged token counts as content (so an assistant's leading newline is trained).
    """
    header = tokenizer.encode(role + "\n")
    count = 0
    while count < len(header) and count < len(joint) and header[count] == joint[count]:
        count += 1
    return count


def encode_conversations(tokenizer: QwenTokenizer, conversations: Sequence[Conversation],
                         options: MaskOptions = MaskOptions(), num_threads: int = 4) -> list[EncodedConversation]:
    """Render and tokenize every conversation (contents batch-encoded), with per-token targets."""
    rendered = [with_system(c.messages, options.system_prompt) for c in conversations]
    texts = [f"{m.role}\n{m.content}" for messages in rendered for m in messages]
    encoded = iter(tokenizer.encode_batch(texts, num_threads=num_threads)) if texts else iter(())
    newline = tokenizer.encode("\n")
    qwen_markers = options.markers == "qwen"
    result = []
    for conversation, messages in zip(conversations, rendered):
        last_assistant = max(i for i, m in enumerate(messages) if m.role == "assistant") if any(
            m.role == "assistant" for m in messages) else -1
        ids: list[int] = []
        targets: list[bool] = []
        kinds: list[int] = []
        turns: list[int] = []
        for turn, message in enumerate(messages):
            joint = next(encoded)
            header = _split_header(tokenizer, message.role, joint)
            content_trained = options.train_on_prompt or (
                message.role == "assistant" and (not options.last_assistant_only or turn == last_assistant))
            end_trained = options.train_on_prompt or qwen_markers or content_trained
            pieces = (
                ([tokenizer.im_start_id], KIND_START, options.train_on_prompt or qwen_markers),
                (joint[:header], KIND_HEADER, options.train_on_prompt),
                (joint[header:], KIND_CONTENT, content_trained),
                ([tokenizer.im_end_id], KIND_END, end_trained),
                (newline, KIND_NEWLINE, options.train_on_prompt or qwen_markers),
            )
            for piece_ids, kind, trained in pieces:
                ids.extend(piece_ids)
                targets.extend([trained] * len(piece_ids))
                kinds.extend([kind] * len(piece_ids))
                turns.extend([turn] * len(piece_ids))
        result.append(EncodedConversation(
            np.asarray(ids, dtype=np.int64), np.asarray(targets, dtype=bool), np.asarray(kinds, dtype=np.int8),
            np.asarray(turns, dtype=np.int16), conversation.source))
    return result


def encode_prompt(tokenizer: QwenTokenizer, messages: Sequence[Message],
                  system_prompt: str | None = DEFAULT_SYSTEM_PROMPT) -> list[int]:
    """Ids of ``messages`` followed by ``<|im_start|>assistant\\n``: the prompt a chat model continues."""
    ids: list[int] = []
    for message in with_system(messages, system_prompt):
        ids += [tokenizer.im_start_id, *tokenizer.encode(f"{message.role}\n{message.content}"), tokenizer.im_end_id,
                *tokenizer.encode("\n")]
    return ids + [tokenizer.im_start_id, *tokenizer.encode("assistant\n")]
