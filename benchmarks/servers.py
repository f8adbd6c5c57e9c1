"""The processes the cache benchmark compares, each started by the parent with
`python benchmarks/servers.py api|bare ...` and served by uvicorn exactly alike
(`app.demo.serving.serve_until_stdin_closes`: one worker, same uvicorn settings).

- `api SETTINGS_JSON`: PatientGraph (`create_app`) with the settings in the file.
- `bare BODY_FILE`: a bare Starlette app whose POST /graphql returns the file's bytes with the
  same content type and cache headers PatientGraph sends."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import json

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.demo.serving import serve_until_stdin_closes
from app.main import create_app
from app.settings import settings_from_mapping

HEADERS = {"cache-control": "no-store", "pragma": "no-cache", "x-cache": "hit"}


def bare_app(body: bytes) -> Starlette:
    async def graphql(request: Request) -> Response:
        await request.body()
        return Response(body, 200, HEADERS, "application/json")

    return Starlette(routes=[Route("/graphql", graphql, methods=["POST"])])


def main() -> None:
    parser = argparse.ArgumentParser(description="A server for benchmarks/cache_hit.py.")
    parser.add_argument("kind", choices=["api", "bare"])
    parser.add_argument("path", type=Path)
    args = parser.parse_args()
    if args.kind == "api":
        settings = settings_from_mapping(json.loads(args.path.read_text()), environ={})
        app = create_app(settings)
    else:
        app = bare_app(args.path.read_bytes())
    asyncio.run(serve_until_stdin_closes(app))


if __name__ == "__main__":
    main()
