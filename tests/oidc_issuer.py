"""An OIDC issuer made at test time (and for make bench): a discovery document and a
JWKS on a free loopback port, and RS256 tokens signed with its key, in the shape
Keycloak gives Feast (roles under ``resource_access.<client id>.roles``)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

CLIENT_ID = "feast-test"


class Issuer:
    """An OIDC issuer on a free loopback port: discovery document and JWKS, and tokens
    signed with its key."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update({"kid": "test-key", "use": "sig", "alg": "RS256"})
        documents: dict[str, dict] = {"/jwks": {"keys": [jwk]}}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                document = documents.get(self.path)
                body = json.dumps(document or {}).encode()
                self.send_response(200 if document else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        documents["/.well-known/openid-configuration"] = {
            "issuer": self.url,
            "authorization_endpoint": f"{self.url}/auth",
            "token_endpoint": f"{self.url}/token",
            "jwks_uri": f"{self.url}/jwks",
        }
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, roles: list[str], key=None, lifetime: int = 3600) -> str:
        now = int(time.time())
        claims = {
            "preferred_username": "tester",
            "resource_access": {CLIENT_ID: {"roles": roles}},
            "iat": now,
            "exp": now + lifetime,
            "iss": self.url,
            # Each token its own, as an issuer's are.
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, key or self.key, algorithm="RS256", headers={"kid": "test-key"})

    def stop(self) -> None:
        self.server.shutdown()
