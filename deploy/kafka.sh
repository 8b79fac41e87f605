#!/usr/bin/env bash
# Local Apache Kafka (KRaft, no ZooKeeper) for jpc-bus development and tests.
#
# The broker runs straight from Maven Central jars (this machine reaches no other download site and
# has no Docker): `fetch` copies them into a git-ignored cache, `start` runs `java -cp 'libs/*'
# kafka.Kafka` in the background. One node for everyday tests, or three for durability/fault tests.
# Run `deploy/kafka.sh --help` for the commands and environment variables.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)

KAFKA_VERSION=${KAFKA_VERSION:-3.9.1}
CACHE=${JPC_KAFKA_CACHE:-$REPO/.cache/kafka}
DATA=${JPC_KAFKA_DATA:-$REPO/.cache/kafka-data}
SINGLE_PORT=${JPC_KAFKA_PORT:-9092}
SINGLE_CPORT=${JPC_KAFKA_CONTROLLER_PORT:-9093}
CLUSTER_PORT=${JPC_KAFKA_CLUSTER_PORT:-19092}
START_TIMEOUT=${JPC_KAFKA_START_TIMEOUT:-90}
STOP_TIMEOUT=${JPC_KAFKA_STOP_TIMEOUT:-30}
HEAP=${JPC_KAFKA_HEAP:-512m}
if [[ -n ${JAVA_HOME:-} && -x ${JAVA_HOME}/bin/java ]]; then JAVA=$JAVA_HOME/bin/java; else JAVA=java; fi

HOST=127.0.0.1 # loopback only: nothing here is meant to be reachable from outside the machine
LIBS=$CACHE/$KAFKA_VERSION/libs
MAJOR=${KAFKA_VERSION%%.*}
CLUSTER_SIZE=3
NODES=1 # 1 = the single-node broker, 3 = the loopback cluster (set by --nodes / *-cluster commands)

usage() {
  cat <<EOF
Usage: deploy/kafka.sh COMMAND [--nodes 1|3]

Runs Apache Kafka $KAFKA_VERSION (KRaft mode, broker and controller in one process per node) from
Maven Central jars, on $HOST only.

Commands:
  fetch               Download the broker jars (mvn, deploy/pom.xml) into the cache; skipped when
                      they are already there.
  start [--nodes N]   Start the single-node broker (N=1, default; $HOST:$SINGLE_PORT) or the 3-node
                      cluster (N=3). Fetches jars and formats storage on first use, then waits until
                      the broker really serves (a probe topic is created, written with acks=all and
                      read back) and prints the bootstrap address. Harmless when already running.
                      A cluster with some nodes down gets just those nodes started.
  start-cluster       Same as: start --nodes 3
  stop [--nodes N]    SIGTERM (controlled shutdown), wait up to JPC_KAFKA_STOP_TIMEOUT, then SIGKILL.
                      Harmless when already stopped.
  stop-cluster        Same as: stop --nodes 3
  status [--nodes N]  Show each node: pid, port. Exit 0 if all nodes of that setup run, 3 if not.
                      Without --nodes: shows the single node, and the cluster if it was ever created.
  probe [--nodes N]   Run the readiness probe against the running node(s) once more.
  bootstrap [--nodes N]
                      Print the bootstrap address only (for scripts).
  reset [--nodes N]   Stop, then delete that setup's data (topics, offsets, logs, cluster id).
  kill-node ID        Cluster only: SIGKILL node ID (1-3), a crash for fault tests.
  stop-node ID        Cluster only: SIGTERM node ID, a controlled shutdown. (Stopping the nodes one
                      by one, the last one has no quorum left and hangs until the SIGKILL; use
                      stop --nodes 3, which signals all nodes at once.)
  start-node ID       Cluster only: start node ID again on its existing data (no formatting), then
                      wait until the whole cluster serves and no partition is under-replicated.
  -h, --help, help    This text.

Single node: node id 1, client port JPC_KAFKA_PORT, controller port JPC_KAFKA_CONTROLLER_PORT,
  data in \$JPC_KAFKA_DATA/node1. Replication factor 1 everywhere.
Cluster: node ids 1,2,3; node i has client port JPC_KAFKA_CLUSTER_PORT+2(i-1) and controller port
  one above it (default 19092/19093, 19094/19095, 19096/19097); data in \$JPC_KAFKA_DATA/cluster/node<i>.
  default.replication.factor=3, min.insync.replicas=2, internal topics RF 3 (min ISR 2),
  unclean.leader.election.enable=false.
Both: auto.create.topics.enable=false (topics are provisioned explicitly), num.partitions=1,
  group.initial.rebalance.delay.ms=0. Each node dir holds server.properties (regenerated on every
  start), kafka.pid and kafka.log. The two setups use different ports and dirs and can run together.

Environment (defaults in brackets):
  KAFKA_VERSION               Kafka version to fetch and run [3.9.1]; 3.x and 4.x are supported.
                              Run reset after changing it: storage formatted by another version
                              may not start.
  JPC_KAFKA_CACHE             jar cache; jars go to <cache>/<version>/libs [<repo>/.cache/kafka]
  JPC_KAFKA_DATA              data, configs, pid files, logs [<repo>/.cache/kafka-data]
  JPC_KAFKA_PORT              single node client port [9092]
  JPC_KAFKA_CONTROLLER_PORT   single node controller port [9093]
  JPC_KAFKA_CLUSTER_PORT      first client port of the cluster [19092]
  JPC_KAFKA_START_TIMEOUT     seconds to wait for a start to be ready [90]
  JPC_KAFKA_STOP_TIMEOUT      seconds to wait after SIGTERM before SIGKILL [30]
  JPC_KAFKA_HEAP              broker heap, -Xms and -Xmx [512m]
  JAVA_HOME                   java to use [java on PATH]
EOF
}

say() { echo "kafka.sh: $*" >&2; }
die() { echo "kafka.sh: error: $*" >&2; exit 1; }

# ---------------------------------------------------------------- layout

# The single node lives in $DATA/node1; the cluster in $DATA/cluster/node<i>, with its shared
# files (cluster id, probe config) one level up.
setup_dir() { if ((NODES == 1)); then echo "$DATA/node1"; else echo "$DATA/cluster"; fi; }
node_dir() { if ((NODES == 1)); then echo "$DATA/node1"; else echo "$DATA/cluster/node$1"; fi; }
client_port() { if ((NODES == 1)); then echo "$SINGLE_PORT"; else echo $((CLUSTER_PORT + 2 * ($1 - 1))); fi; }
controller_port() { if ((NODES == 1)); then echo "$SINGLE_CPORT"; else echo $((CLUSTER_PORT + 2 * ($1 - 1) + 1)); fi; }
node_ids() { seq 1 "$NODES"; }
label() { if ((NODES == 1)); then echo "Kafka broker"; else echo "Kafka node $1"; fi; }

bootstrap() {
  local id out=()
  for id in $(node_ids); do out+=("$HOST:$(client_port "$id")"); done
  (IFS=,; echo "${out[*]}")
}

voters() {
  local id out=()
  for id in $(node_ids); do out+=("$id@$HOST:$(controller_port "$id")"); done
  (IFS=,; echo "${out[*]}")
}

# Keep caches and data out of git even before the repo's .gitignore lists .cache/.
ignore_in_git() {
  local dir
  for dir in "$CACHE" "$DATA"; do
    if [[ $dir == "$REPO/.cache/"* && ! -f $REPO/.cache/.gitignore ]]; then
      mkdir -p "$REPO/.cache" && echo '*' >"$REPO/.cache/.gitignore"
    fi
  done
}

# ---------------------------------------------------------------- jars and java

cmd_fetch() {
  case $MAJOR in 3 | 4) ;; *) die "KAFKA_VERSION=$KAFKA_VERSION: only 3.x and 4.x are supported" ;; esac
  if [[ -f $LIBS/kafka_2.13-$KAFKA_VERSION.jar ]]; then
    [[ $CMD == fetch ]] && say "Kafka $KAFKA_VERSION jars already in $LIBS"
    return 0
  fi
  command -v mvn >/dev/null || die "mvn not found (apt-get install maven)"
  ignore_in_git
  local vdir=$CACHE/$KAFKA_VERSION
  local tmp=$vdir/libs.partial.$$
  mkdir -p "$vdir"
  say "fetching Kafka $KAFKA_VERSION jars from Maven Central into $LIBS ..."
  local t0=$SECONDS
  # Into a temporary dir, then one rename: an interrupted fetch never looks complete.
  if ! mvn -B -q -f "$HERE/pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
    -Dkafka.version="$KAFKA_VERSION" -Dkafka.line="$MAJOR" -DoutputDirectory="$tmp" \
    >"$vdir/mvn.log" 2>&1; then
    tail -n 20 "$vdir/mvn.log" >&2
    rm -rf "$tmp"
    die "mvn could not fetch Kafka $KAFKA_VERSION (full output: $vdir/mvn.log)"
  fi
  [[ -f $tmp/kafka_2.13-$KAFKA_VERSION.jar ]] || die "mvn ran but kafka_2.13-$KAFKA_VERSION.jar is missing in $tmp"
  if [[ -d $LIBS ]]; then rm -rf "$tmp"; else mv "$tmp" "$LIBS"; fi # a parallel fetch may have won
  say "fetched $(find "$LIBS" -name '*.jar' | wc -l) jars ($(du -sh "$LIBS" | cut -f1)) in $((SECONDS - t0))s"
}

ensure_java() { command -v "$JAVA" >/dev/null || die "java not found (OpenJDK 17 expected; set JAVA_HOME)"; }

# Kafka 3.x logs through reload4j, 4.x through log4j2; $1 is "server" or "tools".
log_opt() {
  if ((MAJOR >= 4)); then
    echo "-Dlog4j2.configurationFile=$HERE/log4j/$1-log4j2.properties"
  else
    echo "-Dlog4j.configuration=file:$HERE/log4j/$1-log4j.properties"
  fi
}

# A Kafka CLI main class from the same jars: "${TOOL[@]}" MainClass args (an array, not a
# function, so that `timeout` can run it). Short-lived, so flags for a quick JVM start.
TOOL=("$JAVA" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true
  "$(log_opt tools)" -cp "$LIBS/*")

# ConsoleProducer moved from the core jar (Scala) to kafka-tools in 4.0; the other tools used
# here have the same class name in 3.9 and 4.x.
producer_class() { if ((MAJOR >= 4)); then echo org.apache.kafka.tools.ConsoleProducer; else echo kafka.tools.ConsoleProducer; fi; }

# ---------------------------------------------------------------- processes and ports

# Prints the pid if node $1 runs. The pid file alone is not trusted: the process must still be a
# JVM started for this very node dir (pids get reused; a dead broker leaves its file behind).
running_pid() {
  local f pid
  f=$(node_dir "$1")/kafka.pid
  [[ -s $f ]] || return 1
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
  tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "-Djpc.kafka.node=$(node_dir "$1")" || return 1
  echo "$pid"
}

# True once the process has released everything, its sockets included: gone, or a zombie whose
# threads have all exited. (Right after SIGKILL the JVM's main thread is a zombie, stat "Zl",
# while other threads still hold the ports for a moment.)
pid_gone() {
  local st
  st=$(ps -o stat= -p "$1" 2>/dev/null) || return 0
  [[ -z $st || ($st == Z* && $st != *l*) ]]
}

port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null; }

# One line naming the holder of a port, when ss can tell.
port_holder() {
  local who
  who=$(ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'users:(([^)]*))' | head -n1) || true
  [[ -n $who ]] && echo " ($who)"
  return 0
}

check_ports_free() {
  local id=$1 port
  for port in "$(client_port "$id")" "$(controller_port "$id")"; do
    if port_open "$port"; then
      die "port $HOST:$port is already in use by another process$(port_holder "$port"); stop it, or pick other ports (JPC_KAFKA_PORT / JPC_KAFKA_CONTROLLER_PORT / JPC_KAFKA_CLUSTER_PORT)"
    fi
  done
}

# ---------------------------------------------------------------- config, format, launch

write_config() {
  local id=$1 dir rf=1 min_isr=1
  dir=$(node_dir "$id")
  if ((NODES > 1)); then rf=$NODES min_isr=2; fi
  mkdir -p "$dir"
  cat >"$dir/server.properties" <<EOF
# Written by deploy/kafka.sh at every start: change the script, not this file.
process.roles=broker,controller
node.id=$id
# Static voter list: format needs no --standalone/--initial-controllers, on 3.9 and 4.x alike.
controller.quorum.voters=$(voters)
listeners=PLAINTEXT://$HOST:$(client_port "$id"),CONTROLLER://$HOST:$(controller_port "$id")
advertised.listeners=PLAINTEXT://$HOST:$(client_port "$id")
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data

# The project provisions its topics explicitly; a typo must fail, not create a topic.
auto.create.topics.enable=false
num.partitions=1
# No 3 s wait before the first rebalance of every consumer group (tests start many).
group.initial.rebalance.delay.ms=0

default.replication.factor=$rf
min.insync.replicas=$min_isr
offsets.topic.replication.factor=$rf
# 5 instead of 50 partitions: the offsets topic dominates start-up time on a 2-core test machine.
offsets.topic.num.partitions=5
transaction.state.log.num.partitions=5
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$min_isr
unclean.leader.election.enable=false
EOF
  if ((MAJOR >= 4)); then
    cat >>"$dir/server.properties" <<EOF
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$min_isr
EOF
  fi
}

# All nodes of a setup share one cluster id, made once and kept next to them.
cluster_id() {
  local f
  f=$(setup_dir)/cluster.id
  if [[ ! -s $f ]]; then
    mkdir -p "$(setup_dir)"
    "${TOOL[@]}" kafka.tools.StorageTool random-uuid >"$f.tmp" && mv "$f.tmp" "$f"
  fi
  cat "$f"
}

format_node() {
  local id=$1 dir
  dir=$(node_dir "$id")
  # Formatted before: nothing to do (and one JVM start saved). --ignore-formatted covers the rest.
  if [[ -f $dir/data/meta.properties ]]; then
    local was
    was=$(cat "$dir/kafka.version" 2>/dev/null || echo unknown)
    [[ $was == "$KAFKA_VERSION" ]] || say "warning: node $id data was formatted by Kafka $was, now running $KAFKA_VERSION; if it fails, run: deploy/kafka.sh reset$( ((NODES > 1)) && echo " --nodes $NODES")"
    return 0
  fi
  if ! "${TOOL[@]}" kafka.tools.StorageTool format -t "$(cluster_id)" -c "$dir/server.properties" \
    --ignore-formatted >"$dir/format.log" 2>&1; then
    cat "$dir/format.log" >&2
    die "formatting storage of node $id failed"
  fi
  echo "$KAFKA_VERSION" >"$dir/kafka.version"
}

launch_node() {
  local id=$1 dir pid
  dir=$(node_dir "$id")
  # Keep the previous runs' lines (useful after a crash), but not forever.
  if [[ -f $dir/kafka.log ]] && (($(stat -c %s "$dir/kafka.log") > 50 * 1024 * 1024)); then
    mv -f "$dir/kafka.log" "$dir/kafka.log.1"
  fi
  echo "===== kafka.sh: $(date '+%F %T') starting Kafka $KAFKA_VERSION node $id =====" >>"$dir/kafka.log"
  rm -f "$dir/kafka.pid"
  # 9>&-: the broker must not inherit the setup lock (see lock_setup).
  # setsid + nohup: the broker leaves the caller's session, so a Ctrl-C or a test runner killing
  # its process group does not take it down. The inner bash writes its own pid and then execs
  # java, so the pid file names the JVM itself. -Djpc.kafka.node tags the process for running_pid.
  # Heap and G1 flags as in Kafka's own kafka-server-start.sh, with a smaller heap for tests.
  # shellcheck disable=SC2016
  setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$dir/kafka.pid" \
    "$JAVA" -Xms"$HEAP" -Xmx"$HEAP" \
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dkafka.logs.dir="$dir" "$(log_opt server)" -Djpc.kafka.node="$dir" \
    -cp "$LIBS/*" kafka.Kafka "$dir/server.properties" \
    >>"$dir/kafka.log" 2>&1 </dev/null 9>&- &
  for _ in $(seq 50); do
    [[ -s $dir/kafka.pid ]] && break
    sleep 0.1
  done
  pid=$(cat "$dir/kafka.pid" 2>/dev/null) || die "node $id did not start (see $dir/kafka.log)"
  say "started $(label "$id") (pid $pid, $HOST:$(client_port "$id"), log $dir/kafka.log)"
}

# ---------------------------------------------------------------- readiness

# Client settings for the probe tools: short timeouts, so a broker that is not ready yet fails one
# probe step quickly and the loop tries again, instead of a tool waiting out its 60 s defaults.
write_probe_config() {
  cat >"$(setup_dir)/probe-client.properties" <<EOF
request.timeout.ms=5000
default.api.timeout.ms=15000
max.block.ms=15000
delivery.timeout.ms=20000
EOF
}

# Run a probe tool with a time limit, cut to what is left until PROBE_DEADLINE so a probe never
# overruns JPC_KAFKA_START_TIMEOUT; its stderr is appended to probe.log for a failure report.
PROBE_DEADLINE=0
probe_tool() {
  local secs=$1 left=$((PROBE_DEADLINE - SECONDS))
  shift
  ((left < secs)) && secs=$((left > 1 ? left : 1))
  local rc=0
  timeout --kill-after=5 "$secs" "${TOOL[@]}" "$@" 2>>"$(setup_dir)/probe.log" || rc=$?
  ((rc == 124 || rc == 137)) && echo "probe: ${1##*.} gave no answer within ${secs}s" >>"$(setup_dir)/probe.log"
  return $rc
}

# One attempt: create a topic, write a record with acks=all, read it back, delete the topic.
# The topic has RF = node count and min.insync.replicas = node count, so on a cluster this only
# passes when every broker is registered, unfenced and replicating.
probe_once() {
  local n=$NODES bs cfg topic token got urp
  bs=$(bootstrap)
  cfg=$(setup_dir)/probe-client.properties
  topic=jpc-ready-probe-$(date +%s)-$RANDOM
  token=probe-$RANDOM$RANDOM
  echo "--- $(date '+%F %T') probe $topic" >>"$(setup_dir)/probe.log"

  # Metadata and the active controller both have to answer for a topic to be created.
  probe_tool 30 org.apache.kafka.tools.TopicCommand --bootstrap-server "$bs" --command-config "$cfg" \
    --create --if-not-exists --topic "$topic" --partitions 1 --replication-factor "$n" \
    --config min.insync.replicas="$n" >/dev/null || return 1

  echo "$token" | probe_tool 40 "$(producer_class)" --bootstrap-server "$bs" --topic "$topic" \
    --producer.config "$cfg" --request-required-acks all --sync >/dev/null || return 1

  # Read through a consumer group: this also makes the broker create __consumer_offsets now,
  # not during the first test that uses a group.
  got=$(probe_tool 40 org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "$bs" \
    --consumer.config "$cfg" --topic "$topic" --from-beginning --max-messages 1 --timeout-ms 20000) || true
  probe_tool 30 org.apache.kafka.tools.TopicCommand --bootstrap-server "$bs" --command-config "$cfg" \
    --delete --if-exists --topic "$topic" >/dev/null || true
  if [[ $got != "$token" ]]; then
    echo "probe: wrote '$token', read back '${got}'" >>"$(setup_dir)/probe.log"
    return 1
  fi

  # A restarted cluster node must also have caught up on every existing partition.
  if ((n > 1)); then
    urp=$(probe_tool 30 org.apache.kafka.tools.TopicCommand --bootstrap-server "$bs" \
      --command-config "$cfg" --describe --under-replicated-partitions) || return 1
    if [[ -n $urp ]]; then
      printf 'probe: under-replicated partitions:\n%s\n' "$urp" >>"$(setup_dir)/probe.log"
      return 1
    fi
  fi
}

# Give up: say why, show the logs, stop the nodes this command started (a half-started broker
# holding the port would otherwise pass for "already running" next time).
fail_start() {
  local why=$1 id
  shift
  say "error: $why"
  if [[ -s $(setup_dir)/probe.log ]]; then
    say "last probe output ($(setup_dir)/probe.log):"
    tail -n 15 "$(setup_dir)/probe.log" | sed 's/^/    /' >&2
  fi
  for id in $(node_ids); do
    say "last lines of $(node_dir "$id")/kafka.log:"
    tail -n 25 "$(node_dir "$id")/kafka.log" 2>/dev/null | sed 's/^/    /' >&2 || true
  done
  for id in "$@"; do stop_nodes "$id" >/dev/null 2>&1 || true; done
  exit 1
}

# Wait until the setup serves, within JPC_KAFKA_START_TIMEOUT. $@ = nodes started by this command.
wait_ready() {
  local deadline=$((SECONDS + START_TIMEOUT)) id
  PROBE_DEADLINE=$deadline
  : >"$(setup_dir)/probe.log"
  write_probe_config
  # Cheap first: every node alive and its client port accepting connections.
  for id in $(node_ids); do
    until port_open "$(client_port "$id")"; do
      running_pid "$id" >/dev/null || fail_start "$(label "$id") exited during startup" "$@"
      ((SECONDS < deadline)) || fail_start "$(label "$id") did not open $HOST:$(client_port "$id") within ${START_TIMEOUT}s" "$@"
      sleep 0.2
    done
  done
  # Then the real thing, retried until it passes.
  until probe_once; do
    for id in $(node_ids); do
      running_pid "$id" >/dev/null || fail_start "$(label "$id") exited during startup" "$@"
    done
    ((SECONDS < deadline)) || fail_start "Kafka at $(bootstrap) did not pass the readiness probe within ${START_TIMEOUT}s" "$@"
    sleep 1
  done
}

# ---------------------------------------------------------------- commands

# Start the given nodes of the current setup (those not running), then wait for the whole setup.
start_nodes() {
  local allow_format=$1 id t0=$SECONDS started=()
  shift
  ensure_java
  cmd_fetch
  ignore_in_git
  for id in "$@"; do
    running_pid "$id" >/dev/null && continue
    check_ports_free "$id"
    if [[ $allow_format == no && ! -f $(node_dir "$id")/data/meta.properties ]]; then
      die "node $id has no data to restart from; create the cluster first: deploy/kafka.sh start --nodes $NODES"
    fi
    write_config "$id"
    started+=("$id")
  done
  if ((${#started[@]} == 0)); then
    say "already running (pid $(for id in "$@"; do running_pid "$id"; done | paste -sd' '))"
    echo "Kafka $KAFKA_VERSION already running at $(bootstrap)"
    return 0
  fi
  # Format all first, then launch: a cluster's nodes wait for each other anyway.
  for id in "${started[@]}"; do format_node "$id"; done
  for id in "${started[@]}"; do launch_node "$id"; done
  say "waiting for Kafka at $(bootstrap) to serve (up to ${START_TIMEOUT}s) ..."
  wait_ready "${started[@]}"
  echo "Kafka $KAFKA_VERSION ready at $(bootstrap) (${NODES} node(s), $((SECONDS - t0))s)"
}

cmd_start() {
  local ids
  mapfile -t ids < <(node_ids)
  start_nodes yes "${ids[@]}"
}

# SIGTERM all given nodes at once (a cluster stopped one by one loses its quorum midway and
# the last nodes hang in controlled shutdown), then SIGKILL whatever is left at the deadline.
stop_nodes() {
  local id pid deadline alive
  local -A pids=()
  for id in "$@"; do
    if pid=$(running_pid "$id"); then
      pids[$id]=$pid
      kill -TERM "$pid" 2>/dev/null || true
    else
      rm -f "$(node_dir "$id")/kafka.pid"
    fi
  done
  if ((${#pids[@]} == 0)); then
    say "$(if ((NODES == 1)); then echo "Kafka broker"; else echo "Kafka node(s) $*"; fi) already stopped"
    return 0
  fi
  say "stopping $(for id in "$@"; do [[ -n ${pids[$id]:-} ]] && echo "node $id (pid ${pids[$id]})"; done | paste -sd, - | sed 's/,/, /g') ..."
  deadline=$((SECONDS + STOP_TIMEOUT))
  while :; do
    alive=()
    for id in "${!pids[@]}"; do pid_gone "${pids[$id]}" || alive+=("$id"); done
    ((${#alive[@]} == 0)) && break
    if ((SECONDS >= deadline)); then
      for id in "${alive[@]}"; do
        say "node $id did not stop within ${STOP_TIMEOUT}s: SIGKILL"
        kill -KILL "${pids[$id]}" 2>/dev/null || true
      done
      sleep 0.5
      break
    fi
    sleep 0.2
  done
  for id in "${!pids[@]}"; do rm -f "$(node_dir "$id")/kafka.pid"; done
  say "stopped"
}

cmd_stop() {
  local ids
  mapfile -t ids < <(node_ids)
  stop_nodes "${ids[@]}"
}

cmd_status() {
  local id pid all=0 state
  echo "$(if ((NODES == 1)); then echo "single node"; else echo "$NODES-node cluster"; fi) (Kafka $KAFKA_VERSION, bootstrap $(bootstrap)):"
  for id in $(node_ids); do
    if pid=$(running_pid "$id"); then
      if port_open "$(client_port "$id")"; then state="accepting connections"; else state="port not open yet"; fi
      echo "  node $id: running, pid $pid, $HOST:$(client_port "$id") $state"
    else
      echo "  node $id: stopped"
      all=3
    fi
  done
  return $all
}

cmd_probe() {
  local id t0=$SECONDS
  ensure_java
  [[ -d $LIBS ]] || die "no jars for Kafka $KAFKA_VERSION; run: deploy/kafka.sh fetch"
  for id in $(node_ids); do
    running_pid "$id" >/dev/null || die "$(label "$id") is not running"
  done
  : >"$(setup_dir)/probe.log"
  write_probe_config
  PROBE_DEADLINE=$((SECONDS + START_TIMEOUT))
  probe_once || {
    tail -n 20 "$(setup_dir)/probe.log" >&2
    die "probe of $(bootstrap) failed (full output: $(setup_dir)/probe.log)"
  }
  echo "Kafka at $(bootstrap) serves: topic created, record written (acks=all) and read back ($((SECONDS - t0))s)"
}

cmd_reset() {
  cmd_stop
  rm -rf "$(setup_dir)"
  say "deleted $(setup_dir)"
}

need_node_id() {
  ((NODES > 1)) || die "$CMD works on the cluster only"
  if ! [[ $NODE_ID =~ ^[1-9]$ ]] || ((NODE_ID > NODES)); then die "$CMD needs a node id 1-$NODES"; fi
}

cmd_kill_node() {
  local pid
  need_node_id
  if ! pid=$(running_pid "$NODE_ID"); then
    rm -f "$(node_dir "$NODE_ID")/kafka.pid"
    say "node $NODE_ID is not running"
    return 0
  fi
  kill -KILL "$pid"
  while ! pid_gone "$pid"; do sleep 0.1; done
  rm -f "$(node_dir "$NODE_ID")/kafka.pid"
  say "killed node $NODE_ID (pid $pid, SIGKILL)"
}

# Serialize commands that start or stop nodes of one setup: parallel test workers may all run
# `start` at once, and only one of them should launch; the others then find it running.
lock_setup() {
  local lock
  lock=$DATA/.$(basename "$(setup_dir)").lock
  mkdir -p "$DATA"
  exec 9>"$lock"
  flock -w $((START_TIMEOUT + STOP_TIMEOUT + 120)) 9 || die "timed out waiting for another kafka.sh (lock $lock)"
}

# ---------------------------------------------------------------- main

CMD=${1:-help}
(($#)) && shift
NODE_ID=
while (($#)); do
  case $1 in
    --nodes) [[ $# -ge 2 ]] || die "--nodes needs a value"; NODES=$2; shift 2 ;;
    --nodes=*) NODES=${1#--nodes=}; shift ;;
    -h | --help) usage; exit 0 ;;
    [0-9]*) NODE_ID=$1; shift ;;
    *) die "unknown argument: $1 (see deploy/kafka.sh --help)" ;;
  esac
done
case $CMD in
  start-cluster | stop-cluster | reset-cluster | status-cluster | probe-cluster)
    NODES=$CLUSTER_SIZE; CMD=${CMD%-cluster} ;;
  kill-node | stop-node | start-node) NODES=$CLUSTER_SIZE ;;
esac
[[ $NODES == 1 || $NODES == "$CLUSTER_SIZE" ]] || die "--nodes must be 1 or $CLUSTER_SIZE"

case $CMD in
  start | stop | reset | kill-node | stop-node | start-node) ignore_in_git; lock_setup ;;
esac

case $CMD in
  fetch) cmd_fetch ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status)
    # Plain `status` also reports the cluster, if one was ever created.
    if ((NODES == 1)) && [[ -d $DATA/cluster ]]; then
      rc=0
      cmd_status || rc=$?
      NODES=$CLUSTER_SIZE cmd_status || true
      exit $rc
    fi
    cmd_status ;;
  probe) cmd_probe ;;
  bootstrap) bootstrap ;;
  reset) cmd_reset ;;
  kill-node) cmd_kill_node ;;
  stop-node) need_node_id; stop_nodes "$NODE_ID" ;;
  start-node) need_node_id; start_nodes no "$NODE_ID" ;;
  help | -h | --help) usage ;;
  *) die "unknown command: $CMD (see deploy/kafka.sh --help)" ;;
esac
