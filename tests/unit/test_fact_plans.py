"""Fact plans (mcpedge/pyinfra_compat/fact_cache.py) are kept per host *and* where it is reached."""

from types import SimpleNamespace

from mcpedge.pyinfra_compat.fact_cache import _plan_path


def _host(name, **data):
    return SimpleNamespace(name=name, data=SimpleNamespace(get=data.get))


def test_two_inventories_naming_a_host_alike_keep_their_own_plans():
    a = _plan_path(_host("gw1", ssh_hostname="127.0.0.1", ssh_port=2222))
    b = _plan_path(_host("gw1", ssh_hostname="127.0.0.1", ssh_port=2242))
    c = _plan_path(_host("gw1", ssh_hostname="203.0.113.10"))
    assert len({a, b, c}) == 3
    assert a == _plan_path(_host("gw1", ssh_hostname="127.0.0.1", ssh_port=2222))
    assert all(p.suffix == ".json" and "/" not in p.name for p in (a, b, c))
