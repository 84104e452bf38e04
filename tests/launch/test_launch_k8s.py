"""`specialize launch k8s`: the rendered JobSet validates against the JobSet CRD schema and the upstream
Kubernetes batch/v1 Job schema, and its pods run a torchrun command our own launcher accepts."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from specialize.cli.launch import app
from specialize.launch.k8s import K8sTrainJob, ManifestError, render_jobset

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate (test extra) is needed to validate pod templates"
)
import jsonschema  # noqa: E402  (installed with kubernetes-validate)

FIXTURE = Path(__file__).parent / "fixtures" / "jobset-v1alpha2.schema.yaml"
# The oldest Kubernetes we document (Indexed Jobs, podFailurePolicy on by default) and the newest schema shipped.
K8S_VERSIONS = ("1.29", kubernetes_validate.utils.latest_version())
TRAIN = ["train", "--config", "megatron_configs/cpt-code.yaml"]


def _strict(schema: dict) -> dict:
    """Reject unknown fields, as `kubectl apply --validate=strict` does for a structural CRD schema."""
    schema = copy.deepcopy(schema)

    def visit(node):
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                node.setdefault("additionalProperties", False)
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(schema)
    return schema


JOBSET_SCHEMA = _strict(yaml.safe_load(FIXTURE.read_text()))


def validate_manifest(manifest: dict, k8s_version: str) -> None:
    """JobSet fields against the CRD subset; each replicated Job's template against batch/v1 Job."""
    jsonschema.Draft7Validator(JOBSET_SCHEMA).validate(manifest)
    assert manifest["apiVersion"] == "jobset.x-k8s.io/v1alpha2" and manifest["kind"] == "JobSet"
    for rjob in manifest["spec"]["replicatedJobs"]:
        job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x"}, **rjob["template"]}
        kubernetes_validate.validate(job, k8s_version, strict=True)


def _job(**overrides) -> K8sTrainJob:
    settings = dict(image="registry.example/specialize:0.1.0", train_args=list(TRAIN), nodes=4, gpus_per_node=8,
                    name="qwen14b-cpt", namespace="ml", rdma=True, cpu="96", memory="1600Gi",
                    env={"NCCL_IB_HCA": "mlx5"}, node_selector={"gpu": "h100"}, service_account="trainer")
    settings.update(overrides)
    return K8sTrainJob(**settings)


def _pod(manifest: dict) -> dict:
    return manifest["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("overrides", [{}, {"gpus_per_node": 0, "rdma": False, "cpu": None, "memory": None,
                                        "env": {}, "node_selector": {}, "service_account": None, "namespace": None,
                                        "nodes": 1}, {"min_nodes": 2}])
def test_rendered_manifest_validates(version, overrides):
    validate_manifest(render_jobset(_job(**overrides)), version)


@pytest.mark.parametrize("break_it, message", [
    (lambda m: _pod(m)["containers"][0].update(gpus=8), "Additional properties"),
    (lambda m: m["spec"]["failurePolicy"]["rules"][0].update(action="Restart"), "is not one of"),
    (lambda m: m["spec"].update(replicatedJob=[]), "Additional properties"),
    (lambda m: _pod(m)["volumes"][1]["emptyDir"].update(sizeLimit=[64]), "is not valid"),
])
def test_validator_catches_planted_mistakes(break_it, message):
    manifest = render_jobset(_job())
    break_it(manifest)
    with pytest.raises(jsonschema.ValidationError, match=message):
        validate_manifest(manifest, K8S_VERSIONS[-1])


def test_pods_share_storage_shm_gpus_rdma_and_restart_as_a_group():
    manifest = render_jobset(_job())
    spec = manifest["spec"]
    job_spec = spec["replicatedJobs"][0]["template"]["spec"]
    assert (job_spec["parallelism"], job_spec["completions"], job_spec["completionMode"]) == (4, 4, "Indexed")
    # any pod failure fails the Job, the JobSet then recreates all pods; preemptions cost no restart budget
    assert job_spec["backoffLimit"] == 0
    assert job_spec["podFailurePolicy"]["rules"] == [
        {"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]
    assert spec["failurePolicy"]["maxRestarts"] == 10
    assert spec["failurePolicy"]["rules"][0]["action"] == "RestartJobSetAndIgnoreMaxRestarts"
    assert spec["failurePolicy"]["rules"][0]["onJobFailureReasons"] == ["PodFailurePolicy"]
    assert spec["network"]["enableDNSHostnames"] is True

    pod = _pod(manifest)
    assert pod["restartPolicy"] == "Never"
    container = pod["containers"][0]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert volumes["shared"]["persistentVolumeClaim"]["claimName"] == "specialize-data"
    assert mounts["shared"] == container["workingDir"] == "/mnt/specialize"
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "64Gi"}
    assert mounts["dshm"] == "/dev/shm"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 8
    assert container["resources"]["limits"]["rdma/rdma_shared_device_a"] == 1
    assert container["securityContext"]["capabilities"]["add"] == ["IPC_LOCK"]
    assert {"name": "NCCL_IB_HCA", "value": "mlx5"} in container["env"]
    assert pod["nodeSelector"] == {"gpu": "h100"} and pod["serviceAccountName"] == "trainer"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["CUDA_DEVICE_MAX_CONNECTIONS"] == "1" and env["TORCH_NCCL_AVOID_RECORD_STREAMS"] == "1"


def test_gpu_environment_defaults_yield_to_env_and_stay_off_cpu_jobs():
    overridden = _pod(render_jobset(_job(env={"NCCL_DEBUG": "INFO"})))["containers"][0]["env"]
    assert [e["value"] for e in overridden if e["name"] == "NCCL_DEBUG"] == ["INFO"]  # once, the user's value
    cpu_only = _pod(render_jobset(_job(gpus_per_node=0, rdma=False)))["containers"][0]["env"]
    assert not [e for e in cpu_only if e["name"] in ("CUDA_DEVICE_MAX_CONNECTIONS", "NCCL_DEBUG")]


@pytest.mark.parametrize("index, is_host", [("0", "1"), ("3", "0")])
def test_pod_command_is_a_valid_launcher_call(index, is_host):
    """Every pod runs `specialize launch torchrun`; node 0 (pod <name>-node-0-0, JobSet's DNS naming) hosts c10d."""
    manifest = render_jobset(_job(min_nodes=2))
    container = _pod(manifest)["containers"][0]
    env_names = [e["name"] for e in container["env"]]
    assert "SPECIALIZE_NODE_INDEX" in env_names  # what $(SPECIALIZE_NODE_INDEX) expands from
    command = container["command"]
    assert command[:3] == ["specialize", "launch", "torchrun"]
    args = [index if a == "$(SPECIALIZE_NODE_INDEX)" else a for a in command[2:]]
    result = CliRunner().invoke(app, [*args[:args.index("--")], "--dry-run", *args[args.index("--"):]])
    assert result.exit_code == 0, result.output
    line = result.output.strip()
    assert "--rdzv-endpoint=qwen14b-cpt-node-0-0.qwen14b-cpt:29400" in line
    assert "--nnodes=2:4" in line and "--nproc-per-node=8" in line and "--rdzv-backend=c10d" in line
    assert f"--rdzv-conf=is_host={is_host},join_timeout=1800" in line
    assert line.endswith("-m specialize.launch.worker train --config megatron_configs/cpt-code.yaml")


@pytest.mark.parametrize("overrides, message", [
    ({"name": "Qwen_CPT"}, "--name"),
    ({"train_args": []}, "nothing to run"),
    ({"min_nodes": 5}, "--min-nodes"),
    ({"shm_size": "lots"}, "--shm-size"),
    ({"pvc": ""}, "--pvc is required"),
    ({"env": {"1BAD": "x"}}, "--env"),
    ({"min_nodes": 2, "torchrun_max_restarts": 0}, "--torchrun-max-restarts"),
])
def test_bad_settings_are_named(overrides, message):
    with pytest.raises(ManifestError, match=message):
        render_jobset(_job(**overrides))


def test_cli_writes_manifest_file(tmp_path):
    out = tmp_path / "k8s" / "jobset.yaml"
    result = CliRunner().invoke(app, [
        "k8s", "--nodes", "2", "--gpus-per-node", "4", "--image", "img:1", "--name", "cpt", "--pvc", "shared",
        "--shm-size", "32Gi", "--rdma", "--env", "NCCL_DEBUG=INFO", "--output", str(out), "--", *TRAIN])
    assert result.exit_code == 0, result.output
    manifest = yaml.safe_load(out.read_text())
    validate_manifest(manifest, K8S_VERSIONS[-1])
    assert _pod(manifest)["containers"][0]["command"][-3:] == TRAIN
    assert "&id" not in out.read_text()  # no YAML anchors
    bad = CliRunner().invoke(app, ["k8s", "--image", "img:1", "--name", "BAD", "--", *TRAIN])
    assert bad.exit_code != 0 and "--name" in bad.output
