"""The command line: help lists every command, commands load without Qt, chat streams a reply or explains."""
import json
import subprocess
import sys

import pytest

from app.cli import COMMANDS, main


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name.replace("_", "-") in out


def test_commands_load_without_qt():
    code = ("import sys; from app.cli import parser; parser(); "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph')]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_chat_streams_a_reply(llama_dir, capsys):
    assert main(["chat", "--model", str(llama_dir), "--max-new-tokens", "12", "hello"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() and "[sentence 1: base model]" in err and "tokens" in err and "stop:" in err


def test_chat_explains_a_bad_model_folder(tmp_path, capsys):
    assert main(["chat", "--model", str(tmp_path / "missing"), "hi"]) == 2
    assert "model folder not found" in capsys.readouterr().err


def test_eval_smoke_on_the_demo(capsys):
    assert main(["eval", "--limit", "1", "--batch", "8", "--max-new-tokens", "24"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("composite: base ") and "| routed " in last and "| oracle " in last


def test_bench_library_imports_every_adapter(tmp_path, capsys):
    out = tmp_path / "lib.json"
    assert main(["bench", "--library", "--shape", "tiny", "--adapters", "3", "--targets", "all-linear",
                 "--dir", str(tmp_path), "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    tensor_bytes = 3 * 8 * 18496 * 2  # 3 adapters x rank 8 x sum(in + out) over the tiny shape's 28 modules x bf16
    assert res["adapters"] == 3 and tensor_bytes < res["bytes"] < tensor_bytes + 3 * 20_000
    assert res["import_s"] > 0 and res["disk_s"] > 0
    assert "import - disk" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["lib.json"]  # the generated adapters and library are cleaned up
