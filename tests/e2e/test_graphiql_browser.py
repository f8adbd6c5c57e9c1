"""GraphiQL in a real browser: Debian's headless Chromium driven by Playwright.

`test_demo_dashboard_runs_in_graphiql` opens the explorer of a running demo (the same
`running_demo` that `patientgraph demo` uses), runs the prefilled dashboard query with the
prefilled clinician token and reads the patients out of the result pane.
`test_page_renders_without_leaving_the_host` serves just the rendered page (with a hostile
default query) from a tiny stand-in server, so page problems show apart from API problems.

Both record every request the browser makes and require that none leaves 127.0.0.1, and that
the page logs no console error, throws no error and trips no Content-Security-Policy
violation. Without /usr/bin/chromium (or the playwright package) they skip, except under
CI=true, where they fail: CI must not pass without having run them.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest

from app.demo.runner import running_demo
from app.graphiql.page import GRAPHIQL_CSP, STATIC_DIR, render_graphiql_page
from app.web.examples import DASHBOARD_QUERY

if TYPE_CHECKING:
    from playwright.async_api import Page, Request

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
]
TIMEOUT_MS = 30_000

# Collects Content-Security-Policy violations before any page script runs.
CSP_PROBE = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(
    `${e.effectiveDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
});
"""
# GraphiQL 4.1.2 edits with CodeMirror 5: each editor's wrapper element holds its instance.
EDITOR_TEXTS = "els => els.map(e => e.CodeMirror.getValue())"
RESULT_TEXT = "document.querySelector('.result-window .CodeMirror')?.CodeMirror.getValue() ?? ''"


def _chromium_or_skip() -> None:
    """Skip when the browser (or Playwright) is missing, but never silently on CI."""
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} is not installed (Debian package 'chromium')")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        missing.append("the 'playwright' Python package is not installed")
    if missing:
        reason = "; ".join(missing)
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"browser test cannot run on CI: {reason}")
        pytest.skip(reason)


@dataclass
class Watched:
    """What one browser tab did: every request, and every sign of trouble."""

    page: Page
    requests: list[Request] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    async def csp_violations(self) -> list[str]:
        violations: list[str] = await self.page.evaluate("() => window.__cspViolations")
        return violations

    def assert_stayed_on(self, host: str) -> None:
        assert self.requests, "the browser made no requests at all"
        off_host = [r.url for r in self.requests if urlsplit(r.url).hostname != host]
        assert off_host == [], f"requests left {host}: {off_host}"


@contextlib.asynccontextmanager
async def browser_tab() -> AsyncIterator[Watched]:
    _chromium_or_skip()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            context = await browser.new_context(viewport={"width": 1400, "height": 900})
            context.set_default_timeout(TIMEOUT_MS)
            await context.add_init_script(CSP_PROBE)
            page = await context.new_page()
            watched = Watched(page)
            # Context-wide, so workers and popups would be recorded too.
            context.on("request", lambda request: watched.requests.append(request))
            page.on("pageerror", lambda error: watched.problems.append(f"pageerror: {error}"))
            page.on(
                "console",
                lambda msg: (
                    watched.problems.append(f"console.{msg.type}: {msg.text}")
                    if msg.type in {"error", "assert"}
                    else None
                ),
            )
            page.on("dialog", lambda dialog: watched.problems.append(f"dialog: {dialog.message}"))
            page.on(
                "requestfailed",
                lambda r: watched.problems.append(
                    f"request failed: {r.method} {r.url} {r.failure}"
                ),
            )
            yield watched
        finally:
            await browser.close()


async def _editor_texts(page: Page) -> list[str]:
    texts: list[str] = await page.locator(".graphiql-container .CodeMirror").evaluate_all(
        EDITOR_TEXTS
    )
    return texts


async def _wait_for_headers_editor(page: Page) -> None:
    await page.wait_for_selector(".graphiql-query-editor .CodeMirror")
    await page.wait_for_function(
        "() => [...document.querySelectorAll('.graphiql-container .CodeMirror')]"
        ".some(e => e.CodeMirror.getValue().includes('Authorization'))"
    )


async def _headers_in_editor(page: Page) -> dict[str, str]:
    found = [json.loads(t) for t in await _editor_texts(page) if '"Authorization"' in t]
    assert len(found) == 1, f"expected one headers editor with Authorization, got {found}"
    headers: dict[str, str] = found[0]
    return headers


async def _run_and_read_result(page: Page, marker: str) -> dict[str, Any]:
    """Click GraphiQL's run button and return the result pane's JSON once it holds `marker`."""
    await page.locator(".graphiql-execute-button").click()
    await page.wait_for_function(f"() => ({RESULT_TEXT}).includes({json.dumps(marker)})")
    result: dict[str, Any] = json.loads(await page.evaluate(f"() => {RESULT_TEXT}"))
    return result


async def _open_and_close_settings(page: Page) -> None:
    # The settings dialog makes GraphiQL inject its one inline <style> (the scroll lock),
    # which GRAPHIQL_CSP allows by hash: opening it must not trip a violation.
    await page.get_by_label("Open settings dialog").click()
    await page.get_by_text("Clear storage").wait_for()
    await page.keyboard.press("Escape")
    await page.get_by_text("Clear storage").wait_for(state="hidden")


async def _post_requests_to(watched: Watched, path: str) -> list[dict[str, str]]:
    return [
        await r.all_headers()
        for r in watched.requests
        if r.method == "POST" and urlsplit(r.url).path == path
    ]


# ---------------------------------------------------------------------------------------
# The demo, end to end.


async def test_demo_dashboard_runs_in_graphiql(tmp_path: Path) -> None:
    _chromium_or_skip()
    async with running_demo("127.0.0.1", 0) as demo, browser_tab() as watched:
        page = watched.page
        host = urlsplit(demo.graphql_url).hostname
        assert host == "127.0.0.1"
        clinician = f"Bearer {demo.tokens['clinician']}"

        # What the explorer should show: the same query, sent by hand.
        async with httpx.AsyncClient(timeout=30) as client:
            direct = (
                await client.post(
                    demo.graphql_url,
                    json={"query": DASHBOARD_QUERY},
                    headers={"Authorization": clinician},
                )
            ).json()
        assert "errors" not in direct
        expected = direct["data"]["patients"]
        assert expected["totalCount"] == len(demo.patients) == 24
        first_name = expected["nodes"][0]["name"]["text"]

        response = await page.goto(demo.graphql_url)
        assert response is not None
        assert response.ok
        assert response.headers["content-security-policy"] == GRAPHIQL_CSP
        await _wait_for_headers_editor(page)

        texts = await _editor_texts(page)
        assert DASHBOARD_QUERY in texts, "the dashboard query is not in the query editor"
        assert await _headers_in_editor(page) == {"Authorization": clinician}

        result = await _run_and_read_result(page, first_name)
        assert "errors" not in result, result.get("errors")
        shown = result["data"]["patients"]
        assert shown["totalCount"] == 24
        assert len(shown["nodes"]) == 20  # the query's default page size
        assert shown == expected
        assert {node["id"] for node in shown["nodes"]} <= set(demo.patients)
        assert all(node["observations"]["totalCount"] > 0 for node in shown["nodes"])

        await _open_and_close_settings(page)
        await page.screenshot(path=str(tmp_path / "graphiql-demo.png"))

        # The page, its assets, introspection and the query itself all went to the API.
        watched.assert_stayed_on("127.0.0.1")
        port = urlsplit(demo.graphql_url).port
        assert {urlsplit(r.url).port for r in watched.requests} == {port}
        urls = {r.url for r in watched.requests}
        assert f"http://127.0.0.1:{port}/graphiql/static/graphiql.min.js" in urls
        posts = await _post_requests_to(watched, "/graphql")
        assert len(posts) >= 2, "expected the schema introspection and the dashboard query"
        assert all(h.get("authorization") == clinician for h in posts)
        assert await watched.csp_violations() == []
        assert watched.problems == []


# ---------------------------------------------------------------------------------------
# The page alone, served by a stand-in for the API (moved here from tests/unit).

STATIC_PREFIX = "/graphiql/static"
HOSTILE_QUERY = (
    'query Demo {\n  patient(id: "p1") {\n    id\n  }\n}\n'
    "# </script><script>alert(1)</script><!-- \u2028\n"
)
STAND_IN_HEADERS = {"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig"}
STAND_IN_SDL = "type Patient { id: ID! name: String }\ntype Query { patient(id: ID!): Patient }"
CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


def _stand_in_handler(page: str, seen_auth: list[str | None]) -> type[BaseHTTPRequestHandler]:
    from graphql import build_schema, graphql_sync

    schema = build_schema(STAND_IN_SDL)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return

        def _send(self, status: int, body: bytes, content_type: str, csp: bool = False) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if csp:
                self.send_header("Content-Security-Policy", GRAPHIQL_CSP)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if path == "/graphql":
                self._send(200, page.encode(), "text/html; charset=utf-8", csp=True)
                return
            name = path.removeprefix(STATIC_PREFIX + "/")
            file = STATIC_DIR / name
            if path.startswith(STATIC_PREFIX + "/") and "/" not in name and file.is_file():
                self._send(200, file.read_bytes(), CONTENT_TYPES.get(file.suffix, "text/plain"))
            else:
                self._send(404, b"not found", "text/plain")

        def do_POST(self) -> None:
            if urlsplit(self.path).path != "/graphql":
                self._send(404, b"not found", "text/plain")
                return
            seen_auth.append(self.headers.get("Authorization"))
            params = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            result = graphql_sync(
                schema,
                params["query"],
                root_value={"patient": lambda _info, id: {"id": id, "name": "Doe"}},
                variable_values=params.get("variables"),
                operation_name=params.get("operationName"),
            )
            body: dict[str, Any] = {"data": result.data}
            if result.errors:
                body["errors"] = [error.formatted for error in result.errors]
            self._send(200, json.dumps(body).encode(), "application/json")

    return Handler


@contextlib.contextmanager
def _stand_in_server(page: str, seen_auth: list[str | None]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _stand_in_handler(page, seen_auth))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


async def test_page_renders_without_leaving_the_host() -> None:
    _chromium_or_skip()
    page_html = render_graphiql_page(
        endpoint="/graphql",
        static_prefix=STATIC_PREFIX,
        default_query=HOSTILE_QUERY,
        default_headers=STAND_IN_HEADERS,
    )
    seen_auth: list[str | None] = []
    with _stand_in_server(page_html, seen_auth) as origin:
        async with browser_tab() as watched:
            page = watched.page
            await page.goto(origin + "/graphql")
            await _wait_for_headers_editor(page)
            # The query survives verbatim: no </script> broke out of the config block.
            assert HOSTILE_QUERY in await _editor_texts(page)
            assert await _headers_in_editor(page) == STAND_IN_HEADERS
            result = await _run_and_read_result(page, '"p1"')
            assert result == {"data": {"patient": {"id": "p1"}}}
            await _open_and_close_settings(page)
            watched.assert_stayed_on("127.0.0.1")
            assert f"{origin}{STATIC_PREFIX}/graphiql.min.js" in {r.url for r in watched.requests}
            assert await watched.csp_violations() == []
            assert watched.problems == []
    # Introspection and the user's query both carried the prefilled header.
    assert len(seen_auth) >= 2
    assert set(seen_auth) == {STAND_IN_HEADERS["Authorization"]}
