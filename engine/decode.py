"""The decode step, gpt-fast style: prefill once, then one small function per token.

A token's state (the last token, its cache slot, the tokens seen for the repetition penalty) lives in device
buffers that the step advances itself, so on CUDA a token costs the host one CUDA-graph replay and one read of
the new token. The graph is captured by hand: torch.compile's own CUDA graphs ("reduce-overhead") copy inputs
and check their trees in Python on every call, which cost ~0.6 ms per token at batch 1 on an H200.

One compile per model load. Inductor compiles one decoder layer, which every layer of the model runs, and the
head, with the batch, the KV-cache length and the attention view as symbolic sizes: a conversation that grows
or a batch of another size only captures a new CUDA graph (milliseconds), never a new compile. That is four
graphs of the layer (one row or several, with or without gathered LoRA slots; a size of 1 is a graph of its
own) and two of the head.
Sampling (a sort, a cumsum and an exponential race over 128K-152K logits; the argmax a Triton kernel on CUDA,
engine/argmax.py) runs eagerly inside the captured graph: Inductor cannot compile those reductions at real
vocabulary sizes ("NYI TritonSplitDimKernel reductions"), and as library kernels they take microseconds.

Cold start: `Decoder.compile` builds those graphs in a background thread, on a scratch copy of one layer (the
live model's weights and LoRA slots change under the engine thread). Until it is done the step is captured
from the eager layer, so a reply can start at once, at lower speed; the next reply runs compiled.
"""
import copy
import threading
from dataclasses import dataclass

import torch

from .sampling import sample

VIEW_MIN = 256


def attention_view(n: int, slots: int) -> int:
    """Cache slots a step attends over when n are filled: powers of two from 256, so few graphs get captured
    and the work follows the conversation's length; always below `slots`, and (as the allocation) a multiple
    of transformer.SPLITS (Transformer.setup_caches)."""
    return min(max(VIEW_MIN, 1 << (n - 1).bit_length()), slots - 1)


def cache_len(n: int) -> int:
    """KV-cache slots to ask for a request of n tokens: power-of-two buckets from 256, so caches seldom grow."""
    return max(VIEW_MIN, 1 << (n - 1).bit_length())


def prefill(model, ids, start: int, pad, seen, params, greedy: bool):
    # ids: [B, T] prompt tokens for cache slots start..start+T-1; pad: [B] left padding or None -> next token [B]
    logits = model(ids, start, pad, last_only=True)[:, -1].float()
    return sample(logits, seen, params, greedy)


def layer_step(layer, xr, cos, sin, mask, input_pos, k, v):
    # xr: the residual stream x and the previous layer's MLP output r, each (B, 1, dim); cos, sin: (B, 1, hd);
    # mask: (B, 1, 1, S); k, v: (B, nkv, S_alloc, hd) -> (h, m) for the next layer, each (B, 1, dim).
    # x + r is added here, inside this layer's first norm kernel: added at the end of the previous layer it was
    # a kernel of its own after the MLP's matmul, 32 more launches per token at the 8B shape.
    x, r = xr
    return layer.halves(x + r, cos, sin, mask, input_pos, (k, v))


def head_step(norm, lm_head, xr):
    # xr: the last layer's (h, m), each (B, 1, dim) -> logits (B, 1, V) float32
    return lm_head(norm(xr[0] + xr[1])).float()


@dataclass
class _State:
    """One batch size's decode buffers; every captured graph of that batch size reads and writes these."""
    tok: torch.Tensor               # [B, 1] last token
    pos: torch.Tensor               # [1] its cache slot
    pad: torch.Tensor               # [B] left padding per row
    params: torch.Tensor            # [4] sampling settings
    seen: torch.Tensor | None       # [B, V] bool, tokens in the context (repetition penalty only)


def _advance(fns, model, st: _State, view: int, greedy: bool):
    """One token for every row, written back into the state: embed, layers, head, sample."""
    layer_fn, head_fn = fns
    embed = model.model.embed_tokens
    x = embed(st.tok.to(embed.weight.device))                                    # (B, 1, dim)
    cos, sin = model.rope_at(st.pos[None, :] - st.pad[:, None])                 # (B, 1, hd)
    mask = model.attention_mask(st.pos, view, st.pad)                           # (B, 1, 1, view)
    xr = model.run_layers((x, torch.zeros_like(x)), cos, sin, mask, st.pos, layer_fn)
    logits = head_fn(model.model.norm, model.lm_head, xr)[:, -1]                # (B, V)
    st.tok.copy_(sample(logits, st.seen, st.params, greedy)[:, None])
    st.pos.add_(1)
    if st.seen is not None:
        st.seen.scatter_(1, st.tok, True)


def _restore(st: _State, saved):
    st.tok.copy_(saved[0])
    st.pos.copy_(saved[1])
    if st.seen is not None:
        st.seen.copy_(saved[2])


class Decoder:
    """Decode steps for one model: `begin` after the prefill, then `step` per token -> the new tokens.
    compiled: use Inductor's layer (default: on CUDA); graphs: CUDA graphs (default: on CUDA)."""

    def __init__(self, device: torch.device, compiled: bool | None = None, graphs: bool | None = None):
        self.device = device
        self.compiled = device.type == "cuda" if compiled is None else compiled
        self.graphs = device.type == "cuda" if graphs is None else graphs
        self.fns = (layer_step, head_step)          # the eager step until the compiled one is ready
        self.compile_error: Exception | None = None
        self._ready = None                          # the compiled (layer, head), set by the compile thread
        self._thread: threading.Thread | None = None
        self._states: dict[tuple, _State] = {}      # (rows, penalty) -> buffers
        self._captured: dict[tuple, torch.cuda.CUDAGraph] = {}
        self._state = None
        self._pos = 0                               # host copy of the state's cache slot

    # ---- compiling ------------------------------------------------------------------------------
    def compile(self, model, gathered=(), wait: bool = True, progress=None):
        """Compile the layer and head for `model` in a background thread (all six graphs); `wait` joins it.
        gathered: the layer's modules (qkv_proj, ...) that carry LoRA slots in the gathered strategy (the
        bank's targets; another set compiles once more when it is first used). progress(done, total) is
        called from that thread."""
        if not self.compiled or self._ready is not None or self._thread is not None:
            if wait and self._thread is not None:
                self._thread.join()
            return
        scratch = _scratch_layer(model)
        a = model.args
        dev, dtype = model.device, model.dtype
        lora = [m for name, m in scratch.named_modules() if name.rpartition(".")[2] in gathered]
        variants = [(rows, slots) for rows in (1, 2) for slots in ((False, True) if lora else (False,))]

        def work():
            try:
                fns = _compiled_fns()
                stream = torch.cuda.Stream(dev) if dev.type == "cuda" else None
                with torch.inference_mode(), torch.cuda.stream(stream):
                    for i, (rows, slots) in enumerate(variants):
                        for m in lora:
                            m.slots = _scratch_slots(m, rows, dev, dtype) if slots else None
                        x = torch.zeros(rows, 1, a.dim, dtype=dtype, device=dev)
                        cos, sin = (torch.zeros(rows, 1, a.head_dim, dtype=dtype, device=dev) for _ in range(2))
                        mask = torch.ones(rows, 1, 1, VIEW_MIN, dtype=torch.bool, device=dev)
                        k, v = (torch.zeros(rows, a.n_kv_heads, VIEW_MIN + 1, a.head_dim, dtype=dtype, device=dev)
                                for _ in range(2))
                        pos = torch.zeros(1, dtype=torch.long, device=dev)
                        xr = fns[0](scratch, (x, torch.zeros_like(x)), cos, sin, mask, pos, k, v)
                        fns[1](model.model.norm, model.lm_head, tuple(t.to(model.device) for t in xr))
                        if progress is not None:
                            progress(i + 1, len(variants))
                    if stream is not None:
                        stream.synchronize()
                self._ready = fns
            except Exception as e:  # noqa: BLE001 - the eager step keeps serving; warmup(wait=True) reports it
                self.compile_error = e

        self._thread = threading.Thread(target=work, name="switchboard-compile", daemon=True)
        self._thread.start()
        if wait:
            self._thread.join()

    @property
    def compiling(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ---- decoding -------------------------------------------------------------------------------
    def begin(self, first, pos: int, pad, seen, params):
        """first: [B] tokens from the prefill, to be written at cache slot `pos`."""
        if self._ready is not None and self.fns is not self._ready:  # the compiled step is ready: use it from now
            self.fns, self._captured = self._ready, {}
        rows = first.shape[0]
        key = (rows, seen is not None)
        st = self._states.get(key)
        if st is None:
            st = self._states[key] = _State(
                torch.empty(rows, 1, dtype=torch.long, device=self.device),
                torch.empty(1, dtype=torch.long, device=self.device), torch.empty_like(pad),
                torch.empty_like(params), None if seen is None else torch.empty_like(seen))
        st.tok.copy_(first[:, None])
        st.pos.fill_(pos)
        st.pad.copy_(pad)
        st.params.copy_(params)
        if seen is not None:
            st.seen.copy_(seen)
            st.seen.scatter_(1, st.tok, True)
        self._state, self._pos = st, pos

    def step(self, model, greedy: bool, variant=()) -> list[int]:
        """One token for every row -> the new tokens on the host. `variant` names what else a captured
        graph depends on (the adapter bank's gathered slot buffers); the model's caches are checked here."""
        self.launch(model, greedy, variant)
        return self.read()

    def launch(self, model, greedy: bool, variant=()):
        """step() up to its read: on a GPU the step is queued and the host is free until read()."""
        st = self._state
        view = attention_view(self._pos + 1, model.cache_shape[1])
        self._pos += 1
        if not self.graphs:
            _advance(self.fns, model, st, view, greedy)
            return
        key = self._key(model, st, view, greedy, variant)
        graph = self._captured.get(key) or self._capture(model, st, view, greedy, key)
        graph.replay()

    def read(self) -> list[int]:
        return self._state.tok.view(-1).tolist()  # the one device-to-host transfer per step

    def capture_views(self, model, variant=(), greedy=(True, False)):
        """Capture now, for the current batch, the graphs of every attention view the caches allow (warm-up:
        a conversation that grows then never waits for a capture)."""
        if not self.graphs:
            return
        st, n = self._state, VIEW_MIN
        while n < model.cache_shape[1]:
            view = attention_view(n, model.cache_shape[1])
            for g in greedy:
                key = self._key(model, st, view, g, variant)
                if key not in self._captured:
                    self._capture(model, st, view, g, key)
            n = view + 1

    def drop_graphs(self):
        """Forget the captured graphs and the memory they hold (after an out-of-memory error)."""
        self._captured = {}

    def _key(self, model, st, view, greedy, variant):
        return (st.tok.shape[0], st.seen is not None, view, greedy, model.cache_version, *variant)

    def _capture(self, model, st, view, greedy, key):
        # graphs of reallocated caches point at freed memory: drop them
        self._captured = {k: g for k, g in self._captured.items() if k[4] == model.cache_version}
        saved = (st.tok.clone(), st.pos.clone(), None if st.seen is None else st.seen.clone())
        rng = torch.cuda.get_rng_state(self.device)  # the warm-ups' draws must not shift a seeded reply
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(2):  # warms cuBLAS and the allocator outside the capture
                _advance(self.fns, model, st, view, greedy)
                _restore(st, saved)  # the warm-up's KV write at `pos` is redone by the real step
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: the compile thread may allocate and load kernels while this thread captures
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            _advance(self.fns, model, st, view, greedy)  # recorded, not run: the state is still as begin() left it
        torch.cuda.set_rng_state(rng, self.device)
        self._captured[key] = graph
        return graph


def _compiled_fns():
    import torch._dynamo  # here, not at the top: importing it costs ~1 s, and the CPU path never compiles

    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    layer_c = torch.compile(layer_step, fullgraph=True)
    head_c = torch.compile(head_step, fullgraph=True)

    def layer_fn(layer, xr, cos, sin, mask, input_pos, k, v):
        _dynamic((xr[0], 0), (xr[1], 0), (cos, 0), (sin, 0), (mask, 0), (mask, 3), (k, 0), (k, 2), (v, 0), (v, 2))
        return layer_c(layer, xr, cos, sin, mask, input_pos, k, v)

    def head_fn(norm, lm_head, xr):
        _dynamic((xr[0], 0), (xr[1], 0))
        return head_c(norm, lm_head, xr)

    return layer_fn, head_fn


def _dynamic(*dims):
    """Sizes that vary (rows, cache length, attention view) compile as symbols; a size of 1 stays its own graph."""
    from torch._dynamo import mark_dynamic

    for t, dim in dims:
        if t.shape[dim] > 1:
            mark_dynamic(t, dim)


def _scratch_layer(model):
    """Layer 0 copied with zeroed tensors of its own (same module types, shapes, dtypes, devices), its LoRA slots
    cleared: what the compile thread traces and runs instead of the live model."""
    layer = model.model.layers[0]
    memo = {}
    for m in layer.modules():
        for p in m.parameters(recurse=False):
            memo[id(p)] = torch.nn.Parameter(torch.zeros_like(p), requires_grad=False)
        for b in m.buffers(recurse=False):
            memo[id(b)] = torch.zeros_like(b)
        if getattr(m, "slots", None) is not None:
            memo[id(m.slots)] = None
    return copy.deepcopy(layer, memo)


def _scratch_slots(lora_linear, rows, device, dtype):
    """Gathered slots for a scratch LoRALinear: 2 rows of width 2 (both symbolic in the compiled graph)."""
    base = lora_linear.base_layer
    a = torch.zeros(max(rows, 2), 2, base.in_features, dtype=dtype, device=device)
    b = torch.zeros(max(rows, 2), base.out_features, 2, dtype=dtype, device=device)
    _dynamic((a, 0), (a, 1), (b, 0), (b, 2))
    return a, b
