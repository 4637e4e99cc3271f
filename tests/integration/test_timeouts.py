"""Every timeout of [timeouts] fires with a short configured value: the client gets its
protocol's farewell (SMTP 421 4.4.2, IMAP * BYE Autologout, POP3 -ERR) and the closing log line
names the timeout (timeout=NAME). Silent and never-answering backends are sockets of the test
itself. Clients use 127.0.0.2 and up; every wait is bounded."""

import re
import socket
import time

import pytest

import rig
from smtp_helpers import Raw


@pytest.fixture
def tmo_moat(moat, backends, certs):
    """moat with SMTP (MX), IMAP, POP3 (STARTTLS) and implicit-TLS IMAP listeners; timeouts
    are given per test; backends may be replaced (e.g. by a silent socket)."""

    def start(timeouts, smtp_backend=None, imap_backend=None):
        ports = dict(zip(("smtp", "imap", "pop3", "imaps"), rig.free_ports(4)))
        common = dict(timeouts, connection_rate_per_ip="0", max_errors="50")
        listeners = {
            "smtp": dict(common, protocol="smtp", tls="starttls", backend="postfix",
                         local_domains="example.test"),
            "imap": dict(common, protocol="imap", tls="starttls", backend="imap"),
            "pop3": dict(common, protocol="pop3", tls="starttls", backend="pop3"),
            "imaps": dict(common, protocol="imap", tls="implicit", backend="imap"),
        }
        for name in listeners:
            listeners[name]["listen"] = "127.0.0.1:%d" % ports[name]
        conf = rig.moat_conf(certs, backends={
            "postfix": {"address": smtp_backend or
                        "127.0.0.1:%d" % backends.ports["smtp_xclient"],
                        "identity": "xclient"},
            "imap": {"address": imap_backend or "127.0.0.1:%d" % backends.ports["imap"],
                     "identity": "id"},
            "pop3": {"address": "127.0.0.1:%d" % backends.ports["pop3"],
                     "identity": "xclient"},
        }, listeners=listeners)
        m = moat(conf, wait_ports=list(ports.values()))
        m.ports = ports
        return m
    return start


def close_line(m, timeout=6.0):
    rig.wait_until(lambda: "event=close" in m.log(), timeout, what="closing line")
    return [l for l in m.log().splitlines() if "event=close" in l][0]


def read_all(s, limit=5.0):
    """Everything the server sends until it closes (bounded)."""
    s.settimeout(limit)
    out = b""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        try:
            chunk = s.recv(4096)
        except (socket.timeout, ConnectionResetError):
            break
        if not chunk:
            break
        out += chunk
    return out


def test_handshake_timeout_not_extended_by_trickle(tmo_moat):
    m = tmo_moat({"handshake": "1s"})
    s = rig.client_socket(m.ports["imaps"], src="127.0.0.2")
    start = time.monotonic()
    # a TLS record header, one byte at a time: activity that must not extend the deadline
    for b in b"\x16\x03\x01\x02\x00":
        s.send(bytes([b]))
        time.sleep(0.3)
    assert read_all(s, 4) == b""
    assert time.monotonic() - start < 3
    s.close()
    line = close_line(m)
    assert "reason=handshake_timeout" in line and "timeout=handshake" in line, line


@pytest.mark.parametrize("kind,hello,farewell", [
    ("smtp", b"220 ", b"421 4.4.2 "),
    ("imap", b"* OK", b"* BYE Autologout"),
    ("pop3", b"+OK", b"-ERR [SYS/TEMP] Autologout"),
])
def test_preauth_idle(tmo_moat, kind, hello, farewell):
    m = tmo_moat({"preauth_idle": "1s"})
    s = rig.client_socket(m.ports[kind], src="127.0.0.3")
    out = read_all(s, 4)
    s.close()
    assert out.startswith(hello) and farewell in out, out
    line = close_line(m)
    assert "reason=idle_timeout" in line and "timeout=preauth_idle" in line, line


def test_preauth_total_against_slow_drip(tmo_moat):
    m = tmo_moat({"preauth_idle": "1s", "preauth_total": "2s"})
    s = rig.client_socket(m.ports["imap"], src="127.0.0.4")
    s.settimeout(5)
    assert s.recv(200).startswith(b"* OK")
    start = time.monotonic()
    got = b""
    # a NOOP every 0.4 s keeps the idle timer happy, never the total one
    for i in range(12):
        try:
            s.sendall(b"a%d NOOP\r\n" % i)
        except OSError:
            break
        time.sleep(0.4)
    got = read_all(s, 3)
    s.close()
    assert b"* BYE Autologout" in got, got
    assert time.monotonic() - start < 5.5
    line = close_line(m)
    assert "reason=total_timeout" in line and "timeout=preauth_total" in line, line


def smtp_to_mail(m, src):
    r = Raw.plain(m.ports["smtp"], src=src)
    assert r.reply()[0].startswith(b"220")
    r.send("EHLO client.example\r\n")
    assert r.reply()[-1].startswith(b"250")
    r.send("MAIL FROM:<someone@sender.test>\r\n")
    assert r.reply()[0].startswith(b"250")
    return r


def test_smtp_command_timeout(tmo_moat):
    m = tmo_moat({"command": "1s"})
    r = smtp_to_mail(m, "127.0.0.5")
    out = r.buf + read_all(r.sock, 4)
    r.sock.close()
    assert b"421 4.4.2 " in out, out
    line = close_line(m)
    assert "reason=idle_timeout" in line and "timeout=command" in line, line


def test_smtp_data_timeout(tmo_moat, backends):
    m = tmo_moat({"data": "1s"})
    r = smtp_to_mail(m, "127.0.0.6")
    r.send("RCPT TO:<alice@example.test>\r\n")
    assert r.reply()[0].startswith(b"250")
    r.send("DATA\r\n")
    assert r.reply()[0].startswith(b"354")
    r.send("Subject: never finished\r\n")
    out = r.buf + read_all(r.sock, 4)
    r.sock.close()
    assert b"421 4.4.2 " in out, out
    line = close_line(m)
    assert "reason=idle_timeout" in line and "timeout=data" in line and "phase=data" in line
    time.sleep(0.5)
    assert all(b"never finished" not in body
               for _, body in backends.messages("alice@example.test"))


def silent_server():
    """A backend that accepts and never says a word."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    return srv


def test_backend_reply_timeout(tmo_moat):
    srv = silent_server()
    try:
        m = tmo_moat({"backend_reply": "1s"},
                     smtp_backend="127.0.0.1:%d" % srv.getsockname()[1])
        r = Raw.plain(m.ports["smtp"], src="127.0.0.7")
        assert r.reply()[0].startswith(b"220")
        r.send("EHLO client.example\r\nMAIL FROM:<someone@sender.test>\r\n")
        out = read_all(r.sock, 5)
        r.sock.close()
        assert b"421 4.4.2 " in r.buf + out or b"451 " in r.buf + out, r.buf + out
        line = close_line(m)
        assert "timeout=backend_reply" in line, line
    finally:
        srv.close()


def unreachable_backend():
    """A listening socket with backlog 0 whose queue is filled: the kernel then drops further
    SYNs, so a connect neither succeeds nor fails until the client gives up."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    fillers = []
    for _ in range(4):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(srv.getsockname())
        fillers.append(c)
    time.sleep(0.2)
    return srv, fillers


def test_backend_connect_timeout(tmo_moat, certs):
    srv, fillers = unreachable_backend()
    try:
        m = tmo_moat({"backend_connect": "1s"},
                     imap_backend="127.0.0.1:%d" % srv.getsockname()[1])
        i = rig.IMAP(m.ports["imap"], src="127.0.0.8")
        i.starttls(ssl_context=rig.client_context(certs))
        start = time.monotonic()
        with pytest.raises((rig.imaplib.IMAP4.error, OSError, EOFError)):
            i.login("alice@example.test", "alice-secret-1")
        assert time.monotonic() - start < 4
        # the protocol answers the login with a failure and the session goes on; the attempt
        # that timed out is logged (the next address, if any, would be tried)
        rig.wait_until(lambda: "connect timeout" in m.log(), 5, what="connect timeout log")
        assert re.search(r'event=backend_connect_failed .*error="connect timeout"', m.log())
    finally:
        for c in fillers:
            c.close()
        srv.close()


def test_relay_idle(tmo_moat, certs):
    m = tmo_moat({"relay_idle": "1s"})
    i = rig.IMAP(m.ports["imap"], src="127.0.0.9")
    i.starttls(ssl_context=rig.client_context(certs))
    i.login("alice@example.test", "alice-secret-1")  # relaying from here; then silent
    line = close_line(m, timeout=15.0)  # moat ends the idle relay on its own
    with pytest.raises((rig.imaplib.IMAP4.abort, OSError, EOFError)):
        i.noop()
    assert "reason=idle_timeout" in line and "timeout=relay_idle" in line, line
    assert "phase=relay" in line
    assert re.search(r"user=\"?alice@example.test", line), line
