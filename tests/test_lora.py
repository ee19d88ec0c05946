"""Fused multi-LoRA equals PEFT (float32): merged and gathered strategies, after switches, per batch row."""
import copy

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from engine import AdapterError, Engine

MIXES = [{"alpha": 0.5, "beta": 0.3, "delta": 0.2}, {"gamma": 1.0}, None, {"beta": 0.6, "gamma": 0.4},
         {"alpha": 0.25, "beta": 0.25, "gamma": 0.25, "delta": 0.25}]


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.fixture(scope="module")
def peft_model(llama_dir, llama_adapters):
    base = AutoModelForCausalLM.from_pretrained(llama_dir, dtype=torch.float32).eval()
    names = list(llama_adapters)
    pm = PeftModel.from_pretrained(base, llama_adapters[names[0]], adapter_name=names[0])
    for n in names[1:]:
        pm.load_adapter(llama_adapters[n], adapter_name=n)
    return pm.eval()


@pytest.fixture(scope="module")
def hf_base(llama_dir):
    return AutoModelForCausalLM.from_pretrained(llama_dir, dtype=torch.float32).eval()


def reference_logits(hf_base, peft_model, ids, mix):
    """Base weights plus the weighted sum of PEFT's own per-module delta weights."""
    model = copy.deepcopy(hf_base)
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, module in peft_model.base_model.model.named_modules():
            if not hasattr(module, "get_delta_weight"):
                continue
            for adapter, w in (mix or {}).items():
                if adapter in module.lora_A:
                    modules[name].weight += w * module.get_delta_weight(adapter)
        return model(ids).logits


def engine_with(llama_dir, llama_adapters, strategy="auto", **load):
    eng = Engine.load(llama_dir, device="cpu", strategy=strategy, **load)
    for name, path in llama_adapters.items():
        eng.add_adapter(path, name=name)
    return eng


@pytest.mark.parametrize("strategy", ["merged", "gathered"])
def test_mix_equals_peft_delta_weights_after_switches(strategy, llama_dir, llama_adapters, hf_base, peft_model):
    eng = engine_with(llama_dir, llama_adapters, strategy)
    assert eng.adapters == list(llama_adapters)
    ids = torch.randint(0, hf_base.config.vocab_size, (2, 13), generator=torch.Generator().manual_seed(0))
    base = hf_base(ids).logits
    for mix in MIXES + MIXES[::-1]:
        ref = reference_logits(hf_base, peft_model, ids, mix)
        got = eng.logits(ids, mix)
        assert rel_err(got, ref) <= 1e-5, (strategy, mix)
        if mix:
            assert rel_err(got, base) > 1e-3  # the adapters really change the output
    assert eng.bank.mode == ("merged" if strategy == "merged" else "gathered") or MIXES[0] is None


def test_merged_equals_peft_cat_combination(llama_dir, llama_adapters, hf_base, peft_model):
    eng = engine_with(llama_dir, llama_adapters, "merged")
    ids = torch.randint(0, hf_base.config.vocab_size, (1, 11), generator=torch.Generator().manual_seed(1))
    mix = {"alpha": 0.7, "delta": 0.3}
    peft_model.add_weighted_adapter(list(mix), list(mix.values()), "cat_mix", combination_type="cat")
    peft_model.set_adapter("cat_mix")
    with torch.no_grad():
        ref = peft_model(ids).logits
    peft_model.delete_adapter("cat_mix")
    assert rel_err(eng.logits(ids, mix), ref) <= 1e-5


def test_heterogeneous_batch_equals_peft_adapter_names(llama_dir, llama_adapters, peft_model):
    eng = engine_with(llama_dir, llama_adapters, "auto")
    names = list(llama_adapters)
    ids = torch.randint(0, 300, (len(names) + 1, 9), generator=torch.Generator().manual_seed(2))
    rows = names + ["__base__"]
    with torch.no_grad():
        ref = peft_model(ids, adapter_names=rows).logits
    got = eng.logits(ids, [{n: 1.0} for n in names] + [None])
    assert eng.bank.mode == "gathered"
    assert rel_err(got, ref) <= 1e-5


def test_heterogeneous_mixes_per_row(llama_dir, llama_adapters, hf_base, peft_model):
    eng = engine_with(llama_dir, llama_adapters, "auto")
    ids = torch.randint(0, 300, (3, 7), generator=torch.Generator().manual_seed(3))
    mixes = [MIXES[0], MIXES[3], MIXES[4]]
    got = eng.logits(ids, mixes)
    for r, mix in enumerate(mixes):
        assert rel_err(got[r], reference_logits(hf_base, peft_model, ids[r:r + 1], mix)[0]) <= 1e-5


def test_add_remove_and_refusals_leave_bank_unchanged(llama_dir, llama_adapters, tmp_path):
    eng = engine_with(llama_dir, llama_adapters, "auto")
    ids = torch.randint(0, 300, (1, 8), generator=torch.Generator().manual_seed(4))
    before = eng.logits(ids, {"beta": 1.0}).clone()
    with pytest.raises(AdapterError, match="already loaded"):
        eng.add_adapter(llama_adapters["beta"], name="beta")
    with pytest.raises(AdapterError):
        eng.add_adapter(tmp_path / "missing")
    with pytest.raises(AdapterError, match="unknown adapter 'zeta'"):
        eng.logits(ids, {"zeta": 1.0})
    assert eng.adapters == list(llama_adapters)
    assert torch.equal(eng.logits(ids, {"beta": 1.0}), before)
    eng.remove_adapter("alpha")  # shifts beta down a slot: its output must not change
    assert eng.adapters == ["beta", "gamma", "delta"]
    assert rel_err(eng.logits(ids, {"beta": 1.0}), before) <= 1e-6
    eng.add_adapter(llama_adapters["alpha"], name="alpha2")
    assert eng.adapters == ["beta", "gamma", "delta", "alpha2"]
    with pytest.raises(AdapterError, match="no adapter named"):
        eng.remove_adapter("alpha")


def test_generate_with_fixed_mix_and_routing_callback(llama_dir, llama_adapters):
    from engine import RoutingEvent, TokenEvent

    eng = engine_with(llama_dir, llama_adapters, "auto")
    msgs = [{"role": "user", "content": "hello"}]
    calls = []

    def route(context, sentence):
        calls.append((sentence, context))
        return {"alpha": 1.0} if sentence % 2 == 0 else {"beta": 0.5, "gamma": 0.5}

    events = list(eng.generate(msgs, route=route, max_new_tokens=60, ignore_eos=True))
    routing = [e for e in events if isinstance(e, RoutingEvent)]
    ends = [i for i, e in enumerate(events) if isinstance(e, TokenEvent) and e.sentence_end]
    assert [s for s, _ in calls] == list(range(len(routing)))
    # a routing event comes first and right after every sentence end (except one at the very end)
    assert isinstance(events[0], RoutingEvent)
    for i in ends:
        assert isinstance(events[i + 1], RoutingEvent) or i + 1 >= len(events) - 2
    assert [r.selected for r in routing] == [route(None, s) for s in range(len(routing))]
    # a fixed mix reports the same selection for every sentence
    fixed = [e for e in eng.generate(msgs, mix={"delta": 1.0}, max_new_tokens=40) if isinstance(e, RoutingEvent)]
    assert all(r.selected == {"delta": 1.0} for r in fixed)
