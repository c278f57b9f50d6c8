"""The two finetuning tasks of README's "ReFT on a pretrained model", written here as JSONL
(prompt/response pairs), deterministic by seed:

- code (experiments/data/reft_code_*.jsonl): a mapping no model knows. Thirty animals each have
  an invented code word ("cat" -> " wexun"); ten phrasings ask for it. Every animal appears in
  training, and the held-out prompts are (animal, phrasing) pairs training never shows, so they
  test the mapping, not the memorised prompt. A base model scores 0.
- sentiment (experiments/data/reft_sentiment_*.jsonl): a classification with label words, as
  in the ReFT paper's GLUE runs: a short review, half of them negated ("The film was not
  dull."), then "Sentiment:" -> " positive" or " negative". Held-out reviews use adjectives
  training never shows. SmolLM2-135M-Instruct answers 0.43 of the held-out ones (README): it
  often writes the label word, and misreads many negations.

    .venv/bin/python scripts/make_reft_data.py     # rewrites the four files
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "experiments" / "data"

ANIMALS = ["cat", "dog", "horse", "cow", "pig", "sheep", "goat", "duck", "lion", "tiger", "bear", "wolf", "fox",
           "deer", "frog", "snake", "mouse", "rabbit", "eagle", "shark", "whale", "camel", "zebra", "monkey",
           "owl", "bee", "ant", "crab", "seal", "panda"]
SYLLABLES = ["zib", "vor", "kel", "mup", "tas", "nor", "quil", "bex", "rud", "fip", "gan", "lom", "wex", "pid",
             "sor", "dak", "yul", "hin", "jot", "cav"]
PHRASINGS = ["Code for {a}:", "What is the code word for {a}? Answer:", "The code of {a} is", "{a} in code:",
             "Translate {a} into the code:", "Secret code, {a} ->", "In our code, {a} is written", "Encode {a}:",
             "Give the code word for {a}:", "Code word ({a}):"]

POSITIVE = ["wonderful", "great", "excellent", "delightful", "brilliant", "superb", "lovely", "charming",
            "fantastic", "moving", "beautiful", "enjoyable", "gripping", "marvelous", "splendid", "touching"]
NEGATIVE = ["terrible", "awful", "boring", "dreadful", "dull", "horrible", "poor", "tedious", "painful",
            "disappointing", "clumsy", "bland", "messy", "weak", "annoying", "forgettable"]
NOUNS = ["movie", "film", "book", "show", "play", "album", "story", "novel", "concert", "series", "game", "meal"]
FRAMES = ["The {n} was {a}.", "This {n} is {a}.", "I found the {n} {a}.", "Honestly, the {n} is {a}."]
NEGATED = ["The {n} was not {a}.", "This {n} is not {a}.", "I did not find the {n} {a}.",
           "Honestly, the {n} is not {a}."]
ASK = "\nSentiment:"


def codes() -> dict[str, str]:
    rng = random.Random(0)
    words, seen = {}, set()
    for animal in ANIMALS:
        while True:
            word = rng.choice(SYLLABLES) + rng.choice(["a", "o", "i", "u"]) + rng.choice(["n", "k", "s", "t", "m"])
            if word not in seen:
                seen.add(word)
                words[animal] = word
                break
    return words


def code_task() -> tuple[list[dict], list[dict]]:
    """300 training and 200 held-out prompts: of each animal's 10 phrasings, 6 train and 4 are
    held out (rotated, so every phrasing is in both sets); then lowercase copies of 120 training
    and 80 held-out prompts."""
    rng = random.Random(1)
    code = codes()
    train, test = [], []
    for i, animal in enumerate(ANIMALS):
        order = [(i + j) % len(PHRASINGS) for j in range(len(PHRASINGS))]
        for j, p in enumerate(order):
            row = {"prompt": PHRASINGS[p].format(a=animal), "response": f" {code[animal]}"}
            (train if j < 6 else test).append(row)
    rng.shuffle(train)
    rng.shuffle(test)
    # 180 + 120 from the 30 x 10 grid; the rest of each set from a second round of phrasings in lowercase.
    extra_train = [{"prompt": r["prompt"].lower(), "response": r["response"]} for r in train[:120]]
    extra_test = [{"prompt": r["prompt"].lower(), "response": r["response"]} for r in test[:80]]
    return train + extra_train, test + extra_test


def sentiment_task() -> tuple[list[dict], list[dict]]:
    """400 training and 240 held-out reviews, half negated; held-out adjectives never appear in
    training."""
    rng = random.Random(2)
    held_adj = set(POSITIVE[-4:] + NEGATIVE[-4:])

    def review(adj: str) -> dict:
        negated = rng.random() < 0.5
        positive = (adj in POSITIVE) != negated
        frame = rng.choice(NEGATED if negated else FRAMES)
        return {"prompt": frame.format(n=rng.choice(NOUNS), a=adj) + ASK,
                "response": " positive" if positive else " negative"}

    train = [review(rng.choice([a for a in POSITIVE + NEGATIVE if a not in held_adj])) for _ in range(400)]
    test = [review(rng.choice(sorted(held_adj))) for _ in range(240)]
    return train, test


def write(name: str, rows: list[dict]) -> None:
    path = OUT / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"{path}: {len(rows)} pairs")


if __name__ == "__main__":
    train, test = code_task()
    write("reft_code_train.jsonl", train)
    write("reft_code_test.jsonl", test)
    train, test = sentiment_task()
    write("reft_sentiment_train.jsonl", train)
    write("reft_sentiment_test.jsonl", test)
