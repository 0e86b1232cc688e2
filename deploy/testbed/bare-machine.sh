#!/usr/bin/env bash
# bare-machine.sh - a bare Debian machine on this one, to run `make test`'s
# install and passes where nothing is preinstalled and nothing is listening.
#
# The machine is a debootstrapped bookworm root (minbase) with what a user who
# clones a repository has: git, make, python3 (README.md's Quick start needs
# make and python3), /etc/hosts, and a clone of this repository in
# /root/project.  It runs in namespaces of its own (network, mount, PID): its
# 127.0.0.1 has no PostgreSQL, RabbitMQ or Redis of this machine, its /run is
# empty as after a boot, and no service starts from a package's postinst
# (/usr/sbin/policy-rc.d): what runs is what the project's scripts start.
#
# Its only way out is an HTTP proxy on its 127.0.0.1:3128 (a relay to a
# Unix socket of a proxy on this machine): with `exec --registries` apt-get,
# pip and debootstrap reach the Debian mirrors and PyPI through it, so
# ensure-system.sh installs everything itself, inside the machine.
#
# Usage: deploy/testbed/bare-machine.sh COMMAND
#   build                 debootstrap the root, add the packages above, clone
#                         the repository (BARE_SOURCE, BARE_REF) into it
#   sync                  check out BARE_REF of BARE_SOURCE in /root/project
#   up                    start the machine (namespaces, mounts, the proxy)
#   exec [--registries] COMMAND...   run COMMAND as root in /root/project;
#                         --registries: with http(s)_proxy set for the installs
#   down                  stop the machine: every process in it, its mounts
#
# The root trusts this machine's local certificate authorities
# (/usr/local/share/ca-certificates), as this machine does.
#
# Settings: BARE_DIR=/var/lib/queueworks-bare (the root is BARE_DIR/root),
# BARE_MIRROR=http://deb.debian.org/debian, BARE_SOURCE=this repository,
# BARE_REF=HEAD.  Needs root, debootstrap, unshare, nsenter, socat.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BASE="${BARE_DIR:-/var/lib/queueworks-bare}"
ROOT="$BASE/root"
STATE="$BASE/state"
MIRROR="${BARE_MIRROR:-http://deb.debian.org/debian}"
SOURCE="${BARE_SOURCE:-$(cd "$HERE/../.." && pwd)}"
REF="${BARE_REF:-HEAD}"
SOCKET="$STATE/registries.sock"
PROXY_PORT=3128

log() { echo "bare-machine: $*" >&2; }
die() { log "error: $*"; exit 1; }
[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, namespaces, mounts)"

# -- the root ----------------------------------------------------------------------
in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }

# The clone keeps what the install left in it (.venv, .env): sync checks out
# another commit in place.
clone() {
  local commit project="$ROOT/root/project"
  commit="$(git -C "$SOURCE" rev-parse "$REF")"
  [ -d "$project/.git" ] || git clone -q --no-checkout "$SOURCE" "$project"
  git -C "$project" fetch -q "$SOURCE" "$commit"
  git -C "$project" checkout -q --detach "$commit"
  log "/root/project at $commit"
}

build() {
  if [ ! -x "$ROOT/usr/bin/apt-get" ]; then
    log "debootstrap --variant=minbase bookworm $ROOT $MIRROR"
    debootstrap --variant=minbase bookworm "$ROOT" "$MIRROR" >"$BASE/debootstrap.log" 2>&1 \
      || die "debootstrap failed ($BASE/debootstrap.log)"
  fi
  # What every installed Debian has and minbase leaves out: the security and
  # updates suites, /etc/hosts (RabbitMQ's nodes are NAME@localhost).
  cat >"$ROOT/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb ${MIRROR%/debian}/debian-security bookworm-security main
EOF
  [ -f "$ROOT/etc/hosts" ] || printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$ROOT/etc/hosts"
  # No service starts from a package's postinst: ensure-system.sh starts them.
  printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
  chmod 755 "$ROOT/usr/sbin/policy-rc.d"
  cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
  log "apt-get install git make python3 (the host's network; nothing starts)"
  in_root apt-get update -qq
  in_root DEBIAN_FRONTEND=noninteractive apt-get install -y -qq git make python3 >/dev/null
  in_root apt-get clean
  # This machine's own certificate authorities (a TLS-inspecting egress trusts
  # its own): without them nothing in the root reaches PyPI.
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/"
    in_root update-ca-certificates >/dev/null
  fi
  # Inside the machine the proxy is the only way out; a name server it cannot reach would
  # only slow every lookup down.
  : >"$ROOT/etc/resolv.conf"
  [ -d "$ROOT/root/project" ] || clone
}

# -- the machine -------------------------------------------------------------------
holder_pid() { [ -f "$STATE/holder.pid" ] && cat "$STATE/holder.pid"; }
# PID 1 of the machine: the child of the unshare process.
init_pid() {
  local holder
  holder="$(holder_pid)" || return 1
  [ -d "/proc/$holder" ] || return 1
  cat "/proc/$holder/task/$holder/children" | awk '{print $1}'
}

# A CONNECT (https) and absolute-URI (http) proxy on a Unix socket.
PROXY_PY='
import asyncio, sys

async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()

async def serve(client_reader, client_writer):
    try:
        head = await client_reader.readuntil(b"\r\n\r\n")
        method, target, version = head.split(b"\r\n", 1)[0].decode().split(" ")
        if method == "CONNECT":
            host, port = target.rsplit(":", 1)
            rest = b""
        else:
            if not target.startswith("http://"):
                raise ValueError(target)
            authority, _, path = target[len("http://"):].partition("/")
            host, _, port = authority.partition(":")
            first, others = head.split(b"\r\n", 1)
            rest = f"{method} /{path} {version}\r\n".encode() + others
        # The registries only, never a service on this machine.
        if int(port or 80) not in (80, 443) or host in ("localhost", "::1") or host.startswith("127."):
            raise ValueError(target)
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port or 80))
    except Exception as exc:
        print(f"registries proxy: refused: {exc!r}", file=sys.stderr, flush=True)
        client_writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
        client_writer.close()
        return
    if method == "CONNECT":
        client_writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
    else:
        upstream_writer.write(rest)
    await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer))

async def main():
    server = await asyncio.start_unix_server(serve, path=sys.argv[1])
    async with server:
        await server.serve_forever()

asyncio.run(main())
'

# Inside the new namespaces, before PID 1 takes over: loopback, the root's
# mounts (private to the machine: they vanish with it), an empty /run.
# PID 1 is the root's python3, reaping every orphan as an init does.
SETUP='
set -e
ip link set lo up
# The root a mount point of its own, as / is on a machine (`ip netns exec`
# remounts / as a slave).
mount --bind "$ROOT" "$ROOT"
mount -t proc proc "$ROOT/proc"
mount -t sysfs sysfs "$ROOT/sys"
mount --rbind /dev "$ROOT/dev"
mount -t tmpfs -o mode=1777 tmpfs "$ROOT/dev/shm"
mount -t tmpfs -o mode=755 tmpfs "$ROOT/run"
mkdir -p "$ROOT/run/lock" && chmod 1777 "$ROOT/run/lock"
# The root becomes / of the machine (pivot_root, not chroot): /proc/PID/root
# of its processes reads as on a machine of its own.
cd "$ROOT"
pivot_root . .
umount -l .
cd /
exec /usr/bin/python3 -c "
import os, time
while True:
    try:
        os.wait()
    except ChildProcessError:
        time.sleep(1)
"
'

up() {
  [ -x "$ROOT/usr/bin/make" ] || die "no root at $ROOT: run '$0 build' first"
  if init_pid >/dev/null 2>&1; then log "already up (PID 1 is $(init_pid))"; return 0; fi
  mkdir -p "$STATE"
  rm -f "$SOCKET"
  setsid python3 -c "$PROXY_PY" "$SOCKET" >>"$STATE/proxy.log" 2>&1 </dev/null &
  echo $! >"$STATE/proxy.pid"
  ROOT="$ROOT" setsid unshare --net --mount --pid --fork --propagation private \
    bash -c "$SETUP" >>"$STATE/init.log" 2>&1 </dev/null &
  echo $! >"$STATE/holder.pid"
  for _ in $(seq 1 50); do
    [ -S "$SOCKET" ] && init_pid >/dev/null 2>&1 && [ -n "$(init_pid)" ] \
      && readlink "/proc/$(init_pid)/exe" | grep -q python && break
    sleep 0.2
  done
  local init; init="$(init_pid)" || die "the machine did not start ($STATE/init.log)"
  setsid nsenter --target "$init" --net socat "TCP-LISTEN:$PROXY_PORT,bind=127.0.0.1,fork,reuseaddr" \
    "UNIX-CONNECT:$SOCKET" >>"$STATE/relay.log" 2>&1 </dev/null &
  echo $! >"$STATE/relay.pid"
  log "up: PID 1 is $init on this machine; registries through 127.0.0.1:$PROXY_PORT"
}

machine_exec() {
  local init proxy=()
  init="$(init_pid)" || die "the machine is not up: run '$0 up'"
  if [ "${1:-}" = --registries ]; then
    shift
    proxy=(http_proxy="http://127.0.0.1:$PROXY_PORT" https_proxy="http://127.0.0.1:$PROXY_PORT"
           HTTP_PROXY="http://127.0.0.1:$PROXY_PORT" HTTPS_PROXY="http://127.0.0.1:$PROXY_PORT"
           no_proxy=127.0.0.1,localhost,::1 NO_PROXY=127.0.0.1,localhost,::1
           PIP_CERT=/etc/ssl/certs/ca-certificates.crt)  # pip trusts its own bundle otherwise
  fi
  local environment=(HOME=/root USER=root LOGNAME=root SHELL=/bin/bash LANG=C.UTF-8
                     PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
  [ -n "${CI:-}" ] && environment+=(CI="$CI")
  [ -n "${TERM:-}" ] && environment+=(TERM="$TERM")
  nsenter --target "$init" --net --mount --pid -- /usr/bin/env -i \
    "${environment[@]}" "${proxy[@]}" /bin/bash -c 'cd /root/project && exec "$@"' bash "$@"
}

down() {
  local name pid
  for name in relay holder proxy; do
    pid="$(cat "$STATE/$name.pid" 2>/dev/null)" || continue
    if [ "$name" = holder ] && init="$(init_pid 2>/dev/null)" && [ -n "$init" ]; then
      kill -KILL "$init" 2>/dev/null || true  # PID 1: the kernel kills the rest of the machine
    fi
    kill "$pid" 2>/dev/null || true
    rm -f "$STATE/$name.pid"
  done
  rm -f "$SOCKET"
  log "down"
}

case "${1:-}" in
  build) build ;;
  sync) clone ;;
  up) up ;;
  exec) shift; machine_exec "$@" ;;
  down) down ;;
  *) die "usage: $0 build|sync|up|exec [--registries] COMMAND...|down" ;;
esac
