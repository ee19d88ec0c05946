"""Evaluation (engine/evaluate.py, `switchboard eval`): chats built from task files, each method answering every
turn with its own earlier replies, per-turn groups, small talk against the base model, two-task prompts routed per
sentence / once / by the per-sentence oracle; the CLI on a tiny model and library."""
import json

from test_routing import TOPICS, routed  # noqa: F401  (fixture: the tiny Llama with four adapters and a router)

from app import cli
from app.library import Library
from engine import BASE, evaluate

def task_rows(name, n=4):
    return [{"prompt": f"{TOPICS[name]} question {i}", "response": f"{name} {i}"} for i in range(n)]


def test_conversations_hold_every_ordered_pair_and_back_and_random_chats():
    tasks = {t: task_rows(t, 5) for t in ("alpha", "beta", "gamma")}
    chats = evaluate.conversations(tasks, seed=0)
    plans = [[t for t, _ in chat] for chat in chats]
    back = {(p[0], p[1]) for p in plans if len(p) == 3 and p[0] == p[2] != p[1]}
    assert back == {(a, b) for a in tasks for b in tasks if a != b}
    assert len(chats) == 12 and all(2 <= len(p) <= 4 for p in plans)
    assert all(ex in tasks[t] for chat in chats for t, ex in chat)  # each turn a prompt of its task
    used = [ex["prompt"] for chat in chats for t, ex in chat if t == "alpha"]
    assert len(set(used[:5])) == min(5, len(used))  # a task's prompts are used in turn before any repeats
    assert len(evaluate.conversations(tasks, limit=2)) == 4
    chat = [("a", {}), ("b", {}), ("a", {}), ("a", {})]
    assert evaluate.turn_groups(chat, 0) == ["turn 1", "all turns"]
    assert evaluate.turn_groups(chat, 2) == ["turn 3", "another task than the turn before",
                                             "turn 3 back to turn 1's task", "all turns"]
    assert evaluate.turn_groups(chat, 3) == ["turn 4", "same task as the turn before", "all turns"]


def test_each_method_answers_every_turn_after_its_own_replies(routed):
    calls = []
    generate_batch = routed.generate_batch
    routed.generate_batch = lambda convs, **kw: (calls.append((convs, kw)), generate_batch(convs, **kw))[1]
    try:
        chats = [[("alpha", task_rows("alpha")[0]), ("beta", task_rows("beta")[1])],
                 [("gamma", task_rows("gamma")[2])]]
        out = evaluate.converse(routed, chats, "oracle", max_new_tokens=6, routing_context="decayed")
    finally:
        routed.generate_batch = generate_batch
    (first, kw1), (second, kw2) = calls
    assert kw1["mixes"] == [{"alpha": 1.0}, {"gamma": 1.0}] and kw2["mixes"] == [{"beta": 1.0}]
    assert kw1["routing_context"] == "decayed"
    assert second == [[{"role": "user", "content": chats[0][0][1]["prompt"]},
                       {"role": "assistant", "content": out[0][0]["text"]},  # the method's own reply
                       {"role": "user", "content": chats[0][1][1]["prompt"]}]]
    assert [len(turns) for turns in out] == [2, 1]


def test_run_conversations_scores_groups_and_small_talk(routed):
    tasks = {t: task_rows(t) for t in TOPICS}
    res = evaluate.run_conversations(routed, tasks, ["Hello!", "Thanks a lot."], limit=3, max_new_tokens=4,
                                     policies=("turn", "history"))
    assert list(res["groups"]["all turns"]) == ["base", "uniform", "routed (turn)", "routed (history)", "oracle"]
    assert res["chats"] == 6 and res["groups"]["all turns"]["oracle"]["n"] == res["turns"]
    assert res["groups"]["turn 1"]["base"]["n"] == 6 and "turn 3 back to turn 1's task" in res["groups"]
    for talk in res["small_talk"].values():
        assert talk["n"] == 2 and 0 <= talk["chose_base"] <= talk["same_as_base"] <= 1  # base chosen: same reply


def test_two_tasks_route_per_sentence_once_and_by_the_oracle(routed):
    items = [{"prompt": "cat dog horse. Then add sum plus.", "response": "x\ny", "tasks": ["alpha", "beta"]},
             {"prompt": "paris rome. Then code python.", "response": "u\nv", "tasks": ["delta", "gamma"]}]
    res = evaluate.run_two_tasks(routed, items, max_new_tokens=30)
    assert list(res["methods"]) == ["base", "uniform", "routed once", "routed", "oracle per sentence"]
    assert all(0 <= s["exact_match"] <= s["first_line"] + 1e-9 for s in res["methods"].values())
    seen = []
    generate_batch = routed.generate_batch
    routed.generate_batch = lambda convs, **kw: (seen.append(kw), generate_batch(convs, **kw))[1]
    try:
        evaluate.run_two_tasks(routed, items, methods=("routed once", "oracle per sentence"), max_new_tokens=4)
    finally:
        routed.generate_batch = generate_batch
    once, *oracle = seen  # routed once: the first sentence's routing as a fixed mix for the whole reply
    assert once["mixes"] == [{k: w for k, w in routed.router.route(item["prompt"]).selected.items() if k != BASE}
                             for item in items]
    assert [kw["route"](None, 0) for kw in oracle] == [{"alpha": 1.0}, {"delta": 1.0}]  # one batch per pair
    assert [kw["route"](None, 1) for kw in oracle] == [{"beta": 1.0}, {"gamma": 1.0}]
    assert evaluate.run_two_tasks(routed, items * 3, limit=1, methods=("base",))["prompts"] == 2


def test_cli_eval_conversations_on_a_library(tmp_path, llama_dir, llama_adapters, capsys):
    library = Library(tmp_path / "library")
    assert all(r.ok for r in library.import_paths(list(llama_adapters.values())))
    for name, topic in TOPICS.items():
        library.set_examples(name, [f"{topic} question {i}" for i in range(20)])
    library.retrain(epochs=5)
    (tmp_path / "tasks").mkdir()
    for name in TOPICS:
        (tmp_path / "tasks" / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in task_rows(name)))
    (tmp_path / "talk.txt").write_text("Hello!\nHow are you?\n")
    argv = ["eval", "--model", str(llama_dir), "--library", str(library.root), "--tasks", str(tmp_path / "tasks"),
            "--conversations", "--small-talk", str(tmp_path / "talk.txt"), "--limit", "2", "--max-new-tokens", "3",
            "--device", "cpu", "--json", str(tmp_path / "res.json")]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "4 chats" in out and "turn 3 back to turn 1's task" in out and "small talk (2 prompts), routed" in out
    assert json.loads((tmp_path / "res.json").read_text())["groups"]["all turns"]["routed"]["n"] >= 8
    assert cli.main(argv[:-2] + ["--routing-context", "everything"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown everything" in err
