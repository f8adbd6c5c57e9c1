"""A/B benchmark runner: this checkout (A) against a base commit (B), alternated in one run on
the same machine, with the spread of each side's rounds next to the ratio of their medians.

    .venv/bin/python benchmarks/ab.py --base REV [--rounds 3] [--only dashboard,cache_hit,cold]
    .venv/bin/python benchmarks/ab.py --base b2f522e --base-dir /work/bench-base

B is a detached git worktree of REV (default `.bench/base-<sha>` in this checkout, created when
absent) with its own virtualenv, `.venv` inside it, installed when absent. Each side runs its
**own** benchmark scripts with its own interpreter (the scripts import the app's internals, which
the compared commits may lay out differently), and this runner reads the figures from the text
they print. Rounds alternate A B, B A, A B, ... so a drift in machine load hits both sides alike.
Each run's full output is kept under `.bench/runs/`. Not a test: it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT_SECONDS = 30 * 60
NUMBER = r"(?P<value>\d+(?:\.\d+)?)"


@dataclass(frozen=True)
class Figure:
    name: str
    pattern: re.Pattern[str]  # one match in the script's output; group `value` is the figure
    higher_is_better: bool


@dataclass(frozen=True)
class Benchmark:
    name: str
    argv: tuple[str, ...]  # the script, relative to the checkout, and its arguments
    figures: tuple[Figure, ...]


def _line(text: str) -> re.Pattern[str]:
    return re.compile(text, re.MULTILINE)


# The patterns follow the lines the scripts print (see their `print` calls); a line that no
# longer matches fails the run loudly rather than reporting a figure from the wrong line.
BENCHMARKS = (
    Benchmark(
        "dashboard",
        ("benchmarks/dashboard.py", "--only", "overhead"),
        (
            Figure(
                "dashboard overhead ratio",
                _line(
                    rf"^\s*PatientGraph ÷ graphql-core per field\s+{NUMBER}\s+"
                    r"\(with SQLite index [\d.]+(?:; HTTP end to end [\d.]+)?; graphql-core "
                    r"parsing once"
                ),
                higher_is_better=False,
            ),
            Figure(
                "dashboard overhead ratio, SQLite index",
                _line(
                    r"^\s*PatientGraph ÷ graphql-core per field\s+[\d.]+\s+"
                    rf"\(with SQLite index {NUMBER}(?:; HTTP end to end [\d.]+)?; graphql-core "
                    r"parsing once"
                ),
                higher_is_better=False,
            ),
            Figure(
                "portal query ratio",
                _line(rf"^\s*portal: PatientGraph ÷ graphql-core\s+{NUMBER}\s+\("),
                higher_is_better=False,
            ),
        ),
    ),
    Benchmark(
        "cache_hit",
        ("benchmarks/cache_hit.py",),
        (
            Figure(
                "cache-hit throughput ratio",
                _line(rf"^\s*ratio\s+{NUMBER}\s+\(goal"),
                higher_is_better=True,
            ),
        ),
    ),
    Benchmark(
        "cold",
        ("benchmarks/cold.py",),
        (
            Figure(
                "cold dashboard req/s",
                _line(rf"^\s*cold\s+{NUMBER}\s+[\d.]+ ms\s+[\d.]+ ms\s*$"),
                higher_is_better=True,
            ),
        ),
    ),
)
# Lines a script prints when its comparison is not like for like (dashboard.py's checks).
SUSPECT = _line(r"^.*(?:DIFFERENT|NOT installed|mismatch).*$")


class RunError(RuntimeError):
    pass


def parse(benchmark: Benchmark, output: str) -> dict[str, float]:
    """The figures of one run, read from what the script printed."""
    values: dict[str, float] = {}
    for figure in benchmark.figures:
        matches = figure.pattern.findall(output)
        if len(matches) != 1:
            raise RunError(
                f"{benchmark.name}: expected one line for {figure.name!r}, found "
                f"{len(matches)}; the script's output format changed?"
            )
        values[figure.name] = float(matches[0])
    return values


# --- the two sides --------------------------------------------------------------------------


@dataclass(frozen=True)
class Side:
    label: str  # "A" or "B"
    checkout: Path
    commit: str
    dirty: bool

    @property
    def python(self) -> Path:
        return self.checkout / ".venv" / "bin" / "python"

    def describe(self) -> str:
        changes = " + uncommitted changes" if self.dirty else ""
        return f"{self.label} = {self.checkout} at {self.commit[:12]}{changes}"


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(  # noqa: S603 - fixed git arguments, no shell
        ["git", *args],  # noqa: S607 - git from PATH, as a developer runs it
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RunError(f"git {' '.join(args)} in {cwd}: {done.stderr.strip()}")
    return done.stdout.strip()


def side(label: str, checkout: Path) -> Side:
    dirty = bool(git(checkout, "status", "--porcelain", "--untracked-files=no"))
    return Side(label, checkout, git(checkout, "rev-parse", "HEAD"), dirty)


def base_side(rev: str, base_dir: Path | None, repo: Path) -> Side:
    """The base checkout: an existing worktree at `rev` or a new detached one, with its venv."""
    sha = git(repo, "rev-parse", "--verify", f"{rev}^{{commit}}")
    checkout = base_dir or repo / ".bench" / f"base-{sha[:12]}"
    if not checkout.exists():
        checkout.parent.mkdir(parents=True, exist_ok=True)
        print(f"creating worktree {checkout} at {sha[:12]}", flush=True)
        git(repo, "worktree", "add", "--detach", str(checkout), sha)
    found = side("B", checkout.resolve())
    if found.commit != sha:
        raise RunError(f"{checkout} is at {found.commit[:12]}, not {rev} ({sha[:12]})")
    if found.dirty:
        raise RunError(f"{checkout} has uncommitted changes: it would not be the base commit")
    install_venv(found.checkout)
    return found


def install_venv(checkout: Path) -> None:
    """`make .venv/.installed-test` by hand (the base commit's Makefile may differ): a venv with
    the project and its test extras, marked installed the way the Makefile marks it."""
    venv = checkout / ".venv"
    marker = venv / ".installed-test"
    if marker.exists():
        return
    python3 = shutil.which("python3") or sys.executable
    print(f"installing {venv} (pip, a few minutes)", flush=True)
    steps = (
        [python3, "-m", "venv", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "-e", ".[test]"],
    )
    for step in steps:
        subprocess.run(step, cwd=checkout, check=True)  # noqa: S603 - fixed arguments
    marker.touch()
    (venv / ".installed").touch()


# --- running ---------------------------------------------------------------------------------


@dataclass
class Samples:
    a: list[float] = field(default_factory=list)
    b: list[float] = field(default_factory=list)

    def of(self, label: str) -> list[float]:
        return self.a if label == "A" else self.b


def run_once(
    benchmark: Benchmark, who: Side, extra: Sequence[str], log: Path
) -> tuple[dict[str, float], float]:
    """One run of one benchmark on one side: its figures and its wall time in seconds."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    command = [str(who.python), *benchmark.argv, *extra]
    start = time.perf_counter()
    done = subprocess.run(  # noqa: S603 - the side's own interpreter and script
        command,
        cwd=who.checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )
    seconds = time.perf_counter() - start
    log.write_text(f"$ {shlex.join(command)}\n# cwd {who.checkout}\n{done.stdout}{done.stderr}")
    if done.returncode != 0:
        raise RunError(f"{shlex.join(command)} exited {done.returncode}; output in {log}")
    for suspect in SUSPECT.findall(done.stdout):
        print(f"   WARNING {who.label}: {suspect.strip()}  ({log})", flush=True)
    return parse(benchmark, done.stdout), seconds


def order(round_index: int) -> tuple[str, str]:
    """A B, then B A, then A B, ...: each side goes first as often as the other."""
    return ("A", "B") if round_index % 2 == 0 else ("B", "A")


def run_all(
    benchmarks: Sequence[Benchmark],
    sides: Mapping[str, Side],
    rounds: int,
    extra: Mapping[str, Sequence[str]],
    logs: Path,
) -> tuple[dict[str, Samples], dict[str, Samples]]:
    """Every benchmark's rounds, alternating the sides: figures and wall times per run."""
    figures: dict[str, Samples] = {}
    walls: dict[str, Samples] = {}
    for benchmark in benchmarks:
        walls[benchmark.name] = Samples()
        for figure in benchmark.figures:
            figures[figure.name] = Samples()
        for index in range(rounds):
            for label in order(index):
                log = logs / f"{benchmark.name}-{index + 1}-{label}.txt"
                values, seconds = run_once(
                    benchmark, sides[label], extra.get(benchmark.name, ()), log
                )
                walls[benchmark.name].of(label).append(seconds)
                for name, value in values.items():
                    figures[name].of(label).append(value)
                shown = ", ".join(f"{k} {v:g}" for k, v in values.items())
                print(
                    f"   {benchmark.name} round {index + 1} {label}: {shown}  ({seconds:.0f} s)",
                    flush=True,
                )
    return figures, walls


# --- the report ------------------------------------------------------------------------------


def verdict(a: Sequence[float], b: Sequence[float], higher_is_better: bool) -> str:
    """`worse` or `better` only when every round of A is beyond every round of B: what one
    side's rounds span is the run-to-run spread, and A/A runs overlap it."""
    if len(a) < 2 or len(b) < 2:
        return "n/a (1 round)"
    if max(a) < min(b):
        return "worse" if higher_is_better else "better"
    if min(a) > max(b):
        return "better" if higher_is_better else "worse"
    return "within spread"


def spread(values: Sequence[float]) -> str:
    """min..max, and that range over the median in percent."""
    middle = statistics.median(values)
    width = (max(values) - min(values)) / middle * 100 if middle else 0.0
    return f"{min(values):g}..{max(values):g} ({width:.0f} %)"


def report(benchmarks: Sequence[Benchmark], figures: Mapping[str, Samples]) -> list[str]:
    rows = [("figure", "A median", "B median", "A/B", "A spread", "B spread", "verdict")]
    for benchmark in benchmarks:
        for figure in benchmark.figures:
            samples = figures[figure.name]
            a, b = statistics.median(samples.a), statistics.median(samples.b)
            better = "higher" if figure.higher_is_better else "lower"
            rows.append(
                (
                    f"{figure.name} ({better} is better)",
                    f"{a:g}",
                    f"{b:g}",
                    f"{a / b:.3f}" if b else "-",
                    spread(samples.a),
                    spread(samples.b),
                    verdict(samples.a, samples.b, figure.higher_is_better),
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the commit to compare against (B)")
    parser.add_argument(
        "--base-dir",
        type=Path,
        help="B's checkout: an existing worktree at --base, or where to create one "
        "(default .bench/base-<sha> in this checkout)",
    )
    parser.add_argument("--a-dir", type=Path, default=ROOT, help="A's checkout (default: this one)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per side and benchmark")
    names = [b.name for b in BENCHMARKS]
    parser.add_argument(
        "--only", default=",".join(names), help=f"comma-separated subset of {','.join(names)}"
    )
    parser.add_argument(
        "--args",
        action="append",
        default=[],
        metavar="NAME=ARGS",
        help="extra arguments for one benchmark on both sides, e.g. 'cold=--seconds 5'",
    )
    parser.add_argument("--json", type=Path, help="also write every round's figures here")
    args = parser.parse_args(argv)
    chosen = args.only.split(",")
    unknown = sorted(set(chosen) - set(names)) + sorted(
        n for n in (a.partition("=")[0] for a in args.args) if n not in names
    )
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(names)}")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    args.benchmarks = [b for b in BENCHMARKS if b.name in chosen]
    args.extra = {n: shlex.split(a) for n, _, a in (x.partition("=") for x in args.args)}
    return args


def main() -> None:
    args = parse_args()
    a = side("A", args.a_dir.resolve())
    if not a.python.exists():
        sys.exit(f"{a.python} is missing: run `make .venv/.installed-test` in {a.checkout}")
    try:
        b = base_side(args.base, args.base_dir, a.checkout)
    except (RunError, subprocess.CalledProcessError) as error:
        sys.exit(str(error))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    logs = a.checkout / ".bench" / "runs" / stamp
    logs.mkdir(parents=True)
    extra = {name: list(argv) for name, argv in args.extra.items()}
    print(a.describe())
    print(b.describe())
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{args.rounds} round(s) per side; load average at start {load}; logs in {logs}")
    try:
        figures, walls = run_all(args.benchmarks, {"A": a, "B": b}, args.rounds, extra, logs)
    except (RunError, subprocess.TimeoutExpired) as error:
        sys.exit(str(error))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\nload average at end {load}")
    for name, samples in walls.items():
        every = samples.a + samples.b
        print(f"   {name}: one run takes {statistics.median(every):.0f} s (median of {len(every)})")
    print()
    for line in report(args.benchmarks, figures):
        print(line)
    if args.json:
        data = {
            "a": {"checkout": str(a.checkout), "commit": a.commit, "dirty": a.dirty},
            "b": {"checkout": str(b.checkout), "commit": b.commit},
            "rounds": args.rounds,
            "extra": extra,
            "figures": {n: {"A": s.a, "B": s.b} for n, s in figures.items()},
            "seconds": {n: {"A": s.a, "B": s.b} for n, s in walls.items()},
        }
        args.json.write_text(json.dumps(data, indent=2) + "\n")


if __name__ == "__main__":
    main()
