"""Chat prompts: the tokenizer's own template (a plain one when it has none), trimmed to fit the context.
A str instead of a conversation is a raw prompt (a text completion): tokenized as it is, never trimmed."""
from .errors import SwitchboardError
from .light import LightTokenizer

PLAIN_ROLES = {"system": "System", "user": "User", "assistant": "Assistant"}


def render(tokenizer, messages: list[dict] | str) -> list[int]:
    """Token ids of `messages` followed by the assistant's turn opening (of a raw prompt: its own ids). The
    model's chat template is rendered within bounds of time and size (engine/template.py): a transformers
    tokenizer renders it only after the bounded rendering has shown that it ends."""
    if isinstance(messages, str):
        return tokenizer(messages, add_special_tokens=True)["input_ids"]
    source = getattr(tokenizer, "chat_template", None)
    if isinstance(source, dict):  # named templates: the one transformers uses without tools
        source = source.get("default")
    if not source:
        text = "".join(f"{PLAIN_ROLES[m['role']]}: {m['content']}\n\n" for m in messages)
        return tokenizer(text + "Assistant:", add_special_tokens=True)["input_ids"]
    where = f"the chat template of {getattr(tokenizer, 'name_or_path', '') or 'the model'}"
    if isinstance(tokenizer, LightTokenizer):
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    else:
        from .template import render as bounded

        bounded(source, where, messages=messages, tools=None, documents=None, add_generation_prompt=True,
                **tokenizer.special_tokens_map)
        try:
            text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        except Exception as e:  # noqa: BLE001 - jinja raises its own errors from the model's template
            raise SwitchboardError(f"{where} refused this conversation: {e}") from None
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise SwitchboardError(f"{where} renders this conversation as an empty prompt; the model would have "
                               "nothing to answer (fix chat_template in its tokenizer_config.json or "
                               "chat_template.jinja)")
    return ids


def build_prompt(tokenizer, messages: list[dict] | str, budget: int,
                 continue_reply: bool = False) -> tuple[list[int], int]:
    """-> (ids, turns dropped). Drops the oldest turns (never the system prompt) until `budget` tokens fit;
    the kept conversation always starts at a user turn, as strict templates require. continue_reply: the last
    message is the assistant's reply so far (cut off by max_new_tokens or a Stop); the prompt ends with its
    tokens where a new assistant turn would open, so the model goes on with that reply."""
    if isinstance(messages, str):
        ids = render(tokenizer, messages)
        if len(ids) > budget:
            raise SwitchboardError(f"the prompt needs {len(ids)} tokens but only {budget} fit in the context "
                                   "(with room for the reply): shorten it or lower max new tokens")
        return ids, 0
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("content"), str) or m.get("role") not in PLAIN_ROLES:
            raise SwitchboardError(f"each message needs a role in {sorted(PLAIN_ROLES)} and text content, got {m!r}")
    reply = []
    if continue_reply:
        if not messages or messages[-1]["role"] != "assistant":
            raise SwitchboardError("continuing a reply needs a conversation that ends with the assistant's reply")
        reply = tokenizer(messages[-1]["content"], add_special_tokens=False)["input_ids"]
        messages = messages[:-1]
    system = [m for m in messages[:1] if m["role"] == "system"]
    turns = messages[len(system):]
    starts = [i for i, m in enumerate(turns) if m["role"] == "user" or i == 0]
    for start in starts:
        ids = render(tokenizer, system + turns[start:]) + reply
        if len(ids) <= budget:
            return ids, start
    raise SwitchboardError(f"the last message alone needs {len(ids)} tokens but only {budget} fit in the context "
                           "(with room for the reply): shorten it or lower max new tokens")
