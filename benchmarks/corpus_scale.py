"""How a local corpus build's memory and time grow with the amount of text: 1x and 4x the same kind of input.

    python benchmarks/corpus_scale.py [--source DIR] [--copies 4] [--no-quality] [--workers 1|2|auto]

Input: a Python source tree (default: the standard library, ~32 MB of .py and .c files) and, for the
larger build, edited copies of it (every file gets a distinct header line and its identifiers a
per-copy suffix, so the copies are new text that exact dedup cannot collapse; near dedup may still
group some). Each build runs ``specialize corpus build --domain code`` in a child process; the peak
RSS of its whole process tree (Beam's SDK workers included) is sampled every 0.1 s. Both builds run
with ``--workers 1`` by default, so the growth is the text's, not a second worker process's; with
``--workers auto`` each build starts as many as the CLI chooses by input size.

Prints wall time, MB/s of input text and peak RSS for 1x and Nx, the growth in MB of RSS per MB of
text, and the largest input that growth allows on a 24 GB machine. Target (issue 12): peak memory for
N times more text grows by at most the per-document metadata (about 1 KB per document).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
IDENTIFIER = re.compile(r"\b(def|class)\s+([A-Za-z_]\w*)")


def edited_copy(source: Path, target: Path, copy: int) -> tuple[int, int]:
    """Copy .py/.c/.h files with a header line and renamed definitions; returns (files, bytes)."""
    files = size = 0
    for path in source.rglob("*"):
        if path.suffix not in (".py", ".c", ".h") or not path.is_file() or "site-packages" in path.parts:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        edited = f"# edited copy {copy} of {path.name}\n" + IDENTIFIER.sub(lambda m: f"{m[1]} {m[2]}_v{copy}", text)
        destination = target / path.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_text(edited, encoding="utf-8")
        files += 1
        size += len(edited.encode("utf-8"))
    return files, size


def peak_tree_rss(command: list[str], env: dict) -> tuple[float, float, int]:
    """(seconds, peak RSS of the process tree in bytes, return code)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    root = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        total = 0
        try:
            for member in [root, *root.children(recursive=True)]:
                try:
                    total += member.memory_info().rss
                except psutil.Error:
                    pass
        except psutil.Error:
            pass
        peak = max(peak, total)
        time.sleep(0.1)
    stderr = process.stderr.read() if process.stderr else ""
    if process.returncode != 0:
        print(stderr[-3000:], file=sys.stderr)
    return time.perf_counter() - started, peak, process.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=None, help="a source tree (default: the standard library)")
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--no-quality", action="store_true")
    parser.add_argument("--workers", default="1", help="local worker processes of both builds, or auto (as the CLI)")
    args = parser.parse_args()
    import sysconfig

    source = Path(args.source or sysconfig.get_paths()["stdlib"])
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        inputs = []
        total_files = total_bytes = 0
        for copy in range(args.copies):
            files, size = edited_copy(source, Path(tmp) / f"copy{copy}", copy)
            inputs.append(str(Path(tmp) / f"copy{copy}"))
            total_files, total_bytes = total_files + files, total_bytes + size
            if copy == 0:
                one = (files, size)
        for label, chosen, (files, size) in (("1x", inputs[:1], one), (f"{args.copies}x", inputs, (total_files, total_bytes))):
            out = Path(tmp) / f"out-{label}"
            command = [sys.executable, "-m", "specialize.cli", "corpus", "build", "--domain", "code", "--output", str(out),
                       "--no-decontaminate"]
            for given in chosen:
                command += ["--input", given]
            if args.no_quality:
                command.append("--no-quality")
            if args.workers != "auto":
                command += ["--workers", args.workers]
            seconds, peak, code = peak_tree_rss(command, env)
            rows.append((label, files, size, seconds, peak, code))
            shutil.rmtree(out, ignore_errors=True)
    print(f"source: {source}; quality stages {'off' if args.no_quality else 'on (decontamination off)'}; {os.cpu_count()} cores; "
          f"workers {args.workers}")
    print(f"{'input':>6} {'files':>7} {'text MB':>8} {'seconds':>8} {'MB/s':>6} {'peak RSS GB':>12}")
    for label, files, size, seconds, peak, code in rows:
        status = "" if code == 0 else f"  (exit {code})"
        print(f"{label:>6} {files:>7} {size / 1e6:>8.1f} {seconds:>8.1f} {size / 1e6 / seconds:>6.2f} {peak / 1e9:>12.2f}{status}")
    (_, files1, size1, _, peak1, _), (_, filesn, sizen, _, peakn, _) = rows
    per_mb = (peakn - peak1) / max(1, sizen - size1)
    per_doc = (peakn - peak1) / max(1, filesn - files1)
    print(f"growth: {per_mb:.1f} MB of RSS per MB of text ({per_doc / 1e3:.0f} KB per document; target about 1 KB)")
    if per_mb > 0:
        print(f"largest local input on a 24 GB machine at this growth: about {(24e9 - peak1) / per_mb / 1e9 + size1 / 1e9:.1f} GB "
              f"of text; beyond it use a distributed runner (--runner dataflow | flink | spark), whose shuffles spill to disk")


if __name__ == "__main__":
    main()
