#!/usr/bin/env bash
# deploy/lab/lab.sh — the multi-region anycast lab in Linux network namespaces.
#
#   lab.sh up     build the topology and start everything; leaves it running
#   lab.sh test   up, run the failover test, print the verdict, always tear down
#   lab.sh down   stop every process in the lab namespaces and delete them
#
# Namespaces: sel-rtr (router, BIRD), sel-a and sel-b (LB sites: sipedge-lb on
# the anycast VIP 203.0.113.10 plus a unicast internal address, BIRD announcing
# the VIP over eBGP while /readyz is 200), sel-core (3 proxies, sipmon when it
# is built), sel-cli (SIPp clients over TCP to the VIP). Static unicast routes,
# BGP for the VIP only; no route leaves the namespaces. See README.md.
#
# Needs root, iproute2, bird2 (bird, birdc), sipp, curl and python3. The sites
# run deploy/bird: bird-lb-site.conf (defines filled in) and the /readyz check
# sipedge-anycast-check. Binaries: $SIPEDGE_LAB_BIN_DIR, else cargo builds
# target/$SIPEDGE_LAB_PROFILE (debug by default, or release). Run files and
# logs: $SIPEDGE_LAB_DIR (default target/lab). The last line of `test` is:
#   LAB VERDICT: PASS ...   or   LAB VERDICT: FAIL <reason>
set -Eeuo pipefail
trap 'echo "LAB VERDICT: FAIL command failed at line $LINENO: $BASH_COMMAND"' ERR

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
RUN=${SIPEDGE_LAB_DIR:-$REPO/target/lab}
NAMESPACES=(sel-rtr sel-a sel-b sel-core sel-cli)
VIP=203.0.113.10
USERS=(alice bob carol)
PROXY_IPS=(10.0.9.1 10.0.9.2 10.0.9.3)
SIPMON_IP=10.0.9.10
CLIENT_IP=192.0.2.10
ADMIN_TOKEN=lab-admin-token-0123456789
# Shared by both LBs (flow tokens must verify on either); lab only.
FLOW_KEY=hex:6c61622d666c6f772d6b65792d30303031323334

now_ms() { date +%s%3N; }
log() { echo "lab: $*"; }
die() {
	echo "LAB VERDICT: FAIL $*"
	exit 1
}
nsx() { ip netns exec "$@"; }

# --- prerequisites -------------------------------------------------------

check_tools() {
	[ "$(id -u)" = 0 ] || die "must run as root (ip netns)"
	local t
	for t in ip bird birdc sipp curl python3; do
		command -v "$t" >/dev/null || die "missing tool: $t"
	done
}

# Binaries: $SIPEDGE_LAB_BIN_DIR as is; otherwise cargo brings
# target/$SIPEDGE_LAB_PROFILE (debug or release, default debug) up to date
# (a no-op when it is), so the lab never runs a stale build.
find_bins() {
	if [ -n "${SIPEDGE_LAB_BIN_DIR:-}" ]; then
		BIN=$SIPEDGE_LAB_BIN_DIR
	else
		local profile=${SIPEDGE_LAB_PROFILE:-debug} cargo=${CARGO:-cargo}
		BIN=$REPO/target/$profile
		if command -v "$cargo" >/dev/null; then
			log "cargo build ($profile) -p sipedge-lb -p sipmon"
			(cd "$REPO" && "$cargo" build -q $([ "$profile" = release ] && echo --release) -p sipedge-lb -p sipmon) ||
				die "cargo build failed"
		else
			log "no cargo: using the binaries already in $BIN"
		fi
	fi
	[ -x "$BIN/sipedge-lb" ] || die "no sipedge-lb in $BIN"
	log "binaries from $BIN"
}

# sipmon joins the lab when its binary has `sipmon run` (main has it).
sipmon_ready() {
	[ -x "$BIN/sipmon" ] && "$BIN/sipmon" run --help >/dev/null 2>&1
}

# --- topology ------------------------------------------------------------

# veth NS_A:IF_A <-> NS_B:IF_B, created directly inside the namespaces so
# nothing ever appears in the host's namespace.
link() {
	ip link add "$2" netns "$1" type veth peer name "$4" netns "$3"
	nsx "$1" ip link set "$2" up
	nsx "$3" ip link set "$4" up
}

topology_up() {
	local ns
	for ns in "${NAMESPACES[@]}"; do
		ip netns add "$ns"
		nsx "$ns" ip link set lo up
		nsx "$ns" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
	done
	nsx sel-rtr sysctl -qw net.ipv4.ip_forward=1

	link sel-rtr rtr-a sel-a eth0
	link sel-rtr rtr-b sel-b eth0
	link sel-rtr rtr-core sel-core eth0
	link sel-rtr rtr-cli sel-cli eth0

	nsx sel-rtr ip addr add 10.0.11.1/24 dev rtr-a
	nsx sel-rtr ip addr add 10.0.12.1/24 dev rtr-b
	nsx sel-rtr ip addr add 10.0.9.254/24 dev rtr-core
	nsx sel-rtr ip addr add 192.0.2.1/24 dev rtr-cli
	# The LBs' unicast internal addresses (in Path and Record-Route).
	nsx sel-rtr ip route add 10.0.1.1/32 via 10.0.11.2
	nsx sel-rtr ip route add 10.0.2.1/32 via 10.0.12.2

	local site n
	for site in a b; do
		n=$([ $site = a ] && echo 1 || echo 2)
		nsx sel-$site ip addr add 10.0.1$n.2/24 dev eth0
		nsx sel-$site ip addr add 10.0.$n.1/32 dev lo
		# The VIP lives on lo (kernels without the dummy module are common in
		# containers); BIRD announces it only while the LB is ready.
		nsx sel-$site ip addr add $VIP/32 dev lo
		nsx sel-$site ip route add 10.0.0.0/8 via 10.0.1$n.1
		nsx sel-$site ip route add 192.0.2.0/24 via 10.0.1$n.1
	done

	local ip
	for ip in "${PROXY_IPS[@]}" $SIPMON_IP; do
		nsx sel-core ip addr add $ip/24 dev eth0
	done
	nsx sel-core ip route add 10.0.0.0/8 via 10.0.9.254

	nsx sel-cli ip addr add $CLIENT_IP/24 dev eth0
	# Only the VIP's prefix, and only toward the lab router.
	nsx sel-cli ip route add 203.0.113.0/24 via 192.0.2.1
}

# --- processes -----------------------------------------------------------

# bg NAME NS CMD...: starts CMD in NS, output to $RUN/NAME.log, pid in NAME.pid.
bg() {
	local name=$1 ns=$2
	shift 2
	ip netns exec "$ns" "$@" >"$RUN/$name.log" 2>&1 &
	echo $! >"$RUN/$name.pid"
	disown $!
}

pid_of() { cat "$RUN/$1.pid" 2>/dev/null || true; }

write_lb_config() { # site n
	local site=$1 n=$2
	cat >"$RUN/lb-$site.toml" <<EOF
# Lab LB, site $site (written by lab.sh).
id = $n
edge = "lab-$site"

[listen]
udp = ["$VIP:5060"]
tcp = ["$VIP:5060"]
advertise = "$VIP"
internal = "10.0.$n.1:5060"
workers = 1

[flow]
keys = ["$FLOW_KEY"]
keepalive_interval = "30s"

[transaction]
timer_non_invite = "1s"
timer_invite = "1s"

[[proxies]]
id = "p1"
addr = "${PROXY_IPS[0]}:5060"

[[proxies]]
id = "p2"
addr = "${PROXY_IPS[1]}:5060"

[[proxies]]
id = "p3"
addr = "${PROXY_IPS[2]}:5060"

[admin]
listen = "10.0.$n.1:9060"
token = "$ADMIN_TOKEN"

[log]
level = "info"
json = false
sample = 0.0
EOF
}

start_lb() { # site n
	bg lb-$1 sel-$1 "$BIN/sipedge-lb" --config "$RUN/lb-$1.toml" --tls-dir "$RUN/tls"
}

# The site's BIRD config: deploy/bird/bird-lb-site.conf with its per-site
# `define`s filled in, logging to stderr with ms stamps, and the VIP on lo
# instead of the dummy vip0 (containers often lack the dummy module).
write_bird_site_config() { # site n
	local site=$1 n=$2 out=$RUN/bird-$1.conf
	sed -e 's/^log syslog all;/log stderr all;\ntimeformat log "%F %T.%3f";/' \
		-e "s/^router id .*/router id 10.0.1$n.2;/" \
		-e "s/^define LOCAL_AS = .*/define LOCAL_AS = 6450$n;/" \
		-e "s/^define LOCAL_V4 = .*/define LOCAL_V4 = 10.0.1$n.2;/" \
		-e "s/^define ROUTER_V4 = .*/define ROUTER_V4 = 10.0.1$n.1;/" \
		-e 's/via "vip0"/via "lo"/' \
		"$REPO/deploy/bird/bird-lb-site.conf" >"$out"
	local want
	for want in "router id 10.0.1$n.2;" "define LOCAL_AS = 6450$n;" "define LOCAL_V4 = 10.0.1$n.2;" \
		"define ROUTER_V4 = 10.0.1$n.1;" "define VIP4 = $VIP/32;" 'route VIP4 via "lo";' "log stderr all;"; do
		grep -qF "$want" "$out" || die "deploy/bird/bird-lb-site.conf changed shape: no \`$want\` after editing"
	done
}

start_site() { # site n
	local site=$1 n=$2
	write_bird_site_config "$site" "$n"
	bg bird-$site sel-$site bird -f -c "$RUN/bird-$site.conf" -s "$RUN/bird-$site.ctl" -P "$RUN/bird-$site.birdpid"
	write_lb_config "$site" "$n"
	start_lb "$site" "$n"
	# Polls 5x as often as production (1 s) so the test stays short; a dead
	# LB refuses at once, while the generous timeout keeps a debug build on
	# a loaded machine from being withdrawn by mistake.
	bg check-$site sel-$site "$REPO/deploy/bird/sipedge-anycast-check" --url "http://10.0.$n.1:9060/readyz" \
		--interval 0.2 --timeout 1 --fail-after 2 --ok-after 2 \
		--protocols vip4 --socket "$RUN/bird-$site.ctl"
}

write_sipmon_config() {
	cat >"$RUN/sipmon.toml" <<EOF
# Lab sipmon (written by lab.sh).
id = "mon-lab"
anycast_vips = ["$VIP"]

[probe]
interval = "500ms"
timeout = "500ms"
down_after = 3
up_after = 2
down_codes = [503]
transport = "udp"
source = "$SIPMON_IP"

[[proxies]]
id = "p1"
addr = "${PROXY_IPS[0]}:5060"

[[proxies]]
id = "p2"
addr = "${PROXY_IPS[1]}:5060"

[[proxies]]
id = "p3"
addr = "${PROXY_IPS[2]}:5060"

[push]
lbs = ["http://10.0.1.1:9060", "http://10.0.2.1:9060"]
token = "$ADMIN_TOKEN"
heartbeat = "2s"
timeout = "1s"
retry = { min = "200ms", max = "2s" }

[admin]
listen = "$SIPMON_IP:9070"
EOF
}

start_core() {
	local i
	for i in 0 1 2; do
		bg proxy$((i + 1)) sel-core sipp -sf "$HERE/sipp/proxy_uas.xml" -t u1 \
			-i "${PROXY_IPS[$i]}" -p 5060 -deadcall_wait 0 -nostdin -timeout 600s \
			-trace_err -error_file "$RUN/proxy$((i + 1)).err"
	done
	if sipmon_ready; then
		write_sipmon_config
		bg sipmon sel-core "$BIN/sipmon" run --config "$RUN/sipmon.toml"
		SIPMON=1
	else
		log "sipmon: not built with \`run\` yet; the LBs use their static proxy list"
		SIPMON=0
	fi
}

start_router() {
	bg bird-rtr sel-rtr bird -f -c "$HERE/bird/router.conf" -s "$RUN/bird-rtr.ctl" -P "$RUN/bird-rtr.birdpid"
}

# wait_until SECONDS DESCRIPTION CMD...: polls CMD every 50 ms.
wait_until() {
	local limit=$(($(now_ms) + $1 * 1000)) what=$2
	shift 2
	until "$@" >/dev/null 2>&1; do
		[ "$(now_ms)" -lt $limit ] || die "timed out waiting for $what"
		sleep 0.05
	done
}

# The router's next hop for the VIP (empty when it has no route).
vip_via() {
	nsx sel-rtr ip -4 route show $VIP/32 2>/dev/null | sed -n 's/.* via \([0-9.]*\).*/\1/p'
}
vip_via_is() { [ "$(vip_via)" = "$1" ]; }
lb_ready() { nsx sel-$1 curl -sf --max-time 0.5 -o /dev/null "http://10.0.$2.1:9060/readyz"; }
# The LB routes on sipmon's report rather than its static list.
lb_monitored() { nsx sel-$1 curl -sf --max-time 0.5 "http://10.0.$2.1:9060/v1/proxies" | grep -q '"source":"monitors"'; }

up() {
	check_tools
	find_bins
	down_quiet
	mkdir -p "$RUN"
	rm -rf "${RUN:?}"/*
	mkdir -p "$RUN/tls" "$RUN/cli"
	topology_up
	start_router
	start_core
	start_site a 1
	start_site b 2
	wait_until 15 "LB site A ready" lb_ready a 1
	wait_until 15 "LB site B ready" lb_ready b 2
	wait_until 20 "the router's VIP route via site A" vip_via_is 10.0.11.2
	wait_until 20 "site B's BGP session" bird_established sel-rtr site_b
	if [ "$SIPMON" = 1 ]; then
		wait_until 15 "sipmon's live set at LB A" lb_monitored a 1
		wait_until 15 "sipmon's live set at LB B" lb_monitored b 2
		log "sipmon: both LBs route on its live set"
	fi
	log "up: VIP $VIP via site A (10.0.11.2); site B (10.0.12.2) standing by"
}

bird_established() { # ns protocol
	birdc -s "$RUN/bird-rtr.ctl" show protocols "$2" | grep -q Established
}

down_quiet() {
	local ns p
	for ns in "${NAMESPACES[@]}"; do
		ip netns list | grep -qw "^$ns" || continue
		for p in $(ip netns pids "$ns" 2>/dev/null); do kill -TERM "$p" 2>/dev/null || true; done
	done
	sleep 0.3
	for ns in "${NAMESPACES[@]}"; do
		ip netns list | grep -qw "^$ns" || continue
		for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
		ip netns del "$ns" 2>/dev/null || true
	done
}

down() {
	down_quiet
	local left
	left=$(ip netns list | grep -o '^sel-[a-z]*' || true)
	[ -z "$left" ] || {
		echo "lab: namespaces left behind: $left" >&2
		return 1
	}
	log "down: no sel-* namespace left"
}

# --- the test ------------------------------------------------------------

# One client: user $1 calls $2, 5 calls/s over one TCP connection per SIPp
# run; when the connection breaks SIPp exits and the loop starts it again
# (a new connection, so a new REGISTER), until $3 (ms). It answers OPTIONS
# sent toward it (-aa).
client_loop() {
	local user=$1 callee=$2 until=$3 dir=$RUN/cli/$1 left
	mkdir -p "$dir"
	cd "$dir"
	while [ "$(now_ms)" -lt "$until" ]; do
		left=$(((until - $(now_ms)) / 1000 + 1))
		ip netns exec sel-cli sipp -sf "$HERE/sipp/client_uac.xml" -t t1 -i $CLIENT_IP \
			-s "$user" -key callee "$callee" -r 5 -l 5 -m 100000 -aa \
			-recv_timeout 2000 -timeout "${left}s" -max_reconnect 0 -nostdin \
			-trace_rtt -rtt_freq 1 -trace_logs -trace_err $VIP:5060 >/dev/null 2>&1 &
		# SIPp's response-time dump counts ms from its own start: keep the
		# wall clock at launch per pid (ip netns exec execs, so $! is SIPp).
		echo "$! $(now_ms)" >>"$dir/starts"
		wait $! || true
		sleep 0.1
	done
}

# start_of USER PID: the wall clock (ms) when that SIPp run was launched.
start_of() { awk -v p="$2" '$1 == p { print $2 }' "$RUN/cli/$1/starts"; }

# Wall-clock times (ms) of client $1's successful calls (INVITE answered 200),
# from the response-time dumps, sorted.
calls() {
	local f pid start
	for f in "$RUN/cli/$1"/*_rtt.csv; do
		[ -e "$f" ] || continue
		pid=${f%_rtt.csv} && pid=${pid##*_}
		start=$(start_of "$1" "$pid")
		[ -n "$start" ] || continue
		awk -F';' -v s="$start" '$3 == "call" { printf "%.0f\n", s + $1 }' "$f"
	done | sort -n
}

# "TIME SITE PATH" of client $1's successful REGISTERs: SITE is the LB's
# internal address in the Path the registrar echoed, PATH its URI
# (sip:TOKEN@SITE); the scenario logs both.
regs() {
	local f pid start
	for f in "$RUN/cli/$1"/*_logs.log; do
		[ -e "$f" ] || continue
		pid=${f%_logs.log} && pid=${pid##*_}
		start=$(start_of "$1" "$pid")
		[ -n "$start" ] || continue
		awk -v s="$start" '$1 == "reg" { printf "%.0f %s %s\n", s + $2, $5, $7 }' "$f"
	done | sort -n
}

# first_reg USER SITE SINCE: the first REGISTER through SITE after SINCE.
first_reg() { regs "$1" | awk -v site="$2" -v t="$3" '$1 > t && $2 == site { print $1; exit }'; }
first_call() { calls "$1" | awk -v t="$2" '$1 > t { print; exit }'; }
count_calls() { calls "$1" | awk -v t="$2" '$1 > t { n++ } END { print n + 0 }'; }

# recovered SITE SINCE: every client has registered through SITE after SINCE
# and placed a call after that.
recovered() {
	local u r
	for u in "${USERS[@]}"; do
		r=$(first_reg "$u" "$1" "$2")
		[ -n "$r" ] && [ -n "$(first_call "$u" "$r")" ] || return 1
	done
}

# latest_path USER SITE: the Path URI of USER's latest REGISTER through SITE.
latest_path() { regs "$1" | awk -v site="$2" '$2 == site { p = $3 } END { print p }'; }

# reach USER PATH: what a proxy does to reach a registered user, from
# sel-core: an OPTIONS with Route: <PATH;lr;ob> to the LB PATH names. Prints
# the answer (200, 430) or "none".
reach() {
	local user=$1 path=$2 dir=$RUN/reach
	mkdir -p "$dir"
	rm -f "$dir"/*_logs.log
	(cd "$dir" && ip netns exec sel-core sipp -sf "$HERE/sipp/reach_user.xml" -t u1 \
		-i "${PROXY_IPS[0]}" -p 5099 -key user "$user" -key path "<$path:5060;lr;ob>" \
		-m 1 -recv_timeout 2000 -timeout 5s -nostdin -trace_logs "${path##*@}:5060" >/dev/null 2>&1) || true
	local got
	got=$(sed -n 's/^answer //p' "$dir"/*_logs.log 2>/dev/null | head -1)
	echo "${got:-none}"
}

# expect_reach LABEL USER PATH WANT: dies unless reach answers WANT.
expect_reach() {
	local got
	[ -n "$3" ] || die "$1: no Path recorded for $2"
	got=$(reach "$2" "$3")
	[ "$got" = "$4" ] || die "$1: a request toward $2 through her Path at ${3##*@} got $got, not $4"
	log "$1: a request toward $2 through her Path at ${3##*@}: $got"
}

# switch_time VIA SINCE: waits (20 s at most) until the router's kernel route
# for the VIP points at VIA; prints the time (10 ms polling).
switch_time() {
	while ! vip_via_is "$1"; do
		[ $(($(now_ms) - $2)) -lt 20000 ] || return 1
		sleep 0.01
	done
	now_ms
}

# measure LABEL SITE T0: waits until every client is back through SITE and
# reports each one's outage (T0 to its first REGISTER through SITE), and
# sets FIRST and WORST (ms).
measure() {
	local label=$1 site=$2 t0=$3 u r c
	local limit=$((t0 + 25000))
	until recovered "$site" "$t0"; do
		[ "$(now_ms)" -lt $limit ] || die "$label: not every client registered through $site and called within 25 s"
		sleep 0.1
	done
	FIRST= WORST=0
	for u in "${USERS[@]}"; do
		r=$(first_reg "$u" "$site" "$t0")
		c=$(first_call "$u" "$r")
		log "$label: $u registered through $site after $((r - t0)) ms, called after $((c - t0)) ms"
		[ $((r - t0)) -gt $WORST ] && WORST=$((r - t0))
		{ [ -z "$FIRST" ] || [ $((r - t0)) -lt "$FIRST" ]; } && FIRST=$((r - t0))
	done
	log "$label: outage $FIRST ms (first client back) / $WORST ms (last client back)"
}

# bird_ms "2026-11-22 01:34:49.076": BIRD's local-time log stamp in epoch ms.
bird_ms() { date -d "$1" +%s%3N; }

# When the router's BIRD changed the kernel route for the VIP, at or after
# $1 (ms): its `debug { routes }` lines "... kernel1.ipv4 < replaced 203...".
kernel_change_at() {
	local stamp t
	sed -n 's/^\([0-9-]* [0-9:.]*\) .*kernel1.ipv4 < .*203\.0\.113\.10.*/\1/p' "$RUN/bird-rtr.log" |
		while read -r stamp; do
			t=$(bird_ms "$stamp")
			[ "$t" -lt "$1" ] || {
				echo "$t"
				break
			}
		done
}

# Times (ms) BIRD in sel-$1 disabled vip4, one a line.
disabled_times() {
	local stamp
	sed -n 's/^\([0-9-]* [0-9:.]*\) .*Disabling protocol vip4.*/\1/p' "$RUN/bird-$1.log" |
		while read -r stamp; do bird_ms "$stamp"; done
}

# Site A dies silently (power loss behind a switch): nothing it sends gets
# out any more (blackhole routes toward everything beyond its uplink, so no
# FIN, RST or BGP NOTIFICATION escapes), its link stays up, and every
# process in it is killed. Only the router's BGP hold timer can notice.
kill_site_a_silently() {
	local dst p
	for dst in 10.0.11.1/32 10.0.0.0/8 192.0.2.0/24; do
		nsx sel-a ip route replace blackhole $dst
	done
	for p in $(ip netns pids sel-a); do kill -KILL "$p" 2>/dev/null || true; done
}

revive_site_a() {
	local dst
	nsx sel-a ip route del blackhole 10.0.11.1/32
	nsx sel-a ip route replace 10.0.0.0/8 via 10.0.11.1
	nsx sel-a ip route replace 192.0.2.0/24 via 10.0.11.1
	start_site a 1
}

# Site A's link goes dark (the router loses carrier on rtr-a), then every
# process in it is killed.
kill_site_a_link() {
	nsx sel-a ip link set eth0 down
	local p
	for p in $(ip netns pids sel-a); do kill -KILL "$p" 2>/dev/null || true; done
}

CLIENT_PIDS=()
stop_clients() {
	local p
	for p in "${CLIENT_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	CLIENT_PIDS=()
}

run_test() {
	trap 'stop_clients; down_quiet' EXIT
	trap 'exit 130' INT TERM
	local started
	started=$(now_ms)
	up
	local until=$(($(now_ms) + 90000)) i n=${#USERS[@]}
	for i in $(seq 0 $((n - 1))); do
		client_loop "${USERS[$i]}" "${USERS[$(((i + 1) % n))]}" $until &
		CLIENT_PIDS+=($!)
	done
	local warm t0 tsw tw tk flaps
	warm=$(now_ms)
	until recovered 10.0.1.1 "$warm"; do
		[ $(($(now_ms) - warm)) -lt 15000 ] || die "clients did not register and call through site A"
		sleep 0.1
	done
	sleep 2
	for i in "${USERS[@]}"; do
		log "warm-up: $i: $(count_calls "$i" "$warm") calls through site A"
	done

	# A withdrawal before the kill is a false alarm (e.g. /readyz starved
	# on a loaded machine): reported, since it moves the clients early.
	flaps=$(disabled_times a | wc -l)
	[ "$flaps" = 0 ] || log "warning: site A withdrew the VIP $flaps time(s) before the kill (readyz slow?)"
	vip_via_is 10.0.11.2 || die "the router is not on site A before the kill"
	local path_a path_b
	path_a=$(latest_path alice 10.0.1.1)
	expect_reach "warm-up" alice "$path_a" 200

	log "phase 1: kill -9 sipedge-lb in sel-a (BIRD there keeps running)"
	t0=$(now_ms)
	kill -KILL "$(pid_of lb-a)"
	tsw=$(switch_time 10.0.12.2 "$t0") || die "LB kill: the router did not move the VIP to site B within 20 s"
	tw=$(disabled_times a | awk -v t="$t0" '$1 >= t { print; exit }')
	[ -n "$tw" ] || die "LB kill: site A's health check never withdrew the VIP"
	tk=$(kernel_change_at "$tw")
	[ -n "$tk" ] || die "LB kill: no kernel route change in the router's BIRD log"
	log "LB kill: health check withdrew after $((tw - t0)) ms; the router's kernel route changed $((tk - tw)) ms later (BGP convergence); the lab saw site B $((tsw - t0)) ms after the kill"
	measure "LB kill" 10.0.2.1 "$t0"
	expect_reach "LB kill" alice "$path_a" none
	path_b=$(latest_path alice 10.0.2.1)
	expect_reach "LB kill" alice "$path_b" 200
	local detect1=$((tw - t0)) bgp1=$((tk - tw)) out1=$WORST first1=$FIRST

	log "phase 2: restart sipedge-lb in sel-a; the VIP returns to A (failback)"
	t0=$(now_ms)
	start_lb a 1
	tsw=$(switch_time 10.0.11.2 "$t0") || die "failback: the router did not move the VIP back to site A within 20 s"
	log "failback: router back on site A $((tsw - t0)) ms after the restart; the clients' connections to B break"
	measure "failback" 10.0.1.1 "$tsw"
	expect_reach "failback" alice "$(latest_path alice 10.0.1.1)" 200
	# Not asserted: B still holds her old connection (her reset went to A,
	# the anycast route's new owner), so B forwards into a dead flow and
	# nothing answers; the proxy's own timer and her new binding cover it.
	log "failback: toward alice through her stale Path at site B: $(reach alice "$path_b") (B cannot know the flow died)"
	local back=$WORST
	sleep 1

	log "phase 3: site A dies silently (no link loss, nothing gets out, every process killed)"
	t0=$(now_ms)
	kill_site_a_silently
	tsw=$(switch_time 10.0.12.2 "$t0") || die "silent death: the router did not move the VIP to site B within 20 s"
	tk=$(kernel_change_at "$t0")
	[ -n "$tk" ] || die "silent death: no kernel route change in the router's BIRD log"
	log "silent death: the router's kernel route changed $((tk - t0)) ms after the site went silent (BGP hold timer)"
	measure "silent death" 10.0.2.1 "$t0"
	expect_reach "silent death" alice "$(latest_path alice 10.0.2.1)" 200
	local bgp3=$((tk - t0)) out3=$WORST first3=$FIRST

	log "phase 4: site A comes back (BIRD, LB and check restarted); the VIP returns to A"
	t0=$(now_ms)
	revive_site_a
	tsw=$(switch_time 10.0.11.2 "$t0") || die "revival: the router did not move the VIP back to site A within 20 s"
	log "revival: router back on site A $((tsw - t0)) ms after the restart"
	measure "revival" 10.0.1.1 "$tsw"
	sleep 0.5

	log "phase 5: site A's link goes down (every process killed)"
	t0=$(now_ms)
	kill_site_a_link
	tsw=$(switch_time 10.0.12.2 "$t0") || die "link loss: the router did not move the VIP to site B within 20 s"
	tk=$(kernel_change_at "$t0")
	[ -n "$tk" ] || die "link loss: no kernel route change in the router's BIRD log"
	log "link loss: the router's kernel route changed $((tk - t0)) ms after the link went down"
	measure "link loss" 10.0.2.1 "$t0"
	expect_reach "link loss" alice "$(latest_path alice 10.0.2.1)" 200
	local bgp5=$((tk - t0)) out5=$WORST first5=$FIRST
	sleep 0.5
	for i in "${USERS[@]}"; do
		log "$i: $(count_calls "$i" "$warm") calls in all over $(wc -l <"$RUN/cli/$i/starts") TCP connections (SIPp runs)"
	done
	log "test took $((($(now_ms) - started) / 1000)) s"
	trap - EXIT
	stop_clients
	down >/dev/null
	echo "LAB VERDICT: PASS lb_kill: detect_ms=$detect1 bgp_ms=$bgp1 outage_ms=$out1 first_client_ms=$first1; silent_site_death: bgp_ms=$bgp3 outage_ms=$out3 first_client_ms=$first3; link_loss: bgp_ms=$bgp5 outage_ms=$out5 first_client_ms=$first5; failback: outage_ms=$back"
}

case "${1:-}" in
up) up ;;
down) down ;;
test) run_test ;;
*)
	sed -n '2,/^set -euo/p' "$0" | sed '$d'

	exit 2
	;;
esac
