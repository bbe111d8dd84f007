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

from ansible_collections.imageclone.backup.plugins.module_utils.kube import (  # noqa: E402
    KubeApi,
    KubeApiError,
    new_api_client,
)
from ansible_collections.imageclone.backup.plugins.module_utils.workloads import KINDS  # noqa: E402

DEPLOYMENT = KINDS["Deployment"]


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

    # Pages of one object: only the list's resourceVersion is wanted.
    api = KubeApi(new_api_client({"kubeconfig": args.kubeconfig}), page_size=1)
    version = api.list_page(DEPLOYMENT).resource_version
    deadline = time.monotonic() + args.timeout
    added: dict[str, float] = {}
    seen: dict[str, float] = {}
    events = 0
    print("ready", flush=True)
    while len(seen) < args.expect and time.monotonic() < deadline:
        remaining = max(1, int(deadline - time.monotonic()))
        try:
            with api.watch(DEPLOYMENT, None, version, timeout_seconds=remaining) as stream:
                for event in stream:
                    now = time.time()
                    obj = event.get("object") or {}
                    meta = obj.get("metadata") or {}
                    version = meta.get("resourceVersion", version)
                    namespace = meta.get("namespace", "")
                    if namespace.startswith(args.prefix) and event.get("type") in ("ADDED", "MODIFIED"):
                        events += 1
                        key = f"{namespace}/{meta.get('name')}"
                        added.setdefault(key, now)
                        if key not in seen and rewritten(obj, args.repository):
                            seen[key] = now
                    if len(seen) >= args.expect or time.monotonic() >= deadline:
                        break
        except KubeApiError as error:
            if not error.expired:
                raise
            # Start again from now: events missed meanwhile count as missing.
            version = api.list_page(DEPLOYMENT).resource_version
    Path(args.out).write_text(json.dumps({"rewritten": seen, "added": added, "events": events}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
