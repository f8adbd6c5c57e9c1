"""A demo FHIR upstream in its own process, for timing tests: its CPU must not share the
event loop (or the GIL) with the API under test, as a real upstream would not.

    python -m tests.fakes.upstream_process --name hospital --delay 0.2
prints `READY <base url>` once listening and serves until stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio

from app.demo.fhir_server import create_fhir_app
from app.demo.generator import generate_population
from app.demo.serving import serve_until_stdin_closes


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--max-count", type=int, default=1000)
    args = parser.parse_args()
    app = create_fhir_app(generate_population().upstreams[args.name], max_count=args.max_count)
    app.state.delay_seconds = args.delay
    await serve_until_stdin_closes(app)


if __name__ == "__main__":
    asyncio.run(main())
