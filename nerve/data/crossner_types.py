"""Entity-type descriptions for the CrossNER domains and CoNLL-2003.

Shared by the IF-WRANER trainer (source-domain prompts) and ``nerve eval`` (target-domain
prompts), so that a type reads the same in training and in evaluation. The descriptions are
short on purpose: every prompt lists them, and the small LLM pays for every token.
"""

from __future__ import annotations

from collections.abc import Iterable

from nerve.vocab.types import EntityType

CROSSNER_TYPE_DESCRIPTIONS: dict[str, str] = {
    # shared / CoNLL-2003
    "person": "name of a person who is not covered by a more specific person type",
    "organisation": "name of a company, institution, team, agency or other organisation",
    "location": "name of a place that is not a country: city, region, building, river, ...",
    "country": "name of a country or state",
    "misc": "other proper name: nationality, language, religion, product, work, ...",
    "event": "name of a specific event: war, festival, conference edition, tournament, ...",
    "award": "name of a prize, medal or honour",
    # politics
    "politician": "name of a politician",
    "politicalparty": "name of a political party",
    "election": "name of an election, e.g. the 2004 United States presidential election",
    # science
    "scientist": "name of a scientist",
    "university": "name of a university or college",
    "discipline": "name of a scientific discipline or field of study",
    "enzyme": "name of an enzyme",
    "protein": "name of a protein",
    "chemicalcompound": "name of a chemical compound",
    "chemicalelement": "name of a chemical element",
    "astronomicalobject": "name of a planet, star, galaxy, comet or other astronomical object",
    "academicjournal": "name of an academic journal",
    "theory": "name of a scientific theory, law or principle",
    # music
    "musicgenre": "name of a music genre",
    "song": "title of a song",
    "band": "name of a band or musical group",
    "album": "title of an album",
    "musicalartist": "name of a singer, musician or composer",
    "musicalinstrument": "name of a musical instrument",
    # literature
    "book": "title of a book, novel or play",
    "writer": "name of a writer, novelist or poet",
    "poem": "title of a poem",
    "magazine": "name of a magazine or newspaper",
    "literarygenre": "name of a literary genre",
    # ai
    "field": "name of a research field or area of AI",
    "task": "name of a task or problem, e.g. machine translation",
    "product": "name of a product, system or software",
    "algorithm": "name of an algorithm, model or method",
    "researcher": "name of a researcher",
    "metrics": "name of an evaluation metric or measure",
    "programlang": "name of a programming language",
    "conference": "name of a conference or workshop",
}


# Without a "country" type (CoNLL-2003), countries are locations: a description saying
# otherwise would contradict the gold answers the model is trained and scored on.
LOCATION_WITH_COUNTRIES = "name of a place: country, city, region, building, river, ..."


def entity_types_for(names: Iterable[str]) -> list[EntityType]:
    """EntityType objects for ``names`` (in that order); unknown names get no description."""
    names = list(names)
    descriptions = dict(CROSSNER_TYPE_DESCRIPTIONS)
    if "country" not in names:
        descriptions["location"] = LOCATION_WITH_COUNTRIES
    return [EntityType(name=name, description=descriptions.get(name, "")) for name in names]
