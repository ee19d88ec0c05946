"""Engine: a local model, its adapter bank, an optional router, and the sentence-routed decode loop."""
import json
import threading
import time
from pathlib import Path

import torch

from .adapter_io import read_adapter
from .chat import build_prompt
from .context import context_text, router_context
from .decode import Decoder, cache_len, prefill
from .errors import SwitchboardError
from .events import BASE, DoneEvent, RoutingEvent, TokenEvent
from .generation import GenerationSettings
from .lora import AdapterBank
from .model import load_model
from .sampling import Sampling
from .text import Detokenizer, SentenceSplitter

WARM_WAIT = 0.002  # s: a route takes 1-2 ms on the host; warming it only where the GPU leaves that time idle


class Engine:
    def __init__(self, model, tokenizer, hf_config, model_dir: Path, strategy: str = "auto"):
        self.model, self.tokenizer, self.hf_config = model, tokenizer, hf_config
        self.model_dir = model_dir
        self.model_name = model_dir.name
        self.device, self.dtype = model.device, model.dtype   # where the head runs, the compute dtype
        self.quantize = model.quantize   # None | "int8" | "int4": weight-only, see engine/quant.py
        if self.quantize and strategy == "merged":
            raise SwitchboardError(f"strategy 'merged' writes adapters into float weights; this {self.quantize} model "
                                   "applies them unmerged (strategy 'gathered' or 'auto')")
        self.bank = AdapterBank(model)
        self.router = None
        self.strategy = strategy                # "auto" | "merged" | "gathered"
        self.context_len = hf_config.max_position_embeddings
        self.eos_ids = _eos_ids(tokenizer, model_dir, hf_config)
        self.decoder = Decoder(self.device)
        self._cancel = threading.Event()
        self._cancel_rows: set[int] = set()     # rows of the running generate_rows to stop (see cancel)
        self._excluded: set[str] = set()        # adapters being removed: never routed again (see exclude)
        self._mix_key = None                    # the mix now in force, to skip switches that change nothing
        # a chat's KV kept across turns: the tokens in row 0's cache slots 0..n-1, how many of them were the
        # last prompt, and what they were computed under (bank version, strategy)
        self._cached: list[int] = []
        self._cached_prompt = 0
        self._cached_key = None
        self._notes: set[str] = set()           # memory choices the running reply reports (DoneEvent stats)

    @classmethod
    def load(cls, model_dir, device: str = "auto", dtype: str = "auto", allow_pickle: bool = False,
             strategy: str = "auto", quantize: str | None = "auto") -> "Engine":
        """model_dir: a Hugging Face folder or a .gguf file. quantize: None, "int8", "int4", or "auto" (a GGUF
        file's own precision: int4 for 4-bit files, int8 for 5- to 8-bit ones; none for float weights)."""
        model, tokenizer, cfg = load_model(model_dir, device, dtype, allow_pickle, quantize)
        return cls(model, tokenizer, cfg, Path(model_dir).expanduser(), strategy)

    # ---- adapters and router ---------------------------------------------------------------------
    @property
    def adapters(self) -> list[str]:
        return list(self.bank.names)

    def module_shapes(self) -> dict[str, tuple[int, int]]:
        """Targetable linear layers: HF module name -> (in_features, out_features)."""
        return self.model.args.module_shapes()

    def add_adapter(self, path, name=None, allow_pickle: bool = False) -> dict:
        """Read, validate and upload a PEFT adapter (folder or .zip). AdapterError leaves the bank unchanged."""
        lw = read_adapter(path, self.module_shapes(), name=name, allow_pickle=allow_pickle)
        self.bank.add(lw)
        self._mix_key = None
        return {"name": lw.name, **self.bank.info[lw.name]}

    def remove_adapter(self, name: str):
        """Remove `name` from the bank. A router trained with it keeps routing among the others (its share
        is spread over them, as when it is muted) until it is retrained."""
        self.bank.remove(name)
        self._excluded.discard(name)
        self._mix_key = None

    def exclude(self, name: str):
        """Thread-safe: from the next sentence on, `name` is in no mix (a removal asked for mid-reply takes
        effect after the current sentence; the worker removes it from the bank when the reply ends)."""
        self._excluded.add(name)

    def load_router(self, path):
        from .router import Router

        self.router = Router.load(path, adapters=self.adapters)
        return self.router

    # ---- switching -------------------------------------------------------------------------------
    def apply_mix(self, mix, rows: int = 1):
        """mix: None (base), {name: weight} for every row, or a list with one dict (or None) per row."""
        if isinstance(mix, list):
            if len(mix) != rows:
                raise SwitchboardError(f"{len(mix)} mixes for a batch of {rows} rows")
            if all(m == mix[0] for m in mix):
                mix = mix[0]
        key = repr(mix) if isinstance(mix, list) else ("one", tuple(sorted((mix or {}).items())), rows)
        if key == self._mix_key:
            return
        if isinstance(mix, list) or (mix and self._use_gathered()):
            self.bank.gather(mix if isinstance(mix, list) else [mix] * rows)
        else:
            self.bank.merge(mix)
        self._mix_key = key

    def _use_gathered(self) -> bool:
        if self.quantize:
            return True  # integer weights cannot take a merge
        if self.strategy != "auto":
            return self.strategy == "gathered"
        if self.device.type != "cuda" or self.bank.mode == "merged":
            return False
        w0 = sum(g.weight.numel() * g.weight.element_size() for gs in self.bank.kinds.values() for g in gs
                 if g.W0 is None)
        if w0 <= 0.9 * free_bytes(self.device):
            return False
        self._notes.add(f"the adapters run unmerged (gathered): a copy of the targeted weights ({w0 / 2**30:.1f} "
                        "GiB) does not fit in GPU memory")
        return True

    # ---- forward passes ----------------------------------------------------------------------------
    @torch.inference_mode()
    def logits(self, input_ids, mix=None) -> torch.Tensor:
        """[B, T] ids -> [B, T, V] float32 logits under `mix` (see apply_mix)."""
        ids = torch.as_tensor(input_ids, device=self.device)
        ids = ids[None] if ids.dim() == 1 else ids
        rows, T = ids.shape
        self.apply_mix(mix, rows)
        self.forget_kv()
        self.model.setup_caches(rows, cache_len(T))
        return self.model(ids).float()

    def cancel(self, row: int | None = None):
        """Thread-safe: the running generate() stops after the current token and ends with a DoneEvent.
        With `row`, only that row of the running generate_rows stops (stop_reason "cancel"); the others go on."""
        if row is None:
            self._cancel.set()
        else:
            self._cancel_rows.add(row)

    def generate(self, messages, settings: GenerationSettings | None = None, *, mix=None, route=None,
                 continue_reply: bool = False, **changes):
        """Stream one assistant reply: RoutingEvent before every sentence, TokenEvents, then a DoneEvent.
        `messages`: [{role, content}, ...], or a str: a raw prompt continued as it is (no chat template).
        continue_reply: the last message is the assistant's reply so far, which this one continues.

        `settings` (GenerationSettings; keyword `changes` override its fields) say how to route, sample and stop.
        The mix for each sentence comes from `mix` (fixed {name: weight}), else `route(context, sentence)` (a
        callback returning {name: weight} or a RoutingEvent; context: [(text, weight)] as engine/context.py builds it
        for `settings.routing_context`), else the loaded router, else the base model."""
        yield from self.generate_rows([messages], settings, mix=None if mix is None else [mix], route=route,
                                      continue_reply=continue_reply, **changes)

    def generate_batch(self, conversations, settings: GenerationSettings | None = None, *, mixes=None, route=None,
                       **changes) -> list[dict]:
        """Several conversations at once, each row with its own mix (a list of dicts) or its own routing.
        -> one dict per row: text, tokens, stop_reason, routing (list of RoutingEvent), stats."""
        out = [{"text": "", "tokens": 0, "stop_reason": None, "routing": []} for _ in conversations]
        for ev in self.generate_rows(conversations, settings, mix=mixes, route=route, **changes):
            row = out[ev.row]
            if isinstance(ev, TokenEvent):
                row["text"] += ev.text
            elif isinstance(ev, RoutingEvent):
                row["routing"].append(ev)
            else:
                row["tokens"], row["stop_reason"] = ev.stats["tokens"], ev.stats["stop_reason"]
                row["stats"] = ev.stats
        return out

    @torch.inference_mode()
    def generate_rows(self, conversations, settings: GenerationSettings | None = None, *, mix=None, route=None,
                      continue_reply: bool = False, **changes):
        g = (settings or GenerationSettings()).with_(**changes)
        if g.max_new_tokens >= self.context_len:
            raise SwitchboardError(f"max_new_tokens {g.max_new_tokens} leaves no room for the prompt: the model's "
                                   f"context holds {self.context_len} tokens")
        for m in mix or ():  # before any event: a bad fixed mix is refused, not routed and then refused
            self.bank.check(m or {})
        self._cancel.clear()
        self._cancel_rows.clear()
        self._notes = set()
        t_start = time.perf_counter()
        if g.seed is not None:
            torch.manual_seed(g.seed)
        prompts = [build_prompt(self.tokenizer, c, self.context_len - g.max_new_tokens, continue_reply)
                   for c in conversations]
        streams = [_Stream(self, c, p, g.stop, g.routing_context) for c, (p, _) in zip(conversations, prompts)]
        try:
            yield from self._generate(prompts, streams, g, *self._router_fn(route, g, mix), mix, t_start)
        except torch.cuda.OutOfMemoryError as e:
            # free what this reply allocated; the engine stays usable with a shorter context or a smaller batch
            self.model.drop_caches()
            self.decoder.drop_graphs()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            first = str(e).splitlines()[0] if str(e) else ""
            error = (f"GPU out of memory during the reply ({first}). Shorten the conversation, lower max new "
                     "tokens or use fewer rows; the model is still loaded.")
            for i, s in enumerate(streams):
                yield DoneEvent(row=i, stats={**self._stats(s, prompts[i], 0, 0.0, 0.0, t_start),
                                              "stop_reason": "error", "error": error})

    def _generate(self, prompts, streams, g: GenerationSettings, pick, routed, mix, t_start):
        rows, longest = len(prompts), max(len(ids) for ids, _ in prompts)
        sampling = Sampling(g.temperature, g.top_k, g.sample_top_p, g.repetition_penalty)
        dev = self.device
        mixes = [self._route_row(i, s, pick, mix) for i, s in enumerate(streams)]
        yield from (s.routing[-1] for s in streams)
        self.apply_mix(mixes if rows > 1 else mixes[0], rows)   # before the caches: W0 copies come first
        reuse = self._reusable(prompts[0][0]) if rows == 1 and g.reuse_cache else 0
        self.forget_kv()  # until this reply ends: one abandoned halfway leaves the cache half rewritten
        needed = longest + g.max_new_tokens
        self.model.setup_caches(rows, self._chat_slots(needed) if rows == 1 else min(cache_len(needed),
                                                                                          self.context_len))

        # left-pad the prompts; every row shares the cache slots, `pad` hides each row's padding
        pad = torch.tensor([longest - len(ids) for ids, _ in prompts], device=dev)
        ids = torch.tensor([[self.tokenizer.pad_token_id or 0] * (longest - len(p)) + p for p, _ in prompts],
                           device=dev)
        params = sampling.tensors(dev)
        seen = None
        if g.repetition_penalty != 1.0:
            seen = torch.zeros(rows, self.model.args.vocab_size, dtype=torch.bool, device=dev)
            for i, (p, _) in enumerate(prompts):
                seen[i, torch.tensor(p, device=dev)] = True

        t0 = time.perf_counter()
        nxt = prefill(self.model, ids[:, reuse:], reuse, pad if pad.any() else None, seen, params, sampling.greedy)
        tokens = nxt.tolist()
        ttft = (time.perf_counter() - t0) * 1000
        fed = []  # row 0's tokens whose KV the decode steps wrote after the prompt
        t_decode = time.perf_counter()
        self.decoder.begin(nxt, longest, pad, seen, params)
        # While a step runs on a GPU the host hands out the last token's events and, for one routed row, routes the
        # reply so far (the result unused) if the GPU kept it waiting more than WARM_WAIT the step before: between
        # two sentence ends the router's code and data leave the caches, and a route took 1.4-2.1 ms in an 8B chat
        # on an H200 host against 0.86 ms for the same contexts in a loop.
        warm = rows == 1 and routed and dev.type == "cuda"
        waited = 0.0
        for n in range(1, g.max_new_tokens + 1):
            rerouted, events = False, []
            for i, s in enumerate(streams):
                if s.done:
                    continue
                if tokens[i] in self.eos_ids and not g.ignore_eos:
                    s.finish("eos")
                else:
                    events += s.push(tokens[i], i)
                    if s.done:
                        continue
                    if n == g.max_new_tokens:
                        s.finish("length")
                    elif self._cancel.is_set() or i in self._cancel_rows:
                        s.finish("cancel")
                    elif s.sentence_ended:
                        mixes[i] = self._route_row(i, s, pick, mix)
                        events.append(s.routing[-1])
                        rerouted = True
            if all(s.done for s in streams):
                yield from events
                break
            if rerouted:
                t_switch = time.perf_counter()
                self.apply_mix(mixes if rows > 1 else mixes[0], rows)
                for s in streams:
                    s.switch_ms += (time.perf_counter() - t_switch) * 1000 / rows
            fed.append(tokens[0])
            self.decoder.launch(self.model, sampling.greedy, self.bank.graph_key())
            yield from events
            if warm and waited > WARM_WAIT:
                self.router.probs(streams[0].context())
            t_read = time.perf_counter()
            tokens = self.decoder.read()
            waited = time.perf_counter() - t_read
        elapsed = time.perf_counter() - t_decode
        if rows == 1:
            self._cached, self._cached_prompt, self._cached_key = prompts[0][0] + fed, len(prompts[0][0]), self._kv_key()
        for i, s in enumerate(streams):
            yield from s.close(i)
            yield DoneEvent(row=i, stats=self._stats(s, prompts[i], reuse if i == 0 else 0, ttft, elapsed,
                                                     t_start))

    def _stats(self, s, prompt, cached, ttft, elapsed, t_start) -> dict:
        decoded = max(s.tokens - 1, 0)
        return {"tokens": s.tokens, "prompt_tokens": len(prompt[0]), "cached_tokens": cached,
                "dropped_turns": prompt[1], "ttft_ms": ttft,
                "tokens_per_s": decoded / elapsed if elapsed > 0 and decoded else 0.0,
                "ms_per_token": elapsed * 1000 / decoded if decoded else 0.0, "stop_reason": s.stop_reason,
                "routing_ms": s.routing_ms, "switch_ms": s.switch_ms, "sentences": len(s.routing),
                "notes": sorted(self._notes), "total_s": time.perf_counter() - t_start}

    # ---- the KV cache across turns ------------------------------------------------------------------
    def forget_kv(self):
        """The next reply prefills its whole prompt (the caches are about to be written, or were, outside a
        one-row chat)."""
        self._cached = []

    def _kv_key(self):
        return self.bank.version, self.strategy

    def _reusable(self, prompt: list[int]) -> int:
        """Prompt tokens whose KV row 0's cache already holds: the longest common prefix with what it holds, when
        the new prompt goes on past the last prompt (a follow-up). A prefix that ends inside or at the end of
        the last prompt means an earlier turn was edited, the reply regenerated or old turns dropped: then
        nothing is reused. Earlier tokens keep the KV computed under the mixes in force when they were
        processed, the rule that also holds between the sentences of one reply."""
        if not self._cached or self._cached_key != self._kv_key():
            return 0
        n = 0
        for a, b in zip(prompt, self._cached):
            if a != b:
                break
            n += 1
        if n <= self._cached_prompt:
            return 0
        return min(n, len(prompt) - 1)  # the last prompt token is fed again: its logits start the reply

    def _chat_slots(self, needed: int) -> int:
        """Cache slots for a one-row chat: the whole context, so the cache is allocated once and kept across
        turns; on a GPU that cannot hold it, the most that fits (at least `needed`), and the reply says so."""
        if self.device.type != "cuda" or self.model.cache_shape[1] > self.context_len:
            return self.context_len
        a = self.model.args
        per_token = self.model.kv_bytes(1)
        held = self.model.cache_shape[0] * self.model.cache_shape[1] * per_token   # freed if reallocated
        # room for the prefill's activations of the longest prompt (~3 hidden, 3 MLP and 4 attention widths)
        activations = self.context_len * (3 * a.dim + 3 * a.intermediate_size + 4 * a.n_heads * a.head_dim) * 2
        fits = (free_bytes(self.device) + held - activations) // per_token
        if fits >= self.context_len:
            return self.context_len
        slots = max(needed, fits)
        self._notes.add(f"the KV cache holds {slots} of the model's {self.context_len} tokens: that is what "
                        "fits in GPU memory")
        return slots

    def _router_fn(self, route, g: GenerationSettings, mix):
        """-> (pick(context, sentence) -> a mix, or None; whether pick is the loaded router's)."""
        if route is not None or self.router is None or mix is not None:
            return route, False
        gone = self._excluded | (set(self.router.adapters) - set(self.adapters))  # removed since it was trained
        return (lambda context, _sentence: self.router.route(context, top_p=g.top_p, max_adapters=g.max_adapters,
                                                             pinned=[p for p in g.pinned if p not in gone],
                                                             muted=set(g.muted) | gone, enabled=g.enabled),
                True)

    def _route_row(self, row, stream, pick, fixed):
        t = time.perf_counter()
        context = stream.context()
        if fixed is not None:
            result = fixed[row] or {}
        elif pick is not None:
            result = pick(context, len(stream.routing))
        else:
            result = {}
        probs, selected = ({}, dict(result)) if isinstance(result, dict) else (result.probs, result.selected)
        kept = {k: w for k, w in selected.items() if k not in self._excluded}
        if kept != selected:  # a fixed or callback mix that names an adapter being removed
            total = sum(kept.values())
            selected = {k: w / total for k, w in kept.items()} if total > 0 else {}
        ms = (time.perf_counter() - t) * 1000
        stream.routing_ms += ms
        stream.routing.append(RoutingEvent(len(stream.routing), probs, selected, ms, row, context_text(context)))
        return {k: w for k, w in selected.items() if k != BASE} or None  # the base model's share: no delta

    def _short_replies(self):
        for sampled in (False, True):  # prefill, both samplers' first graphs, the KV cache of a chat
            for _ in self.generate([{"role": "user", "content": "Hello"}], mix={}, max_new_tokens=4,
                                   ignore_eos=True, temperature=0.7 if sampled else 0.0, reuse_cache=False):
                pass

    def warmup(self, wait: bool = True, progress=None) -> float:
        """Compile the decode step and capture a chat's graphs, so replies run at full speed and a growing
        conversation never waits. wait=False: return once a reply can start (on the eager step's graphs); the
        compile goes on in a background thread and the next reply after it ends runs compiled.
        progress(done, total) reports compiled graphs, from that thread. -> seconds spent here."""
        t = time.perf_counter()
        if not wait:  # the eager step's graphs first, while nothing else wants the interpreter
            self._short_replies()
        self.decoder.compile(self.model, self.bank.slot_modules(), wait=wait, progress=progress)
        if self.decoder.compile_error is not None:
            raise SwitchboardError(f"compiling the decode step failed: {self.decoder.compile_error}")
        if wait:
            self._short_replies()
            with torch.inference_mode():
                self.decoder.capture_views(self.model, self.bank.graph_key())
        if self.device.type == "cuda":  # the merge kernel's block sizes and switch graphs of mixes of 1-8 adapters
            for k in sorted({min(k, len(self.adapters)) for k in (1, 2, 3, 4, 8)} - {0}):
                self.apply_mix({name: 1 / k for name in self.adapters[:k]})
            self.apply_mix(None)
        self.forget_kv()
        return time.perf_counter() - t


class _Stream:
    """One row's text state: detokenizer, sentence splitter, stop strings, routing trace."""

    def __init__(self, engine, conversation, prompt_ids, stop, routing_context):
        self.detok = Detokenizer(engine.tokenizer, prefix_ids=prompt_ids[-8:])
        self.splitter = SentenceSplitter()
        self.stop = [s for s in stop if s]
        if isinstance(conversation, str):  # a raw prompt (text completion): the router reads it as the user's turn
            conversation = [{"role": "user", "content": conversation}]
        self.conversation, self.routing_context = conversation, routing_context
        self.text = ""          # generated text so far
        self.sent = 0           # characters of `text` already emitted
        self.tokens = 0
        self.routing: list[RoutingEvent] = []
        self.routing_ms = self.switch_ms = 0.0
        self.sentence_ended = False
        self.done, self.stop_reason = False, None

    def context(self) -> list[tuple[str, float]]:
        """What the router reads before the next sentence (engine/context.py)."""
        return router_context(self.routing_context, self.conversation, self.text)

    def push(self, token: int, row: int):
        self.tokens += 1
        piece = self.detok.push(token)
        self.sentence_ended = bool(self.splitter.feed(piece))
        self.text += piece
        hit = min((i for i in (self.text.find(s, max(0, self.sent - len(s))) for s in self.stop) if i >= 0),
                  default=-1)
        if hit >= 0:  # a stop string: emit what precedes it and end the row
            yield from self._emit(hit, row, False)
            self.text = self.text[:hit]
            self.finish("stop")
            return
        # hold back a tail that could still become a stop string
        hold = max((k for s in self.stop for k in range(1, len(s)) if self.text.endswith(s[:k])), default=0)
        yield from self._emit(len(self.text) - hold, row, self.sentence_ended)

    def _emit(self, upto, row, sentence_end):
        if upto > self.sent or sentence_end:
            yield TokenEvent(self.text[self.sent:upto], sentence_end, row)
            self.sent = upto

    def finish(self, reason):
        self.done, self.stop_reason = True, reason

    def close(self, row):
        if self.stop_reason != "stop":
            self.text += self.detok.flush()
            yield from self._emit(len(self.text), row, False)


def free_bytes(device) -> int:
    """Bytes this process can still allocate on a CUDA device: what the driver has free plus what torch's
    allocator holds unused, within torch.cuda.set_per_process_memory_fraction's limit."""
    free, total = torch.cuda.mem_get_info(device)
    allocated = torch.cuda.memory_allocated(device)
    unused = torch.cuda.memory_reserved(device) - allocated
    limit = torch.cuda.get_per_process_memory_fraction(device) * total - allocated
    return int(min(free + unused, limit))


def _eos_ids(tokenizer, model_dir: Path, hf_config) -> set[int]:
    if tokenizer is None:  # a benchmark model built from a shape: token ids only
        return set()
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    try:  # generation_config.json may name more end tokens (Llama 3: <|eot_id|> besides <|end_of_text|>)
        eos = json.loads((model_dir / "generation_config.json").read_text(encoding="utf-8")).get("eos_token_id")
    except (OSError, ValueError, AttributeError):  # none, or unreadable: the config's (a GGUF file's end tokens)
        eos = getattr(hf_config, "eos_token_id", None)
    return ids | {int(e) for e in (eos if isinstance(eos, list) else [eos]) if isinstance(e, int)}
