#!/usr/bin/env bash
# deploy/lab/lab.sh — the multi-region anycast lab in Linux network namespaces.
#
#   lab.sh up     build the topology and start everything; leaves it running
#   lab.sh test   up, run the failover test, print the verdict, always tear down
#   lab.sh down   stop every process in the lab namespaces and delete them
#
# Namespaces: sel-rtr (router, BIRD), sel-a and sel-b (LB sites: sipedge-lb on
# the anycast VIP 203.0.113.10 plus a unicast internal address, BIRD announcing
# the VIP over eBGP while /readyz is 200), sel-core (3 sipedge-proxy sharing
# one users file, sipmon pushing the live set to both LBs), sel-cli (SIPp user
# agents that register with digest auth and call each other over TCP to the
# VIP). Static unicast routes, BGP for the VIP only; no route leaves the
# namespaces. See README.md.
#
# Needs root, iproute2, bird2 (bird, birdc), sipp, curl and python3. The sites
# run deploy/bird: bird-lb-site.conf (defines filled in) and the /readyz check
# sipedge-anycast-check. Binaries (sipedge-lb, sipedge-proxy, sipmon):
# $SIPEDGE_LAB_BIN_DIR, else cargo builds target/$SIPEDGE_LAB_PROFILE (debug
# by default, or release). Run files and logs: $SIPEDGE_LAB_DIR (default
# target/lab). The last line of `test` is:
#   LAB VERDICT: PASS ...   or   LAB VERDICT: FAIL <reason>
set -Eeuo pipefail
trap 'echo "LAB VERDICT: FAIL command failed at line $LINENO: $BASH_COMMAND"' ERR

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
RUN=${SIPEDGE_LAB_DIR:-$REPO/target/lab}
NAMESPACES=(sel-rtr sel-a sel-b sel-core sel-cli)
VIP=203.0.113.10
USERS=(alice bob carol)
DOMAIN=example.com
PROXY_IPS=(10.0.9.1 10.0.9.2 10.0.9.3)
SIPMON_IP=10.0.9.10
CLIENT_IP=192.0.2.10
# Each client SIPp run sends from an address of its own: 20 per client loop
# from 192.0.2.100 up (see sipp_loop).
CLIENT_POOL=100 CLIENT_SLOT_SIZE=20 CLIENT_SLOTS=6
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
			log "cargo build ($profile) -p sipedge-lb -p sipedge-proxy -p sipmon"
			(cd "$REPO" && "$cargo" build -q $([ "$profile" = release ] && echo --release) \
				-p sipedge-lb -p sipedge-proxy -p sipmon) || die "cargo build failed"
		else
			log "no cargo: using the binaries already in $BIN"
		fi
	fi
	local b
	for b in sipedge-lb sipedge-proxy sipmon; do
		[ -x "$BIN/$b" ] || die "no $b in $BIN"
	done
	log "binaries from $BIN"
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
	seq $CLIENT_POOL $((CLIENT_POOL + CLIENT_SLOTS * CLIENT_SLOT_SIZE - 1)) |
		sed 's|.*|addr add 192.0.2.&/24 dev eth0|' | ip -n sel-cli -batch -
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

# The lab's subscribers, one file every proxy reads (the realm is the domain;
# passwords are hashed at load). Lab only.
password_of() { echo "$1-lab-secret"; }
write_users() {
	local u
	echo "# Lab users (written by lab.sh); shared by p1, p2 and p3." >"$RUN/users.toml"
	for u in "${USERS[@]}"; do
		printf '\n[[user]]\nuser = "%s"\ndomain = "%s"\npassword = "%s"\n' \
			"$u" $DOMAIN "$(password_of "$u")" >>"$RUN/users.toml"
	done
}

write_proxy_config() { # n (1-3)
	local n=$1 ip=${PROXY_IPS[$(($1 - 1))]}
	cat >"$RUN/proxy$n.toml" <<EOF
# Lab proxy p$n (written by lab.sh).
id = "p$n"
edge = "lab"
advertise = "$ip:5060"
domains = ["$DOMAIN"]

[listen]
udp = "$ip:5060"

[auth]
# The same on every proxy, so a nonce from one verifies on another.
nonce_secret = "lab-nonce-secret-0123456789abcdef"
# SIPp 3.6 reads only the first challenge and knows only MD5.
challenge_order = ["MD5", "SHA-256"]

[users]
file = "$RUN/users.toml"

[cdr]
file = "$RUN/cdr-p$n.jsonl"

[admin]
listen = "$ip:9061"

# The other two proxies: each binding set is copied to the next-ranked
# proxy, and a proxy with no binding asks them before answering 480.
[peers]
token = "lab-peer-token-0123456789"
$(peers_of "$n")
EOF
}

peers_of() { # n: the [[peers.proxy]] tables of every other proxy
	local j
	for j in 1 2 3; do
		[ "$j" = "$1" ] && continue
		printf '\n[[peers.proxy]]\nid = "p%s"\nurl = "http://%s:9061"\n' "$j" "${PROXY_IPS[$((j - 1))]}"
	done
}

proxy_ready() { nsx sel-core curl -sf --max-time 0.5 -o /dev/null "http://$1:9061/readyz"; }

start_core() {
	write_users
	local n
	for n in 1 2 3; do
		write_proxy_config $n
		bg proxy$n sel-core "$BIN/sipedge-proxy" run --config "$RUN/proxy$n.toml"
	done
	write_sipmon_config
	bg sipmon sel-core "$BIN/sipmon" run --config "$RUN/sipmon.toml"
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
	local ip
	for ip in "${PROXY_IPS[@]}"; do
		wait_until 15 "sipedge-proxy at $ip ready" proxy_ready "$ip"
	done
	wait_until 15 "sipmon's live set at LB A" lb_monitored a 1
	wait_until 15 "sipmon's live set at LB B" lb_monitored b 2
	log "sipmon: both LBs route on its live set (p1-p3)"
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

# SIPEDGE_LAB_TRACE=1: every client SIPp also writes its messages and
# errors (*_messages.log, *_errors.log in its folder).
SIPP_TRACE=()
[ "${SIPEDGE_LAB_TRACE:-0}" = 1 ] && SIPP_TRACE=(-trace_msg -trace_err)

# sipp_loop NAME SLOT UNTIL SIPP-ARGS...: one SIPp in sel-cli over one TCP
# connection to the VIP. When the connection breaks SIPp exits and the loop
# starts it again after 100 ms (a new connection, so a new REGISTER), until
# UNTIL (ms). Logs (-trace_logs) go to $RUN/cli/NAME.
#
# Each run sends from the next address of the loop's SLOT (0-5). With one
# address for all, a new connection sometimes got the source port of an
# older one that the other site still holds (an ESTABLISHED flow nobody
# reset, or TIME_WAIT after an LB kill). When the VIP moved there, that
# site answered the new connection's segments with ACKs for the old one,
# not a reset, and the client hung until TCP gave up (minutes). Clients
# behind one NAT can meet this too; the lab avoids it, to stay
# deterministic.
sipp_loop() {
	local name=$1 slot=$2 until=$3 dir=$RUN/cli/$1 left ip run=0
	shift 3
	mkdir -p "$dir"
	cd "$dir"
	while [ "$(now_ms)" -lt "$until" ]; do
		left=$(((until - $(now_ms)) / 1000 + 1))
		ip=192.0.2.$((CLIENT_POOL + slot * CLIENT_SLOT_SIZE + run % CLIENT_SLOT_SIZE))
		run=$((run + 1))
		ip netns exec sel-cli sipp -t t1 -i "$ip" "$@" -recv_timeout 2000 -nd \
			-timeout "${left}s" -max_reconnect 0 -nostdin -trace_logs "${SIPP_TRACE[@]}" \
			$VIP:5060 >/dev/null 2>&1 &
		# SIPp's [clock_tick] counts ms from its own start: keep the wall
		# clock at launch per pid (ip netns exec execs, so $! is SIPp).
		echo "$! $(now_ms)" >>"$dir/starts"
		wait $! || true
		sleep 0.1
	done
}

# ua_loop USER SLOT UNTIL: USER's phone. It registers with digest auth about
# once a second and answers the calls and OPTIONS that reach it over its
# connection (-oocsf: requests with an unknown Call-ID).
ua_loop() {
	sipp_loop "ua-$1" "$2" "$3" -sf "$HERE/sipp/ua_register.xml" -oocsf "$HERE/sipp/ua_answer.xml" \
		-s "$1" -au "$1" -ap "$(password_of "$1")" -auth_uri $DOMAIN -r 5 -l 1 -m 100000
}

# caller_loop USER CALLEE SLOT UNTIL: USER calls CALLEE 5 times a second from a
# second SIPp with its own connection (SIPp has one digest uri per process:
# sip:example.com for the REGISTERs, sip:CALLEE@example.com here). Up to 10
# calls at a time, so calls stuck for their 2 s never hold up new ones.
caller_loop() {
	sipp_loop "call-$1" "$3" "$4" -sf "$HERE/sipp/caller.xml" -s "$1" -key callee "$2" \
		-au "$1" -ap "$(password_of "$1")" -auth_uri "$2@$DOMAIN" -r 5 -l 10 -m 100000
}

# start_of NAME PID: the wall clock (ms) when that SIPp run was launched.
start_of() { awk -v p="$2" '$1 == p { print $2 }' "$RUN/cli/$1/starts"; }

# logged NAME WORD: "TIME REST..." of every "WORD TICK REST..." log line of
# NAME's SIPp runs, TIME in wall-clock ms, sorted.
logged() {
	local f pid start
	for f in "$RUN/cli/$1"/*_logs.log; do
		[ -e "$f" ] || continue
		pid=${f%_logs.log} && pid=${pid##*_}
		start=$(start_of "$1" "$pid")
		[ -n "$start" ] || continue
		awk -v s="$start" -v w="$2" '$1 == w { $1 = ""; $2 = sprintf("%.0f", s + $2); sub(/^ /, ""); print }' "$f"
	done | sort -n
}

# Wall-clock times (ms) of USER's answered calls (BYE answered), sorted.
calls() { logged "call-$1" call | cut -d' ' -f1; }

# "TIME SITE PATH" of USER's successful REGISTERs: SITE is the LB's internal
# address in the Path the registrar echoed, PATH its URI (sip:TOKEN@SITE).
regs() { logged "ua-$1" reg | awk '{ print $1, $4, $6 }'; }

# first_reg USER SITE SINCE: the first REGISTER through SITE after SINCE.
first_reg() { regs "$1" | awk -v site="$2" -v t="$3" '$1 > t && $2 == site { print $1; exit }'; }
first_reg_is() { [ -n "$(first_reg "$@")" ]; }
first_call() { calls "$1" | awk -v t="$2" '$1 > t { print; exit }'; }
count_calls() { calls "$1" | awk -v t="$2" '$1 > t { n++ } END { print n + 0 }'; }

# call_stats FROM TO: "OK FAILED" over every caller's calls started in
# [FROM, TO) (ms). A call failed when its BYE was never answered: an error
# answer, no answer within 2 s, or its connection broke.
call_stats() {
	local u f pid start
	for u in "${USERS[@]}"; do
		for f in "$RUN/cli/call-$u"/*_logs.log; do
			[ -e "$f" ] || continue
			pid=${f%_logs.log} && pid=${pid##*_}
			start=$(start_of "call-$u" "$pid")
			[ -n "$start" ] || continue
			awk -v s="$start" -v a="$1" -v b="$2" '
				$1 == "try" && s + $2 >= a && s + $2 < b { t[$3] = 1 }
				$1 == "call" { ok[$3] = 1 }
				END { for (c in t) { if (c in ok) n++; else m++ } print n + 0, m + 0 }' "$f"
		done
	done | awk '{ o += $1; f += $2 } END { print o + 0, f + 0 }'
}

# recovered SITE SINCE: every user has registered through SITE after SINCE
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

# measure LABEL SITE T0: waits until every user is registered through SITE
# again and has placed a call since, reports each one's outage (T0 to its
# first REGISTER through SITE) and sets FIRST and WORST (ms) from those, and
# CALLS (ms): T0 to the moment every caller had completed a call again.
measure() {
	local label=$1 site=$2 t0=$3 u r c
	local limit=$((t0 + 25000))
	until recovered "$site" "$t0"; do
		[ "$(now_ms)" -lt $limit ] || die "$label: not every user registered through $site and called within 25 s"
		sleep 0.1
	done
	FIRST= WORST=0 CALLS=0
	for u in "${USERS[@]}"; do
		r=$(first_reg "$u" "$site" "$t0")
		c=$(first_call "$u" "$r")
		log "$label: $u registered through $site after $((r - t0)) ms, her next call was answered after $((c - t0)) ms"
		[ $((r - t0)) -gt $WORST ] && WORST=$((r - t0))
		[ $((c - t0)) -gt $CALLS ] && CALLS=$((c - t0))
		{ [ -z "$FIRST" ] || [ $((r - t0)) -lt "$FIRST" ]; } && FIRST=$((r - t0))
	done
	log "$label: outage $FIRST ms (first user back) / $WORST ms (last user back); every caller completed a call again after $CALLS ms"
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

# metric_sum TEXT NAME: the sum of every NAME series in a /metrics TEXT.
metric_sum() { awk -v n="$2" '$1 == n || index($1, n "{") == 1 { s += $NF } END { printf "%d", s }' <<<"$1"; }

# What each proxy did: its call records and the binding replicas it sent to
# and received from its peers.
proxy_summary() {
	local n ip m
	for n in 1 2 3; do
		ip=${PROXY_IPS[$((n - 1))]}
		m=$(nsx sel-core curl -s --max-time 1 "http://$ip:9061/metrics" || true)
		log "p$n: $(wc -l <"$RUN/cdr-p$n.jsonl") call records; binding replicas sent $(metric_sum "$m" sipedge_proxy_replicas_sent_total), received $(metric_sum "$m" sipedge_proxy_replicas_received_total)"
	done
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
	local until=$(($(now_ms) + 120000)) i n=${#USERS[@]}
	# Each user has a phone (registers, answers) and calls the next user
	# once every phone is registered.
	for i in $(seq 0 $((n - 1))); do
		ua_loop "${USERS[$i]}" "$i" $until &
		CLIENT_PIDS+=($!)
	done
	local warm t0 tsw tw tk flaps
	local -a phase_at=()
	warm=$(now_ms)
	for i in "${USERS[@]}"; do
		wait_until 15 "$i's phone registered through site A" first_reg_is "$i" 10.0.1.1 "$warm"
	done
	warm=$(now_ms)
	for i in $(seq 0 $((n - 1))); do
		caller_loop "${USERS[$i]}" "${USERS[$(((i + 1) % n))]}" $((n + i)) $until &
		CLIENT_PIDS+=($!)
	done
	until recovered 10.0.1.1 "$warm"; do
		[ $(($(now_ms) - warm)) -lt 20000 ] || die "users did not register and call through site A"
		sleep 0.1
	done
	sleep 2
	for i in "${USERS[@]}"; do
		log "warm-up: $i: $(count_calls "$i" "$warm") calls answered through site A"
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
	phase_at+=("$t0")
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
	local detect1=$((tw - t0)) bgp1=$((tk - tw)) out1=$WORST first1=$FIRST calls1=$CALLS

	log "phase 2: restart sipedge-lb in sel-a; the VIP returns to A (failback)"
	t0=$(now_ms)
	phase_at+=("$t0")
	start_lb a 1
	tsw=$(switch_time 10.0.11.2 "$t0") || die "failback: the router did not move the VIP back to site A within 20 s"
	log "failback: router back on site A $((tsw - t0)) ms after the restart; the clients' connections to B break"
	measure "failback" 10.0.1.1 "$tsw"
	expect_reach "failback" alice "$(latest_path alice 10.0.1.1)" 200
	# Not asserted: B still holds her old connection (her reset went to A,
	# the anycast route's new owner), so B forwards into a dead flow and
	# nothing answers; the proxy's own timer and her new binding cover it.
	log "failback: toward alice through her stale Path at site B: $(reach alice "$path_b") (B cannot know the flow died)"
	local back=$WORST calls2=$CALLS
	sleep 1

	log "phase 3: site A dies silently (no link loss, nothing gets out, every process killed)"
	t0=$(now_ms)
	phase_at+=("$t0")
	kill_site_a_silently
	tsw=$(switch_time 10.0.12.2 "$t0") || die "silent death: the router did not move the VIP to site B within 20 s"
	tk=$(kernel_change_at "$t0")
	[ -n "$tk" ] || die "silent death: no kernel route change in the router's BIRD log"
	log "silent death: the router's kernel route changed $((tk - t0)) ms after the site went silent (BGP hold timer)"
	measure "silent death" 10.0.2.1 "$t0"
	expect_reach "silent death" alice "$(latest_path alice 10.0.2.1)" 200
	local bgp3=$((tk - t0)) out3=$WORST first3=$FIRST calls3=$CALLS

	log "phase 4: site A comes back (BIRD, LB and check restarted); the VIP returns to A"
	t0=$(now_ms)
	phase_at+=("$t0")
	revive_site_a
	tsw=$(switch_time 10.0.11.2 "$t0") || die "revival: the router did not move the VIP back to site A within 20 s"
	log "revival: router back on site A $((tsw - t0)) ms after the restart"
	measure "revival" 10.0.1.1 "$tsw"
	sleep 0.5

	log "phase 5: site A's link goes down (every process killed)"
	t0=$(now_ms)
	phase_at+=("$t0")
	kill_site_a_link
	tsw=$(switch_time 10.0.12.2 "$t0") || die "link loss: the router did not move the VIP to site B within 20 s"
	tk=$(kernel_change_at "$t0")
	[ -n "$tk" ] || die "link loss: no kernel route change in the router's BIRD log"
	log "link loss: the router's kernel route changed $((tk - t0)) ms after the link went down"
	measure "link loss" 10.0.2.1 "$t0"
	expect_reach "link loss" alice "$(latest_path alice 10.0.2.1)" 200
	local bgp5=$((tk - t0)) out5=$WORST first5=$FIRST calls5=$CALLS
	# Calls started in the last 2.5 s may still be running (2 s timeout).
	sleep 3
	# A phase's calls start 0.5 s before its fault: the calls in progress
	# when it strikes count as its own (a debug-build call takes ~10 ms).
	local end=$(($(now_ms) - 2500)) names=(warm-up "LB kill" failback "silent death" revival "link loss")
	local -a bounds=("$warm") st
	for i in "${phase_at[@]}"; do bounds+=($((i - 500))); done
	bounds+=("$end")
	for i in "${!names[@]}"; do
		read -r -a st <<<"$(call_stats "${bounds[$i]}" "${bounds[$((i + 1))]}")"
		log "calls started during ${names[$i]}: ${st[0]} ok, ${st[1]} failed"
	done
	local before after
	before=$(call_stats "${bounds[0]}" "${bounds[1]}")
	after=$(call_stats "${bounds[1]}" "$end")
	for i in "${USERS[@]}"; do
		log "$i: $(count_calls "$i" "$warm") calls answered in all over $(wc -l <"$RUN/cli/call-$i/starts") caller connections; her phone connected $(wc -l <"$RUN/cli/ua-$i/starts") times"
	done
	proxy_summary
	log "test took $((($(now_ms) - started) / 1000)) s"
	trap - EXIT
	stop_clients
	down >/dev/null
	echo "LAB VERDICT: PASS lb_kill: detect_ms=$detect1 bgp_ms=$bgp1 outage_ms=$out1 first_client_ms=$first1 calls_back_ms=$calls1; silent_site_death: bgp_ms=$bgp3 outage_ms=$out3 first_client_ms=$first3 calls_back_ms=$calls3; link_loss: bgp_ms=$bgp5 outage_ms=$out5 first_client_ms=$first5 calls_back_ms=$calls5; failback: outage_ms=$back calls_back_ms=$calls2; calls: ok_before_kill=${before% *} failed_before_kill=${before#* } ok_after_kill=${after% *} failed_after_kill=${after#* }"
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
