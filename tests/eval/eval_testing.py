"""A tiny random Hugging Face Qwen2 chat checkpoint for the eval tests (uniquely named, not a conftest)."""

from __future__ import annotations

import json
from pathlib import Path

import torch


def make_tiny_chat_model(directory: Path, *, chat: bool = True, seed: int = 0, max_positions: int = 2048) -> Path:
    """Qwen2ForCausalLM (2 layers, 128 wide, head_dim 64 as vLLM's CPU attention needs) on the embedded tiny vocabulary, with our ChatML template."""
    import transformers

    from specialize.sft.chatml import chat_template
    from specialize.tokenization import load_tokenizer

    tokenizer = load_tokenizer(None)
    torch.manual_seed(seed)
    config = transformers.Qwen2Config(vocab_size=8448, hidden_size=128, intermediate_size=176, num_hidden_layers=2,
                                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=max_positions,
                                      tie_word_embeddings=False, eos_token_id=tokenizer.im_end_id if chat else tokenizer.eod_id,
                                      bos_token_id=tokenizer.eod_id)
    model = transformers.Qwen2ForCausalLM(config).float().eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.normal_(0.0, 0.3) if "norm" not in name else param.uniform_(0.5, 1.5)
    model.save_pretrained(directory)
    tokenizer.save_hf(directory, chat_template=chat_template() if chat else None, model_max_length=max_positions)
    generation = {"eos_token_id": [tokenizer.im_end_id, tokenizer.eod_id] if chat else tokenizer.eod_id,
                  "pad_token_id": tokenizer.eod_id, "do_sample": False}
    (directory / "generation_config.json").write_text(json.dumps(generation), encoding="utf-8")
    return directory
