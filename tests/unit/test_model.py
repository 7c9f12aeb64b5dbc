"""The per-host model: what the tasks and templates of each target get from the settings.

Built from the example settings (every default), then every template the
tasks render is rendered here with pyinfra's own Jinja rules (StrictUndefined):
a template that names a value the model does not have fails here, not on a host.
"""

from pathlib import Path

import pytest
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from mcpedge.model.control import control_host
from mcpedge.model.synology import nas_host
from mcpedge.model.ubuntu import ubuntu_host
from mcpedge.settings import load

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "settings.example.yaml"
UBUNTU_TEMPLATES = [
    "templates/etc/nginx/nginx.conf.j2", "templates/etc/nginx/conf.d/mcp-edge-http.conf.j2",
    "templates/etc/nginx/sites-available/mcp-edge-acme.conf.j2", "templates/etc/nginx/sites-available/mcp-edge-site.conf.j2",
    "templates/etc/mcp-edge/nginx-commit.conf.j2", "templates/etc/mcp-edge/gateway.env.j2",
    "templates/etc/systemd/system/mcp-edge-gateway.service.j2", "templates/etc/systemd/system/mcp-edge-gateway.socket.j2",
    "templates/etc/systemd/system/certbot.service.d/mcp-edge.conf.j2",
    "templates/etc/letsencrypt/renewal-hooks/deploy/mcp-edge-reload-nginx.j2",
]
SNIPPETS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "templates/etc/nginx/snippets/mcp-edge").glob("*.j2"))
NAS_TEMPLATES = ["templates/etc/nginx/conf.d/mcp-edge-http.conf.j2", "templates/etc/nginx/conf.d/http.mcp-edge-site.conf.j2",
                 "templates/etc/mcp-edge/nginx-commit.conf.j2", "templates/volume1/mcp-edge/guard.conf.j2"]
CONTROL_TEMPLATES = ["templates/etc/systemd/system/mcp-edge-drift.service.j2",
                     "templates/etc/systemd/system/mcp-edge-drift.timer.j2"]


def render(template: str, **context) -> str:
    env = Environment(loader=FileSystemLoader(str(ROOT)), undefined=StrictUndefined, keep_trailing_newline=True)
    return env.get_template(template).render(**context)


@pytest.fixture
def settings(env):
    return load(str(EXAMPLE))


def test_ubuntu_model(settings):
    model = ubuntu_host(settings.group("ubuntu"), {"domain": "mcp.example.com"})
    assert model.domains == ["mcp.example.com"] and model.cert_name == "mcp.example.com"
    assert model.names_hash_bucket == 64
    assert ubuntu_host(settings.group("ubuntu"), {"domain": "a" * 60 + ".example.com"}).names_hash_bucket == 128
    site = model.site
    assert (site.upstream, site.upstream_servers) == ("mcp_edge_default", ["unix:/run/mcp-edge/gateway-default.sock"])
    assert (site.stream_timeout, site.client_max_body_size, site.hsts_max_age) == (86400, "4m", 31536000)
    assert site.access.tokens is False and site.access.allow == [] and site.access.origins is None
    gw = model.gw
    assert (gw.memory_max, gw.tasks_max, gw.user, gw.socket_group) == (1 << 30, 512, "mcp-gateway", "www-data")
    assert '"max_per_client": 4' in gw.config_text and '"env_file": "/etc/mcp-edge/servers/default.env"' in gw.config_text
    assert model.commit.command("commit") == ("/usr/local/lib/mcp-edge/mcp-edge-nginx-commit "
                                              "/etc/mcp-edge/nginx-commit.conf commit")


def test_secret_environment_is_masked_by_name(env, monkeypatch):
    monkeypatch.setenv("API_TOKEN_VALUE", 's3cret "x"')
    s = load(str(EXAMPLE))
    edge = s.group("ubuntu")
    from mcpedge.settings import Secret
    edge["gateway"]["environment"] = {"API_TOKEN": Secret('s3cret "x"'), "MODE": "fast"}
    gw = ubuntu_host(edge, {"domain": "mcp.example.com"}).gw
    assert gw.env_lines == ['API_TOKEN="s3cret \\"x\\""', 'MODE="fast"']
    assert gw.secret_names == ["API_TOKEN"] and gw.secrets == ['s3cret "x"']
    assert "s3cret" not in gw.config_text


def test_nas_model(settings):
    model = nas_host(settings.group("synology"), {"domain": "loop.example.com"})
    assert model.site.upstream_servers == ["127.0.0.1:8085"] and model.api_upstream == "127.0.0.1:8082"
    assert model.commit.command("commit") == ("/volume1/mcp-edge/bin/mcp-edge-nginx-commit "
                                              "/volume1/mcp-edge/nginx-commit.conf commit")
    assert model.commit.reload_commands[0] == "/usr/syno/bin/synosystemctl reload nginx" and model.commit.lock is None
    assert model.guard_interval_min == 5
    assert "/etc/nginx/snippets/mcp-edge/access-tokens.conf" in model.managed_live_paths
    assert "/etc/nginx/sites-enabled/server.ReverseProxy.conf" not in model.managed_live_paths  # no patch entries
    spec = model.container_spec(settings.group("synology")["loop_api"], "/usr/local/bin/docker")
    assert spec["ports"] == ["127.0.0.1:8082:8081"] and spec["env_file"] == "/volume1/mcp-edge/env/loop-api.env"
    assert spec["replace_config"] == "/volume1/mcp-edge/container.conf"


@pytest.mark.parametrize("template", UBUNTU_TEMPLATES + SNIPPETS)
def test_every_ubuntu_template_renders_from_the_model(settings, template):
    model = ubuntu_host(settings.group("ubuntu"), {"domain": "mcp.example.com"})
    text = render(template, nginx_http2_directive=True, **model.template())
    assert "None" not in text.replace("None;", "")  # no Python None leaked into a config


@pytest.mark.parametrize("template", NAS_TEMPLATES + SNIPPETS)
def test_every_nas_template_renders_from_the_model(settings, template):
    model = nas_host(settings.group("synology"), {"domain": "loop.example.com"})
    text = render(template, nginx_http2_directive=True, **model.template())
    assert "None" not in text


@pytest.mark.parametrize("template", CONTROL_TEMPLATES)
def test_control_templates_render(settings, template):
    assert "mcp-edge-drift" in render(template, ctl=control_host(settings.section("control")))
