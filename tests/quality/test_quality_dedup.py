"""MinHash, connected components and the Beam dedup stages, on planted duplicates."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from beam_jobs.dedup import ExactDedup, NearDedup, NearDedupSettings
from specialize.corpus.document import Document
from specialize.dedup.components import components_union_find, large_star, orient, small_star, star_violation
from specialize.dedup.exact import exact_key
from specialize.dedup.minhash import MinHashConfig, MinHasher, estimated_jaccard, jaccard, word_hashes
from specialize.dedup.packed import band_hashes, exact_duplicates, near_duplicates, pack, ragged, unpack
from tests.quality.beam_helpers import run_stage


def test_word_hashes_ignore_case_and_punctuation_but_not_words():
    assert np.array_equal(word_hashes("Hello, WORLD. (x_1)"), word_hashes("hello world\n\tx_1"))
    assert word_hashes("9x - 28 = -91").size == 6  # operators are tokens: signs are not punctuation
    assert not np.array_equal(word_hashes("a < b"), word_hashes("a > b"))
    assert not np.array_equal(word_hashes("hello world"), word_hashes("hello word"))
    assert word_hashes("ab")[0] != word_hashes("ab\u00e9")[0]  # non-ASCII bytes are word bytes
    assert word_hashes("  ,;  ").size == 0


def test_a_text_hashed_twice_reuses_its_prefix_and_gets_the_same_hashes():
    from specialize.dedup.minhash import whitespace_token_hashes

    texts = ["Hello, WORLD. (x_1)", "a  b\tc", "", "é 9x - 28"]
    fresh = [(word_hashes(t.encode().decode()), whitespace_token_hashes(t.encode().decode())) for t in texts]  # other objects
    for text, (words, tokens) in zip(texts, fresh):
        assert np.array_equal(word_hashes(text), words) and np.array_equal(whitespace_token_hashes(text), tokens)
        assert np.array_equal(whitespace_token_hashes(text), tokens) and np.array_equal(word_hashes(text), words)
    assert not np.array_equal(word_hashes("x y"), word_hashes("x z"))  # another text: not the last one's prefix


def _splitmix(value: int) -> int:
    mask = (1 << 64) - 1
    value ^= value >> 30
    value = (value * 0xBF58476D1CE4E5B9) & mask
    value ^= value >> 27
    value = (value * 0x94D049BB133111EB) & mask
    return value ^ (value >> 31)


def _one_permutation_signature(hasher: MinHasher, shingles) -> list[int]:
    """The signature by its definition, one shingle and one bin at a time (no numpy)."""
    bins = hasher.config.num_perm
    best: dict[int, int] = {}
    for shingle in shingles.tolist():
        mixed = _splitmix(shingle ^ int(hasher._mixer))
        slot = ((mixed >> 32) * bins) >> 32
        best[slot] = min(best.get(slot, 1 << 32), mixed & 0xFFFFFFFF)
    signature = []
    for slot in range(bins):
        if slot not in best:  # an empty bin: the first non-empty bin on its probe sequence
            slot = next(int(p) for p in hasher._probes[slot] if int(p) in best)
        signature.append(best[slot])
    return signature


@pytest.mark.parametrize("text", ["the quick brown fox jumps over the lazy dog " * 30 + "and runs away",  # every bin filled
                                  "short text of a few words only"])  # most bins empty: densified
def test_signature_equals_its_one_permutation_definition(text):
    hasher = MinHasher(MinHashConfig(ngram=3, bands=4, rows=2) if len(text) > 100 else MinHashConfig())
    shingles = hasher.shingles(text)
    assert hasher.signature_of_shingles(shingles).tolist() == _one_permutation_signature(hasher, shingles)


def test_one_permutation_signature_agrees_with_jaccard_on_random_sets():
    """Bins agree with probability J (optimal densification keeps it so for small sets too)."""
    rng = np.random.default_rng(0)
    hasher, errors = MinHasher(), []
    for size in (3, 10, 50, 300, 3000) * 30:
        base = rng.integers(0, 2**63, size=size, dtype=np.uint64)
        kept = int(size * rng.uniform(0.3, 1.0))
        other = np.concatenate((base[:kept], rng.integers(0, 2**63, size=size - kept, dtype=np.uint64)))
        a, b = np.unique(base), np.unique(other)
        errors.append(estimated_jaccard(hasher.signature_of_shingles(a), hasher.signature_of_shingles(b)) - jaccard(a, b))
    assert abs(np.mean(errors)) < 0.01 and np.sqrt(np.mean(np.square(errors))) < 0.06


def test_signature_tracks_jaccard():
    rng = random.Random(0)
    vocabulary = [f"w{i}" for i in range(2000)]
    base = [rng.choice(vocabulary) for _ in range(3000)]
    edited = list(base)
    for i in rng.sample(range(3000), 150):  # 5% of the words replaced
        edited[i] = rng.choice(vocabulary)
    hasher = MinHasher(MinHashConfig(bands=32, rows=8))
    a, b = hasher.shingles(" ".join(base)), hasher.shingles(" ".join(edited))
    true = jaccard(a, b)
    assert 0.5 < true < 0.9
    assert abs(estimated_jaccard(hasher.signature_of_shingles(a), hasher.signature_of_shingles(b)) - true) < 0.08
    assert hasher.signature("") is None


def _converge(edges, rounds=30):
    """Drive large-star / small-star in memory the way the Beam transform does."""
    for _ in range(rounds):
        neighbours = {}
        for a, b in edges:
            neighbours.setdefault(a, []).append(b)
            neighbours.setdefault(b, []).append(a)
        edges = {e for node, ns in neighbours.items() for e in large_star(node, ns)}
        smaller = {}
        for a, b in map(orient, edges):
            smaller.setdefault(a, []).append(b)
        edges = {e for node, ns in smaller.items() for e in small_star(node, ns)}
        neighbours = {}
        for a, b in edges:
            neighbours.setdefault(a, set()).add(b)
            neighbours.setdefault(b, set()).add(a)
        if not any(star_violation(n, ns) for n, ns in neighbours.items()):
            return {a: b for a, b in edges}
    raise AssertionError("did not converge")


@pytest.mark.parametrize("seed", range(5))
def test_large_small_star_matches_union_find(seed):
    rng = random.Random(seed)
    nodes = [f"doc{i:04d}" for i in range(300)]
    edges = {tuple(rng.sample(nodes, 2)) for _ in range(250)}
    # a long chain too: the worst case for plain label propagation
    edges |= {(nodes[i], nodes[i + 1]) for i in range(100, 160)}
    truth = components_union_find(edges)
    leaves = _converge(edges)
    for node, root in truth.items():
        assert leaves.get(node, node) == root


def _doc(text: str, source: str) -> Document:
    return Document(text=text, source=source, domain="code", language="python")


def _program(seed: int, lines: int = 60) -> str:
    rng = random.Random(seed)
    names = [f"var_{seed}_{i}" for i in range(12)]
    body = []
    for i in range(lines):
        a, b = rng.sample(names, 2)
        body.append(f"    {a} = compute_{rng.randint(0, 99)}({b}, {rng.randint(0, 1000)})  # step {i}")
    return f"def function_{seed}(argument):\n" + "\n".join(body) + "\n    return argument\n"


def test_exact_dedup_keeps_smallest_source_whitespace_insensitive():
    text = _program(1)
    docs = [_doc(text, "b.py"), _doc(text.replace("    ", "\t") + "\n\n", "a.py"), _doc(_program(2), "c.py")]
    kept, rejected = run_stage(ExactDedup(), docs)
    assert [d.source for d in kept] == ["a.py", "c.py"]
    assert [(r.source, r.stage, r.reason) for r in rejected] == [("b.py", "exact_dedup", "exact_duplicate")]
    assert exact_key("a  b\n") == exact_key("a b")


@pytest.mark.parametrize("in_one_place", [False, True], ids=["star", "union_find"])
def test_near_dedup_clusters_planted_copies_and_keeps_the_smallest(tmp_path, in_one_place):
    original = _program(7, lines=80)
    # Each copy is at Jaccard ~0.95 to the original, where LSH finds a pair with probability > 0.9999
    # whatever the hash draw (a copy near the 0.72 threshold would be found only 80% of the time).
    renamed = original.replace("var_7_3", "renamed_counter", 3)  # renamed identifier (first uses)
    lines = original.split("\n")
    edited = "\n".join(lines[:20] + ["    extra = 1", "    extra += 2"] + lines[22:])  # edited lines
    recommented = original.replace("# step 4\n", "# fourth step, explained\n").replace("# step 9\n", "# ninth\n")
    docs = [
        _doc(original, "src/m.py"),
        _doc(renamed, "src/z_renamed.py"),
        _doc(edited, "src/b_edited.py"),
        _doc(recommented, "src/a_comments.py"),
        *[_doc(_program(100 + i, lines=80), f"other/{i}.py") for i in range(12)],
        _doc("", "empty.py"),
    ]
    stats_dir = tmp_path / "_stats"
    kept, rejected = run_stage(NearDedup(NearDedupSettings(), stats_dir=str(stats_dir), in_one_place=in_one_place), docs)
    assert {r.source for r in rejected} == {"src/m.py", "src/z_renamed.py", "src/b_edited.py"}
    assert {r.detail for r in rejected} == {"cluster survivor: src/a_comments.py"}
    assert len(kept) == len(docs) - 3 and "src/a_comments.py" in {d.source for d in kept}
    stats = json.loads((stats_dir / "stage-near_dedup.json").read_text())
    assert stats["converged"] and stats["clusters"] == 1 and stats["clustered_documents"] == 4
    # same input in another order: the same survivor
    kept_again, _ = run_stage(NearDedup(NearDedupSettings(rounds=2), in_one_place=in_one_place), list(reversed(docs)))
    assert [d.source for d in kept_again] == [d.source for d in kept]


@pytest.mark.parametrize("in_one_place", [False, True], ids=["star", "union_find"])
def test_near_dedup_verification_rejects_low_jaccard_candidates(in_one_place):
    # One band of one row: a pair at Jaccard 0.5 collides for half the seeds; take the first that
    # makes this pair a candidate, then the Jaccard check must keep the two apart.
    words = "alpha beta gamma delta epsilon zeta eta theta".split()
    docs = [_doc(" ".join(words[:6]), "a"), _doc(" ".join(words[2:]), "b")]
    minhash = next(config for config in (MinHashConfig(ngram=1, bands=1, rows=1, seed=seed) for seed in range(1, 64))
                   if MinHasher(config).signature(docs[0].text)[0] == MinHasher(config).signature(docs[1].text)[0])
    loose = NearDedupSettings(minhash=minhash, verify_threshold=0.8, rounds=1)
    kept, rejected = run_stage(NearDedup(loose, in_one_place=in_one_place), docs)
    assert rejected == [] and len(kept) == 2
    unchecked = NearDedupSettings(minhash=minhash, verify_threshold=None, rounds=1)
    kept, rejected = run_stage(NearDedup(unchecked, in_one_place=in_one_place), docs)
    assert [r.source for r in rejected] == ["b"]


def _edited_families(rng: random.Random, families: int, first_seed: int, lines: int, most_copies: int) -> list:
    """Families of programs, each copy one edited line away from the previous one: chains, not just stars."""
    docs = []
    for family in range(families):
        text = _program(first_seed + family, lines=lines)
        for copy in range(rng.randint(1, most_copies)):
            body = text.split("\n")
            body[rng.randrange(len(body))] = f"    edited_{copy} = {rng.randint(0, 9)}"
            text = "\n".join(body)
            docs.append(_doc(text, f"f{family:02d}/{rng.randint(0, 10**6):07d}.py"))
    return docs


def test_packed_search_equals_the_star_path_on_random_near_duplicates(tmp_path):
    """Many clusters, chains of edits and unrelated documents: both component searches remove the same documents,
    name the same survivors and count the same candidate pairs and clusters."""
    docs = _edited_families(random.Random(5), families=15, first_seed=200, lines=40, most_copies=4)
    results = {}
    for in_one_place in (False, True):
        stats_dir = tmp_path / str(in_one_place)
        kept, rejected = run_stage(NearDedup(NearDedupSettings(), stats_dir=str(stats_dir), in_one_place=in_one_place), docs)
        stats = json.loads((stats_dir / "stage-near_dedup.json").read_text())
        results[in_one_place] = (sorted(d.source for d in kept), sorted((r.source, r.detail) for r in rejected),
                                 {k: stats[k] for k in ("candidate_pairs", "clusters", "clustered_documents")})
    assert results[True] == results[False]
    assert results[True][2]["clusters"] > 5


def test_packed_blobs_round_trip_sources_and_arrays():
    sources = ["a.py", "dump.jsonl#12", "数学/题.md", ""]
    values, ends = ragged([np.array([3, 1]), np.array([], dtype=np.uint32), np.array([7]), np.array([9, 9, 9])], np.uint32)
    batch = unpack(pack(sources, bands=np.arange(8, dtype=np.uint64).reshape(4, 2), sketch=values, sketch_ends=ends))
    assert batch.sources == sources and len(batch) == 4
    assert batch.arrays["bands"].tolist() == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert ends.tolist() == [2, 2, 3, 6] and batch.arrays["sketch"].tolist() == [3, 1, 7, 9, 9, 9]
    assert unpack(pack([])).sources == []


def test_band_hashes_depend_on_every_row_and_on_nothing_else():
    signatures = np.array([[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 5], [2, 1, 3, 4]], dtype=np.uint32)
    hashes = band_hashes(signatures, bands=2, rows=2)
    assert hashes.shape == (4, 2) and hashes.dtype == np.uint64
    assert hashes[0].tolist() == hashes[1].tolist()
    assert hashes[2, 0] == hashes[0, 0] and hashes[2, 1] != hashes[0, 1]
    assert hashes[3, 0] != hashes[0, 0]  # rows in another order: another band
    assert hashes[0, 0] != hashes[0, 1] or signatures[0, :2].tolist() == signatures[0, 2:].tolist()


def _exact_blob(pairs):
    digests = b"".join(exact_key(text) for text, _ in pairs)
    return pack([s for _, s in pairs], hash=np.frombuffer(digests, dtype="<u8").reshape(-1, 2).astype(np.uint64))


def test_exact_search_on_blobs_keeps_the_smallest_source_across_blobs():
    blobs = [_exact_blob([("x = 1", "b.py"), ("y = 2", "c.py")]), _exact_blob([("x  =  1", "a.py"), ("y = 2", "d.py")]),
             _exact_blob([("z", "e.py"), ("x = 1", "b.py")])]  # b.py twice (a retried bundle): counted once
    assert sorted(exact_duplicates(blobs)) == [("b.py", "a.py"), ("d.py", "c.py")]
    assert list(exact_duplicates([])) == []


def test_near_search_on_blobs_links_shared_bands_and_verifies_sketches():
    def blob(rows):  # rows: (source, band hashes, sketch)
        values, ends = ragged([np.array(sketch, dtype=np.uint32) for _, _, sketch in rows], np.uint32)
        return pack([s for s, _, _ in rows], bands=np.array([b for _, b, _ in rows], dtype=np.uint64),
                     sketch=values, sketch_ends=ends)

    same = [1, 2, 3, 4]
    blobs = [blob([("c", [10, 20], same), ("a", [11, 20], same)]),
             blob([("b", [10, 99], same), ("z", [12, 21], [5, 6, 7, 8]), ("y", [12, 22], [5, 6, 7, 9])])]
    found = near_duplicates(blobs, verify_threshold=0.7)
    # bands: c-a share band 1, c-b band 0 (centre b: the smaller), z-y band 0; y and z share 3 of 5 shingles
    assert found.leaves == [("b", "a"), ("c", "a")]
    assert (found.candidate_pairs, found.rejected_by_jaccard, found.clusters, found.clustered_documents) == (3, 1, 1, 3)
    trusted = near_duplicates(blobs, verify_threshold=None)
    assert trusted.leaves == [("b", "a"), ("c", "a"), ("z", "y")] and trusted.clusters == 2
    assert near_duplicates([], 0.7).leaves == []


@pytest.mark.parametrize("batch_documents, spilled", [(1, False), (3, True)], ids=["in-pipeline", "spilled"])
def test_packed_dedup_stages_equal_the_element_wise_ones_over_many_blobs(monkeypatch, tmp_path, batch_documents, spilled):
    """Blobs cut every few documents (as a large bundle is), travelling in the pipeline or as files of
    a spill directory: the same removals as the shuffles make."""
    import beam_jobs.dedup

    docs = _edited_families(random.Random(11), families=6, first_seed=300, lines=30, most_copies=3)
    docs += [_doc(docs[0].text, "zz_exact_copy.py"), _doc("   ", "blank.py")]
    spill_dir = str(tmp_path) if spilled else None
    stages = (("exact", lambda one: ExactDedup(in_one_place=one, spill_dir=spill_dir if one else None)),
              ("near", lambda one: NearDedup(in_one_place=one, spill_dir=spill_dir if one else None)))
    expected = {stage: run_stage(make(False), docs) for stage, make in stages}
    monkeypatch.setattr(beam_jobs.dedup, "PACKED_BATCH_DOCUMENTS", batch_documents)
    for stage, make in stages:
        kept, rejected = run_stage(make(True), docs)
        want_kept, want_rejected = expected[stage]
        assert [d.source for d in kept] == [d.source for d in want_kept]
        assert [(r.source, r.reason, r.detail) for r in rejected] == [(r.source, r.reason, r.detail) for r in want_rejected]
        assert rejected, stage
    if spilled:  # one file per blob of both stages, and nothing else
        assert len(list(tmp_path.glob("*.signals"))) > len(docs) // batch_documents and not list(tmp_path.glob("*.tmp"))


def test_settings_from_profile_reject_unknown_keys():
    settings = NearDedupSettings.from_dict({"ngram": 3, "bands": 20, "rows": 5, "verify_threshold": None})
    assert settings.minhash.num_perm == 100 and settings.verify_threshold is None
    with pytest.raises(ValueError, match="unknown near_dedup setting"):
        NearDedupSettings.from_dict({"band": 3})
