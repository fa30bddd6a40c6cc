#!/usr/bin/env python3
"""Tables for lb_vs_kamailio.sh: medians over the runs in OUT/kit/results.

usage: lb_vs_kamailio_report.py OUT_DIR   (prints Markdown)

cost_<lb>_<scen>_r<rate>_<k>   -> CPU µs per op = LB CPU% / 100 * 1e6 / achieved rate
lat_<path>_options_r<rate>_<k> -> OPTIONS p50/p99 at the UAC; added = via LB - direct
residence/lat_<lb>_*.json      -> time inside the LB per OPTIONS transaction (lb_residence.py)
ramp_summary.tsv               -> the reference ramp.sh's table (max sustained rate)
"""
import glob, gzip, json, os, re, statistics, sys

# A provisional (180) arriving where SIPp expected something else: reordering.
REORDER = re.compile(r"while expecting '[^']*' \(index \d+\), received 'SIP/2\.0 1\d\d")

NAMES = {"sipedge": "sipedge-lb", "stateless": "Kamailio stateless", "stateful": "Kamailio stateful",
         "direct": "direct (no LB)"}
ORDER = ["direct", "sipedge", "stateless", "stateful"]


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, nd=1):
    if x is None:
        return "-"
    return f"{x:,.{nd}f}" if isinstance(x, float) else f"{x:,}"


def reordered(run_dir):
    """Calls SIPp failed because a provisional came out of order."""
    for name in ("uac_errors.log", "uac_errors.log.gz"):
        f = os.path.join(run_dir, name)
        if os.path.exists(f):
            opener = gzip.open if name.endswith(".gz") else open
            with opener(f, "rt", errors="replace") as fh:
                return sum(1 for line in fh if REORDER.search(line))
    return 0


def load(out):
    runs = {}
    for f in glob.glob(os.path.join(out, "kit", "results", "*", "summary.json")):
        tag = os.path.basename(os.path.dirname(f))
        runs[tag] = json.load(open(f))
        runs[tag]["reordered"] = reordered(os.path.dirname(f))
    return runs


def cost_table(runs):
    groups = {}
    for tag, s in runs.items():
        m = re.match(r"cost_(\w+?)_(invite|options)_r(\d+)_\d+$", tag)
        if m:
            groups.setdefault((m.group(2), int(m.group(3)), m.group(1)), []).append(s)
    lines = ["| flow | offered /s | LB | runs | achieved /s | LB CPU % of a core | **CPU µs per op** | fail % | unexpected msg (of which 1xx out of order) | UDP rcvbuf drops | all SIPp CPU % |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for key in sorted(groups, key=lambda k: (k[0], k[1], ORDER.index(k[2]) if k[2] in ORDER else 9)):
        scen, rate, lb = key
        S = groups[key]
        us = med([s["kamailio_cpu_pct"] / 100.0 * 1e6 / s["achieved_cps"]
                  for s in S if s.get("kamailio_cpu_pct") is not None and s.get("achieved_cps")])
        lines.append("| " + " | ".join([
            "INVITE/ACK/BYE" if scen == "invite" else "OPTIONS", fmt(rate), NAMES.get(lb, lb), str(len(S)),
            fmt(med([s.get("achieved_cps") for s in S])), fmt(med([s.get("kamailio_cpu_pct") for s in S])),
            f"**{fmt(us)}**", fmt(med([s.get("fail_pct") for s in S]), 3),
            f'{fmt(sum(s.get("uac_failed_unexpected") or 0 for s in S))} ({fmt(sum(s.get("reordered") or 0 for s in S))})',
            fmt(med([s.get("udp_rcvbuf_errors") for s in S])),
            fmt(med([s.get("generator_cpu_pct") for s in S]))]) + " |")
    return "\n".join(lines)


def latency_table(runs):
    groups = {}
    for tag, s in runs.items():
        m = re.match(r"lat_(\w+?)_options_r(\d+)_\d+$", tag)
        if m and "OPTIONS" in s.get("latency", {}):
            groups.setdefault((int(m.group(2)), m.group(1)), []).append(s)
    lines = ["| rate /s | path | runs | p50 µs | p90 µs | p99 µs | p99.9 µs | added p50 µs | added p99 µs | fail % |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for rate in sorted({k[0] for k in groups}):
        base = groups.get((rate, "direct"))
        bp = {p: med([s["latency"]["OPTIONS"][p] for s in base]) for p in ("p50_us", "p99_us")} if base else {}
        for path in sorted({k[1] for k in groups if k[0] == rate}, key=lambda p: ORDER.index(p) if p in ORDER else 9):
            S = groups[(rate, path)]
            p = {k: med([s["latency"]["OPTIONS"][k] for s in S]) for k in ("p50_us", "p90_us", "p99_us", "p99.9_us")}
            add = lambda k: None if path == "direct" or not bp else p[k] - bp[k]
            lines.append("| " + " | ".join([fmt(rate), NAMES.get(path, path), str(len(S)), fmt(p["p50_us"]), fmt(p["p90_us"]),
                                             fmt(p["p99_us"]), fmt(p["p99.9_us"]), fmt(add("p50_us")), fmt(add("p99_us")),
                                             fmt(med([s.get("fail_pct") for s in S]), 3)]) + " |")
    return "\n".join(lines)


def residence_table(out):
    groups = {}
    for f in glob.glob(os.path.join(out, "residence", "lat_*.json")):
        m = re.match(r"lat_(\w+?)_options_r(\d+)_\d+\.json$", os.path.basename(f))
        if m:
            groups.setdefault((int(m.group(2)), m.group(1)), []).append(json.load(open(f)))
    if not groups:
        return "(no residence captures in this run)"
    lines = ["| rate /s | LB | runs | transactions | request leg p50 / p99 µs | response leg p50 / p99 µs | **residence p50 / p99 / p99.9 µs** |",
             "|---|---|---|---|---|---|---|"]
    for key in sorted(groups, key=lambda k: (k[0], ORDER.index(k[1]) if k[1] in ORDER else 9)):
        S = groups[key]
        leg = lambda name, p: fmt(med([s[name][p] for s in S]))
        lines.append("| " + " | ".join([fmt(key[0]), NAMES.get(key[1], key[1]), str(len(S)),
                                         fmt(med([s["transactions"] for s in S])),
                                         leg("request_leg", "p50_us") + " / " + leg("request_leg", "p99_us"),
                                         leg("response_leg", "p50_us") + " / " + leg("response_leg", "p99_us"),
                                         "**" + " / ".join(leg("residence", p) for p in ("p50_us", "p99_us", "p99.9_us")) + "**"]) + " |")
    return "\n".join(lines)


# The columns of the reference ramp.sh's ramp_summary.tsv.
RAMP_HEAD = ["mode", "scen", "children", "max_pass_rate", "median_achieved", "median_fail_pct", "median_kam_cpu",
             "median_gen_cpu", "median_uac_cpu", "first_fail_rate", "first_fail_reason", "bottleneck_note"]


def ramp_table(out):
    f = os.path.join(out, "kit", "results", "ramp_summary.tsv")
    if not os.path.exists(f):
        return "(no ramp in this run)"
    rows = [l.rstrip("\n").split("\t") for l in open(f) if l.strip()]
    if rows and rows[0][0] != "mode":
        rows.insert(0, RAMP_HEAD)  # ramp.sh could not write its header line
    head = rows[0]
    lines = ["| LB | flow | max sustained /s | achieved | fail % | LB CPU % | µs per op at max | SIPp CPU % (core 1) | first failing step | why | note |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows[1:]:
        d = dict(zip(head, r))
        try:
            us = float(d["median_kam_cpu"]) / 100.0 * 1e6 / float(d["median_achieved"])
        except (ValueError, ZeroDivisionError, KeyError):
            us = None
        lines.append("| " + " | ".join([NAMES.get(d["mode"], d["mode"]), d["scen"], d["max_pass_rate"], d["median_achieved"],
                                         d["median_fail_pct"], d["median_kam_cpu"], fmt(us), d["median_gen_cpu"],
                                         d["first_fail_rate"], d["first_fail_reason"], d["bottleneck_note"]]) + " |")
    return "\n".join(lines)


def main():
    out = sys.argv[1]
    runs = load(out)
    print("## machine\n\n```text")
    print(open(os.path.join(out, "machine.txt")).read().rstrip())
    print("```\n\n## CPU per operation at a fixed rate (median of the runs)\n")
    print(cost_table(runs))
    print("\n## OPTIONS latency at the UAC socket (pcap, median of the per-run percentiles)\n")
    print(latency_table(runs))
    print("\n## Time inside the LB per OPTIONS transaction (pcap of the LB's ports, median of the per-run percentiles)\n")
    print(residence_table(out))
    print("\n## Highest sustained rate (ramp: fail <= 0.1 %, achieved >= 97 %; median of 3 at the best step)\n")
    print(ramp_table(out))


if __name__ == "__main__":
    main()
