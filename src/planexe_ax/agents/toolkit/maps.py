"""``search_google_maps``: a deterministic SIMULATOR of a Google Maps business search.

It calls no Google service. Every result is derived from a SHA-256 of the parameters, so the same
search always gives the same businesses and a different search gives different ones. Phone numbers
use the fictional 555-01xx range and web addresses the reserved ``.example`` domain, so nothing it
produces can reach a real person.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field

from planexe_ax.agents.sdk import TaskContext, capability
from planexe_ax.agents.toolkit._files import Draw, rel, seed, slug, write_json

RESULTS_FILE = "raw_search_results.json"

_FIRST = ("Carol", "Marie", "Dana", "Tom", "Linda", "Greg", "Susan", "Paul", "Erin", "Walt", "Nora", "Beth")
_LAST = ("Campion", "Hale", "Ruiz", "Baker", "Olsen", "Pratt", "Keane", "Moreau", "Lind", "Shaw", "Vance", "Fox")
_PLACE = ("Bittersweet", "Maple Hollow", "Stone Wall", "Quiet Creek", "Red Barn", "Willow Bend", "Cedar Ridge")
_TOWNS = ("Hampton", "Torrington", "Pomfret", "Woodstock", "Westerly", "Hope Valley", "Mystic", "Putnam")
_AREA_CODES = ("860", "959", "401")
_LISTINGS = ("pinogy.example", "puppyfind.example", "akc-marketplace.example")


class SearchGoogleMapsParams(BaseModel):
    """Parameters of one simulated Maps search."""

    query: str = Field(min_length=1, description="What to search for, e.g. 'Yorkshire Terrier breeder'.")
    location: str = Field(default="", description="Town and state, e.g. 'Hampton, CT'.")
    category: str = Field(default="", description="Business category, e.g. 'dog breeder'.")
    max_results: int = Field(default=20, ge=1, le=60, description="Most results to return.")


def _website(draw: Draw, name_slug: str) -> str:
    kind = draw.number(10)
    if kind < 3:
        return ""
    if kind < 5:
        return f"https://facebook.example/{name_slug}"
    if kind < 7:
        return f"https://{draw.pick(_LISTINGS)}/breeders/{name_slug}"
    return f"https://www.{name_slug}.example"


def _business(params: SearchGoogleMapsParams, index: int) -> dict[str, Any]:
    draw = Draw(seed("maps", params.query, params.location, params.category, index))
    first, last = draw.pick(_FIRST), draw.pick(_LAST)
    kind = (params.category or params.query).strip().title()
    name = draw.pick((f"{first}'s {kind}", f"{draw.pick(_PLACE)} Farm", f"{last} {kind}"))
    town, _, state = params.location.partition(",")
    town = town.strip() or draw.pick(_TOWNS)
    website = _website(draw, slug(name, 32))
    email_domain = website.split("/")[2].removeprefix("www.") if website.startswith("https://www.") else "mail.example"
    return {
        "place_id": seed("place", name, town).hex()[:16],
        "business_name": name,
        "contact_name": f"{first} {last}",
        "category": params.category or params.query,
        "phone": f"{draw.pick(_AREA_CODES)}-555-01{draw.number(100):02d}",
        "email": f"{first.lower()}.{last.lower()}@{email_domain}",
        "town": town,
        "state": state.strip() or "CT",
        "website_url": website,
        "rating": round(3.0 + draw.number(21) / 10, 1),
        "reviews": draw.number(250),
        "query": params.query,
    }


def simulate_search(params: SearchGoogleMapsParams) -> list[dict[str, Any]]:
    """The businesses the simulator finds for ``params`` (pure; the same params give the same list)."""
    draw = Draw(seed("maps-count", params.query, params.location, params.category))
    count = draw.between(max(1, params.max_results // 2), params.max_results)
    return [_business(params, i) for i in range(count)]


@capability("search_google_maps")
async def search_google_maps(params: SearchGoogleMapsParams, ctx: TaskContext) -> dict[str, Any]:
    """SIMULATOR of a Google Maps search: deterministic fake businesses, merged into raw_search_results.json."""
    found = simulate_search(params)
    path = ctx.output_dir / RESULTS_FILE
    store: dict[str, Any] = {"simulator": True, "searches": [], "results": []}
    if path.exists():
        store = json.loads(path.read_text(encoding="utf-8"))
    known = {r["place_id"] for r in store["results"]}
    new = [r for r in found if r["place_id"] not in known]
    search = {"query": params.query, "location": params.location, "category": params.category, "found": len(found)}
    if search not in store["searches"]:
        store["searches"].append(search)
    store["results"].extend(new)
    write_json(path, store)
    await ctx.progress(100, f"simulated search {params.query!r}: {len(found)} results, {len(new)} new")
    ctx.logger.info("maps search simulated", extra={"found": len(found), "new": len(new)})
    return {
        "simulator": True,
        "source": "search_google_maps simulator (no Google service was called)",
        "file": rel(ctx.output_dir, path),
        "found": len(found),
        "new": len(new),
        "total": len(store["results"]),
    }
