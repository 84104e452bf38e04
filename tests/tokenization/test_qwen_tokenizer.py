"""The Qwen tokenizer: real vocabulary ids, Qwen's pattern, special tokens, formats, safety."""

from __future__ import annotations

import json

import pytest

from specialize.tokenization import load_tokenizer
from specialize.tokenization.special import QWEN_SPECIAL_START_ID

VARIED_TEXTS = [
    "Hello world",
    "x = 12345\n\tfoo(bar)  \n\n",
    "héllo 你好 мир 🚀 \u200b ﬁ ñ Å",
    "def f(a, b):\n    '''Docstring.'''\n    return a ** 2 + b  # comment\r\n",
    "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 42); }\n",
    "$$\\int_0^1 x^2\\,dx = \\frac{1}{3}$$ and 3.14159 ≈ π",
    "   leading spaces and trailing   ",
    "I'm sure they've said 'we'll' THEY'LL",
    "\x00\x01 control \x7f bytes",
]


@pytest.fixture(scope="module")
def qwen(qwen_tiktoken):
    return load_tokenizer(str(qwen_tiktoken))


def test_real_vocabulary_known_ids(qwen):
    assert len(qwen.ranks) == 151643
    assert qwen.eod_id == 151643 == QWEN_SPECIAL_START_ID
    assert qwen.im_start_id == 151644 and qwen.im_end_id == 151645
    assert qwen.special_tokens["<|extra_0|>"] == 151646
    assert qwen.special_tokens["<|extra_204|>"] == 151850
    assert qwen.vocab_size == 151851
    assert qwen.encode("Hello world") == [9707, 1879]
    assert qwen.encode("0") == [15] and qwen.encode("9") == [24]


def test_digits_are_split_one_by_one(qwen):
    assert qwen.encode("12345") == [16, 17, 18, 19, 20]
    tokens = qwen.encode("year 2023: 1000000 items")
    digit_tokens = [t for t in tokens if qwen.decode([t]).strip().isdigit()]
    assert all(len(qwen.decode([t]).strip()) == 1 for t in digit_tokens)
    assert len(digit_tokens) == 4 + 7


@pytest.mark.parametrize("text", VARIED_TEXTS)
def test_decode_encode_roundtrip(qwen, text):
    assert qwen.decode(qwen.encode(text)) == text


@pytest.mark.parametrize("marker", ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|extra_7|>"])
def test_special_token_text_in_corpus_is_ordinary_text(qwen, marker):
    text = f"print('{marker}')\n"
    ids = qwen.encode(text)
    assert not set(ids) & set(qwen.special_tokens.values())
    assert qwen.decode(ids) == text
    document = qwen.encode_document(text)
    assert list(document[:-1]) == ids and int(document[-1]) == qwen.eod_id
    assert list(document).count(qwen.eod_id) == 1


def test_hf_files_give_the_same_ids_as_huggingface(qwen, tmp_path):
    """Write vocab.json/merges.txt/tokenizer.json, tokenize with HF's Rust tokenizer, load back."""
    from tokenizers import Tokenizer

    qwen.save_hf(tmp_path)
    hf = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    for text in VARIED_TEXTS:
        assert hf.encode(text).ids == qwen.encode(text), text
    # vocab.json + merges.txt alone (Qwen1.5/2 slow-tokenizer files) load into the same encoder
    (tmp_path / "tokenizer.json").unlink()
    reloaded = load_tokenizer(str(tmp_path))
    assert reloaded.ranks == qwen.ranks
    assert reloaded.special_tokens == qwen.special_tokens
    assert reloaded.nfc  # Qwen2Tokenizer NFC-normalises
    assert reloaded.encode("Hello world") == [9707, 1879]


def test_transformers_loads_exported_tokenizer(qwen, tmp_path):
    transformers = pytest.importorskip("transformers")
    qwen.save_hf(tmp_path)
    tok = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    for text in VARIED_TEXTS[:6]:
        assert tok(text, add_special_tokens=False)["input_ids"] == qwen.encode(text)
    assert tok.convert_tokens_to_ids("<|im_end|>") == 151645


def test_qwen2_style_directory_with_nfc(tmp_path):
    """A Qwen2-format directory: tokenizer.json with an NFC normalizer and its own added tokens."""
    tiny = load_tokenizer(None)
    tiny.save_hf(tmp_path)
    data = json.loads((tmp_path / "tokenizer.json").read_text())
    data["normalizer"] = {"type": "NFC"}
    (tmp_path / "tokenizer.json").write_text(json.dumps(data))
    loaded = load_tokenizer(str(tmp_path))
    assert loaded.nfc
    decomposed = "e\u0301"  # e + combining acute: NFC makes it é
    assert loaded.encode(decomposed) == loaded.encode("\u00e9")
    from tokenizers import Tokenizer

    assert Tokenizer.from_file(str(tmp_path / "tokenizer.json")).encode(decomposed).ids == loaded.encode(decomposed)


def test_embedded_tiny_vocabulary_is_qwen_shaped():
    tiny = load_tokenizer(None)
    assert len(tiny.ranks) == 8192
    assert tiny.eod_id == 8192 and tiny.im_start_id == 8193 and tiny.im_end_id == 8194
    assert tiny.vocab_size == 8192 + 208
    assert tiny.encode("2024") == [tiny.encode(d)[0] for d in "2024"]
    text = VARIED_TEXTS[3] + VARIED_TEXTS[2]
    assert tiny.decode(tiny.encode(text)) == text


def test_fingerprint_tells_vocabularies_apart(qwen):
    tiny = load_tokenizer(None)
    assert tiny.fingerprint != qwen.fingerprint
    assert tiny.fingerprint == load_tokenizer("tiny-bbpe").fingerprint


def test_bad_tokenizer_inputs_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_tokenizer(str(tmp_path / "nope.tiktoken"))
    bad = tmp_path / "bad.tiktoken"
    bad.write_text("IQ== 0\nnot-base64!! 1\n")
    with pytest.raises(ValueError, match=r"bad\.tiktoken:2"):
        load_tokenizer(str(bad))
    with pytest.raises(FileNotFoundError, match="no tokenizer here"):
        load_tokenizer(str(tmp_path))


def test_vocab_whose_ids_break_merge_order_is_refused(tmp_path):
    from specialize.tokenization.hf_format import bytes_to_unicode, ranks_from_vocab_and_merges

    table = bytes_to_unicode()
    vocab = {table[b]: i for i, b in enumerate(range(256))}
    vocab["ab"], vocab["abc"] = 300, 299
    with pytest.raises(ValueError, match="merge order"):
        ranks_from_vocab_and_merges(vocab, [("a", "b"), ("ab", "c")], source="x/vocab.json")
