"""The bench authorization server (sandbox/images/oauth/server.mjs, oidc-provider) for real.

It runs under node on 127.0.0.1 with a throw-away CA (made here with `cryptography`) and
every check is real HTTPS against it, verified against that CA (httpx): metadata, dynamic
client registration, the authorization code flow with PKCE and a `resource` (the login
form completed over plain HTTP), refresh, client_credentials for the pre-registered
client, resource indicators outside the allowed suffix refused, JWT access tokens checked
against the published JWKS (PyJWT), introspection and revocation, key rotation through the
loopback admin listener, and the official MCP Python SDK's OAuth client (1.x in this venv,
2.x from .venv-sdk2 when present) driven through discovery + DCR + PKCE against it.

Needs node and `npm ci --prefix sandbox/images/oauth`; skips otherwise. Every wait has a
deadline. Run: python -m pytest -q tests/unit/test_oauth_server.py (add -s to see what the
MCP SDKs send).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urljoin, urlparse

import httpx
import pytest

jwt = pytest.importorskip("jwt", reason="PyJWT is needed to verify the access tokens")
pytest.importorskip("cryptography.x509", reason="cryptography is needed for the throw-away CA")

from .conftest import make_ca_and_cert  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
OAUTH_DIR = REPO / "sandbox/images/oauth"
SERVER = OAUTH_DIR / "server.mjs"
SDK2_PYTHON = REPO / ".venv-sdk2/bin/python"
NODE = shutil.which("node")

if NODE is None:
    pytest.skip("node is not installed", allow_module_level=True)
if not (OAUTH_DIR / "node_modules/oidc-provider/package.json").is_file():
    pytest.skip("oidc-provider is not installed: run `npm ci --prefix sandbox/images/oauth`",
                allow_module_level=True)

SUFFIX = ".example.test"
RESOURCE = "https://mcp.example.test/mcp"
OTHER_RESOURCE = "https://files.example.test/mcp"
REDIRECT = "http://127.0.0.1:9/callback"  # never contacted: the flow stops at the redirect
TEST_CLIENT_ID = "bench-test-client"
TEST_CLIENT_SECRET = "bench-" + secrets.token_urlsafe(24)
START_TIMEOUT = 20.0
HTTP_TIMEOUT = 10.0
SDK_TIMEOUT = 60.0
TTL = 600

# Every token, code and secret the tests see: none may appear in the server's log.
SEEN_SECRETS: set[str] = {TEST_CLIENT_SECRET}


# --- the throw-away CA and the server process -------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AuthServer:
    """server.mjs under node on free loopback ports; `stop()` ends it (SIGTERM, then SIGKILL)."""

    def __init__(self, directory: Path, ca: Path, cert: Path, key: Path, keys_file: Path, **env: str) -> None:
        self.ca = ca
        self.keys_file = keys_file
        self.port, self.admin_port = free_port(), free_port()
        self.issuer = f"https://127.0.0.1:{self.port}"
        self.admin = f"http://127.0.0.1:{self.admin_port}"
        self.log_path = directory / f"oauth-{time.monotonic_ns()}.log"
        environment = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "OAUTH_ISSUER": self.issuer, "OAUTH_TLS_CERT": str(cert), "OAUTH_TLS_KEY": str(key),
            "OAUTH_PORT": str(self.port), "OAUTH_BIND": "127.0.0.1", "OAUTH_ADMIN_PORT": str(self.admin_port),
            "OAUTH_KEYS_FILE": str(keys_file), "OAUTH_RESOURCE_SUFFIX": SUFFIX,
            "OAUTH_TEST_CLIENT_ID": TEST_CLIENT_ID, "OAUTH_TEST_CLIENT_SECRET": TEST_CLIENT_SECRET,
            **env,
        }
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([NODE, str(SERVER)], cwd=OAUTH_DIR, env=environment,
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while not ("oauth: issuer" in self.log() and "oauth: admin listening on http://127.0.0.1:" in self.log()):
            if self.proc.poll() is not None:
                raise AssertionError(f"server.mjs exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"server.mjs did not listen within {START_TIMEOUT}s:\n{self.log()}")
            time.sleep(0.05)
        self.tls = ssl.create_default_context(cafile=str(ca))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self) -> httpx.Client:
        """A fresh 'browser': verifies the throw-away CA, keeps its own cookies."""
        return httpx.Client(verify=self.tls, timeout=HTTP_TIMEOUT)

    def metadata(self) -> dict:
        with self.client() as c:
            return c.get(f"{self.issuer}/.well-known/oauth-authorization-server").raise_for_status().json()

    def jwks(self) -> dict:
        with self.client() as c:
            return c.get(self.metadata()["jwks_uri"]).raise_for_status().json()

    def rotate(self, drop_old: bool = False) -> dict:
        url = f"{self.admin}/rotate" + ("?drop-old=1" if drop_old else "")
        return httpx.post(url, timeout=HTTP_TIMEOUT).raise_for_status().json()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return make_ca_and_cert(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, pki) -> AuthServer:
    directory = tmp_path_factory.mktemp("oauth")
    srv = AuthServer(directory, *pki, keys_file=directory / "keys.json")
    yield srv
    srv.stop()


# --- OAuth helpers ------------------------------------------------------------------------


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def register_public_client(srv: AuthServer, **metadata) -> dict:
    body = {"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
            "client_name": "unit test", **metadata}
    with srv.client() as c:
        r = c.post(srv.metadata()["registration_endpoint"], json=body)
    assert r.status_code == 201, r.text
    SEEN_SECRETS.add(r.json()["registration_access_token"])
    return r.json()


def browse(browser: httpx.Client, url: str, login: str) -> dict:
    """Follow the authorization request like a browser: fill in the login form when it comes,
    stop at the redirect to REDIRECT and return its query parameters."""
    for _ in range(12):
        r = browser.get(url)
        if r.status_code == 200 and "<form" in r.text:
            form = re.search(r'<form method="post" action="([^"]+)">', r.text)
            assert form and 'name="login"' in r.text, r.text
            r = browser.post(urljoin(url, form.group(1)), data={"login": login})
        assert r.status_code in (302, 303), f"{r.status_code} at {url}: {r.text[:400]}"
        url = urljoin(url, r.headers["location"])
        if url.startswith(REDIRECT):
            return dict(parse_qsl(urlparse(url).query))
    raise AssertionError("more than 12 redirects in the authorization flow")


def authorize(srv: AuthServer, client_id: str, login: str, scope: str, challenge: str | None,
              resource: str | None = RESOURCE, **extra: str) -> dict:
    state = secrets.token_urlsafe(16)
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "scope": scope,
              "state": state, **extra}
    if challenge is not None:
        params.update(code_challenge=challenge, code_challenge_method="S256")
    if resource is not None:
        params["resource"] = resource
    with srv.client() as browser:
        result = browse(browser, f"{srv.metadata()['authorization_endpoint']}?{urlencode(params)}", login)
    assert result.get("state") == state, result
    if "code" in result:
        SEEN_SECRETS.add(result["code"])
    return result


def token_request(srv: AuthServer, data: dict, auth: tuple[str, str] | None = None) -> httpx.Response:
    with srv.client() as c:
        r = c.post(srv.metadata()["token_endpoint"], data=data, auth=auth)
    if r.status_code == 200:
        SEEN_SECRETS.update(v for k, v in r.json().items() if k in ("access_token", "refresh_token", "id_token"))
    return r


def code_flow(srv: AuthServer, login: str, scope: str = "mcp:tools mcp:read", resource: str = RESOURCE) -> dict:
    """Register a public client, authorize with PKCE + resource, exchange the code."""
    client = register_public_client(srv)
    verifier, challenge = pkce()
    result = authorize(srv, client["client_id"], login, scope, challenge, resource)
    assert result.get("iss") == srv.issuer, result  # RFC 9207
    r = token_request(srv, {"grant_type": "authorization_code", "code": result["code"], "redirect_uri": REDIRECT,
                            "client_id": client["client_id"], "code_verifier": verifier, "resource": resource})
    assert r.status_code == 200, r.text
    return {"client": client, **r.json()}


def client_credentials(srv: AuthServer, resource: str = RESOURCE, scope: str = "mcp:tools mcp:read",
                       secret: str = TEST_CLIENT_SECRET) -> httpx.Response:
    return token_request(srv, {"grant_type": "client_credentials", "scope": scope, "resource": resource},
                         auth=(TEST_CLIENT_ID, secret))


def verify_jwt(srv: AuthServer, token: str, audience: str = RESOURCE) -> tuple[dict, dict]:
    """Check the token's signature against the published JWKS (PyJWT); returns (header, claims)."""
    header = jwt.get_unverified_header(token)
    keys = jwt.PyJWKSet.from_dict(srv.jwks())
    key = keys[header["kid"]]
    claims = jwt.decode(token, key.key, algorithms=[header["alg"]], audience=audience, issuer=srv.issuer,
                        options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]})
    return header, claims


def kids(jwks: dict) -> list[str]:
    return [k["kid"] for k in jwks["keys"]]


# --- the tests ------------------------------------------------------------------------------


def test_metadata_documents(server: AuthServer) -> None:
    with server.client() as c:
        oauth = c.get(f"{server.issuer}/.well-known/oauth-authorization-server")
        oidc = c.get(f"{server.issuer}/.well-known/openid-configuration")
    assert oauth.status_code == oidc.status_code == 200
    md = oauth.json()
    assert oidc.json() == md
    assert md["issuer"] == server.issuer
    for name in ("authorization_endpoint", "token_endpoint", "registration_endpoint", "jwks_uri",
                 "introspection_endpoint", "revocation_endpoint"):
        assert md[name].startswith(server.issuer + "/"), name
    assert md["code_challenge_methods_supported"] == ["S256"]
    assert md["authorization_response_iss_parameter_supported"] is True
    assert md["response_types_supported"] == ["code"]
    assert {"authorization_code", "refresh_token", "client_credentials"} <= set(md["grant_types_supported"])
    assert "implicit" not in md["grant_types_supported"]
    assert {"openid", "email", "offline_access", "mcp:tools", "mcp:read"} <= set(md["scopes_supported"])
    assert "none" in md["token_endpoint_auth_methods_supported"]
    jwks = server.jwks()
    assert {(k["kty"], k["alg"]) for k in jwks["keys"]} == {("EC", "ES256"), ("RSA", "RS256")}
    assert not any("d" in k for k in jwks["keys"]), "private key material published"


def test_authorization_code_pkce_resource_gives_a_jwt_for_the_resource(server: AuthServer) -> None:
    tokens = code_flow(server, "alice")
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == TTL
    assert tokens["scope"] == "mcp:tools mcp:read"
    header, claims = verify_jwt(server, tokens["access_token"])
    assert header["alg"] == "ES256" and header["typ"] == "at+jwt"
    assert header["kid"] == kids(server.jwks())[0]
    assert claims["aud"] == RESOURCE
    assert claims["iss"] == server.issuer
    assert claims["sub"] == "alice"
    assert claims["client_id"] == tokens["client"]["client_id"]
    assert claims["scope"] == "mcp:tools mcp:read"
    assert claims["exp"] - claims["iat"] == TTL
    assert set(claims) == {"jti", "sub", "iat", "exp", "scope", "client_id", "iss", "aud"}
    # The refresh token (issued because the client registered the refresh_token grant).
    r = token_request(server, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
                               "client_id": tokens["client"]["client_id"], "resource": RESOURCE})
    assert r.status_code == 200, r.text
    assert r.json()["refresh_token"] != tokens["refresh_token"], "public client refresh tokens rotate"
    assert verify_jwt(server, r.json()["access_token"])[1]["sub"] == "alice"


def test_scope_subset_and_openid_email(server: AuthServer) -> None:
    tokens = code_flow(server, "bob", scope="openid email mcp:read")
    assert verify_jwt(server, tokens["access_token"])[1]["scope"] == "mcp:read"  # only the resource's scopes
    id_token = jwt.decode(tokens["id_token"], options={"verify_signature": False})
    assert id_token["sub"] == "bob" and id_token["email"] == "bob@example.test"
    assert id_token["aud"] == tokens["client"]["client_id"]


def test_pkce_is_required(server: AuthServer) -> None:
    client = register_public_client(server)
    result = authorize(server, client["client_id"], "carol", "mcp:tools", challenge=None)
    assert result["error"] == "invalid_request" and "PKCE" in result["error_description"], result
    plain = authorize(server, client["client_id"], "carol", "mcp:tools", challenge=None,
                      code_challenge="x" * 43, code_challenge_method="plain")
    assert plain["error"] == "invalid_request", plain


def test_login_form_refuses_a_malformed_login(server: AuthServer) -> None:
    client = register_public_client(server)
    _, challenge = pkce()
    params = {"response_type": "code", "client_id": client["client_id"], "redirect_uri": REDIRECT,
              "scope": "mcp:tools", "state": "s", "code_challenge": challenge, "code_challenge_method": "S256",
              "resource": RESOURCE}
    with server.client() as browser:
        url = urljoin(server.issuer, browser.get(f"{server.metadata()['authorization_endpoint']}?{urlencode(params)}")
                      .headers["location"])
        form = browser.get(url)
        assert form.status_code == 200 and 'name="login"' in form.text
        r = browser.post(url + "/login", data={"login": "<script>"})
    assert r.status_code == 400 and 'name="login"' in r.text and "<script>" not in r.text


def test_client_credentials_for_the_preregistered_client(server: AuthServer) -> None:
    r = client_credentials(server)
    assert r.status_code == 200, r.text
    assert "refresh_token" not in r.json()
    header, claims = verify_jwt(server, r.json()["access_token"])
    assert claims["sub"] == claims["client_id"] == TEST_CLIENT_ID
    assert claims["aud"] == RESOURCE and claims["scope"] == "mcp:tools mcp:read"
    one = client_credentials(server, resource=OTHER_RESOURCE, scope="mcp:read")
    assert one.status_code == 200 and verify_jwt(server, one.json()["access_token"], OTHER_RESOURCE)[1]["scope"] \
        == "mcp:read"
    assert client_credentials(server, secret="wrong").status_code == 401
    assert client_credentials(server, scope="openid").json()["error"] == "invalid_scope"


@pytest.mark.parametrize("resource", [
    "https://mcp.example.com/mcp",        # another suffix
    "https://example.test/mcp",           # the suffix itself is not under it
    "https://mcp.example.test.evil.com/",  # suffix in the middle
    "http://mcp.example.test/mcp",        # not https
    "mcp.example.test",                   # not an absolute URI
])
def test_a_resource_outside_the_suffix_is_refused(server: AuthServer, resource: str) -> None:
    r = client_credentials(server, resource=resource)
    assert r.status_code == 400 and r.json()["error"] == "invalid_target", r.text


def test_a_resource_outside_the_suffix_is_refused_at_the_authorization_endpoint(server: AuthServer) -> None:
    client = register_public_client(server)
    _, challenge = pkce()
    result = authorize(server, client["client_id"], "dave", "mcp:tools", challenge, "https://mcp.example.org/mcp")
    assert result["error"] == "invalid_target", result


def test_dynamic_registration_limits(server: AuthServer) -> None:
    with server.client() as c:
        endpoint = server.metadata()["registration_endpoint"]
        r = c.post(endpoint, json={"grant_types": ["client_credentials"], "response_types": [], "redirect_uris": []})
        assert r.status_code == 400 and r.json()["error"] == "invalid_client_metadata", r.text
        # A registered `scope` must only hold scopes_supported: the MCP SDKs register the scopes
        # they picked (PRM scopes_supported), so those must all be in the server's scope list.
        r = c.post(endpoint, json={"redirect_uris": [REDIRECT], "scope": "mcp:tools mcp:admin"})
        assert r.status_code == 400 and r.json()["error"] == "invalid_client_metadata", r.text
        assert "scope" in r.json()["error_description"]


def test_introspection_and_revocation(server: AuthServer) -> None:
    tokens = code_flow(server, "erin")
    endpoint = server.metadata()["introspection_endpoint"]
    client_id = tokens["client"]["client_id"]
    with server.client() as c:
        fresh = c.post(endpoint, data={"token": tokens["refresh_token"], "client_id": client_id}).json()
        assert fresh["active"] is True and fresh["sub"] == "erin" and fresh["client_id"] == client_id
        assert fresh["scope"] == "mcp:tools mcp:read" and fresh["iss"] == server.issuer
        # oidc-provider does not introspect (or revoke) structured JWT access tokens: the
        # resource server validates them itself (lib/shared/reject_structured_tokens.js).
        at = c.post(endpoint, data={"token": tokens["access_token"], "client_id": client_id})
        assert at.status_code == 400 and at.json()["error"] == "unsupported_token_type"
        revoked = c.post(server.metadata()["revocation_endpoint"],
                         data={"token": tokens["refresh_token"], "client_id": client_id})
        assert revoked.status_code == 200
        assert c.post(endpoint, data={"token": tokens["refresh_token"], "client_id": client_id}).json() == \
            {"active": False}
    # The confidential test client may introspect any token.
    with server.client() as c:
        other = code_flow(server, "frank")
        r = c.post(endpoint, data={"token": other["refresh_token"]}, auth=(TEST_CLIENT_ID, TEST_CLIENT_SECRET))
    assert r.json()["active"] is True and r.json()["sub"] == "frank"


def test_key_rotation_and_restart(tmp_path: Path, pki) -> None:
    keys_file = tmp_path / "state/keys.json"
    srv = AuthServer(tmp_path, *pki, keys_file=keys_file)
    try:
        assert keys_file.is_file() and keys_file.stat().st_mode & 0o077 == 0, "keys file generated, mode 0600"
        before = srv.jwks()
        old_token = client_credentials(srv).json()["access_token"]
        old_kid = jwt.get_unverified_header(old_token)["kid"]
        tokens = code_flow(srv, "grace")  # state made before the rotation

        rotated = srv.rotate()
        new_kid = rotated["signing_kid"]
        assert new_kid != old_kid and rotated["kids"][0] == new_kid
        jwks = srv.jwks()
        assert kids(jwks) == rotated["kids"] and len(jwks["keys"]) == 4
        assert set(kids(before)) < set(kids(jwks))
        new_token = client_credentials(srv).json()["access_token"]
        assert jwt.get_unverified_header(new_token)["kid"] == new_kid
        verify_jwt(srv, new_token)
        verify_jwt(srv, old_token)  # still published: old tokens validate until they expire
        # The rotation rebuilt the provider: clients, grants and refresh tokens carried over.
        r = token_request(srv, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
                                "client_id": tokens["client"]["client_id"], "resource": RESOURCE})
        assert r.status_code == 200, r.text
        assert jwt.get_unverified_header(r.json()["access_token"])["kid"] == new_kid

        dropped = srv.rotate(drop_old=True)
        assert old_kid in dropped["dropped"] and dropped["signing_kid"] == new_kid
        jwks = srv.jwks()
        assert old_kid not in kids(jwks) and len(jwks["keys"]) == 2
        with pytest.raises(KeyError):
            verify_jwt(srv, old_token)
        verify_jwt(srv, new_token)
        saved = json.loads(keys_file.read_text())
        assert kids(saved) == kids(jwks)
        assert httpx.get(f"{srv.admin}/rotate", timeout=HTTP_TIMEOUT).status_code == 405
    finally:
        srv.stop()
    assert srv.proc.returncode == 0, srv.log()
    # A restart keeps the keys; RS256 access tokens are one variable away.
    srv2 = AuthServer(tmp_path, *pki, keys_file=keys_file, OAUTH_ACCESS_TOKEN_ALG="RS256")
    try:
        assert kids(srv2.jwks()) == kids(jwks)
        token = client_credentials(srv2).json()["access_token"]
        header, _ = verify_jwt(srv2, token)
        rsa_kid = next(k["kid"] for k in jwks["keys"] if k["kty"] == "RSA")
        assert header["alg"] == "RS256" and header["kid"] == rsa_kid
    finally:
        srv2.stop()


# --- the official MCP Python SDK's OAuth client -----------------------------------------------

# Run as a script by each SDK's interpreter (1.x: httpx; 2.x: httpx2). A stand-in MCP resource
# server at https://mcp.example.test (inside the client's transport) answers 401 with RFC 9728
# metadata until it gets a bearer JWT that verifies against the issuer's JWKS; everything else
# goes to the real authorization server. Prints what the SDK sent, as JSON.
SDK_DRIVER = r'''
import asyncio, json, re, ssl, sys
from urllib.parse import parse_qsl, urljoin, urlparse
try:
    import httpx2 as httpx
except ImportError:
    import httpx
import jwt
import mcp.shared.auth as shared_auth
from mcp.client.auth import OAuthClientProvider

issuer, cafile, login, resource, redirect = sys.argv[1:6]
scopes_supported = json.loads(sys.argv[6])
origin = "https://" + urlparse(resource).netloc
prm_url = origin + "/.well-known/oauth-protected-resource" + urlparse(resource).path
prm = {"resource": resource, "authorization_servers": [issuer], "bearer_methods_supported": ["header"]}
if scopes_supported is not None:
    prm["scopes_supported"] = scopes_supported
SECRET_FIELDS = {"client_secret", "code", "code_verifier", "refresh_token", "access_token",
                 "registration_access_token"}
seen, callback, verified = [], {}, {}

def redact(d):
    return {k: ("<%d chars>" % len(v) if k in SECRET_FIELDS else v) for k, v in d.items()}

class Memory:
    def __init__(self): self.tokens = self.client = None
    async def get_tokens(self): return self.tokens
    async def set_tokens(self, tokens): self.tokens = tokens
    async def get_client_info(self): return self.client
    async def set_client_info(self, info): self.client = info

async def main():
    tls = ssl.create_default_context(cafile=cafile)
    real = httpx.AsyncHTTPTransport(verify=tls)
    async with httpx.AsyncClient(verify=tls) as c:
        jwks = jwt.PyJWKSet.from_dict((await c.get(issuer + "/jwks")).json())

    def resource_server(request):
        if request.url.path == urlparse(prm_url).path:
            return httpx.Response(200, json=prm)
        auth = request.headers.get("authorization", "")
        if auth.startswith("Bearer "):
            token = auth[7:]
            header = jwt.get_unverified_header(token)
            verified.update(jwt.decode(token, jwks[header["kid"]].key, algorithms=[header["alg"]],
                                       audience=resource, issuer=issuer))
            return httpx.Response(200, json={"jsonrpc": "2.0", "id": 1, "result": {}})
        return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer resource_metadata="%s"' % prm_url})

    class Router(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request):
            entry = {"method": request.method, "url": str(request.url).split("?")[0],
                     "query": redact(dict(parse_qsl(request.url.query.decode() if isinstance(request.url.query, bytes)
                                                    else str(request.url.query))))}
            auth = request.headers.get("authorization")
            if auth:
                entry["authorization"] = auth.split()[0]
            body = request.content.decode() if request.content else ""
            ctype = request.headers.get("content-type", "")
            if body and "json" in ctype:
                entry["json"] = redact(json.loads(body))
            elif body:
                entry["form"] = redact(dict(parse_qsl(body)))
            seen.append(entry)
            if request.url.host == urlparse(resource).hostname:
                return resource_server(request)
            return await real.handle_async_request(request)

    async def redirect_handler(url):
        seen.append({"method": "GET (browser)", "url": url.split("?")[0],
                     "query": redact(dict(parse_qsl(urlparse(url).query)))})
        async with httpx.AsyncClient(verify=tls) as browser:
            for _ in range(12):
                r = await browser.get(url)
                if r.status_code == 200 and "<form" in r.text:
                    action = re.search(r'action="([^"]+)"', r.text).group(1)
                    r = await browser.post(urljoin(url, action), data={"login": login})
                assert r.status_code in (302, 303), (r.status_code, r.text[:300])
                url = urljoin(url, r.headers["location"])
                if url.startswith(redirect):
                    break
        callback.update(parse_qsl(urlparse(url).query))

    async def callback_handler():
        if hasattr(shared_auth, "AuthorizationCodeResult"):  # 2.x
            return shared_auth.AuthorizationCodeResult(code=callback["code"], state=callback.get("state"),
                                                       iss=callback.get("iss"))
        return callback["code"], callback.get("state")

    provider = OAuthClientProvider(
        server_url=resource,
        client_metadata=shared_auth.OAuthClientMetadata(client_name="mcp sdk", redirect_uris=[redirect]),
        storage=Memory(), redirect_handler=redirect_handler, callback_handler=callback_handler)
    async with httpx.AsyncClient(auth=provider, transport=Router(), timeout=20) as client:
        r = await client.post(resource, json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                              headers={"MCP-Protocol-Version": "2025-06-18",
                                       "Accept": "application/json, text/event-stream"})
    print(json.dumps({"status": r.status_code, "claims": verified, "requests": seen,
                      "callback": redact(callback)}))

asyncio.run(main())
'''


def run_sdk(server: AuthServer, python: str, tmp_path: Path, login: str,
            scopes_supported: list[str] | None) -> dict:
    script = tmp_path / "sdk_driver.py"
    script.write_text(SDK_DRIVER)
    out = subprocess.run([python, str(script), server.issuer, str(server.ca), login, RESOURCE,
                          "http://localhost:3030/callback", json.dumps(scopes_supported)],
                         capture_output=True, text=True, timeout=SDK_TIMEOUT)
    assert out.returncode == 0, f"SDK driver failed:\n{out.stderr[-4000:]}\nserver log:\n{server.log()[-3000:]}"
    return json.loads(out.stdout.strip().splitlines()[-1])


def sdk_version(python: str) -> str | None:
    out = subprocess.run([python, "-c", "import importlib.metadata as m; print(m.version('mcp'))"],
                         capture_output=True, text=True, timeout=SDK_TIMEOUT)
    return out.stdout.strip() if out.returncode == 0 else None


def show(version: str, result: dict) -> None:
    print(f"\n== MCP Python SDK {version}: what its OAuth client sent")
    for entry in result["requests"]:
        details = {k: v for k, v in entry.items() if k not in ("method", "url") and v}
        print(f"  {entry['method']} {entry['url']} {json.dumps(details)}")
    print(f"  callback {json.dumps(result['callback'])}; token claims {json.dumps(result['claims'])}")


def check_sdk_flow(server: AuthServer, result: dict, login: str, expected_scope: set[str]) -> dict:
    assert result["status"] == 200, result
    by_url = {}
    for entry in result["requests"]:
        by_url.setdefault((entry["method"], entry["url"]), []).append(entry)
    md = server.metadata()
    reg = by_url[("POST", md["registration_endpoint"])][0]["json"]
    assert reg["redirect_uris"] == ["http://localhost:3030/callback"]
    assert {"authorization_code", "refresh_token"} <= set(reg["grant_types"])
    assert expected_scope <= set(reg["scope"].split())
    auth = by_url[("GET (browser)", md["authorization_endpoint"])][0]["query"]
    assert auth["response_type"] == "code" and auth["code_challenge_method"] == "S256"
    assert auth["resource"] == RESOURCE and expected_scope <= set(auth["scope"].split())
    token = by_url[("POST", md["token_endpoint"])][0]["form"]
    assert token["grant_type"] == "authorization_code" and token["resource"] == RESOURCE
    assert "code_verifier" in token
    assert result["callback"]["iss"] == server.issuer
    assert result["claims"]["aud"] == RESOURCE and result["claims"]["sub"] == login
    assert set(result["claims"]["scope"].split()) == {"mcp:tools", "mcp:read"} & expected_scope
    return reg


@pytest.mark.parametrize("scopes_supported", [["mcp:tools", "mcp:read"], None], ids=["prm-scopes", "no-prm-scopes"])
def test_mcp_sdk1_oauth_client(server: AuthServer, tmp_path: Path, scopes_supported) -> None:
    version = sdk_version(sys.executable)
    if version is None:
        pytest.skip("the MCP Python SDK is not installed in this venv")
    result = run_sdk(server, sys.executable, tmp_path, "sdk1user", scopes_supported)
    show(version, result)
    # With PRM scopes_supported the SDK asks for exactly those; without, for every
    # scopes_supported of the authorization server metadata (openid email offline_access too).
    expected = set(scopes_supported or server.metadata()["scopes_supported"])
    check_sdk_flow(server, result, "sdk1user", expected)


@pytest.mark.skipif(not SDK2_PYTHON.exists(), reason=".venv-sdk2 (the newest MCP Python SDK) is absent")
def test_mcp_sdk2_oauth_client(server: AuthServer, tmp_path: Path) -> None:
    version = sdk_version(str(SDK2_PYTHON))
    if version is None:
        pytest.skip(".venv-sdk2 has no MCP Python SDK")
    result = run_sdk(server, str(SDK2_PYTHON), tmp_path, "sdk2user", ["mcp:tools", "mcp:read"])
    show(version, result)
    check_sdk_flow(server, result, "sdk2user", {"mcp:tools", "mcp:read"})


def test_log_is_one_line_per_request_without_secrets(server: AuthServer) -> None:
    log = server.log()
    requests = [ln for ln in log.splitlines() if re.match(r"\d{4}-\d\d-\d\dT[\d:.]+Z ", ln)]
    assert len(requests) > 20
    line = re.compile(r"^\S+ \S+ (GET|POST|OPTIONS|DELETE|PUT) /\S* \d{3} [\d.]+ms( \w+=\S+)*")
    for ln in requests:
        if " admin " in ln:
            continue
        assert line.match(ln), ln
        assert "?" not in ln.split()[3], ln  # never the query string
    leaked = [s for s in SEEN_SECRETS if s in log]
    assert not leaked, f"{len(leaked)} token(s)/secret(s) in the server log"
