"""What every stage reads from a URL: its host, and the `domain` column derived from it."""

from __future__ import annotations

from urllib.parse import urlsplit


def url_host(url: str) -> str:
    """Lowercased host of `url` without port, userinfo or trailing dot ("" when there is none)."""
    try:
        host = urlsplit(url.strip()).hostname or ""
    except ValueError:
        return ""
    return host.rstrip(".")


def registered_domain_guess(url: str) -> str:
    """The host without a leading `www.`: the `domain` column (no public-suffix list needed)."""
    return url_host(url).removeprefix("www.")
