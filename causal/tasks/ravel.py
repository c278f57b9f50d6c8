"""RAVEL-style entity attributes (Huang et al. 2024; the MIB causal-variable track's RAVEL
task), written here from its description with a small city table of our own: a prompt names
a city and asks for one of its attributes.

    "Lima is a city . its language is" -> " Spanish"

Inputs: the city and the queried attribute (country, continent or language). Languages and
continents are shared across countries in different combinations (Spanish in Spain, Peru and
Colombia; French in Europe, America and Africa), so neither determines the other.

Hypotheses:
  attributes  Country, Continent, Language of the city, each its own variable; O = the one
              the prompt asks for. RAVEL's question: does a subspace carry one attribute and
              leave the others (interchanging Country changes a "country" answer only)?
  entity      E = the city itself; O = its queried attribute. Interchanging E moves every
              attribute at once.
"""

from __future__ import annotations

from causal.model import CausalModel
from causal.tasks.task import Task
from causal.tasks.template import template_task

# city: (country, continent, language)
CITIES = {
    "Paris": ("France", "Europe", "French"),
    "Lyon": ("France", "Europe", "French"),
    "Berlin": ("Germany", "Europe", "German"),
    "Vienna": ("Austria", "Europe", "German"),
    "Madrid": ("Spain", "Europe", "Spanish"),
    "Seville": ("Spain", "Europe", "Spanish"),
    "Lisbon": ("Portugal", "Europe", "Portuguese"),
    "Rome": ("Italy", "Europe", "Italian"),
    "Lima": ("Peru", "America", "Spanish"),
    "Bogota": ("Colombia", "America", "Spanish"),
    "Brasilia": ("Brazil", "America", "Portuguese"),
    "Quebec": ("Canada", "America", "French"),
    "Tokyo": ("Japan", "Asia", "Japanese"),
    "Osaka": ("Japan", "Asia", "Japanese"),
    "Beijing": ("China", "Asia", "Chinese"),
    "Cairo": ("Egypt", "Africa", "Arabic"),
    "Dakar": ("Senegal", "Africa", "French"),
    "Rabat": ("Morocco", "Africa", "Arabic"),
}
ATTRIBUTES = ["country", "continent", "language"]
TEMPLATE = "{city} is a city . its {attribute} is"


def _values(i: int) -> list[str]:
    return sorted({row[i] for row in CITIES.values()})


COUNTRIES, CONTINENTS, LANGUAGES = _values(0), _values(1), _values(2)
ANSWERS = COUNTRIES + CONTINENTS + LANGUAGES


def _lookup(city: str, attribute: str) -> str:
    return CITIES[city][ATTRIBUTES.index(attribute)]


def ravel_hypotheses() -> dict[str, CausalModel]:
    inputs = {"city": list(CITIES), "attribute": ATTRIBUTES}
    attributes = CausalModel(
        {**inputs, "Country": COUNTRIES, "Continent": CONTINENTS, "Language": LANGUAGES, "O": ANSWERS},
        {"Country": ["city"], "Continent": ["city"], "Language": ["city"],
         "O": ["attribute", "Country", "Continent", "Language"]},
        {"Country": lambda city: _lookup(city, "country"),
         "Continent": lambda city: _lookup(city, "continent"),
         "Language": lambda city: _lookup(city, "language"),
         "O": lambda attribute, Country, Continent, Language:
             {"country": Country, "continent": Continent, "language": Language}[attribute]},
        name="attributes",
        descriptions={"Country": "the city's country", "Continent": "the city's continent",
                      "Language": "the city's language", "O": "the attribute the prompt asks for"},
    )
    entity = CausalModel(
        {**inputs, "E": list(CITIES), "O": ANSWERS},
        {"E": ["city"], "O": ["E", "attribute"]},
        {"E": lambda city: city, "O": lambda E, attribute: _lookup(E, attribute)},
        name="entity",
        descriptions={"E": "the city itself", "O": "its queried attribute"},
    )
    return {"attributes": attributes, "entity": entity}


def ravel() -> Task:
    hypotheses = ravel_hypotheses()
    return template_task(
        "ravel", hypotheses["attributes"], TEMPLATE, {v: f" {v}" for v in ANSWERS},
        hypotheses={"entity": hypotheses["entity"]},
        description="RAVEL-style city attributes: 'Lima is a city . its language is' -> Spanish "
                    f"({len(CITIES)} cities; country, continent, language)")
