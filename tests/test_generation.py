"""GenerationSettings: defaults once, bad values refused with the field's name, overrides checked."""
import pytest

from engine.errors import SwitchboardError
from engine.generation import GenerationSettings


def test_defaults_and_lists_become_tuples():
    g = GenerationSettings(pinned=["a"], stop=["\n\n"], enabled=["a", "b"])
    assert (g.top_p, g.temperature, g.max_new_tokens) == (0.8, 0.0, 256)
    assert g.pinned == ("a",) and g.stop == ("\n\n",) and g.enabled == ("a", "b")
    hash(g)  # frozen and hashable: usable as a key


@pytest.mark.parametrize("field,value", [("top_p", 0.0), ("top_p", 5.0), ("max_adapters", 0),
                                         ("temperature", -1.0), ("top_k", -1), ("sample_top_p", 0.0),
                                         ("repetition_penalty", 0.0), ("max_new_tokens", 0)])
def test_bad_values_are_refused_by_name(field, value):
    with pytest.raises(SwitchboardError, match=field):
        GenerationSettings(**{field: value})


def test_with_overrides_and_refuses_unknown_names():
    g = GenerationSettings().with_(temperature=0.7)
    assert g.temperature == 0.7 and g.top_p == 0.8
    with pytest.raises(SwitchboardError, match="tempreature"):
        GenerationSettings().with_(tempreature=0.7)
