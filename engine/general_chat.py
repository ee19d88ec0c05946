"""General-chat prompts: what the router learns as its base-model class ("no adapter fits").

Generated from templates (nothing is downloaded): greetings, thanks, goodbyes, questions about the assistant,
feelings, opinions, plans and everyday questions, some followed by the start of a reply, as the router reads
them before a later sentence. `general_chat(n, seed)` is deterministic.
"""
import random

NAMES = ["Anna", "Ben", "Chloe", "David", "Elif", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Keiko", "Luis"]
MOODS = ["happy", "tired", "bored", "great", "sad", "excited", "nervous", "relaxed", "sleepy", "cheerful"]
DAYS = ["good", "long", "busy", "lovely", "strange", "quiet", "hard", "fun"]
FAVOURITES = ["food", "movie", "song", "season", "animal", "book", "game", "holiday", "sport", "place"]
THINGS = ["pizza", "music", "rainy days", "summer", "dogs", "coffee", "chocolate", "the beach", "winter", "tea",
          "football", "painting", "the mountains", "ice cream", "cats", "gardening", "old films", "jazz"]
CREATURES = ["a cat", "a dog", "a bird", "a fish", "a horse", "a rabbit", "an owl", "a whale", "a bear", "a fox"]
TOPICS = ["the weather", "your weekend", "the moon", "the sea", "friendship", "trees", "the city", "breakfast",
          "the stars", "autumn", "birthdays", "the rain", "your day", "travel", "music", "the night sky"]
PLANS = ["this weekend", "tonight", "after work", "on a rainy day", "on holiday", "tomorrow morning"]

TEMPLATES = [
    # greetings and how are you
    lambda r: r.choice(["Hello!", "Hi.", "Hi!", "Hey there!", "Good morning.", "Good evening!", "Good afternoon.",
                        "Howdy!", "Hiya!", "Greetings!", "Hello there.", "Hey!"]),
    lambda r: f"{r.choice(['Hi', 'Hello', 'Hey'])}, I am {r.choice(NAMES)}. {r.choice(['Nice to meet you.', 'How are you?', ''])}".strip(),
    lambda r: r.choice(["How are you?", "How are you today?", "How is your day going?", "How have you been?",
                        "Are you doing well?", "What's up?", "How is it going?", "Hey, how are you doing?"]),
    # thanks and goodbyes
    lambda r: r.choice(["Thank you!", "Thanks.", "Thanks a lot!", "Thank you so much.", "Thanks for your help.",
                        "Great, thanks!", "That helped, thank you.", "Perfect, that is what I needed.", "Cool, thanks."]),
    lambda r: r.choice(["Goodbye!", "Bye.", "See you later!", "Good night.", "Talk to you soon.", "Bye for now!",
                        "I have to go now.", "See you tomorrow."]),
    # the assistant itself
    lambda r: r.choice(["Who are you?", "What is your name?", "What can you do?", "Are you a robot?",
                        "Can you help me?", "How do you work?", "Are you a person?", "Where do you live?",
                        "Do you have feelings?", "How old are you?", "What do you like to do?"]),
    # feelings, opinions, favourites
    lambda r: f"I am feeling {r.choice(MOODS)} today.",
    lambda r: f"I had a {r.choice(DAYS)} day.",
    lambda r: f"Do you like {r.choice(THINGS)}?",
    lambda r: f"I really like {r.choice(THINGS)}.",
    lambda r: f"What is your favourite {r.choice(FAVOURITES)}?",
    lambda r: f"What do you think about {r.choice(TOPICS)}?",
    lambda r: f"Tell me something about {r.choice(TOPICS)}.",
    lambda r: f"Tell me a story about {r.choice(CREATURES)}.",
    lambda r: f"Can we talk about {r.choice(TOPICS)}?",
    lambda r: f"What should I do {r.choice(PLANS)}?",
    lambda r: r.choice(["Tell me a joke.", "Say something nice.", "I am bored.", "Cheer me up, please.",
                        "Do you have any hobbies?", "Can you recommend a good book?", "What should I cook tonight?",
                        "Is it going to rain today?", "What a nice day!", "I love this.", "That is funny.",
                        "Sorry, I did not understand.", "Can you say that again?", "Okay.", "Sure!", "Really?",
                        "Why is the sky blue?", "Do you dream?", "Let's chat for a bit."]),
    lambda r: f"Is {r.choice(CREATURES)} a good pet?",
    lambda r: f"What does {r.choice(CREATURES)} eat?",
]

REPLIES = ["Hello! How can I help you today?", "I am fine, thank you.", "That is a nice question.",
           "Thank you for asking.", "You are welcome!", "Sure, let us talk about it.", "I think so too.",
           "That sounds lovely.", "Good to hear from you.", "I am a small assistant.", "Here is what I think."]
WITH_REPLY = 0.3  # share of prompts followed by the first sentence of a reply


def general_chat(n: int, seed: int = 0) -> list[str]:
    """n general-chat router inputs: a prompt, or (WITH_REPLY of them) a prompt and the start of a reply."""
    r = random.Random(f"general-chat-{seed}")
    out = []
    for _ in range(n):
        prompt = r.choice(TEMPLATES)(r)
        out.append(f"{prompt}\n{r.choice(REPLIES)}" if r.random() < WITH_REPLY else prompt)
    return out
