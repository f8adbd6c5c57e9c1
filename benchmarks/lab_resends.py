"""Does a lab result's resend get slower as its history grows?

    .venv/bin/python benchmarks/lab_resends.py [--messages 3000] [--block 500]
        [--store sqlite|postgresql|both]

One order (a report and two results) is resent `--messages` times with new MSH-10s straight
into the lab store (parse + durable commit, no MLLP), so every result gains one version per
message. Printed: milliseconds per message for each block of `--block` messages, and the last
block divided by the first (1.0 means the cost does not grow with history). On PostgreSQL the
table is ANALYZEd once after the first block, as autovacuum does in service: a table planned
with the statistics of an empty one picks sequential scans whatever the queries say.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python benchmarks/lab_resends.py` puts benchmarks/ on sys.path, not the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import tempfile
import time

import sqlalchemy as sa

from app.sources.hl7v2.mapping import parse_message
from app.sources.hl7v2.store import LabStore, metadata
from app.store import create_engine
from benchmarks.mllp_ingest import POSTGRES
from benchmarks.timing import machine_line


def resend(control_id: str, value: int) -> bytes:
    return "\r".join(
        [
            f"MSH|^~\\&|LIS|BENCHLAB|PG|PG|20250301090000||ORU^R01^ORU_R01|{control_id}|P|2.5.1",
            "PID|1||MRN-1^^^BENCHLAB^MR~999-55-0001^^^USSSA^SS||Bench^Patient||19700101|F",
            "OBR|1||ORD-RESENT^BENCHLAB|24323-8^Metabolic panel^LN|||20250301080000",
            f"OBX|1|NM|2339-0^Glucose^LN||{value}|mg/dL^mg/dL^UCUM|70-105|N|||C",
            "OBX|2|NM|2823-3^Potassium^LN||4.1|mmol/L^mmol/L^UCUM||N|||C",
        ]
    ).encode()


async def blocks(url: str, messages: int, block: int) -> list[float]:
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.drop_all)
    store = LabStore(engine)
    await store.create_tables()
    out = []
    try:
        started = time.perf_counter()
        for i in range(messages):
            raw = resend(f"RESEND-{i}", 70 + i % 100)
            await store.ingest("benchlab", parse_message(raw, "benchlab"), raw.decode())
            if (i + 1) % block == 0:
                now = time.perf_counter()
                out.append((now - started) / block * 1000)
                if len(out) == 1 and url.startswith("postgresql:"):
                    async with engine.begin() as conn:
                        await conn.execute(sa.text("ANALYZE lab_results"))
                started = time.perf_counter()
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.drop_all)
        await engine.dispose()
    return out


async def run(args: argparse.Namespace) -> None:
    stores = ["sqlite", "postgresql"] if args.store == "both" else [args.store]
    print(machine_line())
    print(f"one order resent {args.messages} times; ms per message per {args.block} messages")
    with tempfile.TemporaryDirectory(prefix="pg-bench-") as tmp:
        for name in stores:
            url = f"sqlite:///{tmp}/resends.db" if name == "sqlite" else POSTGRES
            figures = await blocks(url, args.messages, args.block)
            row = " ".join(f"{f:6.2f}" for f in figures)
            print(f"{name:11} {row}   last / first {figures[-1] / figures[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--block", type=int, default=500)
    parser.add_argument("--store", choices=["sqlite", "postgresql", "both"], default="both")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
