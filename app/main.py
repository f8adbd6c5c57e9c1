"""`create_app(settings)`: the Starlette app (routes, middleware), its services built by
`app.bootstrap` for the app's lifespan."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from app.auth.break_glass import HEADER as BREAK_GLASS_HEADER
from app.bootstrap import open_runtime
from app.graphiql.page import STATIC_DIR
from app.logging import configure_logging
from app.settings import Settings, load_settings
from app.web.disconnect import ClientGone, client_gone
from app.web.graphql import STATIC_PREFIX, graphql_get, graphql_post, internal_error
from app.web.health import healthz, readyz
from app.web.middleware import (
    BodyLimitMiddleware,
    GzipWhenAccepted,
    RequestIdMiddleware,
    SecurityHeadersMiddleware,
)
from app.web.privacy import privacy_page, privacy_patterns, privacy_script


def cors(origins: list[str]) -> Middleware:
    """Only the listed origins, only what the API uses; no cookies (tokens are bearer)."""
    return Middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_methods=["GET", "POST"],
        allow_headers=["authorization", "content-type", "x-request-id", BREAK_GLASS_HEADER],
        expose_headers=["x-request-id", "x-cache", "retry-after"],
        max_age=600,
    )


CONFIG_ENV = "PATIENTGRAPH_CONFIG"  # the config file a worker process loads


def app_from_config() -> Starlette:
    """The app of one worker process (`serve --workers N`, an import-string factory for
    uvicorn): the config file named by PATIENTGRAPH_CONFIG, with the same overrides."""
    configure_logging()
    return create_app(load_settings(Path(os.environ[CONFIG_ENV])))


def create_app(
    settings: Settings, *, transports: Mapping[str, httpx.AsyncBaseTransport] | None = None
) -> Starlette:
    """The PatientGraph ASGI app. `transports` (source id -> httpx transport) is for tests."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with open_runtime(settings, transports) as runtime:
            app.state.runtime = runtime
            yield

    routes: list[BaseRoute] = [
        Route("/graphql", graphql_post, methods=["POST"]),
        Route("/graphql", graphql_get, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/privacy", privacy_page, methods=["GET"]),
        Route("/privacy/privacy.js", privacy_script, methods=["GET"]),
        Route("/privacy/patterns", privacy_patterns, methods=["GET"]),
    ]
    if settings.server.graphiql:
        routes.append(Mount(STATIC_PREFIX, StaticFiles(directory=STATIC_DIR), name="graphiql"))
    server = settings.server
    middleware = [
        Middleware(RequestIdMiddleware, logged_paths=_paths(routes)),
        Middleware(SecurityHeadersMiddleware),
        Middleware(BodyLimitMiddleware, max_bytes=server.max_body_bytes),
    ]
    if server.gzip:
        # Level 6, zlib's default: JSON compresses nearly as well as at Starlette's 9, faster.
        gzip = Middleware(GzipWhenAccepted, minimum_size=server.gzip_min_bytes, compresslevel=6)
        middleware.insert(2, gzip)
    if server.cors_origins:  # outermost: a preflight is answered before anything else runs
        middleware.insert(0, cors(server.cors_origins))
    return Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={Exception: internal_error, ClientGone: client_gone},
    )


def _paths(routes: list[BaseRoute]) -> frozenset[str]:
    """The paths the access log may print; any other (a mistyped URL, a probe, perhaps a
    name) is logged as "(other)"."""
    return frozenset(r.path for r in routes if isinstance(r, Route))
