"""``specialize corpus build|stats|verify`` through the CLI, as a user runs them."""

from __future__ import annotations

from typer.testing import CliRunner

from specialize.cli import app


def test_build_stats_verify(planted, tmp_path):
    runner = CliRunner()
    out = tmp_path / "out"
    result = runner.invoke(app, ["corpus", "build", "--domain", "code", "--input", str(planted / "repo"),
                                 "--output", str(out), "--workers", "1", "--no-quality"])
    assert result.exit_code == 0, result.output
    assert "python" in result.output and "non_utf8" in result.output
    result = runner.invoke(app, ["corpus", "stats", str(out), "--histogram", str(tmp_path / "h.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "h.png").read_bytes()[:4] == b"\x89PNG"
    result = runner.invoke(app, ["corpus", "verify", str(out)])
    assert result.exit_code == 0 and "shards OK" in result.output
    shard = next(out.glob("shard-*.arrow"))
    shard.write_bytes(shard.read_bytes()[:-10])
    result = runner.invoke(app, ["corpus", "verify", str(out)])
    assert result.exit_code == 1


def test_bad_arguments_are_clear(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["corpus", "build", "--domain", "code", "--input", str(tmp_path / "missing")])
    assert result.exit_code != 0
    assert "does not exist" in str(result.exception) or "does not exist" in result.output
    result = runner.invoke(app, ["corpus", "stats", str(tmp_path)])
    assert "no manifest" in str(result.exception)
