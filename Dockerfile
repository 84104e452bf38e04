# syntax=docker/dockerfile:1
#
# Two images from one file (build from the repository root):
#   docker build --target train -t REGISTRY/specialize:0.1.0 .       CUDA training image (default target)
#   docker build --target beam  -t REGISTRY/specialize-beam:0.1.0 .  CPU Beam SDK worker (Dataflow/Flink/Spark)
#
# BEAM_VERSION must equal the apache-beam version of the machine that submits the pipeline, and
# BEAM_PYTHON its Python minor version: Beam refuses workers whose SDK differs from the submitter's.
ARG BEAM_VERSION=2.77.0
ARG BEAM_PYTHON=3.11
ARG NGC_PYTORCH=25.10-py3

# ---------------------------------------------------------------------------------------------
# Beam worker: Apache Beam's SDK container plus this package, so workers can import specialize.
FROM apache/beam_python${BEAM_PYTHON}_sdk:${BEAM_VERSION} AS beam
WORKDIR /opt/specialize
COPY pyproject.toml README.md ./
COPY specialize ./specialize
COPY beam_jobs ./beam_jobs
# specialize/megatron_configs links here: the presets and run configs are package data of the wheel.
COPY megatron_configs ./megatron_configs
# The corpus pipeline never runs a model: the package goes in without its dependencies, plus only
# what the workers import (beam_jobs/worker-requirements.txt: no torch, megatron-core or transformers).
# apache-beam is the base image's, at BEAM_VERSION (the submitter's version).
RUN pip install --no-cache-dir -r beam_jobs/worker-requirements.txt \
    && pip install --no-cache-dir --no-deps ./ \
    && python -c "import apache_beam, beam_jobs.corpus_build, specialize; print('beam', apache_beam.__version__)"
# The base image's ENTRYPOINT (/opt/apache/beam/boot) is kept: runners start the SDK harness through it.

# ---------------------------------------------------------------------------------------------
# Training: NVIDIA's PyTorch container (CUDA, cuDNN, NCCL, PyTorch, Transformer Engine and
# FlashAttention built together) plus this package with its `gpu` extra. The container's
# PIP_CONSTRAINT file pins its own torch build, so pip installs around it instead of replacing it.
FROM nvcr.io/nvidia/pytorch:${NGC_PYTORCH} AS train
WORKDIR /opt/specialize
COPY pyproject.toml README.md ./
COPY specialize ./specialize
COPY beam_jobs ./beam_jobs
COPY megatron_configs ./megatron_configs
# --no-build-isolation: extensions in the gpu extra must build against the container's torch.
# ("./[gpu]" is this directory with its extra; the leading ./ tells pip and hadolint it is a path.)
RUN pip install --no-cache-dir --no-build-isolation "./[gpu]" \
    && specialize --help > /dev/null
ENV PYTHONUNBUFFERED=1
# Jobs run with the shared volume as working directory (see `specialize launch k8s --mount-path`);
# the installed package carries the presets and run configs (`--config cpt-code` or
# `--config megatron_configs/cpt-code.yaml` from any directory), also readable at /opt/specialize/megatron_configs.
WORKDIR /workspace
ENTRYPOINT ["specialize"]
CMD ["--help"]
