"""Hostile files and broken disks: links out of an adapter folder, regex pattern keys, damaged library records,
non-UTF-8 names, a full or read-only disk, bad config.json values, chat templates that run away, zip bombs by
count. Each is refused with a clear message, in bounded time, and loses nothing. (scripts/hostile_probe.py runs
the same kinds of input through the command line.)"""
import builtins
import errno
import io
import json
import os
import shutil
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch
from router_tasks import make_tasks

from app import cli
from app.library import Library, LibraryError
from app.library import storage
from engine import Engine
from engine.adapter_io import read_adapter
from engine.errors import AdapterError, ModelError, RouterError, SwitchboardError
from engine.router import Router, sidecar_path

TASKS = ["gsm8k", "translate_de"]
posix_names = pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="the file system takes only UTF-8 names")


@pytest.fixture
def engine(llama_dir):
    return Engine.load(llama_dir, device="cpu")


@pytest.fixture(scope="module")
def routed(tmp_path_factory, llama_adapters):
    """A library of alpha and beta with examples and a router (router-1)."""
    lib = Library(tmp_path_factory.mktemp("routed") / "lib")
    lib.import_paths([llama_adapters["alpha"], llama_adapters["beta"]])
    train, _ = make_tasks(20, seed=3, tasks=TASKS)
    for n, task in zip(["alpha", "beta"], TASKS):
        lib.set_examples(n, train[task])
    lib.retrain(epochs=1)
    return lib.root


def copy_library(routed, tmp_path) -> Library:
    return Library(shutil.copytree(routed, tmp_path / "lib"))


def enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


# ---- 1. links ---------------------------------------------------------------------------------------------
@pytest.mark.skipif(not hasattr(os, "symlink") or sys.platform == "win32", reason="needs symbolic links")
def test_folder_import_refuses_links_and_special_files(tmp_path, llama_adapters):
    alpha = Path(llama_adapters["alpha"])
    secret = tmp_path / "secret.txt"
    secret.write_text("".join(f"root:x:{i}:0:secret line {i}\n" for i in range(24)))
    drop = tmp_path / "drop"
    shutil.copytree(alpha, drop / "examples_link")
    (drop / "examples_link" / "examples.txt").symlink_to(secret)
    shutil.copytree(alpha, drop / "weights_link")
    (drop / "weights_link" / "adapter_model.safetensors").unlink()
    (drop / "weights_link" / "adapter_model.safetensors").symlink_to(alpha / "adapter_model.safetensors")
    shutil.copytree(alpha, drop / "fifo")
    os.mkfifo(drop / "fifo" / "examples.txt")
    (drop / "folder_link").symlink_to(alpha, target_is_directory=True)
    lib = Library(tmp_path / "lib")
    results = {Path(r.path).name: r for r in lib.import_paths([drop])}
    assert not any(r.ok for r in results.values()), results
    for name, file in (("examples_link", "examples.txt"), ("weights_link", "adapter_model.safetensors")):
        assert f"{drop / name}/{file}: a symbolic link (to " in results[name].message
    assert "examples.txt: not a regular file" in results["fifo"].message
    assert f"{drop / 'folder_link'}: a symbolic link" in results["folder_link"].message
    assert lib.list() == []
    assert not any(b"root:x" in p.read_bytes() for p in lib.root.rglob("*") if p.is_file())


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_copies_keep_private_permissions(tmp_path, llama_adapters):
    src = shutil.copytree(llama_adapters["alpha"], tmp_path / "private")
    (src / "examples.txt").write_text("a private prompt\n")
    for f in src.iterdir():
        f.chmod(0o600)
    lib = Library(tmp_path / "lib")
    [r] = lib.import_paths([src])
    assert r.ok, r.message
    for f in ("adapter_config.json", "adapter_model.safetensors", "examples.jsonl"):
        assert (lib.adapters_dir / "private" / f).stat().st_mode & 0o077 == 0, f


# ---- 2. pattern keys --------------------------------------------------------------------------------------
def edit_config(folder, **changes):
    path = Path(folder) / "adapter_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.mark.parametrize("key", ["(.|.|.)*Z", "(.*){1,32000}[bc]"])
def test_pattern_keys_cannot_hang_import_or_hot_add(tmp_path, llama_adapters, module_shapes, key):
    src = shutil.copytree(llama_adapters["alpha"], tmp_path / "evil")
    edit_config(src, rank_pattern={key: 8}, alpha_pattern={key: 1})
    t0 = time.monotonic()
    try:
        lw = read_adapter(src, module_shapes)
        assert lw.rank == 4  # the key matches no module: the config's r stands
    except AdapterError as e:
        assert f"{key!r} takes too long to match" in str(e)
    [r] = Library(tmp_path / "lib").import_paths([src])
    assert time.monotonic() - t0 < 15


# ---- 3. damaged records never delete a router -------------------------------------------------------------
DAMAGE = {
    "examples list": lambda idx: {**idx, "router": {**idx["router"], "examples": []}},
    "odd file name": lambda idx: {**idx, "router": {**idx["router"], "file": "router-1.bin"}},
    "router a string": lambda idx: {**idx, "router": "router-1.safetensors"},
    "names a missing file": lambda idx: {**idx, "router": {**idx["router"], "file": "router-9.safetensors"}},
    "router null": lambda idx: {**idx, "router": None},
    "adapters not a list": lambda idx: {**idx, "adapters": 5},
    "a JSON list": lambda idx: [idx],
    "missing": None,
    "torn": "{ torn",
}


def damage_index(index: Path, edit):
    """Apply one of DAMAGE's edits to index.json (also used by scripts/hostile_probe.py)."""
    if edit is None:
        index.unlink()
    elif isinstance(edit, str):
        index.write_text(edit)
    else:
        index.write_text(json.dumps(edit(json.loads(index.read_text()))))


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_index_never_deletes_the_router(routed, tmp_path, llama_dir, damage):
    lib = copy_library(routed, tmp_path)
    index = lib.root / "index.json"
    weights = lib.root / "router-1.safetensors"
    blob = weights.read_bytes()
    damage_index(index, DAMAGE[damage])
    from app.loading import open_engine

    opened = open_engine(llama_dir, library_dir=lib.root, device="cpu")  # chat --library: a reader and a writer
    lib.set_color("alpha", "#102030")  # another writer
    assert weights.read_bytes() == blob and sidecar_path(weights).is_file()
    assert opened.engine.adapters == ["alpha", "beta"] and opened.engine.router is not None
    assert lib.router_file() == weights and [a.name for a in lib.list()] == ["alpha", "beta"]
    if damage != "examples list":
        assert any("index.json" in n for n in opened.notes), opened.notes


def test_router_pair_leftovers_are_still_collected(routed, tmp_path):
    lib = copy_library(routed, tmp_path)
    for suffix in (".safetensors", ".json"):  # a retrain killed before its commit
        shutil.copy(lib.root / f"router-1{suffix}", lib.root / f"router-2{suffix}")
    lib.set_color("alpha", None)
    assert sorted(p.name for p in lib.root.glob("router-*")) == ["router-1.json", "router-1.safetensors"]


# ---- 4. non-UTF-8 names -----------------------------------------------------------------------------------
@posix_names
def test_names_that_are_not_utf8(tmp_path, llama_adapters, capsys):
    alpha = Path(llama_adapters["alpha"])
    raw = os.fsdecode(b"ad\xffapter")
    drop = Path(os.fsdecode(os.path.join(os.fsencode(tmp_path), b"dr\xfeop")))
    shutil.copytree(alpha, drop / raw)
    shutil.copytree(alpha, drop / "good")
    with zipfile.ZipFile(drop / f"{raw}.zip", "w") as zf:
        for f in alpha.iterdir():
            zf.write(f, f.name)
    lib = Library(tmp_path / "lib")
    results = lib.import_paths([drop])
    assert [r.ok for r in results] == [False, False, True]  # the zip and the folder refused, good added
    for r in results:
        r.message.encode("utf-8")  # printable
        assert r.ok or "not UTF-8" in r.message
    # a folder put into adapters/ by hand under such a name: skipped and reported, the rest keeps working
    shutil.copytree(lib.adapters_dir / "good", lib.adapters_dir / raw)
    assert [a.name for a in lib.list()] == ["good"]
    assert any("not UTF-8" in p for p in lib.problems())
    [r] = lib.import_paths([llama_adapters["beta"]])
    assert r.ok
    assert cli.main(["library", "list", "--library", str(lib.root)]) == 0
    assert cli.main(["library", "remove", "beta", "--library", str(lib.root)]) == 0
    out = capsys.readouterr()
    assert "not UTF-8" in out.err and "removed beta" in out.out
    assert (lib.adapters_dir / raw).is_dir()  # never deleted


# ---- 5. chat --library says what it refused ---------------------------------------------------------------
def test_chat_library_reports_refused_adapters_and_router(routed, tmp_path, llama_dir, capsys):
    lib = copy_library(routed, tmp_path)
    weights = lib.adapters_dir / "beta" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated
    args = ["chat", "hi", "--model", str(llama_dir), "--library", str(lib.root), "--max-new-tokens", "2"]
    assert cli.main(args) == 0
    err = capsys.readouterr().err
    assert f"[refused {lib.adapters_dir / 'beta'}: " in err and "corrupt or truncated safetensors" in err
    assert "router was trained for other adapters" in err  # the bank lacks beta now

    side = lib.root / "router-1.json"
    meta = json.loads(side.read_text())
    for edit, expected in (({"featurizer": {**meta["featurizer"], "char_ngrams": [1, 3]}}, "settings were changed"),
                           ({"featurizer": {**meta["featurizer"], "buckets": 1 << 26}}, "buckets must be"),
                           ({"adapters": None}, '"adapters" must be a list')):
        side.write_text(json.dumps({**meta, **edit}))
        t0 = time.monotonic()
        with pytest.raises(RouterError, match=expected):
            Router.load(lib.root / "router-1.safetensors")
        assert time.monotonic() - t0 < 2
    side.write_text(json.dumps([meta]))
    assert cli.main(args) == 0
    assert "not a LoRA Switchboard router sidecar" in capsys.readouterr().err

    (lib.root / "index.json").write_text(json.dumps({**json.loads((lib.root / "index.json").read_text()),
                                                     "router": None}))
    assert cli.main(args) == 0  # a null record beside a router on disk: it is used (and its problem said)
    err = capsys.readouterr().err
    assert "the router record was null; using router-1.safetensors" in err and "not a LoRA Switchboard" in err
    for f in lib.root.glob("router-1.*"):
        f.unlink()
    assert cli.main(args) == 0
    assert "no router has been trained" in capsys.readouterr().err


# ---- 6. a full disk ---------------------------------------------------------------------------------------
def test_full_disk_during_import_and_remove(tmp_path, llama_adapters, monkeypatch, capsys):
    lib = Library(tmp_path / "lib")
    lib.import_paths([llama_adapters["beta"]])
    with monkeypatch.context() as m:  # the index write fails: the adapter is taken back out
        m.setattr(storage.Storage, "write_index", enospc)
        [r] = lib.import_paths([llama_adapters["alpha"]])
    assert not r.ok and "No space left on device" in r.message and "nothing was added" in r.message
    assert [a.name for a in lib.list()] == ["beta"]
    [r] = lib.import_paths([llama_adapters["alpha"]])
    assert r.ok, r.message  # a retry is not "already in the library"

    real_fsync = os.fsync
    with monkeypatch.context() as m:  # out of space while copying: the library is blamed, not the source
        m.setattr(os, "fsync", lambda fd: enospc() if ".tmp" in os.readlink(f"/proc/self/fd/{fd}")
                  else real_fsync(fd))
        [r] = lib.import_paths([llama_adapters["gamma"]])
    assert not r.ok and "could not write it into the library" in r.message and "cannot read" not in r.message
    assert [a.name for a in lib.list()] == ["beta", "alpha"]

    with monkeypatch.context() as m:
        m.setattr(storage.Storage, "write_index", enospc)
        assert cli.main(["library", "remove", "alpha", "--library", str(lib.root)]) == 0
    assert "removed alpha" in capsys.readouterr().out
    assert [a.name for a in lib.list()] == ["beta"]


# ---- 7. a read-only library -------------------------------------------------------------------------------
@pytest.fixture
def read_only(monkeypatch):
    """-> make(root): from then on every write under `root` fails with EROFS (as on a read-only mount; a
    chmod would not stop root, who runs the tests in CI)."""
    def make(root):
        root = os.path.realpath(root)

        def inside(path):
            return isinstance(path, (str, bytes, os.PathLike)) and os.path.realpath(os.fsdecode(path)).startswith(root)

        def refuse(f, writes=lambda *a, **k: True):
            def guarded(path, *args, **kwargs):
                if inside(path) and writes(*args, **kwargs):
                    raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))
                return f(path, *args, **kwargs)
            return guarded

        def open_writes(mode="r", *a, **k):
            return any(c in mode for c in "wax+")

        for name in ("mkdir", "rename", "replace", "unlink", "rmdir"):
            monkeypatch.setattr(os, name, refuse(getattr(os, name)))
        monkeypatch.setattr(os, "open", refuse(os.open, lambda flags, *a, **k: flags & (os.O_WRONLY | os.O_RDWR)))
        monkeypatch.setattr(builtins, "open", refuse(builtins.open, open_writes))
        monkeypatch.setattr(io, "open", refuse(io.open, open_writes))
    return make


def test_read_only_library_can_be_chatted_with(routed, tmp_path, llama_dir, read_only, capsys):
    lib = copy_library(routed, tmp_path)
    (lib.root / "model.json").unlink(missing_ok=True)  # chat would want to record the model
    read_only(lib.root)
    args = ["chat", "hi", "--model", str(llama_dir), "--library", str(lib.root), "--max-new-tokens", "2"]
    assert cli.main(args) == 0
    assert "[model " in capsys.readouterr().err
    assert cli.main(["library", "list", "--library", str(lib.root)]) == 0
    assert cli.main(["library", "remove", "alpha", "--library", str(lib.root)]) == 2
    err = capsys.readouterr().err
    assert "cannot write the library" in err and "Read-only file system" in err
    with pytest.raises(LibraryError, match="Read-only"):
        lib.set_color("alpha", None)


# ---- 8. hand-edited records and bad config.json values ----------------------------------------------------
def test_hand_edited_meta_is_listed_and_refused_by_field(routed, tmp_path, llama_dir, capsys):
    lib = copy_library(routed, tmp_path)
    meta = lib.adapters_dir / "alpha" / "meta.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "targets": 5, "n_examples": "many"}))
    beta = lib.adapters_dir / "beta" / "meta.json"
    beta.write_text(json.dumps({**json.loads(beta.read_text()), "enabled": "no"}))
    assert cli.main(["library", "list", "--library", str(lib.root)]) == 0
    out = capsys.readouterr()
    assert "targets=5" in out.err and "n_examples='many'" in out.err and "\"enabled\" must be true or false" in out.err
    assert "yes (refused)" in out.out
    engine = Engine.load(llama_dir, device="cpu")
    refused = dict(lib.load_into(engine))
    assert engine.adapters == ["alpha"] and "enabled" in refused[str(lib.adapters_dir / "beta")]
    (lib.adapters_dir / "alpha" / "meta.json").write_text("[1, 2]")
    with pytest.raises(LibraryError, match="meta.json is damaged"):
        lib.set_color("alpha", "#000000")


CONFIG_EDITS = [
    ({"vocab_size": 10**12}, "vocab_size must be an integer from 1 to"),
    ({"hidden_size": 10**6}, "hidden_size must be an integer"),
    ({"intermediate_size": 10**9}, "intermediate_size must be"),
    ({"num_hidden_layers": 100000}, "num_hidden_layers must be"),
    ({"num_hidden_layers": 5}, "num_hidden_layers=5 but the weights hold 2 layers"),
    ({"num_hidden_layers": -1}, "num_hidden_layers must be"),
    ({"hidden_size": "64"}, "hidden_size must be an integer"),
    ({"rms_norm_eps": "tiny"}, "rms_norm_eps"),
    ({"num_key_value_heads": 3}, "not a multiple of num_key_value_heads"),
    ({"vocab_size": 4000}, "the weights hold [400, 64]"),
]


@pytest.mark.parametrize("edit, expected", CONFIG_EDITS)
def test_bad_config_values_refused_before_allocating(llama_dir, tmp_path, edit, expected):
    folder = shutil.copytree(llama_dir, tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **edit}))
    t0 = time.monotonic()
    with pytest.raises(ModelError, match=expected.replace("[", r"\[")):
        Engine.load(folder, device="cpu")
    assert time.monotonic() - t0 < 10


def test_model_larger_than_the_free_memory_refused(llama_dir, monkeypatch):
    from engine import model

    monkeypatch.setattr(model, "free_bytes", lambda device: 100_000)
    with pytest.raises(ModelError, match=r"config.json describes [\d,]+ parameters \(0.0 GiB in torch.float32\) but only"):
        Engine.load(llama_dir, device="cpu")


def test_allow_pickle_reads_a_legacy_torch_save(llama_dir, tmp_path):
    from safetensors.torch import load_file

    folder = shutil.copytree(llama_dir, tmp_path / "legacy")
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin", _use_new_zipfile_serialization=False)
    engine = Engine.load(folder, device="cpu", allow_pickle=True)
    assert torch.equal(engine.model.model.embed_tokens.weight, state["model.embed_tokens.weight"])
    (folder / "pytorch_model.bin").write_bytes(b"not a pickle")
    with pytest.raises(ModelError, match="cannot load it with torch.load"):
        Engine.load(folder, device="cpu", allow_pickle=True)


# ---- 9. zip bomb by count ---------------------------------------------------------------------------------
def test_zip_bomb_of_many_small_members(tmp_path, llama_adapters, module_shapes):
    bomb = tmp_path / "many.zip"
    alpha = Path(llama_adapters["alpha"])
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in alpha.iterdir():
            zf.write(f, f.name)
        for i in range(50):  # each under the per-member 1 MiB guard: 50 MB in all from ~50 kB
            zf.writestr(f"pad/{i}.bin", bytes(1_000_000))
    [r] = Library(tmp_path / "lib").import_paths([bomb])
    assert not r.ok and "its 53 members expand" in r.message and "zip bomb guard" in r.message
    with pytest.raises(AdapterError, match="zip bomb guard"):
        read_adapter(bomb, module_shapes)


# ---- 10. chat templates -----------------------------------------------------------------------------------
TEMPLATES = [
    ("{{ strftime_now('%Y' * 10**7) }}", "would build a value of 20000000 characters"),
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}x", "ran for more than"),
    ("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
     "builds a value of over"),
    ("{{ 'x'|center(10**9) }}", "passes the number 1000000000"),
    ("{{ '{:>1000000000}'.format(1) }}", "width or precision too large"),
    ("{{ ('x' * 100000).replace('x', 'y' * 100000) }}", "would build a value of 10000000000"),
    ("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}", "renders more than"),
    ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "nests too deep"),
    ("{{ raise_exception('no system role') }}", "no system role"),
    ("{% if false %}x{% endif %}", "empty prompt"),
]


@pytest.fixture(scope="module")
def hf_tokenizer(llama_dir):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(llama_dir)


@pytest.mark.parametrize("source, expected", TEMPLATES)
def test_chat_templates_are_bounded_on_both_paths(hf_tokenizer, source, expected):
    from engine.chat import render
    from engine.light import LightTokenizer

    light = LightTokenizer(hf_tokenizer.backend_tokenizer, {"eos_token": "</s>"}, source, "/models/evil")
    hf = hf_tokenizer
    original = hf.chat_template
    hf.chat_template = source
    try:
        for tok, name in ((light, "/models/evil"), (hf, hf.name_or_path)):
            t0 = time.monotonic()
            with pytest.raises(SwitchboardError) as e:
                render(tok, [{"role": "user", "content": "hi"}])
            assert time.monotonic() - t0 < 5
            assert f"the chat template of {name}" in str(e.value) and expected in str(e.value), str(e.value)
    finally:
        hf.chat_template = original


def test_bounded_rendering_matches_transformers(hf_tokenizer):
    from engine.template import render

    source = ("{{ bos_token }}{% for m in messages %}{% if loop.first and m['role'] != 'system' %}[sys]{% endif %}"
              "{% generation %}<|{{ m['role'] }}|>{{ m['content'] | trim }}{% endgeneration %}"
              "{% if loop.last %}{{ messages | tojson(indent=2) }}{% endif %}{% endfor %}"
              "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }}"
              "{% if add_generation_prompt %}<|assistant|>{{ '%05d' % 42 }}{{ '{:>4}'.format(7) }}{% endif %}")
    messages = [{"role": "user", "content": " hi "}, {"role": "assistant", "content": "yo"},
                {"role": "user", "content": "ünïcode 🦊"}]
    mine = render(source, "t", messages=messages, add_generation_prompt=True, **hf_tokenizer.special_tokens_map)
    theirs = hf_tokenizer.apply_chat_template(messages, chat_template=source, add_generation_prompt=True,
                                              tokenize=False)
    assert mine == theirs


# ---- 11. member and name oddities -------------------------------------------------------------------------
def test_odd_member_names_and_long_names(tmp_path, llama_adapters, module_shapes):
    alpha = Path(llama_adapters["alpha"])
    z = tmp_path / "colon.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for f in alpha.iterdir():
            zf.write(f, f.name)
        zf.writestr("notes/a:b", b"a harmless name")
    assert read_adapter(z, module_shapes).rank == 4
    lib = Library(tmp_path / "lib")
    [r] = lib.import_paths([z])
    assert r.ok, r.message
    long = tmp_path / "long.zip"  # two adapters, one in a folder of 90 characters, 360 bytes in UTF-8
    with zipfile.ZipFile(long, "w") as zf:
        for folder in ("\U0001F98A" * 90, "short"):
            for f in alpha.iterdir():
                zf.write(f, f"{folder}/{f.name}")
    results = lib.import_paths([long])
    assert [r.ok for r in results] == [True, False]  # in the archive's order: "short" sorts first
    assert "360 bytes long in UTF-8 (at most 200)" in results[1].message and "rename it first" in results[1].message


def test_cli_rename(tmp_path, llama_adapters, capsys):
    lib = str(tmp_path / "lib")
    assert cli.main(["library", "add", str(llama_adapters["alpha"]), "--library", lib]) == 0
    assert cli.main(["library", "add", str(llama_adapters["alpha"]), "--library", lib]) == 1
    assert "switchboard library rename alpha NEW" in capsys.readouterr().out
    assert cli.main(["library", "rename", "alpha", "first", "--library", lib]) == 0
    assert cli.main(["library", "add", str(llama_adapters["alpha"]), "--library", lib]) == 0
    assert [a.name for a in Library(lib).list()] == ["first", "alpha"]
    assert cli.main(["library", "rename", "first", "a/b", "--library", lib]) == 2
    assert "not allowed in file names" in capsys.readouterr().err


def test_lock_wait_is_bounded(tmp_path, monkeypatch):
    import threading

    root = tmp_path / "lib"
    root.mkdir()
    monkeypatch.setattr(storage, "LOCK_TIMEOUT_S", 0.3)
    held, release = threading.Event(), threading.Event()

    def holder():
        with storage.locked(root / ".lock"):
            held.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    held.wait(5)
    try:
        with pytest.raises(LibraryError, match="another program has held the library's lock"):
            Library(root).set_model("m", {})
    finally:
        release.set()
        t.join()
