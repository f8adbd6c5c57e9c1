"""Common English given-name nicknames, so "Bill" and "William" compare as one name.

Each line is a formal name and the short forms registrars commonly record for it. A name may
belong to several groups ("Al": Albert, Alan, Alexander); two names are nickname-equivalent
when they share a group. The list is deliberately short: only forms so common that a registrar
writing one for the other is likelier than two different people.
"""

from __future__ import annotations

from collections.abc import Mapping

_GROUPS = """
abigail abby gail
albert al bert
alan al
alexander alex al sandy xander
alexandra alex sandra sandy lexi
alfred al alf fred
allison ali allie
andrew andy drew
anthony tony
barbara barb barbie babs
benjamin ben benny
catherine cathy kate katie cat kathy
charles charlie chuck chas
christina chris tina christy
christopher chris kit topher
daniel dan danny
david dave davy
deborah debbie deb debra
donald don donnie
dorothy dot dottie
edward ed eddie ted ned
elizabeth liz beth betty eliza lizzie betsy libby
emily em emmy
eugene gene
frances fran frannie
francis frank fran
frederick fred freddie
gabriel gabe
gregory greg
harold hal harry
henry hank harry
isabella bella izzy isabel
jacob jake
james jim jimmy jamie
jennifer jen jenny
jessica jess jessie
john johnny jack jon
jonathan jon jonny nathan
joseph joe joey
joshua josh
judith judy
katherine kate katie kathy kat
kenneth ken kenny
lawrence larry
leonard leo len lenny
margaret maggie meg peggy marge
matthew matt
michael mike mickey mick
nathaniel nate nathan nat
nicholas nick nicky
pamela pam
patricia pat patty trish tricia
patrick pat paddy
peter pete
philip phil
rebecca becky becca
richard rick dick rich ricky
robert bob rob bobby robbie bert
ronald ron ronnie
samantha sam sammy
samuel sam sammy
stephen steve
steven steve
susan sue susie
theodore ted teddy theo
thomas tom tommy
timothy tim timmy
victoria vicky tori
walter walt wally
william bill will billy willy liam
zachary zach zack
"""


def _groups() -> Mapping[str, frozenset[int]]:
    out: dict[str, set[int]] = {}
    for number, line in enumerate(_GROUPS.split("\n")):
        for name in line.split():
            out.setdefault(name, set()).add(number)
    return {name: frozenset(groups) for name, groups in out.items()}


GROUPS = _groups()
# Formal name -> its short forms (the first name of each line, and the rest).
SHORT_FORMS: Mapping[str, tuple[str, ...]] = {
    names[0]: tuple(names[1:]) for names in (line.split() for line in _GROUPS.split("\n")) if names
}


_FORMAL = {number: line.split()[0] for number, line in enumerate(_GROUPS.split("\n")) if line}


def formal_names(name: str) -> set[str]:
    """The formal names `name` may stand for ("bill" -> {"william"}); itself if none."""
    return {_FORMAL[number] for number in GROUPS.get(name, ())} or {name}


def equivalent(a: str, b: str) -> bool:
    """True when `a` and `b` (normalised: casefolded ASCII letters) share a nickname group."""
    return not GROUPS.get(a, frozenset()).isdisjoint(GROUPS.get(b, frozenset()))
