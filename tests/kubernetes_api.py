"""A stand-in for the Kubernetes API server, as Feast's ``KubernetesTokenParser`` talks to
it from a pod: HTTPS with the cluster's CA, ``TokenReview``s answered from the tokens it
was told of, and the RBAC role bindings it holds listed (namespaced, all namespaces,
cluster-wide). ``in_cluster_env()`` gives a server process what a pod gives it: the
API server's address, and the service account's token, CA and namespace files (at paths
of the test's own, set by a ``sitecustomize`` on the process' path)."""

from __future__ import annotations

import json
import re
import ssl
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt

from .redis_servers import make_tls_files

# What the test's servers are run as: the namespace their role bindings are read in.
SERVER_NAMESPACE = "feast"
_RBAC = "/apis/rbac.authorization.k8s.io/v1"

_SITECUSTOMIZE = '''\
"""Points Kubernetes' in-cluster configuration, and Feast's namespace file, at this
test's files (a pod has them under /var/run/secrets)."""
import os

if "FEAST_TEST_SERVICEACCOUNT_DIR" in os.environ:
    from kubernetes.config import incluster_config

    _directory = os.environ["FEAST_TEST_SERVICEACCOUNT_DIR"]
    incluster_config.SERVICE_TOKEN_FILENAME = os.path.join(_directory, "token")
    incluster_config.SERVICE_CERT_FILENAME = os.path.join(_directory, "ca.crt")

    import feast.permissions.auth.kubernetes_token_parser as _parser

    _parser._namespace_file_path = os.path.join(_directory, "namespace")
'''


def service_account_token(namespace: str, name: str, lifetime: float = 3600) -> str:
    """A service account's token as Kubernetes issues it (a JWT whose ``sub`` names it).
    Its signature is Kubernetes' business: TokenReview says whether it is one."""
    now = int(time.time())
    claims = {
        "sub": f"system:serviceaccount:{namespace}:{name}",
        "iss": "https://kubernetes.default.svc",
        "iat": now,
        "exp": now + int(lifetime),
        "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name}},
    }
    return jwt.encode(claims, "the cluster's signing key, unknown to Feast", algorithm="HS256")


class KubernetesApi:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.tls = make_tls_files(workdir / "tls")
        # Token to (username, groups) for TokenReview; any other token is not authenticated.
        self.users: dict[str, tuple[str, list[str]]] = {}
        self.role_bindings: list[dict] = []
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.tls.server_cert, self.tls.server_key)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add_token(self, token: str, username: str, groups: list[str]) -> None:
        with self._lock:
            self.users[token] = (username, groups)

    def revoke(self, token: str) -> None:
        with self._lock:
            self.users.pop(token, None)

    def bind(
        self, namespace: str, role: str, kind: str, name: str, subject_namespace: str = ""
    ) -> None:
        """A RoleBinding in ``namespace`` of ``role`` to a subject (``ServiceAccount``,
        ``User`` or ``Group``)."""
        subject = {"kind": kind, "name": name}
        if subject_namespace:
            subject["namespace"] = subject_namespace
        with self._lock:
            self.role_bindings.append(
                {
                    "metadata": {
                        "name": f"{role}-{len(self.role_bindings)}",
                        "namespace": namespace,
                    },
                    "subjects": [subject],
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "Role",
                        "name": role,
                    },
                }
            )

    def token_reviews(self) -> int:
        return self.requests["tokenreviews"]

    def in_cluster_env(self, env: dict[str, str]) -> dict[str, str]:
        """``env`` with what a pod's server process is given (and the sitecustomize that
        points Kubernetes' client at it)."""
        directory = self.workdir / "serviceaccount"
        directory.mkdir(exist_ok=True)
        (directory / "token").write_text(service_account_token(SERVER_NAMESPACE, "feature-server"))
        (directory / "ca.crt").write_bytes(self.tls.ca_cert.read_bytes())
        (directory / "namespace").write_text(SERVER_NAMESPACE)
        site = self.workdir / "site"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(_SITECUSTOMIZE)
        return {
            **env,
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(self.port),
            "FEAST_TEST_SERVICEACCOUNT_DIR": str(directory),
            "PYTHONPATH": str(site),
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _answer(self, status: int, body: dict) -> None:
                content = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def _bindings(self, kind: str, namespace: str | None) -> dict:
                with api._lock:
                    items = [
                        b
                        for b in api.role_bindings
                        if namespace in (None, b["metadata"]["namespace"])
                    ]
                return {
                    "kind": kind,
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "metadata": {},
                    "items": items,
                }

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                review = json.loads(self.rfile.read(length))
                if self.path != "/apis/authentication.k8s.io/v1/tokenreviews":
                    self._answer(404, {"kind": "Status", "code": 404})
                    return
                with api._lock:
                    api.requests["tokenreviews"] += 1
                    user = api.users.get(review["spec"]["token"])
                status = (
                    {"authenticated": True, "user": {"username": user[0], "groups": user[1]}}
                    if user
                    else {"authenticated": False, "error": "invalid bearer token"}
                )
                self._answer(
                    201,
                    {
                        "kind": "TokenReview",
                        "apiVersion": "authentication.k8s.io/v1",
                        "spec": review["spec"],
                        "status": status,
                    },
                )

            def do_GET(self) -> None:
                path = self.path.partition("?")[0]
                with api._lock:
                    api.requests[path] += 1
                namespaced = re.fullmatch(rf"{_RBAC}/namespaces/([^/]+)/rolebindings", path)
                if namespaced:
                    self._answer(200, self._bindings("RoleBindingList", namespaced[1]))
                elif path == f"{_RBAC}/rolebindings":
                    self._answer(200, self._bindings("RoleBindingList", None))
                elif path == f"{_RBAC}/clusterrolebindings":
                    self._answer(
                        200, {"kind": "ClusterRoleBindingList", "metadata": {}, "items": []}
                    )
                else:
                    self._answer(404, {"kind": "Status", "code": 404})

        return Handler
