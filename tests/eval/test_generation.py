"""Generation backends: batching must not change greedy output, stops cut, limits are per-sample errors,
and an OpenAI-compatible endpoint on 127.0.0.1 returns what the local backend returns."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from eval_testing import make_tiny_chat_model

from specialize.eval.generation import EndpointBackend, Prompt, Sampling, TransformersBackend


@pytest.fixture(scope="module")
def chat_dir(tmp_path_factory):
    return make_tiny_chat_model(tmp_path_factory.mktemp("tiny-chat"))


@pytest.fixture(scope="module")
def backend(chat_dir):
    return TransformersBackend(chat_dir, batch_size=4)


PROMPTS = [Prompt(text="def add(a, b):\n"), Prompt(text="Question: what is 2 + 3?\nAnswer:"),
           Prompt(text="x"), Prompt(messages=(("user", "Write a function that reverses a string."),)),
           Prompt(text="import os\nimport sys\n\n\nclass Thing:\n    def __init__(self):\n")]


def test_batched_greedy_equals_one_prompt_at_a_time(backend, chat_dir):
    sampling = Sampling(max_new_tokens=12)
    batched = backend.generate(PROMPTS, sampling)
    single = TransformersBackend(chat_dir, batch_size=1).generate(PROMPTS, sampling)
    assert [[c.text for c in r] for r in batched] == [[c.text for c in r] for r in single]
    assert all(len(r) == 1 for r in batched) and any(r[0].text for r in batched)


def test_stop_sequences_cut_the_completion(backend):
    free = backend.generate(PROMPTS[:2], Sampling(max_new_tokens=16))
    stop = free[0][0].text[3:5]  # a piece of what the model says anyway
    cut = backend.generate(PROMPTS[:2], Sampling(max_new_tokens=16, stops=(stop,)))
    assert stop not in cut[0][0].text and free[0][0].text.startswith(cut[0][0].text)


def test_sampling_n_completions_and_greedy_n_refused(backend):
    out = backend.generate(PROMPTS[:2], Sampling(n=3, temperature=1.0, max_new_tokens=8, seed=5))
    assert [len(r) for r in out] == [3, 3] and len({c.text for c in out[0]}) > 1
    again = backend.generate(PROMPTS[:2], Sampling(n=3, temperature=1.0, max_new_tokens=8, seed=5))
    assert [[c.text for c in r] for r in out] == [[c.text for c in r] for r in again]  # seeded
    with pytest.raises(ValueError, match="--temperature > 0"):
        Sampling(n=2)


def test_a_prompt_longer_than_the_context_is_that_samples_error(tmp_path):
    backend = TransformersBackend(make_tiny_chat_model(tmp_path / "short", max_positions=64))
    out = backend.generate([Prompt(text="word " * 200), Prompt(text="def f():\n")], Sampling(max_new_tokens=200))
    assert "does not fit the model's context of 64" in out[0][0].error and out[1][0].error == ""


def test_chat_prompts_use_the_checkpoint_template(backend):
    from specialize.eval.generation import render_chat

    text = render_chat(backend.tokenizer, PROMPTS[3])
    assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_start|>assistant\n")


class _OpenAIHandler(BaseHTTPRequestHandler):
    """The two OpenAI routes eval uses, answered by a local backend (protocol as vLLM's server speaks it)."""

    backend: TransformersBackend
    seen: list

    def log_message(self, *args) -> None:
        pass

    def _send(self, document: dict) -> None:
        body = json.dumps(document).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._send({"object": "list", "data": [{"id": "tiny", "object": "model"}]})

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append((self.path, request))
        sampling = Sampling(n=request["n"], temperature=request["temperature"], max_new_tokens=request["max_tokens"],
                            stops=tuple(request.get("stop") or ()))
        if self.path.endswith("/chat/completions"):
            prompt = Prompt(messages=tuple((m["role"], m["content"]) for m in request["messages"]))
            texts = [c.text for c in self.backend.generate([prompt], sampling)[0]]
            choices = [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"} for i, t in enumerate(texts)]
        else:
            texts = [c.text for c in self.backend.generate([Prompt(text=request["prompt"])], sampling)[0]]
            choices = [{"index": i, "text": t, "finish_reason": "stop"} for i, t in enumerate(texts)]
        self._send({"id": "x", "object": "text_completion", "model": request["model"], "choices": choices})


def test_endpoint_backend_speaks_the_openai_protocol(backend):
    handler = type("Handler", (_OpenAIHandler,), {"backend": backend, "seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        remote = EndpointBackend(f"http://127.0.0.1:{server.server_address[1]}", concurrency=1)
        assert remote.model == "tiny"
        sampling = Sampling(max_new_tokens=10, stops=("\n\n",))
        assert [[c.text for c in r] for r in remote.generate(PROMPTS, sampling)] == \
               [[c.text for c in r] for r in backend.generate(PROMPTS, sampling)]
        paths = sorted({path for path, _ in handler.seen})
        assert paths == ["/v1/chat/completions", "/v1/completions"]
        assert all(r["model"] == "tiny" and r["max_tokens"] == 10 and r["stop"] == ["\n\n"] for _, r in handler.seen)
    finally:
        server.shutdown()
    with pytest.raises(RuntimeError, match="cannot reach the endpoint"):
        EndpointBackend(f"http://127.0.0.1:{server.server_address[1]}", timeout_s=2)
