"""Matching quality with known truth: synthetic people spread over four sources with the
corruption real registrations have, linked through the real PatientIndex, scored pairwise.

    .venv/bin/python benchmarks/identity.py [--people 5000] [--seed 7] [--store URL]

Each person is in each source with probability 0.7 (in at least one). Per source record:
typos and nicknames in the first name, typos and (for women) a changed surname, day and month
swapped or one digit wrong in the birth date, the SSN missing, undashed or (rarely) another
person's, addresses and phones missing or changed. 3% of people have a twin: same surname,
birth date, address and phone, different first name and SSN. Prints precision, recall and the
pairwise confusion counts at the default thresholds, and what was held for review. Every name
and number is synthetic. Not a test: it prints what it measures.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import itertools
import math
import random
import tempfile
import time
from collections import Counter
from dataclasses import dataclass

import sqlalchemy as sa

from app.domain.common import Address, ContactPoint, HumanName, Identifier, SourceLink
from app.domain.patients import SSN_SYSTEM, SourcePatient
from app.identity.index import PatientIndex
from app.identity.nicknames import SHORT_FORMS
from app.identity.tables import identity_reviews
from app.store import create_engine


def _words(text: str) -> list[str]:
    return text.split()


MALE = _words(
    """
    james john robert michael william david richard joseph thomas charles christopher daniel
    matthew anthony mark donald steven paul andrew joshua kenneth kevin brian george timothy
    ronald edward jason jeffrey ryan jacob gary nicholas eric jonathan stephen larry justin
    scott brandon benjamin samuel gregory alexander frank patrick raymond jack dennis jerry
    tyler aaron jose adam nathan henry douglas zachary peter kyle ethan walter noah jeremy
    christian keith roger terry gerald harold sean austin carl arthur lawrence dylan jesse
    jordan bryan billy joe bruce gabriel logan albert willie alan juan wayne elijah randy roy
    vincent ralph eugene russell bobby mason philip louis
    """
)
FEMALE = _words(
    """
    mary patricia jennifer linda elizabeth barbara susan jessica sarah karen lisa nancy betty
    margaret sandra ashley kimberly emily donna michelle carol amanda dorothy melissa deborah
    stephanie rebecca sharon laura cynthia kathleen amy angela shirley anna brenda pamela emma
    nicole helen samantha katherine christine debra rachel carolyn janet catherine maria heather
    diane ruth julie olivia joyce virginia victoria kelly lauren christina joan evelyn judith
    megan andrea cheryl hannah jacqueline martha gloria teresa ann sara madison frances kathryn
    janice jean abigail alice judy sophia grace denise amber doris marilyn danielle beverly
    isabella theresa diana natalie brittany charlotte marie kayla alexis lori
    """
)
FAMILY = _words(
    """
    smith johnson williams brown jones garcia miller davis rodriguez martinez hernandez lopez
    gonzalez wilson anderson thomas taylor moore jackson martin lee perez thompson white harris
    sanchez clark ramirez lewis robinson walker young allen king wright scott torres nguyen hill
    flores green adams nelson baker hall rivera campbell mitchell carter roberts gomez phillips
    evans turner diaz parker cruz edwards collins reyes stewart morris morales murphy cook
    rogers gutierrez ortiz morgan cooper peterson bailey reed kelly howard ramos kim cox ward
    richardson watson brooks chavez wood james bennett gray mendoza ruiz hughes price alvarez
    castillo sanders patel myers long ross foster jimenez powell jenkins perry russell sullivan
    bell coleman butler henderson barnes gonzales fisher vasquez simmons romero jordan patterson
    alexander hamilton graham reynolds griffin wallace moreno west cole hayes bryant herrera
    gibson ellis tran medina aguilar stevens murray ford castro marshall owens harrison
    fernandez mcdonald woods washington kennedy wells vargas henry chen freeman webb tucker
    guzman burns crawford olson simpson porter hunter gordon mendez silva shaw snyder mason
    dixon munoz hunt hicks holmes palmer wagner black robertson boyd rose stone salazar fox
    warren mills meyer rice schmidt garza daniels ferguson nichols stephens soto weaver ryan
    gardner payne grant dunn kelley spencer hawkins arnold pierce hansen peters santos hart
    bradley knight elliott cunningham duncan armstrong hudson carroll lane riley andrews
    alvarado ray delgado berry perkins hoffman johnston matthews pena richards contreras willis
    carpenter lawrence sandoval o'brien nunez-garcia zoe
    """
)
STREETS = _words(
    """
    Oak Maple Pine Cedar Elm Main Park Lake Hill River Church Mill Spring Ridge
    """
)
SUFFIXES = ["St", "Ave", "Rd", "Ln", "Dr", "Ct"]
SOURCES = ("hospital", "clinic", "citylab", "pharmacy")


@dataclass(frozen=True)
class Person:
    number: int
    sex: str
    given: str
    family: str
    birth_date: str
    ssn: str
    address: tuple[str, str, str]  # line, city, postal code
    phone: str
    email: str


_CUMULATIVE: dict[int, list[float]] = {}


def _weighted(rng: random.Random, names: list[str]) -> str:
    """Commoner names first: the name of rank r has weight 1/sqrt(r) (the top given name is
    about 5% of its sex, the top surname 3%: a little more skewed than US frequencies)."""
    weights = _CUMULATIVE.get(len(names))
    if weights is None:
        weights = _CUMULATIVE[len(names)] = list(
            itertools.accumulate(1 / math.sqrt(r) for r in range(1, len(names) + 1))
        )
    return rng.choices(names, cum_weights=weights)[0]


def _address(rng: random.Random) -> tuple[str, str, str]:
    line = f"{rng.randint(1, 9999)} {rng.choice(STREETS)} {rng.choice(SUFFIXES)}"
    return line, "Springfield", f"{rng.randint(1000, 99999):05d}"


def _phone(rng: random.Random) -> str:
    return f"555-{rng.randint(100, 999)}-{rng.randint(0, 9999):04d}"


def people(count: int, rng: random.Random) -> list[Person]:
    out: list[Person] = []
    used_ssns: set[str] = set()

    def ssn() -> str:
        while True:
            value = f"9{rng.randint(0, 99):02d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"
            if value not in used_ssns:
                used_ssns.add(value)
                return value

    while len(out) < count:
        sex = rng.choice(("male", "female"))
        given = _weighted(rng, MALE if sex == "male" else FEMALE)
        family = _weighted(rng, FAMILY)
        year = rng.randint(1930, 2024)
        birth = f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        address, phone = _address(rng), _phone(rng)
        email = f"{given}.{family.replace(chr(39), '')}{rng.randint(1, 999)}@example.org"
        out.append(Person(len(out), sex, given, family, birth, ssn(), address, phone, email))
        if rng.random() < 0.03 and len(out) < count:  # a twin
            twin_sex = rng.choice(("male", "female"))
            names = [n for n in (MALE if twin_sex == "male" else FEMALE) if n != given]
            twin = Person(
                len(out),
                twin_sex,
                rng.choice(names),
                family,
                birth,
                ssn(),
                address,
                phone,
                f"{rng.choice(names)}.{rng.randint(1, 999)}@example.org",
            )
            out.append(twin)
    return out


def _typo(rng: random.Random, word: str) -> str:
    if len(word) < 4:
        return word
    i = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(3)
    if kind == 0:
        return word[:i] + rng.choice("aeioulnrst") + word[i + 1 :]
    if kind == 1:
        return word[:i] + word[i + 1 :]
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def record(
    person: Person, source: str, local: str, everyone: list[Person], rng: random.Random
) -> SourcePatient:
    given, family, birth = person.given, person.family, person.birth_date
    roll = rng.random()
    if roll < 0.05:
        given = _typo(rng, given)
    elif roll < 0.10 and SHORT_FORMS.get(given):  # the matcher's own list: the common forms
        given = rng.choice(SHORT_FORMS[given])
    roll = rng.random()
    if roll < 0.04:
        family = _typo(rng, family)
    elif roll < 0.08 and person.sex == "female":
        family = _weighted(rng, FAMILY)  # married: another surname
    year, month, day = birth.split("-")
    roll = rng.random()
    if roll < 0.02 and int(day) <= 12:
        birth = f"{year}-{day}-{month}"
    elif roll < 0.04:
        digits = list(day)
        digits[1] = str((int(digits[1]) + rng.randint(1, 8)) % 10)
        candidate = f"{year}-{month}-{''.join(digits)}"
        if candidate[-2:] not in ("00", "29", "30", "31") and int(candidate[-2:]) <= 28:
            birth = candidate
    identifiers = [Identifier("urn:mrn:" + source, local)]
    roll = rng.random()
    if roll < 0.005:
        identifiers.append(Identifier(SSN_SYSTEM, rng.choice(everyone).ssn))  # someone else's
    elif roll < 0.25:
        pass  # no SSN
    elif roll < 0.5:
        identifiers.append(Identifier(SSN_SYSTEM, person.ssn.replace("-", "")))
    else:
        identifiers.append(Identifier(SSN_SYSTEM, person.ssn))
    addresses: tuple[Address, ...] = ()
    roll = rng.random()
    if roll >= 0.2:
        line, city, postal = person.address if roll >= 0.3 else _address(rng)
        addresses = (Address("home", (line,), city, "IL", postal, "US"),)
    telecom: list[ContactPoint] = []
    roll = rng.random()
    if roll >= 0.3:
        telecom.append(ContactPoint("phone", person.phone if roll >= 0.4 else _phone(rng), "home"))
    if source != "citylab" and rng.random() < 0.5:
        telecom.append(ContactPoint("email", person.email))
    sex = person.sex if rng.random() >= 0.02 else None
    name = HumanName(family.title(), (given.title(),), None)
    return SourcePatient(
        SourceLink(source, local, "Patient"),
        tuple(identifiers),
        name,
        birth,
        sex,
        addresses,
        tuple(telecom),
    )


def records(everyone: list[Person], rng: random.Random) -> list[tuple[int, SourcePatient]]:
    out: list[tuple[int, SourcePatient]] = []
    for person in everyone:
        present = [s for s in SOURCES if rng.random() < 0.7] or [rng.choice(SOURCES)]
        for source in present:
            local = f"{source[:1]}{person.number:06d}-{rng.randint(0, 999)}"
            out.append((person.number, record(person, source, local, everyone, rng)))
    rng.shuffle(out)
    return out


def _pairs(n: int) -> int:
    return n * (n - 1) // 2


def pairwise(truth: list[int], predicted: list[str]) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) over pairs of records."""
    by_truth: Counter[int] = Counter(truth)
    by_predicted: Counter[str] = Counter(predicted)
    both: Counter[tuple[int, str]] = Counter(zip(truth, predicted, strict=True))
    tp = sum(_pairs(n) for n in both.values())
    return (
        tp,
        sum(_pairs(n) for n in by_predicted.values()) - tp,
        sum(_pairs(n) for n in by_truth.values()) - tp,
    )


async def run(count: int, seed: int, store: str | None) -> None:
    rng = random.Random(seed)
    everyone = people(count, rng)
    linked = records(everyone, rng)
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(store or f"sqlite:///{tmp}/identity.db")
        index = PatientIndex(engine, [SSN_SYSTEM], "benchmark-key")
        await index.create_tables()
        started = time.perf_counter()
        predicted: list[str] = []
        for start in range(0, len(linked), 50):
            predicted += await index.link([r for _, r in linked[start : start + 50]])
        elapsed = time.perf_counter() - started
        async with engine.connect() as conn:
            reviews = (
                await conn.execute(sa.select(identity_reviews.c.kind, identity_reviews.c.reason))
            ).all()
        await engine.dispose()
    truth = [number for number, _ in linked]
    tp, fp, fn = pairwise(truth, predicted)
    print(f"people {len(everyone)}, source records {len(linked)}, sources {len(SOURCES)}")
    print(
        f"linked in {elapsed:.1f} s ({elapsed / len(linked) * 1000:.2f} ms per record, "
        "batches of 50)"
    )
    print(f"pairs: true positive {tp}, false positive {fp}, false negative {fn}")
    print(f"precision {tp / max(tp + fp, 1):.4f}, recall {tp / max(tp + fn, 1):.4f}")
    print(f"persons predicted {len(set(predicted))}, true {len(set(truth))}")
    for (kind, reason), n in sorted(Counter((k, r) for k, r in reviews).items()):
        print(f"held for review: {kind} / {reason}: {n}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--store", help="a store URL (default: a temporary SQLite file)")
    args = parser.parse_args()
    asyncio.run(run(args.people, args.seed, args.store))


if __name__ == "__main__":
    main()
