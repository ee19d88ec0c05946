"""The router (the paper's mini-MLP plugin): text -> probabilities over the bank's adapters -> top-p mix.

    featurizer (engine/features.py): hashed word + character n-grams, sparse
    -> EmbeddingBag(buckets, dim, sum)      layer 1: a linear map of the sparse features
    -> Linear(dim, hidden) -> Linear(hidden, hidden)   layers 2-3
    -> Linear(hidden, N adapters [+ base])  layer 4: the head, the only part a head-only retrain refits

Abstention: a router trained with `base=True` (the default) has one more class, BASE ("base model"), learnt from
generated general-chat prompts (engine/general_chat.py): small talk routes to the base model instead of to
whichever adapter is least unlikely. A class rather than a threshold on the top probability: it takes part in
top-p (the base model is one more choice, with a share of the mix and a bar in the chart), it needs no cut-off
calibrated per router, and on tests/bench_router.py it sent 95-97% of unseen general chat to the base model
where a threshold that already costs 1% of the task prompts sent 76-87% (docs/PERFORMANCE.md, "Abstention").

Saved as `x.safetensors` (weights) + `x.json` (adapter names in order, whether it has the base class, featurizer
settings, report, date). Version 1 files (no base class) still load.
"""
import contextlib
import hashlib
import json
import math
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from engine.atomic import write_bytes
from engine.errors import RouterError
from engine.events import BASE, RoutingEvent
from engine.features import Featurizer, is_count
from engine.general_chat import general_chat
from engine.topp import top_p_select

FORMAT = "lora-switchboard-router"
VERSION = 2                 # 2 added "base" (the base-model class); version 1 files have none
READS = (1, 2)

# Training recipe, tuned for few examples per adapter (~100) on tests/router_tasks.py; see docs/PERFORMANCE.md.
DIM, HIDDEN = 32, 256       # 2**17 buckets x 32 + 32x256 + 256x256 + 256xN: 4.3M parameters at N = 33
EMBED_INIT = 0.1            # std of the n-gram embeddings at init
DROPOUT = 0.2               # on hidden activations
FEATURE_DROP = 0.2          # share of a prompt's n-grams dropped per training step (augmentation)
LABEL_SMOOTHING = 0.1
WEIGHT_DECAY = 1e-4
LR = 3e-3
BATCH = 32
MIN_STEPS = 1500            # small example sets get more epochs, large ones fewer
MAX_EPOCHS = 100            # ... up to this many (tiny sets: ~100 steps at least)
HEAD_STEPS = 300            # full-batch steps of a head-only retrain (it takes about a second)
HEAD_WEIGHT_DECAY = 1e-2    # keeps a new adapter's row from claiming prompts the old rows are merely unsure of
MIN_BASE_EXAMPLES = 200     # the base class gets as many general-chat prompts as an adapter has examples on average,
                            # at least this many
MAX_WIDTH = 4096            # dim and hidden a saved router may declare (checked before anything is allocated)


class RouterNet(nn.Module):
    def __init__(self, buckets, n_out, dim=DIM, hidden=HIDDEN, dropout=0.0):
        super().__init__()
        self.embed = nn.EmbeddingBag(buckets, dim, mode="sum")
        self.embed_bias = nn.Parameter(torch.zeros(dim))
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.head = nn.Linear(hidden, n_out)
        self.drop = nn.Dropout(dropout)
        nn.init.normal_(self.embed.weight, std=EMBED_INIT)

    def features(self, idx, offsets, weights):
        """idx, weights: [K] (all samples' n-grams back to back); offsets: [B] -> hidden features [B, hidden]."""
        h = F.gelu(self.embed(idx, offsets, per_sample_weights=weights) + self.embed_bias)  # [B, dim]
        h = F.gelu(self.fc1(self.drop(h)))   # [B, hidden]
        h = F.gelu(self.fc2(self.drop(h)))   # [B, hidden]
        return self.drop(h)

    def forward(self, idx, offsets, weights):
        return self.head(self.features(idx, offsets, weights))  # logits [B, N]


class _Data:
    """Featurized prompts, stored flat so that a batch is gathered with a few numpy calls."""

    def __init__(self, featurizer, prompts, labels):
        feats = [featurizer(p) for p in prompts]
        self.sizes = np.array([len(i) for i, _ in feats], np.int64)  # [M]
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        self.idx = np.concatenate([i for i, _ in feats]) if feats else np.zeros(0, np.int64)
        self.w = np.concatenate([w for _, w in feats]) if feats else np.zeros(0, np.float32)
        self.labels = np.asarray(labels, np.int64)  # [M]

    def __len__(self):
        return len(self.labels)

    def batch(self, rows):
        """rows: sample indices -> (idx [K], offsets [B], weights [K]) tensors."""
        sizes = self.sizes[rows]
        take = np.concatenate([np.arange(s, s + n) for s, n in zip(self.starts[rows], sizes)]) if len(rows) else []
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        return (torch.from_numpy(self.idx[take]), torch.from_numpy(offsets.astype(np.int64)),
                torch.from_numpy(self.w[take]))


class Router:
    def __init__(self, net, featurizer, adapters, report, base=False):
        self.net = net.eval()
        self.featurizer = featurizer
        self._adapters = list(adapters)
        self.base = bool(base)  # has the BASE class (after the adapters)
        self._labels = self._adapters + [BASE] * self.base
        self._index = {a: i for i, a in enumerate(self._labels)}
        self.report = report
        self._offset0 = torch.zeros(1, dtype=torch.int64)

    @property
    def adapters(self):
        return list(self._adapters)

    @property
    def labels(self):
        """The router's choices in output order: the adapters, then BASE when it has the base class."""
        return list(self._labels)

    # ------------------------------------------------------------------ inference
    def probs(self, context):
        """Probabilities of the labels for `context`, a text or parts [(text, weight)] (each read to its last
        `max_words` words): float32 [L]."""
        idx, w = self.featurizer(context)
        # one thread: a sample is microseconds of work, and torch's pool cost more to wake than it saved (in a chat
        # on an H200 host with 16 threads: 2-12 ms per route; with one, 1.5-3 ms)
        with torch.inference_mode(), _threads(1):
            logits = self.net(torch.from_numpy(idx), self._offset0, torch.from_numpy(w))  # [1, L]
            return torch.softmax(logits[0], 0).numpy()

    def route(self, context, top_p=0.8, max_adapters=None, pinned=(), muted=(), enabled=None):
        """Pick the mix for the next sentence by top-p over the adapters and BASE (the base model; `max_adapters`
        counts it as one choice). Muted adapters (and those not in `enabled`, when given) are never selected, nor is
        BASE when muted; pinned ones always are (unless muted), scored max(prob, 1/len(selected)) before
        renormalising, and a pin rules out BASE: the user asked for that adapter."""
        t0 = time.perf_counter()
        raw = self.probs(context)  # [L]
        labels, index = self._labels, self._index
        unknown = [n for n in pinned if n not in index or n == BASE]
        if unknown:  # a pin cannot be honoured; unknown muted/enabled names are simply absent
            raise RouterError(f"cannot pin {unknown}: the router has no such adapter; its adapters: {self._adapters}")
        muted = set(muted)
        enabled = None if enabled is None else set(enabled) | {BASE}
        pins = [n for n in dict.fromkeys(pinned) if n not in muted and (enabled is None or n in enabled)]
        allowed = np.array([n not in muted and (enabled is None or n in enabled) and not (n == BASE and pins)
                            for n in labels])  # [L]
        selected = {}
        if allowed.any():
            q = np.where(allowed, raw.astype(np.float64), 0.0)
            q = q / q.sum() if q.sum() > 0 else allowed / allowed.sum()  # all allowed ~0: split evenly
            selected = {labels[i]: float(q[i]) for i in top_p_select(q, top_p, max_adapters)}
            selected.update({n: float(q[index[n]]) for n in pins})
            floor = 1.0 / len(selected)
            selected.update({n: max(selected[n], floor) for n in pins})
            total = sum(selected.values())
            selected = {n: s / total for n, s in selected.items()}
        return RoutingEvent(sentence=0, probs=dict(zip(labels, raw.tolist())), selected=selected,
                            latency_ms=(time.perf_counter() - t0) * 1e3)

    # ------------------------------------------------------------------ training
    @classmethod
    def train(cls, examples, *, base=True, tokenizer_dir=None, epochs=None, seed=0, holdout=0.1, progress=None,
              cancel=None):
        """Fit a router on {adapter: [prompt, ...]} (adapters in bank order), with the base-model class unless
        base=False. Returns None when `cancel()` became true (the caller keeps its old router)."""
        featurizer = Featurizer(tokenizer_dir=tokenizer_dir)
        return cls._fit(examples, base, featurizer, None, epochs, seed, holdout, progress, cancel)

    def retrain(self, examples, *, full=False, base=True, epochs=None, seed=0, holdout=0.1, progress=None,
                cancel=None):
        """A new router for a changed adapter list. Head-only (default, about a second): the featurizer, layers 1-3
        and the kept labels' head rows stay as they are; only rows for new adapters (and BASE, when this router has
        none) are fit. It cannot teach the frozen features new distinctions, so check report["accuracy"];
        full=True refits everything."""
        return Router._fit(examples, base, self.featurizer, None if full else self, epochs, seed, holdout, progress,
                           cancel)

    @staticmethod
    def _fit(examples, base, featurizer, old, epochs, seed, holdout, progress, cancel):
        adapters = list(examples)
        if not adapters:
            raise RouterError("no adapters to train the router on")
        if BASE in examples:
            raise RouterError(f"an adapter is named {BASE!r}, the router's name for the base model: rename it")
        empty = [a for a in adapters if not examples[a]]
        if empty:
            raise RouterError(f"no example prompts for adapter(s) {empty}")
        if base:
            n = max(MIN_BASE_EXAMPLES, round(sum(map(len, examples.values())) / len(adapters)))
            examples = {**examples, BASE: general_chat(n, seed)}
        classes = list(examples)  # the adapters, then BASE
        train_rows, held_rows = _split(examples, holdout, seed)
        prompts = [p for a in classes for p in examples[a]]
        labels = [i for i, a in enumerate(classes) for _ in examples[a]]
        with _threads(1), torch.random.fork_rng(devices=[]):  # seeded without disturbing the caller's RNG
            torch.manual_seed(seed)
            gen = torch.Generator().manual_seed(seed)
            data = _Data(featurizer, prompts, labels)
            if old is None:
                net = RouterNet(featurizer.buckets, len(classes), DIM, HIDDEN, DROPOUT)
                net = _train_full(net, data, train_rows, held_rows, epochs, gen, progress, cancel)
            else:
                net = _train_head(old, classes, data, train_rows, held_rows, epochs, progress, cancel)
            if net is None:
                return None
            report = _report(net, data, held_rows, classes, len(train_rows))
        return Router(net, featurizer, adapters, report, base)

    # ------------------------------------------------------------------ files
    def save(self, path):
        """Write `path` (safetensors weights) and its `.json` sidecar, each atomically."""
        path = Path(path)
        blob = save_safetensors({k: v.contiguous() for k, v in self.net.state_dict().items()})
        net = self.net
        sidecar = {"format": FORMAT, "version": VERSION, "adapters": self._adapters, "base": self.base,
                   "featurizer": self.featurizer.settings,
                   "net": {"dim": net.embed.embedding_dim, "hidden": net.fc1.out_features},
                   "report": self.report, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   "weights_sha256": hashlib.sha256(blob).hexdigest()}
        sidecar["settings_sha256"] = _settings_sha256(sidecar)
        write_bytes(path, blob)
        write_bytes(sidecar_path(path), json.dumps(sidecar, indent=1, ensure_ascii=False).encode())

    @classmethod
    def load(cls, path, adapters=None):
        """Load a saved router. `adapters`: the bank's adapter names in order; a router trained for another list
        is refused (RouterError says which names differ)."""
        path = Path(path)
        meta = read_sidecar(path)
        names = meta["adapters"]
        if adapters is not None and list(adapters) != names:
            raise RouterError(f"{path}: {_mismatch(names, list(adapters))}; retrain the router for this bank")
        try:
            blob = path.read_bytes()
        except OSError as e:
            raise RouterError(f"{path}: cannot read ({e})") from None
        if hashlib.sha256(blob).hexdigest() != meta["weights_sha256"]:
            raise RouterError(f"{path}: weights do not match {sidecar_path(path).name} (corrupt or half-written); "
                              "retrain the router")
        featurizer = Featurizer.from_settings(meta["featurizer"])
        dim, hidden, base = meta["net"]["dim"], meta["net"]["hidden"], meta.get("base", False)
        classes = len(names) + base
        try:
            state = load_safetensors(blob)
        except Exception as e:  # the parser's error types are open-ended on corrupt input
            raise RouterError(f"{path}: corrupt router ({e})") from None
        expected = {"embed.weight": (featurizer.buckets, dim), "embed_bias": (dim,), "fc1.weight": (hidden, dim),
                    "fc1.bias": (hidden,), "fc2.weight": (hidden, hidden), "fc2.bias": (hidden,),
                    "head.weight": (classes, hidden), "head.bias": (classes,)}
        got = {k: tuple(v.shape) for k, v in state.items()}
        if got != expected or any(v.dtype != torch.float32 for v in state.values()):
            raise RouterError(f"{path}: its tensors {got} are not the float32 {expected} its sidecar describes")
        with torch.device("meta"):  # no memory and no random init: the file's tensors become the parameters
            net = RouterNet(featurizer.buckets, classes, dim, hidden)
        net.load_state_dict(state, assign=True)
        return cls(net, featurizer, names, meta.get("report", {}), base)


def read_sidecar(path) -> dict:
    """The router pair's sidecar, checked: both files there, every field of the right type and in bounds, and
    its settings unchanged since Router.save (settings_sha256 covers the adapters, featurizer and net settings
    and the weights' sha256). Raises RouterError naming the file and the field."""
    path = Path(path)
    side = sidecar_path(path)
    for f in (path, side):
        if not f.is_file():
            raise RouterError(f"{f}: router file not found")
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise RouterError(f"{side}: corrupt router sidecar ({e}); retrain the router") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise RouterError(f"{side}: not a LoRA Switchboard router sidecar")
    if meta.get("version") not in READS:
        raise RouterError(f"{side}: router format version {meta.get('version')!r}, this app reads "
                          f"{' and '.join(map(str, READS))}")
    if not isinstance(meta.get("base", False), bool):
        raise RouterError(f"{side}: \"base\" must be true or false, got {meta['base']!r}")
    names, net = meta.get("adapters"), meta.get("net")
    if not (isinstance(names, list) and names and all(isinstance(n, str) and n for n in names)
            and len(set(names)) == len(names)):
        raise RouterError(f"{side}: \"adapters\" must be a list of distinct adapter names, got {names!r}")
    if not (isinstance(net, dict) and all(is_count(net.get(k), 1, MAX_WIDTH) for k in ("dim", "hidden"))):
        raise RouterError(f"{side}: \"net\" must give dim and hidden as integers from 1 to {MAX_WIDTH}, got {net!r}")
    if not isinstance(meta.get("weights_sha256"), str) or not isinstance(meta.get("report", {}), dict):
        raise RouterError(f"{side}: weights_sha256 must be a string and report an object")
    try:
        Featurizer.check_settings(meta.get("featurizer"))
    except RouterError as e:
        raise RouterError(f"{side}: {e}") from None
    if meta.get("settings_sha256") != _settings_sha256(meta):
        raise RouterError(f"{side}: its settings were changed after training (or it was written by an older "
                          "version); retrain the router")
    return meta


def _settings_sha256(sidecar) -> str:
    """sha256 of what decides the routing besides the weights, and of the weights' own sha256. Not of where the
    tokenizer is: a moved model folder is reported as such by Featurizer.from_settings. Version 2 adds "base"."""
    keys = ("format", "version", "adapters", "featurizer", "net", "weights_sha256") + ("base",) * (
        sidecar.get("version") != 1)
    settings = {k: sidecar.get(k) for k in keys}
    if isinstance(settings["featurizer"], dict):
        settings["featurizer"] = {k: v for k, v in settings["featurizer"].items() if k != "tokenizer_dir"}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def sidecar_path(path):
    return Path(path).with_suffix(".json")


def param_count(net):
    return sum(p.numel() for p in net.parameters())


# ---------------------------------------------------------------------- training helpers
def _split(examples, holdout, seed):
    """Stratified, seeded split into (train rows, held-out rows) over the flat list of prompts."""
    rng = np.random.default_rng(seed)
    train, held, start = [], [], 0
    for prompts in examples.values():
        n = len(prompts)
        k = min(int(round(holdout * n)), n - 1)
        perm = start + rng.permutation(n)
        held += perm[:k].tolist()
        train += perm[k:].tolist()
        start += n
    return np.array(sorted(train), np.int64), np.array(sorted(held), np.int64)


def _train_full(net, data, train_rows, held_rows, epochs, gen, progress, cancel):
    steps_per_epoch = math.ceil(len(train_rows) / BATCH)
    if epochs is None:
        epochs = min(MAX_EPOCHS, max(1, math.ceil(MIN_STEPS / steps_per_epoch)))
    net.embed.sparse = True  # the table is 98% of the parameters; a batch touches a few thousand of its rows
    dense = [p for n, p in net.named_parameters() if n != "embed.weight"]
    decay = [p for p in dense if p.dim() == 2]
    rest = [p for p in dense if p.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": rest, "weight_decay": 0.0}],
                            lr=LR)
    emb_opt = _LazyAdam(net.embed.weight)
    total = epochs * steps_per_epoch
    # warm-up 10% of the steps; not 0.1 exactly: OneCycleLR divides by zero when 0.1 * total is 1 (10 steps)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, LR, total_steps=total, pct_start=0.1 + 1e-6)
    for epoch in range(1, epochs + 1):
        net.train()
        perm = train_rows[torch.randperm(len(train_rows), generator=gen).numpy()]
        loss_sum = 0.0
        for b in range(steps_per_epoch):
            if cancel is not None and cancel():
                return None
            idx, offsets, w = data.batch(perm[b * BATCH:(b + 1) * BATCH])
            keep = torch.rand(w.shape, generator=gen) >= FEATURE_DROP
            w = w * keep / (1.0 - FEATURE_DROP)
            y = torch.from_numpy(data.labels[perm[b * BATCH:(b + 1) * BATCH]])
            loss = F.cross_entropy(net(idx, offsets, w), y, label_smoothing=LABEL_SMOOTHING)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            emb_opt.step(sched.get_last_lr()[0])
            opt.step()
            sched.step()
            loss_sum += loss.item()
        net.eval()
        if progress is not None:
            progress(epoch, epochs, loss_sum / steps_per_epoch, _accuracy(net, data, held_rows))
    net.embed.sparse = False
    return net.eval()


class _LazyAdam:
    """Adam for the embedding table that updates only the rows a batch touched (a training step: 34 ms with dense
    AdamW, ~20 ms with torch's SparseAdam, ~15 ms with this on the 2-core CPU). Like TensorFlow's LazyAdam:
    untouched rows keep their moments."""

    def __init__(self, weight, betas=(0.9, 0.999), eps=1e-8):
        self.w, self.betas, self.eps, self.t = weight, betas, eps, 0
        self.m, self.v = torch.zeros_like(weight), torch.zeros_like(weight)  # [buckets, dim]

    @torch.no_grad()
    def step(self, lr):
        g = self.w.grad.coalesce()
        self.w.grad = None
        rows, gv = g.indices()[0], g.values()  # [U], [U, dim]
        b1, b2 = self.betas
        self.t += 1
        m = self.m.index_select(0, rows).mul_(b1).add_(gv, alpha=1 - b1)
        v = self.v.index_select(0, rows).mul_(b2).addcmul_(gv, gv, value=1 - b2)
        self.m.index_copy_(0, rows, m)
        self.v.index_copy_(0, rows, v)
        step = lr * math.sqrt(1 - b2 ** self.t) / (1 - b1 ** self.t)
        self.w.index_add_(0, rows, m / v.sqrt_().add_(self.eps), alpha=-step)


def _train_head(base, classes, data, train_rows, held_rows, epochs, progress, cancel):
    """Layers 1-3 frozen; adapters the old router knew keep their head rows exactly (their routing among
    themselves is unchanged); the new labels' rows are fit, on the frozen features of all examples, and so is the
    BASE row when adapters were added: kept as it was, it claimed the new adapter's prompts (a new adapter's text
    looks like general chat to features that never saw it: held-out accuracy 0.0 on a 30-prompt adapter)."""
    net = RouterNet(base.net.embed.num_embeddings, len(classes), base.net.embed.embedding_dim,
                    base.net.fc1.out_features)
    net.load_state_dict({k: v for k, v in base.net.state_dict().items() if not k.startswith("head.")}, strict=False)
    old = {a: i for i, a in enumerate(base.labels)}
    added = any(a not in old for a in classes)
    new = torch.tensor([i for i, a in enumerate(classes) if a not in old or (added and a == BASE)],
                       dtype=torch.int64)  # the rows fit
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.zero_()
        for i, a in enumerate(classes):
            if a in old:
                net.head.weight[i] = base.net.head.weight[old[a]]
                net.head.bias[i] = base.net.head.bias[old[a]]
    x = _features(net, data, train_rows).clone()  # [M, hidden], frozen
    y = torch.from_numpy(data.labels[train_rows])
    with torch.no_grad():
        fixed = net.head(x)  # [M, N] logits; the new adapters' columns are replaced below
    w = nn.Parameter(net.head.weight[new].clone())  # [n_fit, hidden]: zero, or the old BASE row
    b = nn.Parameter(net.head.bias[new].clone())
    opt = torch.optim.Adam([w, b], lr=LR, weight_decay=HEAD_WEIGHT_DECAY)
    epochs = (epochs or 10) if len(new) else 1  # adapters only removed: nothing to fit
    steps = max(1, HEAD_STEPS // epochs) if len(new) else 0
    for epoch in range(1, epochs + 1):
        for _ in range(steps):
            if cancel is not None and cancel():
                return None
            logits = fixed.index_copy(1, new, x @ w.T + b)
            loss = F.cross_entropy(logits, y, label_smoothing=LABEL_SMOOTHING)  # the old rows' logit scale
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            net.head.weight[new] = w
            net.head.bias[new] = b
            loss = F.cross_entropy(fixed.index_copy(1, new, x @ w.T + b), y, label_smoothing=LABEL_SMOOTHING)
        if progress is not None:
            progress(epoch, epochs, loss.item(), _accuracy(net, data, held_rows))
    return net


def _features(net, data, rows, chunk=1024):
    """Hidden features [len(rows), hidden] of the net in eval mode, a chunk of prompts at a time."""
    net.eval()
    with torch.inference_mode():
        parts = [net.features(*data.batch(rows[i:i + chunk])) for i in range(0, len(rows), chunk)]
    return torch.cat(parts) if parts else torch.zeros(0, net.fc2.out_features)


def _predict(net, data, rows):
    with torch.inference_mode():
        return net.head(_features(net, data, rows)).argmax(1).numpy()


def _accuracy(net, data, rows):
    if len(rows) == 0:
        return None
    return float((_predict(net, data, rows) == data.labels[rows]).mean())


def _report(net, data, held_rows, classes, n_train):
    """Held-out accuracy over all labels; per_adapter has the adapters only, "base" the BASE class (or None)."""
    n = len(classes)
    confusion = np.zeros((n, n), np.int64)  # [true, predicted]
    np.add.at(confusion, (data.labels[held_rows], _predict(net, data, held_rows)), 1)
    per = {a: (float(confusion[i, i] / confusion[i].sum()) if confusion[i].sum() else None)
           for i, a in enumerate(classes)}
    return {"accuracy": _accuracy(net, data, held_rows), "per_adapter": {a: v for a, v in per.items() if a != BASE},
            "base": per.get(BASE), "confusion": confusion.tolist(), "labels": list(classes), "n_train": int(n_train),
            "n_heldout": int(len(held_rows)), "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _mismatch(router_names, bank_names):
    missing = [a for a in bank_names if a not in router_names]
    extra = [a for a in router_names if a not in bank_names]
    parts = []
    if missing:
        parts.append(f"adapters not in the router: {missing}")
    if extra:
        parts.append(f"router adapters not in the bank: {extra}")
    if not parts:
        parts.append(f"same adapters in another order (router {router_names}, bank {bank_names})")
    return "router was trained for other adapters: " + "; ".join(parts)


@contextlib.contextmanager
def _threads(n):
    """At most n torch threads: the router's batches are small (while training, the other core serves the UI)."""
    before = torch.get_num_threads()
    torch.set_num_threads(min(n, before))
    try:
        yield
    finally:
        torch.set_num_threads(before)
