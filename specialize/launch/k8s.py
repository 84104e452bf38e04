"""Render a Kubernetes JobSet that runs ``specialize train`` under torchrun on N GPU nodes.

Why JobSet (``jobset.x-k8s.io/v1alpha2``) and not Kubeflow's PyTorchJob:

- JobSet is the Kubernetes SIG Apps / Batch WG API for groups of Jobs; Kubeflow Trainer v2 and GKE
  build their training jobs on it, while Training Operator v1 (PyTorchJob) is in maintenance.
- Its failure policy restarts the *whole group* at once, which is what a collective job needs: one
  lost rank stalls every NCCL call. Preemptions (the pod's ``DisruptionTarget`` condition, mapped to
  a Job failure by ``podFailurePolicy``) restart without spending the restart budget; crashes spend it.
  Every restart runs the same command, and ``specialize train`` resumes from the latest checkpoint
  in its output directory on the shared volume (``checkpoint.resume: true`` is the default).
- Its headless service gives every pod a stable DNS name, so the first pod is the c10d rendezvous
  endpoint with no operator-injected environment: the pods run the same ``specialize launch
  torchrun`` that bare-metal and Slurm nodes run.
- Its pod template is a plain ``batch/v1`` JobTemplateSpec, so the rendered manifest validates
  against the upstream Kubernetes schema (see tests/launch/).

Cluster prerequisites: the JobSet controller, the NVIDIA device plugin (``nvidia.com/gpu``), a
ReadWriteMany PersistentVolumeClaim holding shards and checkpoints, and for ``--rdma`` an RDMA
device plugin (NVIDIA network operator's shared device plugin exposes ``rdma/rdma_shared_device_a``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

JOBSET_API_VERSION = "jobset.x-k8s.io/v1alpha2"
REPLICATED_JOB = "node"
CONTAINER = "trainer"

# A JobSet name becomes part of Job, pod and service names (<name>-node-<job>-<pod>, at most 63
# characters), so it must be a DNS-1035 label with room left for the suffixes.
_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


class ManifestError(ValueError):
    """A launch setting that would render an invalid or unusable manifest (the message says which)."""


@dataclass
class K8sTrainJob:
    """Everything the manifest depends on; the CLI fills it from flags."""

    image: str
    train_args: list[str]
    nodes: int = 1
    gpus_per_node: int = 8
    name: str = "specialize-train"
    namespace: str | None = None
    min_nodes: int | None = None  # elastic: start (and continue) with this many nodes; default = nodes
    pvc: str = "specialize-data"
    mount_path: str = "/mnt/specialize"
    shm_size: str = "64Gi"
    rdma: bool = False
    rdma_resource: str = "rdma/rdma_shared_device_a"
    gpu_resource: str = "nvidia.com/gpu"
    cpu: str | None = None
    memory: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    node_selector: dict[str, str] = field(default_factory=dict)
    service_account: str | None = None
    max_restarts: int = 10  # JobSet restarts after crashes (preemptions do not count)
    torchrun_max_restarts: int = 3  # in-place worker-group restarts (elastic membership changes)
    rdzv_port: int = 29400
    # Pods start minutes apart (a large image pulls node by node); torchrun's default of 600 s is tight.
    join_timeout_s: int = 1800
    grace_period_s: int = 300  # time for `specialize train` to write its SIGTERM checkpoint
    image_pull_policy: str = "IfNotPresent"

    @property
    def rdzv_endpoint(self) -> str:
        """The first pod's stable DNS name (JobSet headless service) and the c10d port."""
        return f"{self.name}-{REPLICATED_JOB}-0-0.{self.name}:{self.rdzv_port}"

    @property
    def nnodes(self) -> str:
        low = self.min_nodes or self.nodes
        return str(self.nodes) if low == self.nodes else f"{low}:{self.nodes}"

    def validate(self) -> None:
        if not _NAME.match(self.name):
            raise ManifestError(
                f"--name {self.name!r}: must be lowercase letters, digits and '-', start with a letter, "
                "at most 40 characters (it prefixes pod DNS names)"
            )
        if not self.image.strip():
            raise ManifestError("--image is required: the training image (docker build --target train)")
        if not self.train_args:
            raise ManifestError("nothing to run: give the specialize command after --, e.g. -- train --config cpt.yaml")
        if self.nodes < 1:
            raise ManifestError(f"--nodes must be >= 1, got {self.nodes}")
        if self.gpus_per_node < 0:
            raise ManifestError(f"--gpus-per-node must be >= 0, got {self.gpus_per_node}")
        if self.min_nodes is not None and not 1 <= self.min_nodes <= self.nodes:
            raise ManifestError(f"--min-nodes must be between 1 and --nodes ({self.nodes}), got {self.min_nodes}")
        if self.min_nodes is not None and self.min_nodes < self.nodes and self.torchrun_max_restarts < 1:
            raise ManifestError(
                "--min-nodes makes the job elastic: torchrun re-forms the worker group when nodes join, "
                "which needs --torchrun-max-restarts >= 1"
            )
        if not self.pvc:
            raise ManifestError(
                "--pvc is required: shards and checkpoints must be on a volume every pod mounts and that "
                "outlives the pods, or a restarted job cannot resume"
            )
        if not self.mount_path.startswith("/"):
            raise ManifestError(f"--mount-path must be absolute, got {self.mount_path!r}")
        for flag, value in (("--shm-size", self.shm_size), ("--cpu", self.cpu), ("--memory", self.memory)):
            if value is not None and not _QUANTITY.match(value):
                raise ManifestError(f"{flag} {value!r} is not a Kubernetes quantity (e.g. 64Gi, 500m, 32)")
        for key in self.env:
            if not _ENV_NAME.match(key):
                raise ManifestError(f"--env {key!r}: not a valid environment variable name")
        for flag, value in (("--max-restarts", self.max_restarts), ("--torchrun-max-restarts", self.torchrun_max_restarts)):
            if value < 0:
                raise ManifestError(f"{flag} must be >= 0, got {value}")
        if self.join_timeout_s < 1:
            raise ManifestError(f"--join-timeout must be >= 1 second, got {self.join_timeout_s}")
        if not 1 <= self.rdzv_port <= 65535:
            raise ManifestError(f"--rdzv-port must be a TCP port, got {self.rdzv_port}")


#: Megatron-LM's GPU job environment (its example scripts export these); ``--env`` overrides any of them.
GPU_ENVIRONMENT = {
    "CUDA_DEVICE_MAX_CONNECTIONS": "1",  # TP/SP communication queued before the compute it overlaps
    "TORCH_NCCL_AVOID_RECORD_STREAMS": "1",  # frees NCCL buffers without recordStream (lower peak memory)
    "NCCL_DEBUG": "WARN",
}


def gpu_environment(job: K8sTrainJob) -> dict[str, str]:
    return dict(GPU_ENVIRONMENT) if job.gpus_per_node > 0 else {}


def _container(job: K8sTrainJob) -> dict[str, Any]:
    nproc = job.gpus_per_node if job.gpus_per_node > 0 else 1
    command = [
        "specialize", "launch", "torchrun",
        "--nnodes", job.nnodes,
        "--nproc-per-node", str(nproc),
        "--rdzv-endpoint", job.rdzv_endpoint,
        "--rdzv-id", job.name,
        # k8s expands $(VAR) from the env below: pod 0 of the Indexed Job hosts the c10d store.
        "--node-index", "$(SPECIALIZE_NODE_INDEX)",
        "--rdzv-conf", f"join_timeout={job.join_timeout_s}",
        "--max-restarts", str(job.torchrun_max_restarts),
        "--",
        *job.train_args,
    ]
    env: list[dict[str, Any]] = [
        {
            "name": "SPECIALIZE_NODE_INDEX",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}},
        },
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    env += [{"name": k, "value": v} for k, v in sorted(gpu_environment(job).items()) if k not in job.env]
    env += [{"name": k, "value": str(v)} for k, v in sorted(job.env.items())]

    limits: dict[str, Any] = {}
    requests: dict[str, Any] = {}
    if job.gpus_per_node > 0:
        limits[job.gpu_resource] = job.gpus_per_node
    if job.rdma:
        limits[job.rdma_resource] = 1
    if job.cpu:
        requests["cpu"] = job.cpu
    if job.memory:
        requests["memory"] = job.memory
        limits["memory"] = job.memory
    resources: dict[str, Any] = {}
    if limits:
        resources["limits"] = limits
    if requests:
        resources["requests"] = requests

    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": job.image,
        "imagePullPolicy": job.image_pull_policy,
        "command": command,
        "workingDir": job.mount_path,  # relative paths in the train config land on the shared volume
        "env": env,
        "ports": [{"name": "rdzv", "containerPort": job.rdzv_port, "protocol": "TCP"}],
        "resources": resources,
        "volumeMounts": [
            {"name": "shared", "mountPath": job.mount_path},
            {"name": "dshm", "mountPath": "/dev/shm"},
        ],
    }
    if job.rdma:
        # RDMA memory registration pins pages: the verbs library needs IPC_LOCK.
        container["securityContext"] = {"capabilities": {"add": ["IPC_LOCK"]}}
    return container


def render_jobset(job: K8sTrainJob) -> dict[str, Any]:
    """The JobSet manifest as a plain dict (validated settings; see module docstring for the design)."""
    job.validate()
    labels = {"app.kubernetes.io/name": "specialize", "app.kubernetes.io/component": "train",
              "app.kubernetes.io/instance": job.name}
    pod_spec: dict[str, Any] = {
        # Never: a failed pod fails its Job (backoffLimit 0) and the JobSet restarts every pod together.
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": job.grace_period_s,
        "containers": [_container(job)],
        "volumes": [
            {"name": "shared", "persistentVolumeClaim": {"claimName": job.pvc}},
            # NCCL and DataLoader workers use /dev/shm; the container default of 64 MiB is far too small.
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": job.shm_size}},
        ],
    }
    if job.gpus_per_node > 0:
        pod_spec["tolerations"] = [{"key": job.gpu_resource, "operator": "Exists", "effect": "NoSchedule"}]
    if job.node_selector:
        pod_spec["nodeSelector"] = dict(job.node_selector)
    if job.service_account:
        pod_spec["serviceAccountName"] = job.service_account

    metadata: dict[str, Any] = {"name": job.name, "labels": labels}
    if job.namespace:
        metadata["namespace"] = job.namespace
    return {
        "apiVersion": JOBSET_API_VERSION,
        "kind": "JobSet",
        "metadata": metadata,
        "spec": {
            "network": {"enableDNSHostnames": True, "publishNotReadyAddresses": True},
            "failurePolicy": {
                "maxRestarts": job.max_restarts,
                "rules": [
                    {
                        "name": "preemption",
                        "action": "RestartJobSetAndIgnoreMaxRestarts",
                        "onJobFailureReasons": ["PodFailurePolicy"],
                    }
                ],
            },
            "replicatedJobs": [
                {
                    "name": REPLICATED_JOB,
                    "replicas": 1,
                    "template": {
                        "spec": {
                            "parallelism": job.nodes,
                            "completions": job.nodes,
                            "completionMode": "Indexed",
                            "backoffLimit": 0,
                            "podFailurePolicy": {
                                "rules": [
                                    {
                                        "action": "FailJob",
                                        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                                    }
                                ]
                            },
                            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
                        }
                    },
                }
            ],
        },
    }


class _NoAliasDumper(yaml.SafeDumper):
    """Write repeated dicts (the labels) in full: anchors and aliases confuse readers and some tools."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def to_yaml(manifest: dict[str, Any]) -> str:
    return yaml.dump(manifest, Dumper=_NoAliasDumper, sort_keys=False, default_flow_style=False, width=120)
