#!/usr/bin/env bash
# A multi-host test bed on ONE machine (needs root: network namespaces):
#
#   * a 3-node RabbitMQ cluster: nodes tb<TAG>1..3@localhost on 127.0.0.1 and
#     the bridge address, AMQP ports BASE+1..BASE+3, Erlang distribution ports
#     20000 higher, own data/log/config dirs under the state dir, one shared
#     Erlang cookie, joined with `rabbitmqctl join_cluster`;
#   * worker "hosts" h1..hN: Linux network namespaces tb-<TAG>-hN, each wired
#     to a link-local bridge (169.254.<NET>.0/24, no forwarding, no route out)
#     by a veth pair, each running its own supervisord with the worker programs
#     rendered by `manage.py render_supervisor --host hN` (workers are named
#     <program>@hN and reach the brokers through the bridge address).
#
# The system RabbitMQ node (rabbit@localhost, 5672/25672) is never touched:
# every rabbitmqctl call here names its node with -n and uses the test bed's
# own cookie (HOME=<state>/home).
#
# No `guest`: the cluster deletes it and gets the project's least-privilege
# user (permissions of queueworks/core/broker_access.py on vhost /), which the
# workers and the producer use, and an administrator; both passwords are
# generated once per state dir (<state>/credentials, mode 600).
#
# Usage: deploy/testbed/testbed.sh COMMAND [ARG]
#   check              can this machine host it? (exit 3 and the reason if not)
#   up                 net-up + cluster-up + hosts-up (idempotent)
#   down               stop everything this test bed started, delete its state
#   status             nodes, cluster members, namespaces, programs
#   env                shell exports for a producer in the root namespace
#   net-up | net-down
#   cluster-up | cluster-down
#   hosts-up | hosts-down
#   node-stop N | node-start N        stop/start RabbitMQ node N (1..3)
#   node-kill N                       SIGKILL node N's Erlang VM (a crash)
#   host-cut hN | host-restore hN     bring host hN's veth down / up
#   host-ctl hN ARGS...               supervisorctl for host hN
#
# Settings (environment, with defaults):
#   TESTBED_TAG=b            short tag; two test beds with different tags can run at once
#   TESTBED_STATE=run/testbed/state-<TAG>
#   TESTBED_BASE_PORT=5700   nodes listen on BASE+1..BASE+3 (dist: +20000)
#   TESTBED_NET=71           bridge 169.254.<NET>.1/24, host hN at 169.254.<NET>.(10+N)
#   TESTBED_HOSTS=3          number of worker hosts
#   TESTBED_PROGRAMS=main_worker,heavy_worker   programs on every worker host
#   TESTBED_DATABASE_URL=sqlite:///<state>/db.sqlite3   DB of the workers (a file
#                            path is shared by all namespaces; postgres on loopback
#                            is relayed to the bridge address with socat)
#   TESTBED_HEARTBEAT=10     AMQP heartbeat (s): how fast a vanished host is noticed
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROJECT_ROOT="$(cd "$HERE/../.." && pwd)"
TAG="${TESTBED_TAG:-b}"
# Outside deploy/ (tests copy that tree; sockets cannot be copied): run/ is local state.
STATE="${TESTBED_STATE:-$PROJECT_ROOT/run/testbed/state-$TAG}"
BASE_PORT="${TESTBED_BASE_PORT:-5700}"
NET="${TESTBED_NET:-71}"
NHOSTS="${TESTBED_HOSTS:-3}"
PROGRAMS="${TESTBED_PROGRAMS:-main_worker,heavy_worker}"
HEARTBEAT="${TESTBED_HEARTBEAT:-10}"
PY="${TESTBED_PYTHON:-$PROJECT_ROOT/.venv/bin/python}"
VENV_BIN="$(dirname "$PY")"
RMQ_BIN=/usr/lib/rabbitmq/bin
BRIDGE="tb${TAG}-br"
BRIDGE_IP="169.254.${NET}.1"
NODES=(1 2 3)

log() { echo "testbed[$TAG]: $*" >&2; }
die() { log "error: $*"; exit 1; }

node_name() { echo "tb${TAG}$1@localhost"; }
node_port() { echo $((BASE_PORT + $1)); }
host_ns() { echo "tb-${TAG}-$1"; }
host_veth() { echo "tb${TAG}-$1"; }
host_ip() { echo "169.254.${NET}.$((10 + ${1#h}))"; }
hosts() { for i in $(seq 1 "$NHOSTS"); do echo "h$i"; done; }

# The broker URL list (kombu failover) as seen from address $1, starting at
# node $2 (each worker host lists the nodes in another order, so their
# connections spread over the cluster).
broker_urls() {
  local address="$1" first="${2:-1}" urls=() i n
  load_credentials
  for i in 0 1 2; do
    n=$(( (first - 1 + i) % 3 + 1 ))
    urls+=("pyamqp://${APP_USER}:${APP_PASSWORD}@${address}:$(node_port "$n")//")
  done
  (IFS=';'; echo "${urls[*]}")
}

database_url() { echo "${TESTBED_DATABASE_URL:-sqlite:///$STATE/db.sqlite3}"; }

# --- users ------------------------------------------------------------------------
# URL-safe: the passwords go into broker URLs as they are.
new_password() { head -c 18 /dev/urandom | base64 | tr '+/' '-_'; }

write_credentials() {
  local file="$STATE/credentials" names
  [ -f "$file" ] && return 0
  names="$(cd "$PROJECT_ROOT" && "$PY" -c 'from queueworks.core.broker_access import APP_USER, TEST_ADMIN_USER
print(f"APP_USER={APP_USER}\nADMIN_USER={TEST_ADMIN_USER}")')" || die "cannot read queueworks/core/broker_access.py"
  ( umask 077
    { echo "$names"; echo "APP_PASSWORD=$(new_password)"; echo "ADMIN_PASSWORD=$(new_password)"; } > "$file" )
}

load_credentials() {
  [ -f "$STATE/credentials" ] || die "no $STATE/credentials: run '$0 cluster-up' first"
  # shellcheck disable=SC1091
  . "$STATE/credentials"
}

node_users() { ctl "$1" list_users --silent | awk '{print $1}'; }

# The project's user and an administrator on the cluster (users are
# cluster-wide: node 1 is enough), guest deleted.  Idempotent.
cluster_users() {
  local permissions
  load_credentials
  mapfile -t permissions < <(cd "$PROJECT_ROOT" && "$PY" -c 'from queueworks.core.broker_access import project_permissions
p = project_permissions()
print(p.configure); print(p.write); print(p.read)')
  [ "${#permissions[@]}" -eq 3 ] || die "cannot read the project's permissions (queueworks/core/broker_access.py)"
  local user password
  for user in "$ADMIN_USER" "$APP_USER"; do
    password="$APP_PASSWORD"; [ "$user" = "$ADMIN_USER" ] && password="$ADMIN_PASSWORD"
    # Passwords go on stdin, never on a command line `ps` could show.
    if node_users 1 | grep -qxF "$user"; then
      printf '%s\n' "$password" | ctl 1 change_password "$user" >/dev/null
    else
      printf '%s\n' "$password" | ctl 1 add_user "$user" >/dev/null
    fi
  done
  ctl 1 set_user_tags "$ADMIN_USER" administrator >/dev/null
  ctl 1 set_permissions -p / "$ADMIN_USER" '.*' '.*' '.*' >/dev/null
  ctl 1 set_permissions -p / "$APP_USER" "${permissions[0]}" "${permissions[1]}" "${permissions[2]}" >/dev/null
  if node_users 1 | grep -qxF guest; then ctl 1 delete_user guest >/dev/null; fi
}

# --- RabbitMQ nodes --------------------------------------------------------------
rmq_env() {
  local n="$1" dir="$STATE/node$1"
  export HOME="$STATE/home"
  export RABBITMQ_CONF_ENV_FILE="$STATE/rabbitmq-env.conf"   # never /etc/rabbitmq's
  export RABBITMQ_NODENAME="$(node_name "$n")"
  export RABBITMQ_DIST_PORT=$(( $(node_port "$n") + 20000 ))
  export RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf"
  export RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config"
  export RABBITMQ_ENABLED_PLUGINS_FILE="$STATE/enabled_plugins"
  export RABBITMQ_MNESIA_BASE="$dir/mnesia"
  export RABBITMQ_LOG_BASE="$dir/log"
  export RABBITMQ_PID_FILE="$dir/rabbitmq.pid"
  # Erlang distribution and epmd stay on loopback.
  export ERL_EPMD_ADDRESS=127.0.0.1
  export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
}

ctl() {  # ctl N rabbitmqctl-args...
  local n="$1"; shift
  ( rmq_env "$n"; "$RMQ_BIN/rabbitmqctl" -q -n "$(node_name "$n")" "$@" )
}

node_pid() { cat "$STATE/node$1/rabbitmq.pid" 2>/dev/null || true; }
node_alive() { local pid; pid="$(node_pid "$1")"; [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }
port_open() { (exec 3<>"/dev/tcp/$1/$2") >/dev/null 2>&1; }

prepare_state() {
  mkdir -p "$STATE/home"
  if [ ! -f "$STATE/home/.erlang.cookie" ]; then
    head -c 30 /dev/urandom | od -An -tx1 | tr -d ' \n' | tr 'a-f' 'A-F' > "$STATE/home/.erlang.cookie"
    chmod 400 "$STATE/home/.erlang.cookie"
  fi
  write_credentials
  : > "$STATE/rabbitmq-env.conf"
  echo "[]." > "$STATE/enabled_plugins"
  for n in "${NODES[@]}"; do
    mkdir -p "$STATE/node$n/log" "$STATE/node$n/mnesia"
    local port; port="$(node_port "$n")"
    cat > "$STATE/node$n/rabbitmq.conf" <<EOF
# Test bed node $(node_name "$n"): loopback and the link-local bridge only.
listeners.tcp.1 = 127.0.0.1:$port
listeners.tcp.2 = $BRIDGE_IP:$port
cluster_partition_handling = pause_minority
heartbeat = $HEARTBEAT
log.file.level = info
log.console = false
EOF
  done
}

node_start() {
  local n="$1"
  if node_alive "$n"; then return 0; fi
  log "starting node $(node_name "$n") on port $(node_port "$n")"
  ( rmq_env "$n"; cd "$STATE/node$n"
    setsid nohup "$RMQ_BIN/rabbitmq-server" > "$STATE/node$n/log/startup.log" 2>&1 < /dev/null & )
}

node_wait() {
  local n="$1"
  ctl "$n" wait --timeout 120 "$STATE/node$n/rabbitmq.pid" >/dev/null 2>&1 \
    || { tail -20 "$STATE/node$n/log/startup.log" >&2 || true; die "node $(node_name "$n") did not start"; }
  for _ in $(seq 1 60); do port_open 127.0.0.1 "$(node_port "$n")" && return 0; sleep 1; done
  die "node $(node_name "$n") is not listening on $(node_port "$n")"
}

cluster_members() { ctl "$1" eval 'rabbit_nodes:all_running().' 2>/dev/null || true; }

cluster_up() {
  command -v "$RMQ_BIN/rabbitmq-server" >/dev/null || [ -x "$RMQ_BIN/rabbitmq-server" ] \
    || die "RabbitMQ is not installed (run deploy/bin/ensure-system.sh)"
  ip link show "$BRIDGE" >/dev/null 2>&1 || net_up
  prepare_state
  for n in "${NODES[@]}"; do node_start "$n"; done
  for n in "${NODES[@]}"; do node_wait "$n"; done
  local seed; seed="$(node_name 1)"
  for n in 2 3; do
    if cluster_members 1 | grep -q "$(node_name "$n")"; then continue; fi
    log "joining $(node_name "$n") to $seed"
    { ctl "$n" stop_app && ctl "$n" reset && ctl "$n" join_cluster "$seed" && ctl "$n" start_app; } \
      >> "$STATE/node$n/log/join.log" 2>&1 || die "joining $(node_name "$n") failed (see $STATE/node$n/log/join.log)"
  done
  cluster_users
  log "cluster running: $(cluster_members 1)"
}

node_stop() {
  local n="$1" pid
  pid="$(node_pid "$n")"
  if ! node_alive "$n"; then return 0; fi
  log "stopping node $(node_name "$n")"
  ctl "$n" stop >/dev/null 2>&1 || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || return 0; sleep 1; done
  log "node $(node_name "$n") ignored stop; killing pid $pid"
  kill -9 "$pid" 2>/dev/null || true
}

node_kill() {  # the node dies (SIGKILL to its Erlang VM), no graceful shutdown
  local n="$1" pid
  pid="$(node_pid "$n")"
  node_alive "$n" || return 0
  log "killing node $(node_name "$n") (pid $pid)"
  kill -9 "$pid" 2>/dev/null || true
  for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
}

cluster_down() { for n in "${NODES[@]}"; do node_stop "$n" & done; wait; }

# --- network ----------------------------------------------------------------------
net_up() {
  [ "$(id -u)" -eq 0 ] || die "network namespaces need root"
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    log "bridge $BRIDGE $BRIDGE_IP/24"
    ip link add "$BRIDGE" type bridge forward_delay 0 stp_state 0
    ip addr add "$BRIDGE_IP/24" dev "$BRIDGE"
  fi
  ip link set "$BRIDGE" up
  local h ns veth
  for h in $(hosts); do
    ns="$(host_ns "$h")"; veth="$(host_veth "$h")"
    ip netns list | grep -qw "^$ns" || ip netns add "$ns"
    if ! ip link show "$veth" >/dev/null 2>&1; then
      ip link add "$veth" type veth peer name eth0 netns "$ns"
      ip link set "$veth" master "$BRIDGE"
      ip -n "$ns" addr add "$(host_ip "$h")/24" dev eth0
    fi
    ip link set "$veth" up
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
  done
}

net_down() {
  local ns
  for ns in $(ip netns list | awk '{print $1}' | grep "^tb-${TAG}-h[0-9]*$" || true); do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
  for veth in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep "^tb${TAG}-h[0-9]*$" || true); do
    ip link del "$veth" 2>/dev/null || true
  done
  ip link del "$BRIDGE" 2>/dev/null || true
  relay_stop
}

# A PostgreSQL on loopback is reachable from the namespaces through a relay on
# the bridge address (the database keeps listening on loopback only).
worker_database_url() {
  local url; url="$(database_url)"
  case "$url" in
    postgres://*@127.0.0.1:*|postgres://*@localhost:*|postgresql://*@127.0.0.1:*|postgresql://*@localhost:*)
      local port; port="$(echo "$url" | sed -E 's#.*@(127\.0\.0\.1|localhost):([0-9]+).*#\2#')"
      relay_start "$port"
      echo "$url" | sed -E "s#@(127\.0\.0\.1|localhost):#@$BRIDGE_IP:#" ;;
    *) echo "$url" ;;
  esac
}

relay_start() {
  local port="$1"
  if [ -f "$STATE/relay.pid" ] && kill -0 "$(cat "$STATE/relay.pid")" 2>/dev/null; then return 0; fi
  command -v socat >/dev/null || die "socat is needed to relay PostgreSQL into the namespaces"
  setsid socat "TCP-LISTEN:$port,bind=$BRIDGE_IP,fork,reuseaddr" "TCP:127.0.0.1:$port" \
    > /dev/null 2>&1 < /dev/null &
  echo $! > "$STATE/relay.pid"
}

relay_stop() {
  if [ -f "$STATE/relay.pid" ]; then kill "$(cat "$STATE/relay.pid")" 2>/dev/null || true; rm -f "$STATE/relay.pid"; fi
}

# --- worker hosts -------------------------------------------------------------------
host_env() {  # the environment of host $1's supervisord (and so of its programs)
  local h="$1"
  echo "PROJECT_ROOT=$PROJECT_ROOT"
  echo "RUN_DIR=$STATE/hosts/$h/run"
  echo "PATH=$VENV_BIN:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
  echo "HOME=$STATE/hosts/$h"
  echo "DJANGO_SETTINGS_MODULE=projectname.settings"
  echo "DJANGO_DEBUG=0"
  echo "DJANGO_SECRET_KEY=${DJANGO_SECRET_KEY:-testbed-only-secret-key}"
  echo "CELERY_BROKER_URL=$(broker_urls "$BRIDGE_IP" "${h#h}")"
  echo "CELERY_BROKER_HEARTBEAT=$HEARTBEAT"
  echo "TASK_QUEUE_TYPE=quorum"
  echo "DATABASE_URL=$WORKER_DATABASE_URL"
  echo "WEB_PORT=8000"
  echo "FLOWER_PORT=5555"
  echo "LOG_LEVEL=INFO"
  # The test-only app's tasks and routes (bench/limits.py), when the caller sets
  # them (the production profile refuses the test-only app: it comes with
  # DJANGO_PROFILE=development).
  if [ -n "${DJANGO_TEST_SUPPORT:-}" ]; then echo "DJANGO_TEST_SUPPORT=$DJANGO_TEST_SUPPORT"; fi
  if [ -n "${DJANGO_PROFILE:-}" ]; then echo "DJANGO_PROFILE=$DJANGO_PROFILE"; fi
}

host_pid() { cat "$STATE/hosts/$1/run/supervisord.pid" 2>/dev/null || true; }
host_alive() { local pid; pid="$(host_pid "$1")"; [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }

host_up() {
  local h="$1" dir="$STATE/hosts/$1"
  if host_alive "$h"; then return 0; fi
  mkdir -p "$dir/run/log"
  "$PY" "$PROJECT_ROOT/manage.py" render_supervisor --host "$h" --programs "$PROGRAMS" \
    --deploy-dir "$dir" >/dev/null
  host_env "$h" > "$dir/env"
  log "starting supervisord on $h ($(host_ns "$h"), $(host_ip "$h")): $PROGRAMS"
  ( cd "$PROJECT_ROOT"
    mapfile -t environment < "$dir/env"
    ip netns exec "$(host_ns "$h")" env -i "${environment[@]}" \
      "$VENV_BIN/supervisord" -c "$dir/supervisord.conf" )
}

hosts_up() {
  local h
  for h in $(hosts); do ip netns list | grep -qw "^$(host_ns "$h")" || net_up; done
  WORKER_DATABASE_URL="$(worker_database_url)"
  ( cd "$PROJECT_ROOT"
    DATABASE_URL="$(database_url)" DJANGO_SECRET_KEY="${DJANGO_SECRET_KEY:-testbed-only-secret-key}" \
      "$PY" manage.py migrate --noinput >/dev/null )
  for h in $(hosts); do host_up "$h"; done
  for h in $(hosts); do
    for _ in $(seq 1 20); do
      ip netns exec "$(host_ns "$h")" bash -c "exec 3<>/dev/tcp/$BRIDGE_IP/$(node_port 1)" 2>/dev/null && break
      sleep 0.5
    done || die "$h cannot reach $BRIDGE_IP:$(node_port 1)"
  done
}

host_ctl() {
  local h="$1"; shift
  local environment
  mapfile -t environment < "$STATE/hosts/$h/env"
  env -i "${environment[@]}" "$VENV_BIN/supervisorctl" -c "$STATE/hosts/$h/supervisord.conf" "$@"
}

host_down() {
  local h="$1" pid
  host_alive "$h" || return 0
  pid="$(host_pid "$h")"
  log "stopping supervisord on $h"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
  log "supervisord on $h still running after 30 s; killing what runs in $(host_ns "$h")"
  ip netns pids "$(host_ns "$h")" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
}

hosts_down() {
  local h
  for h in $(ls "$STATE/hosts" 2>/dev/null || true); do host_down "$h" & done
  wait
}

host_cut() { log "cutting $1's network ($(host_veth "$1") down)"; ip link set "$(host_veth "$1")" down; }
host_restore() { log "restoring $1's network"; ip link set "$(host_veth "$1")" up; }

# Can this machine host the test bed?  Prints the reason and exits 3 if not.
check() {
  local ns="tb-${TAG}-probe"
  [ "$(id -u)" -eq 0 ] || { echo "not root: creating network namespaces and veth pairs needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN)"; exit 3; }
  command -v ip >/dev/null || { echo "iproute2 ('ip') is not installed"; exit 3; }
  [ -x "$RMQ_BIN/rabbitmq-server" ] || { echo "RabbitMQ server is not installed ($RMQ_BIN/rabbitmq-server missing)"; exit 3; }
  local out
  if ! out="$(ip netns add "$ns" 2>&1)"; then echo "cannot create a network namespace: $out"; exit 3; fi
  if ! out="$(ip link add "tb${TAG}-probe" type veth peer name eth0 netns "$ns" 2>&1)"; then
    ip netns del "$ns" 2>/dev/null || true
    echo "cannot create a veth pair into a namespace: $out"; exit 3
  fi
  ip link del "tb${TAG}-probe" 2>/dev/null || true
  ip netns del "$ns"
  echo "ok"
}

status() {
  local n h
  for n in "${NODES[@]}"; do
    if node_alive "$n"; then echo "node $(node_name "$n") port $(node_port "$n"): running"
    else echo "node $(node_name "$n") port $(node_port "$n"): stopped"; fi
  done
  for n in "${NODES[@]}"; do node_alive "$n" && { echo "running members: $(cluster_members "$n")"; break; }; done
  for h in $(ls "$STATE/hosts" 2>/dev/null || true); do
    echo "host $h ($(host_ns "$h") $(host_ip "$h")):"
    if host_alive "$h"; then host_ctl "$h" status | sed 's/^/  /' || true; else echo "  supervisord not running"; fi
  done
}

down() {
  hosts_down
  cluster_down
  net_down
  # Only this test bed's own state directory.
  case "$STATE" in */state-*|/tmp/*) rm -rf "$STATE" ;; *) log "keeping $STATE (not a state-* dir)";; esac
  log "down"
}

command="${1:-}"; shift || true
case "$command" in
  check) check ;;
  up) net_up; cluster_up; hosts_up ;;
  down) down ;;
  status) status ;;
  env)
    echo "export CELERY_BROKER_URL='$(broker_urls 127.0.0.1)'"
    echo "export CELERY_BROKER_HEARTBEAT=$HEARTBEAT"
    echo "export TASK_QUEUE_TYPE=quorum"
    echo "export DATABASE_URL='$(database_url)'" ;;
  net-up) net_up ;;
  net-down) net_down ;;
  cluster-up) cluster_up ;;
  cluster-down) cluster_down ;;
  hosts-up) hosts_up ;;
  hosts-down) hosts_down ;;
  node-stop) node_stop "${1:?node number}" ;;
  node-kill) node_kill "${1:?node number}" ;;
  node-start) node_start "${1:?node number}"; node_wait "$1" ;;
  host-cut) host_cut "${1:?host}" ;;
  host-restore) host_restore "${1:?host}" ;;
  host-ctl) host_ctl "$@" ;;
  ctl) ctl "$@" ;;
  *) sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
