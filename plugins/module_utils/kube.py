"""The client layer: an authenticated ``ApiClient`` and a thin raw-JSON API over it.

Connection options use kubernetes.core's names and ``K8S_AUTH_*`` environment
fallbacks, so a playbook that works with ``kubernetes.core.k8s`` works here
unchanged. Requests go by path through ``ApiClient.call_api`` and return plain
``dict`` objects: no model deserialization, which is what makes listing a large
cluster cheap.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import quote

try:
    import urllib3
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config
    from kubernetes.client.exceptions import ApiException
except ImportError as error:  # Ansible modules report it through missing_required_lib
    KUBERNETES_IMPORT_ERROR: ImportError | None = error
else:
    KUBERNETES_IMPORT_ERROR = None

PatchType = Literal["strategic", "merge", "json"]
# Query parameters in request order; named here because KubeApi.list shadows ``list`` in the class.
Query = list[tuple[str, Any]]

PATCH_CONTENT_TYPES: Final[dict[str, str]] = {
    "strategic": "application/strategic-merge-patch+json",
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
}
FIELD_MANAGER: Final = "image-clone"
DEFAULT_PAGE_SIZE: Final = 500
DEFAULT_TIMEOUT: Final = 60.0

# Option name -> environment variables, first match wins. Both spellings that
# kubernetes.core reads (its option name and the client's attribute name).
CONNECTION_ENV: Final[dict[str, tuple[str, ...]]] = {
    "kubeconfig": ("K8S_AUTH_KUBECONFIG",),
    "context": ("K8S_AUTH_CONTEXT",),
    "host": ("K8S_AUTH_HOST",),
    "api_key": ("K8S_AUTH_API_KEY",),
    "username": ("K8S_AUTH_USERNAME",),
    "password": ("K8S_AUTH_PASSWORD",),
    "validate_certs": ("K8S_AUTH_VALIDATE_CERTS", "K8S_AUTH_VERIFY_SSL"),
    "ca_cert": ("K8S_AUTH_CA_CERT", "K8S_AUTH_SSL_CA_CERT"),
    "client_cert": ("K8S_AUTH_CLIENT_CERT", "K8S_AUTH_CERT_FILE"),
    "client_key": ("K8S_AUTH_CLIENT_KEY", "K8S_AUTH_KEY_FILE"),
    "proxy": ("K8S_AUTH_PROXY",),
}
_CONFIGURATION_ATTRIBUTES: Final = {
    "host": "host",
    "validate_certs": "verify_ssl",
    "ca_cert": "ssl_ca_cert",
    "client_cert": "cert_file",
    "client_key": "key_file",
    "proxy": "proxy",
}
_FALSE_WORDS: Final = frozenset({"0", "false", "no", "off"})
# Server messages can be huge (a 422 on an immutable field dumps the whole
# template between its first words and its verdict): keep both ends.
_MESSAGE_HEAD: Final = 240
_MESSAGE_TAIL: Final = 160


class KubeConfigError(Exception):
    """The connection options do not lead to a usable cluster configuration."""


class KubeApiError(Exception):
    """A failed API request.

    ``status`` is the HTTP status (``None`` when no response arrived),
    ``reason`` the Kubernetes ``Status`` reason (``Conflict``, ``Forbidden``,
    ``NotFound``, ``Invalid``...) and ``target`` names the object or
    collection. The message holds the verb, the target and the server's own
    message only: never request headers, request bodies or credentials.
    """

    def __init__(self, verb: str, target: str, status: int | None, reason: str, detail: str) -> None:
        super().__init__(verb, target, status, reason, detail)
        self.verb = verb
        self.target = target
        self.status = status
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        code = f" ({self.status})" if self.status is not None else ""
        return f"{self.verb} {self.target}: {self.reason}{code}: {self.detail}"

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def forbidden(self) -> bool:
        return self.status == 403

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def invalid(self) -> bool:
        return self.status == 422


@dataclass(frozen=True)
class Resource:
    """An API resource type: ``Kind`` name, ``group/version`` and plural path segment."""

    name: str
    api_version: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        """The request path of the collection (all namespaces when ``namespace`` is None) or of one object."""
        root = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        parts = [root]
        if self.namespaced and namespace is not None:
            parts.append(f"namespaces/{quote(namespace, safe='')}")
        parts.append(self.plural)
        if name is not None:
            parts.append(quote(name, safe=""))
        return "/".join(parts)


def connection_options(
    options: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The connection options in effect: given values, else their ``K8S_AUTH_*`` variables.

    Keys other than those of ``CONNECTION_ENV`` are ignored, so a module can
    pass all its parameters; ``None`` means "not given". ``validate_certs``
    from the environment is false for 0/false/no/off (any case).
    """
    options = options or {}
    environ = os.environ if environ is None else environ
    resolved: dict[str, Any] = {}
    for option, variables in CONNECTION_ENV.items():
        value = options.get(option)
        if value is None:
            value = next((environ[v] for v in variables if environ.get(v)), None)
            if value is not None and option == "validate_certs":
                value = value.strip().lower() not in _FALSE_WORDS
        if value is not None:
            resolved[option] = value
    return resolved


def new_api_client(
    options: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> k8s_client.ApiClient:
    """An ``ApiClient`` configured like kubernetes.core would from the same options.

    ``host`` with a token, username and password, or client certificate and key
    is used as is. Otherwise ``kubeconfig`` (a path or a dict) and ``context``
    are loaded when given; with neither, the in-cluster service account is used
    when running in a pod, else the default kubeconfig. Explicit options then
    override what was loaded. Never touches the client library's global default
    configuration. Raises ``KubeConfigError``.
    """
    if KUBERNETES_IMPORT_ERROR is not None:
        raise KubeConfigError(f"the kubernetes Python client cannot be imported: {KUBERNETES_IMPORT_ERROR}")
    auth = connection_options(options, environ)
    if auth.get("host"):
        auth["host"] = auth["host"].rstrip("/")
    configuration = k8s_client.Configuration()
    try:
        if not _self_sufficient(auth):
            _load(configuration, auth)
    except (k8s_config.ConfigException, OSError) as error:
        path = auth.get("kubeconfig")
        source = f" from {path}" if isinstance(path, (str, os.PathLike)) else ""
        raise KubeConfigError(f"could not load the Kubernetes configuration{source}: {error}") from None
    _override(configuration, auth)
    return k8s_client.ApiClient(configuration)


def _self_sufficient(auth: Mapping[str, Any]) -> bool:
    def given(*names: str) -> bool:
        return all(auth.get(name) for name in names)

    return given("host") and (
        given("api_key") or given("username", "password") or given("client_cert", "client_key")
    )


def _load(configuration: k8s_client.Configuration, auth: Mapping[str, Any]) -> None:
    if not (auth.get("kubeconfig") or auth.get("context")):
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)
            return
        except k8s_config.ConfigException:
            pass  # not in a pod: the default kubeconfig it is
    kubeconfig = auth.get("kubeconfig")
    context = auth.get("context")
    if isinstance(kubeconfig, Mapping):
        k8s_config.load_kube_config_from_dict(
            dict(kubeconfig), context=context, client_configuration=configuration,
            persist_config=False,
        )
    else:
        k8s_config.load_kube_config(
            config_file=os.fspath(kubeconfig) if kubeconfig else None, context=context,
            client_configuration=configuration, persist_config=False,
        )


def _override(configuration: k8s_client.Configuration, auth: Mapping[str, Any]) -> None:
    for option, attribute in _CONFIGURATION_ATTRIBUTES.items():
        if option in auth:
            setattr(configuration, attribute, auth[option])
    # The client only sends api_key["authorization"]: basic auth has to go there too.
    if auth.get("api_key"):
        configuration.api_key = {"authorization": f"Bearer {auth['api_key']}"}
        configuration.api_key_prefix = {}
    elif auth.get("username") and auth.get("password"):
        basic = urllib3.util.make_headers(basic_auth=f"{auth['username']}:{auth['password']}")
        configuration.api_key = {"authorization": basic["authorization"]}
        configuration.api_key_prefix = {}


class KubeApi:
    """Raw JSON requests by path. Thread-safe as far as the ``ApiClient`` is.

    ``writes`` counts every non-GET request sent by this instance (server-side
    dry runs and failed requests included), which lets callers prove that
    converged objects cost no write at all.
    """

    def __init__(
        self,
        api_client: k8s_client.ApiClient,
        *,
        field_manager: str = FIELD_MANAGER,
        page_size: int = DEFAULT_PAGE_SIZE,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        self.api_client = api_client
        self.field_manager = field_manager
        self.page_size = page_size
        self.timeout = timeout
        self._writes = 0
        self._lock = threading.Lock()

    @property
    def writes(self) -> int:
        return self._writes

    def list(
        self, resource: Resource, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        """Every object of ``resource`` (in ``namespace``, or all namespaces when None).

        Pages with ``limit``/``continue``; all pages come from one snapshot,
        whose ``resourceVersion`` is returned with the items. Items get their
        ``apiVersion`` and ``kind``, which list responses leave out.
        """
        query: Query = [("limit", self.page_size)]
        if label_selector:
            query.append(("labelSelector", label_selector))
        target = _collection_target(resource, namespace)
        items: list[dict[str, Any]] = []
        token = None
        while True:
            page = self._call(
                "list", target, "GET", resource.path(namespace),
                query + ([("continue", token)] if token else []),
            )
            items.extend(page.get("items") or [])
            metadata = page.get("metadata") or {}
            token = metadata.get("continue")
            if not token:
                break
        for item in items:
            item.setdefault("apiVersion", resource.api_version)
            item.setdefault("kind", resource.name)
        return items, metadata.get("resourceVersion", "")

    def get(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any]:
        """The object ``name``; ``KubeApiError`` (``not_found``) when it does not exist."""
        return self._call(
            "get", _object_target(resource, namespace, name), "GET", resource.path(namespace, name)
        )

    def patch(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        body: Any,
        patch_type: PatchType = "strategic",
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Patch ``name`` and return the object as stored (or as it would be, with ``dry_run``)."""
        if patch_type not in PATCH_CONTENT_TYPES:
            raise ValueError(f"patch_type must be one of {', '.join(PATCH_CONTENT_TYPES)}")
        return self._call(
            "patch", _object_target(resource, namespace, name), "PATCH",
            resource.path(namespace, name), self._write_query(dry_run), body,
            PATCH_CONTENT_TYPES[patch_type],
        )

    def create(
        self, resource: Resource, namespace: str | None, body: Mapping[str, Any], dry_run: bool = False
    ) -> dict[str, Any]:
        """Create ``body`` and return the stored object (``conflict`` when it already exists)."""
        name = (body.get("metadata") or {}).get("name", "")
        return self._call(
            "create", _object_target(resource, namespace, name), "POST",
            resource.path(namespace), self._write_query(dry_run), dict(body),
        )

    def replace(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        body: Mapping[str, Any],
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Replace ``name`` with ``body``; a ``metadata.resourceVersion`` in it makes this conditional."""
        return self._call(
            "replace", _object_target(resource, namespace, name), "PUT",
            resource.path(namespace, name), self._write_query(dry_run), dict(body),
        )

    def _write_query(self, dry_run: bool) -> Query:
        query: Query = [("fieldManager", self.field_manager)]
        if dry_run:
            query.append(("dryRun", "All"))
        return query

    def _call(
        self,
        verb: str,
        target: str,
        method: str,
        path: str,
        query: Query | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        if method != "GET":
            with self._lock:
                self._writes += 1
        headers = {"Accept": "application/json", "Content-Type": content_type}
        try:
            response = self.api_client.call_api(
                path, method, query_params=query or [], header_params=headers, body=body,
                auth_settings=["BearerToken"], _preload_content=False,
                _return_http_data_only=True, _request_timeout=self.timeout,
            )
        except ApiException as error:
            raise _api_error(verb, target, error) from None
        except urllib3.exceptions.HTTPError as error:
            raise KubeApiError(verb, target, None, type(error).__name__, str(error)) from None
        try:
            document = json.loads(response.data)
        except ValueError:
            document = None
        finally:
            response.release_conn()
        if not isinstance(document, dict):
            # A proxy's HTML page, say: nothing a caller could act on as an object.
            detail = "the answer is not a JSON object"
            raise KubeApiError(verb, target, response.status, "InvalidResponse", detail)
        return document


def _api_error(verb: str, target: str, error: ApiException) -> KubeApiError:
    """Build the error from the server's ``Status`` only; ``str(ApiException)`` dumps headers."""
    if not error.status:
        # The client reports TLS failures as status 0 with the cause in ``reason``.
        return KubeApiError(verb, target, None, "ConnectionError", _shorten(str(error.reason)))
    status: dict[str, Any] = {}
    try:
        parsed = json.loads(error.body or b"")
        status = parsed if isinstance(parsed, dict) else {}
    except ValueError:
        pass
    reason = status.get("reason") or error.reason or "Error"
    detail = status.get("message") or error.reason or "no details from the server"
    return KubeApiError(verb, target, error.status, str(reason), _shorten(str(detail)))


def _shorten(text: str) -> str:
    if len(text) <= _MESSAGE_HEAD + _MESSAGE_TAIL:
        return text
    return f"{text[:_MESSAGE_HEAD]} ... {text[-_MESSAGE_TAIL:]}"


def _object_target(resource: Resource, namespace: str | None, name: str) -> str:
    return f"{resource.name} {namespace}/{name}" if resource.namespaced else f"{resource.name} {name}"


def _collection_target(resource: Resource, namespace: str | None) -> str:
    if not resource.namespaced:
        return resource.plural
    where = f"namespace {namespace}" if namespace is not None else "all namespaces"
    return f"{resource.plural} in {where}"
