"""HL7 v2 lab ingest throughput: ORU^R01 over MLLP into the durable lab store.

    .venv/bin/python benchmarks/mllp_ingest.py [--messages 500] [--connections 4]
        [--store sqlite|postgresql]

Measured in one run, all on 127.0.0.1: (a) the transport alone (MLLP framing and ACK with a
handler that stores nothing) and (b) the real pipeline (parse, store with a durable commit,
link the patient, ACK AA only after the commit), one sender connection and several at once.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python benchmarks/mllp_ingest.py` puts benchmarks/ on sys.path, not the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence

import sqlalchemy as sa

from app.bootstrap import lab_ingested
from app.domain.patients import SSN_SYSTEM
from app.identity.index import PatientIndex
from app.identity.tables import metadata as index_metadata
from app.settings import Hl7v2SourceSettings
from app.sources.hl7v2.ack import build_ack
from app.sources.hl7v2.mllp import MllpClient, MllpServer
from app.sources.hl7v2.source import Hl7v2Source
from app.sources.hl7v2.store import LabStore
from app.sources.hl7v2.store import metadata as lab_metadata
from app.store import create_engine
from benchmarks.timing import machine_line

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def messages(count: int, prefix: str) -> list[bytes]:
    """Distinct ORU^R01 messages: 20 patients, one CBC-like order with 4 results each."""
    out = []
    for i in range(count):
        patient = i % 20
        segments = [
            f"MSH|^~\\&|BENCHLAB|LAB|PG|PG|20250301090000||ORU^R01^ORU_R01|{prefix}-{i}|P|2.5.1",
            f"PID|1||MRN{patient:04d}^^^BENCHLAB&2.16.840.1.113883.3.99&ISO^MR~999-55-{patient:04d}"
            f"^^^USSSA^SS||Bench^Patient{patient}||19700101|F",
            f"OBR|1||ORD-{prefix}-{i}^BENCHLAB|58410-2^CBC panel^LN|||20250301080000",
            "OBX|1|NM|718-7^Hemoglobin^LN||13.2|g/dL^g/dL^UCUM|12-16|N|||F|||20250301080000",
            "OBX|2|NM|6690-2^Leukocytes^LN||6.1|10*3/uL^10*3/uL^UCUM|4-11|N|||F|||20250301080000",
            "OBX|3|NM|777-3^Platelets^LN||250|10*3/uL^10*3/uL^UCUM|150-400|N|||F|||20250301080000",
            "OBX|4|NM|789-8^Erythrocytes^LN||4.6|10*6/uL^10*6/uL^UCUM|4.2-5.4|N|||F|||20250301080000",
        ]
        out.append("\r".join(segments).encode())
    return out


async def send_all(port: int, batches: Sequence[Sequence[bytes]]) -> float:
    """Each batch over its own connection, concurrently; returns the seconds taken."""

    async def one(batch: Sequence[bytes]) -> None:
        async with MllpClient("127.0.0.1", port) as client:
            for message in batch:
                ack = await client.send(message)
                if b"MSA|AA|" not in ack:
                    raise RuntimeError("message not accepted")

    started = time.perf_counter()
    await asyncio.gather(*(one(b) for b in batches))
    return time.perf_counter() - started


def split(items: Sequence[bytes], parts: int) -> list[Sequence[bytes]]:
    return [items[i::parts] for i in range(parts)]


async def transport_only(msgs: Sequence[bytes], connections: int) -> float:
    async def ack_only(raw: bytes) -> bytes:
        return build_ack(raw, "AA")

    server = MllpServer(ack_only)
    await server.start()
    try:
        return await send_all(server.port, split(msgs, connections))
    finally:
        await server.aclose()


async def no_cache(_patient_id: str) -> None:
    return None


async def full_pipeline(url: str, msgs: Sequence[bytes], connections: int) -> float:
    engine = create_engine(url)
    async with engine.begin() as conn:  # a fresh store every run
        await conn.run_sync(lab_metadata.drop_all)
        await conn.run_sync(index_metadata.drop_all)
    index = PatientIndex(engine, [SSN_SYSTEM], "bench-key")
    store = LabStore(engine)
    await index.create_tables()
    await store.create_tables()
    source = Hl7v2Source(
        Hl7v2SourceSettings(id="benchlab", kind="hl7v2", listen="127.0.0.1:0"),
        store,
        on_ingested=lab_ingested(index, no_cache),  # links as the server does; nothing to purge
    )
    await source.start()
    try:
        seconds = await send_all(source.port, split(msgs, connections))
        async with engine.connect() as conn:
            stored = (await conn.execute(sa.text("SELECT count(*) FROM lab_messages"))).scalar_one()
        if stored != len(msgs):
            raise RuntimeError(f"stored {stored} of {len(msgs)} messages")
        return seconds
    finally:
        await source.aclose()
        await engine.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()
    print(machine_line())
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}" if args.store == "sqlite" else POSTGRES
        runs: list[tuple[str, Callable[[Sequence[bytes], int], Awaitable[float]]]] = [
            ("MLLP + ACK only (no store)", transport_only),
            (f"parse + {args.store} commit + link + ACK", lambda m, c: full_pipeline(url, m, c)),
        ]
        durability = "WAL, synchronous=FULL" if args.store == "sqlite" else "commit per message"
        print(
            f"\n{args.messages} ORU^R01 messages (4 results each), store {args.store} "
            f"({durability})"
        )
        print(f"   {'pipeline':<42} {'1 connection':>14} {f'{args.connections} connections':>16}")
        rates: dict[str, tuple[float, float]] = {}
        for label, run in runs:
            one = args.messages / await run(messages(args.messages, "a"), 1)
            many = args.messages / await run(messages(args.messages, "b"), args.connections)
            rates[label] = (one, many)
            print(f"   {label:<42} {one:10.0f} msg/s {many:12.0f} msg/s")
        (t1, tn), (p1, pn) = rates.values()
        print(
            f"\n   durable pipeline ÷ transport only: {p1 / t1:.2f} (1 connection), "
            f"{pn / tn:.2f} ({args.connections} connections)"
        )


if __name__ == "__main__":
    asyncio.run(main())
