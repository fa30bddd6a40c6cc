#!/usr/bin/env bash
# The local stack's --demo: registers SIPp users through the LB, places calls
# from alice to each of them, kills one proxy part-way through, and prints a
# summary (calls ok and failed, LB failovers, replicas and peer lookups,
# which proxy served whom).
# Called by stack.sh with the state folder and the three proxy pids.
set -uo pipefail
STATE=$1; shift
PROXY_PIDS=("$@")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SIPP_DIR="$ROOT/tests/sipp"
LB=127.0.0.1:5060
DEMO="$STATE/demo"
rm -rf "$DEMO"; mkdir -p "$DEMO"
command -v sipp >/dev/null || { echo "demo: sipp is not installed (apt-get install sip-tester)"; exit 1; }

USERS=(bob carol)
PORTS=(5201 5202)
RATE=4
CALLS=60          # per callee; 15 s at 4 calls/s
KILL_AFTER=5      # seconds into the calls
SIPP_PIDS=()
cleanup() { for p in "${SIPP_PIDS[@]}"; do kill "$p" 2>/dev/null; done; }
trap cleanup EXIT

echo "demo: registering ${USERS[*]} (digest) through the LB ..."
for i in "${!USERS[@]}"; do
  u=${USERS[$i]}; port=${PORTS[$i]}
  # Register from the port the UAS will answer on: over UDP the flow is that
  # address, so calls reach the same SIPp.
  sipp -sf "$SIPP_DIR/register.xml" -s "$u" -au "$u" -ap "$u-secret" -auth_uri sipedge.local \
       -i 127.0.0.1 -p "$port" \
       -m 1 -nostdin -timeout 10s "$LB" > "$DEMO/register-$u.log" 2>&1 \
    || { echo "demo: REGISTER of $u failed (see $DEMO/register-$u.log)"; exit 1; }
  sipp -sn uas -i 127.0.0.1 -p "$port" -nostdin -timeout 60s > "$DEMO/uas-$u.log" 2>&1 &
  SIPP_PIDS+=($!)
done
sleep 0.5

echo "demo: alice calls ${USERS[*]} ($CALLS calls each at $RATE/s) ..."
UAC_PIDS=()
for u in "${USERS[@]}"; do
  sipp -sf "$SIPP_DIR/call_uac_auth.xml" -s "$u" -au alice -ap alice-secret \
       -auth_uri "$u@sipedge.local" -i 127.0.0.1 -p 0 \
       -r "$RATE" -m "$CALLS" -nostdin -timeout 45s -trace_stat -stf "$DEMO/calls-$u.csv" \
       "$LB" > "$DEMO/uac-$u.log" 2>&1 &
  UAC_PIDS+=($!); SIPP_PIDS+=($!)
done

sleep "$KILL_AFTER"
victim=2
echo "demo: killing proxy p$victim (pid ${PROXY_PIDS[$((victim-1))]}) part-way through"
kill -KILL "${PROXY_PIDS[$((victim-1))]}" 2>/dev/null
for p in "${UAC_PIDS[@]}"; do wait "$p"; done

metric() { # url name
  python3 - "$1" "$2" <<'PY'
import sys, urllib.request
try:
    text = urllib.request.urlopen(sys.argv[1], timeout=2).read().decode()
except Exception:
    print(0); sys.exit()
total = 0.0
for line in text.splitlines():
    if line.startswith(sys.argv[2]):
        total += float(line.rsplit(" ", 1)[1])
print(int(total))
PY
}

echo
echo "================ demo summary ================"
ok=0; failed=0
for u in "${USERS[@]}"; do
  s=$(grep -E "Successful call" "$DEMO/uac-$u.log" | tail -1 | awk -F'|' '{print $3}' | tr -d ' ')
  f=$(grep -E "Failed call" "$DEMO/uac-$u.log" | tail -1 | awk -F'|' '{print $3}' | tr -d ' ')
  echo "calls alice -> $u: ok ${s:-0}, failed ${f:-0}"
  ok=$((ok + ${s:-0})); failed=$((failed + ${f:-0}))
done
echo "calls in all:  ok $ok, failed $failed"
echo "LB failovers:  $(metric http://127.0.0.1:9060/metrics sipedge_lb_failovers_total)"
echo "live proxies:  $(python3 -c 'import json,urllib.request;print([p["id"] for p in json.load(urllib.request.urlopen("http://127.0.0.1:9060/v1/proxies"))["live"]])' 2>/dev/null)"
echo "who served whom (call records):"
for f in "$STATE"/cdr-p*.jsonl; do
  [ -f "$f" ] || continue
  p=$(basename "$f" .jsonl); p=${p#cdr-}
  python3 - "$f" "$p" <<'PY'
import json, sys, collections
seen = collections.Counter()
for line in open(sys.argv[1]):
    try:
        r = json.loads(line)
    except ValueError:
        continue
    seen[(r.get("from", "?"), r.get("to", "?"), r.get("invite_status", "?"))] += 1
for (frm, to, outcome), n in sorted(seen.items()):
    print(f"  {sys.argv[2]}: {frm} -> {to} (final {outcome}): {n}")
PY
done
sum_live() { # metric name, over the proxies still running
  local t=0
  for port in 9071 9072 9073; do t=$((t + $(metric "http://127.0.0.1:$port/metrics" "$1"))); done
  echo $t
}
echo "replicas (live proxies): sent $(sum_live sipedge_proxy_replicas_sent_total), failed $(sum_live sipedge_proxy_replicas_failed_total), dropped $(sum_live sipedge_proxy_replicas_dropped_total), held $(sum_live sipedge_proxy_replica_bindings)"
echo "peer lookups (live proxies): $(sum_live 'sipedge_proxy_peer_lookups_total{edge="local",result="found"}') found, $(sum_live 'sipedge_proxy_peer_lookups_total{edge="local",result="not_found"}') not found"
echo "Users homed on the killed proxy stay reachable: their bindings were copied"
echo "to the next-ranked proxy (where the LB fails over), which routes the calls"
echo "through the stored Path. Calls failed only while in flight on the killed proxy."
echo "==============================================="
