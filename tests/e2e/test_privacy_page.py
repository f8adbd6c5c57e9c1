"""The privacy officers' access-pattern page in headless Chromium (issue 13): from a trail
seeded by real requests, every chart draws bars (checked on screenshots) and each alert rule
shows; only auditors read the patterns."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image

from app.demo.generator import DemoPopulation
from tests.conftest import ApiFactory, Upstream, fhir_source
from tests.e2e.test_graphiql_browser import browser_tab
from tests.integration.test_authorization import a_patient_id

pytestmark = pytest.mark.browser

ONE = "query($id: ID!) { patient(id: $id) { id name { family } } }"
CHARTS = ("per-user-hour", "after-hours", "break-glass", "denials", "volumes")


def after_hours_now() -> dict[str, int]:
    """Business hours that exclude the present hour, so today's seeded reads are after hours."""
    start = (datetime.now(UTC).hour + 1) % 24
    return {"day_starts": start, "day_ends": start + 1}


def drawn_pixels(png: bytes) -> int:
    """Pixels of a chart screenshot that are neither background nor text grey: the bars."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    return sum(
        n for n, rgb in colours if isinstance(rgb, tuple) and max(rgb[:3]) - min(rgb[:3]) > 60
    )


async def test_the_page_draws_every_pattern_and_alert_from_the_trail(
    upstreams: dict[str, Upstream],
    api_factory: ApiFactory,
    population: DemoPopulation,
    tmp_path: Path,
) -> None:
    alerts = {"timezone": "UTC", "volume_floor": 3, "denials": 3, **after_hours_now()}
    sources = [fhir_source(u) for u in upstreams.values()]
    async with api_factory(sources, audit={"alerts": alerts}) as api:
        ids = [await a_patient_id(api, population, i) for i in range(4)]
        for pid in ids:  # dr-a reads four patients (a volume well above no usual day)
            await api.query(ONE, {"id": pid}, subject="dr-a", name="Dr. Ada")
        await api.query(ONE, {"id": ids[0]}, subject="dr-b", name="Dr. Bo")
        for pid in ids[1:]:  # a patient token trying other patients: denied, repeatedly
            await api.query(ONE, {"id": pid}, role="patient", patient=ids[0], name="Pat")
        emergency = await api.client.post(
            f"{api.url}/graphql",
            json={"query": ONE, "variables": {"id": ids[2]}},
            headers={
                **api.signer.headers(subject="dr-b", name="Dr. Bo"),
                "X-Break-The-Glass": "unresponsive, needs history",
            },
        )
        assert emergency.status_code == 200
        refused = await api.client.get(
            f"{api.url}/privacy/patterns", headers=api.signer.headers("clinician")
        )
        assert refused.status_code == 403
        token = api.signer.token("auditor")
        async with browser_tab() as watched:
            page = watched.page
            await page.goto(f"{api.url}/privacy#token={token}&days=1")
            await page.wait_for_function("() => document.body.dataset.ready === 'yes'")
            assert "token" not in page.url  # taken out of the address bar
            bars = {c: await page.get_attribute(f"#{c}", "data-bars") for c in CHARTS}
            for chart in CHARTS:
                shot = await page.locator(f"#{chart}").screenshot()
                (tmp_path / f"{chart}.png").write_bytes(shot)
                assert drawn_pixels(shot) > 200, chart
            rules = set(
                await page.locator("#alerts tbody tr").evaluate_all(
                    "rows => rows.map(r => r.dataset.rule)"
                )
            )
            assert await watched.csp_violations() == []
            assert watched.problems == []
            watched.assert_stayed_on("127.0.0.1")
    assert all(int(n or 0) > 0 for n in bars.values()), bars
    assert rules == {"after_hours", "volume", "repeated_denials", "break_glass"}


async def test_the_page_draws_nothing_for_an_empty_period(
    api_factory: ApiFactory, upstreams: dict[str, Upstream]
) -> None:
    sources = [fhir_source(u) for u in upstreams.values()]
    async with api_factory(sources) as api, browser_tab() as watched:
        page = watched.page
        await page.goto(f"{api.url}/privacy#token={api.signer.token('auditor')}")
        await page.wait_for_function("() => document.body.dataset.ready === 'yes'")
        for chart in ("after-hours", "break-glass", "denials", "volumes"):
            assert await page.get_attribute(f"#{chart}", "data-bars") == "0"
            assert drawn_pixels(await page.locator(f"#{chart}").screenshot()) == 0
