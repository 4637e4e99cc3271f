"""POP3 front (issue 4) against the real Dovecot of the test rig.

Negative cases first: refusals before TLS, STLS injection, bad input, failed logins that look
alike, Dovecot stopped. Then real clients (poplib, curl) over 995 and STLS on 110 for each
identity (xclient, proxy-v2, none), asserting what Dovecot logged (rip=) and what the maildir
holds, not only what moat said.
"""

import base64
import re
import shutil
import ssl
import subprocess
import time

import pytest

import rig

PLAINTEXT_REFUSED = (b"-ERR [AUTH] Plaintext authentication disallowed on non-secure "
                     b"connections\r\n")
CAPA_PLAIN = b"+OK\r\nSTLS\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n.\r\n"
CAPA_TLS = b"+OK\r\nUSER\r\nSASL PLAIN LOGIN\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n.\r\n"
AUTH_FAILED = b"-ERR [AUTH] Authentication failed.\r\n"
TEMP_FAIL = b"-ERR [SYS/TEMP] Service temporarily unavailable\r\n"
GREETING = b"+OK mx.moat.test ready.\r\n"
ALICE = ("alice@example.test", "alice-secret-1")


def plain_b64(user, password):
    return base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()


class Front:
    """One moat with POP3 listeners: pop3 (STLS) and pop3s (implicit) per backend identity,
    plus an SMTP listener to prove moat keeps serving other protocols."""

    def __init__(self, moat, backends, certs, timeouts=None):
        ports = rig.free_ports(8)
        b = backends.ports
        self.ports = {
            "pop3_xclient": ports[0], "pop3s_xclient": ports[1],
            "pop3_proxy": ports[2], "pop3s_proxy": ports[3],
            "pop3_none": ports[4], "pop3s_none": ports[5],
            "pop3_plain": ports[6], "smtp": ports[7],
        }
        backend_defs = {
            "dv_xclient": {"address": "127.0.0.1:%d" % b["pop3"], "identity": "xclient"},
            "dv_proxy": {"address": "127.0.0.1:%d" % b["pop3_proxy"], "identity": "proxy-v2"},
            "dv_none": {"address": "127.0.0.1:%d" % b["pop3"], "identity": "none"},
            "pf": {"address": "127.0.0.1:%d" % b["smtp_plain"], "identity": "none"},
        }
        listeners = {}
        for ident, be in (("xclient", "dv_xclient"), ("proxy", "dv_proxy"), ("none", "dv_none")):
            listeners["pop3_" + ident] = {
                "protocol": "pop3", "listen": "127.0.0.1:%d" % self.ports["pop3_" + ident],
                "tls": "starttls", "backend": be}
            listeners["pop3s_" + ident] = {
                "protocol": "pop3", "listen": "127.0.0.1:%d" % self.ports["pop3s_" + ident],
                "tls": "implicit", "backend": be}
        listeners["pop3_plain"] = {
            "protocol": "pop3", "listen": "127.0.0.1:%d" % self.ports["pop3_plain"],
            "tls": "none", "backend": "dv_xclient"}
        listeners["smtp"] = {
            "protocol": "smtp", "listen": "127.0.0.1:%d" % self.ports["smtp"],
            "tls": "starttls", "backend": "pf", "local_domains": "example.test"}
        # Dovecot delays repeated failures from one address (auth penalty: 2 s, 4 s, ...)
        tmo = {"backend_reply": "10s", "backend_connect": "1s"}
        tmo.update(timeouts or {})
        conf = rig.moat_conf(certs, backend_defs, listeners,
                             extra="[timeouts]\n" + "".join("%s = %s\n" % kv for kv in tmo.items()))
        self.moat = moat(conf, wait_ports=list(self.ports.values()))
        self.certs = certs
        self.ctx = rig.client_context(certs)


@pytest.fixture
def front(moat, backends, certs):
    return Front(moat, backends, certs)


class Raw:
    """A line-oriented raw POP3 client (plain or TLS) with bounded reads."""

    def __init__(self, port, ctx=None, src="127.0.0.2", timeout=5.0):
        self.sock = rig.client_socket(port, src, timeout=timeout)
        if ctx is not None:
            self.sock = ctx.wrap_socket(self.sock, server_hostname="mx.moat.test")
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def line(self):
        for _ in range(10000):
            i = self.buf.find(b"\n")
            if i >= 0:
                out, self.buf = self.buf[:i + 1], self.buf[i + 1:]
                return out
            chunk = self.sock.recv(4096)
            if not chunk:
                raise EOFError("connection closed; buffered %r" % self.buf)
            self.buf += chunk
        raise RuntimeError("no line")

    def multiline(self):
        out = self.line()
        if not out.startswith(b"+OK"):
            return out
        for _ in range(1000):
            ln = self.line()
            out += ln
            if ln == b".\r\n":
                return out
        raise RuntimeError("unterminated multi-line reply")

    def cmd(self, text):
        self.send(text + "\r\n")
        return self.line()

    def starttls(self, ctx):
        self.sock = ctx.wrap_socket(self.sock, server_hostname="mx.moat.test")

    def closed_by_peer(self, timeout=2.0):
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


def logins_since(backends, offset):
    return [ln for ln in backends.dovecot_log()[offset:].splitlines()
            if "pop3-login: Info: Login: user=<alice@example.test>" in ln]


# --------------------------------------------------------------------------------------------
# negative cases


def test_refusals_before_tls(front, backends):
    dv_offset = len(backends.dovecot_log())
    c = Raw(front.ports["pop3_xclient"])
    try:
        assert c.line() == GREETING
        c.send("CAPA\r\n")
        assert c.multiline() == CAPA_PLAIN
        assert c.cmd("USER alice@example.test") == PLAINTEXT_REFUSED
        assert c.cmd("PASS alice-secret-1") == PLAINTEXT_REFUSED
        assert c.cmd("AUTH PLAIN " + plain_b64(*ALICE)) == PLAINTEXT_REFUSED
        assert c.cmd("AUTH LOGIN") == PLAINTEXT_REFUSED
        assert c.cmd("AUTH") == PLAINTEXT_REFUSED
        assert c.cmd("APOP alice@example.test 0123456789abcdef0123456789abcdef").startswith(
            b"-ERR")
        assert c.cmd("STAT") == b"-ERR Not authenticated\r\n"
        assert c.cmd("NOOP") == b"+OK\r\n"
    finally:
        c.close()
    # a listener without TLS never takes a password and never offers STLS
    c = Raw(front.ports["pop3_plain"])
    try:
        assert c.line() == GREETING
        c.send("CAPA\r\n")
        assert c.multiline() == b"+OK\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n.\r\n"
        assert c.cmd("STLS").startswith(b"-ERR")
        assert c.cmd("USER alice@example.test") == PLAINTEXT_REFUSED
        assert c.cmd("QUIT") == b"+OK Bye\r\n"
    finally:
        c.close()
    # nothing reached Dovecot
    assert "backend_connected" not in front.moat.log()
    assert logins_since(backends, dv_offset) == []


def test_stls_injection(front):
    c = Raw(front.ports["pop3_xclient"])
    try:
        assert c.line() == GREETING
        c.send("STLS\r\nUSER alice@example.test\r\n")
        assert c.line() == b"+OK Begin TLS negotiation\r\n"
        assert c.buf == b""
        c.starttls(front.ctx)
        # the injected USER must not be answered inside TLS: the first reply is STAT's
        assert c.cmd("STAT") == b"-ERR Not authenticated\r\n"
        c.send("CAPA\r\n")
        assert c.multiline() == CAPA_TLS
        assert c.cmd("STLS") == b"-ERR TLS already active\r\n"
        assert c.cmd("PASS alice-secret-1") == b"-ERR No user name given\r\n"
    finally:
        c.close()
    rig.wait_until(lambda: "starttls_discard" in front.moat.log(), 2, what="discard log")
    assert re.search(r"starttls_discard .*bytes=25", front.moat.log())


def test_bad_input(front):
    c = Raw(front.ports["pop3s_xclient"], front.ctx)
    try:
        assert c.line() == GREETING
        assert c.cmd("NO\0OP").startswith(b"-ERR")
        c.send(b"\x01\x02\xff\xfe\x80 garbage\r\n")
        assert c.line() == b"-ERR Unknown command\r\n"
        c.send(b"\x00\x01\x02\xff" * 100 + b"\r\n")
        assert c.line().startswith(b"-ERR")
        c.send(b"A" * 5000 + b"\r\n")
        assert c.line() == b"-ERR Line too long\r\n"
        assert c.cmd("NOOP") == b"+OK\r\n"
        # invalid base64 gets an error, never a continuation
        assert c.cmd("AUTH PLAIN !!!!") == b"-ERR [AUTH] Invalid authentication data\r\n"
        assert c.cmd("AUTH PLAIN") == b"+ \r\n"
        assert c.cmd("%%%%====") == b"-ERR [AUTH] Invalid authentication data\r\n"
        assert c.cmd("AUTH LOGIN") == b"+ VXNlcm5hbWU6\r\n"
        assert c.cmd("*") == b"-ERR Authentication cancelled\r\n"
        assert c.cmd("AUTH CRAM-MD5") == b"-ERR Unsupported authentication mechanism\r\n"
        assert c.cmd("NOOP") == b"+OK\r\n"
    finally:
        c.close()
    # over-long lines without end until the error limit: moat closes, and keeps serving
    c = Raw(front.ports["pop3s_xclient"], front.ctx)
    try:
        assert c.line() == GREETING
        # one command at a time: nothing is sent after moat may have closed
        replies = []
        for _ in range(12):
            c.send("BOGUS\r\n")
            replies.append(c.line())
            if replies[-1] != b"-ERR Unknown command\r\n":
                break
        assert replies[-1] == b"-ERR Too many errors\r\n", replies
        assert len(replies) == 10, replies
        assert c.closed_by_peer()
    finally:
        c.close()
    assert front.moat.alive()
    c = Raw(front.ports["pop3s_xclient"], front.ctx)
    try:
        assert c.line() == GREETING
        assert c.cmd("QUIT") == b"+OK Bye\r\n"
    finally:
        c.close()


def failed_login(front, user, password, how, src):
    c = Raw(front.ports["pop3s_xclient"], front.ctx, src=src)
    try:
        assert c.line() == GREETING
        if how == "user":
            assert c.cmd("USER " + user) == b"+OK\r\n"
            return c.cmd("PASS " + password)
        return c.cmd("AUTH PLAIN " + plain_b64(user, password))
    finally:
        c.close()


def test_wrong_password_same_as_unknown_user(front, backends):
    dv_offset = len(backends.dovecot_log())
    # one source address per attempt: Dovecot's auth penalty would otherwise slow them down
    for i, how in enumerate(("user", "auth")):
        wrong = failed_login(front, "alice@example.test", "not-her-password", how,
                             rig.src_addr(10 + 2 * i))
        unknown = failed_login(front, "nobody@example.test", "whatever-1", how,
                               rig.src_addr(11 + 2 * i))
        assert wrong == unknown == AUTH_FAILED
    log = backends.dovecot_log()[dv_offset:]
    assert "Password mismatch" in log or "password mismatch" in log
    assert "unknown user" in log
    # max_failures (3) in one session closes it
    c = Raw(front.ports["pop3s_xclient"], front.ctx, src=rig.src_addr(14))
    try:
        assert c.line() == GREETING
        for _ in range(2):
            assert c.cmd("AUTH PLAIN " + plain_b64("alice@example.test", "bad")) == AUTH_FAILED
        assert c.cmd("AUTH PLAIN " + plain_b64("alice@example.test", "bad")) == \
            b"-ERR [AUTH] Too many authentication failures\r\n"
        assert c.closed_by_peer()
    finally:
        c.close()


def test_dovecot_stopped(front, backends):
    backends.stop_dovecot()
    try:
        for port in (front.ports["pop3s_xclient"], front.ports["pop3s_proxy"]):
            c = Raw(port, front.ctx)
            try:
                assert c.line() == GREETING
                t0 = time.monotonic()
                assert c.cmd("USER alice@example.test") == b"+OK\r\n"
                assert c.cmd("PASS alice-secret-1") == TEMP_FAIL
                assert time.monotonic() - t0 < 1.0
                assert c.cmd("NOOP") == b"+OK\r\n"
            finally:
                c.close()
        # SMTP through moat keeps working
        s = rig.smtp(front.ports["smtp"])
        try:
            code, _ = s.ehlo("client.example")
            assert code == 250
        finally:
            s.quit()
        assert front.moat.alive()
    finally:
        backends.start_dovecot()
    # and logins work again
    p = rig.POP3S(front.ports["pop3s_xclient"], ctx=front.ctx)
    try:
        p.user(ALICE[0])
        assert p.pass_(ALICE[1]).startswith(b"+OK")
    finally:
        p.quit()


def test_preauth_idle_timeout(moat, backends, certs):
    f = Front(moat, backends, certs, timeouts={"preauth_idle": "1s"})
    c = Raw(f.ports["pop3s_xclient"], f.ctx)
    try:
        assert c.line() == GREETING
        c.sock.settimeout(4)
        assert c.line() == b"-ERR [SYS/TEMP] Autologout; idle for too long\r\n"
        assert c.closed_by_peer()
    finally:
        c.close()


# --------------------------------------------------------------------------------------------
# real clients


@pytest.mark.parametrize("ident,rip", [("xclient", "127.0.0.2"), ("proxy", "127.0.0.2"),
                                       ("none", "127.0.0.1")])
def test_poplib_pop3s_and_stls(front, backends, ident, rip):
    subject = "pop3-%s-%d" % (ident, time.monotonic_ns())
    backends.deliver(ALICE[0], subject, "hello through moat " + ident)
    dv_offset = len(backends.dovecot_log())
    # implicit TLS, USER/PASS
    p = rig.POP3S(front.ports["pop3s_" + ident], ctx=front.ctx)
    try:
        assert p.getwelcome() == GREETING.rstrip()
        assert "SASL" in p.capa()
        p.user(ALICE[0])
        assert p.pass_(ALICE[1]).startswith(b"+OK")
        count, _ = p.stat()
        assert count >= 1
        _, listing, _ = p.list()
        assert len(listing) == count
        found = any(subject.encode() in b"\n".join(p.retr(i + 1)[1]) for i in range(count))
        assert found
    finally:
        p.quit()
    # STLS on the plain port, AUTH PLAIN with an initial response
    p = rig.POP3(front.ports["pop3_" + ident])
    try:
        assert "STLS" in p.capa() and "USER" not in p.capa()
        p.stls(context=front.ctx)
        assert "USER" in p.capa()
        assert p._shortcmd("AUTH PLAIN " + plain_b64(*ALICE)).startswith(b"+OK")
        count, _ = p.stat()
        assert any(subject.encode() in b"\n".join(p.retr(i + 1)[1]) for i in range(count))
    finally:
        p.quit()
    lines = rig.wait_until(lambda: len(logins_since(backends, dv_offset)) >= 2 and
                           logins_since(backends, dv_offset), 3, what="dovecot logins")
    for ln in lines[:2]:
        assert "rip=%s" % rip in ln, ln
        assert "secured" in ln, ln
    if ident == "xclient":
        sids = re.findall(r"event=login sid=([0-9a-f]+)", front.moat.log())
        assert any("session=<%s>" % sid in lines[0] + lines[1] for sid in sids)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
@pytest.mark.parametrize("scheme", ["pop3s", "pop3"])
def test_curl(front, backends, scheme):
    subject = "curl-%s-%d" % (scheme, time.monotonic_ns())
    backends.deliver(ALICE[0], subject, "hello curl")
    dv_offset = len(backends.dovecot_log())
    port = front.ports["pop3s_xclient" if scheme == "pop3s" else "pop3_xclient"]
    # the last message is the one just delivered
    r = subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert", front.certs.ca,
                        "--interface", "127.0.0.2", "--resolve", "mx.moat.test:%d:127.0.0.1" % port,
                        "-u", "%s:%s" % ALICE, "%s://mx.moat.test:%d/" % (scheme, port)]
                       + (["--ssl-reqd"] if scheme == "pop3" else []),
                       capture_output=True, timeout=20)
    assert r.returncode == 0, r.stderr
    n = int(r.stdout.split()[-2])  # "N SIZE" lines: the last one is the newest
    r = subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert", front.certs.ca,
                        "--interface", "127.0.0.2", "--resolve", "mx.moat.test:%d:127.0.0.1" % port,
                        "-u", "%s:%s" % ALICE, "%s://mx.moat.test:%d/%d" % (scheme, port, n)]
                       + (["--ssl-reqd"] if scheme == "pop3" else []),
                       capture_output=True, timeout=20)
    assert r.returncode == 0, r.stderr
    assert subject.encode() in r.stdout
    lines = rig.wait_until(lambda: logins_since(backends, dv_offset), 3, what="dovecot login")
    assert "rip=127.0.0.2" in lines[0]


def test_curl_refuses_without_tls_on_plain_listener(front):
    """curl --ssl-reqd against a listener without STLS fails instead of sending the password."""
    if shutil.which("curl") is None:
        pytest.skip("curl not installed")
    port = front.ports["pop3_plain"]
    r = subprocess.run(["curl", "-sS", "--max-time", "5", "--interface", "127.0.0.2",
                        "-u", "%s:%s" % ALICE, "--ssl-reqd", "pop3://127.0.0.1:%d/" % port],
                       capture_output=True, timeout=20)
    assert r.returncode != 0
    assert "event=login " not in front.moat.log()
