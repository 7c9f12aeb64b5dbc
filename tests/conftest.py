"""Session fixtures: the bench with a fresh, bare target, and the deploy applied to it."""

import time

import pytest

import sandbox as bench
from mcpedge import settings

UNSET = "MCP_EDGE_TEST_NOT_SET"


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


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A clean HOME with the default SSH key, the sudo env var set, cwd = tmp_path."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("not really a key\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("MCP_EDGE_SUDO_PASSWORD", "s3cret-pw")
    monkeypatch.delenv(UNSET, raising=False)
    monkeypatch.delenv(settings.ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(settings.loader, "_current", None)  # the current settings of this process
    return tmp_path
