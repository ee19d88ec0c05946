"""The decode step, gpt-fast style: prefill once, then one small function per token, compiled on CUDA.

A token's state (the last token, its cache slot, the tokens seen for the repetition penalty) lives in
device buffers that the step advances itself, so on CUDA a token costs the host one CUDA-graph replay and
one read of the new token. The graph is captured by hand around the Inductor-compiled step: torch.compile's
own CUDA graphs ("reduce-overhead") copy inputs and check their trees in Python on every call, which cost
~0.6 ms per token at batch 1 on an H200 (the step itself is 2-5 ms).
"""
from dataclasses import dataclass

import torch

from .sampling import sample


def prefill(model, ids, input_pos, pad, seen, params, greedy: bool):
    # ids: [B, T] prompt (left-padded); input_pos: [T] cache slots; pad: [B]
    logits = model(ids, input_pos, pad)[:, -1].float()
    return sample(logits, seen, params, greedy)


def decode_one_token(model, cur, input_pos, pad, seen, params, greedy: bool):
    # cur: [B, 1] last token; input_pos: [1] its cache slot -> next token [B]
    logits = model(cur, input_pos, pad)[:, -1].float()
    return sample(logits, seen, params, greedy)


@dataclass
class _State:
    """One batch size's decode buffers; every captured graph of that batch size reads and writes these."""
    tok: torch.Tensor               # [B, 1] last token
    pos: torch.Tensor               # [1] its cache slot
    pad: torch.Tensor               # [B] left padding per row
    params: torch.Tensor            # [4] sampling settings
    seen: torch.Tensor | None       # [B, V] bool, tokens in the context (repetition penalty only)


class Decoder:
    """Decode steps for one model: `begin` after the prefill, then `step` per token -> the new tokens."""

    def __init__(self, device: torch.device, compiled: bool | None = None):
        self.device = device
        self.graphs = device.type == "cuda" if compiled is None else compiled
        self._fn = _compile() if self.graphs else decode_one_token
        self._states: dict[tuple, _State] = {}    # (rows, penalty) -> buffers
        self._captured: dict[tuple, torch.cuda.CUDAGraph] = {}
        self._state = None

    def begin(self, first, pos: int, pad, seen, params):
        """first: [B] tokens from the prefill, to be written at cache slot `pos`."""
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
        self._state = st

    def step(self, model, greedy: bool, variant=()) -> list[int]:
        """One token for every row -> the new tokens on the host. `variant` names what else a captured
        graph depends on (the adapter bank's gathered slot buffers); the model's caches are checked here."""
        st = self._state
        if not self.graphs:
            _advance(self._fn, model, st, greedy)
            return st.tok.view(-1).tolist()
        key = ((st.tok.shape[0], st.seen is not None), greedy, model.cache_version, *variant)
        graph = self._captured.get(key)
        if graph is None:
            graph = self._capture(model, st, greedy, key)
        graph.replay()
        return st.tok.view(-1).tolist()  # the one device-to-host transfer per step

    def _capture(self, model, st, greedy, key):
        # graphs of reallocated caches point at freed memory: drop them
        self._captured = {k: g for k, g in self._captured.items() if k[2] == model.cache_version}
        saved = (st.tok.clone(), st.pos.clone(), None if st.seen is None else st.seen.clone())
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(2):  # compiles (first time per shape) and warms cuBLAS outside the capture
                _advance(self._fn, model, st, greedy)
                _restore(st, saved)  # the warm-up's KV write at `pos` is redone by the real step
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            _advance(self._fn, model, st, greedy)  # recorded, not run: the state is still as begin() left it
        self._captured[key] = graph
        return graph


def _advance(fn, model, st: _State, greedy: bool):
    nxt = fn(model, st.tok, st.pos, st.pad, st.seen, st.params, greedy)   # [B]
    st.tok.copy_(nxt[:, None])
    st.pos.add_(1)
    if st.seen is not None:
        st.seen.scatter_(1, st.tok, True)


def _restore(st: _State, saved):
    st.tok.copy_(saved[0])
    st.pos.copy_(saved[1])
    if st.seen is not None:
        st.seen.copy_(saved[2])


def _compile():
    import torch._dynamo  # here, not at the top: importing it costs ~1 s, and the CPU path never compiles

    # Each (batch, cache length, greedy, penalty) combination is its own static graph: never go dynamic.
    torch._dynamo.config.automatic_dynamic_shapes = False
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    return torch.compile(decode_one_token, fullgraph=True)


def cache_len(n: int) -> int:
    """KV-cache slots for a request of n tokens: power-of-two buckets from 256, so few graphs get captured."""
    return max(256, 1 << (n - 1).bit_length())
