"""Unit tests of the bundle's on-host programs under files/: each runs for real.

A temporary directory tree stands in for `/` (the configs point into it); stub
nginx, systemctl, synosystemctl, docker, logger and id executables record their
calls and fail on demand. PATH holds the stubs and a directory of links to the
only tools the programs may use (what a DSM NAS has, dsm.md §11): a program
calling anything else fails here. The "dsm" tool set also lacks cmp and flock,
so their fallbacks run. The configs are rendered from the real templates.

Run: python -m pytest -q tests/unit/test_scripts.py (shellcheck and dash tests
skip when those are not installed). Every wait has a deadline.
"""

from __future__ import annotations

import ast
import fcntl
import functools
import glob
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from jinja2 import Environment, StrictUndefined

REPO = Path(__file__).resolve().parents[2]
COMMIT = REPO / "files/usr/local/lib/mcp-edge/mcp-edge-nginx-commit"
GUARD = REPO / "files/volume1/mcp-edge/bin/mcp-edge-guard"
CONTAINER = REPO / "files/volume1/mcp-edge/bin/mcp-edge-container"
PATCHER = REPO / "files/volume1/mcp-edge/bin/mcp-edge-dsm-patch"
SHELL_PROGRAMS = (COMMIT, GUARD, CONTAINER)
UBUNTU_COMMIT_CONF = REPO / "templates/etc/mcp-edge/nginx-commit.conf.j2"
NAS_COMMIT_CONF = UBUNTU_COMMIT_CONF  # one template, rendered per target
GUARD_CONF = REPO / "templates/volume1/mcp-edge/guard.conf.j2"
CONTAINER_CONF = REPO / "templates/volume1/mcp-edge/container.conf.j2"

# What the programs may call besides shell builtins and the stubs.
BASE_TOOLS = ("cat", "cp", "mv", "rm", "mkdir", "dirname", "sed", "sort", "find", "grep", "chmod",
              "date", "sleep", "stat", "tr", "sha256sum", "md5sum", "cksum")
OPTIONAL_TOOLS = ("cmp", "flock")  # may be missing on DSM: the programs fall back
NGINX_OK = "nginx: the configuration file /etc/nginx/nginx.conf syntax is ok"
NGINX_EMERG = 'nginx: [emerg] unknown directive "oops" in /etc/nginx/conf.d/http.mcp-edge-site.conf:3'
T_FAILED = "mcp-edge: nginx -t failed: the previous files are back, nginx was not reloaded"
STATUS_FORMAT = "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}"
MARK = "# mcp-edge: streaming"
RUN_TIMEOUT = 20  # seconds: the deadline of any one program run

STUBS = {
    "nginx": """#!/bin/sh
printf '%s\\n' "nginx $*" >> "$STUB_DIR/calls"
case "$1" in
    -t) if [ -e "$STUB_DIR/fail-nginx-t" ]; then
            echo '@EMERG@' >&2
            echo 'nginx: configuration file /etc/nginx/nginx.conf test failed' >&2
            exit 1
        fi
        echo '@OK@' >&2 ;;
    -s) [ ! -e "$STUB_DIR/fail-nginx-s" ] || { echo 'nginx: [error] invalid PID number' >&2; exit 1; } ;;
esac
exit 0
""".replace("@EMERG@", NGINX_EMERG).replace("@OK@", NGINX_OK),
    "systemctl": """#!/bin/sh
printf '%s\\n' "systemctl $*" >> "$STUB_DIR/calls"
[ ! -e "$STUB_DIR/fail-systemctl-$1" ] || { echo "Job for $2.service failed." >&2; exit 1; }
exit 0
""",
    "synosystemctl": """#!/bin/sh
printf '%s\\n' "synosystemctl $*" >> "$STUB_DIR/calls"
[ ! -e "$STUB_DIR/fail-synosystemctl-$1" ] || { echo "synosystemctl: $1 $2 failed" >&2; exit 1; }
exit 0
""",
    "logger": """#!/bin/sh
printf '%s\\n' "logger $*" >> "$STUB_DIR/calls"
exit 0
""",
    # Root or not, as the test says (the guard is root only).
    "id": """#!/bin/sh
if [ -e "$STUB_DIR/not-root" ]; then echo 1000; else echo 0; fi
""",
}

# A docker CLI with its containers in a JSON file: status, health, run arguments, logs.
DOCKER_STUB = '''#!{python}
import json, os, sys
state_dir = os.environ["STUB_DIR"]
path = os.path.join(state_dir, "docker.json")
with open(os.path.join(state_dir, "calls"), "a") as f:
    f.write("docker " + " ".join(sys.argv[1:]) + "\\n")
state = json.load(open(path)) if os.path.exists(path) else {{}}
a = sys.argv[1:]

def save():
    json.dump(state, open(path, "w"))

def need(name):
    if name not in state:
        print("Error: No such container: " + name, file=sys.stderr)
        sys.exit(1)
    return state[name]

if a[0] == "inspect":
    if a[1:3] != ["--format", {status_format!r}]:
        print("template parsing error: " + repr(a[1:3]), file=sys.stderr)
        sys.exit(1)
    c = need(a[3])
    print(c["status"] + " " + (c["health"] if c["status"] == "running" and c["health"] else "none"))
elif a[:2] == ["container", "inspect"]:
    print(json.dumps([need(a[2])]))
elif a[0] == "start":
    need(a[1])["status"] = "running"; save(); print(a[1])
elif a[0] == "stop":
    need(a[1])["status"] = "exited"; save(); print(a[1])
elif a[:2] == ["rm", "-f"]:
    need(a[2]); del state[a[2]]; save(); print(a[2])
elif a[0] == "rename":
    if a[2] in state:
        print("Error: name " + a[2] + " is in use", file=sys.stderr); sys.exit(1)
    state[a[2]] = state.pop(a[1]); save()
elif a[:3] == ["run", "-d", "--name"]:
    name = a[3]
    if name in state:
        print("docker: Error response from daemon: Conflict.", file=sys.stderr); sys.exit(125)
    health_file = os.path.join(state_dir, "new-health")
    health = open(health_file).read().strip() if os.path.exists(health_file) else "healthy"
    state[name] = {{"status": "running", "health": health, "args": a[4:],
                   "logs": ["log: " + name + " starting", "log: " + name + " is " + health]}}
    save(); print("0123456789ab")
elif a[:2] == ["logs", "--tail"]:
    print("\\n".join(need(a[3])["logs"]))
else:
    print("docker stub: unsupported " + " ".join(a), file=sys.stderr); sys.exit(2)
'''


def render(template: Path, dest: Path, **values) -> Path:
    """Render a config template as pyinfra does (StrictUndefined, trailing newline kept)."""
    env = Environment(undefined=StrictUndefined, keep_trailing_newline=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(env.from_string(template.read_text()).render(**values))
    return dest


@functools.lru_cache(maxsize=None)
def python38() -> str | None:
    """A Python 3.8 (DSM's, dsm.md §10) if this machine has one."""
    candidates = [os.environ.get("MCP_EDGE_PY38"), shutil.which("python3.8"), "/usr/bin/python3.8",
                  *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3.8"))),
                  *sorted(glob.glob("/root/.pyenv/versions/3.8*/bin/python3.8"))]
    for c in candidates:
        if not c or not os.path.exists(c):
            continue
        try:
            out = subprocess.run([c, "-c", "import sys; print(sys.version_info[:2] == (3, 8))"],
                                 capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.stdout.strip() == "True":
            return c
    return None


def write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def tree_state(paths) -> dict:
    """Each path: None (absent), ("link", target) or ("file", content, mode)."""
    out = {}
    for p in map(Path, paths):
        if p.is_symlink():
            out[str(p)] = ("link", os.readlink(p))
        elif p.exists():
            out[str(p)] = ("file", p.read_bytes(), p.stat().st_mode & 0o7777)
        else:
            out[str(p)] = None
    return out


class Sandbox:
    """A stand-in for `/`, stub executables, a restricted PATH and a runner."""

    def __init__(self, tmp: Path, tools: str) -> None:
        self.tmp = tmp
        self.root = tmp / "root"
        self.root.mkdir()
        self.stub_dir = tmp / "stub-state"
        self.stub_dir.mkdir()
        stubs = tmp / "stubs"
        stubs.mkdir()
        for name, text in STUBS.items():
            write(stubs / name, text, 0o755)
        write(stubs / "docker", DOCKER_STUB.format(python=sys.executable, status_format=STATUS_FORMAT), 0o755)
        bin_dir = tmp / "tools"
        bin_dir.mkdir()
        wanted = BASE_TOOLS + (OPTIONAL_TOOLS if tools == "full" else ())
        for name in wanted:
            real = shutil.which(name)
            if real is None:
                if name in OPTIONAL_TOOLS:
                    continue
                pytest.skip(f"{name} is not installed here")
            (bin_dir / name).symlink_to(real)
        (bin_dir / "python3").symlink_to(python38() or sys.executable)
        self.path = f"{stubs}:{bin_dir}"
        self.env = {"PATH": self.path, "STUB_DIR": str(self.stub_dir), "LC_ALL": "C"}

    def run(self, program: Path, *args, shell: str | None = None, timeout: float = RUN_TIMEOUT):
        argv = ([shell] if shell else []) + [str(program), *map(str, args)]
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=timeout, cwd=self.tmp)

    def start(self, program: Path, *args) -> subprocess.Popen:
        return subprocess.Popen([str(program), *map(str, args)], env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=self.tmp)

    def flag(self, name: str, present: bool = True) -> None:
        f = self.stub_dir / name
        if present:
            f.touch()
        elif f.exists():
            f.unlink()

    def calls(self) -> list[str]:
        f = self.stub_dir / "calls"
        return f.read_text().splitlines() if f.exists() else []

    def clear_calls(self) -> None:
        (self.stub_dir / "calls").write_text("")


@pytest.fixture(params=["full", "dsm"])
def sandbox(request, tmp_path: Path) -> Sandbox:
    """Both tool sets: a Debian host's and a NAS's (no cmp, no flock)."""
    return Sandbox(tmp_path, request.param)


@pytest.fixture
def full_sandbox(tmp_path: Path) -> Sandbox:
    return Sandbox(tmp_path, "full")


def finish(proc: subprocess.Popen, timeout: float = RUN_TIMEOUT) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=5)
        raise AssertionError(f"still running after {timeout}s: {out} {err}")
    return proc.returncode, out, err


class HeldLock:
    """Hold a program's lock as another run would: flock on FILE, or the FILE.d directory."""

    def __init__(self, lock: Path, mkdir_style: bool, pid: int | None = None) -> None:
        self.lock, self.mkdir_style = lock, mkdir_style
        lock.parent.mkdir(parents=True, exist_ok=True)
        if mkdir_style:
            (lock.parent / f"{lock.name}.d").mkdir()
            (lock.parent / f"{lock.name}.d/pid").write_text(f"{pid or os.getpid()}\n")
        else:
            self.fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            fcntl.flock(self.fd, fcntl.LOCK_EX)

    def release(self) -> None:
        if self.mkdir_style:
            shutil.rmtree(self.lock.parent / f"{self.lock.name}.d", ignore_errors=True)
        else:
            os.close(self.fd)


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait(timeout=5)
    return p.pid


# --- mcp-edge-nginx-commit on an Ubuntu-like tree ------------------------------------

class Ubuntu:
    """/etc/nginx with the distribution's files, a manifest, the commit's config."""

    def __init__(self, sb: Sandbox, reload_commands=("systemctl reload nginx", "systemctl start nginx"),
                 lock_wait: int = 1) -> None:
        self.sb = sb
        r = sb.root
        self.nginx_conf = write(r / "etc/nginx/nginx.conf", "# distribution nginx.conf\n")
        self.http_conf = r / "etc/nginx/conf.d/mcp-edge-http.conf"
        self.tokens = r / "etc/nginx/snippets/mcp-edge/access-tokens.conf"
        self.default_site = write(r / "etc/nginx/sites-available/default", "# distribution default site\n")
        self.default_link = r / "etc/nginx/sites-enabled/default"
        self.default_link.parent.mkdir(parents=True)
        self.default_link.symlink_to(self.default_site)
        self.site = r / "etc/nginx/sites-available/mcp-edge-site.conf"
        self.site_link = r / "etc/nginx/sites-enabled/mcp-edge-site.conf"
        self.paths = [self.nginx_conf, self.http_conf, self.tokens, self.site, self.site_link, self.default_link]
        self.manifest = write(r / "etc/mcp-edge/nginx-managed.list", "".join(f"{p}\n" for p in self.paths))
        self.state_dir = r / "var/lib/mcp-edge/nginx"
        self.good = self.state_dir / "last-good"
        self.lock = r / "run/mcp-edge-nginx-commit.lock"
        self.config = render(UBUNTU_COMMIT_CONF, r / "etc/mcp-edge/nginx-commit.conf", commit={
            "manifest": str(self.manifest), "state_dir": str(self.state_dir), "nginx": "nginx",
            "reload_commands": list(reload_commands), "lock": str(self.lock), "lock_wait": lock_wait,
            "path": sb.path})

    def commit(self, action: str = "commit", **kw):
        return self.sb.run(COMMIT, self.config, action, **kw)

    def live(self) -> dict:
        return tree_state(self.paths)

    def snapshot(self) -> dict:
        return {k: v for k, v in tree_state(f"{self.good}{p}" for p in self.paths).items()}

    def as_snapshot(self, live: dict) -> dict:
        return {f"{self.good}{k}": v for k, v in live.items()}

    def deploy(self) -> None:
        """What the deploy writes before it commits: the bundle's files, the default site disabled."""
        write(self.nginx_conf, "# mcp-edge nginx.conf\nworker_processes 2;\n")
        write(self.http_conf, "log_format mcp_edge_json '{}';\n")
        write(self.tokens, "map $http_authorization $mcp_edge_token_ok { default 0; }\n", 0o600)
        write(self.site, "server { listen 443 ssl; }\n")
        self.site_link.symlink_to(self.site)
        self.default_link.unlink()


def test_commit_ok_reloads_and_keeps_last_good(sandbox: Sandbox) -> None:
    u = Ubuntu(sandbox)
    assert u.commit("seed").returncode == 0
    u.deploy()
    sandbox.clear_calls()
    res = u.commit()
    assert res.returncode == 0, res.stderr
    assert sandbox.calls() == ["nginx -t", "systemctl reload nginx"]
    assert u.snapshot() == u.as_snapshot(u.live())
    assert u.snapshot()[f"{u.good}{u.site_link}"] == ("link", str(u.site)), "a symlink stays a symlink"
    assert not (u.lock.parent / "mcp-edge-nginx-commit.lock.d").exists(), "the mkdir lock is released"


def test_commit_failing_nginx_t_restores_exactly(sandbox: Sandbox) -> None:
    u = Ubuntu(sandbox)
    write(u.tokens, "map $http_authorization $mcp_edge_token_ok { default 0; }\n", 0o600)
    assert u.commit("seed").returncode == 0
    before, good_before = u.live(), u.snapshot()
    # A broken change: a file edited (and its mode), one removed, one added.
    write(u.nginx_conf, "oops;\n")
    write(u.tokens, "broken\n", 0o644)
    u.default_link.unlink()
    write(u.http_conf, "oops;\n")
    sandbox.flag("fail-nginx-t")
    sandbox.clear_calls()
    res = u.commit()
    assert res.returncode == 1
    assert NGINX_EMERG in res.stderr and T_FAILED in res.stderr
    assert sandbox.calls() == ["nginx -t"], "nginx is never reloaded"
    assert u.live() == before, "the removed file is back, the new one gone, contents and modes as before"
    assert u.live()[str(u.tokens)][2] == 0o600
    assert u.live()[str(u.default_link)] == ("link", str(u.default_site))
    assert u.snapshot() == good_before


def test_commit_all_reloads_failing(sandbox: Sandbox) -> None:
    u = Ubuntu(sandbox)
    assert u.commit("seed").returncode == 0
    good_before = u.snapshot()
    u.deploy()
    sandbox.flag("fail-systemctl-reload")
    sandbox.flag("fail-systemctl-start")
    sandbox.clear_calls()
    res = u.commit()
    assert res.returncode == 1
    assert "mcp-edge: nginx reload failed" in res.stderr
    assert sandbox.calls() == ["nginx -t", "systemctl reload nginx", "systemctl start nginx"], "each tried, in order"
    assert u.snapshot() == good_before, "not kept as last-good"


def test_commit_next_reload_command_after_a_failing_one(full_sandbox: Sandbox) -> None:
    u = Ubuntu(full_sandbox)
    u.deploy()
    full_sandbox.flag("fail-systemctl-reload")
    res = u.commit()
    assert res.returncode == 0, res.stderr
    assert full_sandbox.calls() == ["nginx -t", "systemctl reload nginx", "systemctl start nginx"]
    assert u.snapshot() == u.as_snapshot(u.live())


def test_commit_reload_words_are_not_globbed(full_sandbox: Sandbox) -> None:
    (full_sandbox.tmp / "nginx-glob-bait").touch()  # a glob would expand to this (cwd)
    u = Ubuntu(full_sandbox, reload_commands=["systemctl  reload nginx*"])
    assert u.commit().returncode == 0
    assert full_sandbox.calls() == ["nginx -t", "systemctl reload nginx*"]


def test_seed_keeps_last_good_only_once(sandbox: Sandbox) -> None:
    u = Ubuntu(sandbox)
    distribution = u.live()
    assert u.commit("seed").returncode == 0
    u.deploy()
    res = u.commit("seed")
    assert res.returncode == 0 and sandbox.calls() == [], "seed never runs nginx"
    assert u.snapshot() == u.as_snapshot(distribution)


def test_restore_action_and_no_snapshot_guard(full_sandbox: Sandbox) -> None:
    u = Ubuntu(full_sandbox)
    res = u.commit("restore")
    assert res.returncode == 1 and "no last-good snapshot" in res.stderr
    assert u.nginx_conf.exists(), "without a snapshot nothing is removed"
    assert u.commit("seed").returncode == 0
    before = u.live()
    u.deploy()
    assert u.commit("restore").returncode == 0
    assert u.live() == before and full_sandbox.calls() == []


def test_commit_config_errors(full_sandbox: Sandbox, tmp_path: Path) -> None:
    u = Ubuntu(full_sandbox)
    res = full_sandbox.run(COMMIT, tmp_path / "missing.conf", "commit")
    assert res.returncode == 2 and "cannot read config" in res.stderr
    bad = write(tmp_path / "bad.conf", u.config.read_text() + "relaod=systemctl reload nginx\n")
    res = full_sandbox.run(COMMIT, bad, "commit")
    assert res.returncode == 2 and "unknown key relaod" in res.stderr
    no_reload = write(tmp_path / "no-reload.conf",
                      "".join(ln + "\n" for ln in u.config.read_text().splitlines() if not ln.startswith("reload=")))
    res = full_sandbox.run(COMMIT, no_reload, "commit")
    assert res.returncode == 2 and "reload=" in res.stderr
    res = full_sandbox.run(COMMIT, u.config, "bogus")
    assert res.returncode == 2 and "usage" in res.stderr
    assert full_sandbox.calls() == []


def test_commit_lock_held_gives_up_bounded(sandbox: Sandbox) -> None:
    u = Ubuntu(sandbox, lock_wait=1)
    held = HeldLock(u.lock, mkdir_style=shutil.which("flock", path=sandbox.path) is None)
    try:
        t0 = time.monotonic()
        res = u.commit(timeout=10)
        assert res.returncode == 1 and "is held by another run; gave up after 1s" in res.stderr
        assert time.monotonic() - t0 < 5
        assert sandbox.calls() == []
    finally:
        held.release()
    assert u.commit().returncode == 0


def test_commit_stale_mkdir_lock_is_taken_over(tmp_path: Path) -> None:
    sb = Sandbox(tmp_path, "dsm")
    u = Ubuntu(sb)
    HeldLock(u.lock, mkdir_style=True, pid=dead_pid())
    res = u.commit()
    assert res.returncode == 0, res.stderr
    assert "removing the stale lock" in res.stderr


# --- mcp-edge-guard on a NAS-like tree -------------------------------------------------

DSM_RP_CONF = """server {
    listen 443 ssl;
    listen [::]:443 ssl;
    server_name legacy.test ;
    if ( $host !~ "(^legacy.test$)" ) { return 404; }
    include /usr/syno/etc/www/certificate/ReverseProxy_7d1c/cert.conf*;
    location / {
        proxy_connect_timeout 60;
        proxy_read_timeout 60;
        proxy_send_timeout 60;
        proxy_intercept_errors off;
        proxy_http_version 1.1;
        proxy_set_header Host $http_host;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $connection_upgrade;
        proxy_pass http://localhost:8085;
    }
    error_page 403 404 500 502 503 504 /dsm_error_page;
}
server {
    listen 443 ssl;
    server_name other.test ;
    location / {
        proxy_read_timeout 60;
        proxy_set_header Upgrade $http_upgrade;
        proxy_pass http://localhost:5000;
    }
}
"""


class Nas:
    """DSM's nginx tree, the bundle on the volume, the guard's and the commit's configs."""

    def __init__(self, sb: Sandbox, lock_wait: int = 1, patch_entries=("legacy.test",)) -> None:
        self.sb = sb
        r = sb.root
        conf_d, snippets = r / "etc/nginx/conf.d", r / "etc/nginx/snippets/mcp-edge"
        self.rp_conf = write(r / "etc/nginx/sites-enabled/server.ReverseProxy.conf", DSM_RP_CONF)
        self.dsm_conf = write(conf_d / "dsm.conf", "# DSM's own\n")  # outside the namespace
        self.stale = write(conf_d / "http.mcp-edge-old.conf", "# an older bundle's file\n")
        self.bundle = r / "volume1/mcp-edge"
        self.managed = self.bundle / "managed"
        self.http = conf_d / "http.mcp-edge-http.conf"
        self.site = conf_d / "http.mcp-edge-site.conf"
        self.stream = snippets / "proxy-stream.conf"
        self.tokens = snippets / "access-tokens.conf"
        self.live_paths = sorted([self.http, self.site, self.stream, self.tokens], key=str)
        self.put_managed()
        self.manifest = write(self.bundle / "nginx-managed.list",
                              "".join(f"{p}\n" for p in [*self.live_paths, self.rp_conf]))
        self.state_dir = self.bundle / "state/nginx"
        self.good = self.state_dir / "last-good"
        self.lock = r / "run/mcp-edge-guard.lock"
        self.commit_config = render(NAS_COMMIT_CONF, self.bundle / "nginx-commit.conf", commit={
            "manifest": str(self.manifest), "state_dir": str(self.state_dir), "nginx": "nginx",
            # On a NAS: /usr/syno/bin/synosystemctl (files/README.md); the stub is on PATH.
            "reload_commands": ["synosystemctl reload nginx", "systemctl reload nginx", "nginx -s reload"],
            "path": sb.path})  # no lock: the guard's lock serialises the NAS's commits
        self.config = render(GUARD_CONF, self.bundle / "guard.conf", guard={
            "bundle_dir": str(self.bundle), "managed_dir": str(self.managed),
            "namespace": [f"{conf_d}/http.mcp-edge-*.conf", f"{snippets}/*"],
            "reverse_proxy_conf": str(self.rp_conf), "patch_entries": list(patch_entries),
            "stream_timeout": 3600, "patcher": str(PATCHER), "commit": str(COMMIT),
            "commit_config": str(self.commit_config), "lock": str(self.lock), "lock_wait": lock_wait,
            "path": sb.path})

    def put_managed(self, site: str = "server { server_name mcp.test; }\n") -> None:
        """What the deploy renders into the bundle's managed copies."""
        write(Path(f"{self.managed}{self.http}"), "log_format mcp_edge_json '{}';\n")
        write(Path(f"{self.managed}{self.site}"), site)
        write(Path(f"{self.managed}{self.stream}"), "proxy_buffering off;\n")
        write(Path(f"{self.managed}{self.tokens}"), "map $http_authorization $mcp_edge_token_ok { default 0; }\n",
              0o600)

    def guard(self, action: str, **kw):
        return self.sb.run(GUARD, self.config, action, **kw)

    def files(self) -> list[Path]:
        return [*self.live_paths, self.rp_conf]

    def live(self) -> dict:
        return tree_state(self.files())

    def pending_all(self) -> list[str]:
        return [str(p) for p in self.live_paths] + [f"{self.stale} (not managed)",
                                                    f"{self.rp_conf} (streaming settings)"]


def test_guard_check_lists_out_of_place_then_nothing(sandbox: Sandbox) -> None:
    n = Nas(sandbox)
    res = n.guard("check")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == n.pending_all()
    assert n.guard("apply").returncode == 0
    res = n.guard("check")
    assert (res.returncode, res.stdout) == (0, "")
    # One managed copy changes (a deploy): only it is listed.
    write(Path(f"{n.managed}{n.site}"), "server { server_name mcp2.test; }\n")
    assert n.guard("check").stdout.splitlines() == [str(n.site)]


def test_guard_apply_installs_removes_patches_commits(sandbox: Sandbox) -> None:
    n = Nas(sandbox)
    res = n.guard("apply")
    assert res.returncode == 0, res.stderr
    pending = n.pending_all()
    assert res.stdout == "restored: " + "\n".join(pending) + "\n"
    for p in n.live_paths:
        assert p.read_bytes() == Path(f"{n.managed}{p}").read_bytes()
        assert p.stat().st_mode & 0o777 == (0o600 if p == n.tokens else 0o644), p
    assert not n.stale.exists() and n.dsm_conf.exists(), "only the namespace is cleaned"
    rp = n.rp_conf.read_text()
    assert MARK in rp and "proxy_read_timeout 3600s;" in rp and "Upgrade" not in rp.split("server_name other")[0]
    assert sandbox.calls() == ["nginx -t", "synosystemctl reload nginx",
                               "logger -t mcp-edge-guard restored: " + " ".join(pending) + " "]
    assert tree_state(f"{n.good}{p}" for p in n.files()) == {f"{n.good}{k}": v for k, v in n.live().items()}
    sandbox.clear_calls()
    res = n.guard("apply")
    assert (res.returncode, res.stdout, sandbox.calls()) == (0, "", []), "all in place: nothing runs"


def test_guard_apply_first_run_failing_nginx_t_restores_everything(sandbox: Sandbox) -> None:
    n = Nas(sandbox)
    before = n.live()
    sandbox.flag("fail-nginx-t")
    res = n.guard("apply")
    assert res.returncode == 1
    assert NGINX_EMERG in res.stderr and T_FAILED in res.stderr and "restored:" not in res.stdout
    assert n.live() == before, "DSM's reverse-proxy file as it was, the bundle's files gone again"
    assert n.rp_conf.read_text() == DSM_RP_CONF
    assert not any(c.startswith(("synosystemctl", "systemctl", "nginx -s", "logger")) for c in sandbox.calls())


def test_guard_apply_failing_nginx_t_restores_last_good(sandbox: Sandbox) -> None:
    n = Nas(sandbox)
    assert n.guard("apply").returncode == 0
    good = n.live()
    # A deploy brings a broken site; DSM re-renders its reverse-proxy file.
    n.put_managed(site="server { oops; }\n")
    write(n.rp_conf, DSM_RP_CONF)
    sandbox.flag("fail-nginx-t")
    sandbox.clear_calls()
    res = n.guard("apply")
    assert res.returncode == 1 and T_FAILED in res.stderr
    assert n.live() == good, "every file the apply touched, the reverse-proxy conf too"
    assert sandbox.calls() == ["nginx -t"]


def test_guard_patcher_failing_restores_without_nginx(full_sandbox: Sandbox) -> None:
    n = Nas(full_sandbox)
    assert n.guard("apply").returncode == 0
    good = n.live()
    n.put_managed(site="server { server_name mcp3.test; }\n")
    write(n.rp_conf, DSM_RP_CONF)
    Path(f"{n.rp_conf}.mcp-edge-new").mkdir()  # the patcher cannot write its new file
    full_sandbox.clear_calls()
    res = n.guard("apply")
    assert res.returncode == 1 and "patching" in res.stderr and "the last-good files are back" in res.stderr
    assert n.live() == good
    assert full_sandbox.calls() == []


def test_guard_refuses_paths_its_commit_cannot_restore(full_sandbox: Sandbox) -> None:
    n = Nas(full_sandbox)
    write(n.manifest, "".join(f"{p}\n" for p in n.live_paths))  # the reverse-proxy file left out
    before = n.live()
    res = n.guard("apply")
    assert res.returncode == 1 and "not in the manifest" in res.stderr and str(n.rp_conf) in res.stderr
    assert n.live() == before and full_sandbox.calls() == []


def test_guard_without_patch_entries(full_sandbox: Sandbox) -> None:
    n = Nas(full_sandbox, patch_entries=())
    res = n.guard("apply")
    assert res.returncode == 0, res.stderr
    assert n.rp_conf.read_text() == DSM_RP_CONF
    assert n.guard("check").stdout == ""


def test_guard_lock_held_gives_up_bounded(sandbox: Sandbox) -> None:
    n = Nas(sandbox, lock_wait=1)
    before = n.live()
    held = HeldLock(n.lock, mkdir_style=shutil.which("flock", path=sandbox.path) is None)
    try:
        t0 = time.monotonic()
        res = n.guard("apply", timeout=10)
        assert res.returncode == 1 and "is held by another run; gave up after 1s" in res.stderr
        assert time.monotonic() - t0 < 5
        assert n.live() == before and sandbox.calls() == []
        assert n.guard("check").stdout.splitlines() == n.pending_all(), "check takes no lock"
    finally:
        held.release()


def test_guard_waits_for_the_lock_then_applies(sandbox: Sandbox) -> None:
    n = Nas(sandbox, lock_wait=10)
    held = HeldLock(n.lock, mkdir_style=shutil.which("flock", path=sandbox.path) is None)
    proc = sandbox.start(GUARD, n.config, "apply")
    try:
        time.sleep(0.5)
        assert proc.poll() is None, "it waits while the lock is held"
        assert not n.http.exists()
    except BaseException:
        proc.kill()
        raise
    finally:
        held.release()
    rc, out, err = finish(proc)
    assert rc == 0, err
    assert out.startswith("restored: ")


def test_guard_concurrent_applies_run_one_after_the_other(sandbox: Sandbox) -> None:
    n = Nas(sandbox, lock_wait=15)
    procs = [sandbox.start(GUARD, n.config, "apply") for _ in range(2)]
    results = [finish(p) for p in procs]
    assert [r[0] for r in results] == [0, 0], results
    assert sorted(bool(r[1]) for r in results) == [False, True], "the second finds everything in place"
    assert sandbox.calls().count("nginx -t") == 1


def test_guard_stale_mkdir_lock_is_taken_over(tmp_path: Path) -> None:
    sb = Sandbox(tmp_path, "dsm")
    n = Nas(sb)
    HeldLock(n.lock, mkdir_style=True, pid=dead_pid())
    res = n.guard("apply")
    assert res.returncode == 0, res.stderr
    assert "removing the stale lock" in res.stderr
    assert not (n.lock.parent / "mcp-edge-guard.lock.d").exists()


def test_guard_root_only_and_usage(full_sandbox: Sandbox) -> None:
    n = Nas(full_sandbox)
    full_sandbox.flag("not-root")
    res = n.guard("check")
    assert res.returncode == 1 and "run as root" in res.stderr
    full_sandbox.flag("not-root", present=False)
    res = n.guard("bogus")
    assert res.returncode == 2 and "usage" in res.stderr
    res = full_sandbox.run(GUARD)
    assert res.returncode == 2


# --- mcp-edge-container -------------------------------------------------------------------

class Docker:
    def __init__(self, sb: Sandbox) -> None:
        self.sb = sb
        self.docker = sb.tmp / "stubs/docker"
        self.config = render(CONTAINER_CONF, sb.root / "volume1/mcp-edge/container.conf", docker=str(self.docker))

    def state(self) -> dict:
        f = self.sb.stub_dir / "docker.json"
        return json.loads(f.read_text()) if f.exists() else {}

    def set_state(self, state: dict) -> None:
        (self.sb.stub_dir / "docker.json").write_text(json.dumps(state))

    def run(self, *args, **kw):
        return self.sb.run(CONTAINER, self.config, *args, **kw)


OLD = {"status": "running", "health": "healthy", "args": ["old-image"], "logs": ["old"]}
RUN_ARGS = ["--label", "mcp-edge.spec=abc", "--env-file", "/volume1/mcp-edge/env/loop-api.env", "-p",
            "127.0.0.1:8086:8086", "--health-cmd", "python3 -c \"import sys; sys.exit(0)\"", "loop-api:mcp-edge",
            "*"]


def test_container_start_healthy(full_sandbox: Sandbox) -> None:
    d = Docker(full_sandbox)
    d.set_state({"loop-api": {**OLD, "status": "exited"}})
    res = d.run("start", "loop-api", 5)
    assert res.returncode == 0, res.stderr
    assert d.state()["loop-api"]["status"] == "running"
    assert full_sandbox.calls() == ["docker start loop-api", f"docker inspect --format {STATUS_FORMAT} loop-api"]


def test_container_replace_healthy(full_sandbox: Sandbox) -> None:
    d = Docker(full_sandbox)
    d.set_state({"loop-api": OLD})
    res = d.run("replace", "loop-api", 5, "--", *RUN_ARGS)
    assert res.returncode == 0, res.stderr
    state = d.state()
    assert list(state) == ["loop-api"], "the previous one is removed"
    assert state["loop-api"]["args"] == RUN_ARGS, "run arguments passed through verbatim"
    assert full_sandbox.calls()[:4] == ["docker container inspect loop-api",
                                        "docker rm -f loop-api.mcp-edge-previous",
                                        "docker rename loop-api loop-api.mcp-edge-previous",
                                        "docker stop loop-api.mcp-edge-previous"]


def test_container_replace_without_previous(full_sandbox: Sandbox) -> None:
    d = Docker(full_sandbox)
    res = d.run("replace", "loop-mcp", 5, "--", "loop-mcp:mcp-edge")
    assert res.returncode == 0, res.stderr
    assert d.state()["loop-mcp"]["status"] == "running"


def test_container_replace_unhealthy_puts_previous_back(full_sandbox: Sandbox) -> None:
    d = Docker(full_sandbox)
    d.set_state({"loop-api": OLD})
    (full_sandbox.stub_dir / "new-health").write_text("unhealthy\n")
    res = d.run("replace", "loop-api", 5, "--", *RUN_ARGS)
    assert res.returncode == 1
    assert "mcp-edge: container loop-api is not healthy (running unhealthy) after 0s; its last log lines:" in res.stderr
    assert "log: loop-api is unhealthy" in res.stderr, "its log lines are printed"
    assert "mcp-edge: kept the previous loop-api running" in res.stderr
    assert d.state() == {"loop-api": {**OLD, "status": "running"}}, "the previous container, running, its name back"


def test_container_not_healthy_in_time(full_sandbox: Sandbox) -> None:
    d = Docker(full_sandbox)
    (full_sandbox.stub_dir / "new-health").write_text("starting\n")
    t0 = time.monotonic()
    res = d.run("replace", "loop-api", 2, "--", "loop-api:mcp-edge")
    assert res.returncode == 1 and "is not healthy (running starting) after 2s" in res.stderr
    assert time.monotonic() - t0 < 10
    assert d.state() == {}


def test_container_usage_and_config(full_sandbox: Sandbox, tmp_path: Path) -> None:
    d = Docker(full_sandbox)
    assert d.run("start", "x").returncode == 2
    assert d.run("restart", "x", 5).returncode == 2
    assert d.run("start", "x", "soon").returncode == 2
    rel = write(tmp_path / "rel.conf", "docker=docker\n")
    res = full_sandbox.run(CONTAINER, rel, "start", "x", 5)
    assert res.returncode == 2 and "absolute" in res.stderr
    assert full_sandbox.calls() == []


# --- mcp-edge-dsm-patch ----------------------------------------------------------------------

def patcher(sb: Sandbox, *args):
    return sb.run(sb.tmp / "tools/python3", PATCHER, *args)


def test_patcher_patches_a_dsm_block_idempotently(full_sandbox: Sandbox) -> None:
    conf = write(full_sandbox.root / "server.ReverseProxy.conf", DSM_RP_CONF, 0o600)
    res = patcher(full_sandbox, "--check", "--timeout", "3600", conf, "legacy.test")
    assert res.returncode == 1 and conf.read_text() == DSM_RP_CONF, "--check reports, changes nothing"
    res = patcher(full_sandbox, "--timeout", "3600", conf, "legacy.test")
    assert res.returncode == 0, res.stderr
    text = conf.read_text()
    legacy, other = text.split("server_name other.test")
    location = legacy.split("location / {")[1].split("}")[0]
    for line in ("proxy_buffering off;", "proxy_cache off;", "gzip off;", 'proxy_set_header Connection "";',
                 "proxy_read_timeout 3600s;", "proxy_send_timeout 3600s;", MARK):
        assert line in location
    assert "Upgrade" not in location and "$connection_upgrade" not in location
    assert "proxy_read_timeout 60;" not in location and "proxy_send_timeout 60;" not in location
    assert "proxy_connect_timeout 60;" in location and "proxy_pass http://localhost:8085;" in location
    assert other == DSM_RP_CONF.split("server_name other.test")[1], "other entries untouched"
    assert conf.stat().st_mode & 0o777 == 0o644
    assert patcher(full_sandbox, "--timeout", "3600", conf, "legacy.test").returncode == 0
    assert conf.read_text() == text, "idempotent"
    assert patcher(full_sandbox, "--check", "--timeout", "3600", conf, "legacy.test").returncode == 0
    res = patcher(full_sandbox, "--check", "--timeout", "60", conf, "legacy.test")
    assert res.returncode == 1, "another timeout is a patch due"


def test_patcher_reports_missing_hosts(full_sandbox: Sandbox) -> None:
    conf = write(full_sandbox.root / "server.ReverseProxy.conf", DSM_RP_CONF)
    res = patcher(full_sandbox, conf, "nowhere.test", "legacy.test")
    assert res.returncode == 0
    assert "mcp-edge-dsm-patch: no reverse-proxy block for nowhere.test" in res.stderr
    res = patcher(full_sandbox, "--check", full_sandbox.root / "absent.conf", "legacy.test")
    assert res.returncode == 0 and "no reverse-proxy block for legacy.test" in res.stderr
    assert not (full_sandbox.root / "absent.conf").exists()


def test_patcher_is_python_3_8() -> None:
    ast.parse(PATCHER.read_text(), feature_version=(3, 8))
    if python38() is None:
        pytest.skip("no Python 3.8 here to run the patcher on (set MCP_EDGE_PY38); its syntax was checked")
    res = subprocess.run([python38(), str(PATCHER), "--help"], capture_output=True, text=True, timeout=20)
    assert res.returncode == 0, res.stderr


# --- every shell program: shellcheck, dash (and bash, DSM's /bin/sh) -----------------------

def test_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    res = subprocess.run([shellcheck, "-s", "sh", *map(str, SHELL_PROGRAMS)], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("shell", ["/bin/dash", "/bin/bash"])
def test_programs_under(shell: str, tmp_path: Path) -> None:
    if not os.access(shell, os.X_OK):
        pytest.skip(f"{shell} is not installed")
    (tmp_path / "ubuntu").mkdir()
    sb = Sandbox(tmp_path / "ubuntu", "dsm")
    u = Ubuntu(sb)
    assert sb.run(COMMIT, u.config, "seed", shell=shell).returncode == 0
    u.deploy()
    res = sb.run(COMMIT, u.config, "commit", shell=shell)
    assert res.returncode == 0, res.stderr
    assert u.snapshot() == u.as_snapshot(u.live())
    (tmp_path / "nas").mkdir()
    sb = Sandbox(tmp_path / "nas", "dsm")
    n = Nas(sb)
    res = sb.run(GUARD, n.config, "check", shell=shell)
    assert res.stdout.splitlines() == n.pending_all(), res.stderr
    res = sb.run(GUARD, n.config, "apply", shell=shell)
    assert res.returncode == 0 and res.stdout.startswith("restored: "), res.stderr
    assert sb.run(GUARD, n.config, "check", shell=shell).stdout == ""
    d = Docker(sb)
    d.set_state({"loop-api": OLD})
    res = sb.run(CONTAINER, d.config, "replace", "loop-api", 5, "--", "loop-api:mcp-edge", shell=shell)
    assert res.returncode == 0, res.stderr
