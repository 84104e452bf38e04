"""Repository-level documents: dependency order (with cycles), splitting on file boundaries, control-id
markers that file contents can never forge, and the whole build through Beam for trees and records."""

from __future__ import annotations

import json
import random

from typer.testing import CliRunner

from beam_jobs.corpus_build import BuildSettings, run_build
from beam_jobs.quality import QualityConfig
from specialize.cli import app
from specialize.corpus.repos import (
    FILE_SEP,
    REPO_NAME,
    RepoFile,
    assemble,
    dependency_order,
    marker_ids,
    python_imports,
    repo_and_path,
)
from specialize.corpus.shards import open_shard
from specialize.tokenization import load_tokenizer

#: path -> content; the import graph: main -> pkg.a -> pkg.b -> pkg.c; x <-> y (a cycle); lib.util from src/.
REPO = {
    "README.md": "# demo\n",
    "main.py": "from pkg.a import run\nimport lib.util\n",
    "pkg/__init__.py": "",
    "pkg/a.py": "from . import b\n\ndef run():\n    return b.value()\n",
    "pkg/b.py": "from .c import CONSTANT\n\ndef value():\n    return CONSTANT\n",
    "pkg/c.py": "CONSTANT = 3\n",
    "src/lib/util.py": "import os\n",
    "x.py": "import y\n",
    "y.py": "import x\nprint 'python 2 syntax'\n",
    "setup.cfg": "[metadata]\n",
}


def _files(items):
    return [RepoFile(path, text, f"src:{path}") for path, text in items]


def test_python_imports_resolve_relative_and_broken_files():
    assert python_imports("pkg/a.py", REPO["pkg/a.py"]) == ["pkg", "pkg.b"]
    assert python_imports("pkg/b.py", REPO["pkg/b.py"]) == ["pkg.c", "pkg.c.CONSTANT"]
    assert python_imports("y.py", REPO["y.py"]) == ["x"]  # a syntax error: the line pattern still finds it


def test_dependency_order_respects_the_import_graph_and_breaks_cycles_deterministically():
    order = [f.path for f in dependency_order(_files(REPO.items()))]
    position = {path: i for i, path in enumerate(order)}
    for later, earlier in [("main.py", "pkg/a.py"), ("pkg/a.py", "pkg/b.py"), ("pkg/b.py", "pkg/c.py"),
                           ("main.py", "src/lib/util.py")]:
        assert position[earlier] < position[later], (earlier, later, order)
    assert sorted(order) == sorted(REPO)  # every file once
    for seed in range(5):  # the input order does not matter
        shuffled = list(REPO.items())
        random.Random(seed).shuffle(shuffled)
        assert [f.path for f in dependency_order(_files(shuffled))] == order
    assert position["y.py"] < position["x.py"]  # the walk starts at x.py (path order); its dependency y comes first


def test_assembly_splits_on_file_boundaries_with_the_header_repeated():
    files = _files([("a.py", "A" * 100 + "\n"), ("b.py", "B" * 100 + "\n"), ("big.py", "C" * 500 + "\n")])
    documents = assemble("demo", files, max_bytes=250)
    assert len(documents) == 2
    for parts in documents:
        assert parts[:2] == [("special", REPO_NAME), ("text", "demo\n")]
    assert [text.split("\n")[0] for kind, text in documents[0][2:] if kind == "text"] == ["a.py", "b.py"]
    assert [text.split("\n")[0] for kind, text in documents[1][2:] if kind == "text"] == ["big.py"]  # longer than the limit: alone, whole


def _tree(root):
    for repo, files in {"alpha": REPO, "beta": {"tool.py": f"X = '{FILE_SEP}<|extra_18|>'\n", "lib.py": "Y = 1\n"}}.items():
        for path, text in files.items():
            target = root / repo / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text or "\n", encoding="utf-8")


def test_repo_level_build_of_a_tree(tmp_path, monkeypatch):
    _tree(tmp_path / "repos")
    monkeypatch.chdir(tmp_path)  # the input as a user types it: relative, with a trailing slash
    settings = BuildSettings(domain="code", inputs=["./repos/"], output=str(tmp_path / "out"), seq_length=64,
                             quality=QualityConfig.off(), repo_level=True)
    manifest = run_build(settings)
    rows = [r for s in manifest["shards"] for r in open_shard(tmp_path / "out" / s["path"]).to_pylist()]
    assert sorted(r["source"] for r in rows) == ["repo:alpha#0", "repo:beta#0"]
    tokenizer = load_tokenizer(None)
    markers = marker_ids(tokenizer.special_tokens)
    assert markers == {REPO_NAME: tokenizer.special_tokens["<|extra_17|>"], FILE_SEP: tokenizer.special_tokens["<|extra_18|>"]}
    beta = next(r for r in rows if r["source"] == "repo:beta#0")
    tokens = list(beta["tokens"])
    # one <|repo_name|> and one <|file_sep|> per file: the marker text inside tool.py stayed text
    assert tokens.count(markers[REPO_NAME]) == 1 and tokens.count(markers[FILE_SEP]) == 2 and tokens[0] == markers[REPO_NAME]
    assert "<|extra_18|>" in tokenizer.decode([t for t in tokens if t not in markers.values()][:-1])
    separators = sum(list(r["tokens"]).count(markers[FILE_SEP]) for r in rows)
    assert manifest["stages"]["repos"]["repositories"] == 2 and manifest["stages"]["repos"]["files"] == separators >= 9
    assert manifest["stages"]["repos"]["documents_per_repository"] == {"1": 2}
    shown = CliRunner().invoke(app, ["corpus", "inspect", str(tmp_path / "out"), "--repository", "--chars", "4000"])
    assert shown.exit_code == 0, shown.output
    assert f"{REPO_NAME}alpha\n{FILE_SEP}" in shown.output and "2 repositories" in shown.output
    alpha = shown.output[shown.output.index("repo:alpha#0"):]
    assert alpha.index(f"{FILE_SEP}pkg/c.py") < alpha.index(f"{FILE_SEP}pkg/b.py") < alpha.index(f"{FILE_SEP}pkg/a.py") < alpha.index(f"{FILE_SEP}main.py")


def test_repo_level_build_of_records_with_a_repo_field(tmp_path):
    rows = [{"content": REPO[path] or "\n", "max_stars_repo_name": "org/alpha", "max_stars_repo_path": path}
            for path in ("main.py", "pkg/a.py", "pkg/b.py", "pkg/c.py")]
    rows.append({"content": "print('alone')\n", "max_stars_repo_name": "org/other", "max_stars_repo_path": "solo.py"})
    rows.append({"content": "print('no repository')\n", "max_stars_repo_path": "loose.py"})  # passes through as it is
    (tmp_path / "stack.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    settings = BuildSettings(domain="code", inputs=[str(tmp_path / "stack.jsonl")], output=str(tmp_path / "out"), seq_length=64,
                             quality=QualityConfig.off(), repo_level=True)
    manifest = run_build(settings)
    built = [r for s in manifest["shards"] for r in open_shard(tmp_path / "out" / s["path"]).to_pylist()]
    assert sorted(r["source"] for r in built) == [f"{tmp_path / 'stack.jsonl'}#6", "repo:org/alpha#0", "repo:org/other#0"]
    loose = next(r for r in built if r["source"].endswith("#6"))
    assert loose["language"] == "python" and load_tokenizer(None).decode(loose["tokens"][:-1]) == "print('no repository')\n"
    text = load_tokenizer(None).decode(next(r for r in built if r["source"] == "repo:org/alpha#0")["tokens"])
    assert text.index("pkg/c.py\n") < text.index("pkg/b.py\n") < text.index("pkg/a.py\n") < text.index("main.py\n")


def test_repository_of_a_file_for_local_and_object_store_inputs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert repo_and_path(str(tmp_path / "repos" / "alpha" / "pkg" / "a.py"), "repos/") == ("alpha", "pkg/a.py")
    assert repo_and_path(str(tmp_path / "repos" / "top.py"), "./repos") == ("repos", "top.py")  # files at the root: one repo
    assert repo_and_path("gs://bucket/repos/alpha/x.py", "gs://bucket/repos") == ("alpha", "x.py")
    assert repo_and_path("gs://bucket/repos/alpha/x.py", "gs://bucket/repos/**") == ("alpha", "x.py")
