"""IMAP front, negative cases first: no credentials in the clear, STARTTLS injection, literal
overflows, bad tags, NUL bytes, garbage, over-long lines, invalid base64, identical login
failures, repeated failures, and a stopped Dovecot. Each case checks moat keeps serving and what
Dovecot saw (no login from the attacking address)."""

import os
import time

import pytest

import rig
from imap_helpers import Raw, greeting_caps, login_lines, start_imap_moat

ALICE = "alice@example.test"


@pytest.fixture
def m(moat, backends, certs):
    return start_imap_moat(moat, backends, certs, limits="max_errors = 100")


def assert_serving(m, certs, src="127.0.0.9"):
    c = Raw.tls(m.imap_ports["imaps"], certs, src)
    assert c.line().startswith(b"* OK [CAPABILITY")
    c.send(b"n NOOP\r\n")
    assert c.until_tagged(b"n")[-1].startswith(b"n OK")
    c.close()
    assert m.alive()


def test_plaintext_login_refused(m, backends, certs):
    src = "127.0.0.21"
    c = Raw.plain(m.imap_ports["imap"], src)
    caps = greeting_caps(c.line())
    assert b"STARTTLS" in caps and b"LOGINDISABLED" in caps
    assert not [x for x in caps if x.startswith(b"AUTH=")]
    c.send(b"a CAPABILITY\r\n")
    lines = c.until_tagged(b"a")
    assert b"LOGINDISABLED" in lines[0] and b"AUTH=" not in lines[0]
    c.send(("b LOGIN %s %s\r\n" % (ALICE, backends.users[ALICE])).encode())
    assert c.until_tagged(b"b")[-1].startswith(b"b NO [PRIVACYREQUIRED]")
    c.send(b"c AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1zZWNyZXQtMQ==\r\n")
    assert c.until_tagged(b"c")[-1].startswith(b"c NO [PRIVACYREQUIRED]")
    c.send(b"d AUTHENTICATE LOGIN\r\n")
    assert c.until_tagged(b"d")[-1].startswith(b"d NO [PRIVACYREQUIRED]")
    # a literal in a refused LOGIN gets no "+": the password would follow in the clear
    c.send(b"f LOGIN {%d}\r\n" % len(ALICE))
    assert c.line().startswith(b"f NO [PRIVACYREQUIRED]")
    assert c.quiet(0.2) == b""
    c.send(b"e SELECT INBOX\r\n")
    assert c.until_tagged(b"e")[-1].startswith(b"e BAD")
    c.close()
    assert login_lines(backends, ALICE, src) == []


def test_starttls_injection(m, backends, certs):
    src = "127.0.0.22"
    c = Raw.plain(m.imap_ports["imap"], src)
    c.line()
    pw = backends.users[ALICE]
    c.send(("a STARTTLS\r\nb LOGIN %s %s\r\nx NOOP\r\n" % (ALICE, pw)).encode())
    assert c.line() == b"a OK Begin TLS negotiation now"
    c.starttls(certs)
    c.send(b"c NOOP\r\n")
    lines = c.until_tagged(b"c")
    assert lines == [b"c OK NOOP completed."], lines  # nothing answered for b or x
    c.send(b"d CAPABILITY\r\n")
    caps = c.until_tagged(b"d")[0]
    assert b"AUTH=PLAIN" in caps and b"STARTTLS" not in caps and b"LOGINDISABLED" not in caps
    c.send(b"e STARTTLS\r\n")
    assert c.until_tagged(b"e")[-1].startswith(b"e BAD")
    c.close()
    assert login_lines(backends, ALICE, src) == []
    assert "starttls_discard" in m.log()


@pytest.mark.parametrize("size", ["4294967295", "18446744073709551616",
                                  "99999999999999999999999", "4097"])
def test_literal_overflow(m, certs, size):
    for port_name in ("imap", "imaps"):
        if port_name == "imaps":
            c = Raw.tls(m.imap_ports[port_name], certs, "127.0.0.23")
        else:
            c = Raw.plain(m.imap_ports[port_name], "127.0.0.23")
        c.line()
        c.send(b"a LOGIN {%s}\r\n" % size.encode())
        reply = c.line()
        assert reply == b"a BAD [TOOBIG] Literal too large.", reply
        assert c.quiet(0.2) == b""  # never a "+" continuation
        c.send(b"b NOOP\r\n")
        assert c.until_tagged(b"b") == [b"b OK NOOP completed."]
        c.close()
    assert_serving(m, certs)


def test_nonsync_literal_too_large_closes(m, certs):
    c = Raw.tls(m.imap_ports["imaps"], certs, "127.0.0.23")
    c.line()
    c.send(b"a LOGIN {100000+}\r\n" + b"x" * 1000)
    assert c.line().startswith(b"a BAD [TOOBIG]")
    assert c.line().startswith(b"* BYE")
    c.close()
    assert_serving(m, certs)


def test_bad_tags_nul_garbage_long_lines(m, certs):
    c = Raw.tls(m.imap_ports["imaps"], certs, "127.0.0.24")
    c.line()
    c.send(b"a*b NOOP\r\n")
    assert c.line() == b"* BAD Invalid tag"
    c.send(b"+ NOOP\r\n")
    assert c.line() == b"* BAD Invalid tag"
    c.send(b"t" * 100 + b" NOOP\r\n")
    assert c.line() == b"* BAD Invalid tag"  # never echoed
    c.send(b"a NO\x00OP\r\n")
    assert c.line().startswith(b"* BAD NUL")
    c.send(b"b LOGIN {3}\r\n")
    assert c.line() == b"+ OK"
    c.send(b"a\x00b c\r\n")
    assert c.line() == b"b BAD NUL octet in literal"
    c.send(os.urandom(3000).replace(b"\n", b"") + b"\r\n")
    assert c.line().startswith(b"* BAD")
    c.send(b"A" * 20000)
    assert c.line() == b"* BAD Command line too long."
    c.send(b"B" * 100 + b"\r\nz NOOP\r\n")
    assert c.until_tagged(b"z")[-1] == b"z OK NOOP completed."
    c.close()
    assert_serving(m, certs)


def test_invalid_base64_in_authenticate(m, backends, certs):
    src = "127.0.0.25"
    c = Raw.tls(m.imap_ports["imaps"], certs, src)
    c.line()
    c.send(b"a AUTHENTICATE PLAIN\r\n")
    assert c.line() == b"+ "
    c.send(b"!!!!not-base64!!!!\r\n")
    assert c.line() == b"a BAD Invalid SASL response."
    c.send(b"b AUTHENTICATE PLAIN %%%%\r\n")
    assert c.line().startswith(b"b BAD")
    c.send(b"c AUTHENTICATE PLAIN\r\n")
    assert c.line() == b"+ "
    c.send(b"*\r\n")
    assert c.line() == b"c BAD Authentication cancelled."
    c.send(b"d AUTHENTICATE LOGIN\r\n")
    assert c.line() == b"+ VXNlcm5hbWU6"
    c.send(b"YWxpY2U=\r\n")
    assert c.line() == b"+ UGFzc3dvcmQ6"
    c.send(b"=====\r\n")
    assert c.line().startswith(b"d BAD")
    assert c.quiet(0.2) == b""
    c.close()
    assert login_lines(backends, ALICE, src) == []
    assert_serving(m, certs)


def test_failures_are_identical(m, backends, certs):
    # One source address per attempt: Dovecot's own per-address auth penalty would otherwise
    # slow the later attempts past backend_reply (a temporary failure, by design).
    replies = []
    for src, user, pw in (("127.0.0.26", ALICE, "wrong-password"),
                          ("127.0.0.29", "nobody@example.test", "whatever"),
                          ("127.0.0.30", "alice@nowhere.test", backends.users[ALICE])):
        im = rig.IMAPS(m.imap_ports["imaps"], certs, src=src)
        with pytest.raises(rig.imaplib.IMAP4.error) as e:
            im.login(user, pw)
        replies.append(str(e.value))
        im.shutdown()
    assert len(set(replies)) == 1, replies
    assert "AUTHENTICATIONFAILED" in replies[0]
    log = backends.dovecot_log()
    assert "nobody@example.test" in log  # the attempts really reached Dovecot
    for src in ("127.0.0.26", "127.0.0.29", "127.0.0.30"):
        assert login_lines(backends, ALICE, src) == []


def test_too_many_failures_closes(m, backends, certs):
    c = Raw.tls(m.imap_ports["imaps"], certs, "127.0.0.27")
    c.line()
    for i in range(3):
        c.send(b"t%d LOGIN %s wrong\r\n" % (i, ALICE.encode()))
        assert c.line() == b"t%d NO [AUTHENTICATIONFAILED] Authentication failed." % i
    assert c.line() == b"* BYE Too many authentication failures"
    c.close()
    assert_serving(m, certs)


def test_dovecot_stopped(m, backends, certs):
    backends.stop_dovecot()
    try:
        c = Raw.tls(m.imap_ports["imaps"], certs, "127.0.0.28")
        c.line()
        t0 = time.monotonic()
        c.send(b"a LOGIN %s %s\r\n" % (ALICE.encode(), backends.users[ALICE].encode()))
        assert c.line(3.0) == b"a NO [UNAVAILABLE] Service temporarily unavailable."
        assert time.monotonic() - t0 < 1.0
        c.send(b"b NOOP\r\n")
        assert c.until_tagged(b"b")[-1] == b"b OK NOOP completed."
        c.close()
        assert_serving(m, certs)
    finally:
        backends.start_dovecot()
    im = rig.IMAPS(m.imap_ports["imaps"], certs, src="127.0.0.28")
    im.login(ALICE, backends.users[ALICE])
    im.logout()
