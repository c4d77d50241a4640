"""Small text helpers of the HTML leaderboard page, shared by its sections."""

from __future__ import annotations

import hashlib
import html
import re


def escape(value) -> str:
    """Any text from records, figures or published rows, safe in HTML text and attributes."""
    return html.escape(str(value), quote=True)


def anchor(prefix: str, *parts) -> str:
    """An id safe in URLs and CSS; the digest keeps ids distinct when slugging merges names."""
    text = "|".join(str(p) for p in parts)
    readable = re.sub(r"[^A-Za-z0-9_-]+", "-", text.replace("|", "-")).strip("-").lower()
    return f"{prefix}-{readable[:48]}-{hashlib.sha1(text.encode()).hexdigest()[:6]}"


def badges(kind: str) -> str:
    """The "reference" badge of a reference row's label; nothing for an SSL row."""
    return "" if kind == "ssl" else f' <span class="badge reference">{escape(kind)}</span>'
