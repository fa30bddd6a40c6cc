#!/usr/bin/env python3
"""lb_residence.py -- time each OPTIONS transaction spends inside the LB, from a
loopback pcap of the LB's own ports (see lb_vs_kamailio.sh, phase `latency`).

The latency the UAC sees through an LB also holds the UAS's scheduling (three
SIPp UAS on one core, each less busy than the single UAS of the direct path),
and on this 2-core VM that noise reaches milliseconds at p99. What the LB itself
adds is the time between a packet reaching its socket and the packet it sends
in reply to it, on both legs:

    residence = (LB -> UAS request) - (UAC -> LB request)
              + (LB -> UAC response) - (UAS -> LB response)

Timestamps are taken by the kernel when the sender's sendto() hands the packet to
loopback, so a leg holds the LB's wakeup, its processing and its sendto, and
nothing of the peers. Transactions are matched on (Call-ID, CSeq); the first copy
of each packet counts (retransmissions are ignored).

usage: lb_residence.py [--skip SECONDS] PCAP LB_PORT UAC_PORT UAS_PORT... > residence.json
  --skip: leave out transactions that start in the first SECONDS of the capture
  (a warm-up: an LB that keeps transactions grows its table until the first ones
  expire, and fresh memory is slow on this VM; the steady state comes after).
"""
import json
import struct
import sys


def packets(path):
    """(time in µs, src port, dst port, payload) for every IPv4/UDP packet."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        return
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    nano = magic in (0xA1B23C4D, 0x4D3CB2A1)
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    link_len = {1: 14, 113: 16, 276: 20}.get(linktype)
    if link_len is None:
        sys.exit(f"unsupported link type {linktype}")
    pos = 24
    while pos + 16 <= len(data):
        sec, frac, incl, _ = struct.unpack(endian + "IIII", data[pos:pos + 16])
        pkt = data[pos + 16:pos + 16 + incl]
        pos += 16 + incl
        ip = pkt[link_len:]
        if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        ihl = (ip[0] & 0x0F) * 4
        sport, dport = struct.unpack(">HH", ip[ihl:ihl + 4])
        t = sec * 1e6 + (frac / 1000.0 if nano else frac)
        yield t, sport, dport, ip[ihl + 8:]


def key_of(payload):
    """(is_response, Call-ID, CSeq) of a SIP message, or None."""
    head = payload.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    if not head:
        return None
    is_resp = head[0].startswith(b"SIP/2.0 ")
    call_id = cseq = None
    for line in head[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name in (b"call-id", b"i"):
            call_id = value.strip()
        elif name == b"cseq":
            cseq = b" ".join(value.split())
    if call_id is None or cseq is None:
        return None
    return is_resp, call_id, cseq


def pct(sorted_v, p):
    if not sorted_v:
        return None
    i = min(len(sorted_v) - 1, int(round(p / 100.0 * (len(sorted_v) - 1))))
    return round(sorted_v[i], 1)


def main():
    args = sys.argv[1:]
    skip = 0.0
    if args[:1] == ["--skip"]:
        skip, args = float(args[1]) * 1e6, args[2:]
    if len(args) < 4:
        sys.exit(__doc__)
    path, lb, uac = args[0], int(args[1]), int(args[2])
    uas = {int(p) for p in args[3:]}
    first = None
    # leg -> {(call-id, cseq): first time}
    legs = {"req_in": {}, "req_out": {}, "resp_in": {}, "resp_out": {}}
    for t, sport, dport, payload in packets(path):
        k = key_of(payload)
        if k is None:
            continue
        is_resp, call_id, cseq = k
        first = t if first is None else first
        if not cseq.endswith(b"OPTIONS"):
            continue
        tx = (call_id, cseq)
        if not is_resp and sport == uac and dport == lb:
            leg = "req_in"
        elif not is_resp and dport in uas:
            leg = "req_out"
        elif is_resp and sport in uas:
            leg = "resp_in"
        elif is_resp and dport == uac:
            leg = "resp_out"
        else:
            continue
        legs[leg].setdefault(tx, t)
    req, resp, total = [], [], []
    for tx, t_in in legs["req_in"].items():
        if first is not None and t_in - first < skip:
            continue
        t_out = legs["req_out"].get(tx)
        r_in, r_out = legs["resp_in"].get(tx), legs["resp_out"].get(tx)
        if t_out is None or r_in is None or r_out is None:
            continue
        req.append(t_out - t_in)
        resp.append(r_out - r_in)
        total.append((t_out - t_in) + (r_out - r_in))
    out = {"transactions": len(total), "requests_seen": len(legs["req_in"]), "skipped_s": skip / 1e6}
    for name, v in (("request_leg", req), ("response_leg", resp), ("residence", total)):
        v.sort()
        out[name] = {f"p{p}_us": pct(v, p) for p in (50, 90, 99, 99.9)}
        out[name]["max_us"] = round(v[-1], 1) if v else None
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
