#!/usr/bin/env bash
# Two tos-server nodes of one cluster on 127.0.0.1 and `loadgen --cluster`
# walking players across their border; prints the transfer figures and the
# CPU time each node used during the run (docs/PERFORMANCE.md, "Zone
# transfers"). Needs release builds (`cargo build --release -p tos-engine
# -p loadgen`) and `nats-server` on the PATH; runs a NATS of its own on
# 127.0.0.1:4333 so that it can be stopped mid-run.
#
#   loadgen/scripts/cluster-pair.sh PLAYERS SECONDS TAG [loadgen args...]
#   NATS_DOWN_AFTER=8 loadgen/scripts/cluster-pair.sh ...   # NATS stopped after 8 s
#
# Everything goes to /tmp/tos-cluster-pair-TAG (logs, metrics, JSON).
set -u
N=$1; S=$2; TAG=$3; shift 3
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
B=$ROOT/target/release
D=/tmp/tos-cluster-pair-$TAG
rm -rf "$D"; mkdir -p "$D/layouts" "$D/nats"
cp "$ROOT/config/layouts/single-core.ron" "$D/layouts/"
nats-server -a 127.0.0.1 -p 4333 -js -sd "$D/nats" > "$D/nats.log" 2>&1 &
NATS=$!
sleep 0.5
sed -e "s/\"shadowland\"/\"pair$TAG$$\"/" -e "s#nats://127.0.0.1:4222#nats://127.0.0.1:4333#" \
    "$ROOT/config/cluster-2nodes.ron" > "$D/cluster.ron"
# loadgen's players all come from 127.0.0.1: exempt it from the per-address limits.
for n in west:9101 east:9102; do
  sed -e "s/127.0.0.1:9100/127.0.0.1:${n#*:}/" \
      -e 's/admission_exempt_addresses: \[\]/admission_exempt_addresses: ["127.0.0.1"]/' \
      -e 's/login_attempts_per_minute_per_address: 30/login_attempts_per_minute_per_address: 100000/' \
      "$ROOT/config/server.ron" > "$D/${n%:*}.ron"
done
start_node() { # name port
  "$B/tos-server" --config "$D/$1.ron" --cores 1 --port "$2" --data-dir "$D" \
      --cluster "$D/cluster.ron" --node "$1" > "$D/$1.log" 2>&1 &
  for _ in $(seq 100); do grep -qs "tos-server running" "$D/$1.log" && return; sleep 0.1; done
  echo "node $1 did not start: $D/$1.log" >&2; exit 1
}
start_node west 7777; W=$!
start_node east 7778; E=$!
KEY=$(grep 'static public key' "$D/west.log" | grep -o ' key=[0-9a-f]*' | cut -c6-)
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
W0=$(cpu $W); E0=$(cpu $E)
if [ -n "${NATS_DOWN_AFTER:-}" ]; then (sleep "$NATS_DOWN_AFTER"; kill $NATS) & fi
(cd "$D" && "$B/loadgen" --cluster "$D/cluster.ron" --server-key "$KEY" \
    --integrity-secret "$(cat "$D/integrity.secret")" --players "$N" --seconds "$S" \
    --fast-passwords --json "$D/out.json" "$@" > "$D/loadgen.txt" 2>&1)
echo "loadgen exit status $?"
W1=$(cpu $W); E1=$(cpu $E)
for n in west:9101 east:9102; do
  curl -s "127.0.0.1:${n#*:}/metrics" | grep -E "tos_game_(zone|online|cluster_border)" > "$D/${n%:*}.metrics"
done
kill $W $E $NATS 2>/dev/null; wait
echo "node CPU during the run (ticks of 10 ms): west $((W1 - W0)) east $((E1 - E0))"
grep -E "zone transfer|disconnects|players connected|kept its rate" "$D/loadgen.txt"
for n in west east; do sed "s/^/$n: /" "$D/$n.metrics"; done
