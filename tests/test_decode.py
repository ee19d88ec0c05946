"""The decode path under real chats (CPU): sampled token frequencies follow softmax / top-k / top-p at a real
vocabulary size, a seed reproduces a run, and one decode object serves a growing conversation and batches of
other sizes — with Inductor's compiled layer, compiled once."""
import pytest
import torch

from engine import Engine, TokenEvent
from engine.decode import Decoder, attention_view, layer_step
from engine.sampling import Sampling, sample

from conftest import make_model_dir

V = 128_256  # Llama 3's vocabulary: the sizes where compiled sampling used to break


def fixed_logits(V):
    """A distribution with 12 likely tokens spread over the vocabulary and a long tail of unlikely ones."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(V, generator=g) - 8.0
    hot = torch.randperm(V, generator=g)[:12]
    logits[hot] = torch.linspace(2.0, -1.0, 12)
    return logits, hot


def expected(logits, temperature, top_k, top_p, seen=None, penalty=1.0):
    """The reference distribution, computed the textbook way in float64."""
    l = logits.double()
    if seen is not None:
        l = torch.where(seen, torch.where(l > 0, l / penalty, l * penalty), l)
    p = torch.softmax(l / temperature, -1)
    order = p.argsort(descending=True)
    keep = torch.zeros_like(p, dtype=torch.bool)
    ranked = p[order]
    n = int(((ranked.cumsum(0) - ranked) < top_p).sum())          # smallest prefix reaching top_p
    n = min(n, top_k) if top_k else n
    keep[order[:n]] = True
    p = torch.where(keep, p, 0.0)
    return p / p.sum()


def frequencies(logits, params, seen, draws, chunk):
    """Token frequencies over `draws` samples of one row of logits, `chunk` rows at a time."""
    V = logits.shape[0]
    counts = torch.zeros(V, dtype=torch.float64)
    torch.manual_seed(1)
    for _ in range(draws // chunk):
        rows = logits.expand(chunk, V).contiguous()
        tokens = sample(rows, None if seen is None else seen.expand(chunk, V), params, greedy=False)
        counts += torch.bincount(tokens, minlength=V)
    return counts / (draws // chunk * chunk)


def check(logits, hot, temperature, top_k, top_p, penalty, draws, chunk, tv):
    seen = None
    if penalty != 1.0:
        seen = torch.zeros(logits.shape[0], dtype=torch.bool)
        seen[hot[:3]] = True
    freq = frequencies(logits, Sampling(temperature, top_k, top_p, penalty).tensors("cpu"), seen, draws, chunk)
    ref = expected(logits, temperature, top_k, top_p, seen, penalty)
    assert freq[ref == 0].sum() == 0                       # nothing outside top-k / top-p is ever drawn
    # every token within 4.5 standard errors of its probability; the likely tokens and the tail (as one bucket)
    # within `tv` in total variation
    se = (ref * (1 - ref) / draws).sqrt()
    assert ((freq - ref).abs() <= 4.5 * se + 1e-4).all()
    tail = torch.ones_like(ref, dtype=torch.bool)
    tail[hot] = False
    buckets = lambda p: torch.cat([p[hot], p[tail].sum()[None]])  # noqa: E731
    assert 0.5 * (buckets(freq) - buckets(ref)).abs().sum() < tv


@pytest.mark.parametrize("temperature,top_k,top_p,penalty", [
    (1.0, 0, 1.0, 1.0), (0.7, 0, 1.0, 1.0), (1.0, 5, 1.0, 1.0), (1.0, 0, 0.8, 1.0), (0.7, 8, 0.9, 1.0),
    (1.0, 0, 1.0, 1.5)])
def test_sampled_frequencies_match_the_distribution(temperature, top_k, top_p, penalty):
    logits, hot = fixed_logits(2048)
    check(logits, hot, temperature, top_k, top_p, penalty, draws=20_000, chunk=5_000, tv=0.02)


def test_sampling_at_a_real_vocabulary_size():
    logits, hot = fixed_logits(V)
    check(logits, hot, 0.7, 8, 0.9, 1.3, draws=400, chunk=100, tv=0.1)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("m"), "llama", max_position_embeddings=2048)


def text(engine, messages, **kw):
    return "".join(e.text for e in engine.generate(messages, **kw) if isinstance(e, TokenEvent))


def test_a_seed_reproduces_a_sampled_reply(model_dir):
    eng = Engine.load(model_dir, device="cpu")
    msgs = [{"role": "user", "content": "hello there"}]
    kw = dict(max_new_tokens=40, ignore_eos=True, temperature=0.9, sample_top_p=0.9, top_k=40)
    a, b, c = text(eng, msgs, seed=3, **kw), text(eng, msgs, seed=3, **kw), text(eng, msgs, seed=4, **kw)
    assert a == b and a != c


def conversation_and_batches(eng):
    """A chat whose context crosses several attention views, then batches of 3 and 2 rows (one with gathered
    per-row mixes), then the chat again -> every reply's text."""
    out, msgs = [], []
    for i in range(4):
        msgs.append({"role": "user", "content": f"question {i}: " + "Sort the list 5, 3, 9, 1. " * 12})
        reply = text(eng, msgs, max_new_tokens=40, ignore_eos=True)
        msgs.append({"role": "assistant", "content": reply})
        out.append(reply)
    convs = [[{"role": "user", "content": c}] for c in ("hi there", "Reverse the word hello.", "house")]
    out += [r["text"] for r in eng.generate_batch(convs, max_new_tokens=24, ignore_eos=True)]
    mixes = [{"a": 1.0}, {"a": 0.5, "b": 0.5}] if eng.adapters else None
    out += [r["text"] for r in eng.generate_batch(convs[:2], mixes=mixes, max_new_tokens=24, ignore_eos=True)]
    msgs.append({"role": "user", "content": "and once more"})
    out.append(text(eng, msgs, max_new_tokens=30, ignore_eos=True))
    return out


def test_growing_conversation_and_other_batch_sizes_through_one_decoder(model_dir):
    eng = Engine.load(model_dir, device="cpu")
    decoder = eng.decoder
    views = set()
    launch = decoder.launch
    decoder.launch = lambda model, *a: views.add(attention_view(decoder._pos + 1, model.cache_shape[1])) or \
        launch(model, *a)
    out = conversation_and_batches(eng)
    assert eng.decoder is decoder and all(out)
    assert len(views) >= 3  # the chat crossed attention views 256 -> 512 -> 1024


@pytest.mark.slow
def test_compiled_decode_compiles_once_and_equals_eager(model_dir, tmp_path):
    """Inductor's decode layer, on the CPU: after warm-up no conversation length, batch size or gathered mix
    compiles again, and the tokens equal the eager step's."""
    from torch._dynamo.utils import counters

    from conftest import make_adapter_dir

    adapters = {n: make_adapter_dir(tmp_path / n, model_dir, seed=i) for i, n in enumerate("ab")}
    engines = []
    for compiled in (True, False):
        eng = Engine.load(model_dir, device="cpu")
        eng.decoder = Decoder(eng.device, compiled=compiled, graphs=False)
        for name, path in adapters.items():
            eng.add_adapter(path, name=name)
        engines.append(eng)
    compiled, eager = engines
    before = counters["stats"]["unique_graphs"]
    compiled.warmup()
    assert compiled.decoder.fns[0] is not layer_step  # warm-up's reply already ran compiled
    graphs = counters["stats"]["unique_graphs"]
    assert graphs - before == 6  # the layer (one row or more, with or without gathered slots), the head (one, more)
    try:
        assert conversation_and_batches(compiled) == conversation_and_batches(eager)
        assert counters["stats"]["unique_graphs"] == graphs
    finally:
        from torch._inductor.async_compile import shutdown_compile_workers
        shutdown_compile_workers()  # Inductor's worker pool, started by the compile
