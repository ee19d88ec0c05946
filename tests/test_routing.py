"""Sentence-level routing in generation: the router runs before the first token and after every sentence end,
on the context its policy builds, the engine switches exactly there (fusing only the adapters' share when the
base model is in the mix), and pin / mute / fixed-mix overrides are honoured."""
import pytest
import torch

from engine import BASE, DoneEvent, Engine, GenerationSettings, RoutingEvent, SwitchboardError, TokenEvent
from engine.context import POLICIES, context_text, router_context
from engine.router import Router

TOPICS = {"alpha": "cat dog horse cow sheep goat", "beta": "add sum plus minus times divide",
          "gamma": "code python function loop class", "delta": "paris london rome berlin tokyo"}
MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def routed(llama_dir, llama_adapters):
    eng = Engine.load(llama_dir, device="cpu")
    for name, path in llama_adapters.items():
        eng.add_adapter(path, name=name)
    examples = {n: [f"{w} {v} question {i}" for i in range(12) for w, v in zip(t.split(), t.split()[::-1])]
                for n, t in TOPICS.items()}
    eng.router = Router.train(examples, seed=0, epochs=30)
    return eng


def stream_with_ends(eng, **kw):
    """A sampled stream (seeded) that has at least two sentence ends, recording every switch the engine makes
    as (TokenEvents seen so far, mix)."""
    switches = []
    apply_mix = eng.apply_mix
    for seed in range(20):
        events, switches[:] = [], []
        eng.apply_mix = lambda mix, rows=1: (switches.append((sum(isinstance(e, TokenEvent) for e in events), mix)),
                                             apply_mix(mix, rows))
        try:
            for ev in eng.generate(MESSAGES, max_new_tokens=80, ignore_eos=True, temperature=1.0, seed=seed, **kw):
                events.append(ev)
        finally:
            eng.apply_mix = apply_mix
        if sum(isinstance(e, TokenEvent) and e.sentence_end for e in events[:-2]) >= 2:
            return events, switches, seed
    pytest.fail("no seed gave two sentence ends")


def test_routing_before_first_token_and_after_every_sentence_end(routed):
    events, switches, _ = stream_with_ends(routed, top_p=0.9)
    assert isinstance(events[0], RoutingEvent) and isinstance(events[-1], DoneEvent)
    tokens_seen, text = 0, ""
    routings = []
    for i, ev in enumerate(events):
        if isinstance(ev, RoutingEvent):
            assert i == 0 or events[i - 1].sentence_end  # only at the start or right after a sentence end
            context = router_context("turn", MESSAGES, text)  # the default policy: the current turn
            expected = routed.router.route(context, top_p=0.9)
            assert ev.selected == pytest.approx(expected.selected) and ev.probs == pytest.approx(expected.probs)
            assert ev.context == context_text(context) == ("hello\n" + text if text else "hello")
            assert ev.sentence == len(routings) and ev.latency_ms >= 0
            routings.append((tokens_seen, ev.selected))
        elif isinstance(ev, TokenEvent):
            if ev.sentence_end and i < len(events) - 2:
                assert isinstance(events[i + 1], RoutingEvent)  # every sentence end is followed by routing
            tokens_seen += 1
            text += ev.text
    # the engine switched exactly at the routing points (and nowhere else), to the routed mix's adapters: before
    # the step that reads the sentence's last token, which is queued before that token's events are handed out
    assert [(t, m or {}) for t, m in switches] == [(max(t - 1, 0), {k: w for k, w in m.items() if k != BASE})
                                                   for t, m in routings]


def test_mute_pin_and_fixed_mix(routed):
    first = next(iter(routed.generate(MESSAGES, max_new_tokens=1)))
    top = max(first.probs, key=first.probs.get)
    events, _, _ = stream_with_ends(routed, top_p=0.99, muted=[top], pinned=["delta"] if top != "delta" else ["gamma"])
    pinned = "delta" if top != "delta" else "gamma"
    for ev in events:
        if isinstance(ev, RoutingEvent):
            assert top not in ev.selected and pinned in ev.selected
            assert sum(ev.selected.values()) == pytest.approx(1.0)
    fixed = [e for e in routed.generate(MESSAGES, mix={"beta": 0.5, "gamma": 0.5}, max_new_tokens=30)
             if isinstance(e, RoutingEvent)]
    assert fixed and all(e.selected == {"beta": 0.5, "gamma": 0.5} and e.probs == {} for e in fixed)


def test_exclude_mid_reply_takes_effect_at_the_next_sentence(routed):
    _, _, seed = stream_with_ends(routed, mix={"alpha": 0.5, "beta": 0.5})
    gen = routed.generate(MESSAGES, mix={"alpha": 0.5, "beta": 0.5}, max_new_tokens=80, ignore_eos=True,
                          temperature=1.0, seed=seed)
    seen = []
    for ev in gen:
        if isinstance(ev, RoutingEvent):
            seen.append(ev.selected)
            if len(seen) == 1:
                routed.exclude("alpha")  # as the UI thread would, while the first sentence is generated
    routed._excluded.clear()
    assert seen[0] == {"alpha": 0.5, "beta": 0.5}
    assert all(s == {"beta": 1.0} for s in seen[1:]) and len(seen) >= 3



def test_routing_context_policy_reaches_the_router(routed):
    """GenerationSettings.routing_context picks what the router reads; the RoutingEvent says what that was."""
    chat = [{"role": "user", "content": "cat dog horse"}, {"role": "assistant", "content": "sheep."},
            {"role": "user", "content": "add sum plus"}]
    for policy in POLICIES:
        seen = []
        events = routed.generate(chat, GenerationSettings(routing_context=policy), max_new_tokens=1,
                                 route=lambda context, k: seen.append(context) or {"alpha": 1.0})
        first = next(e for e in events if isinstance(e, RoutingEvent))
        assert seen[0] == router_context(policy, chat, "") and first.context == context_text(seen[0])
    assert router_context("turn", chat, "") == [("add sum plus", 1.0)]
    assert router_context("history", chat, "") == [("cat dog horse\nsheep.\nadd sum plus", 1.0)]
    assert router_context("decayed", chat, "") == [("cat dog horse\nsheep.", 0.3), ("add sum plus", 1.0)]
    assert router_context("sentence", chat, "One. Two.") == [("add sum plus\nTwo.", 1.0)]
    assert router_context("turn", chat, "One. Two.") == [("add sum plus\nOne. Two.", 1.0)]
    with pytest.raises(SwitchboardError, match="routing_context must be one of turn, sentence, decayed, history"):
        GenerationSettings(routing_context="everything")


def test_base_share_fuses_only_the_adapters_share(routed):
    """A mix with the base model in it writes the adapters' deltas at their own weights; the base model alone is
    the plain model."""
    applied = []
    apply_mix = routed.apply_mix
    routed.apply_mix = lambda mix, rows=1: (applied.append(mix), apply_mix(mix, rows))
    try:
        for mix, fused in (({"alpha": 0.6, BASE: 0.4}, {"alpha": 0.6}), ({BASE: 1.0}, None)):
            applied.clear()
            events = list(routed.generate(MESSAGES, route=lambda _c, _k, m=mix: m, max_new_tokens=2))
            assert [e.selected for e in events if isinstance(e, RoutingEvent)][0] == mix
            assert applied[0] == fused
    finally:
        routed.apply_mix = apply_mix
    base = routed.logits([1, 2, 3], None)
    half = routed.logits([1, 2, 3], {"alpha": 0.6})
    full = routed.logits([1, 2, 3], {"alpha": 1.0})
    assert not torch.allclose(half, base) and not torch.allclose(half, full)
