"""Router examples folders: what is read, and that every bad file is reported with file and line."""
import json

import pytest

from engine.errors import ExamplesError
from engine.examples import load_examples


def _write(folder, name, data):
    path = folder / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def test_reads_jsonl_and_txt(tmp_path):
    _write(tmp_path, "math.jsonl", json.dumps({"prompt": "What is 2+2?", "answer": "4"}) + "\n\n"
           + json.dumps({"prompt": "Solve x+1=3", "id": 7}) + "\r\n")
    _write(tmp_path, "code.txt", "How do I sort a list?\n\n  Reverse a string in Go  \n")
    _write(tmp_path, "notes.md", "not an examples file")
    assert load_examples(tmp_path) == {"code": ["How do I sort a list?", "Reverse a string in Go"],
                                       "math": ["What is 2+2?", "Solve x+1=3"]}


def test_keeps_json_line_with_raw_line_separator_and_bom(tmp_path):
    _write(tmp_path, "a.jsonl", "\ufeff" + '{"prompt": "one\u2028two"}\n')
    assert load_examples(tmp_path) == {"a": ["one\u2028two"]}


@pytest.mark.parametrize("name, data, where", [
    ("a.jsonl", "", "a.jsonl: no examples"),
    ("a.txt", "\n  \n", "a.txt: no examples"),
    ("a.jsonl", '{"prompt": "ok"}\n{"prompt": "broken"\n', "a.jsonl:2: invalid JSON"),
    ("a.jsonl", '{"prompt": "ok"}\n\n{"text": "no prompt"}\n', "a.jsonl:3: missing \"prompt\""),
    ("a.jsonl", '["prompt"]\n', "a.jsonl:1: missing \"prompt\""),
    ("a.jsonl", '{"prompt": 42}\n', "a.jsonl:1: \"prompt\" must be a non-empty string"),
    ("a.jsonl", '{"prompt": "  "}\n', "a.jsonl:1: \"prompt\" must be a non-empty string"),
    ("a.txt", b"fine\nalso fine\ncaf\xe9 latin-1\n", "a.txt:3: not UTF-8"),
    ("a.jsonl", b'{"prompt": "x"}\n{"prompt": "\xff"}\n', "a.jsonl:2: not UTF-8"),
])
def test_bad_file_reported_with_file_and_line(tmp_path, name, data, where):
    _write(tmp_path, "good.txt", "a fine prompt\n")
    _write(tmp_path, name, data)
    with pytest.raises(ExamplesError) as e:
        load_examples(tmp_path)
    assert str(e.value).startswith(str(tmp_path / where.split(":")[0])), str(e.value)
    assert where in str(e.value)


def test_empty_or_missing_folder(tmp_path):
    with pytest.raises(ExamplesError, match="no <adapter>.jsonl or <adapter>.txt"):
        load_examples(tmp_path)
    with pytest.raises(ExamplesError, match="not found"):
        load_examples(tmp_path / "nope")


def test_same_adapter_twice_refused(tmp_path):
    _write(tmp_path, "a.txt", "x\n")
    _write(tmp_path, "a.jsonl", '{"prompt": "y"}\n')
    with pytest.raises(ExamplesError, match="both a .jsonl and a .txt"):
        load_examples(tmp_path)
