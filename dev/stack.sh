#!/usr/bin/env bash
# dev/stack.sh — local dev stack: Apache Kafka (KRaft, single node) + PostgreSQL.
#
#   bash dev/stack.sh up [kafka|postgres|embedded] [--postgres embedded|server]
#   bash dev/stack.sh down|status [kafka|postgres|embedded]
#   bash dev/stack.sh run -- CMD ARGS...   # up what is not running, run CMD, stop what it started
#   bash dev/stack.sh reset                # down + delete runtime data (keeps jars and .stack/m2)
#   bash dev/stack.sh tool CLASS ARGS...   # run a Kafka Java class, e.g. org.apache.kafka.tools.ProducerPerformance
#   bash dev/stack.sh promtool ARGS...     # Prometheus's promtool, e.g. check metrics < scrape.txt
#
# Everything (Maven repo, Kafka jars, certs, data, logs, pid files, secrets) lives in
# <repo>/.stack/. Connection details for tests: .stack/stack.json (mode 0600).
# Kafka: 127.0.0.1:9092 PLAINTEXT, :9093 SSL (client cert required), :9094 SASL_SSL
# (SCRAM-SHA-256), :9095 controller. PostgreSQL: 127.0.0.1:55432, SSL + scram only.
# Embedded PostgreSQL (PGlite, dev/embedded_pg.ts): 127.0.0.1:55433, no TLS (loopback only).
set -euo pipefail

DEV="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
ROOT="$(cd "$DEV/.." && pwd -P)"
STACK="$ROOT/.stack"
CERTS="$STACK/certs"
SECRETS="$STACK/secrets"
KDIR="$STACK/kafka"
KLIBS="$KDIR/libs"
KPID="$KDIR/kafka.pid"
KPROPS="$KDIR/server.properties"
PGDIR="$STACK/pg"
PGDATA="$PGDIR/data"
PGLOG="$PGDIR/postgres.log"
PG_PORT=55432
EPGDIR="$STACK/pglite"
EPGPID="$EPGDIR/server.pid"
EPGLOG="$EPGDIR/server.log"
EPG_PORT="${EMBEDDED_POSTGRES_PORT:-55433}"
PROMDIR="$STACK/prometheus"
WAIT_SECS="${STACK_WAIT_SECS:-90}"
SCRAM_USER=avnadmin
PG_USER=avnadmin
PG_DB=defaultdb

log() { echo "stack: $*" >&2; }
die() { echo "stack: ERROR: $*" >&2; exit 1; }

usage() {
  cat <<'EOF'
usage: bash dev/stack.sh COMMAND [PART]

  up [PART] [--postgres embedded|server]
                           start (idempotent) and wait until healthy; writes .stack/stack.json.
                           Without PART: Kafka and the embedded PostgreSQL (PGlite), or with
                           --postgres server Kafka and Debian's PostgreSQL
  down [PART]              stop what this script started (data is kept)
  status [PART]            one line per part; exit 0 if Kafka and a PostgreSQL answer (with PART:
                           if that part does), 3 otherwise
  run -- CMD ARGS...       start Kafka and Debian's PostgreSQL where not running, run CMD
                           (STACK_JSON is exported), stop only the parts it started, exit with
                           CMD's exit code
  reset                    down, then delete runtime data (keeps downloaded jars and .stack/m2)
  tool CLASS ARGS...       run a Java class with the Kafka classpath
                           (e.g. org.apache.kafka.tools.ProducerPerformance)
  promtool ARGS...         run Prometheus's promtool (e.g. check metrics < scrape.txt); the first
                           call unpacks it from Debian's prometheus package into .stack/prometheus
  --help                   this text

Kafka: 127.0.0.1:9092 plaintext, 9093 ssl (client cert), 9094 sasl_ssl (scram-sha-256), 9095 controller
PARTS: kafka, postgres (Debian's PostgreSQL), embedded (PGlite; needs deno on PATH or $DENO)
PostgreSQL: 127.0.0.1:55432 (ssl, scram-sha-256), user avnadmin, database defaultdb
Embedded PostgreSQL: 127.0.0.1:55433 (no TLS, loopback only), user postgres, database postgres
Client certs (Aiven layout): .stack/certs/client/{ca.pem,service.cert,service.key}
EOF
}

# ---------------------------------------------------------------- helpers

# Serialize concurrent up/down calls (not held while `run` executes its command).
# Long-lived children (broker, postmaster) are started with 9>&- so they do not hold it.
lock() { mkdir -p "$STACK"; exec 9>"$STACK/.lock"; flock -w 300 9 || die "timed out waiting for $STACK/.lock"; }
unlock() { flock -u 9 2>/dev/null || true; exec 9>&-; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pg_bin_dir() {
  local d best=""
  for d in /usr/lib/postgresql/*/bin; do
    [[ -x "$d/initdb" ]] || continue
    if [[ -z "$best" ]] || (( $(basename "$(dirname "$d")") > $(basename "$(dirname "$best")") )); then best="$d"; fi
  done
  echo "$best"
}

ensure_packages() { # [parts]: PostgreSQL's package only when the server is among them
  local need=()
  command -v kcat >/dev/null || need+=(kcat)
  command -v openssl >/dev/null || need+=(openssl)
  if [[ " ${1:-postgres} " == *" postgres "* ]]; then
    { [[ -n "$(pg_bin_dir)" ]] && command -v psql >/dev/null && getent passwd postgres >/dev/null; } || need+=(postgresql)
    # the tests put PgBouncer (transaction mode, as managed services offer it) in front of it
    [[ -x /usr/sbin/pgbouncer ]] || command -v pgbouncer >/dev/null || need+=(pgbouncer)
  fi
  command -v java >/dev/null || [[ -n "${JAVA_HOME:-}" ]] || need+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null || need+=(maven)
  if ((${#need[@]})); then
    log "installing ${need[*]} (apt)"
    [[ $EUID -eq 0 ]] || die "need root to apt-get install ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
}

# promtool alone, from Debian's prometheus package: unpacked into .stack/prometheus rather than
# installed, so no Prometheus server gets installed or started as a service
ensure_promtool() {
  command -v promtool >/dev/null && return 0
  [[ -x "$PROMDIR/usr/bin/promtool" ]] && return 0
  command -v dpkg-deb >/dev/null && command -v apt-get >/dev/null \
    || die "promtool needs Debian's apt-get and dpkg-deb (or promtool on PATH)"
  log "unpacking promtool from Debian's prometheus package into .stack/prometheus"
  local t; t="$(mktemp -d)"
  if ! (cd "$t" && apt-get download prometheus >/dev/null 2>&1); then
    [[ $EUID -eq 0 ]] || die "need root to apt-get update before downloading prometheus"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    (cd "$t" && apt-get download prometheus >/dev/null 2>&1) || die "apt-get download prometheus failed"
  fi
  mkdir -p "$PROMDIR"
  dpkg-deb --fsys-tarfile "$t"/prometheus_*.deb | tar -x -C "$PROMDIR" ./usr/bin/promtool
  rm -rf "$t"
}
promtool_bin() { command -v promtool || echo "$PROMDIR/usr/bin/promtool"; }

java_bin() {
  local j="java"
  [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]] && j="$JAVA_HOME/bin/java"
  local v
  v="$("$j" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)"
  [[ -n "$v" && "$v" -ge 17 ]] || die "Kafka 4.x needs Java 17+, found '$v' ($j)"
  echo "$j"
}

gen_secret() { openssl rand -hex 16; }

# Random passwords, generated once, hex only (safe in URIs, JSON and properties files).
ensure_secrets() {
  mkdir -p "$SECRETS"; chmod 0700 "$SECRETS"
  local f
  for f in kafka-scram.pass pg-avnadmin.pass pg-postgres.pass keystore.pass; do
    [[ -s "$SECRETS/$f" ]] || (umask 077; gen_secret >"$SECRETS/$f")
  done
}
secret() { cat "$SECRETS/$1"; }

# ---------------------------------------------------------------- certificates

ensure_certs() {
  [[ -s "$CERTS/client/service.key" && -s "$CERTS/server.p12" ]] && return 0
  log "creating CA, server and client certificates in .stack/certs"
  rm -rf "$CERTS"; mkdir -p "$CERTS/client"; chmod 0700 "$CERTS"
  local t; t="$(mktemp -d)"
  (
    umask 077; cd "$CERTS"
    cat >"$t/ca.ext" <<'EOF'
basicConstraints=critical,CA:TRUE
keyUsage=critical,keyCertSign,cRLSign
subjectKeyIdentifier=hash
EOF
    cat >"$t/server.ext" <<'EOF'
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=IP:127.0.0.1,DNS:localhost
authorityKeyIdentifier=keyid
EOF
    cat >"$t/client.ext" <<'EOF'
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth
authorityKeyIdentifier=keyid
EOF
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out ca.key 2>/dev/null
    openssl req -new -key ca.key -subj "/CN=dev-stack-ca" -out "$t/ca.csr"
    openssl x509 -req -in "$t/ca.csr" -signkey ca.key -days 3650 -sha256 -extfile "$t/ca.ext" -out ca.pem 2>/dev/null
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out server.key 2>/dev/null
    openssl req -new -key server.key -subj "/CN=localhost" -out "$t/server.csr"
    openssl x509 -req -in "$t/server.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 -sha256 \
      -extfile "$t/server.ext" -out server.pem 2>/dev/null
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out client/service.key 2>/dev/null
    openssl req -new -key client/service.key -subj "/CN=avnadmin" -out "$t/client.csr"
    openssl x509 -req -in "$t/client.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 -sha256 \
      -extfile "$t/client.ext" -out client/service.cert 2>/dev/null
    cp ca.pem client/ca.pem
    openssl pkcs12 -export -in server.pem -inkey server.key -certfile ca.pem -name broker \
      -out server.p12 -passout "file:$SECRETS/keystore.pass"
    chmod 0600 ca.key server.key client/service.key server.p12
    chmod 0644 ca.pem server.pem client/ca.pem client/service.cert
    chmod 0755 client
  )
  rm -rf "$t"
  chmod 0711 "$CERTS"
}

# ---------------------------------------------------------------- kafka

kafka_version() { sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$DEV/pom.xml"; }

ensure_kafka_jars() { # keyed on kafka.version + pom checksum; fetched into a temp dir, then swapped in
  local stamp; stamp="$(kafka_version) $(sha256sum "$DEV/pom.xml" | cut -c1-16)"
  [[ -f "$KLIBS/.stamp" && "$(cat "$KLIBS/.stamp")" == "$stamp" ]] && return 0
  log "fetching Kafka $(kafka_version) jars with Maven (first run only)"
  local tmp="$KDIR/libs.fetch.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  mvn -q -B -f "$DEV/pom.xml" -Dmaven.repo.local="$STACK/m2" \
    dependency:copy-dependencies -DoutputDirectory="$tmp" >"$KDIR/mvn.log" 2>&1 \
    || { tail -n 30 "$KDIR/mvn.log" >&2; rm -rf "$tmp"; die "maven could not fetch the Kafka jars (log: .stack/kafka/mvn.log)"; }
  ls "$tmp"/kafka_2.13-*.jar >/dev/null 2>&1 || die "kafka_2.13 jar missing after maven fetch"
  echo "$stamp" >"$tmp/.stamp"
  rm -rf "$KLIBS"; mv "$tmp" "$KLIBS"
}

kafka_java() { # JVM args... with the Kafka classpath (log4j2 default config: errors to the console)
  "$(java_bin)" -cp "$KLIBS/*" "$@"
}

render_kafka_config() {
  local t; t="$(cat "$DEV/kafka-server.properties.tmpl")"
  t="${t//@STACK@/$STACK}"
  t="${t//@KEYSTORE_PASSWORD@/$(secret keystore.pass)}"
  (umask 077; printf '%s\n' "$t" >"$KPROPS.tmp"); mv "$KPROPS.tmp" "$KPROPS"
}

# pid of our broker if it is alive, else nothing (and stale pid file removed)
kafka_pid() {
  [[ -f "$KPID" ]] || return 0
  local pid; pid="$(cat "$KPID")"
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null \
     && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "kafka.Kafka $KPROPS"; then
    echo "$pid"
  else
    rm -f "$KPID"
  fi
}

kafka_ssl_ok() {
  timeout 15 kcat -b 127.0.0.1:9093 -X security.protocol=ssl \
    -X ssl.ca.location="$CERTS/client/ca.pem" \
    -X ssl.certificate.location="$CERTS/client/service.cert" \
    -X ssl.key.location="$CERTS/client/service.key" -m 5 -L >/dev/null 2>&1
}

kafka_start() { # starts the broker in the background unless it runs; sets DID_START=1 if it did
  DID_START=0
  [[ -n "$(kafka_pid)" ]] && return 0
  local p; for p in 9092 9093 9094 9095; do
    port_open "$p" && die "port 127.0.0.1:$p is in use by another process (not our Kafka)"
  done
  ensure_kafka_jars
  mkdir -p "$KDIR/data"
  render_kafka_config
  if [[ ! -f "$KDIR/data/meta.properties" ]]; then
    local cid; cid="$(openssl rand 16 | base64 | tr '+/' '-_' | tr -d '=')"
    log "formatting Kafka storage (cluster id $cid, SCRAM user $SCRAM_USER)"
    kafka_java kafka.tools.StorageTool format -t "$cid" -c "$KPROPS" \
      --add-scram "SCRAM-SHA-256=[name=$SCRAM_USER,password=$(secret kafka-scram.pass)]" \
      >"$KDIR/format.log" 2>&1 || { cat "$KDIR/format.log" >&2; die "kafka storage format failed"; }
  fi
  log "starting Kafka $(kafka_version) (log: .stack/kafka/server.log)"
  (
    cd "$KDIR"
    # setsid: own session, so a Ctrl-C aimed at the caller does not reach the broker
    setsid nohup "$(java_bin)" -Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true \
      -Dlog4j2.configurationFile="$DEV/kafka-log4j2.xml" -Dkafka.logs.dir="$KDIR" \
      -cp "$KLIBS/*" kafka.Kafka "$KPROPS" </dev/null >"$KDIR/console.log" 2>&1 9>&- &
    echo $! >"$KPID"
  )
  DID_START=1
}

kafka_wait() {
  local deadline=$((SECONDS + WAIT_SECS))
  until kafka_ssl_ok; do
    if [[ -z "$(kafka_pid)" ]]; then
      tail -n 25 "$KDIR/server.log" "$KDIR/console.log" >&2 2>/dev/null || true
      die "Kafka exited during startup (see .stack/kafka/server.log)"
    fi
    if ((SECONDS >= deadline)); then
      tail -n 25 "$KDIR/server.log" >&2 2>/dev/null || true
      die "Kafka did not answer over SSL on 127.0.0.1:9093 within ${WAIT_SECS}s"
    fi
    sleep 1
  done
  log "kafka up on 127.0.0.1:9093 (ssl), 9092 (plaintext), 9094 (sasl_ssl), pid $(kafka_pid)"
}

# stop_pid NAME PID: SIGTERM, wait up to 30 s, then SIGKILL and wait up to 5 s more.
stop_pid() {
  local name="$1" pid="$2" i
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  log "$name did not stop within 30s, sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
}

kafka_stop() {
  local pid; pid="$(kafka_pid)"
  if [[ -z "$pid" ]]; then log "kafka: not running"; return 0; fi
  log "stopping Kafka (pid $pid)"
  stop_pid kafka "$pid"
  rm -f "$KPID"
}

kafka_status() { # prints a line, returns 0 when healthy
  local pid; pid="$(kafka_pid)"
  if [[ -z "$pid" ]]; then echo "kafka: stopped"; return 1; fi
  if kafka_ssl_ok; then echo "kafka: running pid $pid, ssl answering on 127.0.0.1:9093"; return 0; fi
  echo "kafka: running pid $pid, ssl NOT answering on 127.0.0.1:9093"; return 1
}

# ---------------------------------------------------------------- postgres

as_pg() { runuser -u postgres -- "$@"; }

pg_sockdir() { # unix socket paths are limited to ~107 bytes
  local d="$PGDIR/run"
  if (( ${#d} + 16 > 100 )); then d="/tmp/.stack-pg-$(echo -n "$ROOT" | sha256sum | cut -c1-12)"; fi
  echo "$d"
}

pg_uri() { echo "postgres://$PG_USER:$(secret pg-avnadmin.pass)@127.0.0.1:$PG_PORT/$PG_DB?sslmode=require"; }

pg_pid() { # postmaster pid if our cluster runs
  [[ -f "$PGDATA/postmaster.pid" ]] || return 0
  local pid; pid="$(head -1 "$PGDATA/postmaster.pid" 2>/dev/null || true)"
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then echo "$pid"; fi
}

pg_query_ok() {
  PGCONNECT_TIMEOUT=5 PGPASSWORD="$(secret pg-avnadmin.pass)" timeout 15 psql -X -q -At \
    "postgres://$PG_USER@127.0.0.1:$PG_PORT/$PG_DB?sslmode=require" -c 'select 1' >/dev/null 2>&1
}

check_pg_traversal() { # the postgres user must be able to reach .stack/pg; report the first blocking dir
  chmod o+x "$STACK" "$PGDIR"
  as_pg test -x "$PGDIR" && return 0
  local d="" part parts
  IFS=/ read -ra parts <<<"${PGDIR#/}"
  for part in "${parts[@]}"; do
    d="$d/$part"
    as_pg test -x "$d" || die "the postgres user cannot traverse $d (needs o+x): run 'chmod o+x $d' or clone the repo elsewhere"
  done
  die "the postgres user cannot reach $PGDIR"
}

pg_prepare() {
  local bin; bin="$(pg_bin_dir)"; [[ -n "$bin" ]] || die "no PostgreSQL binaries under /usr/lib/postgresql"
  mkdir -p "$PGDIR"
  check_pg_traversal
  local sock; sock="$(pg_sockdir)"
  mkdir -p "$sock" "$PGDIR/ssl"
  chown postgres:postgres "$sock" "$PGDIR/ssl"; chmod 0755 "$sock"; chmod 0700 "$PGDIR/ssl"
  if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
    log "initializing PostgreSQL $(basename "$(dirname "$bin")") cluster in .stack/pg/data"
    rm -rf "$PGDATA"; mkdir -p "$PGDATA"; chown postgres:postgres "$PGDATA"; chmod 0700 "$PGDATA"
    as_pg "$bin/initdb" -D "$PGDATA" -U postgres --auth-local=peer --auth-host=scram-sha-256 \
      -E UTF8 --locale=C.UTF-8 >"$PGDIR/initdb.log" 2>&1 \
      || { cat "$PGDIR/initdb.log" >&2; die "initdb failed"; }
  fi
  # server cert from the stack CA, owned by postgres
  install -o postgres -g postgres -m 0600 "$CERTS/server.key" "$PGDIR/ssl/server.key"
  install -o postgres -g postgres -m 0644 "$CERTS/server.pem" "$PGDIR/ssl/server.pem"
  install -o postgres -g postgres -m 0644 "$CERTS/ca.pem" "$PGDIR/ssl/ca.pem"
  local t; t="$(cat "$DEV/postgresql.conf.tmpl")"
  t="${t//@PG_SOCKDIR@/$sock}"; t="${t//@PG_SSLDIR@/$PGDIR/ssl}"
  printf '%s\n' "$t" >"$PGDATA/stack.conf"
  grep -q "^include 'stack.conf'" "$PGDATA/postgresql.conf" || echo "include 'stack.conf'" >>"$PGDATA/postgresql.conf"
  install -o postgres -g postgres -m 0600 "$DEV/pg_hba.conf" "$PGDATA/pg_hba.conf"
  chown postgres:postgres "$PGDATA/stack.conf" "$PGDATA/postgresql.conf"
  touch "$PGLOG"; chown postgres:postgres "$PGLOG"; chmod 0640 "$PGLOG"
}

pg_start() { # starts the cluster unless it runs; sets DID_START=1 if it did
  DID_START=0
  [[ -n "$(pg_pid)" ]] && return 0
  port_open "$PG_PORT" && die "port 127.0.0.1:$PG_PORT is in use by another process (not our PostgreSQL)"
  pg_prepare
  local bin; bin="$(pg_bin_dir)"
  log "starting PostgreSQL (log: .stack/pg/postgres.log)"
  as_pg "$bin/pg_ctl" -D "$PGDATA" -l "$PGLOG" -w -t "$WAIT_SECS" start >/dev/null 2>&1 9>&- \
    || { tail -n 25 "$PGLOG" >&2; die "PostgreSQL did not start (see .stack/pg/postgres.log)"; }
  # role + database (idempotent); passwords go through stdin, never argv
  as_pg "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$(pg_sockdir)" -p "$PG_PORT" -d postgres >/dev/null <<EOF \
    || die "could not create role $PG_USER / database $PG_DB"
SELECT 'CREATE ROLE $PG_USER' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_USER') \gexec
ALTER ROLE $PG_USER WITH LOGIN CREATEDB CREATEROLE PASSWORD '$(secret pg-avnadmin.pass)';
ALTER ROLE postgres WITH PASSWORD '$(secret pg-postgres.pass)';
SELECT 'CREATE DATABASE $PG_DB OWNER $PG_USER' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$PG_DB') \gexec
EOF
  DID_START=1
}

pg_wait() {
  local deadline=$((SECONDS + WAIT_SECS))
  until pg_query_ok; do
    if [[ -z "$(pg_pid)" ]]; then tail -n 25 "$PGLOG" >&2 || true; die "PostgreSQL exited (see .stack/pg/postgres.log)"; fi
    if ((SECONDS >= deadline)); then
      tail -n 25 "$PGLOG" >&2 || true
      die "PostgreSQL did not accept queries on 127.0.0.1:$PG_PORT within ${WAIT_SECS}s"
    fi
    sleep 0.5
  done
  log "postgres up on 127.0.0.1:$PG_PORT (ssl), pid $(pg_pid)"
}

pg_stop() {
  local pid; pid="$(pg_pid)"
  if [[ -z "$pid" ]]; then log "postgres: not running"; return 0; fi
  log "stopping PostgreSQL (pid $pid)"
  if ! as_pg "$(pg_bin_dir)/pg_ctl" -D "$PGDATA" stop -m fast -w -t 30 >/dev/null 2>&1; then
    log "pg_ctl stop failed, sending SIGKILL to $pid"
    kill -KILL "$pid" 2>/dev/null || true
  fi
}

pg_status() {
  local pid; pid="$(pg_pid)"
  if [[ -z "$pid" ]]; then echo "postgres: stopped"; return 1; fi
  if pg_query_ok; then echo "postgres: running pid $pid, answering on 127.0.0.1:$PG_PORT (ssl)"; return 0; fi
  echo "postgres: running pid $pid, NOT answering on 127.0.0.1:$PG_PORT"; return 1
}

# ---------------------------------------------------------------- embedded postgres (PGlite)

epg_uri() { echo "postgres://postgres@127.0.0.1:$EPG_PORT/postgres?sslmode=disable"; }

deno_bin() {
  if command -v deno >/dev/null; then command -v deno
  elif [[ -n "${DENO:-}" && -x "$DENO" ]]; then echo "$DENO"
  elif [[ -x "$STACK/deno/node_modules/.bin/deno" ]]; then echo "$STACK/deno/node_modules/.bin/deno" # .ci/run's
  else die "the embedded PostgreSQL needs deno: put it on PATH or set DENO=/path/to/deno"; fi
}

epg_pid() { # pid of our embedded server if it is alive, else nothing (and stale pid file removed)
  [[ -f "$EPGPID" ]] || return 0
  local pid; pid="$(cat "$EPGPID")"
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null \
     && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$DEV/embedded_pg.ts"; then
    echo "$pid"
  else
    rm -f "$EPGPID"
  fi
}

epg_query_ok() { # the server listens only once the database is open; psql also runs a query
  if command -v psql >/dev/null; then
    PGCONNECT_TIMEOUT=5 timeout 15 psql -X -q -At "$(epg_uri)" -c 'select 1' >/dev/null 2>&1
  else
    port_open "$EPG_PORT"
  fi
}

epg_start() { # starts the embedded server unless it runs; sets DID_START=1 if it did
  DID_START=0
  [[ -n "$(epg_pid)" ]] && return 0
  port_open "$EPG_PORT" && die "port 127.0.0.1:$EPG_PORT is in use by another process (not our embedded PostgreSQL)"
  local deno; deno="$(deno_bin)"
  mkdir -p "$EPGDIR"
  log "starting the embedded PostgreSQL (PGlite) (log: .stack/pglite/server.log)"
  (
    cd "$ROOT"
    setsid nohup "$deno" run --no-prompt --allow-read --allow-write="$EPGDIR" \
      --allow-net="127.0.0.1:$EPG_PORT" --allow-env=EMBEDDED_POSTGRES_PORT "$DEV/embedded_pg.ts" \
      --port "$EPG_PORT" --data-dir "$EPGDIR/data" </dev/null >>"$EPGLOG" 2>&1 9>&- &
    echo $! >"$EPGPID"
  )
  DID_START=1
}

epg_wait() { # the first start downloads PGlite (npm) and creates the database: allow for it
  local deadline=$((SECONDS + WAIT_SECS + 90))
  until epg_query_ok; do
    if [[ -z "$(epg_pid)" ]]; then
      tail -n 25 "$EPGLOG" >&2 2>/dev/null || true
      die "the embedded PostgreSQL exited during startup (see .stack/pglite/server.log)"
    fi
    if ((SECONDS >= deadline)); then
      tail -n 25 "$EPGLOG" >&2 2>/dev/null || true
      die "the embedded PostgreSQL did not answer on 127.0.0.1:$EPG_PORT in time"
    fi
    sleep 0.5
  done
  log "embedded postgres up on 127.0.0.1:$EPG_PORT (no TLS, loopback only), pid $(epg_pid)"
}

epg_stop() {
  local pid; pid="$(epg_pid)"
  if [[ -z "$pid" ]]; then log "embedded postgres: not running"; return 0; fi
  log "stopping the embedded PostgreSQL (pid $pid)"
  stop_pid "embedded postgres" "$pid"
  rm -f "$EPGPID"
}

epg_status() {
  local pid; pid="$(epg_pid)"
  if [[ -z "$pid" ]]; then echo "embedded postgres: stopped"; return 1; fi
  if epg_query_ok; then echo "embedded postgres: running pid $pid, answering on 127.0.0.1:$EPG_PORT"; return 0; fi
  echo "embedded postgres: running pid $pid, NOT answering on 127.0.0.1:$EPG_PORT"; return 1
}

# ---------------------------------------------------------------- stack.json

write_stack_json() {
  (umask 077; cat >"$STACK/stack.json.tmp" <<EOF
{
  "kafka": {
    "plaintext": "127.0.0.1:9092",
    "ssl": "127.0.0.1:9093",
    "saslSsl": "127.0.0.1:9094",
    "saslMechanism": "scram-sha-256",
    "saslUsername": "$SCRAM_USER",
    "saslPassword": "$(secret kafka-scram.pass)"
  },
  "certPath": "$CERTS/client",
  "postgresUri": "$(pg_uri)",
  "postgresAdminUri": "postgres://postgres:$(secret pg-postgres.pass)@127.0.0.1:$PG_PORT/postgres?sslmode=require",
  "embeddedPostgresUri": "$(epg_uri)"
}
EOF
  )
  mv "$STACK/stack.json.tmp" "$STACK/stack.json"
}

# ---------------------------------------------------------------- commands

STARTED=()  # parts started by this invocation
DID_START=0

parts_of() { case "${1:-}" in "") echo "postgres embedded kafka" ;; kafka | postgres | embedded) echo "$1" ;; *) die "unknown part '$1' (kafka|postgres|embedded)" ;; esac; }

cmd_up() { # [part] [embedded|server: the PostgreSQL when no part is given]; records started parts in STARTED
  local parts
  if [[ -n "${1:-}" ]]; then parts="$(parts_of "$1")"
  elif [[ "${2:-embedded}" == server ]]; then parts="postgres kafka"
  else parts="embedded kafka"; fi
  mkdir -p "$STACK" "$KDIR"; chmod 0711 "$STACK"
  ensure_packages "$parts"
  ensure_secrets
  ensure_certs
  # start Kafka first (slow JVM boot) and bring PostgreSQL up meanwhile
  local kafka_started=0
  if [[ " $parts " == *" kafka "* ]]; then
    kafka_start
    if ((DID_START)); then STARTED+=(kafka); kafka_started=1; fi
  fi
  if [[ " $parts " == *" embedded "* ]]; then
    epg_start
    if ((DID_START)); then STARTED+=(embedded); epg_wait
    elif epg_query_ok; then log "embedded postgres already running (pid $(epg_pid)) and healthy"
    else log "embedded postgres running (pid $(epg_pid)) but not answering yet, waiting"; epg_wait; fi
  fi
  if [[ " $parts " == *" postgres "* ]]; then
    pg_start
    if ((DID_START)); then STARTED+=(postgres); pg_wait
    elif pg_query_ok; then log "postgres already running (pid $(pg_pid)) and healthy"
    else log "postgres running (pid $(pg_pid)) but not answering yet, waiting"; pg_wait; fi
  fi
  if [[ " $parts " == *" kafka "* ]]; then
    if ((kafka_started)); then kafka_wait
    elif kafka_ssl_ok; then log "kafka already running (pid $(kafka_pid)) and healthy"
    else log "kafka running (pid $(kafka_pid)) but not answering yet, waiting"; kafka_wait; fi
  fi
  write_stack_json
}

cmd_down() {
  local part
  for part in $(parts_of "${1:-}"); do
    case "$part" in kafka) kafka_stop ;; postgres) pg_stop ;; embedded) epg_stop ;; esac
  done
}

cmd_status() { # without a part: healthy when Kafka and at least one PostgreSQL answer
  local rc=0 part dbs=0
  for part in $(parts_of "${1:-}"); do
    case "$part" in
      kafka) kafka_status || rc=3 ;;
      postgres) if pg_status; then dbs=$((dbs + 1)); elif [[ -n "${1:-}" ]]; then rc=3; fi ;;
      embedded) if epg_status; then dbs=$((dbs + 1)); elif [[ -n "${1:-}" ]]; then rc=3; fi ;;
    esac
  done
  [[ -n "${1:-}" ]] || ((dbs > 0)) || rc=3
  return $rc
}

cmd_run() {
  [[ "${1:-}" == "--" ]] && shift
  (($#)) || die "usage: stack.sh run -- CMD ARGS..."
  stop_started() {
    local part
    trap - EXIT INT TERM
    ((${#STARTED[@]})) || return 0
    lock
    for part in "${STARTED[@]}"; do cmd_down "$part"; done
    unlock
  }
  # shellcheck disable=SC2317  # invoked from traps
  on_signal() { # forward to CMD, wait for it, then clean up
    if [[ -n "${RUN_CHILD:-}" ]]; then kill -"$1" "$RUN_CHILD" 2>/dev/null || true; wait "$RUN_CHILD" 2>/dev/null || true; fi
    stop_started; exit "$2"
  }
  RUN_CHILD=""
  trap 'stop_started' EXIT
  trap 'on_signal INT 130' INT
  trap 'on_signal TERM 143' TERM
  lock; cmd_up "" server; unlock
  export STACK_JSON="$STACK/stack.json"
  # CMD runs as a background job (stdin kept) so that a TERM/INT to us is handled at once
  local rc=0
  "$@" <&0 &
  RUN_CHILD=$!
  wait "$RUN_CHILD" || rc=$?
  RUN_CHILD=""
  stop_started
  exit "$rc"
}

cmd_reset() {
  cmd_down
  log "deleting runtime data (keeping .stack/m2 and .stack/kafka/libs)"
  local sock; sock="$(pg_sockdir)"; [[ "$sock" == /tmp/.stack-pg-* ]] && rm -rf "$sock"
  rm -rf "$PGDIR" "$EPGDIR" "$CERTS" "$SECRETS" "$KDIR/data" "$STACK/stack.json" "$KPROPS" "$KPID"
  rm -f "$KDIR"/*.log "$KDIR"/*.log.*
}

UP_PART=""
UP_POSTGRES=""
parse_up_args() { # [part] [--postgres embedded|server] in any order
  while (($#)); do
    case "$1" in
      --postgres) (($# >= 2)) || die "--postgres needs a value: embedded or server"; UP_POSTGRES="$2"; shift 2; continue ;;
      --postgres=*) UP_POSTGRES="${1#--postgres=}" ;;
      -*) die "unknown flag '$1' of up (--postgres embedded|server)" ;;
      *) [[ -z "$UP_PART" ]] || die "up takes one part, got '$UP_PART' and '$1'"; parts_of "$1" >/dev/null; UP_PART="$1" ;;
    esac
    shift
  done
  [[ -z "$UP_PART" || -z "$UP_POSTGRES" ]] || die "--postgres applies to up without a part (got part '$UP_PART')"
  UP_POSTGRES="${UP_POSTGRES:-embedded}"
  [[ "$UP_POSTGRES" == embedded || "$UP_POSTGRES" == server ]] \
    || die "--postgres must be embedded or server, not '$UP_POSTGRES'"
}

main() {
  local cmd="${1:-}"; (($#)) && shift
  case "$cmd" in
    up) parse_up_args "$@"; lock; cmd_up "$UP_PART" "$UP_POSTGRES" ;;
    down) lock; cmd_down "${1:-}" ;;
    status) cmd_status "${1:-}" || exit 3 ;;
    run) cmd_run "$@" ;;
    reset) lock; cmd_reset ;;
    tool) (($#)) || die "usage: stack.sh tool CLASS ARGS..."; mkdir -p "$KDIR"; lock; ensure_kafka_jars; unlock; kafka_java "$@" ;;
    promtool) lock; ensure_promtool; unlock; exec "$(promtool_bin)" "$@" ;;
    -h | --help | help) usage ;;
    "") usage >&2; exit 2 ;;
    *) echo "stack: unknown command '$cmd'" >&2; usage >&2; exit 2 ;;
  esac
}

main "$@"
