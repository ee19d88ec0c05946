"""The command line: help lists every command, commands load without Qt, chat streams a reply or explains; every
bad flag of every command ends in one line on stderr and exit status 2, before any model loads."""
import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app import export
from app.cli import COMMANDS, main, no_display, parser
from app.commands import chat
from app.conversation import Conversation
from app.library import Library
from app.loading import open_engine
from app.presets import Presets
from engine.generation import GenerationSettings

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "resources" / "demo"
PROMPT = "Reverse the word: hello"  # a demo task (resources/demo/tasks/reverse.jsonl)


def code_of(argv) -> int:
    """main's exit status, whether it returns it or argparse raises SystemExit."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


def refused(capsys, argv) -> str:
    """Run a command that must fail: exit 2, one line on stderr, nothing on stdout. -> that line."""
    assert code_of(argv) == 2
    out, err = capsys.readouterr()
    assert not out and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_help_lists_every_command(capsys):
    assert code_of(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name.replace("_", "-") in out


def test_commands_load_without_qt():
    code = ("import sys; from app.cli import parser; parser(); "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'torch')]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_chat_streams_a_reply(llama_dir, capsys):
    assert main(["chat", "--model", str(llama_dir), "--max-new-tokens", "12", "hello"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() and "[sentence 1: base model]" in err and "12 tokens" in err and "stop:" in err


def test_chat_explains_a_bad_model_folder(tmp_path, capsys):
    assert "folder not found" in refused(capsys, ["chat", "--model", str(tmp_path / "missing"), "hi"])
    (tmp_path / "empty").mkdir()
    assert "no config.json" in refused(capsys, ["chat", "--model", str(tmp_path / "empty"), "hi"])


# ---- bad flags: one line, exit 2, no model loaded ------------------------------------------------------------

@pytest.mark.parametrize("argv, says", [
    (["chat", "--top-p", "0", PROMPT], "argument --top-p/--routing-top-p: must be in (0, 1], got 0.0"),
    (["chat", "--top-p", "5", PROMPT], "must be in (0, 1], got 5.0"),
    (["chat", "--top-p", "nan", PROMPT], "expected a finite number, got 'nan'"),
    (["chat", "--max-adapters", "0", PROMPT], "argument --max-adapters: must be at least 1"),
    (["chat", "--device", "bogus", PROMPT], "unknown device 'bogus': use auto, cpu, cuda or cuda:N"),
    (["chat", "--dtype", "f8", PROMPT], "argument --dtype: invalid choice: 'f8'"),
    (["chat", "--temperature", "-1", PROMPT], "argument --temperature: must be 0 (greedy) or more, got -1.0"),
    (["chat", "--temperature", "hot", PROMPT], "argument --temperature: expected a number, got 'hot'"),
    (["chat", "--top-k", "-1", PROMPT], "argument --top-k: must be 0 (off) or more"),
    (["chat", "--sample-top-p", "0", PROMPT], "argument --sample-top-p: must be in (0, 1]"),
    (["chat", "--repetition-penalty", "0", PROMPT], "argument --repetition-penalty: must be more than 0"),
    (["chat", "--max-new-tokens", "0", PROMPT], "argument --max-new-tokens: must be at least 1, got 0"),
    (["chat", "--mix", "reverse=-1", PROMPT], "argument --mix: the weight of 'reverse' must be more than 0, got -1"),
    (["chat", "--mix", "reverse=x", PROMPT], "argument --mix: expected a number, got 'x'"),
    (["chat", "--mix", "reverse=1,reverse=2", PROMPT], "'reverse' is named twice"),
    (["chat", "--mix", "=1", PROMPT], "bad entry '=1': expected name=weight"),
    (["chat", "--library", "/no/such/library", PROMPT], "argument --library: folder not found: /no/such/library"),
    (["chat", "--preset", "nosuch", PROMPT], "no preset 'nosuch'; presets: Precise, Balanced, Creative"),
    (["chat"], "the following arguments are required: prompt"),
    (["chat", "--tempreature", "1", PROMPT], "unrecognized arguments: --tempreature"),
    (["router", "train", "--examples", "/no/such", "--out", "r.safetensors"], "folder not found: /no/such"),
    (["router", "train", "--examples", str(DEMO / "tasks"), "--out", "r.bin"], "name the router NAME.safetensors"),
    (["router", "train", "--examples", str(DEMO / "tasks"), "--out", "r.safetensors", "--epochs", "0"],
     "argument --epochs: must be at least 1"),
    (["router"], "the following arguments are required: train|eval"),
    (["eval", "--top-p", "0"], "argument --top-p: must be in (0, 1]"),
    (["eval", "--limit", "0"], "argument --limit: must be at least 1"),
    (["eval", "--tasks", "/no/such"], "argument --tasks: folder not found"),
    (["eval", "--device", "gpu"], "unknown device 'gpu'"),
    (["serve", "--port", "99999"], "argument --port: must be 0 (any free port) to 65535, got 99999"),
    (["serve", "--max-batch", "0"], "argument --max-batch: must be at least 1"),
    (["serve", "--batch-window-ms", "-1"], "argument --batch-window-ms: must be 0 or more"),
    (["serve", "--device", "bogus"], "unknown device 'bogus'"),
    (["bench", "--adapters", "2"], "--adapters must be 0 (base only) or at least 3"),
    (["bench", "--adapters", "many"], "argument --adapters: expected a whole number, got 'many'"),
    (["bench", "--rank", "0"], "argument --rank: must be at least 1"),
    (["bench", "--runs", "0"], "argument --runs: must be at least 1"),
    (["bench", "--new", "1"], "argument --new: must be at least 2"),
    (["bench", "--new", "8"], "--new must be more than 20 with adapters"),
    (["bench", "--adapters", "0", "--prompt", "8000", "--new", "300"], "do not fit the tiny shape's context of 8192"),
    (["bench", "--targets", "q_proj,qq_proj"], "--targets: unknown module kind(s) 'qq_proj'"),
    (["bench", "--device", "bogus"], "unknown device 'bogus'"),
    (["bench", "--library", "--adapters", "0"], "--adapters must be at least 1"),
    (["bench", "--dir", "."], "--dir is for --library"),
    (["bench", "--workload", "chat", "--adapters", "0"], "--workload chat routes among --adapters: at least 3"),
    (["bench", "--workload", "cold", "--model", "."], "--workload cold times starts of a --shape"),
    (["bench", "--workload", "chat", "--library"], "--workload is for the model's benchmarks"),
    (["bench", "--workload", "warm"], "argument --workload: invalid choice: 'warm'"),
    (["bench", "--memory-gib", "8"], "--memory-gib is for --workload chat"),
    (["bench", "--workload", "chat", "--memory-gib", "0"], "argument --memory-gib: must be more than 0, got 0"),
    (["library", "add", "x", "--model", "/no/such"], "argument --model: folder not found"),
    (["install-desktop-entry", "--prefx", "/tmp"], "unrecognized arguments: --prefx"),
    (["nosuch"], "argument COMMAND: invalid choice: 'nosuch'"),
    (["--modle", "x"], "unrecognized arguments: --modle x"),
    (["--library", "/no/such/library"], "argument --library: folder not found"),  # the app: not an empty new library
])
def test_bad_flags_are_refused_in_one_line(capsys, argv, says):
    err = refused(capsys, argv)
    assert says in err, err


def test_the_app_is_not_opened_on_a_typo():
    """`switchboard --modle x` used to open the demo window (the flag went to Qt, silently)."""
    out = subprocess.run([sys.executable, "-m", "app.cli", "--modle", "x"], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert out.returncode == 2 and out.stderr.strip() == \
        "switchboard: unrecognized arguments: --modle x (see switchboard --help)", out.stderr


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="X11/Wayland displays are a Linux matter")
def test_without_a_display_the_app_says_so():
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    out = subprocess.run([sys.executable, "-m", "app.cli"], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("switchboard: no display to open the window on") and "xcb" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_a_display_is_needed_only_by_platforms_that_draw_on_one(monkeypatch):
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    if sys.platform in ("win32", "darwin"):
        assert no_display() is None
        return
    assert no_display()
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    assert no_display()
    for platform in ("offscreen", "vnc:size=800x600", "wayland"):
        monkeypatch.setenv("QT_QPA_PLATFORM", platform)
        assert no_display() is None
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    monkeypatch.setenv("DISPLAY", ":0")
    assert no_display() is None


# ---- chat on the demo: refusals that need the model, presets, --router -------------------------------------

def test_chat_refuses_an_unknown_mix_before_routing(capsys):
    err = refused(capsys, ["chat", "--mix", "nosuch=1", PROMPT])
    assert "--mix: not loaded: 'nosuch' (loaded: arithmetic, dates," in err and "[sentence" not in err


def test_chat_says_truly_why_max_new_tokens_do_not_fit(capsys):
    err = refused(capsys, ["chat", "--max-new-tokens", "5000", PROMPT])
    assert "max_new_tokens 5000" in err and "context holds 1024 tokens" in err and "-" not in err.split("5000")[1]
    err = refused(capsys, ["chat", "--max-new-tokens", "1020", PROMPT])
    assert "needs 26 tokens but only 4 fit" in err


def test_chat_counts_in_words(llama_dir, llama_adapters, tmp_path, capsys):
    library = Library(tmp_path / "lib")
    library.import_paths([llama_adapters["alpha"]])
    assert main(["chat", "--model", str(llama_dir), "--library", str(library.root), "--max-new-tokens", "1",
                 "--mix", "alpha=1", "hi"]) == 0
    err = capsys.readouterr().err
    assert "1 adapter)]" in err and "[1 token," in err, err


def test_chat_settings_are_the_preset_then_the_flags(tmp_path, monkeypatch):
    monkeypatch.setenv("SWITCHBOARD_DATA", str(tmp_path))
    p, _ = parser()
    args = p.parse_args(["chat", "--preset", "creative", "--temperature", "0.3", "--top-p", "0.5", "--stop", "x", "hi"])
    creative = Presets().get("Creative")
    assert chat.settings(args) == GenerationSettings(temperature=0.3, top_k=creative.top_k, top_p=0.5, stop=("x",),
                                                     sample_top_p=creative.sample_top_p,
                                                     repetition_penalty=creative.repetition_penalty)
    assert chat.settings(p.parse_args(["chat", "hi"])) == GenerationSettings()
    Presets().save("mine", GenerationSettings(temperature=0.5, top_k=7))
    assert chat.settings(p.parse_args(["chat", "--preset", "MINE", "hi"])).top_k == 7  # a preset saved in the app


def test_the_demo_model_is_named_so_in_exports():
    """The demo's folder is called `model`; an export (and the library) must not call the model that."""
    conv = Conversation()
    conv.add_user("hi")
    opened = open_engine()
    assert opened.engine.model_name == "demo model"
    assert "Model: `demo model`" in export.to_markdown(conv, opened.engine.model_name)


@pytest.fixture(scope="module")
def swapped_router(tmp_path_factory):
    """A router for the demo's adapters that sends the demo's reverse prompts to `units` (and units' to reverse),
    trained through `router train` on a copy of the demo's adapter folders."""
    root = tmp_path_factory.mktemp("swapped")
    for task in sorted(p.name for p in (DEMO / "adapters").iterdir()):
        swap = {"reverse": "units", "units": "reverse"}.get(task, task)
        (root / "examples" / task).mkdir(parents=True)
        (root / "examples" / task / "examples.jsonl").write_bytes((DEMO / "adapters" / swap / "examples.jsonl")
                                                                   .read_bytes())
    out, printed = root / "swapped.safetensors", io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["router", "train", "--examples", str(root / "examples"), "--out", str(out), "--epochs", "8"]) == 0
    return out, printed.getvalue()


def test_router_train_reads_the_library_layout(swapped_router):
    path, printed = swapped_router
    assert "7 adapters, " in printed and f"wrote {path} and swapped.json" in printed
    assert path.is_file() and path.with_suffix(".json").is_file()


def test_router_eval_on_the_library_layout(capsys):
    assert main(["router", "eval", "--router", str(DEMO / "router.safetensors"),
                 "--examples", str(DEMO / "adapters")]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("accuracy: ") and float(last.split()[1]) > 0.9


def test_chat_routes_with_the_router_it_is_given(swapped_router, capsys):
    assert main(["chat", "--max-new-tokens", "4", PROMPT]) == 0
    assert "[sentence 1: reverse " in capsys.readouterr().err
    assert main(["chat", "--max-new-tokens", "4", "--router", str(swapped_router[0]), PROMPT]) == 0
    assert "[sentence 1: units " in capsys.readouterr().err


def test_chat_refuses_a_router_for_other_adapters(llama_dir, capsys):
    err = refused(capsys, ["chat", "--model", str(llama_dir), "--router", str(DEMO / "router.safetensors"), "hi"])
    assert "router.safetensors" in err and "retrain the router" in err


def test_router_eval_says_what_a_router_file_is(tmp_path, capsys):
    (tmp_path / "random.bin").write_bytes(b"\0" * 16)
    argv = ["router", "eval", "--examples", str(DEMO / "tasks"), "--router"]
    err = refused(capsys, argv + [str(tmp_path / "random.bin")])
    assert "random.bin is not a router: a router is a NAME.safetensors file with its NAME.json beside it" in err
    assert "random.json" not in err
    (tmp_path / "lone.safetensors").write_bytes(b"\0" * 16)
    err = refused(capsys, argv + [str(tmp_path / "lone.safetensors")])
    assert f"router file not found: {tmp_path / 'lone.json'}" in err


# ---- eval and bench ------------------------------------------------------------------------------------------

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
    assert main(["bench", "--library", "--shape", "tiny", "--adapters", "1", "--dir", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert "1 x rank 8 q_proj,v_proj adapter," in out and "writing 1 random rank-8 q_proj,v_proj adapter of" in err


@pytest.mark.slow
def test_bench_prints_no_library_warnings():
    """transformers' and PEFT's notes about their internals (a deprecation, the adapter PEFT falls back to) are
    not the user's business; the table and the progress lines are."""
    out = subprocess.run([sys.executable, "-m", "app.cli", "bench", "--adapters", "3", "--runs", "1", "--new", "24",
                          "--prompt", "8"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "Warning" not in out.stderr and "warn" not in out.stderr, out.stderr
    assert "round 1/1" in out.stderr and "PEFT, cat-mix of 3 adapters" in out.stdout


def test_compiled_kernels_are_kept_in_the_app_cache_folder(tmp_path, monkeypatch):
    from app import paths

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "")  # restored after the test, whatever it was
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    monkeypatch.setenv("SWITCHBOARD_DATA", str(tmp_path))
    assert paths.use_compile_cache() == tmp_path / "cache" / "inductor"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))  # the user's own choice wins
    assert paths.use_compile_cache() == tmp_path / "mine"
