"""What the backend leg must not hide or reset: a 421 from Postfix (its own error limit, on the
rig's smtp_strict service) reaches the client and ends the session instead of a fresh leg at the
next MAIL; backend refusals of MAIL/RCPT count toward max_errors; preauth_total does not fire on
a session that was handed off long ago when its leg is re-opened; and on an MX listener with AUTH
sender_login_match keeps a logged-in user to her own addresses. What reached Postfix is checked
in its log and the maildir."""

import subprocess
import time
import uuid

import rig
from smtp_helpers import ALICE, BOB, Raw, login, message, session, start_smtp_moat

NOBODY = "nobody-%s@example.test"  # unknown in Postfix's virtual mailbox table: 550 5.1.1


def start(moat, backends, certs, **listener):
    kv = dict({"protocol": "smtp", "tls": "starttls", "backend": "xclient",
               "local_domains": "example.test", "preauth_idle": "30s"}, **listener)
    return start_smtp_moat(moat, backends, certs, extra_listener={"x": kv}, extra_backends={
        name: {"address": "127.0.0.1:%d" % backends.ports["smtp_" + name], "identity": "xclient"}
        for name in ("strict", "slow")})


def postfix_lines(backends, ip):
    return [l for l in backends.postfix_log().splitlines() if "[%s]" % ip in l]


def test_backend_421_reaches_client_and_ends_session(moat, backends, certs):
    m = start(moat, backends, certs, backend="strict", max_errors="50")
    src = "127.0.0.61"
    c = session(m.smtp_ports["x"], src)
    assert c.cmd("MAIL FROM:<someone@remote.example>")[-1].startswith(b"250")
    # pipelined: Postfix refuses the first RCPT, then says 421 (its error limit) and closes
    c.send("RCPT TO:<%s>\r\nRCPT TO:<%s>\r\n" % (NOBODY % uuid.uuid4().hex, BOB))
    assert c.reply()[-1].startswith(b"550"), "the refusal"
    r = c.reply()[-1]
    assert r.startswith(b"421"), r
    assert c.closed(), "moat kept the session after the backend's 421"
    rig.wait_until(lambda: any("too many errors" in l or "disconnect" in l
                               for l in postfix_lines(backends, src)), 5, what="postfix log")
    # no second leg was opened for this client (Postfix's log may lag behind its replies)
    def connects():
        return sum("connect from" in l for l in postfix_lines(backends, src))
    rig.wait_until(lambda: connects() >= 1, 10, what="postfix connect line")
    assert connects() == 1
    assert m.alive()


def test_backend_last_replies_survive_its_reset(moat, backends, certs):
    """Postfix answers 550, then 421, and closes with the second pipelined RCPT unread, so its
    kernel resets the connection; moat's write of that RCPT may then fail before it has read
    the two replies. They must still reach the client, in order: the reset is handled after
    what came before it. A race, likeliest on a moat's first hand-off (a fresh Postfix smtpd):
    ten fresh moats, which lost the replies within the first few before."""
    for i in range(10):
        m = start(moat, backends, certs, backend="strict", max_errors="50")
        c = session(m.smtp_ports["x"], "127.0.1.%d" % (10 + i))
        assert c.cmd("MAIL FROM:<someone@remote.example>")[-1].startswith(b"250")
        c.send("RCPT TO:<%s>\r\nRCPT TO:<%s>\r\n" % (NOBODY % uuid.uuid4().hex, BOB))
        first = c.reply()[-1]
        assert first.startswith(b"550"), "moat %d: %r" % (i, first)
        second = c.reply()[-1]
        assert second.startswith(b"421") and b"4.4.0" not in second, "moat %d: %r" % (
            i, second)
        assert c.closed()
        assert m.alive()
        m.stop()


def test_backend_refusals_count_toward_max_errors(moat, backends, certs):
    m = start(moat, backends, certs, max_errors="3")
    src = "127.0.0.62"
    c = session(m.smtp_ports["x"], src)
    assert c.cmd("MAIL FROM:<someone@remote.example>")[-1].startswith(b"250")
    for i in range(2):
        assert c.cmd("RCPT TO:<%s>" % (NOBODY % uuid.uuid4().hex))[-1].startswith(b"550")
    # the third refusal reaches the limit: the refusal, then moat's 421, then the close
    c.send("RCPT TO:<%s>\r\n" % (NOBODY % uuid.uuid4().hex))
    assert c.reply()[-1].startswith(b"550")
    r = c.reply()[-1]
    assert r.startswith(b"421 4.7.0") and b"too many errors" in r, r
    assert c.closed()
    rig.wait_until(lambda: "reason=too_many_errors" in m.log(), 5, what="close line")
    # Postfix writes its log on its own time: wait for the three lines, then no more than three
    def rejects():
        return [l for l in postfix_lines(backends, src) if "reject: RCPT" in l]
    rig.wait_until(lambda: len(rejects()) >= 3, 10, what="Postfix's three rejects logged")
    assert len(rejects()) == 3, rejects()


def test_preauth_total_not_applied_after_handoff(moat, backends, certs):
    # the slow backend's greeting takes a second: the first leg is up well within preauth_total,
    # the second is opened after it
    m = start(moat, backends, certs, backend="slow", preauth_total="4s", message_size="2000",
              backend_reply="10s")
    src = "127.0.0.63"
    began = time.monotonic()
    c = session(m.smtp_ports["x"], src)
    assert c.cmd("MAIL FROM:<someone@remote.example>")[-1].startswith(b"250")
    assert c.cmd("RCPT TO:<%s>" % BOB)[-1].startswith(b"250")
    assert c.cmd("DATA")[-1].startswith(b"354")
    # too big: moat refuses it and drops the backend leg; the next MAIL opens a new one
    c.send(message("big", body="x" * 3000) + ".\r\n")
    assert c.reply()[-1].startswith(b"552")
    time.sleep(max(0.0, 4.5 - (time.monotonic() - began)))  # past preauth_total
    r = c.cmd("MAIL FROM:<someone@remote.example>")[-1]
    assert r.startswith(b"250"), r
    assert c.cmd("RCPT TO:<%s>" % BOB)[-1].startswith(b"250")
    assert c.cmd("DATA")[-1].startswith(b"354")
    subject = "second-leg-" + uuid.uuid4().hex
    c.send(message(subject) + ".\r\n")
    assert c.reply()[-1].startswith(b"250")
    c.cmd("QUIT")
    c.close()
    backends.wait_maildir(BOB, subject)
    assert "preauth_total" not in m.log()


def test_preauth_total_not_applied_after_login(moat, backends, certs, tmp_path):
    # moat verifies the login itself (verifier = sasl): no backend leg until MAIL
    db = str(tmp_path / "sasldb2")
    name, realm = ALICE.split("@")
    subprocess.run(["saslpasswd2", "-f", db, "-c", "-p", "-u", realm, name],
                   input=backends.users[ALICE].encode(), check=True, timeout=10)
    port = rig.free_port()
    conf = rig.moat_conf(
        certs, {"pf": {"address": "127.0.0.1:%d" % backends.ports["smtp_xclient"],
                       "identity": "xclient"}},
        {"sub": {"protocol": "submission", "tls": "starttls", "backend": "pf",
                 "listen": "127.0.0.1:%d" % port, "preauth_total": "3s",
                 "preauth_idle": "30s"}},
        extra="[auth]\nverifier = sasl\nsasldb_path = %s\nrealm = example.test\n" % db)
    m = moat(conf, wait_ports=[port])
    began = time.monotonic()
    c = session(port, "127.0.0.66", certs, starttls=True)
    assert login(c, ALICE, backends=backends)[-1].startswith(b"235")
    time.sleep(max(0.0, 3.5 - (time.monotonic() - began)))  # past preauth_total
    r = c.cmd("MAIL FROM:<%s>" % ALICE)[-1]
    assert r.startswith(b"250"), r
    assert c.cmd("RCPT TO:<%s>" % BOB)[-1].startswith(b"250")
    assert c.cmd("DATA")[-1].startswith(b"354")
    subject = "after-login-" + uuid.uuid4().hex
    c.send(message(subject, sender=ALICE) + ".\r\n")
    assert c.reply()[-1].startswith(b"250")
    c.cmd("QUIT")
    c.close()
    backends.wait_maildir(BOB, subject)
    assert "preauth_total" not in m.log()


def send_as(port, certs, backends, src, sender, mark):
    c = session(port, src, certs, starttls=True)
    assert login(c, ALICE, backends=backends)[-1].startswith(b"235")
    reply = c.cmd("MAIL FROM:<%s>" % sender)[-1]
    if reply.startswith(b"250"):
        assert c.cmd("RCPT TO:<%s>" % BOB)[-1].startswith(b"250")
        assert c.cmd("DATA")[-1].startswith(b"354")
        c.send(message(mark, sender=sender) + ".\r\n")
        assert c.reply()[-1].startswith(b"250")
    c.cmd("QUIT")
    c.close()
    return reply


def test_mx_with_auth_enforces_sender_login_match(moat, backends, certs):
    m = start(moat, backends, certs, auth="yes")
    port = m.smtp_ports["x"]
    refused = "as-bob-" + uuid.uuid4().hex
    r = send_as(port, certs, backends, "127.0.0.64", BOB, refused)
    assert r.startswith(b"553 5.7.1"), r
    ok = "as-alice-" + uuid.uuid4().hex
    assert send_as(port, certs, backends, "127.0.0.65", ALICE, ok).startswith(b"250")
    backends.wait_maildir(BOB, ok)
    assert not any(refused.encode() in body for _, body in backends.messages(BOB))
    assert not any("from=<%s>" % BOB in l for l in postfix_lines(backends, "127.0.0.64"))
