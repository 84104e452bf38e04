"""Pipeline options for remote Beam runners: Dataflow, Flink and Spark.

The corpus pipeline is the same everywhere; only where it runs changes. This module turns a flat
mapping of settings (from ``--runner-config runner.yaml`` and ``--runner-option KEY=VALUE``) into
Beam ``PipelineOptions``, checking up front what a remote run needs, so that a missing bucket or
worker image fails on the laptop with a clear message instead of twenty minutes into a cloud job.

How to call it (``beam_jobs/runner.py`` does this for every runner other than ``direct``)::

    from beam_jobs.runners import remote_runner_options, load_runner_settings
    settings = load_runner_settings("runner.yaml")          # optional; any dict works
    settings.update({"max_num_workers": "50"})              # CLI strings are coerced
    options = remote_runner_options("dataflow", settings)   # -> PipelineOptions
    pipeline = beam.Pipeline(options=options)

Settings per runner (YAML keys are Beam's own option names, without ``--``):

- ``dataflow``: required ``project``, ``region``, ``temp_location`` (gs://); optional
  ``staging_location``, ``job_name``, ``machine_type``, ``num_workers``, ``max_num_workers``,
  ``disk_size_gb``, ``service_account_email``, ``network``, ``subnetwork``, ``use_public_ips``,
  ``labels`` (mapping), ``experiments``, ``dataflow_service_options``. The workers must be able to
  import ``specialize``: give ``sdk_container_image`` (the ``beam`` target of our Dockerfile,
  the only way: ``setup_file`` and ``extra_packages`` are refused, they would make every worker
  pip-install torch and megatron-core at boot).
- ``flink`` / ``spark``: either ``job_endpoint`` (a running Beam job server: PortableRunner) or
  ``flink_master`` / ``spark_master_url`` (Beam's FlinkRunner / SparkRunner start the job server
  themselves); ``environment_type`` (DOCKER, EXTERNAL, PROCESS or LOOPBACK) and
  ``environment_config`` (the worker image for DOCKER, the worker-pool address for EXTERNAL, e.g.
  ``localhost:50000`` for a Beam worker-pool sidecar next to each Flink task manager).
- any runner: ``extra_flags`` (a list of raw Beam flags, passed through last, for options this
  module does not name), ``save_main_session``, ``requirements_file``, ``sdk_location``.
- every runner, the local one included: Beam's object-store client settings, ``s3_endpoint_url``,
  ``s3_region_name``, ``s3_access_key_id``, ``s3_secret_access_key``, ``s3_session_token``,
  ``s3_verify``, ``s3_disable_ssl``, ``s3_api_version`` (unset: boto3's own chain, environment and
  instance profile), and ``no_auth`` for gs:// without credentials (an emulator, public buckets). The
  launcher reads inputs and writes outputs with the same options as the workers
  (``beam_jobs.runner.use_options_for_filesystems``), so an S3-compatible store (MinIO, Ceph) works
  from the laptop too.

Unknown keys are an error (a typo such as ``max_workers`` would otherwise be silently ignored by
Beam and the job would run on one worker).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions

REMOTE_RUNNERS = ("dataflow", "flink", "spark")
ENVIRONMENT_TYPES = ("DOCKER", "EXTERNAL", "PROCESS", "LOOPBACK")


class RunnerSettingsError(ValueError):
    """A remote runner setting is missing, unknown or malformed (the message says which and how to fix it)."""


# ---------------------------------------------------------------------------------------------
# value coercion: YAML gives typed values, --runner-option KEY=VALUE gives strings


def _as_str(key: str, value: Any) -> str:
    if isinstance(value, (dict, list, tuple)):
        raise RunnerSettingsError(f"setting {key!r} must be a single value, got {type(value).__name__}")
    text = str(value).strip()
    if not text:
        raise RunnerSettingsError(f"setting {key!r} is empty")
    return text


def _as_int(key: str, value: Any) -> str:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise RunnerSettingsError(f"setting {key!r} must be an integer, got {value!r}") from None
    if number < 1:
        raise RunnerSettingsError(f"setting {key!r} must be >= 1, got {number}")
    return str(number)


def _as_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise RunnerSettingsError(f"setting {key!r} must be true or false, got {value!r}")


def _as_list(key: str, value: Any) -> list[str]:
    """A YAML list, or a comma-separated string from the command line."""
    if isinstance(value, (list, tuple)):
        items = [str(v).strip() for v in value]
    else:
        items = [v.strip() for v in str(value).split(",")]
    items = [v for v in items if v]
    if not items:
        raise RunnerSettingsError(f"setting {key!r} is empty")
    return items


def _flag(name: str) -> Callable[[str, Any], list[str]]:
    return lambda key, value: [f"--{name}={_as_str(key, value)}"]


def _int_flag(name: str) -> Callable[[str, Any], list[str]]:
    return lambda key, value: [f"--{name}={_as_int(key, value)}"]


def _bool_flag(name: str, negative: str | None = None) -> Callable[[str, Any], list[str]]:
    def convert(key: str, value: Any) -> list[str]:
        if _as_bool(key, value):
            return [f"--{name}"]
        return [f"--{negative}"] if negative else []

    return convert


def _repeated_flag(name: str) -> Callable[[str, Any], list[str]]:
    return lambda key, value: [f"--{name}={item}" for item in _as_list(key, value)]


def _labels(key: str, value: Any) -> list[str]:
    if isinstance(value, Mapping):
        pairs = [f"{k}={v}" for k, v in value.items()]
    else:
        pairs = _as_list(key, value)
    for pair in pairs:
        if "=" not in pair:
            raise RunnerSettingsError(f"setting {key!r}: label {pair!r} is not KEY=VALUE")
    return [f"--labels={pair}" for pair in pairs]


def _extra_flags(key: str, value: Any) -> list[str]:
    flags = value if isinstance(value, (list, tuple)) else str(value).split()
    for flag in flags:
        if not str(flag).startswith("--"):
            raise RunnerSettingsError(f"setting {key!r}: {flag!r} is not a Beam flag (they start with --)")
    return [str(f) for f in flags]


# Settings every remote runner accepts: packaging the code for the workers.
_COMMON: dict[str, Callable[[str, Any], list[str]]] = {
    "job_name": _flag("job_name"),
    "setup_file": _flag("setup_file"),
    "requirements_file": _flag("requirements_file"),
    "extra_packages": _repeated_flag("extra_package"),
    "sdk_location": _flag("sdk_location"),
    "save_main_session": _bool_flag("save_main_session", "no_save_main_session"),
    "extra_flags": _extra_flags,
}

_DATAFLOW: dict[str, Callable[[str, Any], list[str]]] = {
    "project": _flag("project"),
    "region": _flag("region"),
    "temp_location": _flag("temp_location"),
    "staging_location": _flag("staging_location"),
    "machine_type": _flag("machine_type"),
    "num_workers": _int_flag("num_workers"),
    "max_num_workers": _int_flag("max_num_workers"),
    "disk_size_gb": _int_flag("disk_size_gb"),
    "autoscaling_algorithm": _flag("autoscaling_algorithm"),
    "sdk_container_image": _flag("sdk_container_image"),
    "service_account_email": _flag("service_account_email"),
    "network": _flag("network"),
    "subnetwork": _flag("subnetwork"),
    "use_public_ips": _bool_flag("use_public_ips", "no_use_public_ips"),
    "labels": _labels,
    "experiments": _repeated_flag("experiments"),
    "dataflow_service_options": _repeated_flag("dataflow_service_options"),
    "flexrs_goal": _flag("flexrs_goal"),
}

_PORTABLE: dict[str, Callable[[str, Any], list[str]]] = {
    "job_endpoint": _flag("job_endpoint"),
    "artifact_endpoint": _flag("artifact_endpoint"),
    "environment_type": lambda key, value: [f"--environment_type={_as_str(key, value).upper()}"],
    "environment_config": _flag("environment_config"),
    "environment_options": _repeated_flag("environment_options"),
    "sdk_worker_parallelism": _int_flag("sdk_worker_parallelism"),
}

_FLINK: dict[str, Callable[[str, Any], list[str]]] = {
    "flink_master": _flag("flink_master"),
    "flink_version": _flag("flink_version"),
    "flink_job_server_jar": _flag("flink_job_server_jar"),
    "flink_submit_uber_jar": _bool_flag("flink_submit_uber_jar"),
    "parallelism": _int_flag("parallelism"),
    "max_parallelism": _int_flag("max_parallelism"),
}

_SPARK: dict[str, Callable[[str, Any], list[str]]] = {
    "spark_master_url": _flag("spark_master_url"),
    "spark_job_server_jar": _flag("spark_job_server_jar"),
    "spark_submit_uber_jar": _bool_flag("spark_submit_uber_jar"),
    "spark_rest_url": _flag("spark_rest_url"),
}

# Object-store clients (Beam's S3Options): the launcher and every worker build their clients from these.
STORAGE: dict[str, Callable[[str, Any], list[str]]] = {
    "s3_endpoint_url": _flag("s3_endpoint_url"),
    "s3_region_name": _flag("s3_region_name"),
    "s3_access_key_id": _flag("s3_access_key_id"),
    "s3_secret_access_key": _flag("s3_secret_access_key"),
    "s3_session_token": _flag("s3_session_token"),
    "s3_api_version": _flag("s3_api_version"),
    "s3_verify": _flag("s3_verify"),
    "s3_disable_ssl": _bool_flag("s3_disable_ssl"),
    # gs://: no Google credentials at all (a GCS emulator through STORAGE_EMULATOR_HOST, public buckets);
    # otherwise the client uses Application Default Credentials.
    "no_auth": _bool_flag("no_auth"),
}

_ACCEPTED = {
    "dataflow": {**_COMMON, **_DATAFLOW, **STORAGE},
    "flink": {**_COMMON, **_PORTABLE, **_FLINK, **STORAGE},
    "spark": {**_COMMON, **_PORTABLE, **_SPARK, **STORAGE},
}


# ---------------------------------------------------------------------------------------------
# per-runner requirements


def _require(runner: str, settings: Mapping[str, Any], *keys: str) -> None:
    missing = [k for k in keys if settings.get(k) in (None, "")]
    if missing:
        raise RunnerSettingsError(
            f"runner {runner!r} needs {', '.join(missing)}: add them to --runner-config YAML "
            f"or pass --runner-option {missing[0]}=..."
        )


def _check_packaging(runner: str, settings: Mapping[str, Any]) -> None:
    """Workers get specialize from our ``beam`` image, never by installing the package at boot.

    ``setup_file: ./pyproject.toml`` fails at submission (Beam builds an sdist with ``build``, which a
    plain install lacks), and both it and ``extra_packages`` make every worker pip-install the
    package's dependencies (torch, megatron-core: gigabytes) when it starts.
    """
    for key in ("setup_file", "extra_packages"):
        if settings.get(key):
            raise RunnerSettingsError(
                f"{runner}: {key} would make every worker pip-install specialize with torch and megatron-core at "
                "boot (and setup_file needs `build` at submission): use the worker image instead, "
                "`docker build --target beam` (the package without its training dependencies, "
                "beam_jobs/worker-requirements.txt), as " + (
                    "sdk_container_image" if runner == "dataflow" else "environment_config with environment_type DOCKER, "
                    "or as the worker-pool sidecar image with EXTERNAL"))


def _check_dataflow(settings: Mapping[str, Any]) -> str:
    _require("dataflow", settings, "project", "region", "temp_location")
    for key in ("temp_location", "staging_location"):
        value = settings.get(key)
        if value and not str(value).startswith("gs://"):
            raise RunnerSettingsError(f"dataflow {key} must be a gs:// path, got {value!r}")
    _check_packaging("dataflow", settings)
    if not settings.get("sdk_container_image"):
        raise RunnerSettingsError(
            "dataflow workers must be able to import specialize: set sdk_container_image to the image built "
            "with `docker build --target beam` (pushed where Dataflow can pull it)"
        )
    return "DataflowRunner"


def _check_environment(runner: str, settings: Mapping[str, Any]) -> None:
    if not settings.get("environment_type"):
        raise RunnerSettingsError(
            f"{runner} needs environment_type: EXTERNAL (a Beam worker-pool sidecar next to each task manager, "
            "running our `beam` image: what works on Kubernetes, whose task managers have no Docker daemon), "
            "DOCKER (task managers start our `beam` image themselves; needs a Docker daemon on them) or PROCESS. "
            "Beam's own default, DOCKER with Beam's SDK image, cannot import specialize")
    env_type = str(settings.get("environment_type")).upper()
    if env_type not in ENVIRONMENT_TYPES:
        raise RunnerSettingsError(
            f"{runner} environment_type must be one of {', '.join(ENVIRONMENT_TYPES)}, got {env_type!r}"
        )
    config = settings.get("environment_config")
    if env_type == "DOCKER" and not config:
        raise RunnerSettingsError(
            f"{runner} with environment_type DOCKER needs environment_config: the worker image with "
            "specialize installed (`docker build --target beam`); Beam's default SDK image cannot import it"
        )
    if env_type == "EXTERNAL" and not config:
        raise RunnerSettingsError(
            f"{runner} with environment_type EXTERNAL needs environment_config: the worker pool address, "
            "e.g. localhost:50000 for a Beam worker-pool sidecar next to each task manager"
        )
    if env_type == "PROCESS" and not config:
        raise RunnerSettingsError(
            f"{runner} with environment_type PROCESS needs environment_config, e.g. "
            '\'{"command": "/opt/apache/beam/boot"}\''
        )


def _check_portable(runner: str, settings: Mapping[str, Any], master_key: str, direct_runner: str) -> str:
    endpoint, master = settings.get("job_endpoint"), settings.get(master_key)
    if endpoint and master:
        raise RunnerSettingsError(
            f"{runner}: give either job_endpoint (a running Beam job server) or {master_key}, not both"
        )
    if not endpoint and not master:
        raise RunnerSettingsError(
            f"runner {runner!r} needs job_endpoint (HOST:PORT of a Beam job server, PortableRunner) "
            f"or {master_key} (the cluster master; {direct_runner} starts a job server for it)"
        )
    _check_environment(runner, settings)
    _check_packaging(runner, settings)
    uber_key = f"{runner}_submit_uber_jar"
    uber = _as_bool(uber_key, settings.get(uber_key, False))
    if master and not uber:  # Beam's job server would keep the artifacts on its own disk
        raise RunnerSettingsError(
            "flink with flink_master needs flink_submit_uber_jar: true: otherwise Beam's job server keeps the "
            "pipeline's artifacts on its own local disk, where the task managers cannot read them (apache/beam "
            "issues 24367, 32743); or run a job server in the cluster and give job_endpoint instead"
            if runner == "flink" else
            "spark with spark_master_url needs spark_submit_uber_jar: true and spark_rest_url: otherwise Beam's "
            "job server keeps the pipeline's artifacts on its own local disk, where the executors cannot read "
            "them; or run a job server in the cluster and give job_endpoint instead")
    if runner == "spark" and uber and not settings.get("spark_rest_url"):
        raise RunnerSettingsError(
            "spark_submit_uber_jar needs spark_rest_url (the Spark master's REST endpoint, e.g. "
            "http://spark-master:6066), which Beam submits the jar to")
    return "PortableRunner" if endpoint else direct_runner


# ---------------------------------------------------------------------------------------------
# public API


def runner_flags(runner: str, settings: Mapping[str, Any]) -> list[str]:
    """The Beam command-line flags for ``runner`` from ``settings`` (validated), ``--runner`` first."""
    runner = runner.lower().strip()
    if runner not in REMOTE_RUNNERS:
        raise RunnerSettingsError(f"unknown remote runner {runner!r}: expected one of {', '.join(REMOTE_RUNNERS)}")
    settings = {k: v for k, v in dict(settings).items() if v is not None}
    named = settings.pop("runner", None)
    if named is not None and str(named).lower().strip() != runner:
        raise RunnerSettingsError(f"settings are for runner {named!r} but --runner is {runner!r}")
    accepted = _ACCEPTED[runner]
    unknown = sorted(set(settings) - set(accepted))
    if unknown:
        raise RunnerSettingsError(
            f"unknown {runner} setting(s) {', '.join(unknown)}; accepted: {', '.join(sorted(accepted))} "
            "(or pass raw Beam flags in extra_flags)"
        )
    if runner == "dataflow":
        beam_runner = _check_dataflow(settings)
    elif runner == "flink":
        beam_runner = _check_portable("flink", settings, "flink_master", "FlinkRunner")
    else:
        beam_runner = _check_portable("spark", settings, "spark_master_url", "SparkRunner")
    flags = [f"--runner={beam_runner}"]
    for key in sorted(settings, key=lambda k: (k == "extra_flags", k)):  # raw flags go last
        flags += accepted[key](key, settings[key])
    return flags


def storage_flags(settings: Mapping[str, Any], where: str = "local runs") -> list[str]:
    """Beam flags for the object-store settings in ``settings``; anything else is an error for ``where``."""
    settings = {k: v for k, v in dict(settings).items() if v is not None}
    unknown = sorted(set(settings) - set(STORAGE))
    if unknown:
        raise RunnerSettingsError(
            f"setting(s) {', '.join(unknown)} apply to remote runners (--runner dataflow|flink|spark); "
            f"{where} accept only the object-store settings: {', '.join(sorted(STORAGE))}")
    return [flag for key in sorted(settings) for flag in STORAGE[key](key, settings[key])]


def remote_runner_options(runner: str, settings: Mapping[str, Any]) -> PipelineOptions:
    """Validated ``PipelineOptions`` for a Dataflow, Flink or Spark run of a Beam pipeline.

    ``settings`` is a flat mapping of Beam option names to values (typed from YAML, or strings from
    ``KEY=VALUE`` on the command line). Raises ``RunnerSettingsError`` naming what is missing or wrong.
    Nothing here touches the network: credentials, buckets and endpoints are checked by Beam at run time.
    """
    return PipelineOptions(flags=runner_flags(runner, settings))


def load_runner_settings(path: str | Path) -> dict[str, Any]:
    """Read a runner settings YAML (a flat mapping); errors name the file."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RunnerSettingsError(f"{path}: cannot read runner settings: {exc}") from exc
    except yaml.YAMLError as exc:
        raise RunnerSettingsError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise RunnerSettingsError(f"{path}: runner settings must be a mapping of option: value, got {type(data).__name__}")
    return dict(data)


def check_pipeline_paths(runner: str, paths: Mapping[str, str]) -> None:
    """Fail early when a remote run would read or write paths its workers cannot reach.

    Dataflow workers see only object stores (gs://, s3://...). Flink/Spark workers may share a mounted
    volume, so absolute paths are accepted there (they must be the same mount on every worker), but a
    relative path is always a mistake: it resolves on each worker's own disk.
    """
    runner = runner.lower().strip()
    if runner not in REMOTE_RUNNERS:
        return
    for name, value in paths.items():
        text = str(value)
        if "://" in text:
            continue
        if runner == "dataflow":
            raise RunnerSettingsError(
                f"{name} {text!r} is a local path: dataflow workers cannot reach it; use gs://bucket/..."
            )
        if not text.startswith("/"):
            raise RunnerSettingsError(
                f"{name} {text!r} is a relative path: {runner} workers would each resolve it on their own disk; "
                "use an object store URL (gs://, s3://) or an absolute path on a volume every worker mounts"
            )
