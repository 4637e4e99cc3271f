"""Per-client SMTP rates and the early-talker check, against the real Postfix:
messages_per_client refuses the (N+1)th message with 450 4.7.1 and the backend received exactly
N; recipients_per_client refuses with 452 4.5.3; another client address is unaffected; with
greet_pause, a client that talks before the greeting is refused, a patient one is served, and
in log mode the early talker is only logged."""

import time
import uuid

import rig
from smtp_helpers import BOB, LOCAL, Raw, message, session, start_smtp_moat

MX = {"protocol": "smtp", "tls": "starttls", "backend": "xclient", "local_domains": LOCAL}


def start(moat, backends, certs):
    return start_smtp_moat(moat, backends, certs, extra_listener={
        "rated": dict(MX, messages_per_client="2/1h", recipients_per_client="3/1h"),
        "paused": dict(MX, greet_pause="1s"),
        "paused_log": dict(MX, greet_pause="1s", greet_mode="log"),
    })


def send(c, mark, rcpts=(BOB,)):
    """One transaction; returns the MAIL reply line, or the 250 to end-of-data."""
    mail = c.cmd("MAIL FROM:<sender@remote.example>")[-1]
    if not mail.startswith(b"250"):
        return mail
    for r in rcpts:
        assert c.cmd("RCPT TO:<%s>" % r)[-1].startswith(b"250")
    assert c.cmd("DATA")[-1].startswith(b"354")
    c.send(message(mark) + ".\r\n")
    return c.reply()[-1]


def count_marked(backends, user, mark):
    return sum(1 for _, body in backends.messages(user) if mark.encode() in body)


def test_message_rate_per_client(moat, backends, certs):
    m = start(moat, backends, certs)
    mark = "rate-%s" % uuid.uuid4().hex
    c = session(m.smtp_ports["rated"], "127.0.0.51")
    assert send(c, mark + "-1").startswith(b"250")
    c.cmd("QUIT")
    c.close()
    c = session(m.smtp_ports["rated"], "127.0.0.51")  # the rate is per client, not per session
    assert send(c, mark + "-2").startswith(b"250")
    refused = send(c, mark + "-3")
    assert refused.startswith(b"450 4.7.1"), refused
    c.cmd("QUIT")
    c.close()
    # another client address is not affected
    other = session(m.smtp_ports["rated"], "127.0.0.52")
    assert send(other, mark + "-other").startswith(b"250")
    other.cmd("QUIT")
    other.close()
    backends.wait_maildir(BOB, mark + "-other")
    rig.wait_until(lambda: count_marked(backends, BOB, mark) == 3, 5, what="three deliveries")
    time.sleep(0.5)  # nothing else may arrive
    assert count_marked(backends, BOB, mark + "-3") == 0
    assert count_marked(backends, BOB, mark) == 3
    assert "reason=messages_per_client" in m.log()


def test_recipient_rate_per_client(moat, backends, certs):
    m = start(moat, backends, certs)
    c = session(m.smtp_ports["rated"], "127.0.0.53")
    assert c.cmd("MAIL FROM:<sender@remote.example>")[-1].startswith(b"250")
    for r in ("alice@example.test", BOB, "alice@example.test"):
        assert c.cmd("RCPT TO:<%s>" % r)[-1].startswith(b"250")
    fourth = c.cmd("RCPT TO:<%s>" % BOB)[-1]
    assert fourth.startswith(b"452 4.5.3"), fourth
    c.cmd("QUIT")
    c.close()
    assert "reason=recipients_per_client" in m.log()


def test_early_talker_refused(moat, backends, certs):
    m = start(moat, backends, certs)
    early = Raw.plain(m.smtp_ports["paused"], "127.0.0.54")
    early.send("EHLO bot.example\r\n")
    line = early.line()
    assert line.startswith(b"554 5.5.1"), line
    assert early.closed()
    early.close()
    rig.wait_until(lambda: "reason=early_talker" in m.log(), 5, what="early talker logged")
    # a patient client waits for the greeting and delivers
    t0 = time.monotonic()
    patient = Raw.plain(m.smtp_ports["paused"], "127.0.0.55")
    assert patient.code() == 220
    assert time.monotonic() - t0 >= 0.9
    assert patient.cmd("EHLO good.example")[-1].startswith(b"250")
    mark = "patient-%s" % uuid.uuid4().hex
    assert send(patient, mark).startswith(b"250")
    patient.cmd("QUIT")
    patient.close()
    backends.wait_maildir(BOB, mark)


def test_early_talker_log_mode_lets_it_through(moat, backends, certs):
    m = start(moat, backends, certs)
    c = Raw.plain(m.smtp_ports["paused_log"], "127.0.0.56")
    c.send("EHLO early.example\r\n")
    assert c.code() == 220  # greeting first, then the answer to the early EHLO
    assert c.reply()[-1].startswith(b"250")
    c.cmd("QUIT")
    c.close()
    log = m.log()
    assert "event=would_refuse" in log and "reason=early_talker" in log and "mode=log" in log
