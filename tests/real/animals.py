from causal import CausalModel
from causal.tasks import template_task

ANIMALS = ["cat", "dog", "bird", "fish", "horse", "cow", "pig", "sheep", "goat", "duck",
           "lion", "tiger", "bear", "wolf", "fox", "deer", "frog", "snake", "mouse", "rabbit"]


def build():
    model = CausalModel({"w": ANIMALS, "W": ANIMALS, "O": ANIMALS}, {"W": ["w"], "O": ["W"]},
                        {"W": lambda w: w, "O": lambda W: W}, name="copy")
    return template_task("animal_copy", model, "The animal is {w} . Again , the animal is",
                         {a: f" {a}" for a in ANIMALS})
