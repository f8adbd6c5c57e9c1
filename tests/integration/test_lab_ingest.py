"""The HL7 v2 lab source end to end: MLLP over a real socket -> durable store -> GraphQL."""

from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa

from app.demo.generator import DemoPerson, DemoPopulation
from app.sources.hl7v2.mllp import MllpClient, frame
from tests.conftest import Api, ApiFactory, Upstream, fhir_source, lab_source

SSN = "999-77-0001"


def oru(
    control_id: str,
    value: str = "182",
    *,
    status: str = "F",
    order: str = "ORD-1",
    code: str = "2339-0^Glucose [Mass/volume] in Blood^LN",
    when: str = "20250301080000",
    ssn: str = SSN,
    patient: str = "Labtest^Lena||19800102|F",  # PID-5 to PID-8
) -> bytes:
    segments = [
        f"MSH|^~\\&|CITYLAB|LABFAC|PATIENTGRAPH|PG|20250301090000||ORU^R01^ORU_R01|{control_id}|P|2.5.1",
        f"PID|1||LAB-42^^^CITYLAB&2.16.840.1.113883.3.1&ISO^MR~{ssn}^^^USSSA^SS||{patient}",
        f"OBR|1||{order}^CITYLAB|24323-8^Comprehensive metabolic panel^LN|||{when}",
        f"OBX|1|NM|{code}||{value}|mg/dL^mg/dL^UCUM|70-105|H|||{status}|||{when}",
    ]
    return "\r".join(segments).encode()


def pid_fields(person: DemoPerson) -> str:
    """PID-5 to PID-8 of a demo person: the lab links to them only if these agree."""
    born = person.birth_date.replace("-", "")
    return f"{person.family}^{person.given[0]}||{born}|{person.gender[0].upper()}"


def msa(ack: bytes) -> list[str]:
    line = next(s for s in ack.decode().split("\r") if s.startswith("MSA|"))
    return line.split("|")


LAB_QUERY = """query($i: String) { patients(identifier: $i) { nodes { id
  labResults(first: 50) { totalCount nodes { status effective valueQuantity { value unit }
    code { coding { system code } } sources { sourceId localId } } } } } }"""


async def lab_results(api: Api) -> list[dict[str, Any]]:
    body = (await api.query(LAB_QUERY, {"i": SSN})).json()
    assert "errors" not in body, body
    nodes = body["data"]["patients"]["nodes"]
    return nodes[0]["labResults"]["nodes"] if nodes else []


async def test_accepts_stores_and_serves_a_result(api_factory: ApiFactory) -> None:
    async with api_factory([lab_source()]) as api:
        async with MllpClient("127.0.0.1", api.lab_port()) as client:
            ack = await client.send(oru("MSG-1"))
        assert msa(ack)[1:3] == ["AA", "MSG-1"]
        results = await lab_results(api)
    assert len(results) == 1
    assert results[0]["valueQuantity"] == {"value": 182.0, "unit": "mg/dL"}
    assert results[0]["status"] == "final"
    assert {"system": "http://loinc.org", "code": "2339-0"} in results[0]["code"]["coding"]
    assert results[0]["sources"][0]["sourceId"] == "citylab"


async def test_redelivery_is_idempotent(api_factory: ApiFactory) -> None:
    async with api_factory([lab_source()]) as api:
        async with MllpClient("127.0.0.1", api.lab_port()) as client:
            first = await client.send(oru("MSG-1"))
            again = await client.send(oru("MSG-1"))
        results = await lab_results(api)
        history = await api.runtime.registry.lab_store.history(  # type: ignore[union-attr]
            "citylab", results[0]["sources"][0]["localId"]
        )
    assert msa(first)[1] == msa(again)[1] == "AA"
    assert len(results) == 1
    assert len(history) == 1


async def test_correction_replaces_the_final_result_and_keeps_history(
    api_factory: ApiFactory,
) -> None:
    async with api_factory([lab_source()]) as api:
        async with MllpClient("127.0.0.1", api.lab_port()) as client:
            assert msa(await client.send(oru("MSG-1", "182")))[1] == "AA"
            assert msa(await client.send(oru("MSG-2", "128", status="C")))[1] == "AA"
        results = await lab_results(api)
        history = await api.runtime.registry.lab_store.history(  # type: ignore[union-attr]
            "citylab", results[0]["sources"][0]["localId"]
        )
    assert len(results) == 1
    assert results[0]["valueQuantity"]["value"] == 128.0
    assert results[0]["status"] == "corrected"
    assert history == [(1, "F", False), (2, "C", True)]


async def test_bad_messages_get_naks_and_the_connection_goes_on(api_factory: ApiFactory) -> None:
    no_obr = b"\r".join(oru("MSG-9").split(b"\r")[:2])
    adt = oru("MSG-8").replace(b"ORU^R01^ORU_R01", b"ADT^A01^ADT_A01")
    async with api_factory([lab_source()]) as api:
        async with MllpClient("127.0.0.1", api.lab_port()) as client:
            garbage = await client.send(b"this is not HL7 at all")
            wrong_type = await client.send(adt)
            empty = await client.send(no_obr)
            good = await client.send(oru("MSG-1"))
        results = await lab_results(api)
    assert msa(garbage)[1] == "AR"
    assert msa(wrong_type)[1:3] == ["AR", "MSG-8"]
    assert msa(empty)[1:3] == ["AE", "MSG-9"]
    assert msa(good)[1:3] == ["AA", "MSG-1"]
    assert len(results) == 1  # only the good one was stored


async def test_message_split_across_reads_and_disconnect_mid_message(
    api_factory: ApiFactory,
) -> None:
    async with api_factory([lab_source()]) as api:
        port = api.lab_port()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        payload = frame(oru("MSG-1"))
        for i in range(0, len(payload), 17):
            writer.write(payload[i : i + 17])
            await writer.drain()
            await asyncio.sleep(0.005)
        ack = await asyncio.wait_for(reader.readuntil(b"\x1c\x0d"), 5)
        writer.close()
        await writer.wait_closed()
        # A sender that dies half-way: nothing of that message may be stored.
        _, half = await asyncio.open_connection("127.0.0.1", port)
        partial = frame(oru("MSG-2", "999", order="ORD-2"))
        half.write(partial[: len(partial) // 2])
        await half.drain()
        half.close()
        await half.wait_closed()
        await asyncio.sleep(0.1)
        results = await lab_results(api)
    assert msa(ack[1:-2])[1] == "AA"
    assert [r["valueQuantity"]["value"] for r in results] == [182.0]


async def test_lab_results_join_the_ehr_patient_and_a_lab_store_failure_is_coded(
    api_factory: ApiFactory, upstreams: dict[str, Upstream], population: DemoPopulation
) -> None:
    person = population.people[0]
    query = """query($i: String) { patients(identifier: $i) { nodes { sources { sourceId }
      labResults(first: 100) { nodes { sources { sourceId } } } conditions { totalCount } } } }"""
    sources = [fhir_source(upstreams["hospital"]), lab_source()]
    # Responses uncached: the same query must reach the broken store the second time.
    async with api_factory(sources, cache={"response_ttl_seconds": 0}) as api:
        async with MllpClient("127.0.0.1", api.lab_port()) as client:
            message = oru("MSG-1", ssn=person.ssn, patient=pid_fields(person))
            assert msa(await client.send(message))[1] == "AA"
        joined = (await api.query(query, {"i": person.ssn})).json()
        async with api.runtime.engine.begin() as conn:  # the lab's store breaks
            await conn.execute(sa.text("DROP TABLE lab_results"))
        broken = (await api.query(query, {"i": person.ssn})).json()
    (patient,) = joined["data"]["patients"]["nodes"]
    assert {s["sourceId"] for s in patient["sources"]} == {"hospital", "citylab"}
    lab_sources = {s["sourceId"] for n in patient["labResults"]["nodes"] for s in n["sources"]}
    assert lab_sources == {"hospital", "citylab"}
    (still,) = broken["data"]["patients"]["nodes"]
    assert still["conditions"]["totalCount"] == patient["conditions"]["totalCount"] > 0
    assert {s["sourceId"] for n in still["labResults"]["nodes"] for s in n["sources"]} == {
        "hospital"
    }
    assert [e["extensions"] for e in broken["errors"]] == [
        {"code": "SOURCE_UNAVAILABLE", "source": "citylab"}
    ]


async def test_unmappable_results_are_counted_not_lost(api_factory: ApiFactory) -> None:
    encapsulated = (
        oru("MSG-ED")
        .replace(b"OBX|1|NM|", b"OBX|1|ED|")
        .replace(b"||182|mg/dL", b"||^application^pdf^Base64^JVBERi0=|")
    )
    async with api_factory([lab_source()]) as api:
        async with MllpClient("127.0.0.1", api.lab_port()) as client:
            ack = await client.send(encapsulated)
        ready = (await api.client.get(f"{api.url}/readyz")).json()
    assert msa(ack)[1] == "AA"
    (lab,) = ready["sources"]
    assert lab["id"] == "citylab"
    assert lab["unmapped"] == 1
