"""Session fixtures: the bench with a fresh, bare target, and the deploy applied to it."""

import time

import pytest

from tests import bench


@pytest.fixture(scope="session")
def ubuntu():
    """The Ubuntu-like target, recreated bare for this test run."""
    bench.up(fresh=True)
    return bench.TARGETS["ubuntu"]


@pytest.fixture(scope="session")
def ca_file(ubuntu):
    return str(bench.STATE / "pebble-root.pem")


@pytest.fixture(scope="session")
def deployed(ubuntu):
    """deploy.py applied twice to the bare target: the fresh apply and the re-apply."""
    t0 = time.monotonic()
    first = bench.apply()
    t1 = time.monotonic()
    second = bench.apply()
    first["seconds"], second["seconds"] = t1 - t0, time.monotonic() - t1
    return {"first": first, "second": second}
