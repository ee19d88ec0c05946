"""Next-token sampling on the device, with no host synchronisation (the caller reads the token once).

Settings are tensors, not Python numbers, so one compiled graph serves every temperature / top-k / top-p /
repetition penalty; only greedy vs. sampling is a separate graph (greedy skips the vocabulary sort).
"""
from dataclasses import dataclass

import torch

from .argmax import argmax


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.0        # 0 = greedy
    top_k: int = 0                  # 0 = off
    top_p: float = 1.0              # 1 = off
    repetition_penalty: float = 1.0 # 1 = off (Hugging Face semantics: divide positive logits, multiply negative)

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0

    def tensors(self, device) -> torch.Tensor:
        return torch.tensor([self.temperature, self.top_k, self.top_p, self.repetition_penalty],
                            dtype=torch.float32, device=device)


def penalize(logits, seen, penalty):
    # logits: [B, V] float32; seen: [B, V] bool, tokens already in the context
    return torch.where(seen, torch.where(logits > 0, logits / penalty, logits * penalty), logits)


def sample(logits, seen, params, greedy: bool):
    """logits: [B, V] float32 -> next tokens [B] (int64). params: [4] = temperature, top_k, top_p, penalty.
    seen: [B, V] bool of context tokens, or None when there is no repetition penalty."""
    if seen is not None:
        logits = penalize(logits, seen, params[3])
    if greedy:
        return argmax(logits)
    temperature, top_k, top_p = params[0], params[1], params[2]
    sorted_logits, order = (logits / temperature).sort(-1, descending=True)          # [B, V]
    # unnormalised probabilities (the largest 1), and their running sum whose last entry is the total: the same
    # kept set as a softmax's cumsum without its pass (torch's softmax over one 128K row took 33 us on an H200)
    e = (sorted_logits - sorted_logits[:, :1]).exp()
    cum = e.cumsum(-1)
    rank = torch.arange(e.shape[-1], device=e.device)
    keep = (rank < torch.where(top_k > 0, top_k, e.shape[-1])) & (cum - e < top_p * cum[:, -1:])
    # exponential race: argmax(p / q), q ~ Exp(1), draws from p without torch.multinomial's sync
    choice = argmax(e * keep / torch.empty_like(e).exponential_(1))
    return order.gather(-1, choice[:, None]).squeeze(-1)
