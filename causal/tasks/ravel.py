"""RAVEL-style entity attributes (Huang et al. 2024; the MIB causal-variable track's RAVEL
task), written here from its description with a small city table of our own: a prompt names
a city and asks for one of its attributes. The task option `cities` picks the cities from a
larger table (`ALL_CITIES`), so a search can keep to what a model knows (the default is the
original 18; SMOLLM2_CITIES are the 17 whose three attributes SmolLM2-135M-Instruct answers).

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

from causal.errors import CausalModelError
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
# More cities a `cities` option may choose from (every answer's first token stays distinct).
MORE_CITIES = {
    "Munich": ("Germany", "Europe", "German"), "Barcelona": ("Spain", "Europe", "Spanish"),
    "Valencia": ("Spain", "Europe", "Spanish"), "Moscow": ("Russia", "Europe", "Russian"),
    "Amsterdam": ("Netherlands", "Europe", "Dutch"), "Athens": ("Greece", "Europe", "Greek"),
    "Stockholm": ("Sweden", "Europe", "Swedish"), "Marseille": ("France", "Europe", "French"),
    "Nairobi": ("Kenya", "Africa", "Swahili"), "Helsinki": ("Finland", "Europe", "Finnish"),
    "Copenhagen": ("Denmark", "Europe", "Danish"), "Kyoto": ("Japan", "Asia", "Japanese"),
    "Shanghai": ("China", "Asia", "Chinese"), "Milan": ("Italy", "Europe", "Italian"),
    "Toronto": ("Canada", "America", "English"), "Sydney": ("Australia", "Oceania", "English"),
}
ALL_CITIES = {**CITIES, **MORE_CITIES}
# The cities whose country, continent and language SmolLM2-135M-Instruct answers (README).
SMOLLM2_CITIES = ["Munich", "Barcelona", "Valencia", "Moscow", "Amsterdam", "Athens", "Stockholm", "Marseille",
                  "Beijing", "Tokyo", "Berlin", "Madrid", "Lyon", "Osaka", "Nairobi", "Helsinki", "Copenhagen"]
ATTRIBUTES = ["country", "continent", "language"]
TEMPLATE = "{city} is a city . its {attribute} is"


def _values(table: dict, i: int) -> list[str]:
    return sorted({row[i] for row in table.values()})


COUNTRIES, CONTINENTS, LANGUAGES = _values(CITIES, 0), _values(CITIES, 1), _values(CITIES, 2)
ANSWERS = COUNTRIES + CONTINENTS + LANGUAGES


def ravel_hypotheses(table: dict | None = None) -> dict[str, CausalModel]:
    table = CITIES if table is None else table
    countries, continents, languages = (_values(table, i) for i in range(3))
    answers = countries + continents + languages

    def _lookup(city: str, attribute: str) -> str:
        return table[city][ATTRIBUTES.index(attribute)]

    inputs = {"city": list(table), "attribute": ATTRIBUTES}
    attributes = CausalModel(
        {**inputs, "Country": countries, "Continent": continents, "Language": languages, "O": answers},
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
        {**inputs, "E": list(table), "O": answers},
        {"E": ["city"], "O": ["E", "attribute"]},
        {"E": lambda city: city, "O": lambda E, attribute: _lookup(E, attribute)},
        name="entity",
        descriptions={"E": "the city itself", "O": "its queried attribute"},
    )
    return {"attributes": attributes, "entity": entity}


def ravel(cities: list[str] | None = None) -> Task:
    """`cities`: names from ALL_CITIES (default: the original 18 of CITIES)."""
    if cities is None:
        table = CITIES
    else:
        unknown = [c for c in cities if c not in ALL_CITIES] if isinstance(cities, list) else [cities]
        if unknown or len(set(cities)) < 2:
            raise CausalModelError(f"ravel option cities: {unknown or cities!r} is not a list of two or more cities "
                                   f"from {sorted(ALL_CITIES)}")
        table = {c: ALL_CITIES[c] for c in cities}
    hypotheses = ravel_hypotheses(table)
    answers = hypotheses["attributes"].variables["O"]
    return template_task(
        "ravel", hypotheses["attributes"], TEMPLATE, {v: f" {v}" for v in answers},
        hypotheses={"entity": hypotheses["entity"]},
        description="RAVEL-style city attributes: 'Lima is a city . its language is' -> Spanish "
                    f"({len(table)} cities; country, continent, language)")
