"""DCAT 3 (JSON-LD) export of the published catalog, for open-data portals.

Mapping (REFERENCE, catalog metadata): code -> dct:identifier; classification
-> dcat:theme (a skos:Concept with the classification code as notation);
provider -> dct:publisher; share type and openness -> dct:accessRights (EU
access-right authority); update cycle -> dct:accrualPeriodicity (EU
frequency authority); publish date -> dct:issued; related codes ->
dct:relation; data items -> a CSVW table schema; share modes ->
distributions.  Only published content is exported.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from hub.catalog.catalog import Catalog
from hub.catalog.entry import CatalogEntry
from hub.catalog.metadata import CATEGORIES, CODE, SHARE_TYPES

DEFAULT_BASE = "urn:exchange:catalog:"
CONTEXT = {
    "dcat": "http://www.w3.org/ns/dcat#",
    "dct": "http://purl.org/dc/terms/",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "skos": "http://www.w3.org/2004/02/skos/core#",
    "csvw": "http://www.w3.org/ns/csvw#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
}
ACCESS_RIGHTS = "http://publications.europa.eu/resource/authority/access-right/"
FREQUENCY = "http://publications.europa.eu/resource/authority/frequency/"
FREQUENCIES = {"realtime": "UPDATE_CONT", "daily": "DAILY", "weekly": "WEEKLY", "monthly": "MONTHLY",
               "quarterly": "QUARTERLY", "yearly": "ANNUAL"}
XSD_TYPES = {"C": "string", "M": "string", "N": "decimal", "Y": "decimal", "F": "double", "I": "integer",
             "D": "date", "T": "dateTime", "L": "boolean", "B": "base64Binary", "G": "base64Binary"}


def dataset_iri(code: str, base: str = DEFAULT_BASE) -> str:
    return base + quote(code, safe="")


def export(catalog: Catalog, base: str = DEFAULT_BASE, title: str = "Government data resource catalog") -> dict[str, Any]:
    """The published catalog as a JSON-LD document (a dcat:Catalog with one dcat:Dataset per entry)."""
    return {
        "@context": CONTEXT,
        "@id": base + "catalog",
        "@type": "dcat:Catalog",
        "dct:title": title,
        "dcat:dataset": [dataset(entry, base) for entry in catalog.published()],
    }


def dataset(entry: CatalogEntry, base: str = DEFAULT_BASE) -> dict[str, Any]:
    """One published entry as a dcat:Dataset."""
    c = entry.published
    assert c is not None
    classification = CODE.match(c["code"])
    theme = c["code"].partition("/")[0]
    return {
        "@id": dataset_iri(c["code"], base),
        "@type": "dcat:Dataset",
        "dct:identifier": c["code"],
        "dct:title": c["name"],
        "dct:description": c["summary"],
        "dct:publisher": {"@type": "foaf:Organization", "foaf:name": c["provider"], "dct:identifier": c["provider_uscc"]},
        "dcat:theme": {"@id": base + "classification:" + theme, "@type": "skos:Concept", "skos:notation": theme,
                       "skos:prefLabel": CATEGORIES[classification["category"]] if classification else theme},
        "dct:accessRights": {"@id": ACCESS_RIGHTS + _access(c), "skos:notation": str(c["share_type"]),
                             "skos:prefLabel": SHARE_TYPES[c["share_type"]],
                             # the condition of sharing, or the legal basis for not sharing
                             **({"skos:note": note} if (note := c["share_condition"] or c["not_shared_basis"]) else {}),
                             **({"skos:scopeNote": c["open_condition"]} if c["open_condition"] else {})},
        "dct:accrualPeriodicity": {"@id": FREQUENCY + FREQUENCIES[c["update_cycle"]]},
        "dct:issued": {"@value": entry.publish_date.isoformat(), "@type": "xsd:date"},
        "dct:relation": [{"@id": dataset_iri(code, base)} for code in c["related"]],
        "dcat:distribution": [{"@type": "dcat:Distribution", "dct:title": mode, "dct:format": c["format"]}
                              for mode in c["share_modes"]],
        "csvw:tableSchema": {"csvw:column": [_column(item) for item in c["items"]]},
    }


def _access(content: dict[str, Any]) -> str:
    if content["share_type"] == 3:
        return "NON_PUBLIC"
    return "PUBLIC" if content["open_to_public"] else "RESTRICTED"


def _column(item: dict[str, Any]) -> dict[str, Any]:
    datatype: dict[str, Any] = {"csvw:base": XSD_TYPES[item["type"]]}
    if item["length"]:
        datatype["csvw:maxLength"] = item["length"]
    return {"csvw:name": item["name"], "csvw:datatype": datatype, "dct:type": item["type"]}
