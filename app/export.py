"""Write a conversation and its per-sentence routing trace as JSON (for tools) or Markdown (for people)."""
import json
from dataclasses import asdict
from pathlib import Path

from app.conversation import Conversation


def to_json(conv: Conversation, model: str = "") -> str:
    turns = []
    for t in conv.turns:
        turn = {"role": t.role, "content": t.text}
        if t.role == "assistant":
            turn["settings"] = asdict(t.settings) if t.settings else {}
            turn["stats"] = t.stats
            turn["sentences"] = [{"text": s.text, "probs": s.probs, "selected": s.selected,
                                  "routing_ms": s.latency_ms} for s in t.sentences]
        turns.append(turn)
    return json.dumps({"model": model, "turns": turns}, indent=2, ensure_ascii=False)


def _mix(selected: dict) -> str:
    if not selected:
        return "base"
    return ", ".join(f"{name} {w:.2f}" for name, w in sorted(selected.items(), key=lambda kv: -kv[1]))


def _cell(text: str) -> str:
    return text.strip().replace("|", "\\|").replace("\n", " ")


def to_markdown(conv: Conversation, model: str = "") -> str:
    lines = ["# LoRA Switchboard conversation", ""]
    if model:
        lines += [f"Model: `{model}`", ""]
    for t in conv.turns:
        if t.role == "user":
            lines += ["## User", "", t.text, ""]
            continue
        lines += ["## Assistant", "", t.text, ""]
        if t.stats:
            lines += [f"*{t.stats.get('tokens', 0)} tokens, {t.stats.get('tokens_per_s', 0):.1f} tok/s, "
                      f"stop: {t.stats.get('stop_reason', '?')}*", ""]
        lines += ["| # | sentence | mix |", "|---|---|---|"]
        lines += [f"| {i + 1} | {_cell(s.text)} | {_mix(s.selected)} |" for i, s in enumerate(t.sentences)]
        lines.append("")
    return "\n".join(lines)


def save(conv: Conversation, path: str | Path, model: str = "") -> Path:
    """Write JSON when `path` ends in .json, Markdown otherwise."""
    path = Path(path)
    text = to_json(conv, model) if path.suffix.lower() == ".json" else to_markdown(conv, model)
    path.write_text(text, encoding="utf-8")
    return path
