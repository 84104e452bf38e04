"""Rebuild the embedded tiny vocabulary (``specialize/assets/tiny-bbpe.tiktoken``).

Run ``python -m specialize.tokenization.build_tiny_vocab``. It trains an 8,192-rank byte-level BPE
with Hugging Face ``tokenizers`` (a test dependency, not a runtime one) on the Python standard library
sources plus generated math text, pre-tokenised with Qwen's pattern, and writes it in tiktoken's
format. The shipped file is the committed output; rebuilding on another Python version gives a
slightly different vocabulary, hence a different fingerprint, which is why it is committed.
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

from specialize.data.math_problems import generate_problems
from specialize.tokenization.hf_format import ranks_from_vocab_and_merges
from specialize.tokenization.qwen import TINY_VOCAB_PATH, write_tiktoken_ranks
from specialize.tokenization.special import QWEN_PATTERN

TINY_VOCAB_RANKS = 8192


def training_texts() -> list[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts = []
    for path in sorted(stdlib.rglob("*.py")):
        if "site-packages" in path.parts or "test" in path.parts:
            continue
        try:
            texts.append(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, OSError):
            continue
    texts.extend(p.as_document() for p in generate_problems(4000, seed=12345))
    return texts


def main() -> None:
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB_RANKS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(training_texts(), trainer=trainer)
    model = __import__("json").loads(tokenizer.to_str())["model"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    ranks = ranks_from_vocab_and_merges(model["vocab"], merges, source="trained tiny vocabulary")
    # tokenizers numbers the alphabet by sorted character, not GPT-2's byte order; ranks of single
    # bytes do not matter to BPE (they are never merge results), so keep the trained ids.
    write_tiktoken_ranks(ranks, TINY_VOCAB_PATH)
    print(f"wrote {len(ranks)} ranks to {TINY_VOCAB_PATH}", file=sys.stderr)


if __name__ == "__main__":
    main()
