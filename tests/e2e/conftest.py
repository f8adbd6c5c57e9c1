"""Fixtures shared by the end-to-end tests: a `patientgraph demo` process on a free port."""

from tests.e2e.test_demo_command import api_port, demo_process

__all__ = ["api_port", "demo_process"]
