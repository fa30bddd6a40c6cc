#!/usr/bin/env bash
# lb_vs_kamailio.sh -- the same SIPp load through sipedge-lb and through Kamailio
# (stateless forward() and stateful t_relay()), one after the other in one run.
# Not a test: a benchmark harness for this 2-core box. Results and method are
# written up in docs/PERFORMANCE.md, "Edge load balancer vs Kamailio".
#
# Phases (pick any on the command line; default: cost latency ramp):
#   cost     CPU per op at a fixed rate every LB passes: REPEAT runs of INVITE/ACK/BYE
#            at INV_RATE calls/s and of OPTIONS at OPT_RATE/s per LB, interleaved;
#            µs per op = LB CPU time ÷ calls completed (median of the runs)
#   latency  OPTIONS request→final-response at the UAC socket from a loopback pcap
#            (tcpdump + tools/pcap_latency.py) at LAT_RATE/s: direct (UAC→one UAS)
#            vs via each LB; added latency = via LB − direct, per percentile
#   ramp     highest sustained rate per LB (reference ramp.sh: a step passes with
#            fail ≤ 0.1 % and achieved ≥ 97 %; the best step is re-run 3× for a median)
#   Per-dialog order is checked in every run: SIPp counts a 180 after the 200 as a
#   failed call ("unexpected message", summary.json: uac_failed_unexpected).
#
# How: the reference kit ($SIPEDGE_REFERENCE_DIR/bench/kamailio, default ../shared
# beside the repo) is copied at run time to $OUT/kit (the reference folder is
# read-only and its scripts write results/ beside themselves; nothing is copied
# into the repo). Its run.sh drives every run: 3 SIPp UAS on 127.0.0.1:5071-5073,
# the LB on 127.0.0.1:5060 pinned to core 0 (taskset -c 0, one worker), the UAC
# on 5090 and every SIPp on core 1, CPU of the LB from /proc/<pid>/stat
# (tools/cpusample.py, the LB pid and its threads/children). For sipedge-lb,
# run.sh finds $OUT/shim/kamailio first on PATH: a shim that execs the release
# sipedge-lb with a one-worker config ($OUT/sipedge-bench.toml), so the pid,
# pinning, SIPp commands and bookkeeping are exactly those of the Kamailio runs.
#
# Output of run.sh goes to files, never to a pipe: its watchdog `sleep` outlives the
# run and would hold a pipe open for DUR+45 s.
#
# usage:  tests/bench/lb_vs_kamailio.sh [cost] [latency] [ramp]
# env:    OUT=dir (default results/lb_vs_kamailio/<time>, git-ignored)
#         MODES="sipedge stateless stateful"  REPEAT=3  DUR=15
#         INV_RATE=4000  OPT_RATE=10000  LAT_RATE=2000  LAT_DUR=8  LAT_REPEAT=3
#         LAT_WARMUP=0 (seconds at the start of each latency run left out of the LB residence
#           times; with LAT_DUR=45 LAT_WARMUP=35 they describe the steady state, after sipedge's
#           lingering transactions (32 s) start to expire)
#         RAMP_DUR=10  CONFIRM_DUR=15  INV_LADDER="…"  OPT_LADDER="…"
#         PORT_BASE=25000: the copied kit is patched to use ports BASE+60 (LB), BASE+71..73
#           (UAS), BASE+90 (UAC), BASE+80 (LB internal), BASE+4060 (LB admin); PORT_BASE=0
#           keeps the kit's own 5060/5071-5073/5090 (often taken on a shared box)
#         NO_BUILD=1 (skip cargo build --release -p sipedge-lb), LB_BIN=path (another build)
#         LB_LINGER=32s (sipedge-lb [transaction] linger, for experiments)
# needs:  sipp, kamailio, tcpdump (latency), taskset, ss, python3; UDP ports 5060,
#         5071-5073, 5080, 5090 and TCP 9060 (shifted by PORT_BASE) free on 127.0.0.1. Loopback only;
#         every run is bounded (-m RATE*DUR, -timeout, watchdog) and every process
#         is killed by pid (run.sh does it).
# output: $OUT/report.md (the tables), $OUT/kit/results/<tag>/summary.json per run.
set -u
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
REF="${SIPEDGE_REFERENCE_DIR:-$REPO/../shared}"
KIT_SRC="$REF/bench/kamailio"
OUT="${OUT:-$REPO/results/lb_vs_kamailio/$(date -u +%Y%m%dT%H%M%SZ)}"
MODES="${MODES:-sipedge stateless stateful}"
REPEAT=${REPEAT:-3}; DUR=${DUR:-15}
INV_RATE=${INV_RATE:-4000}; OPT_RATE=${OPT_RATE:-10000}
LAT_RATE=${LAT_RATE:-2000}; LAT_DUR=${LAT_DUR:-8}; LAT_REPEAT=${LAT_REPEAT:-3}; LAT_WARMUP=${LAT_WARMUP:-0}
export RAMP_DUR=${RAMP_DUR:-10} CONFIRM_DUR=${CONFIRM_DUR:-15}
INV_LADDER=${INV_LADDER:-"4000 8000 12000 16000 20000"}
OPT_LADDER=${OPT_LADDER:-"10000 20000 30000 40000 50000 60000"}
export PIN=1 CHILDREN=1
PORT_BASE=${PORT_BASE:-25000}
P_LB=$((PORT_BASE ? PORT_BASE + 60 : 5060)); P_UAC=$((PORT_BASE ? PORT_BASE + 90 : 5090))
P_UAS1=$((PORT_BASE ? PORT_BASE + 71 : 5071)); P_UAS2=$((P_UAS1 + 1)); P_UAS3=$((P_UAS1 + 2))
P_INT=$((PORT_BASE ? PORT_BASE + 80 : 5080)); P_ADMIN=$((PORT_BASE ? PORT_BASE + 4060 : 9060))
PHASES="${*:-cost latency ramp}"

[ -d "$KIT_SRC" ] || { echo "no reference kit at $KIT_SRC (set SIPEDGE_REFERENCE_DIR)" >&2; exit 2; }
for t in sipp kamailio taskset ss python3; do
  command -v "$t" >/dev/null || { echo "$t not found" >&2; exit 2; }
done

if [ "${NO_BUILD:-0}" != 1 ]; then
  (cd "$REPO" && cargo build --release -p sipedge-lb) || exit 2
fi
LB_BIN="${LB_BIN:-$REPO/target/release/sipedge-lb}"
[ -x "$LB_BIN" ] || { echo "no $LB_BIN" >&2; exit 2; }

mkdir -p "$OUT/shim" "$OUT/residence"
cp -a "$KIT_SRC" "$OUT/kit" && chmod -R u+w "$OUT/kit"
KIT="$OUT/kit"
# Only the port numbers of the copy change (the line is checked, so a changed kit fails loudly).
PORTS_LINE='LB_PORT=5060; UAC_PORT=5090; UAS_PORTS=(5071 5072 5073); IP=127.0.0.1'
grep -qxF "$PORTS_LINE" "$KIT/run.sh" || { echo "kit run.sh: ports line not found" >&2; exit 2; }
sed -i "s/^LB_PORT=5060; UAC_PORT=5090; UAS_PORTS=(5071 5072 5073);/LB_PORT=$P_LB; UAC_PORT=$P_UAC; UAS_PORTS=($P_UAS1 $P_UAS2 $P_UAS3);/" "$KIT/run.sh"
printf '1 sip:127.0.0.1:%s 0 0\n' $P_UAS1 $P_UAS2 $P_UAS3 > "$KIT/dispatcher.list"

# One worker on loopback, the reference kit's ports. Flood limits are raised far
# above the offered load (the check itself still runs on every request): the
# whole load comes from one source IP. Logging at warn and no request sampling:
# nothing is logged on the hot path (Kamailio runs with debug=1 likewise).
cat > "$OUT/sipedge-bench.toml" <<EOF
id = 1
edge = "bench"

[listen]
udp = ["127.0.0.1:$P_LB"]
tcp = []
tls = []
advertise = "127.0.0.1"
internal = "127.0.0.1:$P_INT"
workers = 1

[flow]
keys = ["hex:736970656467652062656e6368206b657920303031"]

[transaction]
timer_non_invite = "2s"
timer_invite = "2s"
linger = "${LB_LINGER:-32s}"

[[proxies]]
id = "p1"
addr = "127.0.0.1:$P_UAS1"

[[proxies]]
id = "p2"
addr = "127.0.0.1:$P_UAS2"

[[proxies]]
id = "p3"
addr = "127.0.0.1:$P_UAS3"

[admin]
listen = "127.0.0.1:$P_ADMIN"
token = "bench-admin-token-0123456789"
monitor_freshness = "10s"

[flood]
request_rate = 10000000
request_burst = 10000000
register_rate = 10000000
register_burst = 10000000

[log]
level = "warn"
sample = 0.0
EOF
"$LB_BIN" --config "$OUT/sipedge-bench.toml" --check >/dev/null || exit 2

REV="$(cd "$REPO" && git rev-parse --short HEAD)$(cd "$REPO" && git diff --quiet HEAD -- lb shared || echo -dirty)"
cat > "$OUT/shim/kamailio" <<EOF
#!/bin/sh
# run.sh starts "kamailio ARGS" and records its pid: become sipedge-lb instead.
if [ "\${1:-}" = -v ]; then echo "version: sipedge-lb $REV (release, workers=1)"; exit 0; fi
exec "$LB_BIN" --config "$OUT/sipedge-bench.toml" --tls-dir "$OUT/tls"
EOF
chmod +x "$OUT/shim/kamailio"

# One bounded run through the reference run.sh. $1 = sipedge|stateless|stateful|direct.
one() {
  local who=$1; shift
  case "$who" in
    sipedge) env PATH="$OUT/shim:$PATH" MODE=sipedge TARGET=lb "$@" "$KIT/run.sh" ;;
    direct)  env MODE=none TARGET=direct "$@" "$KIT/run.sh" ;;
    *)       env MODE="$who" TARGET=lb "$@" "$KIT/run.sh" ;;
  esac
}

{
  echo "date_utc=$(date -u -Is)"
  echo "nproc=$(nproc)"
  echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "kernel=$(uname -r)"
  echo "sipedge=$REV"
  echo "kamailio=$(kamailio -v | head -1)"
  echo "sipp=$(sipp -v 2>&1 | grep -o 'SIPp v[^ ]*')"
  echo "loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)"
} > "$OUT/machine.txt"
cat "$OUT/machine.txt"

# ramp.sh writes its summary's header line into results/, which only run.sh creates.
mkdir -p "$KIT/results"
for phase in $PHASES; do
  case "$phase" in
    cost)
      for k in $(seq "$REPEAT"); do
        for SCEN in invite options; do
          R=$([ $SCEN = invite ] && echo "$INV_RATE" || echo "$OPT_RATE")
          for M in $MODES; do
            TAG="cost_${M}_${SCEN}_r${R}_${k}"
            one "$M" SCEN=$SCEN RATE="$R" DUR="$DUR" TAG="$TAG" > "$OUT/last.tsv" 2>&1
            echo "cost: $TAG $(tail -1 "$OUT/last.tsv" | cut -f7,8,12)"
          done
        done
      done ;;
    latency)
      for k in $(seq "$LAT_REPEAT"); do
        for M in direct $MODES; do
          TAG="lat_${M}_options_r${LAT_RATE}_${k}"
          # A second capture, of the LB's own ports, for its residence time.
          tdpid=
          if [ "$M" != direct ]; then
            taskset -c 1 tcpdump -i lo -n -B 65536 -s 2048 -w "$OUT/residence/$TAG.pcap" \
              "udp and (port $P_LB or port $P_INT)" 2> "$OUT/residence/$TAG.tcpdump.log" &
            tdpid=$!
            sleep 1
          fi
          one "$M" SCEN=options RATE="$LAT_RATE" DUR="$LAT_DUR" PCAP=1 TAG="$TAG" > "$OUT/last.tsv" 2>&1
          if [ -n "$tdpid" ]; then
            sleep 1; kill -INT "$tdpid"; wait "$tdpid" 2>/dev/null
            python3 "$REPO/tests/bench/lb_residence.py" --skip "$LAT_WARMUP" "$OUT/residence/$TAG.pcap" \
              "$P_LB" "$P_UAC" "$P_UAS1" "$P_UAS2" "$P_UAS3" > "$OUT/residence/$TAG.json"
            rm -f "$OUT/residence/$TAG.pcap"
          fi
          echo "latency: $TAG $(tail -1 "$OUT/last.tsv" | cut -f7,8)"
        done
      done ;;
    ramp)
      for M in $MODES; do
        for SCEN in invite options; do
          L=$([ $SCEN = invite ] && echo "$INV_LADDER" || echo "$OPT_LADDER")
          # shellcheck disable=SC2086
          if [ "$M" = sipedge ]; then PATH="$OUT/shim:$PATH" "$KIT/ramp.sh" sipedge $SCEN $L
          else "$KIT/ramp.sh" "$M" $SCEN $L; fi
        done
      done > "$OUT/ramp.log" 2>&1
      cat "$OUT/ramp.log" ;;
    *) echo "unknown phase $phase" >&2; exit 2 ;;
  esac
done

echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/machine.txt"
python3 "$REPO/tests/bench/lb_vs_kamailio_report.py" "$OUT" | tee "$OUT/report.md"
