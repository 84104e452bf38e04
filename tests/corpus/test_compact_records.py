"""Compact pickles of the per-document and per-file records that every shuffle and the shard plan carry."""

from __future__ import annotations

import pickle

from apache_beam.coders import registry

from specialize.corpus.document import Document, DocumentKey


def test_keys_round_trip_through_pickle_and_beams_coder_whatever_repeats():
    tree_file = Document("x = 1\n", "repo/a.py", "code", "python", "repo", file="repo/a.py").key()
    dump_record = DocumentKey("d.jsonl#5", "d.jsonl#5", "d.jsonl", 5, "text", "en", "d.jsonl", 9, {"quality": 0.5}, 1234)
    upsampled = DocumentKey("d.jsonl#5@copy1", "d.jsonl#5", "d.jsonl", 5, "text", "en", "d.jsonl", 9, {}, None)
    coder = registry.get_coder(object)  # what an untyped PCollection of keys uses: pickle for the key
    for key in (tree_file, dump_record, upsampled):
        assert pickle.loads(pickle.dumps(key)) == key
        assert coder.decode(coder.encode((key, None))) == (key, None)
    decoded = pickle.loads(pickle.dumps(tree_file))
    assert decoded.origin is decoded.source and decoded.file is decoded.source  # one string, not three
    pickled = pickle.dumps(tree_file)
    assert pickled.count(b"repo/a.py") == 1 and b"origin" not in pickled and b"input_name" not in pickled  # no names, no repeats


def test_decoded_meta_is_a_fresh_dict_per_key():
    key = DocumentKey("a", "a", "a", 0, "code", "python", "in", 1)
    first, second = pickle.loads(pickle.dumps(key)), pickle.loads(pickle.dumps(key))
    first.meta["quality"] = 0.9
    assert second.meta == {} and key.meta == {}


def test_input_files_and_pieces_round_trip_without_field_names():
    from beam_jobs.shard_writing import Piece
    from specialize.corpus.sources import InputFile

    tree_file = InputFile("repo/a.py", 10, "source", "repo", "python")
    dump = InputFile("d.jsonl.gz", 99, "jsonl", "d.jsonl.gz", compression="gzip")
    key = Document("x = 1\n", "repo/a.py", "code", "python", "repo", file="repo/a.py").key()
    piece = Piece(dump, (3, 9), [(key, None)], "repo\0a", 1234)
    coder = registry.get_coder(object)
    for value in (tree_file, dump, piece, (7, piece)):
        assert pickle.loads(pickle.dumps(value)) == value and coder.decode(coder.encode(value)) == value
    assert b"input_name" not in pickle.dumps(tree_file) and b"entries" not in pickle.dumps(piece)
    assert tree_file.fields() == {"path": "repo/a.py", "size": 10, "kind": "source", "input_name": "repo",
                                  "language": "python", "compression": None}
