"""The self-hosted GraphiQL page: escaping, same-origin assets, CSP, vendored files.

The page in a real browser (headless Chromium) is tested in tests/e2e/test_graphiql_browser.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import pytest

from app.graphiql.page import GRAPHIQL_CSP, PAGE_ASSETS, STATIC_DIR, render_graphiql_page

PREFIX = "/graphiql/static"
QUERY = 'query Demo {\n  patient(id: "p1") {\n    id\n  }\n}\n'
HEADERS = {"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig"}
VENDORED = (
    "graphiql.min.js",
    "graphiql.min.css",
    "react.production.min.js",
    "react-dom.production.min.js",
)


class _PageParser(HTMLParser):
    """Collects start tags with their attributes and the text of each <script>."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self._in_script: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script = dict(attrs)
            self.scripts.append((self._in_script, ""))

    def handle_data(self, data: str) -> None:
        if self._in_script is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = None


def _parse(page: str) -> _PageParser:
    parser = _PageParser()
    parser.feed(page)
    parser.close()
    return parser


def _config(page: str) -> dict[str, Any]:
    blocks = [text for attrs, text in _parse(page).scripts if attrs.get("id") == "graphiql-config"]
    assert len(blocks) == 1
    assert _parse(page).scripts[0][0].get("type") == "application/json"
    config: dict[str, Any] = json.loads(blocks[0])
    return config


def _page(
    query: str = QUERY,
    headers: dict[str, str] | None = HEADERS,
    prefix: str = PREFIX,
    endpoint: str = "/graphql",
) -> str:
    return render_graphiql_page(
        endpoint=endpoint, static_prefix=prefix, default_query=query, default_headers=headers
    )


def _referenced(page: str) -> list[str]:
    return [
        value
        for _, attrs in _parse(page).tags
        for name, value in attrs.items()
        if name in {"src", "href"} and value is not None
    ]


def test_page_carries_query_headers_and_endpoint() -> None:
    page = _page()
    config = _config(page)
    assert config["endpoint"] == "/graphql"
    assert config["defaultQuery"] == QUERY
    assert json.loads(config["defaultHeaders"]) == HEADERS
    assert page.startswith("<!doctype html>")
    assert "GraphiQL" in page


def test_no_headers_means_null_default_headers() -> None:
    assert _config(_page(headers=None))["defaultHeaders"] is None
    assert _config(_page(headers={}))["defaultHeaders"] is None


@pytest.mark.parametrize(
    "query",
    [
        "# </script><script>alert(1)</script>\n{ __typename }",
        "# </SCRIPT ><script>alert(1)</script>",
        "# <!--<script> &amp; &lt; \u2028\u2029 end",
    ],
)
def test_script_breakout_is_escaped(query: str) -> None:
    evil_headers = {"X-Evil": "</script><script>alert(2)</script>"}
    page = _page(query=query, headers=evil_headers)
    parser = _parse(page)
    scripts = parser.scripts
    # one JSON config block + the four static scripts, nothing injected
    assert len(scripts) == 1 + 4
    assert [attrs.get("src") for attrs, _ in scripts[1:]] == [
        f"{PREFIX}/react.production.min.js",
        f"{PREFIX}/react-dom.production.min.js",
        f"{PREFIX}/graphiql.min.js",
        f"{PREFIX}/graphiql-init.js",
    ]
    assert all(text == "" for _, text in scripts[1:])
    assert "alert(" not in page.replace(_config_text(page), "")
    config_text = _config_text(page)
    for forbidden in ("<", ">", "&", "\u2028", "\u2029"):
        assert forbidden not in config_text
    config = _config(page)
    assert config["defaultQuery"] == query
    assert json.loads(config["defaultHeaders"]) == evil_headers


def _config_text(page: str) -> str:
    match = re.search(r'<script type="application/json" id="graphiql-config">(.*?)</script>', page)
    assert match is not None
    return match.group(1)


@pytest.mark.parametrize("prefix", ["/graphiql/static", "/graphiql/static/", "/g", "static"])
def test_every_reference_is_under_static_prefix(prefix: str) -> None:
    page = _page(prefix=prefix)
    refs = _referenced(page)
    base = prefix.rstrip("/") + "/"
    assert len(refs) == len(PAGE_ASSETS)
    assert all(ref.startswith(base) for ref in refs), refs
    assert sorted(ref.removeprefix(base) for ref in refs) == sorted(PAGE_ASSETS)
    assert "http:" not in page.replace("http-equiv", "")
    assert "https:" not in page
    assert "//" not in "".join(refs)


def test_static_prefix_is_attribute_escaped() -> None:
    page = _page(prefix='/a"b<c>')
    assert '/a&quot;b&lt;c&gt;/graphiql.min.js"' in page
    assert all(ref.startswith('/a"b<c>/') for ref in _referenced(page))


def test_every_referenced_file_exists() -> None:
    for ref in _referenced(_page()):
        path = STATIC_DIR / ref.removeprefix(PREFIX + "/")
        assert path.is_file(), path
        assert path.stat().st_size > 0


@pytest.mark.parametrize(
    "url",
    [
        "https://cdn.example.org/graphiql",
        "http://10.0.0.1/graphql",
        "//cdn.example.org/static",
        "/\\cdn.example.org/static",
        "/\t/cdn.example.org",
        " //cdn.example.org",
        "javascript:alert(1)",
        "data:text/javascript,alert(1)",
    ],
)
def test_off_host_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="endpoint"):
        _page(endpoint=url)
    with pytest.raises(ValueError, match="static_prefix"):
        _page(prefix=url)


def test_static_dir_is_flat_so_package_data_glob_covers_it() -> None:
    # pyproject ships "graphiql/static/*": a subfolder would silently be left out of wheels
    entries = list(STATIC_DIR.iterdir())
    assert entries
    assert all(entry.is_file() for entry in entries)


def test_vendored_assets_and_licences_present() -> None:
    for name in (*VENDORED, *PAGE_ASSETS):
        assert (STATIC_DIR / name).is_file(), name
    for package in ("graphiql", "react", "react-dom"):
        text = (STATIC_DIR / f"{package}.LICENSE.txt").read_text(encoding="utf-8")
        assert "MIT License" in text
        assert "Permission is hereby granted" in text
    third_party = (STATIC_DIR / "graphiql.THIRD-PARTY-LICENSES.txt").read_text(encoding="utf-8")
    for bundled in ("codemirror@", "graphql@", "markdown-it@", "@radix-ui/react-dialog@"):
        assert bundled in third_party
    total = sum(path.stat().st_size for path in STATIC_DIR.iterdir())
    assert total < 4 * 1024 * 1024
    assert (STATIC_DIR.parent / "NOTICE.md").is_file()


def _asset_texts() -> Iterator[tuple[str, str]]:
    for path in sorted(STATIC_DIR.iterdir()):
        if path.suffix in {".js", ".css", ".svg"}:
            yield path.name, path.read_text(encoding="utf-8")


def test_no_asset_loads_anything_off_host() -> None:
    remote_url_in_css = re.compile(r"url\(\s*['\"]?\s*(?:[a-z][a-z0-9+.-]*:|//)", re.IGNORECASE)
    remote_src = re.compile(r"""\bsrc\s*[=:]\s*['"`]\s*(?:https?:)?//""", re.IGNORECASE)
    cdn_hosts = re.compile(
        r"fonts\.googleapis\.com|fonts\.gstatic\.com|cdn\.jsdelivr\.net|unpkg\.com"
        r"|esm\.sh|cdnjs\.cloudflare\.com|googletagmanager\.com|google-analytics\.com"
    )
    checked = set()
    for name, text in _asset_texts():
        checked.add(name)
        for match in remote_url_in_css.finditer(text):
            assert match.group(0).lower().replace(" ", "").endswith(("data:", "'data:", '"data:'))
        assert "url(http" not in text.lower()
        assert not remote_src.search(text), name
        assert not cdn_hosts.search(text), name
        if name.endswith(".css"):
            assert "@import" not in text, name
        assert "sourceMappingURL" not in text, name
    assert set(VENDORED) <= checked
    assert {"graphiql-init.js", "graphiql-page.css", "favicon.svg"} <= checked


def test_css_fonts_are_embedded() -> None:
    css = (STATIC_DIR / "graphiql.min.css").read_text(encoding="utf-8")
    assert "@font-face" in css
    urls = re.findall(r"url\(\s*['\"]?([^)'\"]{0,16})", css)
    assert urls
    assert all(url.startswith("data:") for url in urls), {u for u in urls if u[:5] != "data:"}


def _csp_directives() -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for part in GRAPHIQL_CSP.split(";"):
        name, *sources = part.split()
        assert name not in directives
        directives[name] = sources
    return directives


def test_csp_allows_only_self() -> None:
    directives = _csp_directives()
    allowed = re.compile(r"'self'|'none'|data:|'sha256-[A-Za-z0-9+/]{43}='")
    for name, sources in directives.items():
        assert sources, name
        for source in sources:
            assert allowed.fullmatch(source), (name, source)
    assert directives["default-src"] == ["'none'"]
    assert directives["script-src"] == ["'self'"]
    assert directives["connect-src"] == ["'self'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["style-src"][0] == "'self'"
    assert set(directives["font-src"]) == {"'self'", "data:"}
    assert set(directives["img-src"]) == {"'self'", "data:"}
    for keyword in ("unsafe-inline", "unsafe-eval", "http", "*", "blob:"):
        assert keyword not in GRAPHIQL_CSP
    assert "\n" not in GRAPHIQL_CSP


def test_page_needs_no_inline_script_or_style() -> None:
    parser = _parse(_page())
    for attrs, text in parser.scripts:
        assert attrs.get("type") == "application/json" or (attrs.get("src") and not text)
    assert all(tag != "style" for tag, _ in parser.tags)
    assert all("style" not in attrs for _, attrs in parser.tags)
    assert all(not name.startswith("on") for _, attrs in parser.tags for name in attrs)
