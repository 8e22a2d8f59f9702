#!/usr/bin/env bash
# The lab: real servers on 127.0.0.1, each on a free port with its own folder.
#
#   hack/lab.sh up       start everything (idempotent; prints the environment)
#   hack/lab.sh env      print the environment (`eval "$(hack/lab.sh env)"`)
#   hack/lab.sh status   check every service; exit 1 if one is down
#   hack/lab.sh down     stop everything by recorded PID
#   hack/lab.sh git-repo NAME   create a bare repository NAME.git on the Git server
#   hack/lab.sh fault SERVICE    stop one service (apiserver-mgmt, s3, registry, git, ...), keeping
#                               how it ran; hack/lab.sh revive SERVICE starts it again as it was
#
# Per simulated cluster (LAB_CLUSTERS, default "mgmt cluster1-azure cluster2-aws"; the first is the
# management cluster): etcd + kube-apiserver v1.20.2, and with LAB_CONTROLLERS="<cluster>..." also
# kube-controller-manager (node lifecycle: a silent Node turns Ready=Unknown after
# LAB_NODE_MONITOR_GRACE, default 40s) + kube-scheduler.
# Shared: s3s-fs (S3, SigV4), docker-registry (htpasswd), lighttpd + git http-backend (basic auth),
# CRIU 4.1.1 + runc (checked with `criu check`).
#
# State lives in $TRANSITION_LAB_DIR (default /tmp/transition-lab); binaries come from
# hack/install.sh's cache. Endpoints and credentials go to $TRANSITION_LAB_DIR/env (mode 0600).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

LAB="${TRANSITION_LAB_DIR:-/tmp/transition-lab}"
# Whether the caller asked for specific clusters/controllers (an already running lab is reused
# unless it differs from an explicit request).
ASKED_CLUSTERS="${LAB_CLUSTERS+x}"
ASKED_CONTROLLERS="${LAB_CONTROLLERS+x}"
LAB_CLUSTERS="${LAB_CLUSTERS:-mgmt cluster1-azure cluster2-aws}"
LAB_CONTROLLERS="${LAB_CONTROLLERS:-}"
ENV_FILE="$LAB/env"
PIDS="$LAB/pids"

upper() { echo "$1" | tr 'a-z-' 'A-Z_'; }
rand() { openssl rand -hex "${1:-16}"; }

# start NAME LOGFILE CMD... — runs CMD detached from our stdio, records its PID.
start() {
  local name="$1" logf="$2"
  shift 2
  mkdir -p "$PIDS"
  # 9>&- : daemons must not inherit the lab lock (they would hold it forever).
  nohup "$@" >"$logf" 2>&1 </dev/null 9>&- &
  echo $! >"$PIDS/$name.pid"
}

alive() { [ -f "$PIDS/$1.pid" ] && kill -0 "$(cat "$PIDS/$1.pid")" 2>/dev/null; }

stop_one() {
  local name="$1" f="$PIDS/$1.pid"
  [ -f "$f" ] || return 0
  local pid
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    local i
    for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

pki() {
  local d="$LAB/pki"
  [ -f "$d/server.crt" ] && return 0
  mkdir -p "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=transition-lab-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
  cat >"$d/server.ext" <<EXT
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:10.96.0.1
EXT
  openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 3650 \
    -extfile "$d/server.ext" -out "$d/server.crt" 2>/dev/null
  openssl genrsa -out "$d/sa.key" 2048 2>/dev/null
  openssl rsa -in "$d/sa.key" -pubout -out "$d/sa.pub" 2>/dev/null
  chmod 0600 "$d"/*.key
}

apiserver_ready() {
  curl -fsS --max-time 2 --cacert "$LAB/pki/ca.crt" -H "Authorization: Bearer $2" "$1/readyz" | grep -q ok
}

start_cluster() {
  local name="$1" d="$LAB/clusters/$1"
  mkdir -p "$d"
  local etcd_port peer_port api_port token
  etcd_port=$(free_port); peer_port=$(free_port); api_port=$(free_port); token=$(rand)
  start "etcd-$name" "$d/etcd.log" etcd --name "$name" --data-dir "$d/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "$name=http://127.0.0.1:$peer_port" --listen-metrics-urls "" \
    --quota-backend-bytes 1073741824
  echo "$token,admin,admin,\"system:masters\"" >"$d/tokens.csv"
  chmod 0600 "$d/tokens.csv"
  start "apiserver-$name" "$d/apiserver.log" "$TRANSITION_BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" --bind-address 127.0.0.1 --advertise-address 127.0.0.1 \
    --secure-port "$api_port" --insecure-port 0 --cert-dir "$d/certs" \
    --tls-cert-file "$LAB/pki/server.crt" --tls-private-key-file "$LAB/pki/server.key" \
    --service-account-issuer https://kubernetes.default.svc --service-account-key-file "$LAB/pki/sa.pub" \
    --service-account-signing-key-file "$LAB/pki/sa.key" --token-auth-file "$d/tokens.csv" \
    --authorization-mode RBAC --service-cluster-ip-range 10.96.0.0/24 --allow-privileged=true \
    --event-ttl 1h --v 0
  local url="https://127.0.0.1:$api_port"
  cat >"$d/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: $name
  cluster:
    server: $url
    certificate-authority-data: $(base64 -w0 <"$LAB/pki/ca.crt")
users:
- name: admin
  user:
    token: $token
contexts:
- name: $name
  context: {cluster: $name, user: admin}
current-context: $name
KC
  chmod 0600 "$d/kubeconfig"
  local e
  e=$(upper "$name")
  {
    echo "export LAB_${e}_URL='$url'"
    echo "export LAB_${e}_TOKEN='$token'"
    echo "export LAB_${e}_KUBECONFIG='$d/kubeconfig'"
  } >>"$ENV_FILE.tmp"
}

start_controllers() {
  local name="$1" d="$LAB/clusters/$1"
  start "controller-manager-$name" "$d/controller-manager.log" "$TRANSITION_BIN/kube-controller-manager" \
    --kubeconfig "$d/kubeconfig" --bind-address 127.0.0.1 --port 0 --secure-port "$(free_port)" \
    --leader-elect=false --service-account-private-key-file "$LAB/pki/sa.key" --root-ca-file "$LAB/pki/ca.crt" \
    --cluster-name "$name" --node-monitor-grace-period "${LAB_NODE_MONITOR_GRACE:-40s}" --controllers '*,-serviceaccount-token'
  start "scheduler-$name" "$d/scheduler.log" "$TRANSITION_BIN/kube-scheduler" \
    --kubeconfig "$d/kubeconfig" --bind-address 127.0.0.1 --port 0 --secure-port "$(free_port)" --leader-elect=false
}

start_s3() {
  local port root ak sk
  port=$(free_port); root="$LAB/s3"; ak="lab$(rand 6)"; sk=$(rand 20)
  mkdir -p "$root/checkpoints"
  start s3 "$LAB/s3.log" "$TRANSITION_BIN/s3s-fs" --host 127.0.0.1 --port "$port" --access-key "$ak" --secret-key "$sk" "$root"
  {
    echo "export LAB_S3_ENDPOINT='http://127.0.0.1:$port'"
    echo "export LAB_S3_REGION='us-east-1'"
    echo "export LAB_S3_ACCESS_KEY='$ak'"
    echo "export LAB_S3_SECRET_KEY='$sk'"
    echo "export LAB_S3_BUCKET='checkpoints'"
    echo "export LAB_S3_ROOT='$root'"
  } >>"$ENV_FILE.tmp"
}

start_registry() {
  local port d="$LAB/registry" user=lab pass
  port=$(free_port); pass=$(rand 12)
  mkdir -p "$d/data"
  htpasswd -Bbn "$user" "$pass" >"$d/htpasswd" 2>/dev/null
  cat >"$d/config.yml" <<CFG
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $d/data}
  delete: {enabled: true}
http:
  addr: 127.0.0.1:$port
  secret: $(rand)
auth:
  htpasswd: {realm: transition-lab, path: $d/htpasswd}
CFG
  start registry "$d/registry.log" docker-registry serve "$d/config.yml"
  {
    echo "export LAB_REGISTRY='127.0.0.1:$port'"
    echo "export LAB_REGISTRY_USER='$user'"
    echo "export LAB_REGISTRY_PASSWORD='$pass'"
  } >>"$ENV_FILE.tmp"
}

git_repo() {
  local root="$LAB/git/repos" name="$1"
  [ -d "$root/$name.git" ] && return 0
  git init -q --bare -b main "$root/$name.git"
  git -C "$root/$name.git" config http.receivepack true
}

start_git() {
  local port d="$LAB/git" user=lab pass
  port=$(free_port); pass=$(rand 12)
  mkdir -p "$d/repos" "$d/www"
  htpasswd -cbs "$d/htpasswd" "$user" "$pass" 2>/dev/null
  cat >"$d/lighttpd.conf" <<CFG
server.modules = ("mod_auth", "mod_authn_file", "mod_alias", "mod_cgi", "mod_setenv")
server.document-root = "$d/www"
server.bind = "127.0.0.1"
server.port = $port
server.errorlog = "$d/error.log"
server.max-request-size = 1048576
auth.backend = "htpasswd"
auth.backend.htpasswd.userfile = "$d/htpasswd"
auth.require = ("/git/" => ("method" => "basic", "realm" => "transition-lab-git", "require" => "valid-user"))
alias.url = ("/git/" => "/usr/lib/git-core/git-http-backend/")
\$HTTP["url"] =~ "^/git/" {
  cgi.assign = ("" => "")
  setenv.add-environment = ("GIT_PROJECT_ROOT" => "$d/repos", "GIT_HTTP_EXPORT_ALL" => "")
}
CFG
  start git "$d/lighttpd.log" lighttpd -D -f "$d/lighttpd.conf"
  local c
  for c in $LAB_CLUSTERS; do git_repo "$c"; done
  {
    echo "export LAB_GIT_URL='http://127.0.0.1:$port/git'"
    echo "export LAB_GIT_USER='$user'"
    echo "export LAB_GIT_PASSWORD='$pass'"
    echo "export LAB_GIT_ROOT='$d/repos'"
  } >>"$ENV_FILE.tmp"
}

# status — every service answers; prints one line each.
status() {
  [ -f "$ENV_FILE" ] || { echo "lab: not up (no $ENV_FILE)"; return 1; }
  # shellcheck disable=SC1090
  source "$ENV_FILE"
  local ok=0 c e url token code
  for c in $LAB_CLUSTERS; do
    e=$(upper "$c"); url="LAB_${e}_URL"; token="LAB_${e}_TOKEN"
    if apiserver_ready "${!url}" "${!token}"; then echo "cluster $c: ready ${!url}"; else echo "cluster $c: DOWN"; ok=1; fi
  done
  for c in ${LAB_CONTROLLERS:-}; do
    if alive "controller-manager-$c" && alive "scheduler-$c"; then echo "controllers $c: running"; else echo "controllers $c: DOWN"; ok=1; fi
  done
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$LAB_S3_ENDPOINT/" || true)
  if [ "$code" = 403 ] || [ "$code" = 200 ]; then echo "s3: ready $LAB_S3_ENDPOINT"; else echo "s3: DOWN ($code)"; ok=1; fi
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$LAB_REGISTRY/v2/" || true)
  if [ "$code" = 401 ]; then echo "registry: ready $LAB_REGISTRY"; else echo "registry: DOWN ($code)"; ok=1; fi
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$LAB_GIT_URL/" || true)
  if [ "$code" = 401 ]; then echo "git: ready $LAB_GIT_URL"; else echo "git: DOWN ($code)"; ok=1; fi
  if "$LAB_CRIU" check >/dev/null 2>&1; then echo "criu: ready $LAB_CRIU ($("$LAB_CRIU" --version | head -n1))"; else echo "criu: NOT USABLE ($LAB_CRIU check failed)"; ok=1; fi
  return $ok
}

up() {
  mkdir -p "$LAB"
  # status runs in a subshell: it sources the old env file, which must not override our settings.
  if (status) >/dev/null 2>&1 \
    && { [ -z "$ASKED_CONTROLLERS" ] || grep -qxF "export LAB_CONTROLLERS='$LAB_CONTROLLERS'" "$ENV_FILE"; } \
    && { [ -z "$ASKED_CLUSTERS" ] || grep -qxF "export LAB_CLUSTERS='$LAB_CLUSTERS'" "$ENV_FILE"; }; then
    log "lab already up in $LAB"
    cat "$ENV_FILE"
    return 0
  fi
  down_all
  rm -rf "$LAB/clusters" "$LAB/s3" "$LAB/registry" "$LAB/git" "$LAB/fixtures" "$ENV_FILE"
  local c
  for b in kube-apiserver kubectl-current s3s-fs criu; do
    [ -x "$TRANSITION_BIN/$b" ] || die "$TRANSITION_BIN/$b missing: run hack/install.sh first"
  done
  pki
  {
    echo "# transition lab environment — generated by hack/lab.sh; holds credentials"
    echo "export TRANSITION_LAB_DIR='$LAB'"
    echo "export LAB_CLUSTERS='$LAB_CLUSTERS'"
    echo "export LAB_CONTROLLERS='$LAB_CONTROLLERS'"
    echo "export LAB_CA='$LAB/pki/ca.crt'"
    echo "export LAB_CRIU='$TRANSITION_BIN/criu'"
    echo "export LAB_RUNC='$(command -v runc)'"
    echo "export LAB_KUBECTL='$TRANSITION_BIN/kubectl'"
    # A current kubectl (kustomize 5, what Argo CD and Flux render with), for renders only.
    echo "export LAB_KUBECTL_CURRENT='$TRANSITION_BIN/kubectl-current'"
  } >"$ENV_FILE.tmp"
  chmod 0600 "$ENV_FILE.tmp"
  for c in $LAB_CLUSTERS; do start_cluster "$c"; done
  start_s3
  start_registry
  start_git
  mv "$ENV_FILE.tmp" "$ENV_FILE"
  # shellcheck disable=SC1090
  source "$ENV_FILE"
  local e url token
  for c in $LAB_CLUSTERS; do
    e=$(upper "$c"); url="LAB_${e}_URL"; token="LAB_${e}_TOKEN"
    wait_for "kube-apiserver $c" 120 apiserver_ready "${!url}" "${!token}"
  done
  for c in $LAB_CONTROLLERS; do start_controllers "$c"; done
  if ! status >&2; then
    down_all
    die "lab did not come up; logs under $LAB"
  fi
  cat "$ENV_FILE"
}

down_all() {
  [ -d "$PIDS" ] || return 0
  local f
  # API servers (and their controllers) before etcd: an apiserver without etcd takes ~20 s to exit.
  for f in "$PIDS"/controller-manager-*.pid "$PIDS"/scheduler-*.pid "$PIDS"/apiserver-*.pid "$PIDS"/*.pid; do
    [ -f "$f" ] && stop_one "$(basename "$f" .pid)"
  done
  return 0
}

# fault NAME — stops one service of a running lab (apiserver-mgmt, s3, registry, git, ...: the
# names under $PIDS) and keeps its command line, environment and folder, so `revive NAME` starts
# the very same process again (same port, same data). hack/chaos.sh uses them.
fault() {
  local name="$1" f="$PIDS/$1.pid"
  [ -f "$f" ] || die "no service $name in $LAB (have: $(cd "$PIDS" && ls ./*.pid 2>/dev/null | sed 's|./||; s|.pid||' | tr '\n' ' '))"
  local pid
  pid=$(cat "$f")
  kill -0 "$pid" 2>/dev/null || die "service $name (pid $pid) is not running"
  cp "/proc/$pid/cmdline" "$PIDS/$name.cmdline"
  cp "/proc/$pid/environ" "$PIDS/$name.environ"
  readlink "/proc/$pid/cwd" >"$PIDS/$name.cwd"
  stop_one "$name"
}
revive() {
  local name="$1"
  [ -f "$PIDS/$name.cmdline" ] || die "service $name was not stopped with 'lab.sh fault $name'"
  alive "$name" && return 0
  python3 - "$PIDS/$name" "$LAB/$name.revived.log" <<'PY'
import os, subprocess, sys
base, logf = sys.argv[1], sys.argv[2]
argv = open(base + ".cmdline", "rb").read().split(b"\0")[:-1]
env = dict(kv.split(b"=", 1) for kv in open(base + ".environ", "rb").read().split(b"\0") if b"=" in kv)
cwd = open(base + ".cwd").read().strip()
with open(logf, "ab") as log:
    p = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                         start_new_session=True, pass_fds=())
open(base + ".pid", "w").write(f"{p.pid}\n")
PY
  rm -f "$PIDS/$name.cmdline" "$PIDS/$name.environ" "$PIDS/$name.cwd"
}

cmd="${1:-}"
case "$cmd" in
  up|down)
    mkdir -p "$(dirname "$LAB")"
    exec 9>"$LAB.lock"
    flock -w 300 9 || die "another hack/lab.sh holds $LAB.lock for more than 300 s"
    if [ "$cmd" = up ]; then up; else down_all; log "lab down"; fi
    ;;
  env) [ -f "$ENV_FILE" ] && cat "$ENV_FILE" || die "lab is not up" ;;
  status) status ;;
  git-repo) [ -n "${2:-}" ] || die "usage: lab.sh git-repo NAME"; git_repo "$2"; echo "$LAB/git/repos/$2.git" ;;
  fault) [ -n "${2:-}" ] || die "usage: lab.sh fault SERVICE"; fault "$2" ;;
  revive) [ -n "${2:-}" ] || die "usage: lab.sh revive SERVICE"; revive "$2" ;;
  *) echo "usage: $0 up|down|env|status|git-repo NAME|fault SERVICE|revive SERVICE" >&2; exit 2 ;;
esac
