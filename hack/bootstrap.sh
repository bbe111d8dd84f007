#!/usr/bin/env bash
# Install what the project needs on a fresh Debian machine: system packages for the
# lab and the copies, and the pinned Python environment in .venv. Safe to re-run:
# each step is skipped when already satisfied.
set -euo pipefail
cd "$(dirname "$0")/.."

# containerd, runc, the CNI plugins and busybox-static make the lab's node: it runs pods
# whose images are built from Debian's static busybox. mmdebstrap and buildah build the
# controller's image offline (lab/image_build.py).
APT_PACKAGES=(skopeo docker-registry apache2-utils containerd runc containernetworking-plugins busybox-static
              mmdebstrap buildah)
missing=()
for package in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing ${missing[*]} from Debian"
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's docker-registry package starts a system-wide registry on :5000; the lab runs its own.
# Debian's containerd package likewise starts a system containerd; the lab's node runs its own.
for service in docker-registry containerd; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$service" 2>/dev/null; then
    systemctl disable --now "$service" >/dev/null 2>&1 || true
  fi
done

command -v go >/dev/null || { echo "bootstrap: the Go toolchain is required to build the lab's kube-apiserver" >&2; exit 1; }

stamp=.venv/.requirements.sha256
wanted=$(sha256sum requirements-dev.txt controller/pyproject.toml | sha256sum | cut -d' ' -f1)
if [[ ! -x .venv/bin/python || "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]]; then
  echo "bootstrap: creating the Python environment in .venv"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
  .venv/bin/pip install -q --disable-pip-version-check --no-deps -e controller
  echo "$wanted" > "$stamp"
fi
