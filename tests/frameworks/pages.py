"""Reading rendered pages the way a browser does (attribute values unescaped)."""

from __future__ import annotations

import html.parser
from urllib.parse import parse_qs, urlsplit


class Page(html.parser.HTMLParser):
    """Every start tag's attributes, in order."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {name: value or "" for name, value in attrs}))

    def all(self, tag: str) -> list[dict[str, str]]:
        return [attrs for name, attrs in self.tags if name == tag]

    @property
    def cable_url(self) -> str:
        (meta,) = [m for m in self.all("meta") if m.get("name") == "action-cable-url"]
        return meta["content"]

    @property
    def token(self) -> str | None:
        values = parse_qs(urlsplit(self.cable_url).query).get("jid")
        return values[0] if values else None

    @property
    def signed_streams(self) -> list[str]:
        found = []
        for attrs in self.all("turbo-cable-stream-source"):
            assert attrs["channel"] == "Turbo::StreamsChannel"
            found.append(attrs["signed-stream-name"])
        return found

    @property
    def sse_sources(self) -> list[dict[str, list[str]]]:
        return [parse_qs(urlsplit(a["src"]).query) for a in self.all("turbo-stream-source")]
