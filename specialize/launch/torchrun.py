"""Build the torchrun command that starts ``specialize <command>`` on every GPU of a node.

One launcher for bare metal, Slurm and Kubernetes pods (the JobSet manifest runs this same code):
each node runs ``python -m torch.distributed.run`` with a c10d rendezvous, and torchrun starts
``--nproc-per-node`` worker processes that each run the specialize CLI with WORLD_SIZE, RANK,
LOCAL_RANK, MASTER_ADDR and MASTER_PORT set, which is what ``specialize train`` reads.

Why ``--node-index``: with c10d, exactly one node must host the rendezvous store, and torchrun decides
which by matching the endpoint's host name against the local machine's names. Pod DNS names
(``job-node-0-0.job``) and Slurm short names often do not match, and then every node waits as a
client until the rendezvous times out. Given the node's index (``$JOB_COMPLETION_INDEX`` on
Kubernetes, ``$SLURM_NODEID`` on Slurm), node 0 is told it is the host (``is_host=1``) explicitly.

Workers run ``python -m specialize.launch.worker``, i.e. the CLI under the same interpreter as the
launcher, so no ``specialize`` script needs to be on PATH. The launcher stays the parent of torchrun
and hands a preemption's SIGTERM to the workers directly (``run_torchrun``).
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from dataclasses import dataclass, field

WORKER_MODULE = "specialize.launch.worker"
_NNODES = re.compile(r"^(\d+)(?::(\d+))?$")
# Environment variables that carry this node's index, in the order they are looked up.
NODE_INDEX_ENV = ("JOB_COMPLETION_INDEX", "SLURM_NODEID")


class LaunchError(ValueError):
    """Launcher settings that torchrun would reject or that could never rendezvous."""


@dataclass
class TorchrunSpec:
    nnodes: str = "1"  # "N" or elastic "MIN:MAX"
    nproc_per_node: str = "gpu"  # a number, or torchrun's gpu | cpu | auto
    rdzv_endpoint: str | None = None  # HOST:PORT of node 0 (multi-node)
    rdzv_backend: str = "c10d"
    rdzv_id: str = "specialize"
    node_index: int | None = None  # this node's index; 0 hosts the c10d store
    max_restarts: int = 0
    standalone: bool = False  # single node, rendezvous on a free local port
    rdzv_conf: dict[str, str] = field(default_factory=dict)
    log_dir: str | None = None

    def node_range(self) -> tuple[int, int]:
        match = _NNODES.match(self.nnodes.strip())
        if not match:
            raise LaunchError(f"--nnodes {self.nnodes!r}: expected N or MIN:MAX (elastic), e.g. 4 or 2:4")
        low = int(match.group(1))
        high = int(match.group(2) or low)
        if not 1 <= low <= high:
            raise LaunchError(f"--nnodes {self.nnodes!r}: need 1 <= MIN <= MAX")
        return low, high

    def validate(self) -> None:
        low, high = self.node_range()
        if not (self.nproc_per_node.isdigit() and int(self.nproc_per_node) >= 1) and self.nproc_per_node not in (
            "gpu", "cpu", "auto"
        ):
            raise LaunchError(f"--nproc-per-node {self.nproc_per_node!r}: a number >= 1, or gpu, cpu, auto")
        if self.standalone:
            if high > 1:
                raise LaunchError("--standalone runs on one node; drop it or use --nnodes 1")
            if self.rdzv_endpoint:
                raise LaunchError("--standalone picks its own local rendezvous; drop --rdzv-endpoint")
        elif high > 1 and not self.rdzv_endpoint:
            raise LaunchError(
                f"--nnodes {self.nnodes} needs --rdzv-endpoint HOST:PORT (node 0's address, the same on every node)"
            )
        if self.rdzv_endpoint:
            host, _, port = self.rdzv_endpoint.rpartition(":")
            if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
                raise LaunchError(f"--rdzv-endpoint {self.rdzv_endpoint!r}: expected HOST:PORT, e.g. node001:29400")
        if self.node_index is not None and self.node_index < 0:
            raise LaunchError(f"--node-index must be >= 0, got {self.node_index}")
        if self.max_restarts < 0:
            raise LaunchError(f"--max-restarts must be >= 0, got {self.max_restarts}")
        if low < high and self.max_restarts == 0:
            raise LaunchError(
                f"elastic --nnodes {self.nnodes} re-forms the worker group when nodes join or leave; "
                "that needs --max-restarts >= 1"
            )


def node_index_from_env(environ: dict[str, str] | None = None) -> int | None:
    """This node's index from the scheduler's environment (Kubernetes Indexed Job, then Slurm)."""
    environ = os.environ if environ is None else environ
    for name in NODE_INDEX_ENV:
        value = environ.get(name, "").strip()
        if value:
            if not value.isdigit():
                raise LaunchError(f"${name}={value!r} is not a node index")
            return int(value)
    return None


def torchrun_argv(spec: TorchrunSpec, command: list[str], python: str | None = None) -> list[str]:
    """The full argv: ``python -m torch.distributed.run <options> -m specialize.launch.worker <command>``."""
    spec.validate()
    if not command:
        raise LaunchError("nothing to run: give the specialize command after --, e.g. -- train --config cpt.yaml")
    if command[0] == "specialize":
        command = command[1:]  # tolerate `-- specialize train ...`
    argv = [python or sys.executable, "-m", "torch.distributed.run"]
    if spec.standalone:
        argv.append("--standalone")
    argv += [f"--nnodes={spec.nnodes}", f"--nproc-per-node={spec.nproc_per_node}"]
    if not spec.standalone:
        conf = dict(spec.rdzv_conf)
        if spec.node_index is not None and spec.rdzv_backend == "c10d" and "is_host" not in conf:
            conf["is_host"] = "1" if spec.node_index == 0 else "0"
        argv += [f"--rdzv-backend={spec.rdzv_backend}", f"--rdzv-id={spec.rdzv_id}"]
        if spec.rdzv_endpoint:
            argv.append(f"--rdzv-endpoint={spec.rdzv_endpoint}")
        if conf:
            argv.append("--rdzv-conf=" + ",".join(f"{k}={v}" for k, v in sorted(conf.items())))
    argv.append(f"--max-restarts={spec.max_restarts}")
    if spec.log_dir:
        argv.append(f"--log-dir={spec.log_dir}")
    argv += ["-m", WORKER_MODULE, *command]
    return argv


def format_command(argv: list[str]) -> str:
    """A copy-pasteable shell line."""
    return shlex.join(argv)


def worker_processes(launcher_pid: int) -> list[int]:
    """PIDs of the workers torchrun started (its child processes), empty while it is still rendezvousing."""
    import psutil

    try:
        return [child.pid for child in psutil.Process(launcher_pid).children(recursive=False)]
    except psutil.NoSuchProcess:
        return []


def run_torchrun(argv: list[str]) -> int:
    """Run torchrun as a child and return its exit code, passing a preemption to the workers themselves.

    On SIGTERM, torchrun sends SIGTERM to its workers and SIGKILLs them 30 s later
    (``--shutdown-timeout``, and only on recent torch), too soon for a large model's checkpoint; the
    JobSet's grace period never comes into play. So this process (a pod's PID 1) keeps torchrun out of it:
    SIGTERM/SIGINT go straight to the workers, which finish the step, save and exit 0; torchrun then
    sees a finished worker group and exits, and so does this launcher, within the pod's grace period.
    Before the workers exist (rendezvous), the signal goes to torchrun, which has nothing to save.
    """
    import signal
    import subprocess

    sys.stdout.flush()
    sys.stderr.flush()
    process = subprocess.Popen(argv)

    def forward(signum: int, frame) -> None:
        workers = worker_processes(process.pid)
        for pid in workers or [process.pid]:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass
        print(f"launch: {signal.Signals(signum).name} passed to {len(workers) or 'no'} worker(s)"
              + ("" if workers else " (torchrun itself: none started yet)"), file=sys.stderr, flush=True)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return process.wait()  # a signal runs forward() and the wait resumes (PEP 475)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
