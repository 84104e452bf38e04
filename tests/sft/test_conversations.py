"""Reading both input formats; malformed rows counted by reason and named with file:line."""

from __future__ import annotations

import json

import pytest

from specialize.sft.conversations import Message, read_conversations


def _write(path, lines):
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    return path


def test_both_formats_give_the_same_conversation(tmp_path):
    openai = _write(tmp_path / "a.jsonl", [{"messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"}]}])
    qwen = _write(tmp_path / "b.jsonl", [{"conversations": [
        {"from": "system", "value": "Be brief."}, {"from": "user", "value": "2+2?"},
        {"from": "assistant", "value": "4"}]}])
    sharegpt = _write(tmp_path / "c.jsonl", [{"conversations": [
        {"from": "system", "value": "Be brief."}, {"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4"}]}])
    conversations, report = read_conversations([openai, qwen, sharegpt])
    expected = (Message("system", "Be brief."), Message("user", "2+2?"), Message("assistant", "4"))
    assert [c.messages for c in conversations] == [expected] * 3
    assert [c.source for c in conversations] == [f"{openai}:1", f"{qwen}:1", f"{sharegpt}:1"]
    assert report.rows == 3 and report.kept == 3 and not report.skipped


def test_text_parts_are_joined(tmp_path):
    path = _write(tmp_path / "a.jsonl", [{"messages": [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": "c"}]}])
    conversations, _ = read_conversations([path])
    assert conversations[0].messages[0] == Message("user", "ab")


def test_malformed_rows_are_counted_and_named(tmp_path):
    ok = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    lines = [
        ok,                                                                          # 1
        "{not json",                                                                 # 2 invalid_json
        "[1, 2]",                                                                    # 3 not_an_object
        {"text": "hello"},                                                           # 4 no_messages_field
        {"messages": "hi"},                                                          # 5 messages_not_a_list
        {"messages": []},                                                            # 6 empty_conversation
        {"messages": [{"role": "user"}, {"role": "assistant", "content": "a"}]},     # 7 bad_message
        {"messages": [{"role": "tool", "content": "x"}, {"role": "assistant", "content": "a"}]},  # 8 unknown_role
        {"messages": [{"role": "user", "content": "q"}, {"role": "system", "content": "s"},
                      {"role": "assistant", "content": "a"}]},                       # 9 misplaced_system
        {"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "a"}]},  # 10 content_not_text
        {"conversations": [{"from": "user", "value": "q"}]},                         # 11 no_assistant_turn
        "",                                                                          # 12 blank: not a row
        ok,                                                                          # 13
    ]
    path = _write(tmp_path / "mixed.jsonl", lines)
    conversations, report = read_conversations([path])
    assert [c.source for c in conversations] == [f"{path}:1", f"{path}:13"]
    assert report.rows == 12 and report.kept == 2
    assert dict(report.skipped) == {
        "invalid_json": 1, "not_an_object": 1, "no_messages_field": 1, "messages_not_a_list": 1,
        "empty_conversation": 1, "bad_message": 1, "unknown_role": 1, "misplaced_system": 1,
        "content_not_text": 1, "no_assistant_turn": 1}
    assert report.examples["unknown_role"][0].startswith(f"{path}:8: ")
    assert "'tool'" in report.examples["unknown_role"][0]
    assert report.examples["misplaced_system"][0].startswith(f"{path}:9: ")
    assert "skipped 10" in report.summary()


def test_only_the_first_few_rows_of_a_reason_are_named(tmp_path):
    path = _write(tmp_path / "bad.jsonl", ["{oops"] * 9)
    _, report = read_conversations([path])
    assert report.skipped["invalid_json"] == 9
    assert [e.split(": ")[0] for e in report.examples["invalid_json"]] == [f"{path}:{i}" for i in range(1, 6)]


def test_missing_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        read_conversations([tmp_path / "nope.jsonl"])


def test_non_utf8_file_is_an_error_naming_it(tmp_path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes(b'{"messages": []}\n{"x": "\xe9"}\n')
    with pytest.raises(ValueError, match="latin.jsonl.*UTF-8"):
        read_conversations([path])
