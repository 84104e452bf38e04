"""Config: YAML < --set overrides, typed, unknown keys named; consistency checks."""

import pytest

from specialize.train.config import ConfigError, RunConfig, check_config, load_config, parse_data_spec, warmup_steps


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optimizer:\n  lr: 3.0e-5\n  schedule: constant\ntrain:\n  steps: 10\n")
    config = load_config(path, ["optimizer.lr=6e-5", "train.micro_batch_size=2", "model.overrides={hidden_dropout: 0.0}"])
    assert config.optimizer.lr == 6e-5 and config.optimizer.schedule == "constant"
    assert config.train.steps == 10 and config.train.micro_batch_size == 2
    assert config.model.overrides == {"hidden_dropout": 0.0}
    again = load_config(None, [])
    assert again == RunConfig()


def test_resolved_config_round_trips(tmp_path):
    config = load_config(None, ["train.steps=7", "data.paths=[a:2, b]"])
    path = tmp_path / "r.yaml"
    path.write_text(config.to_yaml())
    assert load_config(path) == config


@pytest.mark.parametrize("bad,message", [
    ("optimizer.lrr=1", "unknown key 'lrr'"),
    ("train.steps=1.5", "integer"),
    ("train.steps=abc", "number"),
    ("checkpoint.resume=3", "true/false"),
    ("optimizer=3", "section"),
    ("nosuch", "section.key=value"),
])
def test_bad_overrides_are_named(bad, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [bad])


def test_unknown_key_in_file_names_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  stepz: 3\n")
    with pytest.raises(ConfigError, match=f"{path}.*stepz"):
        load_config(path)


def test_batch_arithmetic():
    config = load_config(None, ["train.global_batch_size=8", "train.micro_batch_size=2"])
    assert check_config(config, world_size=2) == 2  # dp=2: 8 = 2 x 2 x 2
    config.model.tp = 2
    assert check_config(config, world_size=2) == 4  # dp=1
    config.train.global_batch_size = 6
    config.model.tp = 1
    with pytest.raises(ConfigError, match="multiple"):
        check_config(config, world_size=4)


def test_warmup_and_data_spec():
    config = load_config(None, ["train.steps=100", "optimizer.warmup_fraction=0.03"])
    assert warmup_steps(config) == 3
    assert parse_data_spec("dir/code:0.7") == ("dir/code", 0.7)
    assert parse_data_spec("dir/code") == ("dir/code", 1.0)


def test_optimizer_format_is_checked_before_the_run():
    assert load_config(None, []).checkpoint.optimizer_format == "dp_reshardable"  # Megatron-LM's default
    check_config(load_config(None, ["checkpoint.optimizer_format=fully_reshardable"]), world_size=1)
    with pytest.raises(ConfigError, match="optimizer_format 'model_space'.*dp_reshardable or fully_reshardable"):
        check_config(load_config(None, ["checkpoint.optimizer_format=model_space"]), world_size=1)


def test_async_writer_is_the_one_this_megatron_core_offers():
    """0.16: megatron's own writer; 0.19: NVRx's when importable, else megatron's ("mcore")."""
    import importlib.util

    from megatron.core import package_info

    from specialize.train.checkpointing import async_writer

    queue_class, arguments = async_writer()
    major, minor = (int(part) for part in package_info.__version__.split(".")[:2])
    if (major, minor) < (0, 19):
        assert arguments == {} and queue_class.__module__.startswith("megatron.core.dist_checkpointing")
    elif importlib.util.find_spec("nvidia_resiliency_ext") is None:
        assert arguments == {"async_strategy": "mcore"} and queue_class.__module__.startswith("megatron.core")
    else:
        assert arguments["async_strategy"] in ("nvrx", "mcore")


def test_long_context_settings_are_checked_before_the_run():
    from specialize.train.config import recompute_mode, recompute_settings

    config = load_config(None, ["model.cp=2", "train.seq_length=128", "train.global_batch_size=4", "train.micro_batch_size=2"])
    assert check_config(config, world_size=4) == 1  # dp = 4 / (tp 1 x pp 1 x cp 2) = 2
    with pytest.raises(ConfigError, match="not a multiple of tp\\*pp\\*cp = 1\\*1\\*2"):
        check_config(config, world_size=3)
    with pytest.raises(ConfigError, match="seq_length 102 must be a multiple of 2 x model.cp = 4"):
        check_config(load_config(None, ["model.cp=2", "train.seq_length=102"]), world_size=2)
    with pytest.raises(ConfigError, match="rotary_base -1.0: must be positive"):
        check_config(load_config(None, ["model.rotary_base=-1"]), world_size=1)
    # recompute: the three modes, and the true/false of configs written before them
    assert [recompute_mode(v) for v in (True, False, "selective", "FULL", "none")] == ["full", "none", "selective", "full", "none"]
    assert recompute_settings("selective") == {"recompute_granularity": "selective"}
    assert recompute_settings("full")["recompute_granularity"] == "full" and recompute_settings("none") == {}
    assert load_config(None, ["model.recompute=true"]).model.recompute == "True"
    with pytest.raises(ConfigError, match="model.recompute 'some'"):
        check_config(load_config(None, ["model.recompute=some"]), world_size=1)
