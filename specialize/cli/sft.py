"""``specialize sft`` (ChatML fine-tuning on the shared runtime), ``sft inspect``, ``sft samples``,
``sft export``, and ``specialize chat``. Parses options and delegates to ``specialize.sft``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from specialize.model import FROM_HELP

app = typer.Typer(help="ChatML supervised fine-tuning (loss on assistant turns), then a Hugging Face export.",
                  invoke_without_command=True)


@app.callback()
def sft(
    ctx: typer.Context,
    source: Optional[str] = typer.Option(None, "--from", help="Model to fine-tune (default: the config's model.source). " + FROM_HELP),
    data: Optional[list[str]] = typer.Option(None, "--data", help="Chat JSONL (OpenAI `messages` or Qwen `conversations` rows); repeatable. Default: the embedded sample of --domain."),
    domain: Optional[str] = typer.Option(None, "--domain", help="code | math | code,math: the embedded sample(s) when no --data (and sft-DOMAIN.yaml for a real model). Default: the config's (sft-tiny.yaml: code,math)."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Run directory. Default: checkpoints/sft/DOMAIN."),
    export: Optional[str] = typer.Option(None, "--export", help="Hugging Face export directory. Default: OUTPUT/hf."),
    config: Optional[Path] = typer.Option(None, "--config", help="megatron_configs/sft-*.yaml. Default: sft-tiny.yaml for qwen-tiny, else sft-DOMAIN.yaml."),
    overrides: Optional[list[str]] = typer.Option(None, "--set", help="section.key=value, repeatable (e.g. --set train.steps=20 --set sft.overlength=truncate)."),
) -> None:
    """Fine-tune on chat data with the loss on assistant turns (run `specialize sft inspect` to see the masking)."""
    if ctx.invoked_subcommand is not None:
        return
    from specialize.sft.run import apply_overrides, default_config_path, load_sft_config, run_sft
    from specialize.train.config import ConfigError

    try:
        config = config or default_config_path(source, domain or "code")
        run, options = load_sft_config(config)
        if source:
            run.model.source = source
        if domain:
            options.domain = domain
        if data:
            options.data = list(data)
        if export:
            options.export_dir = export
        if output:
            run.output = output
        elif run.output == type(run)().output:  # the config names no output
            run.output = f"checkpoints/sft/{'+'.join(options.domains())}"
        apply_overrides(run, options, overrides or [])
    except ConfigError as err:
        raise typer.BadParameter(str(err)) from None
    import os

    if os.environ.get("RANK", "0") == "0":
        typer.echo(f"config {config}; model {run.model.source} (tp {run.model.tp}, pp {run.model.pp}); "
                   f"data {', '.join(options.data) or 'embedded ' + options.domain + ' sample'}; output {run.output}")
    try:
        result, hf = run_sft(run, options)
    except (FileNotFoundError, ValueError, ConfigError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    state = "stopped by signal" if result.interrupted else "finished"
    typer.echo(f"{state} at step {result.steps_done}; loss {result.last_loss}; validation loss {result.last_valid_loss}; "
               f"checkpoint {result.checkpoint}" + (f"; Hugging Face export {hf}" if hf else ""))


@app.command()
def inspect(
    data: Optional[list[str]] = typer.Option(None, "--data", help="Chat JSONL; repeatable. Default: the embedded sample of --domain."),
    domain: str = typer.Option("code", "--domain", help="code | math | code,math (when no --data)."),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help="qwen.tiktoken file or checkpoint directory. Default: embedded tiny-bbpe."),
    source: Optional[str] = typer.Option(None, "--from", help="Use this model's tokenizer (run dir, checkpoint, HF dir or preset)."),
    limit: int = typer.Option(3, "--limit", "-n", help="Conversations to print."),
    seq_length: int = typer.Option(2048, "--seq-length", help="For the over-length count and --packed."),
    train_on_prompt: bool = typer.Option(False, "--train-on-prompt"),
    last_assistant_only: bool = typer.Option(False, "--last-assistant-only"),
    markers: str = typer.Option("qwen", "--markers", help="qwen | assistant (see README: which marker tokens are trained)."),
    system_prompt: Optional[str] = typer.Option(None, "--system-prompt", help="Default system prompt. Default: 'You are a helpful assistant.'"),
    no_system_prompt: bool = typer.Option(False, "--no-system-prompt", help="Render no system turn when a conversation has none."),
    jsonl: Optional[Path] = typer.Option(None, "--jsonl", help="Write {source, input_ids, labels (-100 masked, HF convention)} per conversation."),
    packed: bool = typer.Option(False, "--packed", help="With --jsonl: write the packed samples the runtime reads (tokens, labels, loss_mask, position_ids, segment_ids)."),
    overlength: str = typer.Option("drop", "--overlength", help="drop | truncate (for --packed)."),
) -> None:
    """Show how chat data is rendered and masked: trained tokens green, masked grey."""
    import tempfile

    from rich.console import Console

    from specialize.sft.chatml import DEFAULT_SYSTEM_PROMPT, MaskOptions, encode_conversations
    from specialize.sft.conversations import read_conversations
    from specialize.sft.packing import PackedConversations, fit_to_length
    from specialize.sft.view import print_conversations, print_stats, write_output
    from specialize.tokenization import load_tokenizer

    try:
        options = MaskOptions(train_on_prompt=train_on_prompt, last_assistant_only=last_assistant_only, markers=markers,
                              system_prompt=None if no_system_prompt else (system_prompt if system_prompt is not None else DEFAULT_SYSTEM_PROMPT))
        if source:
            from specialize.sft.run import model_tokenizer

            tok = model_tokenizer(source)
        else:
            tok = load_tokenizer(tokenizer)
        with tempfile.TemporaryDirectory() as scratch:
            files = list(data or [])
            if not files:
                from specialize.sft.samples import write_embedded

                files = [write_embedded(d.strip(), Path(scratch) / f"embedded-{d.strip()}.jsonl") for d in domain.split(",")]
            conversations, read = read_conversations(files)
    except (FileNotFoundError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    encoded = encode_conversations(tok, conversations, options)
    console = Console()
    print_conversations(console, tok, encoded[:limit])
    print_stats(console, read, encoded, seq_length)
    if jsonl is not None:
        dataset = None
        if packed:
            fitted, _ = fit_to_length(encoded, seq_length, overlength)
            dataset = PackedConversations(fitted, seq_length, tok.eod_id, seed=0, shuffle=False)
        count = write_output(jsonl, encoded, dataset)
        typer.echo(f"wrote {count} {'packed samples' if packed else 'conversations'} to {jsonl}")


@app.command()
def samples(
    domain: str = typer.Option(..., "--domain", help="code | math"),
    output: Path = typer.Option(..., "--output", "-o", help="JSONL file to write."),
    count: Optional[int] = typer.Option(None, "--count", help="Conversations (default: 1200 code, 2000 math)."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Write the embedded SFT sample (generated offline, answers checked) as OpenAI-format JSONL."""
    from specialize.sft.samples import write_embedded

    try:
        path = write_embedded(domain, output, count, seed)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    typer.echo(str(path))


@app.command()
def export(
    run_dir: Path = typer.Argument(..., help="An `specialize sft` run directory."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Default: RUN_DIR/hf."),
) -> None:
    """Export the newest checkpoint of an SFT run as a Hugging Face Qwen2 checkpoint with the ChatML template."""
    from specialize.sft.run import export_run

    try:
        path = export_run(run_dir, output)
    except (FileNotFoundError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    typer.echo(str(path))


def chat(
    checkpoint: str = typer.Argument(..., help="A `specialize sft`/`train` run directory, training step, specialize checkpoint, or a Hugging Face chat export / Hub id."),
    prompt: Optional[list[str]] = typer.Option(None, "--prompt", "-p", help="One-shot: the user message(s), answered in turn. Without it: interactive (empty line or Ctrl-D ends)."),
    system_prompt: Optional[str] = typer.Option(None, "--system", help="System prompt (megatron checkpoints; HF exports use their chat template's). Default: 'You are a helpful assistant.'"),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens"),
    rope_scaling: Optional[str] = typer.Option(None, "--rope-scaling", help="Beyond the trained context: yarn:FACTOR[:TRAINED_LENGTH] (Qwen2/2.5/3), or qwen-ntk-logn[:TRAINED_LENGTH] (Qwen 1.0's dynamic NTK + LogN; megatron checkpoints)."),
) -> None:
    """Greedy chat with a checkpoint, for a quick look (ChatML, stops at <|im_end|>)."""
    from specialize.sft.chat import open_chat
    from specialize.sft.chatml import DEFAULT_SYSTEM_PROMPT
    from specialize.sft.conversations import Message

    try:
        session = open_chat(checkpoint, system_prompt if system_prompt is not None else DEFAULT_SYSTEM_PROMPT,
                            rope_scaling=rope_scaling)
    except (FileNotFoundError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    history: list[Message] = []
    try:
        turns = iter(prompt) if prompt else None
        while True:
            if turns is not None:
                text = next(turns, None)
                if text is None:
                    break
            else:
                try:
                    text = input("user> ")
                except EOFError:
                    break
                if not text.strip():
                    break
            history.append(Message("user", text))
            answer = session.reply(history, max_new_tokens)
            history.append(Message("assistant", answer))
            typer.echo(answer if turns is not None else f"assistant> {answer}")
    finally:
        session.close()
