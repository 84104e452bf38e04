"""Run configuration: plain dataclasses, loaded from YAML, overridden by ``--set key=value``.

Resolution order: dataclass defaults < YAML file (``megatron_configs/cpt-*.yaml``) < command-line
options < ``--set section.key=value``. The resolved config is written next to every checkpoint
(``config.yaml``) so a run can be read back and resumed exactly. Unknown keys are errors that name the
file and key: a typo in a config must never silently fall back to a default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from specialize.model.memory import RECOMPUTE_MODES
from specialize.train.speed import SpeedConfig  # the speed: section, defined beside its rules


@dataclass
class ModelConfig:
    """Which model, how it is split, and which attention kernel runs it."""

    source: str = "qwen-tiny"  # any --from form (specialize/model/source.py): run dir, checkpoint, HF dir, preset, Hub id
    tp: int = 1  # tensor-parallel size
    pp: int = 1  # pipeline-parallel size
    cp: int = 1  # context-parallel size: each sequence split over cp GPUs (GPU + Transformer Engine only)
    sequence_parallel: bool = False  # only with tp > 1
    attention: str = "auto"  # auto | local | flash; see specialize/train/attention.py for what each runs where
    # activation recomputation: none | selective (core attention only, Megatron-LM's --recompute-activations) |
    # full (every layer's input kept, the layer recomputed in backward: --recompute-granularity full)
    recompute: str = "none"
    # RoPE base for continual pretraining at a longer context (Code-Qwen: 8192 tokens; Qwen2.5-Coder: 32k with
    # base 1e6); null keeps the checkpoint's. Recorded in every checkpoint and in the export's config.json.
    rotary_base: float | None = None
    overrides: dict = field(default_factory=dict)  # extra TransformerConfig fields (e.g. hidden_dropout: 0.0)


@dataclass
class DataConfig:
    """The Arrow shard blend of continual pretraining (SFT brings its own provider and ignores this)."""

    paths: list = field(default_factory=lambda: ["checkpoints/corpus/code"])  # shard dirs, "DIR" or "DIR:WEIGHT"
    split: str = "98,2,0"  # train,valid,test share of each shard set's documents
    reset_position_ids: bool = False  # restart rotary positions after each EOD
    reset_attention_mask: bool = False  # no attention across documents packed in one sample
    eod_mask_loss: bool = False  # do not train on predicting what follows an EOD
    verify_checksums: bool = True  # sha256 every shard against the manifest before the first step
    cache_dir: str | None = None  # megatron index cache; default: <output>/data_cache


@dataclass
class OptimizerConfig:
    """AdamW and the LR schedule as in the Qwen report (cosine to 10% of peak, or constant)."""

    lr: float = 3e-4
    min_lr_ratio: float = 0.1  # cosine floor as a fraction of lr
    schedule: str = "cosine"  # cosine | constant (constant after warmup, as Code-Qwen's CPT)
    warmup_fraction: float = 0.03  # of train.steps; warmup_steps wins when set
    warmup_steps: int | None = None
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    clip_grad: float = 1.0
    distributed: bool = True  # megatron distributed optimizer (shards optimizer state over data parallel)


@dataclass
class TrainConfig:
    steps: int = 200
    seq_length: int = 128
    micro_batch_size: int = 4
    global_batch_size: int = 8  # = micro_batch_size x accumulation x data-parallel size
    seed: int = 1234
    precision: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | fp32 | bf16
    max_bad_steps: int = 5  # NaN/inf losses in a row before the run stops with an error
    threads: int | None = None  # torch intra-op threads per process on CPU (None: torch default)
    distributed_timeout_minutes: float = 10.0  # collectives' timeout (NCCL/gloo), Megatron-LM's --distributed-timeout-minutes


@dataclass
class CheckpointConfig:
    save_every: int = 100  # steps; a checkpoint is also written at the end and on SIGTERM/SIGINT
    keep_last: int = 3
    resume: bool = True  # continue from the latest checkpoint in the output directory when there is one
    # distributed optimizer state on disk: dp_reshardable (Megatron-LM's default: every rank writes its own
    # shard, no gather; reloads at another DP size, same TP/PP) | fully_reshardable (reloads at any layout;
    # DP rank 0 gathers its TP/PP slice's optimizer state in host memory while saving)
    optimizer_format: str = "dp_reshardable"
    async_save: bool | None = None  # write in the background while training goes on; null: on GPU yes, on CPU no
    load_optimizer: bool = True  # false: resume weights, schedule and data position with fresh Adam moments


@dataclass
class LogConfig:
    every: int = 1  # steps between JSONL/TensorBoard records
    eval_every: int = 50  # steps between validation passes (0: never)
    eval_iters: int = 4  # global batches per validation pass
    tensorboard: bool = True
    progress: str = "auto"  # auto (bar when stdout is a terminal) | bar | plain | none
    peak_tflops: float | None = None  # per-device peak for MFU; None: looked up from the GPU name


@dataclass
class RunConfig:
    output: str = "checkpoints/cpt/run"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)
    speed: SpeedConfig = field(default_factory=SpeedConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


class ConfigError(ValueError):
    """A config file or override that cannot be applied; the message names where it came from."""


def _assign(obj: Any, key: str, value: Any, where: str) -> None:
    """Set ``obj.key = value`` after checking the key exists and coercing to the field's type."""
    names = {f.name for f in dataclasses.fields(obj)}
    if key not in names:
        raise ConfigError(f"{where}: unknown key {key!r} in [{type(obj).__name__}] (known: {sorted(names)})")
    current = getattr(obj, key)
    if dataclasses.is_dataclass(current):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {key!r} is a section; give a mapping, not {value!r}")
        for sub_key, sub_value in value.items():
            _assign(current, sub_key, sub_value, f"{where}: {key}")
        return
    hint = get_type_hints(type(obj))[key]
    setattr(obj, key, _coerce(value, hint, f"{where}: {key}"))


def _coerce(value: Any, hint: Any, where: str) -> Any:
    text = str(hint)
    if value is None:
        if "None" in text:
            return None
        raise ConfigError(f"{where}: may not be null")
    if hint is bool or text.startswith("bool"):
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    for base in (int, float):
        if hint is base or text.startswith(base.__name__):
            if isinstance(value, str):  # YAML 1.1 reads 6e-5 (no dot) as a string
                try:
                    value = float(value)
                except ValueError:
                    raise ConfigError(f"{where}: expected a number, got {value!r}") from None
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{where}: expected a number, got {value!r}")
            if base is int and float(value) != int(value):
                raise ConfigError(f"{where}: expected an integer, got {value!r}")
            return base(value)
    if hint is str or text.startswith("str"):
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    if hint is list and not isinstance(value, list):
        return [value]
    if hint is dict and not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping, got {value!r}")
    return value


def apply_mapping(config: RunConfig, mapping: dict, where: str) -> RunConfig:
    if not isinstance(mapping, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level")
    for key, value in mapping.items():
        _assign(config, key, value, where)
    return config


def apply_override(config: RunConfig, assignment: str) -> RunConfig:
    """Apply one ``section.key=value`` (value parsed as YAML: ``3e-5``, ``true``, ``[a, b]``)."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected section.key=value")
    dotted, raw = assignment.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {assignment!r}: value is not valid YAML ({err})") from err
    nested: Any = value
    for part in reversed(dotted.strip().split(".")):
        nested = {part: nested}
    return apply_mapping(config, nested, f"--set {assignment}")


def read_config_file(path: str | Path, examples: str = "megatron_configs/cpt-*.yaml") -> dict:
    """A run config file's top-level mapping; every way it can be wrong is a ConfigError naming the file.

    ``path`` may also name a shipped config (``cpt-code``; see ``specialize.configs``).
    """
    from specialize.configs import resolve_config_path, shipped_run_configs

    path = resolve_config_path(path)
    try:
        mapping = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found (see {examples}; shipped: "
                          f"{', '.join(shipped_run_configs()) or 'none found'})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from err
    if not isinstance(mapping, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return mapping


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> RunConfig:
    config = RunConfig()
    if path is not None:
        apply_mapping(config, read_config_file(path), str(path))
    for assignment in overrides:
        apply_override(config, assignment)
    return config


def check_config(config: RunConfig, world_size: int) -> int:
    """Check the settings against each other; return the number of micro-batches per step."""
    t, m, o = config.train, config.model, config.optimizer
    if m.cp < 1:
        raise ConfigError(f"model.cp {m.cp}: must be >= 1")
    if world_size % (m.tp * m.pp * m.cp):
        raise ConfigError(f"world size {world_size} is not a multiple of tp*pp*cp = {m.tp}*{m.pp}*{m.cp}")
    dp = world_size // (m.tp * m.pp * m.cp)
    if t.seq_length % (2 * m.cp):
        raise ConfigError(f"train.seq_length {t.seq_length} must be a multiple of 2 x model.cp = {2 * m.cp} "
                          "(megatron splits each sequence into 2 x cp load-balanced chunks)")
    recompute_mode(m.recompute)
    if m.rotary_base is not None and m.rotary_base <= 0:
        raise ConfigError(f"model.rotary_base {m.rotary_base}: must be positive")
    if t.global_batch_size % (t.micro_batch_size * dp):
        raise ConfigError(
            f"train.global_batch_size {t.global_batch_size} must be a multiple of "
            f"train.micro_batch_size {t.micro_batch_size} x data-parallel size {dp}")
    if m.sequence_parallel and m.tp == 1:
        raise ConfigError("model.sequence_parallel needs model.tp > 1")
    if o.schedule not in ("cosine", "constant"):
        raise ConfigError(f"optimizer.schedule {o.schedule!r}: expected cosine or constant")
    if t.precision not in ("auto", "fp32", "bf16"):
        raise ConfigError(f"train.precision {t.precision!r}: expected auto, fp32 or bf16")
    if m.attention not in ("auto", "local", "flash"):
        raise ConfigError(f"model.attention {m.attention!r}: expected auto, local or flash")
    if config.checkpoint.optimizer_format not in ("dp_reshardable", "fully_reshardable"):
        raise ConfigError(f"checkpoint.optimizer_format {config.checkpoint.optimizer_format!r}: expected "
                          "dp_reshardable or fully_reshardable")
    if t.steps < 1 or t.seq_length < 2:
        raise ConfigError("train.steps must be >= 1 and train.seq_length >= 2")
    if warmup_steps(config) >= t.steps:
        raise ConfigError(f"{warmup_steps(config)} warmup steps leave no step of train.steps {t.steps} after them; "
                          "lower optimizer.warmup_steps / warmup_fraction")
    return t.global_batch_size // (t.micro_batch_size * dp)


def recompute_mode(value) -> str:
    """``model.recompute`` as one of RECOMPUTE_MODES (true/false, from configs written before the modes, too)."""
    text = str(value).strip().lower()
    text = {"true": "full", "false": "none", "": "none"}.get(text, text)
    if text not in RECOMPUTE_MODES:
        raise ConfigError(f"model.recompute {value!r}: expected none, selective or full")
    return text


def recompute_settings(value) -> dict:
    """The TransformerConfig fields of a recompute mode (Megatron-LM's flags for each)."""
    mode = recompute_mode(value)
    if mode == "full":
        return dict(recompute_granularity="full", recompute_method="uniform", recompute_num_layers=1)
    if mode == "selective":
        return dict(recompute_granularity="selective")
    return {}


def warmup_steps(config: RunConfig) -> int:
    o = config.optimizer
    return o.warmup_steps if o.warmup_steps is not None else int(round(o.warmup_fraction * config.train.steps))


def parse_data_spec(spec: str) -> tuple[str, float]:
    """``DIR`` or ``DIR:WEIGHT`` -> (dir, weight); a colon followed by a non-number stays in the path."""
    head, sep, tail = spec.rpartition(":")
    if sep:
        try:
            weight = float(tail)
        except ValueError:
            return spec, 1.0
        if weight <= 0:
            raise ConfigError(f"--data {spec!r}: weight must be positive")
        return head, weight
    return spec, 1.0
