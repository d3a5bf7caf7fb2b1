#!/usr/bin/env bash
# dev/connect.sh — Kafka Connect's worker with the Debezium JDBC sink connector, for the bench's
# peer section (bench/connect_bench.ts). Jars come from Maven (dev/connect-pom.xml) on first use.
#
#   bash dev/connect.sh fetch                       # worker jars + connector plugin (idempotent)
#   bash dev/connect.sh run WORKER.properties CONNECTOR.properties...
#                                                   # standalone worker in the foreground (exec)
#   bash dev/connect.sh start WORKER.properties CONNECTOR.properties...
#                                                   # the same in the background (pid file)
#   bash dev/connect.sh stop|status                 # the background worker
#   bash dev/connect.sh plugin-path                 # the folder to give as plugin.path
#
# Layout: .stack/connect/libs (worker classpath: connect-runtime, connect-json, log4j2),
# .stack/connect/plugins/debezium-jdbc (the connector, hibernate, the PostgreSQL driver: its own
# class loader), .stack/connect/logs/connect.log (CONNECT_LOG_DIR overrides), .stack/m2 (shared
# Maven repository with dev/stack.sh). Needs java 17+ and mvn (dev/stack.sh installs both).
set -euo pipefail

DEV="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
ROOT="$(cd "$DEV/.." && pwd -P)"
STACK="$ROOT/.stack"
CDIR="$STACK/connect"
LIBS="$CDIR/libs"
PLUGINS="$CDIR/plugins"
PLUGIN="$PLUGINS/debezium-jdbc"
POM="$DEV/connect-pom.xml"
PIDFILE="$CDIR/worker.pid"
LOGDIR="${CONNECT_LOG_DIR:-$CDIR/logs}"
# Kafka's own defaults for connect-standalone (kafka-run-class.sh and connect-standalone.sh)
HEAP_OPTS="${CONNECT_HEAP_OPTS:--Xms256m -Xmx2g}"
JVM_OPTS="-XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true"

log() { echo "connect: $*" >&2; }
die() { echo "connect: ERROR: $*" >&2; exit 1; }

java_bin() {
  local j="java"
  [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]] && j="$JAVA_HOME/bin/java"
  command -v "$j" >/dev/null || die "java not found (bash dev/stack.sh up installs it)"
  echo "$j"
}

# fetch_into PROFILE DIR CHECK_GLOB [EXCLUDED_ARTIFACT_IDS]: one Maven profile's runtime jars into
# DIR, swapped in whole; keyed on the pom's checksum and the exclusions
fetch_into() {
  local profile="$1" dir="$2" check="$3" exclude="${4:-}" stamp
  stamp="$(sha256sum "$POM" | cut -c1-16) $exclude"
  [[ -f "$dir/.stamp" && "$(cat "$dir/.stamp")" == "$stamp" ]] && return 0
  command -v mvn >/dev/null || die "mvn not found (bash dev/stack.sh up installs it)"
  log "fetching the $profile jars with Maven (first run only)"
  mkdir -p "$CDIR"
  local tmp="$dir.fetch.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  mvn -q -B -f "$POM" -P "$profile" -Dmaven.repo.local="$STACK/m2" \
    dependency:copy-dependencies -DoutputDirectory="$tmp" \
    ${exclude:+-DexcludeArtifactIds="$exclude"} >"$CDIR/mvn-$profile.log" 2>&1 \
    || { tail -n 30 "$CDIR/mvn-$profile.log" >&2; rm -rf "$tmp"; die "maven could not fetch the $profile jars (log: .stack/connect/mvn-$profile.log)"; }
  compgen -G "$tmp/$check" >/dev/null || { rm -rf "$tmp"; die "$check missing after the maven fetch"; }
  echo "$stamp" >"$tmp/.stamp"
  rm -rf "$dir"; mv "$tmp" "$dir"
}

write_log_config() { # warnings to the console, everything at INFO to $LOGDIR/connect.log
  mkdir -p "$LOGDIR"
  cat >"$CDIR/log4j2.xml.tmp" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <Console name="console" target="SYSTEM_ERR">
      <PatternLayout pattern="[%d] %p %m (%c)%n" />
      <ThresholdFilter level="WARN" />
    </Console>
    <File name="file" fileName="${sys:connect.logs.dir}/connect.log">
      <PatternLayout pattern="[%d] %p %m (%c)%n" />
    </File>
  </Appenders>
  <Loggers>
    <Root level="INFO">
      <AppenderRef ref="console" />
      <AppenderRef ref="file" />
    </Root>
    <Logger name="org.apache.kafka.common.utils.AppInfoParser" level="WARN" />
    <Logger name="org.hibernate" level="WARN" />
    <Logger name="com.mchange" level="WARN" />
  </Loggers>
</Configuration>
EOF
  mv "$CDIR/log4j2.xml.tmp" "$CDIR/log4j2.xml"
}

fetch() {
  fetch_into worker "$LIBS" "connect-runtime-*.jar"
  # the worker provides the Connect API, the Kafka clients, Jackson and SLF4J: the plugin's own
  # copies stay out (as in Debezium's plugin archives). With its own jackson-databind the
  # connector fails under Connect 4.4: the worker's Jackson Blackbird module, found through the
  # ServiceLoader, is "not a subtype" of the plugin's Module class.
  fetch_into plugin "$PLUGIN" "debezium-connector-jdbc-*.jar" \
    connect-api,kafka-clients,jackson-core,jackson-databind,jackson-annotations,slf4j-api
  write_log_config
}

worker_cmd() { # sets WORKER_CMD: the standalone worker's command line (the classpath unexpanded)
  local -a heap jvm
  read -ra heap <<<"$HEAP_OPTS"
  read -ra jvm <<<"$JVM_OPTS"
  WORKER_CMD=("$(java_bin)" "${heap[@]}" "${jvm[@]}" "-Dlog4j2.configurationFile=$CDIR/log4j2.xml"
    "-Dconnect.logs.dir=$LOGDIR" -cp "$LIBS/*" org.apache.kafka.connect.cli.ConnectStandalone)
}

worker_pid() {
  [[ -f "$PIDFILE" ]] || return 0
  local pid; pid="$(cat "$PIDFILE")"
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null \
     && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF ConnectStandalone; then
    echo "$pid"
  else
    rm -f "$PIDFILE"
  fi
}

cmd="${1:-}"; shift || true
case "$cmd" in
  fetch) fetch ;;
  plugin-path) echo "$PLUGINS" ;;
  run)
    (($# >= 2)) || die "usage: bash dev/connect.sh run WORKER.properties CONNECTOR.properties..."
    fetch
    worker_cmd
    exec "${WORKER_CMD[@]}" "$@"
    ;;
  start)
    (($# >= 2)) || die "usage: bash dev/connect.sh start WORKER.properties CONNECTOR.properties..."
    [[ -z "$(worker_pid)" ]] || { log "a worker runs already (pid $(worker_pid))"; exit 0; }
    fetch
    worker_cmd
    setsid nohup "${WORKER_CMD[@]}" "$@" </dev/null >"$LOGDIR/console.log" 2>&1 &
    echo $! >"$PIDFILE"
    log "worker started (pid $!, log: ${LOGDIR#"$ROOT/"}/connect.log)"
    ;;
  stop)
    pid="$(worker_pid)"
    if [[ -z "$pid" ]]; then log "no worker running"; exit 0; fi
    kill -TERM "$pid"
    for ((i = 0; i < 300; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && { log "worker did not stop within 30 s, SIGKILL"; kill -KILL "$pid"; }
    rm -f "$PIDFILE"
    log "worker stopped"
    ;;
  status)
    pid="$(worker_pid)"
    if [[ -n "$pid" ]]; then echo "connect: running pid $pid"; else echo "connect: stopped"; exit 3; fi
    ;;
  *)
    sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    [[ "$cmd" == "--help" || "$cmd" == "-h" ]] || exit 2
    ;;
esac
