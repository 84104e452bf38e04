"""The Qwen tokenizer as a tiktoken encoder, loaded from any of the formats Qwen ships.

Sources, in the order ``load_tokenizer`` tries them:
- a ``qwen.tiktoken`` file (or a Qwen 1.0 checkpoint directory holding one): Qwen's own format;
- a Qwen1.5/2/2.5 checkpoint directory with ``tokenizer.json`` or ``vocab.json`` + ``merges.txt``;
- nothing: the embedded tiny vocabulary (``specialize/assets/tiny-bbpe.tiktoken``), a byte-level BPE
  trained by this project on Python sources and generated math text, with Qwen's pattern and special
  tokens, so the whole product runs offline on a fresh machine.

Corpus text is always encoded with no special tokens allowed: ``<|endoftext|>`` written inside a
source file becomes ordinary text tokens, never the EOD id.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tiktoken

from specialize.tokenization import hf_format
from specialize.tokenization.special import (
    ENDOFTEXT,
    IM_END,
    IM_START,
    QWEN_PATTERN,
    qwen_special_ids,
)

TINY_VOCAB_NAME = "tiny-bbpe"
TINY_VOCAB_PATH = Path(__file__).resolve().parent.parent / "assets" / "tiny-bbpe.tiktoken"


def read_tiktoken_ranks(path: Path) -> dict[bytes, int]:
    """Parse a ``base64(token) rank`` per line file, naming the file and line on bad input."""
    ranks: dict[bytes, int] = {}
    try:
        content = path.read_bytes()
    except OSError as err:
        raise FileNotFoundError(f"{path}: cannot read tokenizer file ({err.strerror})") from err
    for line_number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            token_b64, rank = line.split()
            ranks[base64.b64decode(token_b64, validate=True)] = int(rank)
        except ValueError as err:
            raise ValueError(f"{path}:{line_number}: expected 'base64(token) rank', got {line[:60]!r}") from err
    if not ranks:
        raise ValueError(f"{path}: tokenizer file is empty")
    return ranks


def write_tiktoken_ranks(ranks: dict[bytes, int], path: Path) -> None:
    lines = (f"{base64.b64encode(token).decode()} {rank}" for token, rank in sorted(ranks.items(), key=lambda x: x[1]))
    path.write_text("\n".join(lines) + "\n", encoding="ascii")


@dataclass(frozen=True)
class TokenizerSpec:
    """A picklable description of where a tokenizer comes from (Beam workers load it themselves)."""

    path: str | None = None  # None means the embedded tiny vocabulary; may be gs://, s3://...

    def load(self) -> "QwenTokenizer":
        if self.path and "://" in self.path:
            return load_tokenizer(str(_fetch_remote_tokenizer(self.path)))
        return load_tokenizer(self.path)


def _fetch_remote_tokenizer(url: str) -> Path:
    """Copy a tokenizer file or checkpoint tokenizer folder from an object store to a local cache.

    Remote Beam workers (Dataflow, Flink) get ``--tokenizer gs://...``; they read it through Beam's
    filesystems once per worker and load it like a local path.
    """
    import os
    import tempfile
    import threading
    import uuid

    from apache_beam.io.filesystems import FileSystems

    cache = Path(tempfile.gettempdir()) / "specialize-tokenizers" / hashlib.sha256(url.encode()).hexdigest()[:16]
    wanted = ("qwen.tiktoken", "tokenizer.tiktoken", "tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json")
    if FileSystems.exists(url) and not url.endswith("/"):
        sources = {Path(url).name: url}
    else:
        sources = {n: url.rstrip("/") + "/" + n for n in wanted if FileSystems.exists(url.rstrip("/") + "/" + n)}
    if not sources:
        raise FileNotFoundError(f"{url}: no tokenizer file there (looked for {', '.join(wanted)})")
    cache.mkdir(parents=True, exist_ok=True)
    for name, source in sources.items():
        target = cache / name
        if not target.is_file():
            with FileSystems.open(source, compression_type="uncompressed") as handle:
                data = handle.read()
            # Unique per process and thread: Beam runs several bundles per process, each may fetch.
            temporary = target.with_name(f"{target.name}.tmp-{os.getpid()}-{threading.get_ident()}-{uuid.uuid4().hex[:8]}")
            temporary.write_bytes(data)
            temporary.replace(target)
    return cache / next(iter(sources)) if len(sources) == 1 else cache


class QwenTokenizer:
    """tiktoken ``Encoding`` plus Qwen's special ids, optional NFC, and a content fingerprint."""

    def __init__(
        self,
        name: str,
        ranks: dict[bytes, int],
        special_tokens: dict[str, int],
        *,
        nfc: bool = False,
        source: str = "",
    ) -> None:
        for required in (ENDOFTEXT, IM_START, IM_END):
            if required not in special_tokens:
                raise ValueError(f"{source or name}: tokenizer lacks the special token {required}")
        self.name = name
        self.source = source
        self.nfc = nfc
        self.ranks = ranks
        self.special_tokens = dict(special_tokens)
        self.encoding = tiktoken.Encoding(
            name=name, pat_str=QWEN_PATTERN, mergeable_ranks=ranks, special_tokens=self.special_tokens
        )

    # -- ids -----------------------------------------------------------------------------------
    @property
    def eod_id(self) -> int:
        return self.special_tokens[ENDOFTEXT]

    @property
    def im_start_id(self) -> int:
        return self.special_tokens[IM_START]

    @property
    def im_end_id(self) -> int:
        return self.special_tokens[IM_END]

    @property
    def vocab_size(self) -> int:
        """Number of ids in use (ranks plus specials); the model pads its embedding past this."""
        return self.encoding.n_vocab

    # -- encoding ------------------------------------------------------------------------------
    def _prepare(self, text: str) -> str:
        return unicodedata.normalize("NFC", text) if self.nfc else text

    def encode(self, text: str) -> list[int]:
        """Encode text as ordinary tokens: special-token text inside ``text`` is never a control id."""
        return self.encoding.encode_ordinary(self._prepare(text))

    def encode_batch(self, texts: list[str], num_threads: int = 8) -> list[list[int]]:
        return self.encoding.encode_ordinary_batch([self._prepare(t) for t in texts], num_threads=num_threads)

    def encode_document(self, text: str) -> np.ndarray:
        """Token ids of one corpus document followed by EOD, as uint32 (the shard dtype)."""
        ids = self.encode(text)
        ids.append(self.eod_id)
        return np.asarray(ids, dtype=np.uint32)

    def encode_special(self, name: str) -> int:
        return self.special_tokens[name]

    def decode(self, ids) -> str:
        return self.encoding.decode([int(i) for i in ids])

    def decode_bytes(self, ids) -> bytes:
        return self.encoding.decode_bytes([int(i) for i in ids])

    # -- identity ------------------------------------------------------------------------------
    @functools.cached_property
    def fingerprint(self) -> str:
        """sha256 over ranks, specials, pattern and normalisation: equal iff tokenization is equal."""
        digest = hashlib.sha256()
        digest.update(QWEN_PATTERN.encode())
        digest.update(b"nfc" if self.nfc else b"raw")
        for token, rank in sorted(self.ranks.items(), key=lambda item: item[1]):
            digest.update(rank.to_bytes(4, "little"))
            digest.update(len(token).to_bytes(2, "little"))
            digest.update(token)
        for token, token_id in sorted(self.special_tokens.items(), key=lambda item: item[1]):
            digest.update(token_id.to_bytes(4, "little"))
            digest.update(token.encode())
        return "sha256:" + digest.hexdigest()

    def describe(self) -> dict:
        return {
            "name": self.name,
            "source": self.source,
            "fingerprint": self.fingerprint,
            "vocab_size": self.vocab_size,
            "eod_id": self.eod_id,
            "nfc": self.nfc,
        }

    # -- Hugging Face files --------------------------------------------------------------------
    def save_hf(self, directory: Path, *, chat_template: str | None = None, model_max_length: int = 32768) -> None:
        """Write ``vocab.json``, ``merges.txt``, ``tokenizer.json`` and ``tokenizer_config.json``.

        The files load in ``transformers`` as a Qwen2 tokenizer with the same ids as this encoder.
        """
        directory.mkdir(parents=True, exist_ok=True)
        vocab = {hf_format.token_to_unicode(t): r for t, r in sorted(self.ranks.items(), key=lambda x: x[1])}
        merges = [
            f"{hf_format.token_to_unicode(a)} {hf_format.token_to_unicode(b)}"
            for a, b in hf_format.merges_from_ranks(self.ranks)
        ]
        (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
        added = [
            {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
            for t, i in sorted(self.special_tokens.items(), key=lambda x: x[1])
        ]
        tokenizer_json = {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": added,
            "normalizer": {"type": "NFC"} if self.nfc else None,
            "pre_tokenizer": {
                "type": "Sequence",
                "pretokenizers": [
                    {"type": "Split", "pattern": {"Regex": QWEN_PATTERN}, "behavior": "Isolated", "invert": False},
                    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
                ],
            },
            "post_processor": None,
            "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
            "model": {
                "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                "vocab": vocab, "merges": merges,
            },
        }
        (directory / "tokenizer.json").write_text(json.dumps(tokenizer_json, ensure_ascii=False), encoding="utf-8")
        config = {
            "tokenizer_class": "Qwen2Tokenizer",
            "model_max_length": model_max_length,
            "bos_token": None,
            "eos_token": IM_END if chat_template else ENDOFTEXT,
            "pad_token": ENDOFTEXT,
            "unk_token": None,
            "errors": "replace",
            "clean_up_tokenization_spaces": False,
            "split_special_tokens": False,
            "added_tokens_decoder": {
                str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                         "single_word": False, "special": True}
                for t, i in sorted(self.special_tokens.items(), key=lambda x: x[1])
            },
            "additional_special_tokens": [IM_START, IM_END],
        }
        if chat_template:
            config["chat_template"] = chat_template
        (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")


def _from_tiktoken_file(path: Path) -> QwenTokenizer:
    ranks = read_tiktoken_ranks(path)
    first_special = max(ranks.values()) + 1
    if len(ranks) != first_special:
        raise ValueError(f"{path}: ranks are not contiguous 0..{first_special - 1} ({len(ranks)} entries)")
    name = "qwen" if first_special == 151643 else path.stem
    return QwenTokenizer(name, ranks, qwen_special_ids(first_special), source=str(path))


def _from_hf_directory(directory: Path) -> QwenTokenizer:
    vocab, merges, added, nfc = hf_format.read_hf_tokenizer_files(directory)
    ranks = hf_format.ranks_from_vocab_and_merges(vocab, merges, source=str(directory))
    # A vocab.json may list the special tokens too; they are not mergeable ranks.
    for special in added:
        ranks.pop(special.encode("utf-8"), None)
    if not added:
        added = qwen_special_ids(max(ranks.values()) + 1)
    return QwenTokenizer(f"hf:{directory.name}", ranks, added, nfc=nfc, source=str(directory))


@functools.lru_cache(maxsize=8)
def load_tokenizer(path: str | Path | None = None) -> QwenTokenizer:
    """Load a tokenizer from a file or checkpoint directory; ``None`` gives the embedded tiny vocabulary.

    Cached per process so that Beam workers and data loaders pay the load once.
    """
    if path is None or str(path) == TINY_VOCAB_NAME:
        return _from_tiktoken_file(TINY_VOCAB_PATH)
    location = Path(path).expanduser()
    if location.is_file():
        if location.name == "tokenizer.json" or location.name == "vocab.json":
            return _from_hf_directory(location.parent)
        return _from_tiktoken_file(location)
    if location.is_dir():
        for candidate in ("qwen.tiktoken", "tokenizer.tiktoken"):
            if (location / candidate).is_file():
                return _from_tiktoken_file(location / candidate)
        if (location / "tokenizer.json").is_file() or (location / "vocab.json").is_file():
            return _from_hf_directory(location)
        raise FileNotFoundError(
            f"{location}: no tokenizer here (looked for qwen.tiktoken, tokenizer.json, vocab.json + merges.txt)"
        )
    raise FileNotFoundError(f"{location}: tokenizer file or checkpoint directory does not exist")
