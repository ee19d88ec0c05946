"""An attack round on the library, the adapter reader and the model loader: hostile inputs built in a temp folder
and run through the real entry points (`switchboard library add/list/remove/rename`, `switchboard chat`,
Engine.load, Engine.add_adapter), each in its own process with a timeout, each outcome classified.

    python scripts/hostile_probe.py [--timeout 60] [--keep DIR]

Outcomes: refused clearly (a one-line reason, the expected words in it), accepted safely (odd but valid input
that works), traceback, hang (past the timeout), data lost (an adapter or router file that was there is gone),
security hole (a secret copied into the library, a file written outside it, a private file made readable, a
pickle run), unexpected (anything else). The table at the end is docs/SECURITY.md's. A full disk is a real
tmpfs and a read-only library a real read-only bind mount when this process may mount (root with
CAP_SYS_ADMIN), plus an ENOSPC injected into the index write; without mounting, the read-only attacks are left
out and the probe says so (tests/test_hostile.py injects EROFS instead).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
SECRET = "root:x:0:0:the-secret-line"
CLI = "import sys; from app.cli import main; sys.exit(main(sys.argv[1:]))"


@dataclass
class Attack:
    kind: str
    name: str
    argv: list                      # after `python -c`: a program and its arguments
    expect: str = "refuse"          # "refuse" | "accept"
    words: str = ""                 # must appear in the output of a clear refusal
    protect: list = field(default_factory=list)   # files that must survive
    holes: list = field(default_factory=list)     # [(what, fn() -> True when the hole is there)]
    env: dict = field(default_factory=dict)
    outcome: str = ""
    seconds: float = 0.0
    detail: str = ""


def cli(*args):
    return ["-c", CLI, *map(str, args)]


def snippet(code, *args):
    return ["-c", code, *map(str, args)]


def run(attack: Attack, timeout: float):
    before = [p for p in attack.protect if p.exists()]  # an earlier attack on the same library may remove some
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QT_QPA_PLATFORM": "offscreen", **attack.env}
    t0 = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, *attack.argv], capture_output=True, env=env, timeout=timeout)
        rc, out = proc.returncode, (proc.stdout + proc.stderr).decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        rc, out = None, ""
    attack.seconds = time.monotonic() - t0
    lost = [p for p in before if not p.exists()]
    holes = [what for what, there in attack.holes if there()]
    lines = [line for line in out.splitlines() if line.strip()]
    attack.detail = next((line for line in lines if attack.words and attack.words in line), lines[-1] if lines else "")
    if rc is None:
        attack.outcome, attack.detail = "hang", f"still running after {timeout:g} s"
    elif "Traceback (most recent call last)" in out:
        attack.outcome = "traceback"
        attack.detail = next((line for line in reversed(lines) if not line.startswith(" ")), "")
    elif holes:
        attack.outcome, attack.detail = "security hole", ", ".join(holes)
    elif lost:
        attack.outcome, attack.detail = "data lost", ", ".join(p.name for p in lost)
    elif attack.expect == "refuse" and attack.words in out and (rc != 0 or "refused" in out or "problem" in out):
        attack.outcome = "refused clearly"
    elif attack.expect == "accept" and rc == 0 and attack.words in out:
        attack.outcome = "accepted safely"
    else:
        attack.outcome, attack.detail = "unexpected", f"rc {rc}: {attack.detail}"


# ---- building the inputs -----------------------------------------------------------------------------------
def zip_folder(src: Path, dest: Path, prefix="", extra=()):
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(src.iterdir()):
            zf.write(f, prefix + f.name)
        for name, data in extra:
            zf.writestr(name, data)
    return dest


def edit_json(path: Path, **changes):
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def found_in(folder: Path, text: str):
    return lambda: folder.exists() and any(text.encode() in p.read_bytes() for p in folder.rglob("*") if p.is_file())


def routed_library(root: Path, adapters: dict) -> Path:
    """A library of alpha and beta with router examples and a trained router (router-1)."""
    from router_tasks import make_tasks

    from app.library import Library

    lib = Library(root)
    lib.import_paths([adapters["alpha"], adapters["beta"]])
    train, _ = make_tasks(20, seed=0, tasks=["gsm8k", "translate_de"])
    lib.set_examples("alpha", train["gsm8k"])
    lib.set_examples("beta", train["translate_de"])
    lib.retrain(epochs=1)
    return root


def try_mount(args) -> bool:
    return os.name == "posix" and shutil.which("mount") is not None and \
        subprocess.run(["mount", *args], capture_output=True).returncode == 0


def build(tmp: Path) -> tuple[list[Attack], list]:
    import torch
    from conftest import make_adapter_dir, make_model_dir
    from test_hostile import DAMAGE, damage_index
    from safetensors.torch import load_file, save_file

    model = make_model_dir(tmp / "model", "llama")
    src = tmp / "src"
    adapters = {n: make_adapter_dir(src / n, model, seed=i, **spec) for i, (n, spec) in enumerate({
        "alpha": dict(r=4, alpha=8), "beta": dict(r=8, alpha=16, targets=("q_proj", "k_proj"))}.items())}
    alpha = Path(adapters["alpha"])
    template = routed_library(tmp / "routed", adapters)
    secret = tmp / "secret.txt"
    secret.write_text("".join(f"{SECRET} {i}\n" for i in range(24)))
    attacks, mounts, n = [], [], [0]

    def fresh_library(routed=False) -> Path:
        n[0] += 1
        root = tmp / "libs" / f"lib{n[0]}"
        if routed:
            shutil.copytree(template, root)
        return root

    def protected(root: Path):
        return sorted([*root.glob("adapters/*/adapter_model.safetensors"), *root.glob("router-*")])

    def adapter_copy(name, base=alpha) -> Path:
        n[0] += 1
        return Path(shutil.copytree(base, tmp / "inputs" / f"{n[0]}" / name))

    def add(kind, name, path, words, expect="refuse", lib=None, holes=(), **kw):
        lib = lib or fresh_library()
        holes = [*holes, ("a secret copied in", found_in(lib, SECRET))]
        attacks.append(Attack(kind, name, cli("library", "add", path, "--library", lib), expect, words,
                              protected(lib), holes, **kw))

    def chat(kind, name, lib, words, expect="accept", model_dir=model, **kw):
        argv = cli("chat", "hi", "--model", model_dir, "--max-new-tokens", "2", *(["--library", lib] if lib else []))
        attacks.append(Attack(kind, name, argv, expect, words, protected(lib) if lib else [], **kw))

    # -- symbolic links and special files in folders
    d = adapter_copy("examples_link")
    (d / "examples.txt").symlink_to(secret)
    add("symlinks in folders", "examples.txt -> a secret file", d, "a symbolic link")
    d = adapter_copy("weights_link")
    (d / "adapter_model.safetensors").unlink()
    (d / "adapter_model.safetensors").symlink_to(alpha / "adapter_model.safetensors")
    add("symlinks in folders", "weights -> a file outside", d, "a symbolic link")
    d = tmp / "inputs" / "folder_of_links"
    d.mkdir(parents=True)
    (d / "linked").symlink_to(alpha, target_is_directory=True)
    add("symlinks in folders", "subfolder -> an adapter elsewhere", d, "a symbolic link")
    d = adapter_copy("fifo")
    os.mkfifo(d / "examples.txt")
    add("symlinks in folders", "examples.txt is a FIFO", d, "not a regular file")
    d = adapter_copy("private")
    (d / "examples.txt").write_text("a private prompt\n")
    for f in d.iterdir():
        f.chmod(0o600)
    lib = fresh_library()
    add("symlinks in folders", "0600 files stay private", d, "added private", "accept", lib,
        [("a private file made readable", lambda lib=lib: any(
            p.stat().st_mode & 0o077 for p in lib.glob("adapters/private/*")
            if p.name in ("adapter_config.json", "adapter_model.safetensors", "examples.jsonl")))])

    # -- regex pattern keys
    for key in ("(.|.|.)*Z", "(.*){1,32000}[bc]"):
        d = adapter_copy("pattern")
        edit_json(d / "adapter_config.json", rank_pattern={key: 8}, alpha_pattern={key: 2})
        expect, words = ("accept", "added pattern") if key == "(.|.|.)*Z" else ("refuse", "takes too long to match")
        add("regex pattern keys", f"library add, key {key}", d, words, expect)
        attacks.append(Attack("regex pattern keys", f"Engine.add_adapter, key {key}", snippet(
            "import sys; from engine import Engine, AdapterError\n"
            "e = Engine.load(sys.argv[1], device='cpu')\n"
            "try: print('added', e.add_adapter(sys.argv[2])['rank'])\n"
            "except AdapterError as x: print('refused:', x); sys.exit(1)", model, d), expect,
            "added" if expect == "accept" else words))

    # -- damaged index / meta / router records
    for what, edit in DAMAGE.items():
        lib = fresh_library(routed=True)
        damage_index(lib / "index.json", edit)
        chat("damaged library records", f"index.json {what}, then chat --library", lib, "2 adapters")
        add("damaged library records", f"index.json {what}, then library add", alpha, "already in the library",
            lib=lib)
    for what, changes in {"targets: 5": {"targets": 5}, "n_examples: many": {"n_examples": "many"},
                          "enabled: no": {"enabled": "no"}, "a JSON list": None}.items():
        lib = fresh_library(routed=True)
        meta = lib / "adapters" / "alpha" / "meta.json"
        meta.write_text("[1]") if changes is None else edit_json(meta, **changes)
        attacks.append(Attack("damaged library records", f"meta.json {what}, library list",
                              cli("library", "list", "--library", lib), "refuse", "meta.json", protected(lib)))
    side_damage = {"no adapters": lambda s: {k: v for k, v in s.items() if k != "adapters"},
                   "a JSON list": lambda s: [s],
                   "featurizer edited": lambda s: {**s, "featurizer": {**s["featurizer"], "char_ngrams": [1, 3]}},
                   "buckets 2**26": lambda s: {**s, "featurizer": {**s["featurizer"], "buckets": 1 << 26}},
                   "net.hidden 'big'": lambda s: {**s, "net": {"dim": 32, "hidden": "big"}}}
    for what, edit in side_damage.items():
        lib = fresh_library(routed=True)
        side = lib / "router-1.json"
        side.write_text(json.dumps(edit(json.loads(side.read_text()))))
        chat("damaged library records", f"router.json {what}, chat --library", lib, "[refused", "refuse")
    lib = fresh_library(routed=True)
    weights = lib / "adapters" / "beta" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    chat("damaged library records", "a truncated adapter, chat --library", lib, "corrupt or truncated", "refuse")

    # -- names that are not UTF-8
    raw = os.fsdecode(b"ad\xffapter")
    add("non-UTF-8 names", "adapter folder name", adapter_copy(raw), "not UTF-8")
    parent = Path(os.fsdecode(os.fsencode(tmp / "inputs") + b"/par\xfeent"))
    shutil.copytree(alpha, parent / "alpha")
    add("non-UTF-8 names", "parent folder name", parent / "alpha", "added alpha", "accept")
    add("non-UTF-8 names", "zip name", zip_folder(alpha, tmp / "inputs" / f"{raw}.zip"), "not UTF-8")
    lib = fresh_library(routed=True)
    shutil.copytree(lib / "adapters" / "alpha", lib / "adapters" / raw)
    for command in (["library", "add", adapters["alpha"]], ["library", "remove", "beta"], ["library", "list"]):
        words = {"add": "already in the library", "remove": "removed beta", "list": "not UTF-8"}[command[1]]
        attacks.append(Attack("non-UTF-8 names", f"such a folder in adapters/, then {' '.join(command[:2])}",
                              cli(*command, "--library", lib), "accept" if command[1] == "remove" else "refuse",
                              words, [lib / "adapters" / "alpha" / "adapter_model.safetensors"]))
    chat("non-UTF-8 names", "such a folder in adapters/, then chat --library", lib, "adapters")

    # -- a full disk
    full = tmp / "full"
    full.mkdir()
    real_tmpfs = try_mount(["-t", "tmpfs", "-o", "size=600k", "tmpfs", str(full)])
    inject = ("import errno, os, sys\nfrom app.library import storage\n"
              "def enospc(*a, **k): raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))\n"
              "storage.Storage.write_index = enospc\n" + CLI.split("; ", 1)[1].replace("; ", "\n"))
    big = adapter_copy("big")
    (big / "examples.txt").write_text("\n".join(f"prompt {i} " + "x" * 200 for i in range(4000)))  # ~800 kB
    if real_tmpfs:
        mounts.append(full)
        add("disk full", "tmpfs of 600 kB: an import that does not fit", big, "No space left on device",
            lib=full / "lib")
        attacks.append(Attack("disk full", "tmpfs filled up: library remove", snippet(
            "import subprocess, sys\nfrom app.library import Library\n"
            "Library(sys.argv[1]).import_paths([sys.argv[2]])\n"
            "try:\n    with open(sys.argv[3], 'wb') as f:\n        while True:\n            f.write(b'x' * 4096)\n"
            "            f.flush()\nexcept OSError:\n    pass\n"
            "sys.exit(subprocess.call([sys.executable, '-c', sys.argv[4], 'library', 'remove', 'alpha',"
            " '--library', sys.argv[1]]))", full / "lib2", alpha, full / "filler", CLI), "accept", "removed alpha"))
    attacks.append(Attack("disk full", "ENOSPC on the index write (injected): import", snippet(
        inject, "library", "add", alpha, "--library", fresh_library()), "refuse", "nothing was added"))
    lib = fresh_library(routed=True)
    attacks.append(Attack("disk full", "ENOSPC on the index write (injected): remove", snippet(
        inject, "library", "remove", "alpha", "--library", lib), "accept", "removed alpha",
        [lib / "adapters" / "beta" / "adapter_model.safetensors"]))

    # -- a read-only library (a real read-only bind mount of a library)
    ro = fresh_library(routed=True)
    view = tmp / "read-only"
    view.mkdir()
    if try_mount(["--bind", str(ro), str(view)]):
        mounts.append(view)
        if try_mount(["-o", "remount,bind,ro", str(view)]):
            chat("read-only library", "chat --library", view, "2 adapters")
            for command, expect, words in ((["list"], "accept", "alpha"),
                                           (["remove", "alpha"], "refuse", "Read-only file system"),
                                           (["rename", "alpha", "first"], "refuse", "Read-only file system"),
                                           (["add", adapters["alpha"]], "refuse", "Read-only file system")):
                attacks.append(Attack("read-only library", f"library {command[0]}",
                                      cli("library", *command, "--library", view), expect, words, protected(ro)))

    # -- bad config.json values
    huge_vocab = None
    for what, changes in {"vocab_size 1e12": {"vocab_size": 10**12}, "hidden_size 1e6": {"hidden_size": 10**6},
                          "intermediate_size 1e9": {"intermediate_size": 10**9},
                          "num_hidden_layers 100000": {"num_hidden_layers": 100000},
                          "num_hidden_layers 5 (weights hold 2)": {"num_hidden_layers": 5},
                          "num_hidden_layers -1": {"num_hidden_layers": -1}, "hidden_size '64'": {"hidden_size": "64"},
                          "rms_norm_eps 'tiny'": {"rms_norm_eps": "tiny"},
                          "rope_parameters a list": {"rope_parameters": [1]}, "a JSON list": None}.items():
        n[0] += 1
        bad = Path(shutil.copytree(model, tmp / "models" / str(n[0])))
        (bad / "config.json").write_text("[1]") if changes is None else edit_json(bad / "config.json", **changes)
        chat("bad config.json values", f"chat --model, {what}", None, "config.json", "refuse", model_dir=bad)
        huge_vocab = huge_vocab if changes != {"vocab_size": 10**12} else bad
    n[0] += 1
    legacy = Path(shutil.copytree(model, tmp / "models" / str(n[0])))
    torch.save(load_file(legacy / "model.safetensors"), legacy / "pytorch_model.bin",
               _use_new_zipfile_serialization=False)
    (legacy / "model.safetensors").unlink()
    attacks.append(Attack("bad config.json values", "--allow-pickle on a legacy torch.save file",
                          cli("chat", "hi", "--model", legacy, "--allow-pickle", "--max-new-tokens", "2"),
                          "accept", "tokens"))
    attacks.append(Attack("bad config.json values", "Engine.load, vocab_size 1e12", snippet(
        "import sys; from engine import Engine, ModelError\n"
        "try: Engine.load(sys.argv[1], device='cpu')\n"
        "except ModelError as e: print('refused:', e); sys.exit(2)", huge_vocab), "refuse",
        "vocab_size must be"))

    # -- bad chat templates (transformers' path: the test model; light loading: the bundled demo model)
    templates = {"strftime_now('%Y' * 10**7)": "{{ strftime_now('%Y' * 10**7) }}",
                 "nested range(100000) loops": "{% for i in range(100000) %}{% for j in range(100000) %}"
                                               "{% endfor %}{% endfor %}x",
                 "renders to an empty string": "{% if false %}x{% endif %}",
                 "doubles a namespace string": "{% set ns = namespace(s='x') %}{% for i in range(40) %}"
                                               "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
                 "center(10**9)": "{{ 'x'|center(10**9) }}", "raise_exception": "{{ raise_exception('no!') }}",
                 "does not compile": "{% for %}"}
    demo = ROOT / "resources" / "demo" / "model"
    for what, source in templates.items():
        for path, base in (("transformers", model), ("light", demo)):
            n[0] += 1
            folder = Path(shutil.copytree(base, tmp / "models" / str(n[0])))
            (folder / "chat_template.jinja").write_text(source)  # where both save it, ahead of tokenizer_config
            chat("bad chat templates", f"{what} ({path})", None, "the chat template of", "refuse", model_dir=folder)

    # -- zip bombs by size and by count
    bomb = zip_folder(alpha, tmp / "inputs" / "size_bomb.zip")
    with zipfile.ZipFile(bomb, "a", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.bin", bytes(256 << 20))
    add("zip bombs", "one member of 256 MiB of zeros", bomb, "zip bomb guard")
    zero = adapter_copy("zero")
    save_file({k: torch.zeros(v.shape[0], v.shape[1] * 64) if "lora_A" in k else torch.zeros(v.shape[0] * 64,
                                                                                              v.shape[1])
               for k, v in load_file(alpha / "adapter_model.safetensors").items()}, zero / "adapter_model.safetensors")
    count = tmp / "inputs" / "count_bomb.zip"
    with zipfile.ZipFile(count, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(200):
            for f in zero.iterdir():
                zf.write(f, f"z{i}/{f.name}")
    add("zip bombs", "200 zero-weight adapters, each under 1 MiB", count, "zip bomb guard")

    # -- odd member names
    for what, member in {"a:b": "notes/a:b", "C:x (drive-relative)": "C:x", "backslashes": "notes\\x.txt",
                         "unicode": "notes/ünï🦊.txt"}.items():
        add("odd member names", f"member {what}", zip_folder(alpha, tmp / "inputs" / f"odd{n[0]}.zip", extra=[
            (member, b"harmless")]), "added", "accept")
        n[0] += 1
    long = tmp / "inputs" / "long_names.zip"
    with zipfile.ZipFile(long, "w") as zf:
        for f in alpha.iterdir():
            zf.write(f, f"{'🦊' * 90}/{f.name}")
            zf.write(f, f"short/{f.name}")
    add("odd member names", "a folder name of 360 bytes", long, "bytes long in UTF-8")

    # -- the kinds that held
    outside = tmp / "inputs" / "evil.txt"
    for what, member in {"../evil.txt": "../evil.txt", "absolute": str(outside), "C:/evil": "C:/evil"}.items():
        add("zip-slip", what, zip_folder(alpha, tmp / "inputs" / f"slip{n[0]}.zip", extra=[(member, b"owned")]),
            "points outside the archive", holes=[("a file written outside", outside.exists)])
        n[0] += 1
    link = zip_folder(alpha, tmp / "inputs" / "zip_symlink.zip")
    with zipfile.ZipFile(link, "a") as zf:
        info = zipfile.ZipInfo("examples.txt")
        info.external_attr = 0o120777 << 16  # a symbolic link member whose "content" is its target
        zf.writestr(info, str(secret))
    add("zip symlinks", "examples.txt as a link member to a secret", link, "added", "accept")
    truncated = zip_folder(alpha, tmp / "inputs" / "truncated.zip")
    truncated.write_bytes(truncated.read_bytes()[:400])
    add("truncated / encrypted zips", "truncated", truncated, "cannot read the zip archive")
    encrypted = zip_folder(alpha, tmp / "inputs" / "encrypted.zip")
    data = bytearray(encrypted.read_bytes())
    for sig in (b"PK\x03\x04", b"PK\x01\x02"):  # set the "encrypted" flag bit of every member
        at = 0
        while (at := data.find(sig, at)) >= 0:
            data[at + (6 if sig == b"PK\x03\x04" else 8)] |= 1
            at += 4
    encrypted.write_bytes(bytes(data))
    add("truncated / encrypted zips", "encrypted", encrypted, "cannot read")
    lying = adapter_copy("lying")
    blob = (lying / "adapter_model.safetensors").read_bytes()
    size = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + size])
    key = next(k for k in header if k != "__metadata__")
    header[key]["shape"] = [header[key]["shape"][0], header[key]["shape"][1] * 1000]
    new = json.dumps(header).encode()
    (lying / "adapter_model.safetensors").write_bytes(len(new).to_bytes(8, "little") + new + blob[8 + size:])
    add("lying safetensors headers", "a shape 1000x the data", lying, "corrupt or truncated safetensors")
    marker = tmp / "pickle_ran"
    evil = adapter_copy("pickled")
    (evil / "adapter_model.safetensors").unlink()
    (evil / "adapter_model.bin").write_bytes(pickle_bomb(marker))
    add("pickle", "pickle-only weights, library add", evil, "pickle-only weights are refused",
        holes=[("a pickle ran", marker.exists)])
    attacks.append(Attack("pickle", "Engine.add_adapter(allow_pickle=True) on a malicious pickle", snippet(
        "import sys; from engine import Engine, AdapterError\ne = Engine.load(sys.argv[1], device='cpu')\n"
        "try: e.add_adapter(sys.argv[2], allow_pickle=True)\n"
        "except AdapterError as x: print('refused:', x); sys.exit(1)", model, evil), "refuse", "weights_only=True",
        holes=[("a pickle ran", marker.exists)]))
    return attacks, mounts


def pickle_bomb(marker: Path) -> bytes:
    import pickle

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    return pickle.dumps({"x": Evil()})


COLUMNS = ["refused clearly", "accepted safely", "traceback", "hang", "data lost", "security hole", "unexpected"]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--timeout", type=float, default=60.0, help="seconds before an attack counts as a hang")
    p.add_argument("--keep", help="build the inputs here and keep them (default: a temp folder, removed)")
    args = p.parse_args()
    tmp = Path(args.keep or tempfile.mkdtemp(prefix="hostile_"))
    tmp.mkdir(parents=True, exist_ok=True)
    attacks, mounts = build(tmp)
    print(f"{len(attacks)} attacks, inputs in {tmp}; a full disk: "
          f"{'a real tmpfs and' if tmp / 'full' in mounts else 'only'} injected ENOSPC; a read-only library: "
          f"{'a real read-only mount' if any(a.kind == 'read-only library' for a in attacks) else 'not run (cannot mount)'}",
          flush=True)
    try:
        for a in attacks:
            run(a, args.timeout)
            print(f"{a.outcome:16s} {a.seconds:5.1f}s  {a.kind}: {a.name} | {a.detail[:150]}", flush=True)
    finally:
        for m in reversed(mounts):
            subprocess.run(["umount", str(m)], capture_output=True)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    kinds = list(dict.fromkeys(a.kind for a in attacks))
    print("\n| kind | attacks tried | " + " | ".join(COLUMNS) + " |")
    print("|---|---:|" + "---:|" * len(COLUMNS))
    for kind in [*kinds, None]:
        rows = [a for a in attacks if kind is None or a.kind == kind]
        counts = [sum(a.outcome == c for a in rows) for c in COLUMNS]
        print(f"| {kind or '**all**'} | {len(rows)} | " + " | ".join(map(str, counts)) + " |")
    bad = sum(a.outcome in COLUMNS[2:] for a in attacks)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
