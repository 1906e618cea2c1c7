"""Shared test configuration: hypothesis profiles and fixtures for the bundled traces.

Hypothesis profiles, chosen with the ``HYPOTHESIS_PROFILE`` environment variable:

- ``ci``: quick and reproducible (fixed seed derivation, no example database, short stateful runs);
- ``dev`` (the default): more examples, random seeds, failures remembered in ``.hypothesis/``;
- ``long``: a soak run (``make fuzz``): 10,000 examples per property, stateful runs of up to 50 steps each.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

import fluidsched

settings.register_profile(
    "ci",
    max_examples=50,
    stateful_step_count=50,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "dev",
    max_examples=100,
    stateful_step_count=100,
    deadline=None,
    print_blob=True,
)
settings.register_profile(
    "long",
    max_examples=10_000,
    stateful_step_count=50,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(scope="session")
def azure_trace() -> Path:
    """The bundled Azure 2023 conversation sample (timed trace, 5,000 requests)."""
    path = fluidsched.bundled_trace("azure")
    assert path.is_file(), path
    return path


@pytest.fixture(scope="session")
def lmsys_trace() -> Path:
    """The bundled LMSYS-Chat-1M sample (length-only trace of word counts, 20,000 rows)."""
    path = fluidsched.bundled_trace("lmsys")
    assert path.is_file(), path
    return path


@pytest.fixture(scope="session")
def azure_1k(azure_trace: Path) -> fluidsched.Workload:
    """The first 1,000 requests of the Azure sample, at their recorded arrival times."""
    workload = fluidsched.load_workload(azure_trace, num_requests=1000)
    assert len(workload) == 1000
    return workload
