#!/usr/bin/env bash
# Another Docker Engine on this machine, for the engine-pool tests and for
# trying a pool out: a second `dockerd` with its own data root, exec root,
# pid file and bridge, listening on tcp://127.0.0.1:PORT with mutual TLS.
#
#   scripts/engine.sh start NAME PORT   # idempotent; prints the engine's pid
#   scripts/engine.sh stop NAME         # stops it (and its containerd)
#   scripts/engine.sh certs             # only the certificates
#
# Certificates (P-256, openssl) are made once under .kiln/engines/certs/:
#   ca.pem                      the CA every engine's and client's cert is signed by
#   server-cert.pem/-key.pem    the engines' certificate (IP 127.0.0.1)
#   client-cert.pem/-key.pem    Kiln's client certificate
#   stranger-cert.pem/-key.pem  a client certificate from another CA (refused)
#
# Never `--bridge=none`: it deletes the first daemon's docker0 (see
# ../shared/notes/docker-engine.md); each engine gets a bridge of its own.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state="${KILN_STATE_DIR:-$repo/.kiln}/engines"
certs="$state/certs"
log() { printf '[engine] %s\n' "$*" >&2; }

make_certs() {
  [ -f "$certs/stranger-key.pem" ] && return 0
  log "making TLS certificates under $certs"
  mkdir -p "$certs"
  local tmp
  tmp="$(mktemp -d)"
  (
    cd "$tmp"
    key() { openssl ecparam -name prime256v1 -genkey -noout -out "$1" 2>/dev/null; }
    key ca-key.pem
    openssl req -x509 -new -key ca-key.pem -days 3650 -subj "/CN=kiln test engines CA" -out ca.pem
    key server-key.pem
    openssl req -new -key server-key.pem -subj "/CN=127.0.0.1" -out server.csr
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 3650 \
      -extfile server.ext -out server-cert.pem 2>/dev/null
    key client-key.pem
    openssl req -new -key client-key.pem -subj "/CN=kiln" -out client.csr
    printf 'extendedKeyUsage=clientAuth\n' >client.ext
    openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 3650 \
      -extfile client.ext -out client-cert.pem 2>/dev/null
    # Another CA's client: a well-formed certificate the engines must refuse.
    key stranger-ca-key.pem
    openssl req -x509 -new -key stranger-ca-key.pem -days 3650 -subj "/CN=someone else's CA" -out stranger-ca.pem
    key stranger-key.pem
    openssl req -new -key stranger-key.pem -subj "/CN=kiln" -out stranger.csr
    openssl x509 -req -in stranger.csr -CA stranger-ca.pem -CAkey stranger-ca-key.pem -CAcreateserial \
      -days 3650 -extfile client.ext -out stranger-cert.pem 2>/dev/null
    cp ca.pem server-cert.pem server-key.pem client-cert.pem client-key.pem \
      stranger-cert.pem stranger-key.pem "$certs/"
  )
  rm -rf "$tmp"
  chmod 600 "$certs"/*-key.pem
}

answers() {
  /usr/bin/docker --tlsverify --tlscacert "$certs/ca.pem" --tlscert "$certs/client-cert.pem" \
    --tlskey "$certs/client-key.pem" -H "tcp://127.0.0.1:$1" info >/dev/null 2>&1
}

start() {
  local name="$1" port="$2"
  case "$name" in *[!a-z0-9]* | "") log "NAME: lower-case letters and digits"; exit 2 ;; esac
  make_certs
  local dir="$state/$name" bridge="kb-$name"
  # A /24 of its own per port, so engines started side by side do not clash.
  local subnet="10.$((200 + port % 50)).$((port % 250)).1/24"
  if answers "$port"; then
    echo "$(cat "$dir/dockerd.pid")"
    return 0
  fi
  mkdir -p "$dir/data"
  # What a killed daemon of this name left behind.
  stop "$name" >/dev/null 2>&1 || true
  make_port_free "$name" "$port"
  if ! ip link show "$bridge" >/dev/null 2>&1; then
    ip link add "$bridge" type bridge
    ip addr add "$subnet" dev "$bridge"
  fi
  ip link set "$bridge" up
  log "starting engine $name on tcp://127.0.0.1:$port (mutual TLS)"
  setsid /usr/sbin/dockerd \
    --data-root "$dir/data" \
    --exec-root "/var/run/kiln-engine-$name" \
    --pidfile "$dir/dockerd.pid" \
    --host "tcp://127.0.0.1:$port" \
    --tlsverify --tlscacert "$certs/ca.pem" \
    --tlscert "$certs/server-cert.pem" --tlskey "$certs/server-key.pem" \
    --bridge "$bridge" --iptables=false --ip-masq=false \
    >"$dir/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 1 80); do
    answers "$port" && break
    sleep 0.25
  done
  answers "$port" || { log "engine $name did not start; see $dir/dockerd.log"; tail -20 "$dir/dockerd.log" >&2; exit 1; }
  echo "$(cat "$dir/dockerd.pid")"
}

# The port still answers no client of ours: an engine of this name that
# another checkout started (its own certificates, its own .kiln) is stopped,
# as this checkout's tests would only see it refuse them and call it
# unhealthy; anything else on the port is reported, not touched.
make_port_free() {
  local name="$1" port="$2" pid
  # Nothing listening is the usual case (grep finding nothing is not an error).
  pid="$(ss -Hltnp "sport = :$port" 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2 || true)"
  [ -n "$pid" ] || return 0
  local command
  command="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
  case "$command" in
    *dockerd*"--exec-root /var/run/kiln-engine-$name "*)
      local pidfile="${command#*--pidfile }"
      log "port $port: engine $name of another checkout (pid $pid, ${pidfile%% *}) refuses this checkout's certificates; stopping it"
      stop_daemon "$name" "$pid"
      ;;
    *)
      log "port $port is taken by pid $pid ($command); stop it or choose another PORT"
      exit 1
      ;;
  esac
}

stop_daemon() {
  local name="$1" pid="$2"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  # The daemon's own containerd outlives a daemon killed with -9.
  local containerd="/var/run/kiln-engine-$name/containerd/containerd.pid"
  if [ -f "$containerd" ]; then
    kill "$(cat "$containerd")" 2>/dev/null || true
    rm -f "$containerd"
  fi
}

stop() {
  local name="$1" dir="$state/$1"
  stop_daemon "$name" "$(cat "$dir/dockerd.pid" 2>/dev/null || true)"
  rm -f "$dir/dockerd.pid"
  # A daemon killed with -9 leaves its mounts behind (its data root mounted
  # on itself, container layers), and `rm -rf` of the checkout then fails
  # on them: unmount what is left under its directory, deepest first.
  findmnt -rn -o TARGET 2>/dev/null | awk -v dir="$dir/" 'index($0, dir) == 1' | sort -r |
    while read -r mounted; do umount -l "$mounted" 2>/dev/null || true; done
}

case "${1:-}" in
  start) start "${2:?NAME}" "${3:?PORT}" ;;
  stop) stop "${2:?NAME}" ;;
  certs) make_certs ;;
  *) echo "usage: $0 start NAME PORT | stop NAME | certs" >&2; exit 2 ;;
esac
