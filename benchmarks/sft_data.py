"""SFT data path throughput: reading + ChatML encoding with targets, and packing, on the embedded samples.

    PYTHONPATH=. python benchmarks/sft_data.py [--tokenizer ../shared/tokenizers/qwen.tiktoken] [--seq 512,2048]

Prints, per domain: conversations/s and tokens/s for read + encode (tiktoken batch encoding), the share of
trained tokens, and for each sequence length the packing time, samples, fill (share of positions holding a
conversation token) and conversations dropped as over-length. The point of reference: a training step of the
tiny model on CPU takes seconds, so building the data for a whole run must take well under a minute.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from specialize.sft.chatml import encode_conversations
from specialize.sft.conversations import read_conversations
from specialize.sft.packing import PackedConversations, fit_to_length
from specialize.sft.samples import write_embedded
from specialize.tokenization import load_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokenizer", default=None, help="Default: the embedded tiny-bbpe vocabulary.")
    parser.add_argument("--seq", default="512,2048")
    parser.add_argument("--repeat", type=int, default=5, help="Copies of each sample file read (more rows to time).")
    args = parser.parse_args()
    tok = load_tokenizer(args.tokenizer)
    print(f"tokenizer {tok.name} ({tok.vocab_size} ids)")
    with tempfile.TemporaryDirectory() as scratch:
        for domain in ("math", "code"):
            path = write_embedded(domain, Path(scratch) / f"{domain}.jsonl")
            started = time.perf_counter()
            conversations, _ = read_conversations([path] * args.repeat)
            encoded = encode_conversations(tok, conversations)
            elapsed = time.perf_counter() - started
            tokens = sum(len(c) for c in encoded)
            trained = sum(c.num_targets for c in encoded)
            print(f"{domain}: {len(encoded):,} conversations, {tokens:,} tokens ({trained / tokens:.1%} trained): "
                  f"read+encode {elapsed:.2f} s = {len(encoded) / elapsed:,.0f} conversations/s, {tokens / elapsed:,.0f} tokens/s")
            for seq in (int(s) for s in args.seq.split(",")):
                started = time.perf_counter()
                kept, report = fit_to_length(encoded, seq)
                packed = PackedConversations(kept, seq, tok.eod_id, seed=0)
                elapsed = time.perf_counter() - started
                print(f"  seq {seq}: pack {elapsed:.2f} s, {len(packed):,} samples, fill {packed.fill:.1%}, "
                      f"{sum(report.dropped.values()):,} over-length dropped")


if __name__ == "__main__":
    main()
