"""SMTP front, deliveries end to end with real clients (swaks, smtplib) through 25 (plaintext and
STARTTLS), 587 (STARTTLS + AUTH) and 465 (implicit TLS + AUTH): the mail is in the maildir and
Postfix's log shows the real client (XCLIENT) and, for submission, the login. Also: AUTH
failures, sender/login mismatch, authenticated relay queued, pipelining order."""

import re
import subprocess
import time
import uuid

import pytest

import rig
from smtp_helpers import (ALICE, BOB, Raw, login, message, session, start_smtp_moat)


@pytest.fixture
def m(moat, backends, certs):
    backends.flush_queue()
    return start_smtp_moat(moat, backends, certs)


def swaks(port, *args):
    cmd = ["swaks", "--server", "127.0.0.1:%d" % port, "--local-interface", "127.0.0.2",
           "--timeout", "15"] + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def marker():
    return "moat-" + uuid.uuid4().hex[:12]


def test_auth_failure_same_reply(m, backends, certs):
    c = session(m.smtp_ports["submission"], "127.0.0.11", certs, starttls=True)
    r1 = login(c, ALICE, "wrong-password")
    r2 = login(c, "nobody@example.test", "x")
    assert r1[-1] == r2[-1] == b"535 5.7.8 Authentication credentials invalid"
    r3 = login(c, ALICE, "wrong-again")
    assert r3[-1].startswith(b"535")
    with pytest.raises(EOFError):
        while True:
            if c.line().startswith(b"421"):
                break
        c.line()
    c.close()
    ok = [l for l in backends.postfix_log().splitlines()
          if "127.0.0.11" in l and "sasl_username=" in l and "failed" not in l]
    assert ok == []


def test_swaks_mx_plain_and_starttls(m, backends, certs):
    for tls in ([], ["--tls"]):
        mk = marker()
        r = swaks(m.smtp_ports["mx"], "--to", BOB, "--from", "someone@remote.example",
                  "--header", "Subject: " + mk, *tls)
        assert r.returncode == 0, r.stdout + r.stderr
        data = backends.wait_maildir(BOB, mk)
        assert b"127.0.0.2" in data  # Received: from the real client, via XCLIENT
    log = backends.postfix_log()
    assert re.search(r"postfix/smtp_xclient/smtpd\[\d+\]: \w+: client=\S*\[127\.0\.0\.2\]", log)


def test_swaks_submission_and_submissions(m, backends, certs):
    pw = backends.users[ALICE]
    mk = marker()
    r = swaks(m.smtp_ports["submission"], "--to", BOB, "--from", ALICE, "--tls", "--auth",
              "PLAIN", "--auth-user", ALICE, "--auth-password", pw, "--header", "Subject: " + mk)
    assert r.returncode == 0, r.stdout + r.stderr
    backends.wait_maildir(BOB, mk)
    mk = marker()
    r = swaks(m.smtp_ports["submissions"], "--to", BOB, "--from", ALICE, "--tlsc", "--auth",
              "LOGIN", "--auth-user", ALICE, "--auth-password", pw, "--header", "Subject: " + mk)
    assert r.returncode == 0, r.stdout + r.stderr
    backends.wait_maildir(BOB, mk)
    log = backends.postfix_log()
    assert re.search(r"client=\S*\[127\.0\.0\.2\].*sasl_username=alice@example\.test", log)


def test_smtplib_all_ports(m, backends, certs):
    pw = backends.users[ALICE]
    mk = marker()
    with rig.smtp(m.smtp_ports["mx"]) as s:
        s.ehlo("smtplib.test")
        s.starttls(context=rig.client_context(certs))
        s.ehlo("smtplib.test")
        assert "auth" not in s.esmtp_features
        s.sendmail("x@remote.example", [BOB], message(mk))
    backends.wait_maildir(BOB, mk)
    mk = marker()
    with rig.smtp(m.smtp_ports["submission"]) as s:
        s.ehlo("smtplib.test")
        assert "auth" not in s.esmtp_features
        s.starttls(context=rig.client_context(certs))
        s.ehlo("smtplib.test")
        assert "auth" in s.esmtp_features
        s.login(ALICE, pw)
        s.sendmail(ALICE, [BOB], message(mk, sender=ALICE))
    backends.wait_maildir(BOB, mk)
    mk = marker()
    with rig.smtp(m.smtp_ports["submissions"], tls=True, certs=certs) as s:
        s.login(ALICE, pw)
        s.sendmail(ALICE, [BOB], message(mk, sender=ALICE))
    backends.wait_maildir(BOB, mk)


def test_submission_sender_login_and_relay(m, backends, certs):
    pw = backends.users[ALICE]
    c = session(m.smtp_ports["submissions"], "127.0.0.12", certs, implicit=True)
    assert login(c, ALICE, pw)[-1].startswith(b"235")
    assert c.cmd("AUTH PLAIN AAAA")[-1].startswith(b"503")
    assert c.cmd("MAIL FROM:<%s>" % BOB)[-1].startswith(b"553 5.7.1")
    assert c.cmd("MAIL FROM:<%s> SIZE=999999999999" % ALICE)[-1].startswith(b"552 5.3.4")
    assert c.cmd("MAIL FROM:<%s>" % ALICE)[-1].startswith(b"250")
    assert c.cmd("RCPT TO:<friend@far.example>")[-1].startswith(b"250")
    assert c.cmd("DATA")[-1].startswith(b"354")
    c.send(message("relay", sender=ALICE, to="friend@far.example") + ".\r\n")
    assert c.reply()[-1].startswith(b"250")
    c.cmd("QUIT")
    c.close()
    rig.wait_until(lambda: "friend@far.example" in backends.queue(), 5, what="queued")


def test_pipelining_in_order(m, backends, certs):
    c = session(m.smtp_ports["mx"], "127.0.0.13")
    mk = marker()
    c.send("MAIL FROM:<p@remote.example>\r\nRCPT TO:<%s>\r\nRCPT TO:<x@far.example>\r\n"
           "RCPT TO:<%s>\r\nDATA\r\n" % (BOB, ALICE))
    replies = [c.reply()[-1][:3] for _ in range(5)]
    assert replies == [b"250", b"250", b"554", b"250", b"354"]
    c.send(message(mk) + ".\r\nRSET\r\nNOOP\r\nQUIT\r\n")
    replies = [c.reply()[-1][:3] for _ in range(4)]
    assert replies == [b"250", b"250", b"250", b"221"]
    c.close()
    backends.wait_maildir(BOB, mk)
    backends.wait_maildir(ALICE, mk)


def test_recipient_limit(moat, backends, certs):
    m = start_smtp_moat(moat, backends, certs, extra_listener={
        "small": {"protocol": "smtp", "tls": "none", "backend": "xclient",
                  "local_domains": "example.test", "max_recipients": "2"}})
    c = session(m.smtp_ports["small"], "127.0.0.14")
    assert c.cmd("MAIL FROM:<a@remote.example>")[-1].startswith(b"250")
    assert c.cmd("RCPT TO:<%s>" % BOB)[-1].startswith(b"250")
    assert c.cmd("RCPT TO:<%s>" % ALICE)[-1].startswith(b"250")
    assert c.cmd("RCPT TO:<%s>" % BOB)[-1].startswith(b"452 4.5.3")
    c.close()
