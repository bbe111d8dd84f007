"""A small Docker registry token server (distribution's token auth spec) for lab tests.

It signs ES256 JWTs that docker-registry 2.8 accepts with ``auth: token:`` and
``rootcertbundle`` pointing at the signing certificate: the JWT header names
the key by its libtrust key ID (``kid``), which is how 2.8 looks up trusted
keys from that bundle. (An ``x5c`` chain would also do, but 2.8 insists the
leaf certificate carries the digitalSignature key usage, which the lab CA does
not set.)

Grants: users from ``--users`` (HTTP basic, or an OAuth2 refresh token via
POST) get every action they ask for; anonymous clients get ``pull`` on the
``--public`` repositories only. Every request is logged as one line on
stdout (``token grant=... user=... scope=... granted=...``) so tests can
count token fetches. Secrets are never logged.

    python -m lab.token_server --port 5001 --tls-cert c --tls-key k \\
        --signing-cert s.crt --signing-key s.key --issuer lab --service registry \\
        --users users.json --public library/busybox
"""
from __future__ import annotations

import argparse
import base64
import binascii
import datetime
import hashlib
import hmac
import json
import secrets
import ssl
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


def libtrust_key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """docker/libtrust's key ID: base32 of the first 240 bits of sha256(DER SPKI), in groups of 4."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i:i + 4] for i in range(0, len(encoded), 4))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class TokenIssuer:
    """Signs registry access tokens with an ES256 key."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, issuer: str, service: str, expires_in: int) -> None:
        self.key = key
        self.issuer = issuer
        self.service = service
        self.expires_in = expires_in
        self.key_id = libtrust_key_id(key.public_key())

    def token(self, subject: str, access: list[dict]) -> str:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "ES256", "kid": self.key_id}
        # docker-registry 2.8 reads "aud" as a single string.
        claims = {"iss": self.issuer, "sub": subject, "aud": self.service, "exp": now + self.expires_in,
                  "nbf": now - 10, "iat": now, "jti": secrets.token_hex(16), "access": access}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


class Accounts:
    """Users (name -> password), refresh tokens (token -> name) and anonymously pullable repositories."""

    def __init__(self, users: dict[str, str], refresh_tokens: dict[str, str], public: frozenset[str]) -> None:
        self.users = users
        self.refresh_tokens = refresh_tokens
        self.public = public

    def check_password(self, name: str, password: str) -> bool:
        expected = self.users.get(name)
        return expected is not None and hmac.compare_digest(expected.encode(), password.encode())

    def user_for_refresh_token(self, token: str) -> str | None:
        return next((user for known, user in self.refresh_tokens.items()
                     if hmac.compare_digest(known.encode(), token.encode())), None)

    def grant(self, user: str | None, scope: str) -> dict | None:
        """The access entry for one ``repository:name:actions`` scope, or None when malformed."""
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        if kind != "repository" or not name:
            return None
        wanted = [action for action in actions.split(",") if action]
        if user is None:
            wanted = [action for action in wanted if action == "pull" and name in self.public]
        return {"type": kind, "name": name, "actions": wanted}


def make_handler(issuer: TokenIssuer, accounts: Accounts) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            user = self._basic_user()
            if user is False:
                return self._refuse("basic")
            self._issue("basic" if user else "anonymous", user or None, query)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = parse_qs(self.rfile.read(length).decode())
            if form.get("grant_type") != ["refresh_token"]:
                return self._reply(400, {"error": "unsupported_grant_type"})
            user = accounts.user_for_refresh_token(form.get("refresh_token", [""])[0])
            if user is None:
                return self._refuse("refresh_token")
            self._issue("refresh_token", user, form)

        def _basic_user(self) -> str | None | bool:
            """The authenticated user, None when anonymous, False when the credentials are wrong."""
            header = self.headers.get("Authorization", "")
            if not header.startswith("Basic "):
                return None
            try:
                name, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            return name if accounts.check_password(name, password) else False

        def _issue(self, grant: str, user: str | None, params: dict[str, list[str]]) -> None:
            if params.get("service") != [issuer.service]:
                return self._reply(400, {"error": "invalid_request", "error_description": "unknown service"})
            access = [entry for scope in params.get("scope", []) if (entry := accounts.grant(user, scope))]
            token = issuer.token(user or "", access)
            granted = ";".join(f"{entry['name']}:{','.join(entry['actions'])}" for entry in access)
            print(f"token grant={grant} user={user or '-'} scope={' '.join(params.get('scope', []))} "
                  f"granted={granted}", flush=True)
            issued = datetime.datetime.now(datetime.timezone.utc).isoformat()
            self._reply(200, {"token": token, "access_token": token, "expires_in": issuer.expires_in,
                              "issued_at": issued})

        def _refuse(self, grant: str) -> None:
            print(f"token grant={grant} refused", flush=True)
            self._reply(401, {"error": "invalid_client"}, {"WWW-Authenticate": 'Basic realm="lab-token"'})

        def _reply(self, status: int, document: dict, headers: dict[str, str] | None = None) -> None:
            body = json.dumps(document).encode()
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # one line per token request is printed by _issue/_refuse instead

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tls-cert", type=Path, required=True)
    parser.add_argument("--tls-key", type=Path, required=True)
    parser.add_argument("--signing-cert", type=Path, required=True,
                        help="certificate of the signing key (the registry's rootcertbundle)")
    parser.add_argument("--signing-key", type=Path, required=True)
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--service", required=True)
    parser.add_argument("--users", type=Path,
                        help='JSON file: {"users": {name: password}, "refresh_tokens": {token: name}}')
    parser.add_argument("--public", action="append", default=[], help="repository anyone may pull")
    parser.add_argument("--expires-in", type=int, default=300)
    args = parser.parse_args(argv)

    key = serialization.load_pem_private_key(args.signing_key.read_bytes(), None)
    certificate = x509.load_pem_x509_certificate(args.signing_cert.read_bytes())
    if not isinstance(key, ec.EllipticCurvePrivateKey) or certificate.public_key() != key.public_key():
        sys.exit("the signing key must be a P-256 key matching --signing-cert")
    document = json.loads(args.users.read_text()) if args.users else {}
    accounts = Accounts(document.get("users", {}), document.get("refresh_tokens", {}), frozenset(args.public))
    issuer = TokenIssuer(key, args.issuer, args.service, args.expires_in)

    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(issuer, accounts))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(args.tls_cert), str(args.tls_key))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"token server on https://127.0.0.1:{args.port}/token (kid {issuer.key_id})", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
