"""``specialize launch``: torchrun on bare metal / Slurm, JobSet manifests for Kubernetes, a fabric smoke check.

The logic lives in ``specialize/launch/``; this module parses flags and delegates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="Run training on many GPUs: torchrun launcher, Kubernetes manifests.", no_args_is_help=True)

_COMMAND_HELP = "The specialize command every worker runs, after --, e.g. -- train --config cpt.yaml"


def _key_values(pairs: list[str] | None, flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{pair!r}: expected KEY=VALUE", param_hint=flag)
        out[key.strip()] = value
    return out


@app.command()
def k8s(
    command: Optional[list[str]] = typer.Argument(None, help=_COMMAND_HELP),
    image: str = typer.Option(..., "--image", help="Training image (docker build --target train)."),
    nodes: int = typer.Option(1, "--nodes", help="Pods (one per node)."),
    gpus_per_node: int = typer.Option(8, "--gpus-per-node", help="GPUs per pod = torchrun processes per pod (0: CPU, 1 process)."),
    name: str = typer.Option("specialize-train", "--name", help="JobSet name (prefixes pod DNS names)."),
    namespace: Optional[str] = typer.Option(None, "--namespace", "-n"),
    min_nodes: Optional[int] = typer.Option(None, "--min-nodes", help="Elastic: torchrun starts once this many nodes joined (default: --nodes)."),
    pvc: str = typer.Option("specialize-data", "--pvc", help="ReadWriteMany PVC holding shards and checkpoints."),
    mount_path: str = typer.Option("/mnt/specialize", "--mount-path", help="Where the PVC is mounted; also the working directory."),
    shm_size: str = typer.Option("64Gi", "--shm-size", help="Size of the in-memory /dev/shm."),
    rdma: bool = typer.Option(False, "--rdma/--no-rdma", help="Request an RDMA device and IPC_LOCK (InfiniBand/RoCE)."),
    rdma_resource: str = typer.Option("rdma/rdma_shared_device_a", "--rdma-resource", help="Extended resource name of the RDMA device plugin."),
    gpu_resource: str = typer.Option("nvidia.com/gpu", "--gpu-resource"),
    cpu: Optional[str] = typer.Option(None, "--cpu", help="CPU request per pod, e.g. 96."),
    memory: Optional[str] = typer.Option(None, "--memory", help="Memory request and limit per pod, e.g. 1600Gi."),
    env: Optional[list[str]] = typer.Option(None, "--env", help="KEY=VALUE for the container (e.g. NCCL_IB_HCA=mlx5); repeatable."),
    node_selector: Optional[list[str]] = typer.Option(None, "--node-selector", help="KEY=VALUE node label; repeatable."),
    service_account: Optional[str] = typer.Option(None, "--service-account"),
    max_restarts: int = typer.Option(10, "--max-restarts", help="JobSet restarts after failures (preemptions do not count)."),
    torchrun_max_restarts: int = typer.Option(3, "--torchrun-max-restarts", help="torchrun's in-place worker restarts."),
    rdzv_port: int = typer.Option(29400, "--rdzv-port"),
    join_timeout: int = typer.Option(1800, "--join-timeout", help="Seconds torchrun waits for all nodes to join."),
    grace_period: int = typer.Option(300, "--grace-period", help="Seconds between SIGTERM and SIGKILL (final checkpoint)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the manifest here instead of stdout."),
) -> None:
    """Render a JobSet manifest that runs torchrun on every pod; apply it with kubectl apply -f."""
    from specialize.launch.k8s import K8sTrainJob, ManifestError, render_jobset, to_yaml

    job = K8sTrainJob(
        image=image, train_args=list(command or []), nodes=nodes, gpus_per_node=gpus_per_node, name=name,
        namespace=namespace, min_nodes=min_nodes, pvc=pvc, mount_path=mount_path, shm_size=shm_size, rdma=rdma,
        rdma_resource=rdma_resource, gpu_resource=gpu_resource, cpu=cpu, memory=memory,
        env=_key_values(env, "--env"), node_selector=_key_values(node_selector, "--node-selector"),
        service_account=service_account, max_restarts=max_restarts, torchrun_max_restarts=torchrun_max_restarts,
        rdzv_port=rdzv_port, join_timeout_s=join_timeout, grace_period_s=grace_period,
    )
    try:
        text = to_yaml(render_jobset(job))
    except ManifestError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output} (kubectl apply -f {output})", err=True)


@app.command()
def torchrun(
    command: Optional[list[str]] = typer.Argument(None, help=_COMMAND_HELP),
    nnodes: str = typer.Option("1", "--nnodes", help="N, or MIN:MAX for elastic training."),
    nproc_per_node: str = typer.Option("gpu", "--nproc-per-node", help="Processes per node: a number, or gpu (one per visible GPU)."),
    rdzv_endpoint: Optional[str] = typer.Option(None, "--rdzv-endpoint", help="HOST:PORT of node 0, the same on every node."),
    rdzv_backend: str = typer.Option("c10d", "--rdzv-backend"),
    rdzv_id: str = typer.Option("specialize", "--rdzv-id", help="Job id shared by all nodes of one run."),
    rdzv_conf: Optional[list[str]] = typer.Option(None, "--rdzv-conf", help="KEY=VALUE rendezvous setting; repeatable."),
    node_index: Optional[int] = typer.Option(None, "--node-index", help="This node's index; 0 hosts the rendezvous. Default: $JOB_COMPLETION_INDEX or $SLURM_NODEID."),
    max_restarts: int = typer.Option(0, "--max-restarts", help="Worker-group restarts before giving up."),
    standalone: bool = typer.Option(False, "--standalone", help="Single node: rendezvous on a free local port."),
    log_dir: Optional[str] = typer.Option(None, "--log-dir", help="torchrun writes per-rank logs here."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the command instead of running it."),
) -> None:
    """Start ``specialize <command>`` on this node under torchrun (run it once per node)."""
    from specialize.launch.torchrun import (
        LaunchError,
        TorchrunSpec,
        format_command,
        node_index_from_env,
        run_torchrun,
        torchrun_argv,
    )

    try:
        spec = TorchrunSpec(
            nnodes=nnodes, nproc_per_node=nproc_per_node, rdzv_endpoint=rdzv_endpoint, rdzv_backend=rdzv_backend,
            rdzv_id=rdzv_id, node_index=node_index if node_index is not None else node_index_from_env(),
            max_restarts=max_restarts, standalone=standalone, rdzv_conf=_key_values(rdzv_conf, "--rdzv-conf"),
            log_dir=log_dir,
        )
        argv = torchrun_argv(spec, list(command or []))
    except LaunchError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if dry_run:
        typer.echo(format_command(argv))
        return
    if nproc_per_node == "gpu":
        import torch

        if not torch.cuda.is_available():
            raise typer.BadParameter("no GPU is visible: pass --nproc-per-node N to run N CPU processes",
                                     param_hint="--nproc-per-node")
    typer.echo(f"launch: {format_command(argv)}", err=True)
    raise typer.Exit(run_torchrun(argv))


@app.command()
def smoke(
    size_mb: float = typer.Option(64.0, "--size-mb", help="All-reduce buffer for the bandwidth figure (0: skip)."),
    iters: int = typer.Option(5, "--iters"),
    timeout: int = typer.Option(120, "--timeout", help="Seconds to wait for every rank."),
) -> None:
    """Check the distributed fabric under torchrun: all ranks join, all-reduce agrees, bandwidth."""
    from specialize.launch.smoke import smoke_check

    try:
        result = smoke_check(size_mb=size_mb, iters=iters, timeout_s=timeout)
    except RuntimeError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if result.rank == 0 or not result.sum_ok:
        typer.echo(f"[rank {result.rank}] {result.summary()}")
    if not result.sum_ok:
        raise typer.Exit(1)
