"""Benchmarks of PatientGraph (see README.md); run as scripts, e.g. `benchmarks/dashboard.py`."""
