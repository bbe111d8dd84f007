"""The client layer: an authenticated ``ApiClient`` and a thin raw-JSON API over it.

Connection options use kubernetes.core's names and ``K8S_AUTH_*`` environment
fallbacks, so a playbook that works with ``kubernetes.core.k8s`` works here
unchanged. Requests go by path through ``ApiClient.call_api`` and return plain
``dict`` objects: no model deserialization, which is what makes listing a large
cluster cheap.
"""

from __future__ import annotations

import copy
import json
import math
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from ansible_collections.imageclone.backup.plugins.module_utils.credentials import basic_token
from ansible_collections.imageclone.backup.plugins.module_utils.kinds import Resource
from ansible_collections.imageclone.backup.plugins.module_utils.proxies import Proxy, ProxyEnvironment

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
DEFAULT_CONNECT_TIMEOUT: Final = 10.0
DEFAULT_READ_TIMEOUT: Final = 60.0
# A watch's read timeout is its own duration plus this: bookmarks and the server's own end come sooner.
WATCH_READ_SLACK: Final = 60.0

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

    @property
    def expired(self) -> bool:
        """410 Gone: a resourceVersion or continue token too old to resume from; list again."""
        return self.status == 410


@dataclass(frozen=True)
class Timeouts:
    """How long to wait for the API server, in seconds: to connect, and for each read of an answer."""

    connect: float = DEFAULT_CONNECT_TIMEOUT
    read: float = DEFAULT_READ_TIMEOUT

    def __post_init__(self) -> None:
        for name in ("connect", "read"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"the API {name} timeout must be a number of seconds above 0, got {value!r}")

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Timeouts:
        """``api_connect_timeout`` and ``api_read_timeout`` from connection options; absent means default."""
        given = {field: options.get(f"api_{field}_timeout") for field in ("connect", "read")}
        try:
            return cls(**{field: float(value) for field, value in given.items() if value is not None})
        except (TypeError, ValueError) as error:
            raise KubeConfigError(str(error)) from None

    @property
    def for_request(self) -> tuple[float, float]:
        """What ``_request_timeout`` takes: the client honours a (connect, read) tuple, and silently
        ignores a float."""
        return (float(self.connect), float(self.read))


@dataclass(frozen=True)
class Page:
    """One page of a list: its objects, the snapshot's ``resourceVersion``, the token of the next page."""

    items: list[dict[str, Any]]
    resource_version: str
    next: str | None


class WatchStream:
    """The events of one watch, as they arrive; a context manager that gives the connection back.

    Iterating yields each event (``type`` and ``object``); an ``ERROR`` event
    raises ``KubeApiError`` (``expired`` for 410 Gone: relist). ``close``, from
    any thread, ends the iteration at once.
    """

    def __init__(self, response: Any, what: str,
                 transport_error: Callable[[str, str, Any], KubeApiError]) -> None:
        self._response = response
        self._what = what
        self._transport_error = transport_error

    def __enter__(self) -> WatchStream:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._response.release_conn()

    def close(self) -> None:
        try:
            self._response.shutdown()  # unblocks a reading thread at once (urllib3 >= 2.3)
        except Exception:  # noqa: BLE001 - best effort: the reading thread then ends at its read timeout
            pass

    def __iter__(self) -> Iterator[dict[str, Any]]:
        try:
            for line in _lines(self._response):
                event = json.loads(line)
                if not isinstance(event, dict):
                    continue
                if event.get("type") == "ERROR":
                    raise _watch_error(self._what, event.get("object") or {})
                yield event
        except urllib3.exceptions.HTTPError as error:
            verb, target = self._what.split(" ", 1)
            raise self._transport_error(verb, target, error) from None


def _lines(response: Any) -> Iterator[bytes]:
    """Complete lines of a chunked watch stream, as they arrive."""
    pending = b""
    for chunk in response.stream(amt=None, decode_content=False):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            if line.strip():
                yield line
    if pending.strip():
        yield pending


def _watch_error(what: str, status: Mapping[str, Any]) -> KubeApiError:
    verb, target = what.split(" ", 1)
    code = status.get("code")
    return KubeApiError(verb, target, code if isinstance(code, int) else None, str(status.get("reason") or "Error"),
                        _shorten(str(status.get("message") or "no details from the server")))


def _selectors(label_selector: str | None, field_selector: str | None) -> Query:
    return [(name, value) for name, value in (("labelSelector", label_selector), ("fieldSelector", field_selector))
            if value]


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
    options: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None, pool_size: int = 0
) -> k8s_client.ApiClient:
    """An ``ApiClient`` configured like kubernetes.core would from the same options.

    ``host`` with a token, username and password, or client certificate and key
    is used as is. Otherwise ``kubeconfig`` (a path or a dict) and ``context``
    are loaded when given; with neither, the in-cluster service account is used
    when running in a pod, else the default kubeconfig. Explicit options then
    override what was loaded. The API server is reached through ``proxy`` when
    given, else through the proxy ``HTTPS_PROXY``/``NO_PROXY`` name for its URL
    (see ``proxies``), else direct. Keeps at least ``pool_size`` connections
    (one per thread that may use it at once). Never touches the client
    library's global default configuration. Raises ``KubeConfigError``.
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
    _route(configuration, auth.get("proxy"), os.environ if environ is None else environ)
    # urllib3 retries a GET once after a read error (a pooled keep-alive connection the server
    # closed fails that way), never a write; so a stalled API server fails a GET after at most
    # twice the read timeout and a write after one.
    configuration.retries = urllib3.util.Retry(total=3, connect=2, read=1, redirect=0, status=0, other=0)
    # A full pool discards connections with a warning on stderr: size it for every thread.
    configuration.connection_pool_maxsize = max(configuration.connection_pool_maxsize, pool_size)
    return k8s_client.ApiClient(configuration)


def api_from_options(connection: Mapping[str, Any], pool_size: int = 0) -> KubeApi:
    """A ``KubeApi`` from kubernetes.core-style connection options (``K8S_AUTH_*`` fallbacks) and
    ``api_connect_timeout`` / ``api_read_timeout``, for up to ``pool_size`` threads at once."""
    return KubeApi(new_api_client(connection, pool_size=pool_size), timeouts=Timeouts.from_options(connection))


def pooled_copy(base: k8s_client.ApiClient, pool_size: int, user_agent: str | None = None) -> k8s_client.ApiClient:
    """A client for the same server, credentials and retries as ``base``, with its own pool of
    ``pool_size`` connections (one per thread that may use it at once) and ``user_agent``."""
    configuration = copy.deepcopy(base.configuration)
    configuration.connection_pool_maxsize = pool_size
    client = k8s_client.ApiClient(configuration)
    if user_agent:
        client.user_agent = user_agent
    return client


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
        configuration.api_key = {"authorization": f"Basic {basic_token(auth['username'], auth['password'])}"}
        configuration.api_key_prefix = {}


def _route(configuration: k8s_client.Configuration, explicit: str | None, environ: Mapping[str, str]) -> None:
    """Set the client's proxy by the one rule. Left alone, the client takes ``HTTP_PROXY`` over
    ``HTTPS_PROXY`` for an https server and forgets ``NO_PROXY``; and it never sends a proxy URL's
    credentials, which therefore go in ``Proxy-Authorization`` and never in ``configuration.proxy``."""
    host = str(configuration.host)
    try:
        proxy = Proxy.parse(explicit) if explicit else ProxyEnvironment.from_environ(environ).proxy_for(host)
    except ValueError as error:
        raise KubeConfigError(f"no proxy for the API server {host}: {error}") from None
    configuration.proxy = proxy.url if proxy else None
    configuration.proxy_headers = proxy.headers() if proxy else None
    configuration.no_proxy = None


class KubeApi:
    """Raw JSON requests by path. Thread-safe as far as the ``ApiClient`` is.

    ``writes`` counts every non-GET request sent by this instance (failed
    ones included, server-side dry runs counted apart in ``dry_run_writes``),
    which lets callers prove that converged objects cost no write at all.
    ``write_guard(verb, target)``, when given, runs before every write and
    may refuse it by raising ``KubeApiError`` (the controller's leadership).
    """

    def __init__(
        self,
        api_client: k8s_client.ApiClient,
        *,
        field_manager: str = FIELD_MANAGER,
        page_size: int = DEFAULT_PAGE_SIZE,
        timeouts: Timeouts = Timeouts(),
        write_guard: Callable[[str, str], None] | None = None,
    ) -> None:
        self.api_client = api_client
        self.field_manager = field_manager
        self.page_size = page_size
        self.timeouts = timeouts
        self._write_guard = write_guard
        self._writes = 0
        self._dry_run_writes = 0
        self._lock = threading.Lock()

    @property
    def server(self) -> str:
        """The API server's URL, as errors name it."""
        return str(self.api_client.configuration.host)

    @property
    def writes(self) -> int:
        """Writes sent for real (server-side dry runs not included)."""
        return self._writes

    @property
    def dry_run_writes(self) -> int:
        """Server-side dry-run writes sent (check mode, ``--dryRun``): nothing was stored."""
        return self._dry_run_writes

    def list(
        self, resource: Resource, namespace: str | None = None, label_selector: str | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        """Every object of ``resource`` (in ``namespace``, or all namespaces when None).

        Pages with ``limit``/``continue``; all pages come from one snapshot,
        whose ``resourceVersion`` is returned with the items. Items get their
        ``apiVersion`` and ``kind``, which list responses leave out.
        """
        items: list[dict[str, Any]] = []
        page = Page([], "", None)
        while True:
            page = self.list_page(resource, namespace, label_selector=label_selector, continue_token=page.next)
            items.extend(page.items)
            if page.next is None:
                break
        for item in items:
            item.setdefault("apiVersion", resource.api_version)
            item.setdefault("kind", resource.name)
        return items, page.resource_version

    def list_page(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        continue_token: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Page:
        """One page of a list (``page_size`` objects at most), for callers that handle a page at a time.

        A ``continue_token`` too old to resume raises ``KubeApiError`` with ``expired``.
        """
        query: Query = [("limit", self.page_size)]
        query += _selectors(label_selector, field_selector)
        if continue_token:
            query.append(("continue", continue_token))
        page = self._call("list", _collection_target(resource, namespace), "GET", resource.path(namespace), query)
        metadata = page.get("metadata") or {}
        items = page.get("items") or []
        return Page(items if isinstance(items, list) else [], str(metadata.get("resourceVersion") or ""),
                    metadata.get("continue") or None)

    def watch(
        self,
        resource: Resource,
        namespace: str | None,
        resource_version: str,
        *,
        timeout_seconds: int,
        field_selector: str | None = None,
    ) -> WatchStream:
        """Changes to ``resource`` after ``resource_version``, with bookmarks, until the server ends the
        watch after ``timeout_seconds``. A dead connection is noticed ``WATCH_READ_SLACK`` seconds later."""
        query: Query = [("watch", "true"), ("allowWatchBookmarks", "true"),
                        ("resourceVersion", resource_version), ("timeoutSeconds", timeout_seconds)]
        query += _selectors(None, field_selector)
        target = _collection_target(resource, namespace)
        timeouts = (self.timeouts.for_request[0], float(timeout_seconds) + WATCH_READ_SLACK)
        response = self._send("watch", target, "GET", resource.path(namespace), query, timeouts=timeouts)
        return WatchStream(response, f"watch {target}", self._transport_error)

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

    def delete(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any]:
        """Delete ``name`` (in the background: dependents are collected by the server); returns its Status."""
        return self._call("delete", _object_target(resource, namespace, name), "DELETE",
                          resource.path(namespace, name), [("propagationPolicy", "Background")])

    def text(self, path: str) -> str:
        """The body of a GET of ``path`` that is not an API object, such as ``/metrics``."""
        response = self._send("get", path, "GET", path)
        try:
            return response.data.decode(errors="replace")
        finally:
            response.release_conn()

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
        """The JSON object one request answers with."""
        response = self._send(verb, target, method, path, query, body, content_type)
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

    def _send(
        self,
        verb: str,
        target: str,
        method: str,
        path: str,
        query: Query | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeouts: tuple[float, float] | None = None,
    ) -> Any:
        """The unread response of one request; ``KubeApiError`` for an error status or no answer.

        Every request passes here, so every write meets the write guard and is counted.
        """
        if method != "GET":
            if self._write_guard is not None:
                self._write_guard(verb, target)
            with self._lock:
                if ("dryRun", "All") in (query or ()):
                    self._dry_run_writes += 1
                else:
                    self._writes += 1
        headers = {"Accept": "application/json", "Content-Type": content_type}
        try:
            return self.api_client.call_api(
                path, method, query_params=query or [], header_params=headers, body=body,
                auth_settings=["BearerToken"], _preload_content=False,
                _return_http_data_only=True, _request_timeout=timeouts or self.timeouts.for_request,
            )
        except ApiException as error:
            raise _api_error(verb, target, error) from None
        except urllib3.exceptions.HTTPError as error:
            raise self._transport_error(verb, target, error) from None

    def _transport_error(self, verb: str, target: str, error: urllib3.exceptions.HTTPError) -> KubeApiError:
        """No answer: name the API server and the timeout that ran out, if one did."""
        cause = error.reason if isinstance(error, urllib3.exceptions.MaxRetryError) and error.reason else error
        if isinstance(cause, urllib3.exceptions.ConnectTimeoutError):
            detail = f"could not connect to the API server {self.server} within {self.timeouts.connect:g}s"
            return KubeApiError(verb, target, None, "Timeout", detail)
        if isinstance(cause, urllib3.exceptions.ReadTimeoutError):
            detail = f"the API server {self.server} did not answer within {self.timeouts.read:g}s"
            return KubeApiError(verb, target, None, "Timeout", detail)
        detail = f"the API server {self.server} could not be reached: {_shorten(str(cause))}"
        return KubeApiError(verb, target, None, type(cause).__name__, detail)


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
