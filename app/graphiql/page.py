"""Render the self-hosted GraphiQL explorer page.

The page references only files in :data:`STATIC_DIR` (served by the app under
``static_prefix``) and talks only to ``endpoint``; it loads nothing from any other host.
Its configuration travels in a ``<script type="application/json">`` block that the
first-party ``graphiql-init.js`` reads, so the page has no inline script and works
under :data:`GRAPHIQL_CSP`, which the server should send as the
``Content-Security-Policy`` header of the page response.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

__all__ = [
    "GRAPHIQL_CSP",
    "PAGE_ASSETS",
    "STATIC_DIR",
    "render_graphiql_page",
]

STATIC_DIR: Final[Path] = Path(__file__).resolve().parent / "static"
"""Vendored GraphiQL/React browser builds, their licences and the first-party bootstrap."""

_ICON: Final[str] = "favicon.svg"
_STYLESHEETS: Final[tuple[str, ...]] = ("graphiql.min.css", "graphiql-page.css")
_SCRIPTS: Final[tuple[str, ...]] = (
    "react.production.min.js",
    "react-dom.production.min.js",
    "graphiql.min.js",
    "graphiql-init.js",
)
PAGE_ASSETS: Final[tuple[str, ...]] = (_ICON, *_STYLESHEETS, *_SCRIPTS)
"""File names in :data:`STATIC_DIR` that the page loads."""

_SCROLL_LOCK_STYLE_HASH: Final[str] = "sha256-nzTgYzXYDNe6BAHiiI7NNlfK8n/auuOAhh2t92YvuXo="

GRAPHIQL_CSP: Final[str] = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        # The only inline style GraphiQL 4.1.2 needs: the <style> element that its bundled
        # react-remove-scroll-bar injects when a dialog (settings, short keys) opens, with a
        # 0px scrollbar gap as this full-height page never scrolls. Were it ever blocked
        # (another gap, another GraphiQL) only the body scroll lock behind the dialog is
        # lost, which this page does not need. Re-check the hash when upgrading GraphiQL.
        f"style-src 'self' '{_SCROLL_LOCK_STYLE_HASH}'",
        "connect-src 'self'",
        # graphiql.min.css embeds its fonts (Roboto, Fira Code) and a few images as data: URLs.
        "img-src 'self' data:",
        "font-src 'self' data:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
"""Content-Security-Policy for the GraphiQL page: same-origin only, no inline script."""

_SCRIPT_ESCAPES: Final[dict[int, str]] = {
    ord("<"): "\\u003c",
    ord(">"): "\\u003e",
    ord("&"): "\\u0026",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def _json_for_script(value: object) -> str:
    """JSON that is inert inside an HTML ``<script>`` element.

    ``<``, ``>`` and ``&`` become ``\\u003c``/``\\u003e``/``\\u0026`` so neither
    ``</script>`` nor ``<!--`` can end or alter the element; U+2028/U+2029 are escaped
    too so the text stays valid JavaScript should it ever be evaluated as such.
    """
    return json.dumps(value, sort_keys=True).translate(_SCRIPT_ESCAPES)


def _require_same_origin(name: str, url: str) -> None:
    """Reject anything a browser could resolve to another host."""
    if "\\" in url or any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in url):
        raise ValueError(f"{name} must not contain backslashes, whitespace or control chars")
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or url.startswith("//"):
        raise ValueError(f"{name} must be a same-origin path, not {url!r}")


def render_graphiql_page(
    *,
    endpoint: str,
    static_prefix: str,
    default_query: str,
    default_headers: Mapping[str, str] | None = None,
) -> str:
    """Return the complete HTML of the GraphiQL explorer page.

    ``endpoint`` is the GraphQL URL path the explorer POSTs to and ``static_prefix`` the
    URL path under which :data:`STATIC_DIR` is served (a trailing ``/`` is ignored); both
    must be same-origin paths (``ValueError`` otherwise), as :data:`GRAPHIQL_CSP` only
    allows ``'self'``. ``default_query`` fills the query editor when the browser has no
    saved query. Non-empty ``default_headers`` prefill the headers editor as JSON, which
    then opens on load; headers are never persisted to the browser's storage.
    """
    _require_same_origin("endpoint", endpoint)
    _require_same_origin("static_prefix", static_prefix)
    prefix = html.escape(static_prefix.rstrip("/"), quote=True)
    config: dict[str, str | None] = {
        "endpoint": endpoint,
        "defaultQuery": default_query,
        "defaultHeaders": (
            json.dumps(dict(default_headers), indent=2, ensure_ascii=False)
            if default_headers
            else None
        ),
    }
    stylesheets = "\n".join(
        f'    <link rel="stylesheet" href="{prefix}/{name}">' for name in _STYLESHEETS
    )
    scripts = "\n".join(f'    <script src="{prefix}/{name}"></script>' for name in _SCRIPTS)
    return f"""<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <meta name="referrer" content="no-referrer">
    <title>PatientGraph · GraphiQL</title>
    <link rel="icon" type="image/svg+xml" href="{prefix}/{_ICON}">
{stylesheets}
  </head>
  <body>
    <div id="graphiql">Loading GraphiQL…</div>
    <script type="application/json" id="graphiql-config">{_json_for_script(config)}</script>
{scripts}
  </body>
</html>
"""
