"""DNS servers for the DNS-check tests, on loopback high ports.

    Dnsmasq(zone)   the real server from Debian (dnsmasq) serving a fixed zone (PTR, A, TXT) with
                    --log-queries; .count(name) counts the queries it logged for a name.
    OddDns(rules)   an in-process UDP server built on python3-dnslib for what dnsmasq will not
                    do: names that never answer, SERVFAIL, slow answers, a PTR with CR/LF in it.
                    .count(name, qtype) counts the queries it received.

ZONE describes the test clients (127.0.53.x: no other test uses them), the two block lists, the allow list and the SPF
domains; both servers can serve it, so a test may point moat at either.
"""

import os
import socket
import subprocess
import threading
import time

from dnslib import AAAA, MX, PTR, QTYPE, RCODE, RR, TXT, A, DNSLabel, DNSRecord

import rig

TTL = 60

# name -> [(type, value)]; a value of "timeout"/"servfail" makes OddDns misbehave for that name.
ZONE = {
    # reverse DNS of the test clients
    "2.53.0.127.in-addr.arpa": [("PTR", "good.moat.test")],
    "4.53.0.127.in-addr.arpa": [("PTR", "forged.moat.test")],
    "5.53.0.127.in-addr.arpa": [("PTR", "timeout")],
    "7.53.0.127.in-addr.arpa": [("PTR", "seven.moat.test")],
    "9.53.0.127.in-addr.arpa": [("PTR", "nine.moat.test")],
    "10.53.0.127.in-addr.arpa": [("PTR", "servfail")],
    "11.53.0.127.in-addr.arpa": [("PTR", b"evil.example\r\nXCLIENT NAME=spoofed")],
    "12.53.0.127.in-addr.arpa": [("PTR", "slow.moat.test"), ("delay", 1.5)],
    "good.moat.test": [("A", "127.0.53.2")],
    "forged.moat.test": [("A", "127.0.53.99")],
    "seven.moat.test": [("A", "127.0.53.7")],
    "nine.moat.test": [("A", "127.0.53.9")],
    "slow.moat.test": [("A", "127.0.53.12")],
    # block lists bl1 (filter 127.0.0.[2..11]) and bl2, allow list wl
    "6.53.0.127.bl1.test": [("A", "127.0.0.2")],
    "6.53.0.127.bl2.test": [("A", "127.0.0.3")],
    "7.53.0.127.bl1.test": [("A", "127.0.0.2")],
    "8.53.0.127.bl1.test": [("A", "127.0.0.2")],
    "8.53.0.127.bl2.test": [("A", "127.0.0.2")],
    "8.53.0.127.wl.test": [("A", "127.0.10.1")],
    "9.53.0.127.bl1.test": [("A", "127.255.255.254")],  # "open resolver": an error, not a listing
    "9.53.0.127.bl2.test": [("A", "127.0.0.2")],
    # SPF
    "pass.spf.test": [("TXT", "v=spf1 ip4:127.0.53.0/29 -all")],
    "fail.spf.test": [("TXT", "v=spf1 ip4:192.0.2.0/24 -all")],
    "soft.spf.test": [("TXT", "v=spf1 ip4:192.0.2.0/24 ~all")],
    "incl.spf.test": [("TXT", "v=spf1 include:pass.spf.test -all")],
    "mx.spf.test": [("TXT", "v=spf1 mx -all"), ("MX", "good.moat.test")],
    "loop.spf.test": [("TXT", "v=spf1 include:loop.spf.test -all")],
    "many.spf.test": [("TXT", "v=spf1 " + " ".join("a:a%d.spf.test" % i for i in range(1, 12))
                       + " -all")],
    "temp.spf.test": [("TXT", "timeout")],
}
for i in range(1, 12):
    ZONE["a%d.spf.test" % i] = [("A", "192.0.2.%d" % i)]


class OddDns:
    """A UDP DNS server in this process, answering from rules like ZONE."""

    def __init__(self, rules=None, host="127.0.0.1"):
        self.rules = {k.lower(): v for k, v in (rules or ZONE).items()}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.port = self.sock.getsockname()[1]
        self.counts = {}
        self.lock = threading.Lock()
        self.stopped = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def count(self, name, qtype="PTR"):
        with self.lock:
            return self.counts.get((name.lower().rstrip("."), qtype), 0)

    def _serve(self):
        self.sock.settimeout(0.2)
        while not self.stopped:
            try:
                data, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._answer, args=(data, peer), daemon=True).start()

    def _answer(self, data, peer):
        try:
            q = DNSRecord.parse(data)
        except Exception:  # noqa: BLE001 - junk is ignored, like a real server would
            return
        name = str(q.q.qname).lower().rstrip(".")
        qtype = QTYPE[q.q.qtype]
        with self.lock:
            self.counts[(name, qtype)] = self.counts.get((name, qtype), 0) + 1
        reply = q.reply()
        rules = self.rules.get(name)
        if rules is None:
            reply.header.rcode = RCODE.NXDOMAIN
        for kind, value in rules or ():
            if kind == "delay":
                time.sleep(value)
            elif kind != qtype:
                continue
            elif value == "timeout":
                return
            elif value == "servfail":
                reply.header.rcode = RCODE.SERVFAIL
            else:
                reply.add_answer(RR(q.q.qname, getattr(QTYPE, kind), ttl=TTL, rdata=_rdata(kind, value)))
        try:
            self.sock.sendto(reply.pack(), peer)
        except OSError:
            pass

    def stop(self):
        self.stopped = True
        self.sock.close()


def _rdata(kind, value):
    if kind == "A":
        return A(value)
    if kind == "AAAA":
        return AAAA(value)
    if kind == "TXT":
        return TXT(value)
    if kind == "MX":
        return MX(value)
    if isinstance(value, bytes):  # raw labels, e.g. with CR/LF inside
        return PTR(DNSLabel(value.split(b".")))
    return PTR(value)


class Dnsmasq:
    """dnsmasq on a free loopback port, authoritative-ish for ZONE's ordinary records. Names
    whose rules misbehave are forwarded to an OddDns (timeouts, SERVFAIL, slow answers)."""

    def __init__(self, workdir, odd):
        self.port = rig.free_port()
        self.log_path = os.path.join(workdir, "dnsmasq.log")
        args = ["timeout", "600", "/usr/sbin/dnsmasq", "--no-daemon", "--conf-file=/dev/null",
                "--pid-file=", "--port=%d" % self.port, "--listen-address=127.0.0.1",
                "--bind-interfaces", "--no-resolv", "--no-hosts", "--log-queries",
                "--log-facility=" + self.log_path, "--local-ttl=%d" % TTL, "--user=root",
                "--local=/test/", "--local=/53.0.127.in-addr.arpa/"]
        for name, rules in ZONE.items():
            kinds = {k for k, _ in rules}
            odd_value = any(v in ("timeout", "servfail") or isinstance(v, bytes)
                            for _, v in rules) or "delay" in kinds
            if odd_value:
                args.append("--server=/%s/127.0.0.1#%d" % (name, odd.port))
                continue
            for kind, value in rules:
                if kind == "A":
                    args.append("--address=/%s/%s" % (name, value))
                elif kind == "PTR":
                    args.append("--ptr-record=%s,%s" % (name, value))
                elif kind == "TXT":
                    args.append("--txt-record=%s,%s" % (name, value))
                elif kind == "MX":
                    args.append("--mx-host=%s,%s,10" % (name, value))
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        rig.wait_until(lambda: self._answers(), 5.0, 0.05, "dnsmasq answering")

    def _answers(self):
        if self.proc.poll() is not None:
            raise RuntimeError("dnsmasq exited: %s" % self.proc.stderr.read().decode())
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(0.2)
        try:
            s.sendto(DNSRecord.question("good.moat.test").pack(), ("127.0.0.1", self.port))
            return bool(s.recv(4096))
        except OSError:
            return False
        finally:
            s.close()

    def count(self, name):
        """Queries dnsmasq logged for name (any type)."""
        try:
            with open(self.log_path) as f:
                return sum(1 for line in f if "query[" in line and " %s from " % name in line)
        except FileNotFoundError:
            return 0

    def stop(self):
        rig.stop_pid(self.proc.pid)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
