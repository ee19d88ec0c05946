"""The decode step, gpt-fast style: prefill once, then one small function per token, compiled on CUDA."""
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


def compiled_step(device: torch.device):
    """The per-token function: CUDA graphs via torch.compile on a GPU, eager on the CPU."""
    if device.type != "cuda":
        return decode_one_token
    import torch._dynamo  # here, not at the top: importing it costs ~1 s, and the CPU path never compiles

    # Each (batch, cache length, greedy, penalty) combination is its own static graph: never go dynamic.
    torch._dynamo.config.automatic_dynamic_shapes = False
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    step = torch.compile(decode_one_token, mode="reduce-overhead", fullgraph=True)

    def replay(*args):
        # each token is a new step for CUDA-graph trees: the last replay's outputs were already consumed,
        # so its memory may be reused (without this, switching between captured graphs can re-record)
        torch.compiler.cudagraph_mark_step_begin()
        return step(*args).clone()  # the next replay overwrites the graph's output buffer

    return replay


def cache_len(n: int) -> int:
    """KV-cache slots for a request of n tokens: power-of-two buckets from 256, so few graphs get captured."""
    return max(256, 1 << (n - 1).bit_length())
