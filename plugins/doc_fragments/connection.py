# -*- coding: utf-8 -*-
# Copyright: image-clone maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""How image-clone modules reach a Kubernetes API server (kubernetes.core's option names)."""

from __future__ import annotations


class ModuleDocFragment:
    """The Kubernetes connection options, spelled and resolved like kubernetes.core's.

    An option left unset falls back to its C(K8S_AUTH_*) environment variable
    (the engine's ``kube.connection_options`` resolves them), so a playbook or
    environment that works with M(kubernetes.core.k8s) works unchanged.
    """

    DOCUMENTATION = r"""
options:
  kubeconfig:
    description:
      - Path to a kubeconfig file, or the kubeconfig itself as a dictionary.
      - If not set, the E(K8S_AUTH_KUBECONFIG) environment variable is used.
      - When neither O(kubeconfig) nor O(context) is given and O(host) with credentials is not
        enough on its own, the in-cluster service account is used when running in a pod,
        else the default kubeconfig (E(KUBECONFIG) or C(~/.kube/config)).
    type: raw
  context:
    description:
      - The name of a context in the kubeconfig.
      - If not set, the E(K8S_AUTH_CONTEXT) environment variable is used.
    type: str
  host:
    description:
      - The URL of the API server, for example V(https://k8s.example.com:6443).
      - If not set, the E(K8S_AUTH_HOST) environment variable is used.
      - With O(api_key), O(username) and O(password), or O(client_cert) and O(client_key), no
        kubeconfig is loaded at all.
    type: str
  api_key:
    description:
      - A bearer token for the API server.
      - If not set, the E(K8S_AUTH_API_KEY) environment variable is used.
    type: str
  username:
    description:
      - A username for HTTP basic authentication to the API server (only clusters configured
        for basic authentication accept it).
      - If not set, the E(K8S_AUTH_USERNAME) environment variable is used.
    type: str
  password:
    description:
      - The password that goes with O(username).
      - If not set, the E(K8S_AUTH_PASSWORD) environment variable is used.
    type: str
  validate_certs:
    description:
      - Whether to verify the API server's TLS certificate.
      - If not set, the E(K8S_AUTH_VALIDATE_CERTS) or E(K8S_AUTH_VERIFY_SSL) environment
        variable is used (V(0), V(false), V(no) and V(off) mean false); else the kubeconfig decides.
    type: bool
    aliases: [verify_ssl]
  ca_cert:
    description:
      - Path to the CA certificate (the full chain) that signed the API server's certificate.
      - If not set, the E(K8S_AUTH_CA_CERT) or E(K8S_AUTH_SSL_CA_CERT) environment variable is used.
    type: path
    aliases: [ssl_ca_cert]
  client_cert:
    description:
      - Path to a client certificate to authenticate to the API server.
      - If not set, the E(K8S_AUTH_CLIENT_CERT) or E(K8S_AUTH_CERT_FILE) environment variable is used.
    type: path
    aliases: [cert_file]
  client_key:
    description:
      - Path to the private key of O(client_cert).
      - If not set, the E(K8S_AUTH_CLIENT_KEY) or E(K8S_AUTH_KEY_FILE) environment variable is used.
    type: path
    aliases: [key_file]
  proxy:
    description:
      - The URL of an HTTP proxy for the API server connection, used whatever E(NO_PROXY) says; a
        C(user:password@) in it is sent as C(Proxy-Authorization).
      - If not set, the E(K8S_AUTH_PROXY) environment variable is used. Without either, the API server
        connection follows E(HTTPS_PROXY) and E(NO_PROXY) by the rule every connection of image-clone
        follows (docs/proxies.md).
    type: str
  api_connect_timeout:
    description:
      - Seconds to wait for a connection to the API server before the request fails.
      - The default is 10 seconds.
    type: float
  api_read_timeout:
    description:
      - Seconds to wait for each read of an API server's answer before the request fails, so a stalled
        API server fails the task with an error that names it instead of hanging.
      - A read (C(GET)) is tried once more after a read error, so it fails after at most twice this time;
        a write is never repeated.
      - The default is 60 seconds.
    type: float
notes:
  - The connection options have the names, aliases and E(K8S_AUTH_*) environment fallbacks of
    the M(kubernetes.core.k8s) module, so C(module_defaults) written for kubernetes.core work here.
requirements:
  - the kubernetes Python client on the host the module runs on
"""
