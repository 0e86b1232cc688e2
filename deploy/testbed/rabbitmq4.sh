#!/usr/bin/env bash
# rabbitmq4.sh - RabbitMQ 4.x nodes (Debian trixie's packages) for the test
# suite and the benchmarks, next to the distribution's RabbitMQ 3.x without
# touching it.
#
# Why a chroot: bookworm ships RabbitMQ 3.10 / Erlang 25 only. Debian trixie
# ships rabbitmq-server 4.0.x with Erlang 27, so a debootstrapped trixie root
# gives a real 4.x broker from official packages, with no third-party apt
# repository and no container runtime. `deploy/bin/ensure-system.sh --test`
# builds the root (`rabbitmq4.sh build`); tests/support/rabbitmq4.py starts
# the nodes. docs/testing.md says which tests run on 4.x.
#
# Usage:
#   rabbitmq4.sh build                                  build/validate the root only
#   rabbitmq4.sh start  NAME PORT MGMT_PORT DIST_PORT   start one node NAME@localhost
#   rabbitmq4.sh stop   NAME                            stop it (no-op if stopped)
#   rabbitmq4.sh kill   NAME                            SIGKILL it (a crashed host: no
#                                                       graceful leadership hand-over)
#   rabbitmq4.sh status NAME                            exit 0 running, 3 stopped
#   rabbitmq4.sh cluster N BASEPORT                     N nodes r4c1..r4cN, joined
#        node i (1-based) gets AMQP BASEPORT+i-1, mgmt BASEPORT+10000+i-1,
#        distribution BASEPORT+20000+i-1 (RabbitMQ's own +10000/+20000 convention)
#   rabbitmq4.sh cluster-stop N                         stop r4c1..r4cN
#   rabbitmq4.sh stop-all                               stop every node + the private epmd
#   rabbitmq4.sh ctl NAME TOOL [ARGS...]                run rabbitmqctl/rabbitmq-diagnostics/
#                                                       rabbitmq-queues/... against NAME
#
# Environment (all optional):
#   RABBITMQ4_ROOT        root dir        (default /var/lib/queueworks/rabbitmq4-root)
#   RABBITMQ4_MIRROR      Debian mirror   (default: the one from /etc/apt/sources.list*)
#   RABBITMQ4_SUITE       Debian suite    (default trixie)
#   RABBITMQ4_EPMD_PORT   private epmd    (default 4370; the host's 3.10 owns 4369)
#   RABBITMQ4_USER / RABBITMQ4_PASS   the administrator created on a node's first
#                         boot (required by start and cluster: no default password)
#   RABBITMQ4_VHOST       a vhost created on first boot (default queueworks)
#   RABBITMQ4_TIMEOUT     seconds to wait for a node to answer (default 120)
#   RABBITMQ4_CLUSTER_PREFIX  cluster node name prefix (default r4c)
#   RABBITMQ4_METADATA_STORE  khepri (default; 4.3 is Khepri-only) or mnesia
#
# Node layout (inside the root, i.e. $RABBITMQ4_ROOT/srv/rabbitmq4/NAME/):
#   rabbitmq.conf advanced.config enabled_plugins ports data/ log/ rabbitmq.pid
# Nodes are NAME@localhost, listeners bound to 127.0.0.1, one private epmd on
# 127.0.0.1:$RABBITMQ4_EPMD_PORT shared by all 4.x nodes and their CLI calls.
#
# Every command is idempotent and safe to re-run; mutating commands serialise
# on a flock so two concurrent invocations cannot race on the same root.

set -Eeuo pipefail
shopt -s nullglob

ROOT=${RABBITMQ4_ROOT:-/var/lib/queueworks/rabbitmq4-root}
ROOT=${ROOT%/}
SUITE=${RABBITMQ4_SUITE:-trixie}
EPMD_PORT=${RABBITMQ4_EPMD_PORT:-4370}
R4_USER=${RABBITMQ4_USER:-}
R4_PASS=${RABBITMQ4_PASS:-}
R4_VHOST=${RABBITMQ4_VHOST:-queueworks}
TIMEOUT=${RABBITMQ4_TIMEOUT:-120}
CLUSTER_PREFIX=${RABBITMQ4_CLUSTER_PREFIX:-r4c}

# Stamp written only after a build fully succeeded and was verified; its absence
# means "partial/failed build" and triggers a rebuild.
STAMP_REL=/etc/queueworks-rabbitmq4-root.ok
# Per-node state lives inside the root (paths as seen from inside the chroot),
# so the chroot'ed broker can reach it and one `rm -rf ROOT` removes everything.
NODES_REL=/srv/rabbitmq4
LOCK_FILE=${ROOT}.lock

PROG=${0##*/}
log()  { printf '[%s] %s\n' "$PROG" "$*" >&2; }
die()  { printf '[%s] ERROR: %s\n' "$PROG" "$*" >&2; exit 1; }
now()  { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}'; }

need_root() { [[ $(id -u) -eq 0 ]] || die "must run as root (chroot/unshare/mount need it)"; }

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
check_port_arg() {
    is_uint "$2" && (( $2 >= 1 && $2 <= 65535 )) || die "$1 must be a port number 1-65535, got '$2'"
}
check_name() {
    # Erlang short node names: letters, digits, '-', '_' only.
    [[ $1 =~ ^[A-Za-z][A-Za-z0-9_-]{0,40}$ ]] || die "invalid node NAME '$1' (use [A-Za-z][A-Za-z0-9_-]*)"
}

# One lock for all mutating commands. fd 9 stays open for the whole process,
# so nested calls (cluster -> start) do not deadlock.
take_lock() {
    mkdir -p "$(dirname "$LOCK_FILE")"
    exec 9>"$LOCK_FILE"
    flock -w 900 9 || die "another $PROG holds $LOCK_FILE for >900s"
}

# --------------------------------------------------------------------------
# Root build
# --------------------------------------------------------------------------

# Mirror: reuse whatever Debian mirror this host's apt uses (deb822 .sources or
# one-line .list); skip security mirrors; fall back to deb.debian.org.
detect_mirror() {
    if [[ -n ${RABBITMQ4_MIRROR:-} ]]; then echo "$RABBITMQ4_MIRROR"; return; fi
    local f uri=
    for f in /etc/apt/sources.list.d/*.sources; do
        uri=$(awk '
            /^[[:space:]]*$/ { if (u != "" && s !~ /security/) { print u; exit } u=""; s=""; next }
            /^URIs:/   { u=$2 }
            /^Suites:/ { $1=""; s=$0 }
            END { if (u != "" && s !~ /security/) print u }' "$f" | grep -m1 '/debian/\?$' || true)
        [[ -n $uri ]] && break
    done
    if [[ -z $uri ]]; then
        for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
            [[ -r $f ]] || continue
            uri=$(awk '$1=="deb" { for (i=2;i<=NF;i++) if ($i !~ /^\[/) { if ($(i+1) !~ /security/) print $i; break } }' "$f" \
                  | grep -m1 '/debian/\?$' || true)
            [[ -n $uri ]] && break
        done
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

root_pkg_installed() { # cheap dpkg-status check without entering the chroot
    awk -v p="$1" '
        $0 == "Package: " p { hit=1; next }
        /^Package: / { hit=0 }
        hit && /^Status: / { print $2" "$3" "$4; exit }' "$ROOT/var/lib/dpkg/status" 2>/dev/null \
        | grep -qx 'install ok installed'
}

root_is_valid() {
    [[ -f $ROOT$STAMP_REL ]] || return 1
    [[ -x $ROOT/usr/lib/rabbitmq/bin/rabbitmq-server && -x $ROOT/usr/bin/erl && -x $ROOT/usr/bin/epmd ]] || return 1
    grep -q '^rabbitmq:' "$ROOT/etc/passwd" || return 1
    [[ -s $ROOT/var/lib/rabbitmq/.erlang.cookie ]] || return 1
    root_pkg_installed rabbitmq-server && root_pkg_installed erlang-base
}

# PIDs of processes whose root directory is inside DIR (nodes, epmd, CLI).
pids_in_dir() {
    local d=$1 p r
    for p in /proc/[0-9]*; do
        r=$(readlink "$p/root" 2>/dev/null) || continue
        [[ $r == "$d" || $r == "$d"/* ]] && echo "${p#/proc/}"
    done
    return 0
}

# Remove a (possibly half-built) tree safely: refuse if anything runs in it,
# unmount whatever a failed debootstrap left mounted (proc/sys), never cross
# filesystems while deleting.
remove_tree() {
    local d=$1
    [[ -n $d && $d != / && $d == /*/* ]] || die "refusing to remove suspicious path '$d'"
    [[ -e $d ]] || return 0
    local pids; pids=$(pids_in_dir "$d")
    [[ -z $pids ]] || die "processes still run inside $d (pids: $(echo $pids)); run '$PROG stop-all' first"
    local m
    while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done < <(awk -v d="$d" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/mounts | sort -r)
    if awk -v d="$d" '$2 == d || index($2, d "/") == 1 { f=1 } END { exit !f }' /proc/mounts; then
        die "could not unmount everything under $d"
    fi
    rm -rf --one-file-system "$d"
}

ensure_debootstrap() {
    command -v debootstrap >/dev/null && [[ -e /usr/share/debootstrap/scripts/$SUITE ]] && return 0
    log "installing debootstrap with apt-get"
    # DPkg::Lock::Timeout: other tooling may be running apt at the same time.
    local apt=(apt-get -o DPkg::Lock::Timeout=600 -y -q)
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" install debootstrap \
        || { "${apt[@]}" update && DEBIAN_FRONTEND=noninteractive "${apt[@]}" install debootstrap; } \
        || die "apt-get install debootstrap failed"
    [[ -e /usr/share/debootstrap/scripts/$SUITE ]] || die "this debootstrap does not know suite '$SUITE'"
}

ROOT_CHECKED=
build_root() {
    [[ -n $ROOT_CHECKED ]] && return 0
    if root_is_valid; then
        # We hold the lock, so a leftover .partial is from an interrupted build.
        [[ -e $ROOT.partial ]] && { log "removing leftover $ROOT.partial"; remove_tree "$ROOT.partial"; }
        log "root OK: $ROOT ($(tr '\n' ' ' <"$ROOT$STAMP_REL"))"
        ROOT_CHECKED=1
        return 0
    fi
    local t0; t0=$(now)
    if [[ -e $ROOT ]]; then
        log "root $ROOT exists but is incomplete/invalid (no stamp or missing packages): rebuilding"
        remove_tree "$ROOT"
    fi
    local partial=$ROOT.partial
    remove_tree "$partial"          # leftovers of an interrupted earlier build
    ensure_debootstrap
    local mirror; mirror=$(detect_mirror)
    mkdir -p "$(dirname "$ROOT")"
    local blog=$ROOT.build.log
    log "debootstrap --variant=minbase --include=rabbitmq-server $SUITE $partial $mirror (log: $blog)"
    # Service start-up during package configuration: debootstrap itself installs
    # /usr/sbin/policy-rc.d ("exit 101") and a fake start-stop-daemon for the
    # whole configure phase, which includes --include packages, so the
    # rabbitmq-server postinst's `invoke-rc.d rabbitmq-server start` is denied.
    # (There is no systemd in a minbase chroot, so deb-systemd-invoke is a no-op.)
    if ! debootstrap --variant=minbase --include=rabbitmq-server "$SUITE" "$partial" "$mirror" >"$blog" 2>&1; then
        tail -n 30 "$blog" >&2
        [[ -f $partial/debootstrap/debootstrap.log ]] && tail -n 30 "$partial/debootstrap/debootstrap.log" >&2
        remove_tree "$partial"
        die "debootstrap failed (full log: $blog)"
    fi
    # debootstrap removes its policy-rc.d at the end; install a permanent one so a
    # later `apt-get install/upgrade` inside the root never starts a service.
    printf '#!/bin/sh\n# installed by rabbitmq4.sh: never start services inside this chroot\nexit 101\n' \
        >"$partial/usr/sbin/policy-rc.d"
    chmod 755 "$partial/usr/sbin/policy-rc.d"
    # The downloaded .debs (~76 MB) are not needed any more.
    chroot "$partial" apt-get clean >/dev/null 2>&1 || true
    # Verify before declaring success: dpkg consistent, broker + erlang present.
    local audit; audit=$(chroot "$partial" dpkg --audit 2>&1 || true)
    [[ -z $audit ]] || { echo "$audit" >&2; remove_tree "$partial"; die "dpkg --audit reports problems in new root"; }
    local rmq erl py
    rmq=$(chroot "$partial" dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null) || { remove_tree "$partial"; die "rabbitmq-server not installed in new root"; }
    erl=$(chroot "$partial" dpkg-query -W -f='${Version}' erlang-base 2>/dev/null) || { remove_tree "$partial"; die "erlang-base not installed in new root"; }
    py=$(chroot "$partial" dpkg-query -W -f='${Version}' python3 2>/dev/null || echo none)
    # A node that never ran has no state; drop anything the postinst may have
    # created under the default mnesia dir (we use per-node dirs under $NODES_REL).
    mkdir -p "$partial$NODES_REL"
    printf 'built=%s\nsuite=%s\nmirror=%s\nrabbitmq-server=%s\nerlang-base=%s\npython3=%s\n' \
        "$(date -u +%FT%TZ)" "$SUITE" "$mirror" "$rmq" "$erl" "$py" >"$partial$STAMP_REL"
    # Atomic publish: ROOT either does not exist or is complete.
    mv -T "$partial" "$ROOT"
    ROOT_CHECKED=1
    log "root built in $(elapsed "$t0")s: $ROOT ($(du -sh --one-file-system "$ROOT" | cut -f1)); rabbitmq-server $rmq, erlang $erl, python3 $py"
}

# --------------------------------------------------------------------------
# Running things inside the root
# --------------------------------------------------------------------------

rabbit_ids() {
    R_UID=$(awk -F: '$1=="rabbitmq"{print $3}' "$ROOT/etc/passwd")
    R_GID=$(awk -F: '$1=="rabbitmq"{print $4}' "$ROOT/etc/passwd")
    [[ -n $R_UID && -n $R_GID ]] || die "no rabbitmq user in $ROOT/etc/passwd"
}

# in_root ENV... -- CMD ARGS...
# Runs CMD inside the root as the root's rabbitmq user (numeric ids: the host's
# own rabbitmq user has a different uid), with a clean environment, in a
# private mount namespace that has /proc and /sys mounted. The namespace dies
# with the last process in it, so nothing is ever left mounted on the host and
# `rm -rf ROOT` can never walk into the host's /proc. /dev needs no bind: the
# device nodes debootstrap created (null, zero, urandom, ...) are enough.
in_root_cmd() {
    local envs=()
    while [[ $# -gt 0 && $1 != -- ]]; do envs+=("$1"); shift; done
    shift
    rabbit_ids
    IN_ROOT_CMD=(unshare --mount --propagation private -- /bin/sh -c '
        r=$1 uid=$2 gid=$3; shift 3
        mount -t proc -o nosuid,nodev,noexec proc "$r/proc" || exit 70
        mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$r/sys" 2>/dev/null || true
        exec chroot --userspec="$uid:$gid" --groups="$gid" "$r" "$@"
    ' sh "$ROOT" "$R_UID" "$R_GID" /usr/bin/env -i
        HOME=/var/lib/rabbitmq
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
        LANG=C.UTF-8 LC_ALL=C.UTF-8
        ERL_EPMD_PORT="$EPMD_PORT" ERL_EPMD_ADDRESS=127.0.0.1
        "${envs[@]}" "$@")
}
in_root() {
    # ulimit: RabbitMQ wants many fds (connections, queue segment files); raise
    # the soft limit up to the hard limit for the broker and its CLI.
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    in_root_cmd "$@"
    # 9>&-: never leak the flock fd into the chroot - a daemon (epmd, broker)
    # holding it would keep the lock forever and hang every later command.
    "${IN_ROOT_CMD[@]}" 9>&-
}

node_dir_rel() { echo "$NODES_REL/$1"; }
node_dir()     { echo "$ROOT$NODES_REL/$1"; }
nodename()     { echo "$1@localhost"; }

# Environment for the broker and for CLI tools talking to it. Everything is
# explicit so /etc/rabbitmq/* inside the root (and the host's config) never
# leaks in, and several nodes can share the one root.
node_env() {
    local name=$1 d; d=$(node_dir_rel "$name")
    local port mgmt dist
    # shellcheck disable=SC1090
    . "$(node_dir "$name")/ports"
    printf '%s\n' \
        "RABBITMQ_NODENAME=$(nodename "$name")" \
        "RABBITMQ_USE_LONGNAME=false" \
        "RABBITMQ_NODE_IP_ADDRESS=127.0.0.1" \
        "RABBITMQ_NODE_PORT=$port" \
        "RABBITMQ_DIST_PORT=$dist" \
        "RABBITMQ_CONFIG_FILE=$d/rabbitmq.conf" \
        "RABBITMQ_ADVANCED_CONFIG_FILE=$d/advanced.config" \
        "RABBITMQ_CONF_ENV_FILE=$d/rabbitmq-env.conf" \
        "RABBITMQ_ENABLED_PLUGINS_FILE=$d/enabled_plugins" \
        "RABBITMQ_MNESIA_BASE=$d/data" \
        "RABBITMQ_MNESIA_DIR=$d/data/$(nodename "$name")" \
        "RABBITMQ_LOG_BASE=$d/log" \
        "RABBITMQ_PID_FILE=$d/rabbitmq.pid" \
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1} +sbwt none +sbwtdcpu none +sbwtdio none"
}

# cli NAME TOOL ARGS... : rabbitmqctl & co. Must see the same ERL_EPMD_PORT as
# the node (else it asks the host's epmd on 4369 and reports "nodedown") and the
# same HOME (cookie). Runs the real tool, not the /usr/sbin su-wrapper.
cli() {
    local name=$1 tool=$2; shift 2
    local envs; mapfile -t envs < <(node_env "$name")
    in_root "${envs[@]}" -- "/usr/lib/rabbitmq/bin/$tool" "$@"
}

# A private epmd on EPMD_PORT, loopback only, run from the root. Why not share
# the host's epmd on 4369: it belongs to the host's 3.10 service (started by its
# rabbitmq user, OTP 25) - restarting that service or the host node's name
# choices must not affect the 4.x nodes and vice versa.
epmd_alive() { in_root -- /usr/bin/epmd -port "$EPMD_PORT" -names >/dev/null 2>&1; }
ensure_epmd() {
    epmd_alive && return 0
    if port_busy "$EPMD_PORT"; then
        die "port $EPMD_PORT is taken by something that is not an epmd we can query; set RABBITMQ4_EPMD_PORT"
    fi
    in_root -- /usr/bin/epmd -daemon -port "$EPMD_PORT" -address 127.0.0.1
    local i
    for i in $(seq 1 50); do epmd_alive && return 0; sleep 0.1; done
    die "private epmd did not come up on 127.0.0.1:$EPMD_PORT"
}

node_pid() { # prints the beam pid if the node's OS process is alive
    local f; f="$(node_dir "$1")/rabbitmq.pid"
    [[ -s $f ]] || return 1
    local p; p=$(tr -dc 0-9 <"$f")
    [[ -n $p && -d /proc/$p ]] || return 1
    # guard against pid reuse: must be a beam running inside our root
    [[ $(readlink "/proc/$p/root" 2>/dev/null) == "$ROOT" ]] || return 1
    grep -q beam "/proc/$p/comm" 2>/dev/null || return 1
    echo "$p"
}

node_pings() { cli "$1" rabbitmq-diagnostics -q ping >/dev/null 2>&1; }

write_node_files() {
    local name=$1 port=$2 mgmt=$3 dist=$4 d; d=$(node_dir "$name")
    [[ -n $R4_USER && -n $R4_PASS ]] || die "set RABBITMQ4_USER and RABBITMQ4_PASS (the node's administrator)"
    rabbit_ids
    mkdir -p "$d/data" "$d/log"
    printf 'port=%s\nmgmt=%s\ndist=%s\n' "$port" "$mgmt" "$dist" >"$d/ports"
    : >"$d/rabbitmq-env.conf"          # empty: keep /etc/rabbitmq/rabbitmq-env.conf out
    echo '[rabbitmq_management].' >"$d/enabled_plugins"
    # Khepri in 4.0.5 waits for a metadata-store leader ONCE for 30 s at boot and
    # then dies with timeout_waiting_for_leader. After a full-cluster stop the
    # members boot in parallel on 2 cores and a majority can take longer than
    # that, so wait up to RABBITMQ4_TIMEOUT (no rabbitmq.conf key for it in 4.0).
    printf '[{rabbit, [{khepri_leader_wait_retry_timeout, %d}]}].\n' $(( TIMEOUT * 1000 )) >"$d/advanced.config"
    cat >"$d/rabbitmq.conf" <<EOF
# written by deploy/testbed/rabbitmq4.sh for node $(nodename "$name") - edits are overwritten on start
listeners.tcp.1 = 127.0.0.1:$port
management.tcp.ip = 127.0.0.1
management.tcp.port = $mgmt

# RabbitMQ 4.3 turns these deprecated features to "denied by default"; do the
# same here (trixie ships 4.0.x) so the app is tested against 4.3 behaviour:
#  - transient_nonexcl_queues: durable=False + exclusive=False queue.declare is
#    refused (channel/connection error 541 INTERNAL_ERROR)
#  - global_qos: basic.qos with global=True is refused
#  - queue_master_locator: x-queue-master-locator argument is refused
#  - amqp_address_v1: AMQP 1.0 v1 address format (not used by 0-9-1 clients)
# Not reproducible on 4.0.x: 4.3's removal of CQv1 (x-queue-mode/x-queue-version=1
# refused) and consumer_timeout no longer applying to classic queues.
deprecated_features.permit.transient_nonexcl_queues = false
deprecated_features.permit.global_qos = false
deprecated_features.permit.queue_master_locator = false
deprecated_features.permit.amqp_address_v1 = false

# Users: an app user/vhost is created on first boot (empty database only).
# Listeners are bound to 127.0.0.1, so lifting the guest-style loopback
# restriction exposes nothing.
loopback_users = none
default_user = $R4_USER
default_pass = $R4_PASS
default_vhost = $R4_VHOST
default_user_tags.administrator = true
default_permissions.configure = .*
default_permissions.read = .*
default_permissions.write = .*

log.file.level = info
log.console = false
EOF
    chown -R "$R_UID:$R_GID" "$d"
    chmod 750 "$d"
    chmod 640 "$d/rabbitmq.conf"       # contains the default password
}

port_busy() { [[ -n $(ss -Hltn "sport = :$1") ]]; }

# launch_node NAME PORT MGMT DIST: start the broker process if it is not
# running; does NOT wait (cluster members must all be launched before any of
# them can finish booting after a full-cluster stop: each waits for its peers'
# metadata store). Sets LAUNCHED=1 if a new process was started.
launch_node() {
    local name=$1 port=$2 mgmt=$3 dist=$4
    check_name "$name"; check_port_arg PORT "$port"; check_port_arg MGMT_PORT "$mgmt"; check_port_arg DIST_PORT "$dist"
    [[ $port != "$mgmt" && $port != "$dist" && $mgmt != "$dist" ]] || die "PORT, MGMT_PORT, DIST_PORT must differ"
    build_root
    LAUNCHED=
    local d; d=$(node_dir "$name")
    if node_pid "$name" >/dev/null || launcher_alive "$name"; then
        # Already running: idempotent success if it is the same configuration.
        local want="port=$port mgmt=$mgmt dist=$dist" have; have=$(tr '\n' ' ' <"$d/ports" | sed 's/ $//')
        [[ $have == "$want" ]] || die "node $name already runs with different ports ($have); stop it first"
        return 0
    fi
    local p
    for p in "$port" "$mgmt" "$dist"; do
        port_busy "$p" && die "port $p is already in use on this host: $(ss -Hltnp "sport = :$p" | head -1)"
    done
    ensure_epmd
    write_node_files "$name" "$port" "$mgmt" "$dist"
    rm -f "$d/rabbitmq.pid" "$d/launcher.pid"
    local envs; mapfile -t envs < <(node_env "$name")
    log "starting $(nodename "$name"): amqp 127.0.0.1:$port mgmt 127.0.0.1:$mgmt dist $dist epmd $EPMD_PORT"
    # Foreground `rabbitmq-server` (not the deprecated -detached) under setsid so
    # it survives this shell; its stdout/err go to a console log for diagnosis.
    # setsid/unshare/sh/chroot/env all exec, so $! is the rabbitmq-server
    # wrapper script that stays the beam's parent: used to detect early death.
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    in_root_cmd "${envs[@]}" -- /usr/lib/rabbitmq/bin/rabbitmq-server
    setsid "${IN_ROOT_CMD[@]}" >>"$d/log/console.log" 2>&1 </dev/null 9>&- &
    echo $! >"$d/launcher.pid"
    disown
    LAUNCHED=1
}

launcher_alive() {
    local f; f="$(node_dir "$1")/launcher.pid"
    [[ -s $f ]] || return 1
    local p; p=$(tr -dc 0-9 <"$f")
    [[ -n $p && -d /proc/$p && $(readlink "/proc/$p/root" 2>/dev/null) == "$ROOT" ]]
}

# Metadata store: RabbitMQ 4.3 only has Khepri (Mnesia was removed), so use it
# here too (RABBITMQ4_METADATA_STORE=mnesia to opt out). In trixie's 4.0.5 the
# khepri_db flag is still marked experimental, hence --experimental.
# Bonus: with Mnesia, 4.0.5 cannot join a cluster while
# deprecated_features.permit.transient_nonexcl_queues = false - start_app after
# join_cluster dies with {failed_to_deny_deprecated_features,[transient_nonexcl_queues]}
# because the "is it in use" check reads the rabbit_queue table before Mnesia
# has copied it (no_exists). With Khepri the join works.
ensure_metadata_store() {
    local name=$1
    [[ ${RABBITMQ4_METADATA_STORE:-khepri} == khepri ]] || return 0
    # (capture first: `cli | grep -q` under pipefail fails when grep exits early)
    local ff; ff=$(cli "$name" rabbitmqctl -q list_feature_flags name state 2>/dev/null || true)
    grep -Eq '^khepri_db[[:space:]]+enabled' <<<"$ff" && return 0
    log "enabling Khepri metadata store (khepri_db) on $(nodename "$name")"
    cli "$name" rabbitmqctl -q enable_feature_flag --experimental khepri_db >/dev/null \
        || die "could not enable khepri_db on $name"
}

cmd_start() {
    [[ $# -eq 4 ]] || die "usage: $PROG start NAME PORT MGMT_PORT DIST_PORT"
    local t0; t0=$(now)
    launch_node "$@"
    local name=$1
    wait_node "$name"
    ensure_metadata_store "$name"
    if [[ -n $LAUNCHED ]]; then
        log "node $(nodename "$name") up in $(elapsed "$t0")s (pid $(node_pid "$name"))"
    else
        log "node $(nodename "$name") already running (pid $(node_pid "$name"))"
    fi
}

# Wait (bounded) until the broker answers ping, has fully booted, and its
# listeners accept connections. Fails fast if the process dies.
wait_node() {
    local name=$1 d; d=$(node_dir "$name")
    local deadline=$(( $(date +%s) + TIMEOUT ))
    while :; do
        if node_pings "$name"; then break; fi
        if ! launcher_alive "$name" && ! node_pid "$name" >/dev/null; then
            tail -n 25 "$d/log/console.log" >&2 2>/dev/null || true
            die "node $name is not running (died during start-up?); see $d/log/"
        fi
        if (( $(date +%s) >= deadline )); then
            tail -n 25 "$d/log/console.log" >&2 2>/dev/null || true
            die "node $name did not answer ping within ${TIMEOUT}s; see $d/log/"
        fi
        sleep 1
    done
    local left=$(( deadline - $(date +%s) )); (( left > 5 )) || left=5
    cli "$name" rabbitmqctl -q await_startup --timeout "$left" >/dev/null \
        || die "node $name answers ping but did not finish booting within ${TIMEOUT}s; see $d/log/"
    cli "$name" rabbitmq-diagnostics -q check_port_connectivity >/dev/null \
        || die "node $name is up but its listeners do not accept connections"
}

cmd_stop() {
    [[ $# -eq 1 ]] || die "usage: $PROG stop NAME"
    local name=$1; check_name "$name"
    local d; d=$(node_dir "$name")
    local pid lpid=
    pid=$(node_pid "$name" 2>/dev/null) || pid=
    launcher_alive "$name" && lpid=$(tr -dc 0-9 <"$d/launcher.pid")
    if [[ -z $pid && -z $lpid ]]; then
        rm -f "$d/rabbitmq.pid" "$d/launcher.pid"
        log "node $(nodename "$name") is not running"
        return 0
    fi
    log "stopping $(nodename "$name") (pid ${pid:-?}, launcher ${lpid:-?})"
    # `rabbitmqctl stop PIDFILE` returns only after the OS process exited.
    if [[ -n $pid ]]; then
        cli "$name" rabbitmqctl -q stop "$(node_dir_rel "$name")/rabbitmq.pid" >/dev/null 2>&1 || true
    fi
    local i
    for i in $(seq 1 "$TIMEOUT"); do
        { [[ -n $pid && -d /proc/$pid ]] || launcher_alive "$name"; } || break
        sleep 1
    done
    if { [[ -n $pid && -d /proc/$pid ]] || launcher_alive "$name"; }; then
        # The launcher is a session/process-group leader (setsid): signal the group.
        log "graceful stop timed out; sending SIGTERM then SIGKILL"
        [[ -n $lpid ]] && kill -TERM -- "-$lpid" 2>/dev/null
        [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null
        sleep 10
        [[ -n $lpid ]] && kill -KILL -- "-$lpid" 2>/dev/null
        [[ -n $pid ]] && kill -KILL "$pid" 2>/dev/null
        true
    fi
    rm -f "$d/rabbitmq.pid" "$d/launcher.pid"
    log "node $(nodename "$name") stopped"
}

# A node that dies as a crashed host would: SIGKILL to the beam and its
# launcher's process group, so quorum queues it leads get no graceful
# leadership transfer and its clients' connections just break.
cmd_kill() {
    [[ $# -eq 1 ]] || die "usage: $PROG kill NAME"
    local name=$1; check_name "$name"
    local d; d=$(node_dir "$name")
    local pid lpid=
    pid=$(node_pid "$name" 2>/dev/null) || pid=
    launcher_alive "$name" && lpid=$(tr -dc 0-9 <"$d/launcher.pid")
    [[ -n $pid ]] && kill -KILL "$pid" 2>/dev/null
    [[ -n $lpid ]] && kill -KILL -- "-$lpid" 2>/dev/null
    local i
    for i in $(seq 1 50); do
        { [[ -n $pid && -d /proc/$pid ]] || launcher_alive "$name"; } || break
        sleep 0.1
    done
    rm -f "$d/rabbitmq.pid" "$d/launcher.pid"
    log "node $(nodename "$name") killed (pid ${pid:-?}, launcher ${lpid:-?})"
}

cmd_status() {
    [[ $# -eq 1 ]] || die "usage: $PROG status NAME"
    local name=$1; check_name "$name"
    local d; d=$(node_dir "$name")
    if ! root_is_valid; then echo "$name: root $ROOT not built"; return 3; fi
    local pid; pid=$(node_pid "$name" 2>/dev/null) || pid=
    if [[ -z $pid ]]; then echo "$name: stopped"; return 3; fi
    if ! node_pings "$name"; then echo "$name: process $pid alive but not answering (starting or stuck)"; return 1; fi
    local port mgmt dist; . "$d/ports"
    echo "$name: running node=$(nodename "$name") pid=$pid amqp=127.0.0.1:$port mgmt=127.0.0.1:$mgmt dist=$dist epmd=$EPMD_PORT"
    echo "  rabbitmq $(cli "$name" rabbitmq-diagnostics -q server_version 2>/dev/null | tail -1)," \
         "erlang $(cli "$name" rabbitmq-diagnostics -q erlang_version 2>/dev/null | tail -1)"
    echo "  data=$d/data log=$d/log config=$d/rabbitmq.conf"
}

cluster_names() { local i; for ((i = 1; i <= $1; i++)); do echo "$CLUSTER_PREFIX$i"; done; }

cmd_cluster() {
    [[ $# -eq 2 ]] || die "usage: $PROG cluster N BASEPORT"
    local n=$1 base=$2
    is_uint "$n" && (( n >= 1 && n <= 9 )) || die "N must be 1..9"
    check_port_arg BASEPORT "$base"
    (( base + 20000 + n - 1 <= 65535 )) || die "BASEPORT too high: BASEPORT+20000+N-1 must be <= 65535"
    build_root
    local t0 i name; t0=$(now)
    local names; mapfile -t names < <(cluster_names "$n")
    # Launch every node first, then wait for all: after a full-cluster stop a
    # member only finishes booting once enough peers are back (metadata store
    # quorum), so starting them one-by-one with a wait in between would hang.
    for ((i = 0; i < n; i++)); do
        launch_node "${names[i]}" $((base + i)) $((base + 10000 + i)) $((base + 20000 + i))
    done
    for ((i = 0; i < n; i++)); do wait_node "${names[i]}"; done
    log "all $n nodes answer (took $(elapsed "$t0")s); checking membership"
    # Khepri only on the seed before joining. Enabling it on a standalone node
    # that is then reset + joined is a trap in 4.0.5: `reset` falls back to
    # Mnesia and leaves the node's old single-member Khepri Raft server on disk;
    # after the next restart the node recovers THAT one, boots as a separate
    # 1-node cluster (split brain: "leader saw pre_vote_rpc for unknown peer")
    # and re-creates quorum queues with 1 member. Joining nodes inherit
    # khepri_db from the cluster during join_cluster instead.
    ensure_metadata_store "${names[0]}"
    local seed; seed=$(nodename "${names[0]}")
    for ((i = 1; i < n; i++)); do
        name=${names[i]}
        # Already a member of the seed's cluster? (idempotency: never reset a
        # node that already joined - that would drop its quorum queue replicas.)
        # (capture first: `cli | grep -q` under pipefail can report a false
        # "not member" when grep exits early - and then we would reset a member)
        local cs; cs=$(cli "$name" rabbitmqctl -q cluster_status --formatter json 2>/dev/null || true)
        if grep -q "\"$seed\"" <<<"$cs"; then
            log "$(nodename "$name") already clustered with $seed"
            continue
        fi
        local ff; ff=$(cli "$name" rabbitmqctl -q list_feature_flags name state 2>/dev/null || true)
        if grep -Eq '^khepri_db[[:space:]]+enabled' <<<"$ff"; then
            # See above: a standalone Khepri node must be wiped, not just reset.
            log "$(nodename "$name") is a standalone Khepri node: wiping its data before joining"
            local port mgmt dist; . "$(node_dir "$name")/ports"
            cmd_stop "$name"
            rm -rf --one-file-system "$(node_dir "$name")/data"
            launch_node "$name" "$port" "$mgmt" "$dist"
            wait_node "$name"
        fi
        log "joining $(nodename "$name") to $seed (stop_app, reset, join_cluster, start_app)"
        local step
        for step in stop_app reset "join_cluster $seed" start_app; do
            # shellcheck disable=SC2086
            cli "$name" rabbitmqctl -q $step >"$(node_dir "$name")/log/join.out" 2>&1 \
                || { cat "$(node_dir "$name")/log/join.out" >&2; die "'rabbitmqctl $step' failed on $name; see $(node_dir "$name")/log/"; }
        done
        cli "$name" rabbitmqctl -q await_startup --timeout "$TIMEOUT" >/dev/null \
            || die "$name did not finish booting after joining"
    done
    for ((i = 1; i < n; i++)); do ensure_metadata_store "${names[i]}"; done
    # Verify: the seed must report all N nodes as running.
    local running deadline=$(( $(date +%s) + TIMEOUT ))
    while :; do
        running=$(cli "${names[0]}" rabbitmqctl -q cluster_status --formatter json 2>/dev/null \
            | sed -n 's/.*"running_nodes":\[\([^]]*\)\].*/\1/p' | tr ',' '\n' | grep -c @ || true)
        running=${running:-0}
        (( running == n )) && break
        (( $(date +%s) < deadline )) || die "cluster has $running/$n running nodes after ${TIMEOUT}s"
        sleep 1
    done
    log "cluster of $n nodes (${names[*]}) running; took $(elapsed "$t0")s; ports amqp $base-$((base + n - 1))"
}

cmd_cluster_stop() {
    [[ $# -eq 1 ]] && is_uint "$1" || die "usage: $PROG cluster-stop N"
    local names name; mapfile -t names < <(cluster_names "$1")
    # Stop in reverse order so the seed (first) node stops last; on the next
    # `cluster` start, RabbitMQ waits for peers that stopped last to come back.
    for ((i = ${#names[@]} - 1; i >= 0; i--)); do cmd_stop "${names[i]}"; done
}

cmd_stop_all() {
    local d name
    for d in "$ROOT$NODES_REL"/*/; do
        name=$(basename "$d")
        [[ -f $d/ports ]] && cmd_stop "$name"
    done
    if [[ -d $ROOT ]] && epmd_alive; then
        in_root -- /usr/bin/epmd -port "$EPMD_PORT" -kill >/dev/null 2>&1 || true
        log "private epmd on $EPMD_PORT stopped"
    fi
    local left; left=$(pids_in_dir "$ROOT")
    [[ -z $left ]] || log "warning: processes still running inside root: $(echo $left)"
}

main() {
    local cmd=${1:-}; shift || true
    case $cmd in
        build)        need_root; take_lock; build_root ;;
        start)        need_root; take_lock; cmd_start "$@" ;;
        stop)         need_root; take_lock; cmd_stop "$@" ;;
        kill)         need_root; take_lock; cmd_kill "$@" ;;
        status)       need_root; cmd_status "$@" ;;
        cluster)      need_root; take_lock; cmd_cluster "$@" ;;
        cluster-stop) need_root; take_lock; cmd_cluster_stop "$@" ;;
        stop-all)     need_root; take_lock; cmd_stop_all ;;
        ctl)          need_root; [[ $# -ge 2 ]] || die "usage: $PROG ctl NAME TOOL [ARGS...]"
                      root_is_valid || die "root not built"; cli "$@" ;;
        ""|-h|--help|help) sed -n '2,/^set -Eeuo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' ;;
        *) die "unknown command '$cmd' (try --help)" ;;
    esac
}

main "$@"
