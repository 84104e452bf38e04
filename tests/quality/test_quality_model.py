"""The trainable quality scorer, its pickle-free file format, the `quality` CLI, and the Beam stages."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from typer.testing import CliRunner

from beam_jobs.quality import QualityScore, Upsample
from specialize.cli import app
from specialize.corpus.document import Document
from specialize.quality.model import QualityModel, train_quality_model
from specialize.quality.upsample import copies_of, parse_weights
from tests.quality.beam_helpers import run_stage
from tests.quality.planted import clean_code


def _bad(seed: int) -> str:
    rng = np.random.default_rng(seed)
    return "\n".join("x" + "".join(rng.choice(list("0123456789;=+"), 30)) for _ in range(20))


@pytest.fixture(scope="module")
def labelled():
    good = [d.text for d in clean_code()]
    bad = [_bad(i) for i in range(len(good))]
    return good, bad


def test_train_separates_and_round_trips_without_pickle(labelled, tmp_path):
    good, bad = labelled
    model, report = train_quality_model(good[::2], bad[::2])
    assert report.validation_auc is not None and report.validation_auc > 0.9
    held_good, held_bad = model.score(good[1::2]), model.score(bad[1::2])
    assert held_good.min() > held_bad.max()
    path = tmp_path / "quality-model"
    model.save(path)
    assert "header.npy" in zipfile.ZipFile(path).namelist()
    with np.load(path, allow_pickle=False) as data:  # loads without pickle: no code in the file
        assert json.loads(str(data["header"]))["format"] == "specialize-quality-model-v1"
    np.testing.assert_allclose(QualityModel.load(path).score(good[:3]), model.score(good[:3]), rtol=1e-6)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        QualityModel.load(tmp_path / "missing.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="junk.npz: not a specialize quality model"):
        QualityModel.load(junk)
    with pytest.raises(ValueError, match="at least 2 positive"):
        train_quality_model(["a"], ["b", "c"])


def test_cli_train_and_score(labelled, tmp_path):
    good, bad = labelled
    (tmp_path / "good").mkdir()
    for i, text in enumerate(good):
        (tmp_path / "good" / f"{i}.py").write_text(text)
    (tmp_path / "bad.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in bad))
    out = tmp_path / "models" / "q.npz"
    runner = CliRunner()
    result = runner.invoke(app, ["quality", "train", "--positive", str(tmp_path / "good"),
                                 "--negative", str(tmp_path / "bad.jsonl"), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert f"trained on {len(good)} positive and {len(bad)} negative" in result.output and out.is_file()
    result = runner.invoke(app, ["quality", "score", "--model", str(out), str(tmp_path / "bad.jsonl")])
    assert result.exit_code == 0 and len(result.output.strip().splitlines()) == len(bad)
    result = runner.invoke(app, ["quality", "train", "--positive", str(tmp_path / "nope"),
                                 "--negative", str(tmp_path / "bad.jsonl"), "--output", str(out)])
    flat = "".join(c for c in result.output if c.isalnum() or c in ":")  # the message is boxed and wrapped
    assert result.exit_code == 2 and "nope:nosuchfileorfolder" in flat


def test_quality_stage_scores_and_drops(labelled, tmp_path):
    good, bad = labelled
    model, _ = train_quality_model(good, bad)
    path = tmp_path / "m.npz"
    model.save(path)
    docs = [Document(good[0], "good.py", "code", "python"), Document(bad[0], "bad.py", "code", "python")]
    kept, rejected = run_stage(QualityScore(str(path), min_quality=0.5), docs)
    assert [d.source for d in kept] == ["good.py"] and kept[0].meta["quality"] > 0.5
    assert [(r.source, r.stage, r.reason) for r in rejected] == [("bad.py", "quality_model", "low_quality_score")]


def test_upsample_weights(tmp_path):
    assert parse_weights(["data/a=2", "b=0.5"]) == {"data/a": 2.0, "b": 0.5}
    with pytest.raises(ValueError, match="INPUT=WEIGHT"):
        parse_weights(["a=-1"])
    doc = Document("text", "s", "code", "python", input_name="a")
    assert [d.source for d in copies_of(doc, 3)] == ["s", "s#copy1", "s#copy2"]
    half = [copies_of(Document("t", f"doc{i}", "code", "python"), 0.5) for i in range(400)]
    assert 150 < sum(len(c) for c in half) < 250
    assert half == [copies_of(Document("t", f"doc{i}", "code", "python"), 0.5) for i in range(400)]  # deterministic
    docs = [Document(f"t{i}", f"a{i}", "code", "python", input_name="A") for i in range(10)]
    docs += [Document(f"u{i}", f"b{i}", "code", "python", input_name="B") for i in range(200)]
    kept, rejected = run_stage(Upsample({"A": 2, "B": 0.25}, stats_dir=str(tmp_path)), docs)
    stats = json.loads((tmp_path / "stage-upsample.json").read_text())
    assert stats["inputs"]["A"] == {"weight": 2, "documents_in": 10, "documents_out": 20, "bytes_out": 40}
    assert stats["inputs"]["B"]["documents_out"] == 200 - len(rejected) == len(kept) - 20
    assert {r.reason for r in rejected} == {"sampled_out"}
