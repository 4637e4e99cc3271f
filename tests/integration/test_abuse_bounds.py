"""Memory and file-descriptor bounds under abuse, against real clients and real Postfix/Dovecot.

Memory: moat holds max_sessions connections in each pre-authentication state (greeted and idle,
a command line or an IMAP literal half sent, a TLS handshake half done, TLS up and idle, a SASL
exchange waiting for the client) and its resident set (VmRSS in /proc) grows by less than
max_sessions x PER_SESSION_BOUND_KB over its idle size; the connection past max_sessions is
refused. File descriptors: moat runs with a low RLIMIT_NOFILE; clients past it get the
protocol's "too many connections" refusal, moat logs it and stays up, a session that needs a
backend connection then gets a temporary error, and once clients go away the next one is served.
Clients use 127.0.0.20 and up; every wait is bounded and nothing depends on timing.
"""

import os
import resource
import socket
import time
import urllib.request

import pytest

import limits_helpers
import rig

MAX_SESSIONS = 48
# The resident memory one pre-auth session may cost moat, in KiB: VmRSS with MAX_SESSIONS held,
# less VmRSS idle before the first state, divided by MAX_SESSIONS. Measured (default 32k client
# and backend buffers, 48 sessions, the states run in the order of STATES): at most 218 KiB per
# session on the ASan+UBSan Debug build the suite runs (with its quarantine at 1 MB, below),
# 120 KiB on a Release build; the TLS states cost most (wolfSSL's record buffers). The bound is
# the ASan figure doubled: a session that grew a buffer past its cap, or kept memory per command
# or per connection, crosses it.
PER_SESSION_BOUND_KB = 448

GREETING = {"smtp": b"220 ", "imap": b"* OK", "pop3": b"+OK"}
TOO_MANY = {"smtp": b"421 4.7.0 mx.moat.test Too many connections, try again later",
            "imap": b"* BYE [UNAVAILABLE] Too many connections, try again later",
            "pop3": b"-ERR [SYS/TEMP] Too many connections, try again later"}


@pytest.fixture
def abuse_moat(moat, backends, certs):
    """moat with SMTP (MX), IMAP and POP3 STARTTLS listeners and an implicit-TLS IMAP one, no
    per-address limits; moat_section goes into [moat]."""

    def start(moat_section):
        common = {"connection_rate_per_ip": "0", "max_sessions_per_ip": "0",
                  "max_preauth_commands": "1000", "max_errors": "1000"}
        m = limits_helpers.start_four(moat, backends, certs, common, moat_section, metrics=True)
        # the start-up backend self-check opens connections of its own: let it finish first
        rig.wait_until(lambda: "event=backend_check_done" in m.log(), 30,
                       what="backend self-check")
        return m
    return start


# --- what moat holds: /proc ------------------------------------------------------------------

def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def sessions_open(m):
    """moat_sessions_open summed over the listeners, from /metrics."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % m.metrics_port, timeout=10) as r:
        text = r.read().decode()
    return sum(int(line.split()[-1]) for line in text.splitlines()
               if line.startswith("moat_sessions_open{"))


def unread_bytes(ports):
    """Bytes waiting in the receive queues of moat's accepted sockets on these ports (their
    local port is the listener's): 0 means moat has read everything its clients sent."""
    total = 0
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].split(":")[1], 16)
            if fields[3] == "01" and local_port in ports:  # ESTABLISHED
                total += int(fields[4].split(":")[1], 16)
    return total


# --- clients ---------------------------------------------------------------------------------

class Client:
    """A line reader over a plain or TLS socket, bounded waits."""

    def __init__(self, port, src):
        self.sock = rig.client_socket(port, src=src, timeout=10)
        self.buf = b""

    def line(self, timeout=10.0):
        end = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError("no line; buffered %r" % self.buf)
            self.sock.settimeout(left)
            chunk = self.sock.recv(4096)
            if not chunk:
                raise EOFError("closed; buffered %r" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r")

    def send(self, data):
        self.sock.sendall(data)

    def starttls(self, certs):
        self.sock = rig.client_context(certs).wrap_socket(self.sock,
                                                          server_hostname="mx.moat.test")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def greeted(m, kind, src):
    c = Client(m.ports[kind], src)
    assert c.line().startswith(GREETING[kind])
    return c


def smtp_greeted(m, certs, src):
    return greeted(m, "smtp", src)


def pop3_greeted(m, certs, src):
    return greeted(m, "pop3", src)


def smtp_half_line(m, certs, src):
    """A command line of 2000 octets (the limit is 2048) with no line end yet."""
    c = greeted(m, "smtp", src)
    c.send(b"EHLO " + b"h" * 1995)
    return c


def imap_half_line(m, certs, src):
    """A command line of 8000 octets (the pre-auth limit is 8192) with no line end yet."""
    c = greeted(m, "imap", src)
    c.send(b"a NOOP " + b"x" * 7993)
    return c


def imaps_half_literal(m, certs, src):
    """LOGIN over implicit TLS with a 4096-octet literal (the pre-auth maximum), 4000 octets of
    it sent."""
    c = Client(m.ports["imaps"], src)
    c.starttls(certs)
    assert c.line().startswith(b"* OK")
    c.send(b"a LOGIN {4096}\r\n")
    assert c.line().startswith(b"+")
    c.send(b"u" * 4000)
    return c


def imap_tls_idle(m, certs, src):
    """STARTTLS done, TLS up, nothing more."""
    c = greeted(m, "imap", src)
    c.send(b"a STARTTLS\r\n")
    assert c.line().startswith(b"a OK")
    c.starttls(certs)
    c.send(b"b NOOP\r\n")
    assert c.line().startswith(b"b OK")
    return c


def imaps_half_handshake(m, certs, src):
    """The first 11 octets of a ClientHello on the implicit-TLS port, then nothing."""
    c = Client(m.ports["imaps"], src)
    c.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    return c


def imaps_sasl_waiting(m, certs, src):
    """AUTHENTICATE PLAIN over implicit TLS, moat waiting for the client's response."""
    c = Client(m.ports["imaps"], src)
    c.starttls(certs)
    assert c.line().startswith(b"* OK")
    c.send(b"a AUTHENTICATE PLAIN\r\n")
    assert c.line().startswith(b"+")
    c.send(b"AGFsaWNl" * 100)  # 800 octets of a response, no line end
    return c


STATES = [smtp_greeted, pop3_greeted, smtp_half_line, imap_half_line, imaps_half_literal,
          imap_tls_idle, imaps_half_handshake, imaps_sasl_waiting]


def refused_at_max(m):
    """The connection past max_sessions gets the refusal (SMTP's here)."""
    c = Client(m.ports["smtp"], "127.0.0.99")
    try:
        assert c.line() == TOO_MANY["smtp"]
    finally:
        c.close()


def test_rss_bounded_with_max_sessions_in_each_preauth_state(abuse_moat, certs, monkeypatch):
    # ASan holds freed memory in a quarantine (256 MB by default), so a build with it would grow
    # by every earlier state's sessions as well: keep it small so freed sessions are reused
    asan = os.environ.get("ASAN_OPTIONS", "")
    monkeypatch.setenv("ASAN_OPTIONS", (asan + ":" if asan else "") + "quarantine_size_mb=1")
    m = abuse_moat("max_sessions = %d\nmax_tls_handshakes = %d\n" % (MAX_SESSIONS, MAX_SESSIONS))
    ports = set(m.ports.values())
    # warm up every path once (first TLS handshake, first allocation of each size class)
    for state in STATES:
        state(m, certs, "127.0.0.20").close()
    rig.wait_until(lambda: sessions_open(m) == 0, 30, what="warm-up sessions closed")
    idle = rss_kb(m.pid)
    report = []
    for state in STATES:
        before = rss_kb(m.pid)
        held = []
        try:
            for i in range(MAX_SESSIONS):
                held.append(state(m, certs, "127.0.0.%d" % (21 + i % 40)))
            rig.wait_until(lambda: unread_bytes(ports) == 0, 30,
                           what="moat read what %s sent" % state.__name__)
            assert sessions_open(m) == MAX_SESSIONS
            refused_at_max(m)
            held_kb = rss_kb(m.pid)
        finally:
            for c in held:
                c.close()
        rig.wait_until(lambda: sessions_open(m) == 0, 60,
                       what="the %s sessions closed" % state.__name__)
        report.append("%s: +%d KiB over idle with %d sessions (%.0f KiB each; +%d KiB over the "
                      "state before)" % (state.__name__, held_kb - idle, MAX_SESSIONS,
                                         (held_kb - idle) / MAX_SESSIONS, held_kb - before))
        print(report[-1])
        assert held_kb - idle < MAX_SESSIONS * PER_SESSION_BOUND_KB, "\n".join(report)
    assert m.alive()


def test_out_of_fds_refused_politely_then_served(abuse_moat):
    m = abuse_moat("")
    base = open_fds(m.pid)
    room = 12
    limit = base + room
    # moat raises its soft limit to the hard one at start-up: lower both, on the running process
    resource.prlimit(m.pid, resource.RLIMIT_NOFILE, (limit, limit))
    held = []
    refused = []
    try:
        for i in range(room + 6):  # more clients than descriptors, bounded
            c = Client(m.ports["smtp"], "127.0.0.%d" % (60 + i))
            line = c.line()
            if line == TOO_MANY["smtp"]:
                refused.append(c)
                continue
            assert line.startswith(GREETING["smtp"]), line
            held.append(c)
        assert refused, "no client was refused with %d descriptors" % limit
        assert len(held) <= room, "more sessions than descriptors"
        for kind in ("imap", "pop3"):  # every protocol gets its own refusal
            c = Client(m.ports[kind], "127.0.0.90")
            try:
                assert c.line() == TOO_MANY[kind]
            finally:
                c.close()
        # a held session that needs a backend connection gets a temporary error, not a crash
        held[0].send(b"EHLO client.example\r\n")
        for _ in range(20):
            if not held[0].line().startswith(b"250-"):
                break
        held[0].send(b"MAIL FROM:<someone@sender.test>\r\n")
        reply = held[0].line()
        assert reply.startswith(b"4"), reply
        assert m.alive()
        assert "event=refused reason=out_of_fds listener=smtp" in m.log()
    finally:
        for c in held + refused:
            c.close()
    # once the clients are gone, the next one is served, without raising the limit
    rig.wait_until(lambda: open_fds(m.pid) <= base + 1, 30, what="moat's sessions closed")
    c = Client(m.ports["smtp"], "127.0.0.91")
    try:
        assert c.line().startswith(GREETING["smtp"])
        c.send(b"EHLO client.example\r\n")
        for _ in range(20):
            if not c.line().startswith(b"250-"):
                break
        c.send(b"MAIL FROM:<someone@sender.test>\r\n")
        assert c.line().startswith(b"250")
        c.send(b"QUIT\r\n")
        assert c.line().startswith(b"221")
    finally:
        c.close()
    assert m.alive()
