"""Cost of the merge step (resolvers/merge.py) for one patient with many records.

    .venv/bin/python benchmarks/merge.py [--observations 2000] [--sources 3] [--overlap 0.3]

Builds a synthetic patient whose observations come from several sources, a share of them
reported by more than one source (the same LOINC code, instant and value), and times, in the
same run: the baseline (concatenate and sort newest first, what `merged: false` does) and the
de-duplicating merge. Also medications: orders from two EHRs plus pharmacy fills.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python benchmarks/merge.py` puts benchmarks/ on sys.path, not the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import dataclasses
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from app.domain.common import CodeableConcept, Coding, Quantity, RecordMeta, SourceLink
from app.domain.medications import Medication, MedicationDispense, MedicationKind
from app.domain.observations import Observation
from app.domain.records import MEDICATIONS, OBSERVATIONS
from benchmarks.timing import machine_line, settle
from resolvers.merge import (
    LOINC,
    NDC,
    RXNORM,
    dedupe,
    merge_medications,
    newest_first,
    observation_key,
)

CODES = [
    ("2339-0", "Glucose", "mg/dL"),
    ("718-7", "Hemoglobin", "g/dL"),
    ("2093-3", "Cholesterol", "mg/dL"),
    ("8867-4", "Heart rate", "/min"),
    ("29463-7", "Body weight", "kg"),
    ("4548-4", "HbA1c", "%"),
]
START = datetime(2020, 1, 1, tzinfo=UTC)


def observation(source: str, i: int, rng: random.Random) -> Observation:
    code, text, unit = CODES[i % len(CODES)]
    when = START + timedelta(hours=7 * i)
    return Observation(
        sources=(SourceLink(source, f"{source}-{i}", "Observation"),),
        meta=RecordMeta(),
        status="final",
        category=("laboratory",),
        code=CodeableConcept(text, (Coding(LOINC, code, text),)),
        effective=when.isoformat(),
        issued=None,
        value_quantity=Quantity(round(rng.uniform(50, 150), 1), unit),
        value_concept=None,
        value_string=None,
        interpretation=(),
        reference_range=(),
        components=(),
    )


def patient_observations(
    total: int, sources: int, overlap: float, seed: int = 7
) -> list[Observation]:
    """`total` records across `sources`; `overlap` of the facts are reported by two sources."""
    rng = random.Random(seed)
    names = [f"source{n}" for n in range(sources)]
    facts = int(total / (1 + overlap))
    out: list[Observation] = []
    for i in range(facts):
        first = observation(names[i % sources], i, rng)
        out.append(first)
        if len(out) < total and rng.random() < overlap:
            twin = names[(i + 1) % sources]
            out.append(
                dataclasses.replace(
                    first, sources=(SourceLink(twin, f"{twin}-{i}", "Observation"),)
                )
            )
    return out[:total]


def medications(
    orders: int, fills_per_order: int
) -> tuple[list[Medication], list[MedicationDispense]]:
    meds, fills = [], []
    for i in range(orders):
        drug = CodeableConcept(
            f"Drug {i % 40} 10 MG Oral Tablet", (Coding(RXNORM, str(100000 + i % 40)),)
        )
        day = (START + timedelta(days=30 * i)).date().isoformat()
        for source in ("hospital", "clinic"):
            meds.append(
                Medication(
                    sources=(SourceLink(source, f"{source}-m{i}", "MedicationRequest"),),
                    meta=RecordMeta(),
                    kind=MedicationKind.ORDER,
                    medication=drug,
                    status="active",
                    intent="order",
                    authored_on=day,
                    effective=None,
                    dosage=(),
                    requester=None,
                )
            )
        for f in range(fills_per_order):
            fill_drug = dataclasses.replace(drug, coding=(*drug.coding, Coding(NDC, f"0000{i}")))
            fills.append(
                MedicationDispense(
                    sources=(SourceLink("pharmacy", f"f{i}-{f}", "MedicationDispense"),),
                    meta=RecordMeta(),
                    medication=fill_drug,
                    quantity=Quantity(30, "tablet"),
                    days_supply=30,
                    written_date=day,
                    last_fill_date=day,
                    pharmacy="P",
                    pharmacy_id="1",
                    prescriber=None,
                    prescriber_npi=None,
                    sig=None,
                )
            )
    return meds, fills


def timed(fn: Callable[[], Any], iterations: int) -> list[float]:
    settle()
    fn()  # warm-up
    samples = []
    for _ in range(iterations):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--observations", type=int, default=2000)
    parser.add_argument("--sources", type=int, default=3)
    parser.add_argument("--overlap", type=float, default=0.3)
    parser.add_argument("--orders", type=int, default=100)
    parser.add_argument("--fills", type=int, default=4, help="fills per order")
    parser.add_argument("--iterations", type=int, default=30)
    args = parser.parse_args()
    print(machine_line())

    records = patient_observations(args.observations, args.sources, args.overlap)
    merged = dedupe(records, observation_key)
    base = statistics.median(timed(lambda: newest_first(OBSERVATIONS, records), args.iterations))
    deduped = statistics.median(
        timed(lambda: newest_first(OBSERVATIONS, dedupe(records, observation_key)), args.iterations)
    )
    print(
        f"\nobservations: {len(records)} records from {args.sources} sources -> "
        f"{len(merged)} facts ({len(records) - len(merged)} duplicates merged)"
    )
    for label, seconds in (
        ("concatenate + sort (merged: false)", base),
        ("de-duplicate + sort (merged: true)", deduped),
    ):
        per_record = seconds / len(records) * 1e6
        print(f"   {label:<37}{seconds * 1000:8.2f} ms  {per_record:6.2f} µs/record")
    print(f"   ratio merged ÷ unmerged              {deduped / base:8.2f}")

    meds, fills = medications(args.orders, args.fills)
    entries = merge_medications(meds, fills)
    med_base = statistics.median(timed(lambda: newest_first(MEDICATIONS, meds), args.iterations))
    med_merge = statistics.median(timed(lambda: merge_medications(meds, fills), args.iterations))
    print(
        f"\nmedications: {len(meds)} orders from 2 EHRs + {len(fills)} fills -> "
        f"{len(entries)} entries"
    )
    print(f"   concatenate + sort                   {med_base * 1000:8.2f} ms")
    print(
        f"   merge orders + attach fills          {med_merge * 1000:8.2f} ms  "
        f"{med_merge / (len(meds) + len(fills)) * 1e6:6.2f} µs/record"
    )
    print(f"   ratio merged ÷ unmerged              {med_merge / med_base:8.2f}")


if __name__ == "__main__":
    main()
