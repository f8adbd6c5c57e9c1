"""The access-pattern page for privacy officers: GET /privacy serves the page (no data),
whose script reads GET /privacy/patterns with the auditor's bearer token and draws the
charts; the token comes from the page's URL fragment or its form, never a query string.

The patterns endpoint needs the auditor role; every read of it is itself on the audit trail.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response

from app.audit.patterns import patterns
from app.audit.trail import AuditUnavailable
from app.domain.audit import Decision, Rule
from app.web import audit
from app.web.auth import caller_of
from app.web.state import runtime_of
from app.web.transport import json_response
from resolvers.access import AUDITOR
from schema.errors import INTERNAL_MESSAGE, simple_error

SCRIPT = Path(__file__).with_name("privacy.js")
MAX_DAYS = 90
MAX_EVENTS = 200_000  # read for one page; a longer period must be narrowed
CSP = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self' "
    "'unsafe-inline'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>PatientGraph access patterns</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<style>
body { font: 14px system-ui, sans-serif; margin: 1.5rem; color: #1d2733; }
h1 { font-size: 1.3rem; } h2 { font-size: 1.05rem; margin: 1.4rem 0 .4rem; }
.chart { border: 1px solid #d5dbe3; padding: .5rem; width: 820px; min-height: 60px; }
table { border-collapse: collapse; } td, th { border: 1px solid #d5dbe3; padding: .2rem .5rem; }
#status { color: #6b7785; }
</style></head>
<body>
<h1>Access patterns</h1>
<form id="ask"><label>Auditor token <input id="token" type="password" size="40"></label>
<label>Days <input id="days" type="number" min="1" max="90" value="7"></label>
<button>Show</button></form>
<p id="status">Enter an auditor token.</p>
<h2>Accesses per user per hour</h2><div class="chart" id="per-user-hour"></div>
<h2>After-hours access</h2><div class="chart" id="after-hours"></div>
<h2>Break-the-glass uses</h2><div class="chart" id="break-glass"></div>
<h2>Denials</h2><div class="chart" id="denials"></div>
<h2>Unique patients per user</h2><div class="chart" id="volumes"></div>
<h2>Alerts</h2><table id="alerts"><thead><tr><th>When</th><th>Rule</th><th>User</th>
<th>Count</th><th>Detail</th></tr></thead><tbody></tbody></table>
<script src="/privacy/privacy.js"></script>
</body></html>
"""


async def privacy_page(request: Request) -> Response:
    return HTMLResponse(PAGE, headers={"cache-control": "no-store", "content-security-policy": CSP})


async def privacy_script(request: Request) -> Response:
    return FileResponse(SCRIPT, media_type="text/javascript", headers={"cache-control": "no-cache"})


async def privacy_patterns(request: Request) -> Response:
    runtime = runtime_of(request)
    principal = await caller_of(request, runtime)
    if isinstance(principal, Response):
        return principal
    raw = request.query_params.get("days", "7")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_DAYS:
        return json_response(simple_error(f"days must be 1 to {MAX_DAYS}", "BAD_USER_INPUT"), 400)
    trail = runtime.audit
    allowed = AUDITOR in principal.roles  # the role `resolvers.access.is_auditor` checks
    caller = audit.caller_of(request, principal, None)
    op = audit.operation_of(trail, "page", "access patterns", None, None)
    decision = Decision(Rule.ROLE, "accessPatterns", allowed)
    try:
        await audit.record_decision(trail, caller, op, decision)
    except AuditUnavailable:
        return json_response(simple_error(INTERNAL_MESSAGE, "INTERNAL"), 500)
    if not allowed:
        return json_response(
            simple_error("Only auditors may read access patterns", "FORBIDDEN"), 403
        )
    if trail is None:
        return json_response(simple_error("Auditing is off", "BAD_USER_INPUT"), 400)
    rules = runtime.settings.audit.alerts
    until = datetime.now(UTC)
    since = until - timedelta(days=int(raw))
    records = []
    async for record in trail.since(since - timedelta(days=rules.baseline_days)):
        records.append(record)
        if len(records) > MAX_EVENTS:
            message = f"More than {MAX_EVENTS} events: choose fewer days"
            return json_response(simple_error(message, "BAD_USER_INPUT"), 400)
    found = patterns(records, since, rules)
    body: dict[str, Any] = {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "perUserHour": found.per_user_hour,
        "afterHours": found.after_hours,
        "breakGlass": found.break_glass,
        "denials": found.denials,
        "patientsPerUser": found.patients_per_user,
        "alerts": [
            {
                "rule": a.rule,
                "subject": a.subject,
                "at": a.at.isoformat(),
                "count": a.count,
                "detail": a.detail,
            }
            for a in found.alerts
        ],
    }
    return json_response(body)
