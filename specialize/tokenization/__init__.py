"""Qwen tokenization on tiktoken (see ``qwen.py``)."""

from specialize.tokenization.qwen import QwenTokenizer, TokenizerSpec, load_tokenizer

__all__ = ["QwenTokenizer", "TokenizerSpec", "load_tokenizer"]
