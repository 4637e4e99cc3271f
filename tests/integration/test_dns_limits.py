"""The resolver's memory under huge answers: an in-process DNS server (python3-dnslib, UDP with
truncation and TCP) answers TXT queries for many distinct names with ~60 KB each. moat's cache is
budgeted in bytes ([dns] cache_bytes) and keeps at most 16 KB of one answer, so its RSS stays
bounded while sessions are still served; an SPF evaluation that meets such an answer (or fetches
more than 64 KB in all) ends in permerror, said in the Received-SPF header of what reached the
maildir."""

import os
import socket
import socketserver
import struct
import threading
import uuid

import pytest

import rig
from smtp_helpers import BOB, Raw, message

from dnslib import QTYPE, RCODE, RR, TXT, A, DNSRecord

CHUNK = "x" * 250
BIG_RECORDS = 15  # each ~4000 bytes in 16 strings: ~60 KB an answer


def big_txt(name):
    return [TXT([("%s-%d-%s" % (name, i, CHUNK))[:250] for _ in range(16)])
            for i in range(BIG_RECORDS)]


def answer(data):
    q = DNSRecord.parse(data)
    name = str(q.q.qname).lower().rstrip(".")
    reply = q.reply()
    qtype = QTYPE[q.q.qtype]
    if name.endswith(".big.test") and qtype == "TXT":
        records = big_txt(name)
        if name.startswith("spf."):
            records.insert(0, TXT("v=spf1 ip4:127.0.53.0/24 -all"))
        for rd in records:
            reply.add_answer(RR(q.q.qname, QTYPE.TXT, ttl=3600, rdata=rd))
    elif name.startswith("c") and name.endswith(".mid.test") and qtype == "TXT":
        # cN.mid.test: 12 KB of TXT (under the one-answer cap) and an include of the next level
        level = int(name[1:name.index(".")])
        rec = "v=spf1 include:c%d.mid.test -all" % (level + 1) if level < 8 else \
            "v=spf1 ip4:127.0.53.0/24 -all"
        reply.add_answer(RR(q.q.qname, QTYPE.TXT, ttl=3600, rdata=TXT(rec)))
        for rd in big_txt(name)[:3]:
            reply.add_answer(RR(q.q.qname, QTYPE.TXT, ttl=3600, rdata=rd))
    elif name == "inc.big.test" and qtype == "TXT":
        reply.add_answer(RR(q.q.qname, QTYPE.TXT, ttl=3600,
                            rdata=TXT("v=spf1 include:spf.big.test -all")))
    elif name.endswith(".test") and qtype == "A":
        reply.add_answer(RR(q.q.qname, QTYPE.A, ttl=3600, rdata=A("127.0.53.200")))
    else:
        reply.header.rcode = RCODE.NXDOMAIN
    return reply


class BigDns:
    """UDP (answers over 512 bytes are sent truncated, TC set) and TCP on one loopback port."""

    def __init__(self):
        outer = self
        self.queries = 0
        self.lock = threading.Lock()

        class Udp(socketserver.BaseRequestHandler):
            def handle(self):
                data, sock = self.request
                with outer.lock:
                    outer.queries += 1
                try:
                    r = answer(data)
                except Exception:  # noqa: BLE001 - junk is ignored
                    return
                packed = r.pack()
                if len(packed) > 512:  # the question stays (resolvers match on it), TC set
                    short = DNSRecord(r.header, questions=r.questions)
                    short.header.tc = 1
                    packed = short.pack()
                sock.sendto(packed, self.client_address)

        class Tcp(socketserver.BaseRequestHandler):
            def handle(self):
                self.request.settimeout(10)
                while True:
                    head = self._read(2)
                    if head is None:
                        return
                    data = self._read(struct.unpack("!H", head)[0])
                    if data is None:
                        return
                    packed = answer(data).pack()
                    self.request.sendall(struct.pack("!H", len(packed)) + packed)

            def _read(self, n):
                buf = b""
                while len(buf) < n:
                    try:
                        chunk = self.request.recv(n - len(buf))
                    except OSError:
                        return None
                    if not chunk:
                        return None
                    buf += chunk
                return buf

        class UdpServer(socketserver.ThreadingMixIn, socketserver.UDPServer):
            daemon_threads = True

        class TcpServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
            daemon_threads = True
            allow_reuse_address = True

        for _ in range(20):  # the same port for both: retry on a collision
            self.udp = UdpServer(("127.0.0.1", 0), Udp)
            self.port = self.udp.server_address[1]
            try:
                self.tcp = TcpServer(("127.0.0.1", self.port), Tcp)
                break
            except OSError:
                self.udp.server_close()
        else:
            raise RuntimeError("no free UDP+TCP port pair")
        for srv in (self.udp, self.tcp):
            threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2},
                             daemon=True).start()

    def stop(self):
        for srv in (self.udp, self.tcp):
            srv.shutdown()
            srv.server_close()


@pytest.fixture
def big_dns():
    d = BigDns()
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture
def start(moat, backends, certs, big_dns, monkeypatch):
    # ASan keeps freed memory in a quarantine (256 MB by default): RSS would measure that
    asan = os.environ.get("ASAN_OPTIONS", "")
    monkeypatch.setenv("ASAN_OPTIONS", (asan + ":" if asan else "") + "quarantine_size_mb=1")

    def go(spf="warn"):
        port = rig.free_port()
        conf = rig.moat_conf(
            certs, workers=1,
            backends={"pf": {"address": "127.0.0.1:%d" % backends.ports["smtp_xclient"],
                             "identity": "xclient"}},
            listeners={"mx": {"protocol": "smtp", "listen": "127.0.0.1:%d" % port,
                              "tls": "starttls", "backend": "pf", "local_domains": "example.test",
                              "max_errors": "1000", "max_preauth_commands": "100000",
                              "preauth_idle": "30s", "preauth_total": "10m"}},
            extra="[dns]\nservers = 127.0.0.1:%d\ntimeout = 3s\ntries = 2\nspf = %s\n" % (
                big_dns.port, spf))
        m = moat(conf, wait_ports=[port])
        m.port = port
        return m
    return go


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def mails(m, src, domains):
    """One session, one MAIL FROM per domain (RSET between): each makes moat fetch its TXT."""
    c = Raw.plain(m.port, src)
    assert c.code() == 220
    assert c.cmd("EHLO client.test")[-1].startswith(b"250")
    for d in domains:
        r = c.cmd("MAIL FROM:<user@%s>" % d)[-1]
        assert r.startswith(b"250"), r
        assert c.cmd("RSET")[-1].startswith(b"250")
    c.cmd("QUIT")
    c.close()


def test_huge_txt_answers_keep_rss_bounded(start, big_dns, backends):
    m = start()
    mails(m, "127.0.53.40", ["warm%d.big.test" % i for i in range(40)])
    base = rss_kb(m.pid)
    names = ["n%d-%s.big.test" % (i, uuid.uuid4().hex[:6]) for i in range(600)]
    threads, errors = [], []

    def worker(part, src):
        try:
            for i in range(0, len(part), 40):  # Postfix counts RSET as junk: 100 a session
                mails(m, src, part[i:i + 40])
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))
    for k in range(4):
        t = threading.Thread(target=worker, args=(names[k::4], "127.0.53.%d" % (41 + k)))
        threads.append(t)
        t.start()
    for t in threads:
        t.join(300)
        assert not t.is_alive(), "a client thread is stuck"
    assert errors == []
    assert big_dns.queries >= 600
    grown = rss_kb(m.pid) - base
    # 600 answers of ~60 KB: ~36 MB if kept; the cache's budget is 4 MB, one answer at most 16 KB
    assert grown < 20 * 1024, "RSS grew by %d kB" % grown
    # still serving: a message goes through
    c = Raw.plain(m.port, "127.0.53.45")
    assert c.code() == 220
    assert c.cmd("EHLO client.test")[-1].startswith(b"250")
    assert c.cmd("MAIL FROM:<someone@example.test>")[-1].startswith(b"250")
    assert c.cmd("RCPT TO:<%s>" % BOB)[-1].startswith(b"250")
    assert c.cmd("DATA")[-1].startswith(b"354")
    subject = "after-big-" + uuid.uuid4().hex
    c.send(message(subject) + ".\r\n")
    assert c.reply()[-1].startswith(b"250")
    c.close()
    backends.wait_maildir(BOB, subject)
    assert m.alive()


@pytest.mark.parametrize("domain,why", [(b"spf.big.test", b"DNS answer over the SPF limit"),
                                        (b"inc.big.test", b"DNS answer over the SPF limit"),
                                        (b"c0.mid.test", b"DNS data over the SPF limit")])
def test_spf_over_the_data_cap_is_permerror(start, backends, domain, why):
    m = start(spf="reject")
    c = Raw.plain(m.port, "127.0.53.46")
    assert c.code() == 220
    assert c.cmd("EHLO client.test")[-1].startswith(b"250")
    # the record would pass 127.0.53.46, but its answer is over the cap: permerror, accepted
    r = c.cmd("MAIL FROM:<user@%s>" % domain.decode())[-1]
    assert r.startswith(b"250"), r
    assert c.cmd("RCPT TO:<%s>" % BOB)[-1].startswith(b"250")
    assert c.cmd("DATA")[-1].startswith(b"354")
    subject = "spf-big-" + uuid.uuid4().hex
    c.send(message(subject) + ".\r\n")
    assert c.reply()[-1].startswith(b"250")
    c.close()
    msg = backends.wait_maildir(BOB, subject)
    spf = [l for l in msg.split(b"\n") if l.startswith(b"Received-SPF:")]
    assert len(spf) == 1, msg[:800]
    assert spf[0].startswith(b"Received-SPF: permerror "), spf[0]
    assert why in spf[0], spf[0]
    rig.wait_until(lambda: "result=permerror" in m.log(), 5, what="spf log line")
