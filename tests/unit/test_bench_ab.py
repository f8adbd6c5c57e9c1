"""benchmarks/ab.py: it reads each figure from the right line of what the benchmark scripts print,
refuses output it cannot read, and calls a difference only when the two sides' rounds do not
overlap."""

from __future__ import annotations

import pytest

from benchmarks.ab import BENCHMARKS, Benchmark, RunError, order, parse, verdict

# Excerpts of real output (dashboard.py --only overhead, cache_hit.py, cold.py at b2f522e),
# keeping the neighbouring lines a loose pattern could take instead.
DASHBOARD = """\
   PatientGraph, in-memory sources + index           29.74    65.94    18.84            12.3
   portal query (`me`, patient token) = 105 resolved fields, identical `data`

Ratios measured in this run
   PatientGraph ÷ graphql-core per field    0.97   (with SQLite index 1.19; HTTP end to end 8.82; graphql-core parsing once, as PatientGraph does)
   PatientGraph ÷ graphql-core per field    0.63   (with SQLite index 0.77; graphql-core parsing and validating every query)
   portal: PatientGraph ÷ graphql-core      2.28   (0.38 against parsing every query)
"""  # noqa: E501 - printed lines, verbatim
CACHE_HIT = """\
1. Cache-hit throughput (median of rounds)
   PatientGraph hit        999 requests/s
   bare Starlette         1783 requests/s
   ratio                  0.56  (goal >= 0.5)
"""
COLD = """\
   ratio 20 / 5 patients: 1.00

2b. 20 patients, 4 connections, 10 s
                          requests/s        p50        p99
   cold                          5.8    711.8 ms  1048.3 ms
   response-cache hit         1132.1      3.0 ms    15.9 ms
   hit / cold throughput: 196x
"""


def benchmark(name: str) -> Benchmark:
    return next(b for b in BENCHMARKS if b.name == name)


def test_dashboard_figures_come_from_the_parsed_once_and_portal_lines() -> None:
    assert parse(benchmark("dashboard"), DASHBOARD) == {
        "dashboard overhead ratio": 0.97,
        "dashboard overhead ratio, SQLite index": 1.19,
        "portal query ratio": 2.28,
    }


def test_dashboard_line_without_the_http_row_still_parses() -> None:
    text = DASHBOARD.replace("; HTTP end to end 8.82", "")
    assert parse(benchmark("dashboard"), text)["dashboard overhead ratio"] == 0.97


def test_cache_hit_ratio_and_cold_throughput() -> None:
    assert parse(benchmark("cache_hit"), CACHE_HIT) == {"cache-hit throughput ratio": 0.56}
    assert parse(benchmark("cold"), COLD) == {"cold dashboard req/s": 5.8}


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("dashboard", DASHBOARD.replace("portal: ", "portal ")),
        ("dashboard", DASHBOARD + DASHBOARD),  # two runs in one output: which one?
        ("cache_hit", CACHE_HIT.replace("ratio   ", "quotient")),
        ("cold", COLD.replace("   cold   ", "   warm   ")),
    ],
)
def test_output_it_cannot_read_fails_the_run(name: str, text: str) -> None:
    with pytest.raises(RunError, match="expected one line"):
        parse(benchmark(name), text)


def test_verdict_needs_the_rounds_to_be_disjoint() -> None:
    assert verdict([1.0, 1.2, 1.1], [1.15, 1.3, 1.25], higher_is_better=False) == "within spread"
    assert verdict([1.0, 1.1], [1.2, 1.3], higher_is_better=False) == "better"
    assert verdict([1.0, 1.1], [1.2, 1.3], higher_is_better=True) == "worse"
    assert verdict([1.4, 1.5], [1.2, 1.3], higher_is_better=False) == "worse"
    assert verdict([1.4, 1.5], [1.2, 1.3], higher_is_better=True) == "better"
    assert verdict([1.0], [2.0], higher_is_better=True) == "n/a (1 round)"


def test_rounds_alternate_which_side_goes_first() -> None:
    assert [order(i) for i in range(4)] == [("A", "B"), ("B", "A"), ("A", "B"), ("B", "A")]
