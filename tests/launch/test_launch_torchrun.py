"""`specialize launch torchrun`: the command it builds, the mistakes it refuses, and real CPU launches."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from specialize.cli.launch import app
from specialize.launch.torchrun import LaunchError, TorchrunSpec, node_index_from_env, torchrun_argv

REPO = Path(__file__).resolve().parents[2]


def dry_run(*args: str) -> list[str]:
    result = CliRunner().invoke(app, ["torchrun", "--dry-run", *args])
    assert result.exit_code == 0, result.output
    return shlex.split(result.output.strip().splitlines()[-1])


def test_dry_run_multi_node_command():
    argv = dry_run("--nnodes", "2:4", "--nproc-per-node", "8", "--rdzv-endpoint", "node001:29400",
                   "--rdzv-id", "cpt-1", "--node-index", "0", "--max-restarts", "3", "--",
                   "train", "--config", "cpt.yaml")
    assert argv == [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=2:4", "--nproc-per-node=8",
        "--rdzv-backend=c10d", "--rdzv-id=cpt-1", "--rdzv-endpoint=node001:29400", "--rdzv-conf=is_host=1",
        "--max-restarts=3", "-m", "specialize.launch.worker", "train", "--config", "cpt.yaml",
    ]


def test_node_index_from_scheduler_env_decides_the_rendezvous_host(monkeypatch):
    monkeypatch.setenv("SLURM_NODEID", "2")
    argv = dry_run("--nnodes", "4", "--nproc-per-node", "8", "--rdzv-endpoint", "node001:29400", "--", "train")
    assert "--rdzv-conf=is_host=0" in argv
    assert node_index_from_env({"JOB_COMPLETION_INDEX": "0", "SLURM_NODEID": "5"}) == 0
    assert node_index_from_env({}) is None
    with pytest.raises(LaunchError, match="SLURM_NODEID"):
        node_index_from_env({"SLURM_NODEID": "node3"})


def test_standalone_and_leading_specialize_word():
    argv = dry_run("--standalone", "--nproc-per-node", "2", "--", "specialize", "train", "--config", "x.yaml")
    assert "--standalone" in argv and not any(a.startswith("--rdzv") for a in argv)
    assert argv[argv.index("specialize.launch.worker") + 1:] == ["train", "--config", "x.yaml"]


@pytest.mark.parametrize("spec, message", [
    (TorchrunSpec(nnodes="2", nproc_per_node="8"), "needs --rdzv-endpoint"),
    (TorchrunSpec(nnodes="4:2", rdzv_endpoint="h:1"), "MIN <= MAX"),
    (TorchrunSpec(nnodes="two"), "expected N or MIN:MAX"),
    (TorchrunSpec(nnodes="2", rdzv_endpoint="node001"), "HOST:PORT"),
    (TorchrunSpec(nnodes="2", standalone=True), "one node"),
    (TorchrunSpec(nproc_per_node="many"), "--nproc-per-node"),
    (TorchrunSpec(nnodes="1:2", rdzv_endpoint="h:29400"), "--max-restarts >= 1"),
])
def test_refuses_settings_that_cannot_rendezvous(spec, message):
    with pytest.raises(LaunchError, match=message):
        torchrun_argv(spec, ["train"])


def test_needs_a_command():
    result = CliRunner().invoke(app, ["torchrun", "--standalone", "--dry-run"])
    assert result.exit_code != 0 and "nothing to run" in result.output


def test_smoke_outside_torchrun_and_gpu_default_without_gpu_are_clear_errors(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    result = CliRunner().invoke(app, ["smoke"])
    assert result.exit_code != 0 and "must run under torchrun" in result.output
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: the no-GPU error cannot happen here")
    result = CliRunner().invoke(app, ["torchrun", "--standalone", "--", "train"])
    assert result.exit_code != 0 and "no GPU is visible" in result.output


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.pop("JOB_COMPLETION_INDEX", None)
    env.pop("SLURM_NODEID", None)
    return env


def _launcher(*args: str) -> list[str]:
    return [sys.executable, "-m", "specialize.launch.worker", "launch", "torchrun", *args]


SMOKE = ["--", "launch", "smoke", "--size-mb", "1", "--iters", "2", "--timeout", "60"]


def test_real_two_process_cpu_launch():
    """torch.distributed.run starts 2 gloo workers running `specialize launch smoke`."""
    proc = subprocess.run(_launcher("--standalone", "--nproc-per-node", "2", *SMOKE), cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "smoke: ok: world_size=2 backend=gloo nodes=1" in proc.stdout


def test_real_two_node_c10d_rendezvous_on_localhost():
    """Two launchers as two 'nodes' (node 0 hosts the c10d store), one worker each: world size 2."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    common = ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-endpoint", f"127.0.0.1:{port}",
              "--rdzv-id", "smoke-test"]
    nodes = [subprocess.Popen(_launcher(*common, "--node-index", str(i), *SMOKE), cwd=REPO, env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in (0, 1)]
    outputs = []
    try:
        for node in nodes:
            out, err = node.communicate(timeout=120)
            outputs.append(out)
            assert node.returncode == 0, err[-3000:]
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
    assert "smoke: ok: world_size=2 backend=gloo" in "".join(outputs)
