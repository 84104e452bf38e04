"""SFT with the real model: packing isolation through the runtime's attention mask, `specialize sft`
end to end (runtime, checkpoint, HF export), transformers' chat template giving our ids, greedy
generation equal in transformers and megatron, `specialize chat`, and exact resume."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from specialize.cli import app
from specialize.sft.chatml import encode_conversations, encode_prompt
from specialize.sft.conversations import Conversation, Message
from specialize.sft.packing import build_sample
from specialize.sft.samples import write_embedded
from specialize.tokenization import load_tokenizer


def _conv(user, assistant, source="t:1"):
    return Conversation((Message("user", user), Message("assistant", assistant)), source)


def test_packed_neighbour_does_not_change_a_conversations_logits():
    from specialize.model.build import build_gpt_model, transformer_config
    from specialize.model.parallel import destroy_parallel, initialize_parallel
    from specialize.model.presets import get_preset
    from specialize.train.batches import block_causal_mask

    tok = load_tokenizer(None)
    a, b = encode_conversations(tok, [_conv("Add 2 and 3.", "2 + 3 = 5."),
                                      _conv("Write hello world in Python.", "print('hello world')")])
    seq = 96
    alone, packed = build_sample([a], seq, tok.eod_id), build_sample([b, a], seq, tok.eod_id)

    def batch(sample):
        return (torch.from_numpy(sample[k])[None] for k in ("tokens", "position_ids", "segment_ids"))

    initialize_parallel(1, 1, seed=3)
    try:
        preset = get_preset("qwen-tiny")
        model = build_gpt_model(preset, transformer_config(preset), parallel_output=False).eval()
        with torch.no_grad():
            tokens, positions, segments = batch(alone)
            ref = model(tokens, positions, block_causal_mask(segments))[0, : len(a)]
            tokens, positions, segments = batch(packed)
            got = model(tokens, positions, block_causal_mask(segments))[0, len(b): len(b) + len(a)]
            # control: without boundaries the neighbour leaks into the logits, so the check above can fail
            leaked = model(tokens, torch.arange(seq)[None], None)[0, len(b): len(b) + len(a)]
    finally:
        destroy_parallel()
    assert torch.allclose(ref, got, atol=1e-5), (ref - got).abs().max()
    assert (ref - leaked).abs().max() > 1e-2


def _sft_args(out, data, steps, *extra):
    settings = ["train.seq_length=128", "train.micro_batch_size=2", "train.global_batch_size=4", "train.threads=1",
                f"train.steps={steps}", "checkpoint.save_every=2", "log.eval_every=0", "log.progress=none",
                "log.tensorboard=false", "optimizer.lr=1e-3", "optimizer.warmup_steps=1", *extra]
    args = ["sft", "--from", "qwen-tiny", "--data", str(data), "--output", str(out)]
    for item in settings:
        args += ["--set", item]
    return args


def _train_losses(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records if r["kind"] == "train"}


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("sft")
    data = write_embedded("math", root / "math.jsonl", count=64, seed=1)
    result = CliRunner().invoke(app, _sft_args(root / "run", data, 4) + ["--export", str(root / "exported")])
    assert result.exit_code == 0, result.output
    return root, data, result.output


def test_sft_run_trains_checkpoints_and_exports(sft_run):
    root, _, output = sft_run
    run = root / "run"
    assert "finished at step 4" in output and f"Hugging Face export {root / 'exported'}" in output
    assert not (run / "hf").exists()
    losses = _train_losses(run)
    assert sorted(losses) == [1, 2, 3, 4] and all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    assert (run / "checkpoints" / "step-000004" / "model" / "specialize.json").is_file()
    config = json.loads((root / "exported" / "config.json").read_text())
    assert config["architectures"] == ["Qwen2ForCausalLM"]
    tok_config = json.loads((root / "exported" / "tokenizer_config.json").read_text())
    assert tok_config["eos_token"] == "<|im_end|>" and "<|im_start|>" in tok_config["chat_template"]


def test_transformers_chat_template_renders_our_ids(sft_run):
    transformers = pytest.importorskip("transformers")
    hf_tok = transformers.AutoTokenizer.from_pretrained(sft_run[0] / "exported")
    tok = load_tokenizer(None)
    conversations = [
        (Message("user", "Solve 3x = 12."), Message("assistant", "x = 4."), Message("user", "Now  2x=8 ?"),
         Message("assistant", "\n  x = 4\n")),
        (Message("system", "You answer in French."), Message("user", "Bonjour, ça va ?"), Message("assistant", "Oui !")),
    ]
    for messages in conversations:
        [ours] = encode_conversations(tok, [Conversation(messages, "t")])
        as_dicts = [{"role": m.role, "content": m.content} for m in messages]
        theirs = hf_tok.apply_chat_template(as_dicts, tokenize=True)
        theirs = theirs["input_ids"] if hasattr(theirs, "keys") else theirs
        assert list(theirs) == ours.ids.tolist()
        prompt = hf_tok.apply_chat_template(as_dicts[:-1], tokenize=True, add_generation_prompt=True)
        prompt = prompt["input_ids"] if hasattr(prompt, "keys") else prompt
        assert list(prompt) == encode_prompt(tok, messages[:-1])


def test_greedy_generation_equal_in_transformers_and_megatron(sft_run):
    pytest.importorskip("transformers")
    from specialize.sft.chat import HFChat, MegatronChat

    run = sft_run[0] / "run"
    messages = [Message("user", "Find the roots of $x^2 - 5x + 6 = 0$.")]
    megatron = MegatronChat(run)
    try:
        prompt = encode_prompt(megatron.tokenizer, messages)
        ours = megatron.generate_ids(prompt, 16)
        with torch.no_grad():  # every position of prompt + generation, not just the last
            full = torch.tensor([prompt + ours])
            our_logits = megatron.model(full, torch.arange(full.shape[1])[None], None)[0, :, : megatron.preset.vocab_size]
    finally:
        megatron.close()
    hf = HFChat(sft_run[0] / "exported")
    assert hf.prompt_ids(messages) == prompt
    with torch.no_grad():
        their_logits = hf.model(torch.tensor([prompt + ours])).logits[0]
    assert (our_logits - their_logits).abs().max() < 1e-3
    theirs = hf.generate_ids(prompt, 16)
    assert len(ours) > 0 and theirs == ours
    result = CliRunner().invoke(app, ["chat", str(sft_run[0] / "exported"), "--prompt", messages[0].content, "--max-new-tokens", "16"])
    assert result.exit_code == 0, result.output
    assert hf.tokenizer.decode(ours) in result.output
    on_megatron = CliRunner().invoke(app, ["chat", str(run), "--prompt", messages[0].content, "--max-new-tokens", "16"])
    assert on_megatron.exit_code == 0, on_megatron.output
    assert hf.tokenizer.decode(ours) in on_megatron.output


@pytest.mark.slow
def test_sft_resume_is_exact(sft_run):
    root, data, _ = sft_run
    interrupted = root / "resumed"
    first = CliRunner().invoke(app, _sft_args(interrupted, data, 2, "sft.export=false"))
    assert first.exit_code == 0, first.output
    second = CliRunner().invoke(app, _sft_args(interrupted, data, 4))
    assert second.exit_code == 0, second.output
    assert "resumed from" in second.output and "step-000002" in second.output
    straight, resumed = _train_losses(root / "run"), _train_losses(interrupted)
    assert [resumed[s] for s in (1, 2, 3, 4)] == [straight[s] for s in (1, 2, 3, 4)]
    assert (interrupted / "hf" / "config.json").is_file()


@pytest.mark.slow
def test_two_process_sft_equals_one_process_and_exports(sft_run):
    """torchrun DP=2: rank 0 writes, every rank builds the same packed data, the export runs in a clean
    single process after the job; the losses equal the single-process run's."""
    import os
    import subprocess
    import sys

    from specialize.model.parallel import free_port

    root, data, _ = sft_run
    out = root / "dp2"
    args = _sft_args(out, data, 2)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port()),
               "-m", "specialize.cli", *args]
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "PYTHONPATH": repo + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1",
           "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    straight, parallel = _train_losses(root / "run"), _train_losses(out)
    assert [parallel[s] for s in (1, 2)] == pytest.approx([straight[s] for s in (1, 2)], rel=1e-5)
    assert (out / "hf" / "model.safetensors.index.json").is_file()


@pytest.mark.slow
def test_sft_from_a_hugging_face_checkpoint(sft_run):
    """--from an exported HF directory: the runtime converts it, the provider uses its tokenizer."""
    root, data, _ = sft_run
    first_losses = {}
    for name, source in (("from-hf", root / "exported"), ("from-megatron", root / "run"), ("from-random", "qwen-tiny")):
        args = _sft_args(root / name, data, 2, "sft.export=false", "log.eval_every=0")
        args[args.index("qwen-tiny")] = str(source)
        result = CliRunner().invoke(app, [*args, "--config", "megatron_configs/sft-tiny.yaml"])
        assert result.exit_code == 0, result.output
        first_losses[name] = _train_losses(root / name)[1]
    assert (root / "from-hf" / "converted" / "specialize.json").is_file()
    # The converted export continues from the trained weights: on the same first batch it has the loss
    # of the megatron checkpoint it was exported from, not that of a random model. Not bit-equal: the 48
    # vocabulary padding rows (8400 -> 8448) of the output layer were trained in the run, are trimmed
    # by the export and come back as zeros, so the softmax denominators differ slightly (2e-4 here).
    assert first_losses["from-hf"] == pytest.approx(first_losses["from-megatron"], rel=1e-3)
    assert abs(first_losses["from-hf"] - first_losses["from-random"]) > 0.05
