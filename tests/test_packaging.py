"""Packaging: the wheel works installed outside the source tree; icons, desktop entry and AppStream metadata are valid.

The wheel test builds from a copy of the package folders (what a clean clone holds), installs it with --no-deps
into a fresh venv that sees this environment's torch/Qt (a .pth file), and runs `switchboard` from a
temporary folder, so nothing can come from the source tree."""
import json
import os
import shutil
import site
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

from app.commands.install_desktop_entry import desktop_entry, exec_arg, launcher
from app.gui import app_icon
from app.icon import APP_ID, SIZES

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11")
ROOT = Path(__file__).resolve().parents[1]
ICONS = ROOT / "resources" / "icons"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
DEMO = ROOT / "resources" / "demo"
DEMO_TASK = DEMO / "tasks" / "reverse.jsonl"  # letter-exact answers: the demo's character-level model gets them


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])  # IHDR width, height


def desktop_keys(text: str) -> dict:
    lines = text.splitlines()
    assert lines[0] == "[Desktop Entry]"
    return dict(line.split("=", 1) for line in lines[1:] if line)


def setuptools_major() -> int:
    try:
        return int(version("setuptools").split(".")[0])
    except PackageNotFoundError:
        return 0


def site_dirs() -> list[str]:
    """Where this environment's packages live: its site-packages (a venv's own, and the base interpreter's when
    the venv was made with --system-site-packages), and the user's when Python reads it."""
    dirs = site.getsitepackages()
    if site.ENABLE_USER_SITE and os.path.isdir(site.getusersitepackages()):
        dirs.append(site.getusersitepackages())
    return dirs


def relative_files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


# --- the installed wheel -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """-> (venv, bin_dir, run): the wheel installed into a fresh venv; run(*args) runs its `switchboard` (or
    another `program` of bin_dir) from a temp cwd, without PYTHONPATH."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, src / name)
    for package in ("app", "engine", "ui", "resources"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    # this environment's setuptools when it can build the project (77: PEP 639 `license = "SPDX"`), saving a
    # download; else pip fetches one from PyPI into an isolated build environment
    offline = ["--no-index", "--no-build-isolation"] if setuptools_major() >= 77 else []
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *offline, str(src), "-w", str(tmp / "dist")],
                   check=True)
    wheel, = (tmp / "dist").glob("*.whl")
    venv = tmp / "venv"
    # no pip inside (saves seconds): this environment's pip, run by the venv's python, installs into the venv
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    bin_dir = venv / ("Scripts" if sys.platform == "win32" else "bin")
    # the venv sees this environment's packages (torch, Qt, pip) after its own: a .pth file in its site-packages
    # names them. Not --system-site-packages: from inside a venv that gives the base interpreter's packages,
    # which lack torch when the tests run in a venv
    purelib = subprocess.run([str(bin_dir / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "test-environment.pth").write_text("\n".join(site_dirs()) + "\n", encoding="utf-8")
    # --ignore-installed: the venv sees this environment's site-packages, where CI's own `pip install .` already
    # put this project; without it pip calls the requirement satisfied and installs nothing into the venv
    subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    "--ignore-installed", str(wheel)], check=True)
    cwd = tmp / "elsewhere"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def run(*args, program="switchboard"):
        return subprocess.run([str(bin_dir / program), *args], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=300)

    return venv, bin_dir, run


@pytest.mark.slow
def test_installed_version_comes_from_package_metadata(installed):
    _, _, run = installed
    out = run("--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"switchboard {PROJECT['version']}"


@pytest.mark.slow
def test_installed_app_uses_this_environments_torch(installed):
    """Run from a venv, the wheel's venv must see that venv's torch, not the base interpreter's (or none)."""
    import torch

    _, _, run = installed
    out = run("-c", "import torch; print(torch.__file__)", program="python")
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()) == Path(torch.__file__)


@pytest.mark.slow
def test_installed_package_holds_icons_and_demo_outside_the_source_tree(installed):
    venv, _, run = installed
    out = run("-c", "import resources; print(resources.__file__)", program="python")
    assert out.returncode == 0, out.stderr
    package = Path(out.stdout.strip()).parent
    assert venv in package.parents, package
    assert relative_files(package / "icons") == relative_files(ICONS)
    if DEMO.is_dir():
        assert relative_files(package / "demo") == relative_files(DEMO)


@pytest.mark.slow
def test_installed_chat_answers_a_demo_task(installed):
    if not (DEMO / "model" / "config.json").is_file():
        pytest.skip("resources/demo is not built yet (python packaging/build_demo.py)")
    _, _, run = installed
    example = json.loads(DEMO_TASK.read_text(encoding="utf-8").splitlines()[0])
    out = run("chat", "--device", "cpu", example["prompt"])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == example["response"], out.stderr
    assert "demo model" in out.stderr


@pytest.mark.slow
def test_installed_desktop_entry_starts_the_installed_script(installed, tmp_path):
    _, bin_dir, run = installed
    out = run("install-desktop-entry", "--prefix", str(tmp_path))
    assert out.returncode == 0, out.stderr
    share = tmp_path / "share"
    entry = share / "applications" / f"{APP_ID}.desktop"
    written = {Path(line.removeprefix("wrote ")) for line in out.stdout.splitlines()}
    assert entry in written and len(written) == len(SIZES) + 2
    assert desktop_keys(entry.read_text())["Exec"] == str(bin_dir / "switchboard")
    for n in SIZES:
        assert png_size(share / "icons" / "hicolor" / f"{n}x{n}" / "apps" / f"{APP_ID}.png") == (n, n)
    assert (share / "icons" / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg").read_bytes() == \
        (ICONS / "switchboard.svg").read_bytes()
    if shutil.which("desktop-file-validate"):
        check = subprocess.run(["desktop-file-validate", str(entry)], capture_output=True, text=True)
        assert check.returncode == 0 and not check.stdout.strip(), check.stdout


# --- icons -----------------------------------------------------------------------------------------------------------

def test_icon_pngs_have_their_sizes_and_the_icon_offers_them(qapp):
    for n in SIZES:
        assert png_size(ICONS / f"switchboard-{n}.png") == (n, n)
    sizes = {(s.width(), s.height()) for s in app_icon().availableSizes()}
    assert sizes == {(n, n) for n in SIZES}


def test_ico_and_icns_hold_every_size_as_png():
    ico = (ICONS / "switchboard.ico").read_bytes()
    reserved, kind, count = struct.unpack("<HHH", ico[:6])
    assert (reserved, kind) == (0, 1)
    entries = [struct.unpack("<BBBBHHII", ico[6 + 16 * i:22 + 16 * i]) for i in range(count)]
    assert sorted(e[0] or 256 for e in entries) == [n for n in SIZES if n <= 256]
    for width, *_, size, offset in entries:
        assert ico[offset:offset + 8] == b"\x89PNG\r\n\x1a\n"
        assert struct.unpack(">I", ico[offset + 16:offset + 20])[0] == (width or 256)
    icns = (ICONS / "switchboard.icns").read_bytes()
    assert icns[:4] == b"icns" and struct.unpack(">I", icns[4:8])[0] == len(icns)
    sizes, at = [], 8
    while at < len(icns):
        length = struct.unpack(">I", icns[at + 4:at + 8])[0]
        sizes.append(struct.unpack(">I", icns[at + 24:at + 28])[0])  # the PNG's width
        at += length
    assert at == len(icns) and sorted(sizes) == [16, 32, 64, 128, 256, 512]


# --- desktop entry and AppStream metadata ----------------------------------------------------------------------------

def test_packaged_desktop_file_is_the_generated_entry_for_the_switchboard_command():
    packaged = ROOT / "packaging" / f"{APP_ID}.desktop"
    assert packaged.read_text() == desktop_entry(["switchboard"])
    keys = desktop_keys(packaged.read_text())
    assert keys["Icon"] == APP_ID and keys["Type"] == "Application" and keys["Categories"].endswith(";")
    assert "switchboard" in PROJECT["scripts"]


@pytest.mark.parametrize("arg, expected", [
    ("/usr/bin/switchboard", "/usr/bin/switchboard"),
    ("/home/me/My Apps/switchboard", '"/home/me/My Apps/switchboard"'),
    ('/opt/a"b', '"/opt/a\\\\"b"'),           # quote escaped, then the backslash doubled (string-value escape)
    ("/opt/$HOME/x", '"/opt/\\\\$HOME/x"'),
    ("/opt/100%/x", "/opt/100%%/x"),           # a field code would otherwise start at %
])
def test_exec_arguments_are_quoted_per_the_desktop_entry_spec(arg, expected):
    assert exec_arg(arg) == expected


def test_launcher_is_the_frozen_executable_or_the_running_script(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert launcher() == [sys.executable]
    monkeypatch.delattr(sys, "frozen")
    script = tmp_path / "switchboard"
    script.write_text("")
    monkeypatch.setattr(sys, "argv", [str(script)])
    assert launcher() == [str(script)]
    monkeypatch.setattr(sys, "argv", ["pytest"])
    assert launcher() == [sys.executable, "-m", "app.cli"]


def test_metainfo_names_the_desktop_entry_binary_license_and_this_release():
    root = ET.parse(ROOT / "packaging" / f"{APP_ID}.metainfo.xml").getroot()
    assert root.tag == "component" and root.get("type") == "desktop-application"
    assert root.findtext("id") == APP_ID
    assert root.findtext("launchable") == f"{APP_ID}.desktop"
    assert root.find("launchable").get("type") == "desktop-id"
    assert root.findtext("provides/binary") in PROJECT["scripts"]
    assert root.findtext("project_license") == PROJECT["license"]
    assert root.findtext("metadata_license") == "CC0-1.0"
    assert PROJECT["version"] in [r.get("version") for r in root.iter("release")]
    assert root.findtext("name") and root.findtext("summary") and root.find("description/p") is not None


@pytest.mark.skipif(not shutil.which("appstreamcli"), reason="appstreamcli (AppStream) is not installed")
def test_metainfo_passes_appstream_validation():
    out = subprocess.run(["appstreamcli", "validate", "--no-net", str(ROOT / "packaging" / f"{APP_ID}.metainfo.xml")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
