"""Generator of the router benchmark: synthetic prompts for 26 tasks shaped like the paper's (DLP-LoRA, table 8)
plus five same-format exam tasks that differ only in subject (32 tasks).

Not a test module. Each task mixes several templates and draws its content from pools shared with
other tasks, and arrives in one of several generic chat wrappers, so that neighbours are genuinely confusable: three translation tasks vs. language
identification (same sentences), word problems vs. multiple-choice math vs. unit conversion, reading
comprehension vs. question selection vs. fact verification, open instructions vs. chit-chat vs.
yes/no strategy questions, logic puzzles that share their objects and names, exams whose options mix subjects.

    python tests/router_tasks.py --out /tmp/tasks --n 110 --seed 0        # writes <task>.jsonl files
    from tests.router_tasks import make_tasks; train, test = make_tasks(100, 200, seed=0)
"""
import argparse
import json
import random
from pathlib import Path

NAMES = ["Alice", "Bob", "Claire", "Dave", "Eve", "Fatima", "Gabriel", "Hana", "Ivan", "Julia", "Kenji", "Lena",
         "Marco", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tariq", "Uma", "Victor", "Wen", "Yusuf"]
OBJECTS = ["apple", "book", "pencil", "ball", "cup", "notebook", "marble", "sticker", "cookie", "toy car",
           "shirt", "coin", "stamp", "flower", "candle", "key", "plate", "bottle", "card", "hat"]
COLORS = ["red", "blue", "green", "yellow", "purple", "orange", "black", "white", "pink", "brown", "grey",
          "teal", "magenta", "gold", "silver", "turquoise"]
ANIMALS = ["dog", "cat", "horse", "penguin", "elephant", "goldfish", "parrot", "camel", "rabbit", "cow",
           "snake", "frog", "owl", "shark", "bee", "llama"]
PLACES = ["Paris", "Tokyo", "the Sahara", "Antarctica", "Brazil", "the Moon", "London", "Mount Everest",
          "the Amazon", "Iceland", "New York", "Egypt", "a submarine", "the Arctic", "Australia", "Mars"]
TOPICS = ["climate change", "the stock market", "football", "space exploration", "electric cars", "vaccines",
          "artificial intelligence", "the housing market", "renewable energy", "the Olympics", "inflation",
          "public transport", "social media", "ancient Rome", "jazz music", "coffee", "video games", "cooking"]
INSTITUTIONS = ["the city council", "the central bank", "the government", "a local school", "the hospital",
                "the university", "a tech company", "the football club", "the museum", "the police"]
ITEMS = ["chair", "table", "couch", "bed", "lamp", "piano", "violin", "trumpet", "flute", "drum", "carrot",
         "potato", "onion", "cabbage", "banana", "grape", "peach", "plum", "mouse", "goat", "donkey", "duck"]
ITEM_TYPES = ["objects", "musical instruments", "vegetables", "fruits", "animals", "things", "items"]
LANGS = ["German", "Spanish", "Italian", "French", "Portuguese", "Dutch"]


def _n(r, lo=2, hi=60):
    return r.randint(lo, hi)


def _options(r, right, k=None):
    """Multiple-choice options in one of several styles, with `right` among distractors."""
    opts = list(right)
    style = r.randrange(4)
    letters = "ABCDE" if style < 2 else "abcde"
    fmt = ["({}) {}", "{}. {}", "{} ) {}", "{}) {}"][style]
    sep = [" ", "\n", " , ", "\n"][r.randrange(4)]
    return sep.join(fmt.format(letters[i], o) for i, o in enumerate(opts))


def _num_options(r, x):
    xs = sorted({x, x + r.randint(1, 9), max(0, x - r.randint(1, 9)), x * 2, x + 10})
    r.shuffle(xs)
    return _options(r, [str(v) for v in xs[:r.choice([4, 5])]])


# ---------------------------------------------------------------- sentences in six languages (shared pool)
_GRAMMAR = {
    "German": (["Der Mann", "Die Frau", "Das Kind", "Mein Bruder", "Die Regierung", "Der Lehrer", "Unsere Nachbarin",
                "Die Bank", "Der Minister", "Die Studentin"],
               ["liest", "kauft", "sieht", "braucht", "schreibt", "verkauft", "kritisiert", "unterstützt"],
               ["ein Buch", "den Brief", "das Auto", "einen Apfel", "die Zeitung", "neue Gesetze", "den Plan",
                "die Reform", "das Haus"],
               ["heute", "jeden Tag", "im Park", "am Morgen", "seit Jahren", "in Berlin", "ohne Zweifel", "wieder"]),
    "Spanish": (["El hombre", "La mujer", "El niño", "Mi hermano", "El gobierno", "El profesor", "Nuestra vecina",
                 "El banco", "El ministro", "La estudiante"],
                ["lee", "compra", "ve", "necesita", "escribe", "vende", "critica", "apoya"],
                ["un libro", "la carta", "el coche", "una manzana", "el periódico", "nuevas leyes", "el plan",
                 "la reforma", "la casa"],
                ["hoy", "cada día", "en el parque", "por la mañana", "desde hace años", "en Madrid", "sin duda",
                 "otra vez"]),
    "Italian": (["L'uomo", "La donna", "Il bambino", "Mio fratello", "Il governo", "Il professore", "La nostra vicina",
                 "La banca", "Il ministro", "La studentessa"],
                ["legge", "compra", "vede", "ha bisogno di", "scrive", "vende", "critica", "sostiene"],
                ["un libro", "la lettera", "la macchina", "una mela", "il giornale", "nuove leggi", "il piano",
                 "la riforma", "la casa"],
                ["oggi", "ogni giorno", "nel parco", "la mattina", "da anni", "a Roma", "senza dubbio", "di nuovo"]),
    "French": (["L'homme", "La femme", "L'enfant", "Mon frère", "Le gouvernement", "Le professeur", "Notre voisine",
                "La banque", "Le ministre", "L'étudiante"],
               ["lit", "achète", "voit", "a besoin de", "écrit", "vend", "critique", "soutient"],
               ["un livre", "la lettre", "la voiture", "une pomme", "le journal", "de nouvelles lois", "le plan",
                "la réforme", "la maison"],
               ["aujourd'hui", "chaque jour", "dans le parc", "le matin", "depuis des années", "à Paris",
                "sans doute", "encore"]),
    "Portuguese": (["O homem", "A mulher", "A criança", "Meu irmão", "O governo", "O professor", "A nossa vizinha",
                    "O banco", "O ministro", "A estudante"],
                   ["lê", "compra", "vê", "precisa de", "escreve", "vende", "critica", "apoia"],
                   ["um livro", "a carta", "o carro", "uma maçã", "o jornal", "novas leis", "o plano", "a reforma",
                    "a casa"],
                   ["hoje", "todos os dias", "no parque", "de manhã", "há anos", "em Lisboa", "sem dúvida",
                    "outra vez"]),
    "Dutch": (["De man", "De vrouw", "Het kind", "Mijn broer", "De regering", "De leraar", "Onze buurvrouw", "De bank",
               "De minister", "De studente"],
              ["leest", "koopt", "ziet", "heeft nodig", "schrijft", "verkoopt", "bekritiseert", "steunt"],
              ["een boek", "de brief", "de auto", "een appel", "de krant", "nieuwe wetten", "het plan",
               "de hervorming", "het huis"],
              ["vandaag", "elke dag", "in het park", "'s ochtends", "al jaren", "in Amsterdam", "zonder twijfel",
               "weer"]),
}


def _sentence(r, lang, clauses=None):
    subj, verb, obj, adv = _GRAMMAR[lang]
    joiner = {"German": " und ", "Spanish": " y ", "Italian": " e ", "French": " et ", "Portuguese": " e ",
              "Dutch": " en "}[lang]
    parts = []
    for _ in range(clauses or r.choice([1, 1, 2, 3])):
        words = [r.choice(subj), r.choice(verb), r.choice(obj)]
        if r.random() < 0.7:
            words.insert(r.choice([2, 3]), r.choice(adv))
        parts.append(" ".join(words))
    s = joiner.join(parts[:2]) + "".join(". " + p[0].upper() + p[1:] for p in parts[2:])
    return s + r.choice([".", ".", "!", "?"])


def _translate(lang):
    def task(r):
        s = _sentence(r, lang)
        return r.choice([
            f"Translate the following {lang} sentence into English: {s}",
            f"Translate to English:\n{s}",
            f"{lang}: {s}\nEnglish:",
            f"What does this mean in English? \"{s}\"",
            f"Please give an English translation of the text below.\n\n{s}",
            f"{s}\n\nTranslate the above into English.",
            f"Can you translate this for me: {s}",
            f"Source ({lang.lower()[:2]}): {s}\nTarget (en):",
        ])
    return task


def language_identification(r):
    lang = r.choice(LANGS)
    s = _sentence(r, lang, clauses=1)
    opts = r.sample(LANGS, r.choice([3, 4, 5]))
    if lang not in opts:
        opts[0] = lang
    r.shuffle(opts)
    return r.choice([
        f"Given a sentence, select the correct language among the choices.\nSentence: {s}\n{_options(r, opts)}",
        f"Which language is this written in? \"{s}\" Options: {', '.join(opts)}",
        f"Identify the language of the following text: {s}\nChoices: {_options(r, opts)}",
        f"{s}\nWhat language is the sentence above? Answer with one of: {' / '.join(opts)}.",
        f"Language ID task. Input: {s} Possible answers: {_options(r, opts)}",
    ])


# ---------------------------------------------------------------- mathematics
def gsm8k(r):
    a, b, c = _n(r), _n(r), _n(r, 2, 9)
    n1, n2 = r.sample(NAMES, 2)
    o = r.choice(OBJECTS)
    return r.choice([
        f"{n1} sold {o}s to {a} of her friends in April, and then she sold {c} times as many {o}s in May. "
        f"How many {o}s did {n1} sell altogether in April and May?",
        f"{n1} earns ${a} an hour for babysitting. Yesterday, she just did {b} minutes of babysitting. How much did she earn?",
        f"{n1} has {a} {o}s. {n2} gives {n1} {b} more, and then {n1} loses {c}. How many {o}s does {n1} have now?",
        f"A bakery makes {a} loaves of bread every morning and sells {b} of them by noon. If the rest are split "
        f"equally into {c} baskets, how many loaves go in each basket?",
        f"{n1} is saving for a bike that costs ${a * 10}. She has ${b} and her parents give her twice that amount. "
        f"How much more money does she need?",
        f"Question: {n1} reads {a} pages on Monday and {c} times as many on Tuesday. On Wednesday {n1} reads half "
        f"of what was read on Tuesday. How many pages in total?\nLet's think step by step.",
        f"There are {a} students in a class. {c} out of every 10 are girls. The teacher buys {b} {o}s for each boy. "
        f"How many {o}s does the teacher buy?",
        f"{n1} runs {c} sprints {b} times a week. He runs {a} meters each sprint. How many total meters does he run a week?",
    ])


def elementary_math_qa(r):
    a, b, c = _n(r), _n(r), _n(r, 2, 9)
    n1 = r.choice(NAMES)
    q = r.choice([
        f"a train running at the speed of {a} km / hr crosses a pole in {c} seconds . what is the length of the train ?",
        f"the average of {c} numbers is {a} . if one number is excluded , the average becomes {b} . the excluded number is",
        f"a shopkeeper sells an article for rs . {a * 10} at a profit of {c} % . find the cost price .",
        f"if {a} % of a number is {b} , what is {c} % of the same number ?",
        f"{n1} can do a piece of work in {a} days and another worker in {b} days . in how many days will they finish it together ?",
        f"what is the remainder when {a * b} is divided by {c} ?",
        f"the ratio of boys to girls in a class is {c} : {c + 1} . if there are {a} boys , how many girls are there ?",
        f"find the simple interest on rs . {a * 100} at {c} % per annum for {b % 5 + 1} years .",
    ])
    return r.choice([
        f"{q}\n{_num_options(r, a + b)}",
        f"Problem: {q} Options: {_num_options(r, a * c)}",
        f"Answer the following multiple choice math question.\n{q}\n{_num_options(r, b)}\nAnswer:",
        f"{q} choose the correct option : {_num_options(r, a)}",
    ])


def unit_conversion(r):
    x = r.choice([str(_n(r, 1, 500)), f"{_n(r, 1, 99)}.{_n(r, 1, 9)}"])
    u1, u2 = r.choice([("kilometers", "meters"), ("miles", "kilometers"), ("pounds", "kilograms"),
                       ("liters", "milliliters"), ("hours", "seconds"), ("inches", "centimeters"),
                       ("gallons", "liters"), ("feet", "meters"), ("ounces", "grams"), ("days", "minutes")])
    n1 = r.choice(NAMES)
    return r.choice([
        f"How many {u2} are in {x} {u1}?",
        f"Convert {x} {u1} to {u2}.",
        f"Q: {x} {u1} is equal to how many {u2}?\n{_num_options(r, _n(r, 5, 900))}",
        f"{n1} walked {x} {u1}. Express this distance in {u2}.",
        f"Which unit would you use to measure the weight of a {r.choice(ANIMALS)}? {_options(r, [u1, u2, 'watts', 'kelvin'])}",
        f"A recipe needs {x} {u1} of water. What is that in {u2}? A: ",
        f"Express {x} {u1} in {u2}, rounding to two decimal places.",
    ])


# ---------------------------------------------------------------- text tasks
def _news(r, sentences=None):
    t, inst, n1 = r.choice(TOPICS), r.choice(INSTITUTIONS), r.choice(NAMES)
    place = r.choice(PLACES)
    pool = [
        f"{inst.capitalize()} announced on {r.choice(['Monday', 'Tuesday', 'Friday', 'Sunday'])} a new plan on {t}.",
        f"Officials in {place} said the decision would affect about {_n(r, 2, 90)},000 people.",
        f"\"We have never seen anything like this,\" said {n1}, a spokesperson for {inst}.",
        f"Critics argue that the measures on {t} come too late and cost too much.",
        f"The announcement follows months of debate about {t} and {r.choice(TOPICS)}.",
        f"Experts expect prices to rise by {_n(r, 1, 15)} percent over the next year.",
        f"Supporters of the plan gathered outside the offices of {inst} in {place}.",
        f"{n1}, {_n(r, 20, 80)}, told reporters that the community was divided.",
        f"The report, published by {inst}, found that {t} had changed daily life in {place}.",
        f"It is not yet clear when the new rules will take effect.",
    ]
    r.shuffle(pool)
    return " ".join(pool[:sentences or r.randint(3, 7)])


def cnn_dailymail(r):
    a = _news(r)
    return r.choice([
        f"Summarize the following article:\n{a}",
        f"(CNN) -- {a}\n\nWrite a short summary of the article above.",
        f"Article: {a}\nSummary:",
        f"Give me the highlights of this news story in three bullet points. {a}",
        f"{a}\nTL;DR:",
        f"Condense this report into one or two sentences: {a}",
        f"By {r.choice(NAMES)} {r.choice(NAMES)}. PUBLISHED: {_n(r, 1, 28)} March 2015. {a} Summarise.",
    ])


def disfl_qa(r):
    ctx = _news(r, 4)
    n1 = r.choice(NAMES)
    t = r.choice(TOPICS)
    q = r.choice([f"Who said the, no wait, who announced the plan on {t}?",
                  f"What did {n1} um what did the spokesperson say?",
                  f"How many people uh how many percent will prices rise?",
                  f"Where did the protesters, I mean the supporters, gather?",
                  f"When, sorry, what did critics argue about {t}?"])
    return r.choice([
        f"Context: {ctx}\nQuestion: {q}\nAnswer with a span from the context.",
        f"Read the passage and answer the question.\n\n{ctx}\n\nQ: {q}\nA:",
        f"{ctx}\nPick the correct answer span from the text above for this disfluent question: {q}",
        f"Passage: {ctx} Question: {q}",
    ])


def question_selection(r):
    ctx = _news(r, 3)
    ans = r.choice([r.choice(NAMES), r.choice(PLACES), r.choice(INSTITUTIONS), f"{_n(r, 1, 15)} percent"])
    qs = [f"Who announced the new plan?", f"Where did supporters gather?", f"By how much will prices rise?",
          f"What did critics argue?", f"Which report was published?", f"When was the plan announced?"]
    r.shuffle(qs)
    return r.choice([
        f"Given the answer and the context, select the most appropriate question.\nContext: {ctx}\nAnswer: {ans}\n"
        f"{_options(r, qs[:4])}",
        f"{ctx}\nThe answer is \"{ans}\". Which question does it answer? {_options(r, qs[:r.choice([3, 4])])}",
        f"Answer: {ans}. Context: {ctx} Choose the question that has this answer: {_options(r, qs[:4])}",
    ])


def vitamin_fact_verification(r):
    ctx = _news(r, 3)
    claim = r.choice([f"Prices are expected to fall by {_n(r, 1, 15)} percent.",
                      f"{r.choice(INSTITUTIONS).capitalize()} published the report.",
                      f"About {_n(r, 2, 90)},000 people will be affected.",
                      f"The new rules take effect immediately.", f"The plan concerns {r.choice(TOPICS)}."])
    return r.choice([
        f"Context: {ctx}\nClaim: {claim}\nIs the claim true or false based on the context?",
        f"{ctx}\nBased only on the passage above, is this statement True or False? {claim}",
        f"Evidence: {ctx} Claim: {claim} Answer: True or False.",
        f"Verify the claim using the evidence.\nClaim: {claim}\nEvidence: {ctx}\n{_options(r, ['True', 'False'])}",
    ])


def contextual_knowledge_conflicts(r):
    p, n1 = r.choice(PLACES), r.choice(NAMES)
    ctx = r.choice([f"{n1} was born in {p} and later became the president of {r.choice(INSTITUTIONS)}.",
                    f"The capital of {r.choice(['France', 'Japan', 'Brazil', 'Egypt'])} is {p}.",
                    f"The tallest mountain in the world is located in {p}.",
                    f"The {r.choice(ANIMALS)} is the national animal of {r.choice(['Peru', 'Canada', 'India'])}."])
    q = r.choice([f"Where was {n1} born?", "What is the capital?", "Where is the tallest mountain?",
                  "Which animal is the national animal?"])
    return r.choice([
        f"Answer the question given the context, even if it contradicts what you know.\nContext: {ctx}\nQ: {q}",
        f"Context: {ctx} Question: {q} Answer using only the context.",
        f"{ctx} According to the passage, {q[0].lower() + q[1:]}",
        f"Use the following information to answer. {ctx}\n{q}\n{_options(r, [p, r.choice(PLACES), r.choice(PLACES)])}",
    ])


# ---------------------------------------------------------------- code and algorithms
def code_questions(r):
    lang = r.choice(["Python", "JavaScript", "Java", "C++", "Rust", "Go", "SQL", "bash"])
    thing = r.choice(["reverse a list", "read a CSV file", "sort a dictionary by value", "remove duplicates from an array",
                      "parse JSON", "make an HTTP request", "find the maximum of a list", "count word frequencies",
                      "merge two sorted lists", "check if a string is a palindrome", "connect to a database"])
    v = r.choice(["x", "items", "data", "nums", "result", "values"])
    snippet = r.choice([f"def f({v}):\n    return {v}[::-1]", f"for i in range(len({v})):\n    print({v}[i])",
                        f"const {v} = arr.map(a => a * 2);", f"SELECT * FROM users WHERE age > {_n(r)};",
                        f"int main() {{ int {v} = {_n(r)}; return {v}; }}", f"let {v}: Vec<i32> = Vec::new();"])
    return r.choice([
        f"How do I {thing} in {lang}?",
        f"Write a {lang} function to {thing}.",
        f"What does this code do?\n```\n{snippet}\n```",
        f"I get an error when I run this:\n{snippet}\nHow can I fix it?",
        f"Can you explain the difference between a list and a tuple in {lang}?",
        f"Refactor the following code to be more idiomatic {lang}:\n{snippet}",
        f"What is the time complexity of this snippet? {snippet}",
        f"In {lang}, what's the best way to {thing}? Show an example.",
    ])


def cs_algorithms(r):
    s1 = "".join(r.choice("abcdef") for _ in range(r.randint(4, 9)))
    s2 = "".join(r.choice("abcdef") for _ in range(r.randint(4, 9)))
    br = "".join(r.choice("()[]{}") for _ in range(r.randint(4, 12)))
    nums = ", ".join(str(_n(r, 0, 99)) for _ in range(r.randint(4, 9)))
    return r.choice([
        f"Given two strings, determine the length of the longest common subsequence.\nStrings: {s1} and {s2}\nA:",
        f"Determine whether the given sequence of parentheses is properly matched.\nSequence: {br}\nA:",
        f"Find the length of the longest common subsequence of {s1} and {s2}.",
        f"Is the bracket sequence {br} valid? Answer 1 for valid, 0 for invalid.",
        f"Sort the following numbers in ascending order: {nums}",
        f"What is the median of the list [{nums}]?",
        f"Compute the edit distance between \"{s1}\" and \"{s2}\".",
    ])


# ---------------------------------------------------------------- logic puzzles with shared objects and names
def logical_deduction(r):
    k = r.choice([3, 5, 7])
    things = r.sample([f"{c} book" for c in COLORS], k)
    a, b = r.sample(things, 2)
    where = r.choice(["On a shelf, there are", "In a row of", "In an antique car show, there are", "On a branch, there are"])
    return r.choice([
        f"The following paragraphs each describe a set of {k} objects arranged in a fixed order. {where} {k} books: "
        f"{', '.join('a ' + t for t in things)}. The {a} is to the left of the {b}. The {b} is the second from the right. "
        f"{_options(r, [f'The {t} is the leftmost' for t in things[:3]])}",
        f"{where} {k} objects: {', '.join(things)}. The {a} is the rightmost. The {b} is to the right of the {things[0]}. "
        f"Which one is third from the left?",
        f"Deduce the order: {', '.join(things)}. Clue 1: the {a} is left of the {b}. Clue 2: the {things[-1]} is last.",
    ])


def tracking_shuffled_objects(r):
    k = r.choice([3, 5])
    ppl = r.sample(NAMES, k)
    gifts = r.sample([f"{c} ball" for c in COLORS], k)
    swaps = " ".join(f"{r.choice(['First', 'Then', 'Next', 'Finally'])}, {x} and {y} swap {r.choice(['balls', 'gifts', 'partners', 'books'])}."
                     for x, y in (r.sample(ppl, 2) for _ in range(k)))
    start = ", ".join(f"{p} has a {g}" for p, g in zip(ppl, gifts))
    return r.choice([
        f"{', '.join(ppl[:-1])}, and {ppl[-1]} are playing a game. At the start of the game, {start}. As the game "
        f"progresses, pairs of players trade. {swaps} At the end of the game, {ppl[0]} has the\n{_options(r, gifts)}",
        f"{', '.join(ppl)} are dancers at a square dance. {start}. {swaps} At the end of the dance, who has the {gifts[0]}?",
        f"Track the objects. Start: {start}. {swaps} What does {ppl[-1]} have now?",
    ])


def reasoning_about_colored_objects(r):
    objs = [f"{r.choice(COLORS)} {o}" for o in r.sample(OBJECTS, r.randint(3, 6))]
    surface = r.choice(["On the desk", "On the table", "On the floor", "On the nightstand"])
    return r.choice([
        f"{surface}, you see the following items arranged in a row: {', '.join('a ' + o for o in objs)}. "
        f"What is the color of the item directly to the right of the {objs[0].split(' ', 1)[1]}?\n"
        f"{_options(r, r.sample(COLORS, 4))}",
        f"{surface}, I see {', '.join('a ' + o for o in objs)}. Is the {objs[1].split(' ', 1)[1]} {r.choice(COLORS)}?",
        f"{surface}, there is {', '.join('a ' + o for o in objs)}. How many items are neither {r.choice(COLORS)} nor "
        f"{r.choice(COLORS)}?",
        f"{surface} lie {', '.join(objs)}. What color is the {objs[-1].split(' ', 1)[1]}?",
    ])


def object_counting(r):
    items = r.sample(ITEMS, r.randint(3, 7))
    listed = ", ".join(f"{r.choice(['a', 'an', 'two', 'three', 'four'])} {i}" for i in items)
    return r.choice([
        f"I have {listed}. How many {r.choice(ITEM_TYPES)} do I have?",
        f"Q: I have {listed}. How many {r.choice(ITEM_TYPES)} do I have?\nA:",
        f"My {r.choice(['friend', 'sister', 'neighbour'])} gave me {listed}. Count the {r.choice(ITEM_TYPES)} I now have.",
        f"There are {listed} in the room. How many are there in total?",
    ])


def formal_fallacies(r):
    a, b, c = r.sample(["friend of " + n for n in NAMES] + ["fan of " + t for t in TOPICS], 3)
    return r.choice([
        f"\"Here comes a perfectly valid argument: First of all, every {a} is a {b}. Next, being a {c} is necessary "
        f"for being a {b}. So, necessarily, every {a} is a {c}.\" Is the argument, given the explicitly stated premises, "
        f"deductively valid or invalid?\nOptions:\n- valid\n- invalid",
        f"Premise 1: No {a} is a {b}. Premise 2: Some {c} is a {a}. Conclusion: some {c} is not a {b}. "
        f"Is this argument valid or a formal fallacy?",
        f"Distinguish deductively valid arguments from formal fallacies. Whoever is a {a} is not a {b}. Therefore, "
        f"whoever is a {b} is not a {a}. Valid or invalid?",
    ])


def epistemic_reasoning(r):
    n1, n2 = r.sample(NAMES, 2)
    fact = r.choice([f"the {r.choice(ANIMALS)} is in the garden", f"it rained in {r.choice(PLACES)}",
                     f"{r.choice(INSTITUTIONS)} raised taxes", f"a {r.choice(COLORS)} car was stolen"])
    return r.choice([
        f"Premise: {n1} suspects that {n2} believes that {fact}. Hypothesis: {n2} believes that {fact}. "
        f"Does the premise entail the hypothesis? Answer entailment or non-entailment.",
        f"Identify the relation between the following premises and hypotheses, choosing from the options "
        f"'entailment' or 'non-entailment'.\nPremise: {n1} knows that {fact}.\nHypothesis: {fact.capitalize()}.",
        f"Determine whether the first sentence entails the second. \"{n1} thinks that {n2} learned that {fact}.\" "
        f"\"{n1} thinks that {fact}.\"",
    ])


def winowhy(r):
    n1, n2 = r.sample(NAMES, 2)
    s = r.choice([f"The trophy doesn't fit into the {r.choice(OBJECTS)} because it is too big.",
                  f"{n1} couldn't lift {n2}'s son because he was so weak.",
                  f"The city councilmen refused the demonstrators a permit because they feared violence.",
                  f"{n1} thanked {n2} for the {r.choice(OBJECTS)} because she was grateful."])
    reason = r.choice(["because big things do not fit into small things", "weak people cannot lift heavy people",
                       "because the councilmen are afraid", "because it is polite"])
    return r.choice([
        f"Please answer the following questions about which words certain pronouns refer to. {s} The reason: "
        f"\"{reason}\". Is this reason correct or wrong?",
        f"Sentence: {s} Explanation: {reason}. Is the explanation of the pronoun correct?",
        f"{s} Someone says the pronoun refers to the first noun {reason}. Correct or incorrect?",
    ])


def play_dialog(r):
    lines = r.sample(["My lord, I have news from the north.", "What say you, good sir?", "Away, thou rag, thou quantity!",
                      "I pray thee, speak not so.", "The king is dead; long live the king.", "Hark! Who goes there?",
                      "O, that this too too solid flesh would melt.", "Fie upon it! I will not.",
                      "Methinks the lady doth protest too much.", "Wherefore art thou so sad?",
                      "Good morrow to you, gentle cousin.", "Let us away, the night grows cold."], 4)
    return r.choice([
        f"The following transcripts of dialogues have been taken from Shakespeare plays, but the transcripts do not "
        f"say who said what. \"{lines[0]}\" \"{lines[1]}\" \"{lines[2]}\" In the preceding dialogue, were the lines "
        f"\"{lines[1]}\" and \"{lines[2]}\" spoken by the same person or different people?",
        f"{' '.join(lines)}\nWere the last two lines said by the same character or by different characters?",
        f"Dialogue: {lines[0]} / {lines[1]} / {lines[3]}. Same speaker or different? {_options(r, ['same', 'different'])}",
    ])


def abstract_narrative(r):
    n1, n2 = r.sample(NAMES, 2)
    story = r.choice([f"{n1} spent years building a boat in {r.choice(PLACES)}, while {n2} laughed. When the floods came, "
                      f"only {n1} was safe.",
                      f"{n1} kept borrowing {r.choice(OBJECTS)}s from {n2} and never returned them. One day {n1} needed "
                      f"help and nobody came.",
                      f"{n1} tried to sell a {r.choice(ANIMALS)} before it was born and lost everything.",
                      f"{n1} and {n2} argued over a {r.choice(OBJECTS)} until a stranger took it away."])
    provs = r.sample(["A stitch in time saves nine.", "Don't count your chickens before they hatch.",
                      "When two dogs fight, the third one gets the bone.", "What goes around comes around.",
                      "Fortune favours the prepared mind.", "A friend in need is a friend indeed."], 4)
    return r.choice([
        f"Given a narrative, choose the most related proverb from a list of options.\nNarrative: {story}\n"
        f"{_options(r, provs)}",
        f"{story} Which proverb best fits this story? {_options(r, provs)}",
        f"Story: {story}\nThe moral of this story is best captured by: {' | '.join(provs)}",
    ])


def linguistics_puzzles(r):
    syll = ["ka", "mo", "ti", "ne", "ru", "sa", "lo", "pi", "du", "ve"]
    words = ["".join(r.sample(syll, r.randint(2, 3))) for _ in range(4)]
    eng = r.sample(["the dog sleeps", "the man eats", "a woman runs", "the child sees the bird", "two men sing",
                    "the bird flies", "I see you", "we eat fish"], 4)
    pairs = "\n".join(f"{w} {words[(i + 1) % 4]} = {e}" for i, (w, e) in enumerate(zip(words, eng)))
    return r.choice([
        f"Here are some expressions in an unknown language and their English translations:\n{pairs}\n"
        f"Translate into English: {words[0]} {words[2]}",
        f"Solve this Rosetta Stone puzzle. {pairs.replace(chr(10), '; ')}. What is \"{eng[3]}\" in this language?",
        f"Linguistics puzzle:\n{pairs}\nGive the meaning of '{words[1]}'.",
    ])


# ---------------------------------------------------------------- same-format exams that differ only in subject
SUBJECTS = {
    "biology": "cell membrane, mitochondria, photosynthesis, chlorophyll, DNA replication, RNA polymerase, ribosome, "
               "enzyme, natural selection, mutation, allele, genotype, phenotype, meiosis, mitosis, chromosome, "
               "protein synthesis, homeostasis, ecosystem, food chain, predator, pollination, nervous system, neuron, "
               "hormone, insulin, antibody, virus, bacteria, fungus, evolution, species, habitat, respiration, "
               "osmosis, diffusion, nucleus, cytoplasm, gene expression, heredity, vaccine, immune response, "
               "digestion, kidney, liver, blood cell, hemoglobin, stem cell, biodiversity, symbiosis",
    "chemistry": "covalent bond, ionic bond, electron, proton, neutron, isotope, periodic table, noble gas, "
                 "oxidation, reduction, catalyst, acid, base, pH, molarity, solution, solvent, solute, "
                 "precipitate, reaction rate, activation energy, equilibrium, Le Chatelier's principle, enthalpy, "
                 "entropy, exothermic reaction, endothermic reaction, mole, Avogadro's number, valence electron, "
                 "hydrocarbon, alkane, polymer, titration, electrolysis, combustion, molecule, compound, element, "
                 "alloy, halogen, alkali metal, buffer, ideal gas law, vapor pressure, boiling point, "
                 "electronegativity, stoichiometry, limiting reagent, carbon dioxide",
    "physics": "velocity, acceleration, momentum, friction, gravity, Newton's second law, kinetic energy, "
               "potential energy, work, power, torque, inertia, wavelength, frequency, amplitude, refraction, "
               "reflection, electric current, voltage, resistance, Ohm's law, magnetic field, electromagnetic "
               "induction, capacitor, circuit, photon, quantum, relativity, speed of light, thermodynamics, heat "
               "transfer, pressure, buoyancy, density, projectile motion, pendulum, oscillation, sound wave, lens, "
               "mirror, nuclear fission, radioactive decay, half-life, conservation of energy, centripetal force, "
               "free fall, terminal velocity, electron volt, semiconductor, superconductor",
    "history": "the French Revolution, the Industrial Revolution, the Roman Empire, the Cold War, World War I, "
               "World War II, the Renaissance, the Reformation, the Ottoman Empire, the Magna Carta, the "
               "Byzantine Empire, the Silk Road, the Ming dynasty, colonialism, the American Civil War, the "
               "Treaty of Versailles, the Great Depression, feudalism, the Crusades, the Enlightenment, the Berlin "
               "Wall, the Russian Revolution, the Meiji Restoration, the Mughal Empire, the Aztec Empire, the Inca "
               "Empire, the printing press, the League of Nations, decolonization, the Napoleonic Wars, the Hundred "
               "Years' War, the Black Death, the Glorious Revolution, the Marshall Plan, apartheid, the civil rights "
               "movement, the Spanish Armada, the Hanseatic League, the Opium Wars, the partition of India",
    "economics": "supply and demand, inflation, deflation, interest rate, monetary policy, fiscal policy, gross "
                 "domestic product, unemployment, opportunity cost, comparative advantage, tariff, trade deficit, "
                 "exchange rate, central bank, market equilibrium, price elasticity, monopoly, oligopoly, perfect "
                 "competition, marginal cost, marginal utility, consumer surplus, externality, public good, tax "
                 "incidence, recession, business cycle, money supply, quantitative easing, budget deficit, national "
                 "debt, stock market, bond yield, labor market, minimum wage, productivity, economies of scale, "
                 "price ceiling, price floor, game theory, Keynesian economics, aggregate demand",
}
SUBJECTS = {k: [t.strip() for t in v.split(",")] for k, v in SUBJECTS.items()}


def _exam(subject):
    def task(r):
        own = SUBJECTS[subject]
        a, b = r.sample(own, 2)
        others = [t for k, v in SUBJECTS.items() if k != subject for t in v]
        opts = r.sample(own, 2) + r.sample(others, 2)  # distractors from other subjects too
        r.shuffle(opts)
        return r.choice([
            f"Which of the following is most closely related to {a}?\n{_options(r, opts)}",
            f"What is the role of {a} in {b}?",
            f"Explain how {a} relates to {b}.",
            f"A student is studying {a}. Which concept should they review next? {_options(r, opts)}",
            f"Which statement about {a} is correct?\n{_options(r, [f'It is a kind of {o}' for o in opts])}",
            f"True or false: {a} is an example of {b}.",
            f"Define {a} and give one example involving {b}.",
            f"The following are multiple choice questions. Q: What best describes {a}? {_options(r, opts)}",
        ])
    return task


# ---------------------------------------------------------------- open-ended
def strategyqa(r):
    a, p = r.choice(ANIMALS), r.choice(PLACES)
    return r.choice([
        f"Could a {a} survive in {p}?", f"Would a {a} fit inside a {r.choice(OBJECTS)}?",
        f"Is it possible to travel from {p} to {r.choice(PLACES)} by {r.choice(['train', 'bicycle', 'boat'])}?",
        f"Did {r.choice(['Aristotle', 'Cleopatra', 'Napoleon', 'Shakespeare'])} use a {r.choice(['laptop', 'telephone', 'printing press', 'compass'])}?",
        f"Are more people today related to {r.choice(['Genghis Khan', 'Julius Caesar', 'Charlemagne'])} than to {r.choice(['Elvis', 'Einstein'])}?",
        f"Q: Can you see the Great Wall of China from {p}? Give a yes or no answer with reasoning.",
        f"Is a {a} heavier than a {r.choice(ANIMALS)}? Think about it and answer yes or no.",
        f"Would someone in {p} need a {r.choice(['coat', 'umbrella', 'fan', 'passport'])} in {r.choice(['July', 'December'])}?",
    ])


def alpaca(r):
    t, a, n1 = r.choice(TOPICS), r.choice(ANIMALS), r.choice(NAMES)
    verb = r.choice(["Write", "Generate", "Create", "Compose", "Draft", "Come up with", "Produce"])
    thing = r.choice(["a short poem", "a haiku", "a product description", "a tweet", "a slogan", "an outline",
                      "a short story", f"a list of {r.randint(3, 10)} tips", "three fun facts", "a recipe",
                      "a cover letter", "a limerick", "a blog post introduction", "a motivational quote",
                      "a dialogue between two characters", "a job advertisement"])
    audience = r.choice(["", " for children", " for a busy professional", " for beginners", " for a wedding speech",
                         f" for {a} lovers", " in a humorous tone", " in under 50 words", " in the style of a pirate"])
    return r.choice([
        f"{verb} {thing} about {t}{audience}.",
        f"{verb} {thing}{audience}. The topic is {t}.",
        f"Instruction: {verb.lower()} {thing} about {t}{audience}.\nResponse:",
        f"Explain {t} to {r.choice(['a ten-year-old', 'my grandmother', 'a software engineer', 'a beginner'])}.",
        f"Rewrite the following sentence in the {r.choice(['passive voice', 'past tense', 'future tense'])}: "
        f"{n1} buys a {r.choice(OBJECTS)} for {r.choice(NAMES)}.",
        f"Classify the following item as a {r.choice(['fruit or a vegetable', 'mammal or a bird', 'tool or a toy'])}: "
        f"{r.choice(ITEMS + ANIMALS + OBJECTS)}.",
        f"What are the pros and cons of {t}{audience}?",
        f"Suggest a {r.randint(2, 7)}-day itinerary for {r.choice(PLACES)}{audience}.",
        f"Brainstorm {r.randint(3, 9)} ideas for a {r.choice(['school project', 'birthday party', 'startup', 'podcast'])} on {t}.",
        f"Find the odd one out: {', '.join(r.sample(ITEMS + ANIMALS, 4))}.",
        f"Edit this sentence to make it more concise: \"In my opinion, I think that {t} is something that is very "
        f"{r.choice(['important', 'interesting', 'overrated'])}.\"",
        f"Give {r.randint(2, 6)} examples of {r.choice(['renewable resources', 'verbs', 'prime numbers', 'metaphors', 'mammals'])}.",
        f"Describe {r.choice(['the taste of', 'the history of', 'a day in the life of', 'the benefits of'])} {r.choice([t, 'a ' + a])}"
        f"{audience}.",
        f"Make a shopping list for {r.choice(['a picnic', 'a camping trip', 'a vegan dinner', 'a birthday cake'])}.",
    ])


def topical_chat(r):
    t, n1 = r.choice(TOPICS), r.choice(NAMES)
    opener = r.choice(["Hey!", "Hi there.", "Oh wow,", "Haha,", "lol", "Honestly,", "So,", "Yeah,", "Hmm,", "Cool!", ""])
    fact = r.choice([f"{n1} is a huge fan of {t}", f"{t} started way earlier than most people think",
                     f"there's a museum in {r.choice(PLACES)} all about {t}", f"a {r.choice(ANIMALS)} once appeared in a "
                     f"documentary about {t}", f"my {r.choice(['brother', 'mom', 'roommate', 'boss'])} is obsessed with {t}"])
    line = r.choice([f"did you know {fact}?", f"I love {t}! What do you think about it?",
                     f"do you follow {t}? I was reading about it last night and it's wild.",
                     f"have you ever been to {r.choice(PLACES)}? I heard it's amazing this time of year.",
                     f"that's so true. what else are you into besides {t}?", f"I guess {fact}, right?",
                     f"I'm not really into {t} but {fact}, which is kind of funny.",
                     f"what's your favourite thing about {t}?"])
    return r.choice([
        f"{opener} {line}".strip(),
        f"agent_A: {opener} {line}\nagent_B: no way, really? tell me more\nagent_A:",
        f"agent_B: {line}\nagent_A: {opener} I had no idea. {r.choice(['Anyway,', 'By the way,', 'Also'])} {r.choice(['do you like', 'ever tried', 'what about'])} {r.choice(TOPICS)}?",
        f"Continue the conversation: \"{opener} {line}\" \"Oh cool, {r.choice(['was it good', 'tell me more', 'why'])}?\"",
        f"{line[0].upper() + line[1:]} {r.choice(['haha', ':)', 'lol', 'just curious', ''])}".strip(),
    ])


TASKS = {
    "abstract_narrative": abstract_narrative, "alpaca": alpaca, "cnn_dailymail": cnn_dailymail,
    "code_questions": code_questions, "contextual_knowledge_conflicts": contextual_knowledge_conflicts,
    "cs_algorithms": cs_algorithms, "disfl_qa": disfl_qa, "elementary_math_qa": elementary_math_qa,
    "epistemic_reasoning": epistemic_reasoning, "formal_fallacies": formal_fallacies, "gsm8k": gsm8k,
    "language_identification": language_identification, "linguistics_puzzles": linguistics_puzzles,
    "logical_deduction": logical_deduction, "translate_de": _translate("German"),
    "translate_es": _translate("Spanish"), "translate_it": _translate("Italian"), "object_counting": object_counting,
    "play_dialog": play_dialog, "question_selection": question_selection,
    "reasoning_about_colored_objects": reasoning_about_colored_objects, "strategyqa": strategyqa,
    "topical_chat": topical_chat, "tracking_shuffled_objects": tracking_shuffled_objects,
    "unit_conversion": unit_conversion, "vitamin_fact_verification": vitamin_fact_verification,
    "winowhy": winowhy, **{f"exam_{k}": _exam(k) for k in SUBJECTS},
}


# Chat wrappers any task's prompt may arrive in, so that the wrapper itself says nothing about the task.
WRAPPERS = ["{}", "{}", "{}", "Q: {}\nA:", "{}\nAnswer:", "Question: {}", "### Instruction:\n{}\n\n### Response:",
            "User: {}\nAssistant:", "{} Please answer briefly.", "Help me with this: {}", "{}\nThink step by step."]


def make_tasks(n_train, n_test=0, seed=0, tasks=None):
    """({task: [prompt] * n_train}, {task: [prompt] * n_test}); distinct prompts, none shared between the splits."""
    train, test = {}, {}
    for name in tasks or TASKS:
        r = random.Random(f"{seed}:{name}")
        seen, prompts = set(), []
        for _ in range(50 * (n_train + n_test)):
            p = r.choice(WRAPPERS).format(TASKS[name](r))
            if p not in seen:
                seen.add(p)
                prompts.append(p)
                if len(prompts) == n_train + n_test:
                    break
        train[name], test[name] = prompts[:n_train], prompts[n_train:]
    return train, test


def write_folder(examples, folder):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, prompts in examples.items():
        with open(folder / f"{name}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps({"prompt": p}, ensure_ascii=False) + "\n" for p in prompts)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=110)
    ap.add_argument("--test-out", help="also write a disjoint test folder here")
    ap.add_argument("--n-test", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    tr, te = make_tasks(a.n, a.n_test if a.test_out else 0, a.seed)
    write_folder(tr, a.out)
    if a.test_out:
        write_folder(te, a.test_out)
