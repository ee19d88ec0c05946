"""Sampling presets: built-in and user presets of temperature, top-k, sampling top-p and repetition penalty,
checked by GenerationSettings' rules, saved atomically; a damaged presets file is reported and left alone."""
import pytest

from app.presets import BUILTIN, Preset, Presets
from engine.errors import SwitchboardError
from engine.generation import GenerationSettings


@pytest.fixture
def presets(tmp_path):
    return Presets(tmp_path / "presets.json")


def test_built_in_presets_and_the_default_is_precise(presets):
    assert [p.name for p in presets.all()] == ["Precise", "Balanced", "Creative"]
    assert presets.matching(GenerationSettings()).name == "Precise"  # a new conversation starts on Precise
    balanced = presets.get("balanced")
    assert balanced.builtin and balanced.temperature > 0 and 0 < balanced.sample_top_p < 1
    assert presets.matching(GenerationSettings(temperature=0.3)) is None  # "Custom"


def test_a_preset_sets_sampling_and_leaves_routing_and_stopping_alone(presets):
    mine = GenerationSettings(top_p=0.5, max_adapters=2, max_new_tokens=64, stop=("END",), seed=7)
    applied = presets.get("Creative").apply(mine)
    creative = presets.get("Creative")
    assert (applied.temperature, applied.top_k, applied.sample_top_p, applied.repetition_penalty) == \
        (creative.temperature, creative.top_k, creative.sample_top_p, creative.repetition_penalty)
    assert (applied.top_p, applied.max_adapters, applied.max_new_tokens, applied.stop, applied.seed) == \
        (0.5, 2, 64, ("END",), 7)
    assert presets.matching(applied) == creative


def test_user_presets_are_saved_listed_replaced_and_deleted(presets, tmp_path):
    presets.save("zesty", GenerationSettings(temperature=0.9, top_k=20))
    presets.save(" Mild ", GenerationSettings(temperature=0.2, repetition_penalty=1.2, top_p=0.3))
    again = Presets(tmp_path / "presets.json")  # another run of the app
    assert [p.name for p in again.all()] == ["Precise", "Balanced", "Creative", "Mild", "zesty"]
    mild = again.get("MILD")
    assert (mild.temperature, mild.repetition_penalty, mild.builtin) == (0.2, 1.2, False)
    assert again.matching(GenerationSettings(temperature=0.2, repetition_penalty=1.2)) == mild  # routing apart
    again.save("mild", GenerationSettings(temperature=0.4))  # same name, any case: replaced
    assert [p.name for p in again.all()].count("mild") == 1 and again.get("Mild").temperature == 0.4
    again.delete("Zesty")
    assert [p.name for p in Presets(tmp_path / "presets.json").all()] == ["Precise", "Balanced", "Creative", "mild"]
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, nothing left over


def test_bad_presets_are_refused_by_name(presets):
    with pytest.raises(SwitchboardError, match="temperature must be 0"):
        Preset("hot", temperature=-1.0, top_k=0, sample_top_p=1.0, repetition_penalty=1.0)
    with pytest.raises(SwitchboardError, match="sample_top_p must be in"):
        Preset("wide", temperature=1.0, top_k=0, sample_top_p=1.5, repetition_penalty=1.0)
    with pytest.raises(SwitchboardError, match="needs a name"):
        presets.save("  ", GenerationSettings())
    with pytest.raises(SwitchboardError, match="'Balanced' is a built-in preset: save under another name"):
        presets.save("balanced", GenerationSettings(temperature=0.1))
    with pytest.raises(SwitchboardError, match="built-in preset and cannot be deleted"):
        presets.delete("Precise")
    with pytest.raises(SwitchboardError, match="no preset 'nope'; presets: Precise, Balanced, Creative"):
        presets.get("nope")
    assert [p.name for p in presets.all()] == [p.name for p in BUILTIN]


@pytest.mark.parametrize("content, says", [
    (b"{not json", "Expecting property name"),
    (b'{"format": "lora-switchboard-presets", "version": 1, "presets": [{"name": "\\ud800", "temperature": 1, '
     b'"top_k": 0, "sample_top_p": 1, "repetition_penalty": 1}]}', "surrogates not allowed"),
    (b'{"format": "something-else"}', "not a LoRA Switchboard presets file"),
    (b'{"format": "lora-switchboard-presets", "version": 9, "presets": []}', "presets format version 9"),
    (b'{"format": "lora-switchboard-presets", "version": 1, "presets": [{"name": "x", "temperature": -2, '
     b'"top_k": 0, "sample_top_p": 1, "repetition_penalty": 1}]}', "temperature must be 0"),
    (b'{"format": "lora-switchboard-presets", "version": 1, "presets": [{"name": "x"}]}', "missing"),
])
def test_a_damaged_presets_file_is_reported_and_left_alone(presets, content, says):
    presets.path.write_bytes(content)
    assert [p.name for p in presets.all()] == ["Precise", "Balanced", "Creative"]  # the built-ins still work
    assert presets.problem.startswith(str(presets.path)) and says in presets.problem
    with pytest.raises(SwitchboardError, match="fix or move the file before changing presets"):
        presets.save("new", GenerationSettings(temperature=0.5))
    assert presets.path.read_bytes() == content
