"""The planted text corpus through the whole build (language -> Gopher/C4 rules -> exact and near dedup ->
decontamination -> tokenize): every stage removes what was planted for it and nothing else."""

from __future__ import annotations

import json

from beam_jobs.corpus_build import BuildSettings, run_build
from beam_jobs.quality import QualityConfig
from specialize.corpus.shards import open_shard
from tests.quality.test_text_rules import GOOD_EN, GOOD_OTHER, PLANTED

#: A held-out benchmark item that one planted page quotes word for word (the rest of the page is clean).
BENCHMARK_ITEM = ("A train leaves the station at nine in the morning travelling at sixty miles per hour while a second "
                  "train leaves two hours later at eighty miles per hour on the same track")


QUOTING_PAGE = (
    "Our maths club meets every Thursday after school in the library. Last week we worked through a set of classic "
    "puzzles that our teacher found in an old textbook, and the one that caused the longest argument was about two "
    "trains. " + BENCHMARK_ITEM + ". Most of us solved it by drawing a table of positions hour by hour, but two "
    "students wrote an equation instead and finished much faster. Next week we will try puzzles about ages and "
    "mixtures, and everyone is welcome to bring a problem they like.")


def _planted() -> list[tuple[str, str, str]]:
    """(name, expected stage or "kept", text). Junk is "junk": the language stage or the rules may take it
    first (gibberish has no language); other languages are "language"; copies are for the dedup stages."""
    docs = [(name, "kept", text) for name, text in GOOD_EN.items()]
    docs += [(name, "kept" if lang in ("en", "zh") else "language", text) for name, (lang, text) in GOOD_OTHER.items()]
    docs += [(name, "junk", text) for name, (_, _, text) in PLANTED.items()]
    first, second = list(GOOD_EN.values())[:2]
    docs.append(("exact_copy", "exact_dedup", first))
    words = second.split(" ")
    near = " ".join(word.upper() if i % 97 == 5 else word for i, word in enumerate(words))  # a few words changed
    docs.append(("near_copy", "near_dedup", near + " Edited."))
    docs.append(("quotes_benchmark", "decontaminate", QUOTING_PAGE))
    return docs


def test_planted_text_corpus_through_every_stage(tmp_path):
    planted = _planted()
    dump = tmp_path / "planted.jsonl"
    dump.write_text("".join(json.dumps({"text": text}) + "\n" for _, _, text in planted), encoding="utf-8")
    bench = tmp_path / "bench.jsonl"
    bench.write_text(json.dumps({"task_id": "puzzle/1", "text": BENCHMARK_ITEM}) + "\n")
    manifest = run_build(BuildSettings(domain="text", inputs=[str(dump)], output=str(tmp_path / "out"), seq_length=64,
                                       quality=QualityConfig(decontaminate=[f"puzzle={bench}"])))
    from specialize.quality.inspect import removed_samples

    removed = {}
    for sample in removed_samples(str(tmp_path / "out")):
        removed[int(sample["source"].rsplit("#", 1)[1])] = sample["stage"]
    counts = {stage: sum(reason["documents"] for reason in reasons.values()) for stage, reasons in manifest["removed"].items()}
    kept_rows = [r for s in manifest["shards"] for r in open_shard(tmp_path / "out" / s["path"]).to_pylist()]
    kept = {int(r["source"].rsplit("#", 1)[1]) for r in kept_rows}
    lines = {index: (name, expected) for index, (name, expected, _) in enumerate(planted, start=1)}  # JSONL lines are 1-based
    assert sum(counts.values()) + len(kept) == len(planted)
    for index, (name, expected) in lines.items():
        if expected == "kept":
            assert index in kept, f"{name} was removed by {removed.get(index)}"
        elif expected == "junk":
            assert index not in kept and (index not in removed or removed[index] in ("language", "rules")), name
        elif index in removed:
            assert removed[index] == expected, f"{name}: removed by {removed[index]}, planted for {expected}"
        else:
            assert index not in kept, f"{name} was kept, planted for {expected}"
    # per stage: precision and recall on the planted set (junk counts for language or rules)
    expected_counts = {"language": sum(1 for _, e, _ in planted if e == "language"),
                       "exact_dedup": 1, "near_dedup": 1, "decontaminate": 1}
    for stage, count in expected_counts.items():
        assert counts.get(stage, 0) - (stage == "language") * sum(
            1 for i, (_, e) in lines.items() if e == "junk" and removed.get(i) == "language") == count, stage
    junk = sum(1 for _, e, _ in planted if e == "junk")
    assert counts.get("rules", 0) + counts.get("language", 0) - expected_counts["language"] == junk
    languages = {r["language"] for r in kept_rows}
    assert languages == {"en", "zh"}
