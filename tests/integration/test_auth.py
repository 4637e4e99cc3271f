"""Authentication service (issue 5): the `sasl` verifier (Cyrus SASL, a sasldb2 made with
saslpasswd2) for SMTP, IMAP and POP3 against the rig's real Postfix and Dovecot, and the
brute-force control shared by all listeners: byte-identical failures, a growing failure delay,
per-session limits, per-address bans refused at connect, and a slow verifier that must not stall
other sessions. Negative cases first; every log the tests produce is grepped for the passwords.
"""

import base64
import os
import socket
import ssl
import subprocess
import threading
import time

import pytest

import rig

ALICE = ("alice@example.test", "alice-secret-1")
BOB = ("bob@example.test", "bob-secret-2")
WRONG_PASSWORD = "wrong-pw-7f3a"
PASSWORDS = (ALICE[1], BOB[1], WRONG_PASSWORD)

SMTP_FAILED = b"535 5.7.8 Authentication credentials invalid\r\n"
IMAP_FAILED = b"NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
POP3_FAILED = b"-ERR [AUTH] Authentication failed.\r\n"
FAILURE_DELAY_S = 0.4


def plain_b64(user, password):
    return base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()


def make_sasldb(path, users):
    for user, password in users:
        name, realm = user.split("@")
        subprocess.run(["saslpasswd2", "-f", path, "-c", "-p", "-u", realm, name],
                       input=password.encode(), check=True, timeout=10)


class Raw:
    """A line client over implicit TLS or plain TCP (STARTTLS done by the caller)."""

    def __init__(self, port, certs=None, src="127.0.0.2", timeout=8.0):
        self.sock = rig.client_socket(port, src, timeout=timeout)
        if certs is not None:
            self.sock = rig.client_context(certs).wrap_socket(self.sock,
                                                              server_hostname="mx.moat.test")
        self.buf = b""

    def send(self, text):
        self.sock.sendall(text.encode() + b"\r\n")

    def line(self):
        for _ in range(1000):
            i = self.buf.find(b"\n")
            if i >= 0:
                out, self.buf = self.buf[:i + 1], self.buf[i + 1:]
                return out
            chunk = self.sock.recv(4096)
            if not chunk:
                raise EOFError("closed; buffered %r" % self.buf)
            self.buf += chunk
        raise RuntimeError("no line")

    def until(self, prefix):
        for _ in range(100):
            ln = self.line()
            if ln.startswith(prefix):
                return ln
        raise RuntimeError("no line starting with %r" % prefix)

    def starttls(self, certs):
        self.sock = rig.client_context(certs).wrap_socket(self.sock,
                                                          server_hostname="mx.moat.test")

    def closed(self, timeout=3.0):
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(4096) == b""
        except (ConnectionResetError, ssl.SSLError):
            return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Front:
    """moat with verifier = sasl on submission (STARTTLS), IMAPS and POP3S, and one
    backend-verifier IMAPS listener, all sharing one brute-force table."""

    def __init__(self, moat, backends, certs, tmp, auth=None, workers=2, moat_keys=""):
        self.db = str(tmp / "sasldb2")
        make_sasldb(self.db, [ALICE, BOB])
        names = ("sub", "imaps", "pop3s", "imaps_backend")
        self.ports = dict(zip(names, rig.free_ports(len(names))))
        b = backends.ports
        backend_defs = {
            "pf": {"address": "127.0.0.1:%d" % b["smtp_xclient"], "identity": "xclient"},
            "dv_imap": {"address": "127.0.0.1:%d" % b["imap"], "identity": "id"},
            "dv_pop3": {"address": "127.0.0.1:%d" % b["pop3"], "identity": "xclient"},
        }
        L = lambda proto, name, tls, be: {"protocol": proto, "tls": tls, "backend": be,
                                          "listen": "127.0.0.1:%d" % self.ports[name]}
        listeners = {
            "sub": L("submission", "sub", "starttls", "pf"),
            "imaps": L("imap", "imaps", "implicit", "dv_imap"),
            "pop3s": L("pop3", "pop3s", "implicit", "dv_pop3"),
            "imaps_backend": dict(L("imap", "imaps_backend", "implicit", "dv_imap"),
                                  verifier="backend"),
        }
        a = {"verifier": "sasl", "sasldb_path": self.db, "realm": "example.test",
             "failure_delay": "%dms" % int(FAILURE_DELAY_S * 1000), "failure_delay_max": "2s",
             "max_failures": "3", "ban_ip": "6/1m", "ban_user": "0", "ban_time": "3s",
             "verify_timeout": "2s"}
        a.update(auth or {})
        conf_extra = ("[auth]\n" + "".join("%s = %s\n" % kv for kv in a.items()) +
                      "[timeouts]\nbackend_connect = 1s\nbackend_reply = 10s\n")
        conf = rig.moat_conf(certs, backend_defs, listeners, extra=conf_extra, workers=workers)
        conf = conf.replace("[moat]\n", "[moat]\n" + moat_keys, 1)
        self.moat = moat(conf, wait_ports=list(self.ports.values()))
        self.certs = certs

    def submission(self, src="127.0.0.2"):
        c = rig.smtp(self.ports["sub"], src=src)
        c.ehlo("client.test")
        c.starttls(context=rig.client_context(self.certs))
        c.ehlo("client.test")
        return c

    def raw(self, name, src="127.0.0.2"):
        return Raw(self.ports[name], self.certs, src=src)


@pytest.fixture
def front(moat, backends, certs, tmp_path):
    f = Front(moat, backends, certs, tmp_path)
    yield f
    assert_no_password_logged(f, backends)


def assert_no_password_logged(front, backends):
    logs = {"moat": front.moat.log(), "postfix": backends.postfix_log(),
            "dovecot": backends.dovecot_log()}
    for name, text in logs.items():
        for pw in PASSWORDS:
            assert pw not in text, "%s log contains a test password" % name
            assert plain_b64("", pw)[8:] not in text


def smtp_auth_raw(front, src, user, password):
    """One AUTH PLAIN on a fresh submission session: (reply line, seconds it took)."""
    c = Raw(front.ports["sub"], src=src)
    c.until(b"220 ")
    c.send("EHLO client.test")
    c.until(b"250 ")
    c.send("STARTTLS")
    c.until(b"220 ")
    c.starttls(front.certs)
    c.send("EHLO client.test")
    c.until(b"250 ")
    t = time.monotonic()
    c.send("AUTH PLAIN " + plain_b64(user, password))
    reply = c.line()
    return c, reply, time.monotonic() - t


# --- negative cases first ---------------------------------------------------------------------


def test_wrong_password_and_unknown_user_identical(front):
    """The same bytes for a wrong password and an unknown user, per protocol (sasl verifier)."""
    replies = []
    for user, pw in ((ALICE[0], WRONG_PASSWORD), ("nobody@example.test", WRONG_PASSWORD)):
        c, reply, _ = smtp_auth_raw(front, "127.0.0.3", user, pw)
        c.close()
        replies.append(reply)
    assert replies[0] == replies[1] == SMTP_FAILED
    for name in ("imaps", "imaps_backend"):
        got = []
        for user in (ALICE[0], "nobody@example.test"):
            c = front.raw(name, src="127.0.0.3")
            c.until(b"* OK")
            c.send('a1 LOGIN "%s" "%s"' % (user, WRONG_PASSWORD))
            got.append(c.line())
            c.close()
        assert got[0] == got[1] == b"a1 " + IMAP_FAILED, name
    got = []
    for user in (ALICE[0], "nobody@example.test"):
        c = front.raw("pop3s", src="127.0.0.4")
        c.until(b"+OK")
        c.send("AUTH PLAIN " + plain_b64(user, WRONG_PASSWORD))
        got.append(c.line())
        c.close()
    assert got[0] == got[1] == POP3_FAILED


def test_failures_delayed_then_session_closed(front):
    """Failure replies come after a growing delay; the third closes the session (421)."""
    c, reply, first = smtp_auth_raw(front, "127.0.0.5", ALICE[0], WRONG_PASSWORD)
    assert reply == SMTP_FAILED
    assert first >= FAILURE_DELAY_S * 0.9
    t = time.monotonic()
    c.send("AUTH PLAIN " + plain_b64(ALICE[0], WRONG_PASSWORD))
    assert c.line() == SMTP_FAILED
    second = time.monotonic() - t
    assert second >= 2 * FAILURE_DELAY_S * 0.9
    c.send("AUTH PLAIN " + plain_b64(ALICE[0], WRONG_PASSWORD))
    assert c.line() == SMTP_FAILED
    assert c.line().startswith(b"421 4.7.0 mx.moat.test")
    assert c.closed()
    # IMAP: tagged NO then BYE on the last one
    c = front.raw("imaps", src="127.0.0.6")
    c.until(b"* OK")
    for i in range(3):
        c.send('a%d LOGIN "%s" "%s"' % (i, ALICE[0], WRONG_PASSWORD))
        assert c.line() == b"a%d " % i + IMAP_FAILED
    assert c.line() == b"* BYE Too many authentication failures\r\n"
    assert c.closed()


def test_ban_per_address_refused_at_connect_and_expires(front):
    """ban_ip failures from one address ban it: SMTP 421, IMAP BYE, implicit TLS a plain close;
    another address is unaffected; the ban expires."""
    src = "127.0.0.7"
    for _ in range(3):  # 2 sessions x 3 failures = 6 = ban_ip
        c, reply, _ = smtp_auth_raw(front, src, ALICE[0], WRONG_PASSWORD)
        assert reply == SMTP_FAILED
        for _ in range(1):
            c.send("AUTH PLAIN " + plain_b64("nobody@example.test", WRONG_PASSWORD))
            assert c.line() == SMTP_FAILED
        c.close()
    assert "ban=client" in front.moat.log()
    c = Raw(front.ports["sub"], src=src)
    line = c.line()
    assert line.startswith(b"421 4.7.0 ") and b"Too many failures" in line
    assert c.closed()
    with pytest.raises((ssl.SSLError, ConnectionResetError, EOFError, OSError)):
        c = front.raw("imaps", src=src)
        c.until(b"* OK")
    # another address is fine, and logs in
    c = front.submission(src="127.0.0.8")
    assert c.login(*ALICE)[0] == 235
    c.quit()
    # the ban expires (ban_time 3s)
    rig.wait_until(lambda: _greets(front, src), timeout=6.0, interval=0.5, what="ban expiry")


def _greets(front, src):
    try:
        c = Raw(front.ports["sub"], src=src)
        ok = c.line().startswith(b"220 ")
        c.close()
        return ok
    except OSError:
        return False


def test_slow_verifier_does_not_stall_the_worker(moat, backends, certs, tmp_path):
    """saslauthd that accepts and never answers: a parallel session on the same (single) worker
    completes meanwhile, and the stuck job ends as a temporary failure."""
    sock_path = str(tmp_path / "mux")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock_path)
    srv.listen(8)
    held = []
    stop = threading.Event()

    def accept_and_hold():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                pass

    t = threading.Thread(target=accept_and_hold, daemon=True)
    t.start()
    try:
        f = Front(moat, backends, certs, tmp_path, workers=1,
                  auth={"pwcheck_method": "saslauthd", "saslauthd_path": sock_path})
        c = f.raw("imaps", src="127.0.0.9")
        c.until(b"* OK")
        start = time.monotonic()
        c.send('a1 LOGIN "%s" "%s"' % ALICE)
        # meanwhile another session on the same worker runs a whole dialogue
        other = f.raw("pop3s", src="127.0.0.10")
        assert other.line().startswith(b"+OK")
        other.send("CAPA")
        assert other.until(b".") == b".\r\n"
        other.send("QUIT")
        assert other.line().startswith(b"+OK")
        assert time.monotonic() - start < 1.5
        reply = c.line()
        waited = time.monotonic() - start
        assert reply == b"a1 NO [UNAVAILABLE] Service temporarily unavailable.\r\n"
        assert 1.8 <= waited < 5.0
        assert "event=auth_timeout" in f.moat.log()
        assert_no_password_logged(f, backends)
    finally:
        stop.set()
        t.join(timeout=2)
        for s in held:
            s.close()
        srv.close()


# --- logins with the sasl verifier ------------------------------------------------------------


def test_sasl_smtp_plain_and_login_then_xclient_login(front, backends):
    """AUTH PLAIN and AUTH LOGIN verified by moat; Postfix learns the login from XCLIENT."""
    before = len(backends.postfix_log())
    for mech in ("PLAIN", "LOGIN"):
        c = front.submission(src="127.0.0.11")
        c.user, c.password = ALICE
        code, _ = c.auth(mech, c.auth_plain if mech == "PLAIN" else c.auth_login)
        assert code == 235
        c.sendmail(ALICE[0], [BOB[0]], "Subject: sasl %s\r\n\r\nhello\r\n" % mech)
        c.quit()
    rig.wait_until(lambda: backends.postfix_log()[before:].count(
        "sasl_username=alice@example.test") >= 2, timeout=5.0, what="postfix sasl_username")
    log = front.moat.log()
    assert 'event=login' in log and 'mech=PLAIN verifier=sasl' in log
    assert 'mech=LOGIN verifier=sasl' in log


def test_sasl_imap_login_and_authenticate(front, backends):
    before = len(backends.dovecot_log())
    c = rig.IMAPS(front.ports["imaps"], front.certs, src="127.0.0.12")
    assert c.login(*ALICE)[0] == "OK"
    assert c.select("INBOX")[0] == "OK"
    c.logout()
    c = rig.IMAPS(front.ports["imaps"], front.certs, src="127.0.0.12")
    assert c.authenticate("PLAIN", lambda _: b"\0" + ALICE[0].encode() + b"\0" +
                          ALICE[1].encode())[0] == "OK"
    c.logout()
    rig.wait_until(lambda: backends.dovecot_log()[before:].count(
        "imap-login: Info: Login: user=<alice@example.test>") >= 2, timeout=5.0,
        what="dovecot login")
    assert "mech=IMAP-LOGIN verifier=sasl" in front.moat.log()


def test_sasl_pop3_user_pass_and_auth(front, backends):
    before = len(backends.dovecot_log())
    c = rig.POP3S(front.ports["pop3s"], front.certs, src="127.0.0.13")
    c.user(BOB[0])
    assert c.pass_(BOB[1]).startswith(b"+OK")
    c.quit()
    c = front.raw("pop3s", src="127.0.0.13")
    c.line()
    c.send("AUTH PLAIN " + plain_b64(*BOB))
    assert c.line().startswith(b"+OK")
    c.send("QUIT")
    c.close()
    rig.wait_until(lambda: backends.dovecot_log()[before:].count(
        "pop3-login: Info: Login: user=<bob@example.test>") >= 2, timeout=5.0,
        what="dovecot pop3 login")
    assert "mech=USER verifier=sasl" in front.moat.log()


def test_backend_verifier_login_line(front, backends):
    c = rig.IMAPS(front.ports["imaps_backend"], front.certs, src="127.0.0.14")
    assert c.login(*ALICE)[0] == "OK"
    c.logout()
    assert "mech=IMAP-LOGIN verifier=backend" in front.moat.log()
