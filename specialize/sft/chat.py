"""Greedy chat generation for a quick look at a checkpoint: our megatron model or an exported HF one.

Megatron: the ChatML prompt is built by ``chatml.encode_prompt`` and decoded greedily with a full
forward per new token (no KV cache: simple and exact; it is for short looks, not serving). Hugging
Face: the prompt comes from the checkpoint's own chat template (``apply_chat_template``) and
``generate`` decodes, which is what a user of the export runs. Both stop at ``<|im_end|>`` or
``<|endoftext|>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from specialize.sft.chatml import DEFAULT_SYSTEM_PROMPT, encode_prompt
from specialize.sft.conversations import Message


class MegatronChat:
    """A megatron-core GPTModel at TP=1/PP=1 in this process (call ``close`` to free the parallel state)."""

    def __init__(self, checkpoint: str | Path, system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
                 rope_scaling: str | None = None) -> None:
        from specialize.model.build import build_gpt_model, transformer_config
        from specialize.model.checkpoint import cast_dtype, load_model_checkpoint, read_checkpoint_meta
        from specialize.model.parallel import initialize_parallel
        from specialize.model.rope_scaling import QwenDynamicNTK, parse_rope_scaling
        from specialize.model.source import megatron_checkpoint
        from specialize.tokenization import load_tokenizer

        resolved = megatron_checkpoint(checkpoint)
        directory, self.preset = resolved.checkpoint, resolved.preset
        self.tokenizer = load_tokenizer(resolved.tokenizer)
        self.system_prompt = system_prompt
        dtype = cast_dtype(read_checkpoint_meta(directory)["saved_with"]["params_dtype"])
        initialize_parallel(1, 1)
        config = transformer_config(self.preset, params_dtype=dtype, perform_initialization=False,
                                    bf16=dtype == torch.bfloat16)
        self.scaling = parse_rope_scaling(rope_scaling, trained_length=self.preset.max_position_embeddings)
        self.model = build_gpt_model(self.preset, config, parallel_output=False, rope_scaling=self.scaling)
        load_model_checkpoint(self.model, directory)
        self.model.eval()
        self.ntk = (QwenDynamicNTK(self.model, self.scaling, rotary_base=self.preset.rotary_base, head_dim=self.preset.head_dim)
                    if self.scaling is not None and self.scaling.method == "qwen-ntk-logn" else None)
        self.max_positions = self.scaling.max_positions if self.scaling else self.preset.max_position_embeddings
        self.device = next(self.model.parameters()).device

    @torch.no_grad()
    def next_token_logits(self, ids: Sequence[int]) -> torch.Tensor:
        tokens = torch.tensor([list(ids)], dtype=torch.long, device=self.device)
        positions = torch.arange(len(ids), device=self.device).unsqueeze(0)
        logits = self.model(tokens, positions, None)
        return logits[0, -1, : self.preset.vocab_size].float().cpu()  # drop megatron's padded vocab rows

    def generate_ids(self, prompt_ids: Sequence[int], max_new_tokens: int) -> list[int]:
        """Greedy continuation of ``prompt_ids`` (without the stop token)."""
        stops = {self.tokenizer.im_end_id, self.tokenizer.eod_id}
        ids, new = list(prompt_ids), []
        if self.ntk is not None:
            self.ntk.set_length(len(ids))  # Qwen fixes the NTK base at the prompt's length (its KV cache)
        for _ in range(max_new_tokens):
            if len(ids) >= self.max_positions:
                break
            token = int(torch.argmax(self.next_token_logits(ids)))
            if token in stops:
                break
            ids.append(token)
            new.append(token)
        return new

    def reply(self, messages: Sequence[Message], max_new_tokens: int = 128) -> str:
        prompt = encode_prompt(self.tokenizer, messages, self.system_prompt)
        return self.tokenizer.decode(self.generate_ids(prompt, max_new_tokens))

    def close(self) -> None:
        from specialize.model.parallel import destroy_parallel

        destroy_parallel()


class HFChat:
    """An exported (or any Qwen2 chat) checkpoint through transformers."""

    def __init__(self, directory: str | Path, rope_scaling: str | None = None) -> None:
        import transformers

        from specialize.model.rope_scaling import parse_rope_scaling

        self.directory = Path(directory)
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(self.directory)
        if not self.tokenizer.chat_template:
            raise ValueError(f"{directory}: tokenizer_config.json has no chat_template (not a chat export?)")
        config = transformers.AutoConfig.from_pretrained(self.directory)
        scaling = parse_rope_scaling(rope_scaling, trained_length=config.max_position_embeddings)
        if scaling is not None:  # as the export would write it (YaRN only: transformers has no Qwen NTK + LogN)
            theta = (getattr(config, "rope_parameters", None) or {}).get("rope_theta") or config.rope_theta
            for key, value in scaling.hf_config_entries(theta).items():
                setattr(config, key, value)
        self.model = transformers.AutoModelForCausalLM.from_pretrained(self.directory, config=config, dtype=torch.float32).eval()

    def prompt_ids(self, messages: Sequence[Message]) -> list[int]:
        rendered = self.tokenizer.apply_chat_template([{"role": m.role, "content": m.content} for m in messages],
                                                      add_generation_prompt=True, tokenize=True)
        return list(rendered["input_ids"] if hasattr(rendered, "keys") else rendered)

    @torch.no_grad()
    def generate_ids(self, prompt_ids: Sequence[int], max_new_tokens: int) -> list[int]:
        stops = [self.tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
        inputs = torch.tensor([list(prompt_ids)], dtype=torch.long)
        output = self.model.generate(inputs, attention_mask=torch.ones_like(inputs), max_new_tokens=max_new_tokens,
                                     do_sample=False, eos_token_id=stops, pad_token_id=stops[1])
        new = output[0, inputs.shape[1]:].tolist()
        return new[:-1] if new and new[-1] in stops else new

    def reply(self, messages: Sequence[Message], max_new_tokens: int = 128) -> str:
        return self.tokenizer.decode(self.generate_ids(self.prompt_ids(messages), max_new_tokens))

    def close(self) -> None:
        pass


def open_chat(checkpoint: str | Path, system_prompt: str | None = DEFAULT_SYSTEM_PROMPT, rope_scaling: str | None = None):
    """``HFChat`` for Hugging Face weights (a directory or a Hub model), else ``MegatronChat`` (a run's
    newest checkpoint, a step or a model checkpoint); ``specialize.model.source`` decides which.
    ``rope_scaling``: context extension (``yarn:4``; ``qwen-ntk-logn`` for megatron checkpoints)."""
    from specialize.model.source import download, resolve

    resolved = resolve(checkpoint)
    if resolved.needs_conversion:
        return HFChat(download(resolved).hf_directory, rope_scaling=rope_scaling)
    return MegatronChat(checkpoint, system_prompt, rope_scaling=rope_scaling)
