"""Generators for the bundled demo's tasks: one function per task, each `task(rng) -> Example`.

An Example is a plain-English `prompt` (what a user types), its exact `response` (checked by exact
match), and a terse `fact` (the same operation in a notation such as `reverse(garden) = nedrag`).
The base model is pretrained on facts and small talk only, so it knows the operations but has never
seen a task prompt; each task's LoRA adapter teaches it to answer that task's prompts.
Responses contain no sentence-ending punctuation, so the app routes once per answer. A two-task prompt
(`two_tasks`) is answered as two lines, one answer each: the app routes again after the line break, so the
second answer is written under the second task's adapter.
"""
import calendar
import string
from typing import NamedTuple


class Example(NamedTuple):
    prompt: str
    response: str
    fact: str


ITEMS = ["apples", "books", "coins", "pencils", "stickers", "marbles", "cards", "shells", "cookies", "stamps"]
WORDS = ("apple garden planet window yellow river silver dragon castle forest orange pencil rabbit "
         "monkey butter candle doctor engine flower guitar hammer island jacket kitten ladder magnet "
         "number pepper pocket rocket saddle tiger tomato violin wizard basket bottle camera dinner "
         "family finger hunter letter mother nature parrot people summer table water winter paper "
         "house music light night stone cloud bread chair green heart money plant queen smile train "
         "world zebra beach brick clock dream frost grape horse lemon mouse ocean pilot radio snake "
         "tooth uncle whale bird cake door fish gold king lamp moon nest rain ship star tree wolf sun "
         "cat dog hat map pen cup box egg ice jam key owl red sky toy van web yak").split()

ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen").split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()

# Toy language: every English word has one Zorbish word, so translation is word by word.
ZORBISH = {
    "the": "lo", "a": "na",
    "big": "grof", "small": "piti", "red": "rubo", "blue": "azu", "happy": "felo", "old": "vek",
    "fast": "zimo", "green": "verd",
    "cat": "miko", "dog": "vuno", "bird": "piro", "fish": "naka", "house": "domo", "tree": "arbo",
    "boy": "kilo", "girl": "kila", "horse": "ekvo", "apple": "pomo",
    "sees": "vidas", "likes": "amas", "finds": "trovas", "eats": "mangas",
    "runs": "kuras", "sleeps": "dormas", "sings": "kantas", "jumps": "saltas",
}
ADJECTIVES = ["big", "small", "red", "blue", "happy", "old", "fast", "green"]
NOUNS = ["cat", "dog", "bird", "fish", "house", "tree", "boy", "girl", "horse", "apple"]
TRANSITIVE = ["sees", "likes", "finds", "eats"]
INTRANSITIVE = ["runs", "sleeps", "sings", "jumps"]

UNITS = [("kilometers", "meters", "km", "m", 1000), ("meters", "centimeters", "m", "cm", 100),
         ("kilograms", "grams", "kg", "g", 1000), ("liters", "milliliters", "l", "ml", 1000),
         ("centimeters", "millimeters", "cm", "mm", 10), ("tons", "kilograms", "t", "kg", 1000)]


def number_to_words(n):
    """0 <= n <= 999 in English words: 347 -> 'three hundred forty-seven'."""
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("-" + ONES[n % 10] if n % 10 else "")
    rest = n % 100
    return ONES[n // 100] + " hundred" + (" " + number_to_words(rest) if rest else "")


def arithmetic(rng):
    if rng.random() < 0.5:
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        prompt = rng.choice([
            f"What is {a} plus {b}?",
            f"How much is {a} plus {b}?",
            f"Add {a} and {b}.",
            f"What is the sum of {a} and {b}?",
            f"Please calculate {a} plus {b}.",
            f"If you have {a} {rng.choice(ITEMS)} and get {b} more, how many do you have?",
        ])
        return Example(prompt, str(a + b), f"{a} + {b} = {a + b}")
    b = rng.randint(1, 9)
    a = rng.randint(b + 1, b + 9)
    prompt = rng.choice([
        f"What is {a} minus {b}?",
        f"How much is {a} minus {b}?",
        f"Please calculate {a} minus {b}.",
        f"If you start with {a} and take away {b}, what is left?",
        f"If you have {a} {rng.choice(ITEMS)} and give away {b}, how many are left?",
    ])
    return Example(prompt, str(a - b), f"{a} - {b} = {a - b}")


def reverse(rng):
    # Made-up words too, so the model learns to reverse any letters, not a word list.
    word = rng.choice(WORDS) if rng.random() < 0.7 else "".join(
        rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 8)))
    prompt = rng.choice([
        f"Reverse the word '{word}'.",
        f"Write the word '{word}' backwards.",
        f"What is '{word}' spelled backwards?",
        f"Please reverse the letters of '{word}'.",
        f"Can you write '{word}' in reverse order?",
    ])
    return Example(prompt, word[::-1], f"reverse({word}) = {word[::-1]}")


def number_words(rng):
    n = rng.randint(0, 999)
    prompt = rng.choice([
        f"Write the number {n} in words.",
        f"How do you write {n} in English words?",
        f"Spell out the number {n}.",
        f"What is {n} written out in words?",
        f"Please write {n} using words instead of digits.",
    ])
    return Example(prompt, number_to_words(n), f"{n} = {number_to_words(n)}")


def sort_numbers(rng):
    numbers = rng.sample(range(10, 100), rng.randint(3, 5))  # all two-digit: a tiny model sorts equal-length numbers far more reliably
    shown, ordered = ", ".join(map(str, numbers)), ", ".join(map(str, sorted(numbers)))
    prompt = rng.choice([
        f"Sort these numbers from smallest to largest: {shown}.",
        f"Put the following numbers in ascending order: {shown}.",
        f"Arrange {shown} in increasing order.",
        f"Order these from least to greatest: {shown}.",
        f"Can you sort the list {shown} for me?",
    ])
    return Example(prompt, ordered, f"sort({' '.join(map(str, numbers))}) = {' '.join(map(str, sorted(numbers)))}")


def dates(rng):
    year, month = rng.randint(1950, 2049), rng.randint(1, 12)
    day = rng.randint(1, calendar.monthrange(year, month)[1])
    iso, written = f"{year}-{month:02d}-{day:02d}", f"{calendar.month_name[month]} {day}, {year}"
    prompt = rng.choice([
        f"Write the date {iso} in words.",
        f"Convert {iso} to a written date.",
        f"How would you write {iso} as a normal date?",
        f"Please spell out the date {iso} with the month name.",
        f"What is {iso} written as month, day and year?",
    ])
    return Example(prompt, written, f"{iso} = {written}")


def translate(rng):
    def phrase():
        words = [rng.choice(["the", "a"])] + ([rng.choice(ADJECTIVES)] if rng.random() < 0.6 else [])
        return words + [rng.choice(NOUNS)]

    if rng.random() < 0.5:
        english = phrase() + [rng.choice(TRANSITIVE)] + phrase()
    else:
        english = phrase() + [rng.choice(INTRANSITIVE)]
    sentence, zorbish = " ".join(english), " ".join(ZORBISH[w] for w in english)
    prompt = rng.choice([
        f"Translate into Zorbish: {sentence}.",
        f"How do you say '{sentence}' in Zorbish?",
        f"Please translate this sentence to Zorbish: {sentence}.",
        f"What is the Zorbish for '{sentence}'?",
    ])
    return Example(prompt, zorbish, f"zorbish({sentence}) = {zorbish}")


def units(rng):
    big, small, big_abbr, small_abbr, factor = rng.choice(UNITS)
    x = rng.randint(2, 99)
    prompt = rng.choice([
        f"Convert {x} {big} to {small}.",
        f"How many {small} are there in {x} {big}?",
        f"Express {x} {big} in {small}.",
        f"What is {x} {big} in {small}?",
    ])
    return Example(prompt, f"{x * factor} {small}", f"{x} {big_abbr} = {x * factor} {small_abbr}")


# In name order: the order of the adapter folders, the router's outputs and every report.
TASKS = {"arithmetic": arithmetic, "dates": dates, "number_words": number_words, "reverse": reverse,
         "sort": sort_numbers, "translate": translate, "units": units}


ANIMALS = {"cow": ("moo", "on a farm"), "dog": ("woof", "in a house"), "cat": ("meow", "in a house"),
           "duck": ("quack", "near a pond"), "sheep": ("baa", "on a farm"), "lion": ("roar", "in Africa"),
           "bee": ("buzz", "in a hive"), "frog": ("ribbit", "near a pond"), "horse": ("neigh", "on a farm")}
COLORS = {"banana": "yellow", "sky": "blue", "grass": "green", "lemon": "yellow", "tomato": "red",
          "snow": "white", "coal": "black", "orange": "orange", "cherry": "red", "sea": "blue"}


def small_talk(rng):
    """One (user, assistant) chat turn that is not a task: the base model learns the chat format from it."""
    animal, (sound, home) = rng.choice(list(ANIMALS.items()))
    thing, color = rng.choice(list(COLORS.items()))
    return rng.choice([
        (rng.choice(["Hello!", "Hi there.", "Good morning!", "Hey, how are you?"]),
         rng.choice(["Hello! How can I help you today?", "Hi! I am fine, thank you. What can I do for you?"])),
        (f"What sound does a {animal} make?", f"A {animal} says {sound}."),
        (f"Where does a {animal} live?", f"A {animal} usually lives {home}."),
        (f"What color is the {thing}?", f"The {thing} is {color}."),
        (f"Tell me something about the {animal}.", f"The {animal} is an animal that lives {home}. It says {sound}."),
        (rng.choice(["Thank you!", "Thanks a lot.", "That was helpful."]),
         rng.choice(["You are welcome!", "Happy to help. Ask me anything else."])),
        (f"Do you like the color {color}?", f"Yes, {color} is a nice color, like the {thing}."),
        ("Who are you?", "I am a small demo model. Ask me a question and the router will pick my adapters."),
    ])



# "Do A, then B": how a two-task prompt joins its parts (the second part starts lowercase).
JOINS = ["{a} Then {b}", "First, {a} Then, {b}", "{a} After that, {b}", "{a} And {b}", "Two things. {a} {b}"]


def _lower_first(text):
    return text[0].lower() + text[1:]


def two_tasks(rng, first, second):
    """A prompt that asks for two examples' tasks in order -> (prompt, the answer: two lines)."""
    join = rng.choice(JOINS)
    a = _lower_first(first.prompt) if join.startswith("First") else first.prompt
    b = second.prompt if join.startswith("Two") else _lower_first(second.prompt)
    return join.format(a=a, b=b), f"{first.response}\n{second.response}"
