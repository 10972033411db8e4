"""A small OAuth 2.0 authorization server on loopback, for tests and the demo.

It plays the provider's part for mailhelp's sign-in: a token endpoint (client
credentials, refresh tokens with optional rotation, the device-code and authorization-
code grants, Google's signed-JWT grant), the device-code and authorization endpoints,
and a token introspection endpoint (RFC 7662) that the mail servers ask: Dovecot's
oauth2 passdb (``introspection_mode = post``) and the SMTP relay's XOAUTH2.

Runs in a thread of the caller's process (``start``/``stop``); its state is inspected
and changed directly by the test (``revoke``, ``expire_access_tokens``, ``grants``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"


@dataclass
class Client:
    secret: str | None
    mailboxes: tuple[str, ...] = ()  # what its client-credentials tokens may open


@dataclass
class Issued:
    user: str
    client_id: str
    expires_at: float
    scope: str = ""


@dataclass
class AuthServer:
    """The provider. ``lifetime``: seconds an access token lives; ``rotate``: each
    refresh answers with a new refresh token and the old one stops working."""

    host: str = "127.0.0.1"
    lifetime: float = 3600.0
    rotate: bool = False
    clients: dict[str, Client] = field(default_factory=dict)
    refresh_tokens: dict[str, Issued] = field(default_factory=dict)
    access_tokens: dict[str, Issued] = field(default_factory=dict)
    service_accounts: dict[str, bytes] = field(default_factory=dict)  # email: public PEM
    devices: dict[str, dict] = field(default_factory=dict)
    codes: dict[str, dict] = field(default_factory=dict)
    # Who signs in at the authorization endpoint (the person at the browser).
    signed_in_user: str = ""
    grants: list[tuple[str, str]] = field(default_factory=list)  # (grant_type, user)
    introspected: list[str] = field(default_factory=list)  # users asked about, in order
    port: int = 0

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- running -------------------------------------------------------------------------

    def start(self) -> AuthServer:
        server = self

        class Handler(_Handler):
            auth = server

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name=f"oauth2-server-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> AuthServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    token_url = property(lambda self: f"{self.url}/token")
    introspection_url = property(lambda self: f"{self.url}/introspect")
    device_url = property(lambda self: f"{self.url}/devicecode")
    authorize_url = property(lambda self: f"{self.url}/authorize")

    # -- what a test sets up and changes ---------------------------------------------------

    def add_client(self, client_id: str, secret: str | None = None,
                   mailboxes: tuple[str, ...] = ()) -> None:
        self.clients[client_id] = Client(secret, tuple(m.lower() for m in mailboxes))

    def add_service_account(self, email: str, public_pem: bytes) -> None:
        self.service_accounts[email] = public_pem

    def issue_refresh_token(self, user: str, client_id: str) -> str:
        token = "rt-" + secrets.token_urlsafe(16)
        with self.lock:
            self.refresh_tokens[token] = Issued(user.lower(), client_id, float("inf"))
        return token

    def mint(self, user: str, lifetime: float | None = None) -> str:
        """An access token for ``user``, as if granted (for the test's own logins)."""
        return self._access(user.lower(), "test", "", lifetime)

    def revoke(self, user: str | None = None) -> None:
        """Every grant (of ``user``) is withdrawn: refresh tokens refused with
        invalid_grant, access tokens no longer active."""
        with self.lock:
            for tokens in (self.refresh_tokens, self.access_tokens):
                for key in [k for k, v in tokens.items() if user in (None, v.user)]:
                    del tokens[key]

    def expire_access_tokens(self) -> None:
        with self.lock:
            for issued in self.access_tokens.values():
                issued.expires_at = 0.0

    def approve(self, user_code: str, user: str) -> None:
        """The person enters the device code at the verification page and signs in."""
        with self.lock:
            for device in self.devices.values():
                if device["user_code"] == user_code:
                    device["user"] = user.lower()

    def active(self, token: str) -> Issued | None:
        with self.lock:
            issued = self.access_tokens.get(token)
        return issued if issued is not None and issued.expires_at > time.time() else None

    # -- the endpoints ---------------------------------------------------------------------

    def _access(self, user: str, client_id: str, scope: str,
                lifetime: float | None = None) -> str:
        token = "at-" + secrets.token_urlsafe(24)
        with self.lock:
            self.access_tokens[token] = Issued(
                user, client_id, time.time() + (self.lifetime if lifetime is None else lifetime),
                scope)
        return token

    def _answer(self, user: str, client_id: str, scope: str, refresh: str | None = None,
                grant: str = "") -> tuple[int, dict]:
        self.grants.append((grant, user))
        body = {"access_token": self._access(user, client_id, scope), "token_type": "Bearer",
                "expires_in": self.lifetime, "scope": scope}
        if refresh:
            body["refresh_token"] = refresh
        return 200, body

    def token_endpoint(self, form: dict[str, str], basic: tuple[str, str] | None
                       ) -> tuple[int, dict]:
        grant = form.get("grant_type", "")
        if grant == JWT_BEARER:
            return self._jwt_grant(form.get("assertion", ""))
        client_id, secret = basic or (form.get("client_id", ""), form.get("client_secret"))
        client = self.clients.get(client_id)
        if client is None or (client.secret is not None and client.secret != secret):
            return 401, _error("invalid_client", "AADSTS7000215: Invalid client secret")
        scope = form.get("scope", "")
        if grant == "client_credentials":
            if client.secret is None:
                return 400, _error("unauthorized_client", "a public client has no secret")
            return self._answer(client.mailboxes[0] if client.mailboxes else "", client_id,
                                scope, grant=grant)
        if grant == "refresh_token":
            with self.lock:
                issued = self.refresh_tokens.get(form.get("refresh_token", ""))
                if issued is None or issued.client_id != client_id:
                    return 400, _error("invalid_grant", "AADSTS70008: The refresh token "
                                       "has expired or been revoked")
                new = None
                if self.rotate:
                    del self.refresh_tokens[form["refresh_token"]]
                    new = "rt-" + secrets.token_urlsafe(16)
                    self.refresh_tokens[new] = issued
            return self._answer(issued.user, client_id, scope, new, grant)
        if grant == DEVICE_CODE:
            device = self.devices.get(form.get("device_code", ""))
            if device is None:
                return 400, _error("expired_token", "no such device code")
            if device["user"] is None:
                return 400, _error("authorization_pending", "the user has not signed in yet")
            del self.devices[form["device_code"]]
            return self._answer(device["user"], client_id, scope,
                                self.issue_refresh_token(device["user"], client_id), grant)
        if grant == "authorization_code":
            code = self.codes.pop(form.get("code", ""), None)
            verifier = form.get("code_verifier", "")
            if code is None or code["redirect_uri"] != form.get("redirect_uri") or \
                    _s256(verifier) != code["challenge"]:
                return 400, _error("invalid_grant", "bad code, redirect_uri or verifier")
            return self._answer(code["user"], client_id, code["scope"],
                                self.issue_refresh_token(code["user"], client_id), grant)
        return 400, _error("unsupported_grant_type", grant)

    def _jwt_grant(self, assertion: str) -> tuple[int, dict]:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding

        try:
            head, body, signature = assertion.split(".")
            claims = json.loads(_unb64(body))
            pem = self.service_accounts[claims["iss"]]
            key = serialization.load_pem_public_key(pem)
            key.verify(_unb64(signature), f"{head}.{body}".encode(), padding.PKCS1v15(),
                       hashes.SHA256())
        except (ValueError, KeyError, InvalidSignature):
            return 400, _error("invalid_grant", "Invalid JWT Signature.")
        # google-auth always names Google's endpoint as the audience, wherever it posts.
        audiences = (self.token_url, "https://oauth2.googleapis.com/token")
        if json.loads(_unb64(head)).get("alg") != "RS256" or claims.get("aud") not in audiences \
                or claims.get("exp", 0) < time.time():
            return 400, _error("invalid_grant", "Invalid JWT: bad alg, aud or exp")
        user = str(claims.get("sub") or claims["iss"]).lower()
        return self._answer(user, claims["iss"], str(claims.get("scope", "")), grant=JWT_BEARER)

    def device_endpoint(self, form: dict[str, str]) -> tuple[int, dict]:
        if form.get("client_id") not in self.clients:
            return 400, _error("invalid_client", "unknown client")
        device_code = secrets.token_urlsafe(16)
        user_code = secrets.token_hex(4).upper()
        self.devices[device_code] = {"user_code": user_code, "user": None}
        return 200, {"device_code": device_code, "user_code": user_code,
                     "verification_uri": f"{self.url}/device", "expires_in": 900,
                     "interval": 0,
                     "message": f"To sign in, open {self.url}/device and enter {user_code}."}

    def authorize_endpoint(self, query: dict[str, str]) -> str:
        """The browser's visit: the signed-in user consents; returns where to go next."""
        code = secrets.token_urlsafe(16)
        self.codes[code] = {"user": self.signed_in_user.lower(),
                            "redirect_uri": query.get("redirect_uri", ""),
                            "challenge": query.get("code_challenge", ""),
                            "scope": query.get("scope", "")}
        answer = {"code": code, "state": query.get("state", "")}
        return f"{query.get('redirect_uri', '')}?{urllib.parse.urlencode(answer)}"

    def introspect(self, token: str) -> dict:
        issued = self.active(token)
        if issued is None:
            self.introspected.append("")
            return {"active": False}
        self.introspected.append(issued.user)
        return {"active": True, "username": issued.user, "scope": issued.scope,
                "client_id": issued.client_id, "exp": int(issued.expires_at)}


def _error(code: str, description: str) -> dict:
    return {"error": code, "error_description": description}


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class _Handler(BaseHTTPRequestHandler):
    auth: AuthServer

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - quiet in tests
        pass

    def _form(self) -> dict[str, str]:
        length = int(self.headers.get("Content-Length") or 0)
        return dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802
        path = urllib.parse.urlsplit(self.path).path
        form = self._form()
        if path == "/token":
            basic = None
            header = self.headers.get("Authorization", "")
            if header.startswith("Basic "):
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                basic = (urllib.parse.unquote(user), urllib.parse.unquote(password))
            self._send(*self.auth.token_endpoint(form, basic))
        elif path == "/devicecode":
            self._send(*self.auth.device_endpoint(form))
        elif path == "/introspect":
            self._send(200, self.auth.introspect(form.get("token", "")))
        else:
            self._send(404, _error("not_found", path))

    def do_GET(self) -> None:  # noqa: N802
        parts = urllib.parse.urlsplit(self.path)
        if parts.path == "/authorize":
            self.send_response(302)
            self.send_header("Location", self.auth.authorize_endpoint(
                dict(urllib.parse.parse_qsl(parts.query))))
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._send(404, _error("not_found", parts.path))
