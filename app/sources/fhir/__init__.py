"""FHIR R4 connector: REST search over httpx (`client.py`, `search.py`), JSON -> domain
records (`mapping.py`), and the adapter implementing the ports (`source.py`)."""
