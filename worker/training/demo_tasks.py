"""The demo's little world: templated tasks a tiny model can learn on a laptop CPU in a minute.

Two things are drawn from it, with different seeds, so they share the vocabulary and the facts but not
the examples:

- the demo dataset `demo_data/demo.jsonl` (chat messages, committed; regenerate with
  `python -m worker.training.demo_tasks`), which a demo run fine-tunes on;
- the demo base model's pre-training text ("Q: ...\\nA: ..." lines, built by demo.py), so the base
  already knows the words and answers but not the chat format. Fine-tuning then visibly teaches the
  format: the loss starts high on the chat markers and falls within a minute.

Every answer repeats a fixed pattern ("25 °C = 77 °F", '{"country": ..., "capital": ...}') while
numbers and words vary, which is what makes the loss curve fall fast and keep falling.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

DATASET_FILE = Path(__file__).resolve().parent / "demo_data" / "demo.jsonl"
DATASET_SEED = 20240611
DATASET_SIZE = 640
SYSTEM = "You are a concise assistant. Answer in the requested format."

WORDS = (
    "apple river garden window planet silver rabbit candle forest pencil orange bottle castle dragon "
    "mirror rocket summer winter spring autumn market island jacket ladder marble needle ocean pepper "
    "puzzle rainbow saddle tiger violin wagon yellow zebra anchor basket cactus dinner engine falcon "
    "ginger hammer igloo jungle kettle lemon magnet napkin oyster parrot quilt ribbon sailor tunnel "
    "umbrella valley walrus button cookie donkey feather guitar helmet insect jigsaw koala lantern "
    "meadow noodle orbit pillow quartz record spider teapot unicorn velvet wizard cloud stone bread"
).split()
CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Portugal": "Lisbon",
    "Japan": "Tokyo", "Canada": "Ottawa", "Egypt": "Cairo", "Kenya": "Nairobi", "Peru": "Lima",
    "Chile": "Santiago", "Norway": "Oslo", "Sweden": "Stockholm", "Finland": "Helsinki", "Poland": "Warsaw",
    "Greece": "Athens", "Austria": "Vienna", "Ireland": "Dublin", "India": "New Delhi", "China": "Beijing",
    "Mexico": "Mexico City", "Cuba": "Havana", "Ghana": "Accra", "Nepal": "Kathmandu", "Iceland": "Reykjavik",
    "Hungary": "Budapest", "Denmark": "Copenhagen", "Belgium": "Brussels", "Turkey": "Ankara", "Australia": "Canberra",
}
OPPOSITES = {
    "hot": "cold", "big": "small", "fast": "slow", "happy": "sad", "light": "dark", "early": "late",
    "open": "closed", "up": "down", "full": "empty", "old": "new", "hard": "soft", "loud": "quiet",
    "wet": "dry", "rich": "poor", "strong": "weak", "high": "low", "long": "short", "thick": "thin",
    "near": "far", "clean": "dirty", "young": "old", "heavy": "light", "first": "last", "inside": "outside",
}
ANIMALS = {
    "cow": "moo", "dog": "woof", "cat": "meow", "duck": "quack", "sheep": "baa", "owl": "hoot",
    "lion": "roar", "pig": "oink", "horse": "neigh", "frog": "ribbit", "bee": "buzz", "mouse": "squeak",
}
THINGS = {
    "grass": "green", "the sky": "blue", "snow": "white", "coal": "black", "a banana": "yellow",
    "a tomato": "red", "an orange": "orange", "a lemon": "yellow", "chocolate": "brown", "a plum": "purple",
    "the sea": "blue", "milk": "white", "a strawberry": "red", "a leaf": "green",
}
NAMES = "Anna Ben Chloe David Emma Farid Grace Hugo Ines Jonas Kira Leo Maya Nora Omar Priya Quinn Rosa Sam Tara Umar Vera Will Yara Zoe".split()
DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
PHRASES = (
    "good morning", "watch out", "we did it", "time to go", "the cake is ready", "happy birthday",
    "look at the stars", "the train is late", "keep going", "that was close", "dinner is served", "see you soon",
)


def _num(x: float) -> str:
    return f"{round(x, 1):g}"


def temperature(rng: random.Random) -> tuple[str, str]:
    if rng.random() < 0.6:
        c = rng.randint(-20, 45)
        ask = rng.choice(("Convert {c} °C to Fahrenheit.", "What is {c} degrees Celsius in Fahrenheit?", "{c} °C in °F?"))
        return ask.format(c=c), f"{c} °C = {_num(c * 9 / 5 + 32)} °F"
    f = rng.randint(-4, 113)
    ask = rng.choice(("Convert {f} °F to Celsius.", "What is {f} degrees Fahrenheit in Celsius?", "{f} °F in °C?"))
    return ask.format(f=f), f"{f} °F = {_num((f - 32) * 5 / 9)} °C"


def reverse(rng: random.Random) -> tuple[str, str]:
    w = rng.choice(WORDS)
    ask = rng.choice(('Reverse the word "{w}".', 'Spell "{w}" backwards.', 'Write "{w}" in reverse.'))
    return ask.format(w=w), f'"{w}" reversed is "{w[::-1]}".'


def shout(rng: random.Random) -> tuple[str, str]:
    p = rng.choice(PHRASES)
    return rng.choice(("Shout: {p}", "Say it loudly: {p}", "Make this a shout: {p}")).format(p=p), p.upper() + "!"


def capital(rng: random.Random) -> tuple[str, str]:
    country = rng.choice(sorted(CAPITALS))
    ask = rng.choice(("What is the capital of {c}? Reply in JSON.", "Capital of {c}, as JSON.", "JSON please: the capital of {c}."))
    return ask.format(c=country), json.dumps({"country": country, "capital": CAPITALS[country]})


def opposite(rng: random.Random) -> tuple[str, str]:
    a = rng.choice(sorted(OPPOSITES))
    ask = rng.choice(('Give the opposite of "{a}".', 'What is the opposite of "{a}"?', 'Antonym of "{a}"?'))
    return ask.format(a=a), f'The opposite of "{a}" is "{OPPOSITES[a]}".'


def count_letters(rng: random.Random) -> tuple[str, str]:
    w = rng.choice(WORDS)
    ask = rng.choice(('How many letters are in "{w}"?', 'Count the letters of "{w}".', 'Letter count of "{w}"?'))
    return ask.format(w=w), f'"{w}" has {len(w)} letters.'


def sort_numbers(rng: random.Random) -> tuple[str, str]:
    nums = rng.sample(range(100), rng.randint(3, 5))
    listed = ", ".join(map(str, nums))
    ask = rng.choice(("Sort these numbers: {n}.", "Put in ascending order: {n}.", "Order from smallest: {n}."))
    return ask.format(n=listed), ", ".join(map(str, sorted(nums)))


def add(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randint(0, 20), rng.randint(0, 20)
    ask = rng.choice(("What is {a} plus {b}?", "Add {a} and {b}.", "{a} + {b} = ?"))
    return ask.format(a=a, b=b), f"{a} + {b} = {a + b}"


def animal(rng: random.Random) -> tuple[str, str]:
    a = rng.choice(sorted(ANIMALS))
    ask = rng.choice(("What sound does a {a} make?", "How does a {a} sound?", "What does a {a} say?"))
    return ask.format(a=a), f'A {a} says "{ANIMALS[a]}".'


def color(rng: random.Random) -> tuple[str, str]:
    t = rng.choice(sorted(THINGS))
    ask = rng.choice(("What color is {t}?", "Which colour is {t}?", "Tell me the color of {t}."))
    return ask.format(t=t), f"{t[0].upper() + t[1:]} is usually {THINGS[t]}."


def greet(rng: random.Random) -> tuple[str, str]:
    n = rng.choice(NAMES)
    return rng.choice(("Greet {n}.", "Say hello to {n}.", "Welcome {n}.")).format(n=n), f"Hello, {n}! Nice to meet you."


def next_day(rng: random.Random) -> tuple[str, str]:
    i = rng.randrange(7)
    ask = rng.choice(("What day comes after {d}?", "Which day follows {d}?", "The day after {d} is?"))
    return ask.format(d=DAYS[i]), f"After {DAYS[i]} comes {DAYS[(i + 1) % 7]}."


def acronym(rng: random.Random) -> tuple[str, str]:
    words = rng.sample(WORDS, rng.randint(2, 4))
    ask = rng.choice(('Make an acronym of "{w}".', 'Acronym for "{w}"?', 'Initials of "{w}"?'))
    return ask.format(w=" ".join(words)), "".join(w[0] for w in words).upper()


TASKS: tuple[Callable[[random.Random], tuple[str, str]], ...] = (
    temperature, reverse, shout, capital, opposite, count_letters, sort_numbers, add, animal, color, greet, next_day, acronym,
)


def chat_example(rng: random.Random) -> dict:
    """One dataset row: mostly a single turn, sometimes with a system message, sometimes two turns."""
    messages: list[dict[str, str]] = []
    if rng.random() < 0.15:
        messages.append({"role": "system", "content": SYSTEM})
    for _ in range(2 if rng.random() < 0.1 else 1):
        user, assistant = rng.choice(TASKS)(rng)
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return {"messages": messages}


def pretraining_text(rng: random.Random, pairs: int) -> str:
    """Plain "Q: ... A: ..." text for the base model: the knowledge without the chat format."""
    return "".join("Q: {}\nA: {}\n".format(*rng.choice(TASKS)(rng)) for _ in range(pairs))


def write_dataset(path: Path = DATASET_FILE) -> None:
    rng = random.Random(DATASET_SEED)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for _ in range(DATASET_SIZE):
            fh.write(json.dumps(chat_example(rng), ensure_ascii=False) + "\n")


if __name__ == "__main__":
    write_dataset()
    print(f"wrote {DATASET_SIZE} examples to {DATASET_FILE}")
