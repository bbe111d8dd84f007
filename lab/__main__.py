"""``python -m lab up|down|status|env``: run the local lab."""
from __future__ import annotations

import argparse
import sys
import time

from lab.lab import Lab
from lab.node import NODE_NAME


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    parser.add_argument("command", choices=("up", "down", "status", "env"))
    args = parser.parse_args(argv)
    lab = Lab()
    if args.command == "up":
        started = time.monotonic()
        config = lab.up()
        print(f"lab up in {time.monotonic() - started:.1f}s (state: {lab.state})")
        print(f"  kube-apiserver   {config.apiserver_url}  ({config.kubernetes_version})")
        print(f"  source registry  https://{config.source_registry}  (anonymous, {len(config.seeds)} seeded images)")
        print(f"  backup registry  https://{config.backup_registry}  (htpasswd, auth file {lab.backup_authfile})")
        print(f"  node             {NODE_NAME}  (containerd {lab.node.socket}; "
              "pods need hostNetwork and its toleration)")
        print("  use it:          eval \"$(python -m lab env)\" && kubectl get ns")
    elif args.command == "down":
        lab.down()
        print(f"lab stopped and {lab.state} removed")
    elif args.command == "status":
        if not lab.state.exists():
            print("no lab")
            return 1
        status = lab.status()
        for name, state in status.items():
            print(f"{name:<24} {state}")
        return 0 if all(state.startswith("running") for state in status.values()) else 1
    else:
        print("\n".join(lab.env_lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
