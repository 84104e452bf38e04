"""``--from``: one resolver, the same answer for every command, and no import cycles in the model code."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest

from specialize.convert import hf_to_megatron
from specialize.model.source import megatron_checkpoint, resolve


@pytest.fixture(scope="module")
def run_directory(hf_tied, tmp_path_factory):
    """A run directory as ``specialize train`` leaves it: two steps, ``latest`` naming the newer."""
    run = tmp_path_factory.mktemp("run")
    converted = run / "converted"
    hf_to_megatron(hf_tied[0], converted)
    for step in (1, 2):
        target = run / "checkpoints" / f"step-00000{step}"
        shutil.copytree(converted, target / "model")
        (target / "state.json").write_text(json.dumps({"step": step}))
    (run / "checkpoints" / "latest").write_text("step-000002")
    return run


def test_every_form_resolves_to_its_kind(run_directory, hf_tied, tmp_path):
    newest = run_directory / "checkpoints" / "step-000002" / "model"
    run = resolve(run_directory)
    assert (run.kind, run.checkpoint, run.run_directory) == ("run", newest, run_directory)
    step = resolve(run_directory / "checkpoints" / "step-000001")
    assert (step.kind, step.checkpoint.parent.name, step.run_directory) == ("step", "step-000001", run_directory.resolve())
    model = resolve(newest)
    assert (model.kind, model.checkpoint) == ("checkpoint", newest)
    assert Path(model.tokenizer).name == "tokenizer" and Path(model.tokenizer).is_dir()
    hf = resolve(hf_tied[0])
    assert (hf.kind, hf.hf_directory, hf.needs_conversion, hf.preset.family) == ("hf", hf_tied[0], True, "qwen2")
    tiny = resolve("qwen-tiny")
    assert (tiny.kind, tiny.random_init, tiny.checkpoint) == ("preset", True, None)
    hub = resolve("qwen3-8b")
    assert (hub.kind, hub.hub_repo, hub.preset.family) == ("hub", "Qwen/Qwen3-8B-Base", "qwen3")
    assert resolve("someone/their-qwen").kind == "hub" and resolve("someone/their-qwen").preset is None
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a model: no specialize.json"):
        resolve(tmp_path / "empty")
    (tmp_path / "started" / "checkpoints").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="run directory without a complete checkpoint"):
        resolve(tmp_path / "started")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(NotADirectoryError, match="file.txt: expected a directory"):
        resolve(tmp_path / "file.txt")


def test_commands_agree_on_a_run_directory(run_directory, tmp_path):
    """train, evaluate (runtime resolver), sft, chat, eval and convert all take a run's newest checkpoint."""
    from specialize.convert import megatron_to_hf
    from specialize.eval.model_source import resolve_eval_model
    from specialize.sft.run import resolve_source
    from specialize.train.starting_point import resolve_model_source

    newest = run_directory / "checkpoints" / "step-000002" / "model"
    preset, checkpoint, tokenizer = resolve_model_source(str(run_directory), tmp_path / "out", 1, 1)
    assert checkpoint == newest and preset.family == "qwen2" and Path(tokenizer).is_dir()
    assert resolve_source(str(run_directory)) == str(newest)
    assert megatron_checkpoint(run_directory).checkpoint == newest
    exported = megatron_to_hf(run_directory, tmp_path / "hf")
    assert json.loads((exported / "config.json").read_text())["architectures"] == ["Qwen2ForCausalLM"]
    evaluated = resolve_eval_model(str(run_directory), tmp_path / "eval")
    assert str(newest) in evaluated.origin and (evaluated.directory / "config.json").is_file()


def _imports(path: Path, package: str) -> list[tuple[str, list[str]]]:
    """(module, imported names) of every specialize import in a file, deferred ones (inside functions)
    included, ``if TYPE_CHECKING:`` blocks excluded: a deferred import still ties two modules together."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                 for n in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(package):
            found.append((node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names if alias.name.startswith(package))
    return found


def test_model_modules_import_without_cycles():
    root = Path(__file__).resolve().parents[2]
    modules = {}
    for path in (root / "specialize" / "model").rglob("*.py"):
        name = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = _imports(path, "specialize.model")
    for name, imports in modules.items():  # ``from pkg import sub`` is an edge to pkg.sub, else to pkg
        targets = set()
        for module, names in imports:
            submodules = [f"{module}.{n}" for n in names if f"{module}.{n}" in modules]
            targets.update(submodules or [module])
        modules[name] = targets - {name}
    visiting, done = [], set()

    def visit(module: str) -> None:
        if module in done or module not in modules:
            return
        assert module not in visiting, f"import cycle: {' -> '.join(visiting[visiting.index(module):] + [module])}"
        visiting.append(module)
        for target in modules[module]:
            visit(target)
        visiting.pop()
        done.add(module)

    for module in modules:
        visit(module)
    assert "specialize.model.presets" in done and "specialize.model.checkpoint" in done
