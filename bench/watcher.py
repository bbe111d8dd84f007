"""``python -m bench.watcher``: record when each Deployment is first seen rewritten.

Runs as its own process (so the benchmark's creating threads and this loop
do not share a GIL), watches Deployments cluster-wide from the current
resourceVersion and writes ``{"rewritten": {ns/name: unix time}, "added":
{ns/name: unix time}}`` as JSON once ``--expect`` Deployments in namespaces
starting with ``--prefix`` have every container image in ``--repository``
pinned by digest, or when ``--timeout`` passes. Prints ``ready`` once the
watch is open.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from lab.collection import import_engine

import_engine()

from ansible_collections.imageclone.backup.plugins.module_utils.kube import new_api_client  # noqa: E402


def rewritten(obj: dict, repository: str) -> bool:
    spec = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    images = [c.get("image", "") for section in ("initContainers", "containers") for c in spec.get(section) or ()]
    return bool(images) and all(i.startswith(repository + ":") and "@sha256:" in i for i in images)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.watcher")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--repository", required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    client = new_api_client({"kubeconfig": args.kubeconfig})
    headers = {"Accept": "application/json"}
    listing = client.call_api("/apis/apps/v1/deployments", "GET", query_params=[("limit", 1)],
                              header_params=headers, auth_settings=["BearerToken"], _preload_content=False,
                              _return_http_data_only=True)
    version = json.loads(listing.data)["metadata"]["resourceVersion"]
    listing.release_conn()

    deadline = time.monotonic() + args.timeout
    added: dict[str, float] = {}
    seen: dict[str, float] = {}
    events = 0
    print("ready", flush=True)
    while len(seen) < args.expect and time.monotonic() < deadline:
        remaining = max(1, int(deadline - time.monotonic()))
        response = client.call_api(
            "/apis/apps/v1/deployments", "GET",
            query_params=[("watch", "true"), ("resourceVersion", version), ("allowWatchBookmarks", "true"),
                          ("timeoutSeconds", remaining)],
            header_params=headers, auth_settings=["BearerToken"], _preload_content=False,
            _return_http_data_only=True, _request_timeout=(10, remaining + 30))
        buffer = b""
        try:
            for chunk in response.stream(65536, decode_content=True):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                now = time.time()
                for line in lines:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    obj = event.get("object") or {}
                    meta = obj.get("metadata") or {}
                    version = meta.get("resourceVersion", version)
                    if event.get("type") == "ERROR":
                        version = None
                        break
                    namespace = meta.get("namespace", "")
                    if not namespace.startswith(args.prefix) or event.get("type") not in ("ADDED", "MODIFIED"):
                        continue
                    events += 1
                    key = f"{namespace}/{meta.get('name')}"
                    added.setdefault(key, now)
                    if key not in seen and rewritten(obj, args.repository):
                        seen[key] = now
                if version is None or len(seen) >= args.expect or time.monotonic() >= deadline:
                    break
        finally:
            response.release_conn()
        if version is None:  # expired: start again from now (late events are lost, counted as missing)
            again = client.call_api("/apis/apps/v1/deployments", "GET", query_params=[("limit", 1)],
                                    header_params=headers, auth_settings=["BearerToken"], _preload_content=False,
                                    _return_http_data_only=True)
            version = json.loads(again.data)["metadata"]["resourceVersion"]
            again.release_conn()
    Path(args.out).write_text(json.dumps({"rewritten": seen, "added": added, "events": events}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
