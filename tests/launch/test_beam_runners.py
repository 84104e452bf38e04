"""Remote Beam runner options: settings in, PipelineOptions out, validated, no network."""

from __future__ import annotations

import pytest
from apache_beam.options.pipeline_options import (
    DebugOptions,
    FlinkRunnerOptions,
    GoogleCloudOptions,
    PortableOptions,
    SetupOptions,
    SparkRunnerOptions,
    StandardOptions,
    WorkerOptions,
)

from beam_jobs.runners import (
    RunnerSettingsError,
    check_pipeline_paths,
    load_runner_settings,
    remote_runner_options,
)

DATAFLOW = {
    "project": "my-project",
    "region": "europe-west4",
    "temp_location": "gs://bucket/tmp",
    "staging_location": "gs://bucket/staging",
    "machine_type": "n2-highmem-8",
    "max_num_workers": 200,
    "sdk_container_image": "europe-docker.pkg.dev/my-project/specialize/beam:0.1.0",
    "labels": {"team": "data"},
}


def test_dataflow_settings_become_google_cloud_and_worker_options():
    options = remote_runner_options("dataflow", DATAFLOW)
    assert options.view_as(StandardOptions).runner == "DataflowRunner"
    gcp = options.view_as(GoogleCloudOptions)
    assert (gcp.project, gcp.region) == ("my-project", "europe-west4")
    assert (gcp.temp_location, gcp.staging_location) == ("gs://bucket/tmp", "gs://bucket/staging")
    assert gcp.labels == ["team=data"]
    worker = options.view_as(WorkerOptions)
    assert worker.machine_type == "n2-highmem-8"
    assert worker.max_num_workers == 200
    assert worker.sdk_container_image == DATAFLOW["sdk_container_image"]


def test_cli_strings_are_coerced():
    settings = {k: v for k, v in DATAFLOW.items() if k != "labels"}
    settings.update(max_num_workers="50", save_main_session="false", requirements_file="reqs.txt")
    options = remote_runner_options("dataflow", settings)
    assert options.view_as(WorkerOptions).max_num_workers == 50
    setup = options.view_as(SetupOptions)
    assert setup.save_main_session is False and setup.requirements_file == "reqs.txt"


@pytest.mark.parametrize("runner,base", [
    ("dataflow", DATAFLOW),
    ("flink", {"job_endpoint": "js:8099", "environment_type": "EXTERNAL", "environment_config": "localhost:50000"}),
])
@pytest.mark.parametrize("packaging", [{"setup_file": "./pyproject.toml"}, {"extra_packages": "dist/a.whl"}])
def test_installing_the_package_on_workers_at_boot_is_refused(runner, base, packaging):
    """setup_file fails at submission (no `build`) and both would pip-install torch and megatron on
    every worker: the `beam` image is the way."""
    with pytest.raises(RunnerSettingsError, match="torch and megatron-core at boot.*--target beam"):
        remote_runner_options(runner, {**base, **packaging})


@pytest.mark.parametrize("missing", ["project", "region", "temp_location"])
def test_dataflow_required_settings(missing):
    settings = {k: v for k, v in DATAFLOW.items() if k != missing}
    with pytest.raises(RunnerSettingsError, match=missing):
        remote_runner_options("dataflow", settings)


def test_dataflow_rejects_local_temp_location_and_unpackaged_workers():
    with pytest.raises(RunnerSettingsError, match="gs://"):
        remote_runner_options("dataflow", {**DATAFLOW, "temp_location": "/tmp/beam"})
    no_code = {k: v for k, v in DATAFLOW.items() if k != "sdk_container_image"}
    with pytest.raises(RunnerSettingsError, match="import specialize"):
        remote_runner_options("dataflow", no_code)


def test_unknown_and_malformed_settings_are_named():
    with pytest.raises(RunnerSettingsError, match="max_workers"):
        remote_runner_options("dataflow", {**DATAFLOW, "max_workers": 10})
    with pytest.raises(RunnerSettingsError, match="max_num_workers.*integer"):
        remote_runner_options("dataflow", {**DATAFLOW, "max_num_workers": "many"})
    with pytest.raises(RunnerSettingsError, match="unknown remote runner"):
        remote_runner_options("samza", {})
    with pytest.raises(RunnerSettingsError, match="settings are for runner 'flink'"):
        remote_runner_options("dataflow", {**DATAFLOW, "runner": "flink"})


def test_flink_job_endpoint_is_portable_runner_with_external_workers():
    options = remote_runner_options("flink", {
        "job_endpoint": "flink-jobserver:8099",
        "environment_type": "external",
        "environment_config": "localhost:50000",
        "parallelism": "16",
    })
    assert options.view_as(StandardOptions).runner == "PortableRunner"
    portable = options.view_as(PortableOptions)
    assert portable.job_endpoint == "flink-jobserver:8099"
    assert (portable.environment_type, portable.environment_config) == ("EXTERNAL", "localhost:50000")
    assert options.view_as(FlinkRunnerOptions).parallelism == 16


def test_flink_master_uses_flink_runner_with_an_uber_jar_and_an_explicit_environment():
    master = {"flink_master": "flink-jobmanager:8081", "flink_submit_uber_jar": "true"}
    with pytest.raises(RunnerSettingsError, match="needs environment_type: EXTERNAL.*no Docker daemon"):
        remote_runner_options("flink", master)  # Beam's default would be DOCKER with its own SDK image
    with pytest.raises(RunnerSettingsError, match="environment_config"):
        remote_runner_options("flink", {**master, "environment_type": "DOCKER"})
    with pytest.raises(RunnerSettingsError, match="flink_submit_uber_jar: true.*local disk"):
        remote_runner_options("flink", {"flink_master": "flink-jobmanager:8081", "environment_type": "DOCKER",
                                        "environment_config": "registry/specialize-beam:0.1.0"})
    options = remote_runner_options("flink", {**master, "environment_type": "DOCKER",
                                              "environment_config": "registry/specialize-beam:0.1.0"})
    assert options.view_as(StandardOptions).runner == "FlinkRunner"
    assert options.view_as(FlinkRunnerOptions).flink_master == "flink-jobmanager:8081"
    assert options.view_as(FlinkRunnerOptions).flink_submit_uber_jar is True
    assert options.view_as(PortableOptions).environment_type == "DOCKER"


def test_spark_master_url_and_endpoint_rules():
    with pytest.raises(RunnerSettingsError, match="spark_submit_uber_jar: true and spark_rest_url"):
        remote_runner_options("spark", {"spark_master_url": "spark://m:7077", "environment_type": "EXTERNAL",
                                        "environment_config": "localhost:50000"})
    with pytest.raises(RunnerSettingsError, match="spark_submit_uber_jar needs spark_rest_url"):
        remote_runner_options("spark", {"spark_master_url": "spark://m:7077", "spark_submit_uber_jar": True,
                                        "environment_type": "EXTERNAL", "environment_config": "localhost:50000"})
    options = remote_runner_options("spark", {
        "spark_master_url": "spark://spark-master:7077",
        "spark_submit_uber_jar": True, "spark_rest_url": "http://spark-master:6066",
        "environment_type": "PROCESS",
        "environment_config": '{"command": "/opt/apache/beam/boot"}',
        "extra_flags": ["--sdk_worker_parallelism=4"],
    })
    assert options.view_as(StandardOptions).runner == "SparkRunner"
    assert options.view_as(SparkRunnerOptions).spark_master_url == "spark://spark-master:7077"
    assert options.view_as(SparkRunnerOptions).spark_rest_url == "http://spark-master:6066"
    assert str(options.view_as(PortableOptions).sdk_worker_parallelism) == "4"  # Beam keeps this one a string
    with pytest.raises(RunnerSettingsError, match="job_endpoint.*spark_master_url"):
        remote_runner_options("spark", {"environment_type": "LOOPBACK"})
    with pytest.raises(RunnerSettingsError, match="not both"):
        remote_runner_options("spark", {"job_endpoint": "a:8099", "spark_master_url": "spark://b:7077"})
    with pytest.raises(RunnerSettingsError, match="environment_type must be one of"):
        remote_runner_options("spark", {"job_endpoint": "a:8099", "environment_type": "KUBERNETES"})


def test_settings_load_from_yaml(tmp_path):
    path = tmp_path / "dataflow.yaml"
    path.write_text(
        "runner: dataflow\nproject: p\nregion: us-central1\ntemp_location: gs://b/tmp\n"
        "max_num_workers: 8\nsdk_container_image: img:1\nexperiments: [use_runner_v2]\n"
    )
    options = remote_runner_options("dataflow", load_runner_settings(path))
    assert options.view_as(WorkerOptions).max_num_workers == 8
    assert "use_runner_v2" in options.view_as(DebugOptions).experiments
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(RunnerSettingsError, match="bad.yaml.*mapping"):
        load_runner_settings(bad)


def test_pipeline_paths_reachable_by_workers():
    check_pipeline_paths("dataflow", {"output": "gs://b/corpus", "input": "s3://b/src"})
    check_pipeline_paths("flink", {"output": "/mnt/shared/corpus"})
    check_pipeline_paths("direct", {"output": "out/corpus"})
    with pytest.raises(RunnerSettingsError, match="output 'out/corpus' is a local path"):
        check_pipeline_paths("dataflow", {"output": "out/corpus"})
    with pytest.raises(RunnerSettingsError, match="relative path"):
        check_pipeline_paths("spark", {"input": "data/src"})
