"""What every stage reads from a URL: its host, and the `domain` column derived from it."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit


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


# Query parameters that say how a visitor came to a page, not which page it is (click and campaign ids).
TRACKING_PARAMETERS = frozenset({
    "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "twclid", "ttclid", "li_fat_id",
    "mc_cid", "mc_eid", "igshid", "_ga", "_gl", "_hsenc", "_hsmi", "mkt_tok", "vero_id", "oly_anon_id", "oly_enc_id",
    "ref_src", "spm",
})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalized_url(url: str) -> str:
    """The key URL dedup groups on: scheme and host lowercased (host without a trailing dot), the scheme's
    default port dropped, the fragment dropped, tracking parameters (utm_*, fbclid, gclid, ...) dropped and
    the remaining query parameters sorted; an empty path becomes "/". Path and parameter values keep their
    case (servers tell them apart). A URL that does not parse is returned stripped, as it is."""
    stripped = url.strip()
    try:
        parts = urlsplit(stripped)
        port = parts.port
    except ValueError:
        return stripped
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        host = f"{host}:{port}"
    if parts.username is not None:
        host = f"{parts.username}{':' + parts.password if parts.password is not None else ''}@{host}"
    params = sorted((name, value) for name, value in parse_qsl(parts.query, keep_blank_values=True)
                    if not name.lower().startswith("utm_") and name.lower() not in TRACKING_PARAMETERS)
    query = f"?{urlencode(params)}" if params else ""
    return f"{scheme}://{host}{parts.path or '/'}{query}" if scheme or host else f"{parts.path}{query}"
