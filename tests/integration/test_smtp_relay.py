"""SMTP front, negative cases first: open-relay attempts on 25 and 587 (with and without TLS,
spoofed local sender, and the trap listener whose backend trusts 127.0.0.1 and gets no identity),
no AUTH before TLS, STARTTLS command injection, junk / NUL / over-long lines / HTTP. Each checks
what reached Postfix (queue, maildir, log), and that moat keeps serving."""

import time

import pytest

import rig
from smtp_helpers import (ALICE, BOB, Raw, assert_serving, login, message, session,
                          start_smtp_moat)

FAR = "victim@far.example"


@pytest.fixture
def m(moat, backends, certs):
    backends.flush_queue()
    return start_smtp_moat(moat, backends, certs)


def relay_attempt(c, sender):
    """MAIL + RCPT to a foreign domain: the RCPT must be refused by moat itself."""
    r = c.cmd("MAIL FROM:<%s>" % sender)
    if not r[-1].startswith(b"250"):
        return r
    r = c.cmd("RCPT TO:<%s>" % FAR)
    assert r[-1].startswith(b"554 5.7.1") or r[-1].startswith(b"530"), r
    assert c.cmd("DATA")[-1][:1] in (b"5", b"4")
    return r


@pytest.mark.parametrize("listener,tls", [("mx", False), ("mx", True), ("trap", False),
                                          ("trap", True)])
@pytest.mark.parametrize("sender", ["spam@remote.example", ALICE])
def test_mx_open_relay_refused(m, backends, certs, listener, tls, sender):
    c = session(m.smtp_ports[listener], "127.0.0.3", certs, starttls=tls)
    r = relay_attempt(c, sender)
    assert r[-1].startswith(b"554 5.7.1 Relay access denied")
    for variant in ("<victim%far.example@example.test>", "<@example.test:victim@far.example>",
                    "<\"victim@far.example\"@example.test>", "<victim@[192.0.2.1]>"):
        assert c.cmd("RCPT TO:%s" % variant)[-1].startswith(b"554 5.7.1")
    c.cmd("QUIT")
    c.close()
    time.sleep(0.3)
    assert FAR not in backends.queue()
    assert "far.example" not in " ".join(backends.queue())


@pytest.mark.parametrize("tls", [False, True])
def test_submission_requires_auth(m, backends, certs, tls):
    c = session(m.smtp_ports["submission"], "127.0.0.4", certs, starttls=tls)
    assert c.cmd("MAIL FROM:<%s>" % ALICE)[-1].startswith(b"530 5.7.0")
    assert c.cmd("RCPT TO:<%s>" % FAR)[-1].startswith(b"503")
    c.close()
    assert FAR not in backends.queue()


def test_no_auth_before_tls(m, backends, certs):
    for listener in ("mx", "submission"):
        c = session(m.smtp_ports[listener], "127.0.0.5", certs)
        assert not [l for l in c.ehlo_lines if b"AUTH" in l]
        assert b"STARTTLS" in b" ".join(c.ehlo_lines)
        for bad in (b"CHUNKING", b"XCLIENT", b"XFORWARD", b"VRFY", b"ETRN"):
            assert bad not in b" ".join(c.ehlo_lines)
        r = login(c, backends=backends)
        assert r[-1].startswith(b"538 5.7.11") or r[-1].startswith(b"503"), r
        c.close()
    # the credentials never went anywhere: neither session opened a backend or logged in
    def closes():
        return [l for l in m.log().splitlines()
                if "event=close" in l and "client=127.0.0.5:" in l]
    rig.wait_until(lambda: len(closes()) == 2, 5, what="both sessions closed")
    assert all("backend=-" in l and "user=" not in l for l in closes()), closes()


def test_starttls_injection(m, backends, certs):
    c = Raw.plain(m.smtp_ports["submission"], "127.0.0.6")
    assert c.code() == 220
    c.cmd("EHLO inject.test")
    c.send("STARTTLS\r\nRSET\r\nMAIL FROM:<a@b>\r\nEHLO injected\r\n")
    assert c.line().startswith(b"220 2.0.0")
    assert c.buf == b""
    c.starttls(certs)
    # nothing may be answered inside TLS before we ask
    c.sock.settimeout(1.0)
    with pytest.raises((TimeoutError, OSError)):
        data = c.sock.recv(100)
        if data == b"":
            raise OSError("closed")
        pytest.fail("unsolicited data inside TLS: %r" % data)
    c.sock.settimeout(5.0)
    # state was forgotten: EHLO needed again, AUTH now offered
    assert c.cmd("MAIL FROM:<a@b>")[-1].startswith(b"503 5.5.1")
    lines = c.cmd("EHLO again.test")
    assert b"AUTH PLAIN LOGIN" in b" ".join(lines) and b"STARTTLS" not in b" ".join(lines)
    assert c.cmd("STARTTLS")[-1].startswith(b"503")
    c.close()
    c = session(m.smtp_ports["submissions"], "127.0.0.6", certs, implicit=True)
    assert b"STARTTLS" not in b" ".join(c.ehlo_lines)
    assert c.cmd("STARTTLS")[-1][:1] == b"5"
    c.close()
    assert "injected" not in backends.postfix_log()


def test_junk_nul_long_lines_http(m, backends, certs):
    c = session(m.smtp_ports["mx"], "127.0.0.7")
    assert c.cmd("A" * 5000)[-1].startswith(b"500 5.5.2")
    assert c.cmd("NOOP")[-1].startswith(b"250")
    c.send(b"NO\x00OP\r\n")
    assert c.reply()[-1].startswith(b"500 5.5.2")
    for cmd in ("VRFY root", "EXPN staff", "ETRN x", "BDAT 10 LAST", "XCLIENT ADDR=1.2.3.4"):
        assert c.cmd(cmd)[-1].startswith(b"502 5.5.1")
    assert c.cmd("WHATEVER")[-1].startswith(b"500 5.5.2")
    assert c.cmd("RCPT TO:<%s>" % BOB)[-1].startswith(b"503")
    c.close()
    # too many errors: 421 and close
    # (one command at a time, nothing sent after the close: max_errors = 20)
    c = session(m.smtp_ports["mx"], "127.0.0.7")
    for _ in range(19):
        assert c.cmd("JUNK")[-1].startswith(b"500 5.5.2")
    c.send("JUNK\r\n")
    assert c.reply()[-1].startswith(b"500 5.5.2")
    last = c.reply()
    assert last[-1].startswith(b"421 4.7.0"), last
    assert c.closed()
    c.close()
    # HTTP request line: 421 and close at once, nothing reaches Postfix
    c = Raw.plain(m.smtp_ports["mx"], "127.0.0.7")
    assert c.code() == 220
    c.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nMAIL FROM:<a@b>\r\n")
    assert c.line().startswith(b"421")
    with pytest.raises(EOFError):
        c.line()
    c.close()
    assert "127.0.0.7" not in backends.postfix_log()
    assert_serving(m)


def test_preauth_idle_timeout(m, backends, certs):
    c = Raw.plain(m.smtp_ports["mx"], "127.0.0.8")
    assert c.code() == 220
    c.sock.settimeout(10)
    assert c.line().startswith(b"421 4.4.2")
    c.close()
