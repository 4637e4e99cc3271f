"""Tests of the real-backend rig itself, WITHOUT moat: prove that the private Postfix and
Dovecot behave like the legacy server the moat tests assume (delivery into maildirs, IMAP and
POP3 logins, XCLIENT, PROXY headers, SMTP AUTH through Dovecot, and the open-relay trap for
loopback). If these fail, every moat integration test is meaningless.

Run: cd /work/main && /usr/bin/python3 -m pytest -q tests/integration/test_rig.py
"""

import base64
import os
import smtplib
import socket
import struct
import uuid

import pytest

import rig

ALICE = "alice@example.test"
BOB = "bob@example.test"


def unique(tag):
    return "%s-%s" % (tag, uuid.uuid4().hex[:12])


def recv_line(sock, limit=4096):
    """One CRLF-terminated line (bounded in size; the socket has a timeout)."""
    buf = b""
    while not buf.endswith(b"\r\n"):
        chunk = sock.recv(1)
        if not chunk or len(buf) >= limit:
            break
        buf += chunk
    return buf


def smtp_reply(sock, limit=100):
    """A full (multi-line) SMTP reply as a list of lines."""
    lines = []
    for _ in range(limit):
        line = recv_line(sock)
        lines.append(line)
        if len(line) < 4 or line[3:4] != b"-":
            break
    return lines


def queue_id_of(reply_text):
    """Postfix's '250 2.0.0 Ok: queued as ABC123' -> 'ABC123'."""
    return reply_text.rsplit(" ", 1)[-1]


@pytest.fixture(autouse=True)
def _clean(backends):
    yield
    backends.cleanup_maildirs()


def test_ports_are_loopback_only(backends):
    listening = rig.listening_ports()
    for name, port in backends.ports.items():
        assert ("127.0.0.1", port) in listening, name
        assert ("0.0.0.0", port) not in listening, name


def test_deliver_lands_in_maildir(backends):
    subject = unique("deliver")
    data = backends.deliver(ALICE, subject, "hello alice")
    assert ("Subject: %s" % subject).encode() in data
    assert any(subject.encode() in m for _, m in backends.messages(ALICE))
    assert not any(subject.encode() in m for _, m in backends.messages(BOB))


def test_imap_login_and_fetch(backends):
    subject = unique("imap")
    backends.deliver(ALICE, subject, "body for imap")
    with rig.IMAP(backends.ports["imap"], src="127.0.0.1") as im:
        im.login(ALICE, backends.users[ALICE])
        typ, _ = im.select("INBOX")
        assert typ == "OK"
        typ, data = im.search(None, "SUBJECT", subject)
        assert typ == "OK" and data[0], data
        num = data[0].split()[-1]
        typ, msg = im.fetch(num, "(RFC822)")
        assert typ == "OK"
        assert b"body for imap" in msg[0][1]
        im.logout()
    assert "imap-login: Info: Login: user=<%s>" % ALICE in backends.dovecot_log()


def test_imap_wrong_password_fails(backends):
    with rig.IMAP(backends.ports["imap"], src="127.0.0.2") as im:
        with pytest.raises(im.error):
            im.login(ALICE, "wrong")


def test_pop3_login_and_retr(backends):
    subject = unique("pop3")
    backends.deliver(BOB, subject, "body for pop3")
    p = rig.POP3(backends.ports["pop3"], src="127.0.0.2")
    try:
        p.user(BOB)
        p.pass_(backends.users[BOB])
        count, _ = p.stat()
        assert count >= 1
        bodies = [b"\r\n".join(p.retr(i)[1]) for i in range(1, count + 1)]
        assert any(subject.encode() in b and b"body for pop3" in b for b in bodies)
    finally:
        p.quit()
    assert "pop3-login: Info: Login: user=<%s>" % BOB in backends.dovecot_log()


def test_relay_trap_from_loopback(backends):
    """From 127.0.0.1 the legacy Postfix relays anywhere: this is the trap moat must close."""
    rcpt = "%s@other.example" % unique("victim")
    with smtplib.SMTP("127.0.0.1", backends.ports["smtp_plain"], timeout=10,
                      source_address=("127.0.0.1", 0)) as s:
        refused = s.sendmail("spammer@bad.example", [rcpt], b"Subject: relay\r\n\r\nx\r\n")
        assert refused == {}
    rig.wait_until(lambda: rcpt in backends.queue(), 5, what="relayed mail in the queue")
    backends.flush_queue()
    rig.wait_until(lambda: rcpt not in backends.queue(), 5, what="queue flushed")


def test_relay_denied_from_outside_network(backends):
    """Postfix decides by client address; XCLIENT ADDR= outside mynetworks gets no relay."""
    with smtplib.SMTP("127.0.0.1", backends.ports["smtp_xclient"], timeout=10,
                      source_address=("127.0.0.1", 0)) as s:
        s.ehlo("moat.internal")
        assert s.has_extn("xclient")
        code, _ = s.docmd("XCLIENT", "ADDR=192.0.2.20 NAME=[UNAVAILABLE]")
        assert code == 220
        s.ehlo("client.example")
        s.mail("someone@sender.example")
        code, msg = s.rcpt("victim@other.example")
        assert code == 554 and b"Relay access denied" in msg
        code, _ = s.rcpt(ALICE)  # local delivery is still fine
        assert code == 250


def test_xclient_sets_client_and_login(backends):
    subject = unique("xclient")
    with smtplib.SMTP("127.0.0.1", backends.ports["smtp_xclient"], timeout=10,
                      source_address=("127.0.0.1", 0)) as s:
        s.ehlo("moat.internal")
        code, _ = s.docmd("XCLIENT", "ADDR=192.0.2.7 PORT=40000 NAME=[UNAVAILABLE] "
                                     "HELO=client.example PROTO=ESMTP LOGIN=%s" % ALICE)
        assert code == 220
        s.ehlo("client.example")
        assert not s.has_extn("xclient")  # only one XCLIENT ADDR= per session
        s.mail("alice@example.test")
        code, _ = s.rcpt("friend@other.example")  # relay allowed: authenticated via LOGIN=
        assert code == 250
        code, _ = s.rcpt(BOB)
        assert code == 250
        code, msg = s.data(("Subject: %s\r\n\r\nvia xclient\r\n" % subject).encode())
        assert code == 250
    qid = queue_id_of(msg.decode())
    backends.wait_maildir(BOB, subject)
    log = backends.postfix_log()
    assert "%s: client=unknown[192.0.2.7], sasl_method=XCLIENT, sasl_username=%s" % (
        qid, ALICE) in log, log[-2000:]
    backends.flush_queue()


def test_smtp_auth_through_dovecot(backends):
    with smtplib.SMTP("127.0.0.1", backends.ports["smtp_xclient"], timeout=10,
                      source_address=("127.0.0.1", 0)) as s:
        s.ehlo("client.example")
        assert "PLAIN" in s.esmtp_features.get("auth", "").upper()
        code, _ = s.login(ALICE, backends.users[ALICE])
        assert code == 235
    with smtplib.SMTP("127.0.0.1", backends.ports["smtp_xclient"], timeout=10,
                      source_address=("127.0.0.1", 0)) as s:
        s.ehlo("client.example")
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            s.login(ALICE, "not-the-password")
        assert e.value.smtp_code == 535
    assert "authentication failed" in backends.postfix_log()


def test_proxy_v1_on_smtp_proxy(backends):
    with rig.client_socket(backends.ports["smtp_proxy"], src="127.0.0.1") as s:
        s.sendall(b"PROXY TCP4 192.0.2.8 127.0.0.1 40001 25\r\n")
        assert smtp_reply(s)[0].startswith(b"220 ")
        s.sendall(b"EHLO client.example\r\n")
        assert smtp_reply(s)[-1].startswith(b"250 ")
        s.sendall(b"QUIT\r\n")
        assert smtp_reply(s)[0].startswith(b"221")
    rig.wait_until(lambda: "connect from unknown[192.0.2.8]" in backends.postfix_log(), 5,
                   what="postfix to log the proxied address")


def proxy_v2_header(src, sport, dst, dport, ssl=False):
    """PROXY v2 header, TCP over IPv4, with a PP2_TYPE_SSL TLV (client SSL flag) if ssl."""
    tlvs = b""
    if ssl:
        value = struct.pack("!BI", 0x01, 0)  # PP2_CLIENT_SSL, verify = 0
        tlvs = struct.pack("!BH", 0x20, len(value)) + value
    addrs = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    body = addrs + tlvs
    return (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(body))
            + body)


def test_proxy_v2_on_dovecot_imap_proxy(backends):
    with rig.client_socket(backends.ports["imap_proxy"], src="127.0.0.1") as s:
        s.sendall(proxy_v2_header("192.0.2.9", 40002, "203.0.113.1", 993, ssl=True))
        assert recv_line(s).startswith(b"* OK")
        cred = base64.b64encode(b"\0" + ALICE.encode() + b"\0"
                                + backends.users[ALICE].encode())
        s.sendall(b"a1 AUTHENTICATE PLAIN " + cred + b"\r\n")
        line = recv_line(s)
        assert line.startswith(b"a1 OK"), line
        s.sendall(b"a2 LOGOUT\r\n")
    rig.wait_until(lambda: "rip=192.0.2.9, lip=203.0.113.1" in backends.dovecot_log(), 5,
                   what="dovecot to log the proxied address")


def test_pop3_xclient_on_dovecot(backends):
    """The POP3 hand-off moat uses: XCLIENT ADDR/PORT/SESSION from a trusted network."""
    sid = unique("moat")
    with rig.client_socket(backends.ports["pop3"], src="127.0.0.1") as s:
        assert b"[XCLIENT]" in recv_line(s)
        s.sendall(b"XCLIENT ADDR=192.0.2.10 PORT=40003 SESSION=%s\r\n" % sid.encode())
        assert recv_line(s).startswith(b"+OK")
        cred = base64.b64encode(b"\0" + BOB.encode() + b"\0" + backends.users[BOB].encode())
        s.sendall(b"AUTH PLAIN " + cred + b"\r\n")
        assert recv_line(s).startswith(b"+OK")
        s.sendall(b"QUIT\r\n")
        recv_line(s)
    rig.wait_until(lambda: "rip=192.0.2.10" in backends.dovecot_log()
                   and "session=<%s>" % sid in backends.dovecot_log(), 5,
                   what="dovecot to log the XCLIENT address")


def test_client_socket_source_address(backends):
    with rig.client_socket(backends.ports["smtp_plain"], src="127.0.0.3") as s:
        assert s.getsockname()[0] == "127.0.0.3"
        assert smtp_reply(s)[0].startswith(b"220 ")
        s.sendall(b"QUIT\r\n")
        smtp_reply(s)
    with pytest.raises(ValueError):
        rig.src_addr(1)


def test_certs(certs):
    import ssl
    for name in ("ca", "ecdsa", "rsa", "other"):
        assert os.path.getsize(getattr(certs, name)) > 0
        assert os.access(getattr(certs, name + "_key"), os.R_OK)
    ctx = rig.client_context(certs)
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED


def test_stop_and_start_dovecot(backends):
    backends.stop_dovecot()
    with pytest.raises(OSError):
        rig.client_socket(backends.ports["imap"], src="127.0.0.2", timeout=2).close()
    backends.start_dovecot()
    with rig.IMAP(backends.ports["imap"], src="127.0.0.2") as im:
        im.login(ALICE, backends.users[ALICE])
        im.logout()


def test_free_ports_below_ephemeral_range_and_never_repeated():
    """free_ports hands out ports no outgoing connection can take (below the kernel's
    ephemeral range) and never the same port twice within its hold time, across calls (and,
    through its locked registry, across the parallel test processes)."""
    low = rig._ephemeral_low()
    seen = set()
    for _ in range(20):
        ports = rig.free_ports(5)
        assert len(set(ports)) == 5
        assert not seen & set(ports), "a port handed out twice"
        seen |= set(ports)
        if low - 20000 >= 1000:
            assert all(20000 <= p < low for p in ports), ports
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", rig.free_port()))  # free indeed
    finally:
        s.close()
