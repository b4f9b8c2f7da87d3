"""What a rendered page subscribes with, read as a browser reads it (entities decoded)."""

from __future__ import annotations

import html.parser
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

__all__ = ["PageSources", "read_page"]


@dataclass
class PageSources:
    """The Cableway elements of a page.

    Attributes:
        cable_url: the ``content`` of ``<meta name="action-cable-url">`` (``None``: absent).
        cable_streams: ``(channel, signed-stream-name)`` of each
            ``<turbo-cable-stream-source>``, in order.
        sse_urls: the ``src`` of each ``<turbo-stream-source>``.
    """

    cable_url: str | None = None
    cable_streams: list[tuple[str, str]] = field(default_factory=list)
    sse_urls: list[str] = field(default_factory=list)

    def token(self, param: str = "jid") -> str | None:
        """The identification token in the cable URL (query parameter ``param``)."""
        if not self.cable_url:
            return None
        values = parse_qs(urlsplit(self.cable_url).query).get(param)
        return values[0] if values else None


class _Reader(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found = PageSources()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "meta" and values.get("name") == "action-cable-url":
            self.found.cable_url = values.get("content", "")
        elif tag == "turbo-cable-stream-source":
            self.found.cable_streams.append(
                (values.get("channel", ""), values.get("signed-stream-name", ""))
            )
        elif tag == "turbo-stream-source" and "src" in values:
            self.found.sse_urls.append(values["src"])


def read_page(text: str) -> PageSources:
    """The meta tag and stream sources of an HTML page."""
    reader = _Reader()
    reader.feed(text)
    reader.close()
    return reader.found
