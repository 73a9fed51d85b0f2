"""``web_scrape``: fetch a page with httpx and extract what matches a simple CSS selector.

Fetches pass the egress policy (:mod:`planexe_ax.common.egress`): no private or local address unless
``PLANEXE_FETCH_ALLOW`` lists it.

Also holds the page fetcher and HTML reader that ``analyze_website`` uses.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, Field

from planexe_ax.agents.sdk import TaskContext, capability
from planexe_ax.agents.toolkit._files import rel, slug, write_json
from planexe_ax.common.egress import checked_client
from planexe_ax.errors import PermanentError, RetryableError

MAX_BYTES = 2_000_000
MAX_REDIRECTS = 5
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"})
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"\(?\b\d{3}\)?[-. ]\d{3}[-. ]\d{4}\b")
_SIMPLE = re.compile(r"^([a-zA-Z][a-zA-Z0-9]*)?([.#][\w-]+)*$")


@dataclass(frozen=True)
class Fetched:
    """A fetched page: final URL, status, content type and decoded text."""

    url: str
    status: int
    content_type: str
    text: str


async def fetch_page(url: str, allow: Sequence[str] = (), timeout_s: float = 15.0) -> Fetched:
    """GET ``url`` (http or https, at most ``MAX_REDIRECTS`` redirects, at most ``MAX_BYTES`` read).

    Every hop passes the egress policy (:mod:`~planexe_ax.common.egress`) with ``allow``, the
    entries of ``PLANEXE_FETCH_ALLOW``.

    Raises:
        PermanentError: For a non-http URL, a refused address (:class:`EgressRefused`), too many redirects,
            or a 4xx answer other than 408/429.
        RetryableError: For network errors, timeouts, 408, 429 and 5xx answers.
    """
    headers = {"User-Agent": "planexe-ax-agent/0.1"}
    try:
        async with checked_client(allow, timeout_s, headers) as client:
            for _ in range(MAX_REDIRECTS + 1):
                if urlsplit(url).scheme not in ("http", "https"):
                    raise PermanentError(f"url {url!r} must start with http:// or https://")
                async with client.stream("GET", url) as response:
                    location = response.headers.get("location") if response.is_redirect else None
                    if location is None:
                        return _read(response, await _first_bytes(response))
                url = str(response.url.join(location))
    except httpx.HTTPError as exc:
        raise RetryableError(f"fetching {url} failed: {type(exc).__name__}: {exc}") from exc
    raise PermanentError(f"{url}: more than {MAX_REDIRECTS} redirects")


async def _first_bytes(response: httpx.Response) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) >= MAX_BYTES:
            break
    return bytes(body[:MAX_BYTES])


def _read(response: httpx.Response, body: bytes) -> Fetched:
    url = str(response.url)
    if response.status_code in (408, 429) or response.status_code >= 500:
        raise RetryableError(f"{url} answered {response.status_code}; try again later")
    if response.status_code >= 400:
        raise PermanentError(f"{url} answered {response.status_code}; check the address")
    text = body.decode(response.encoding or "utf-8", errors="replace")
    return Fetched(url, response.status_code, response.headers.get("content-type", ""), text)


def _matches(selector: str, tag: str, attrs: dict[str, str]) -> bool:
    want_tag = re.match(r"^[a-zA-Z][a-zA-Z0-9]*", selector)
    if want_tag and want_tag.group(0).lower() != tag:
        return False
    classes = set(attrs.get("class", "").split())
    for kind, name in re.findall(r"([.#])([\w-]+)", selector):
        if (kind == "." and name not in classes) or (kind == "#" and attrs.get("id") != name):
            return False
    return True


def parse_selectors(css_selector: str) -> list[str]:
    """Split a selector list; each part keeps its last compound (``div .price`` matches ``.price``).

    Raises:
        PermanentError: For attribute selectors, pseudo-classes and other syntax this reader does not know.
    """
    parts = [p.strip().split()[-1] for p in css_selector.split(",") if p.strip()]
    for part in parts:
        if not _SIMPLE.match(part):
            raise PermanentError(f"css selector {part!r} is not supported; use tag, .class, #id or tag.class")
    return parts


@dataclass
class PageReader(HTMLParser):
    """Reads one HTML page: title, meta, forms, links, and the text of elements matching ``selectors``."""

    selectors: list[str] = field(default_factory=list)
    title: str = ""
    meta: dict[str, str] = field(default_factory=dict)
    links: list[str] = field(default_factory=list)
    scripts: list[str] = field(default_factory=list)
    forms: int = 0
    contact_fields: int = 0
    matches: list[str] = field(default_factory=list)
    text_parts: list[str] = field(default_factory=list)
    _stack: list[tuple[str, int | None]] = field(default_factory=list)
    _in_title: bool = False

    def __post_init__(self) -> None:
        super().__init__(convert_charrefs=True)

    def handle_starttag(self, tag: str, attrs_list: list[tuple[str, str | None]]) -> None:
        """Note the tag's metadata and start capturing its text when a selector matches."""
        attrs = {k: v or "" for k, v in attrs_list}
        self._note(tag, attrs)
        if tag in _VOID:
            return
        capture = None
        if any(_matches(s, tag, attrs) for s in self.selectors):
            self.matches.append("")
            capture = len(self.matches) - 1
        self._stack.append((tag, capture))
        self._in_title = tag == "title"

    def _note(self, tag: str, attrs: dict[str, str]) -> None:
        if tag == "meta" and (attrs.get("name") or attrs.get("property")):
            self.meta[(attrs.get("name") or attrs.get("property") or "").lower()] = attrs.get("content", "")
        elif tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        elif tag == "script" and attrs.get("src"):
            self.scripts.append(attrs["src"])
        elif tag == "form":
            self.forms += 1
        elif tag == "textarea" or (tag == "input" and attrs.get("type") in ("email", "tel")):
            self.contact_fields += 1

    def handle_endtag(self, tag: str) -> None:
        """Close the innermost open element named ``tag`` (and any left open inside it)."""
        self._in_title = False
        for i in range(len(self._stack) - 1, -1, -1):
            if self._stack[i][0] == tag:
                del self._stack[i:]
                return

    def handle_data(self, data: str) -> None:
        """Collect the title and visible text; script and style contents are skipped."""
        if self._in_title:
            self.title += data.strip()
        if self._stack and self._stack[-1][0] in ("script", "style"):
            return
        self.text_parts.append(data)
        for _, capture in self._stack:
            if capture is not None:
                self.matches[capture] += data

    @property
    def text(self) -> str:
        """The visible text, whitespace collapsed."""
        return " ".join(" ".join(self.text_parts).split())


def read_html(html: str, selectors: list[str] | None = None) -> PageReader:
    """Parse ``html`` and return the reader with what it found."""
    reader = PageReader(selectors=selectors or [])
    reader.feed(html)
    reader.close()
    return reader


class WebScrapeParams(BaseModel):
    """Parameters of ``web_scrape``."""

    url: str = Field(description="http(s) URL of the page.")
    css_selector: str = Field(default="", description="tag, .class, #id or tag.class (comma-separated); empty: none.")
    max_matches: int = Field(default=50, ge=1, le=1000, description="Most matched elements kept in the file.")


def _contacts(reader: PageReader) -> tuple[list[str], list[str]]:
    mailtos = [link.removeprefix("mailto:").split("?")[0] for link in reader.links if link.startswith("mailto:")]
    emails = sorted(set(mailtos) | set(_EMAIL.findall(reader.text)))
    phones = sorted(set(_PHONE.findall(reader.text)))
    return emails, phones


@capability("web_scrape")
async def web_scrape(params: WebScrapeParams, ctx: TaskContext) -> dict[str, Any]:
    """Fetch a web page and save its title, contacts and the text of elements matching a CSS selector."""
    selectors = parse_selectors(params.css_selector)
    page = await fetch_page(params.url, ctx.settings.fetch_allow)
    await ctx.progress(50, f"fetched {page.url} ({page.status})")
    reader = read_html(page.text, selectors)
    matches = [" ".join(m.split()) for m in reader.matches][: params.max_matches]
    emails, phones = _contacts(reader)
    record = {
        "url": page.url,
        "status": page.status,
        "title": reader.title,
        "description": reader.meta.get("description", ""),
        "css_selector": params.css_selector,
        "matches": matches,
        "emails": emails,
        "phones": phones,
        "links": len(reader.links),
    }
    path = write_json(
        ctx.output_dir / "scrapes" / f"{slug(urlsplit(page.url).netloc + urlsplit(page.url).path)}.json", record
    )
    return {
        "file": rel(ctx.output_dir, path),
        "url": page.url,
        "status": page.status,
        "title": reader.title[:200],
        "matches": len(matches),
        "first_matches": [m[:200] for m in matches[:5]],
        "emails": emails[:10],
        "phones": phones[:10],
    }
