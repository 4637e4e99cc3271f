"""Per-session limits against real clients on SMTP, IMAP and POP3: the (N+1)th command before
authentication and the Nth protocol error end the session with the protocol's farewell and a
closing line naming the reason, while moat keeps serving; STARTTLS is refused with the
protocol's temporary reply while max_tls_handshakes are in progress; the relay-idle timeout says
an untagged BYE on IMAP and just closes POP3. Clients use 127.0.0.2 and up; waits are bounded."""

import socket
import time

import pytest

import limits_helpers
import rig
from smtp_helpers import Raw

GREETING = {"smtp": b"220 ", "imap": b"* OK", "pop3": b"+OK"}
# one harmless command, one command that is an error before authentication
NOOP = {"smtp": b"NOOP\r\n", "imap": b"a NOOP\r\n", "pop3": b"NOOP\r\n"}
BAD = {"smtp": b"FROB\r\n", "imap": b"a FROB\r\n", "pop3": b"FROB\r\n"}
TOO_MANY_COMMANDS = {"smtp": b"421 4.7.0 mx.moat.test Error: too many commands",
                     "imap": b"* BYE Too many commands", "pop3": b"-ERR Too many commands"}
TOO_MANY_ERRORS = {"smtp": b"421 4.7.0 mx.moat.test Error: too many errors",
                   "imap": b"* BYE Too many errors", "pop3": b"-ERR Too many errors"}


@pytest.fixture
def lim_moat(moat, backends, certs):
    """moat with SMTP (MX), IMAP and POP3 STARTTLS listeners and an implicit-TLS IMAP one;
    listener_extra goes into every listener, moat_section into [moat]."""

    def start(listener_extra, moat_section=""):
        common = dict(listener_extra, connection_rate_per_ip="0")
        return limits_helpers.start_four(moat, backends, certs, common, moat_section)
    return start


class Lines:
    """A line reader over a plain socket with bounded waits."""

    def __init__(self, port, src):
        self.sock = rig.client_socket(port, src=src)
        self.buf = b""

    def line(self, timeout=5.0):
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

    def rest(self, timeout=5.0):
        """Everything until the server closes (bounded); None if it does not close."""
        end = time.monotonic() + timeout
        out, self.buf = self.buf, b""
        while time.monotonic() < end:
            self.sock.settimeout(max(0.01, end - time.monotonic()))
            try:
                chunk = self.sock.recv(4096)
            except socket.timeout:
                return None
            except ConnectionResetError:
                return out
            if not chunk:
                return out
            out += chunk
        return None

    def close(self):
        self.sock.close()


def close_lines(m, reason):
    return [l for l in m.log().splitlines() if "event=close" in l and "reason=" + reason in l]


def assert_served(m, kind, src):
    c = Lines(m.ports[kind], src)
    try:
        assert c.line().startswith(GREETING[kind])
        c.sock.sendall(NOOP[kind])
        reply = c.line()
        assert reply.startswith((b"250", b"a OK", b"+OK")), reply
    finally:
        c.close()


# --- negative cases first -------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["smtp", "imap", "pop3"])
def test_preauth_commands_limit(lim_moat, kind):
    m = lim_moat({"max_preauth_commands": "3", "max_errors": "50"})
    c = Lines(m.ports[kind], "127.0.0.2")
    try:
        assert c.line().startswith(GREETING[kind])
        for _ in range(3):
            c.sock.sendall(NOOP[kind])
            assert not c.line().startswith((b"421", b"* BYE", b"-ERR"))
        c.sock.sendall(NOOP[kind])
        rest = c.rest()
    finally:
        c.close()
    assert rest is not None and rest.startswith(TOO_MANY_COMMANDS[kind]), rest
    rig.wait_until(lambda: close_lines(m, "too_many_commands"), 5, what="closing line")
    line = close_lines(m, "too_many_commands")[0]
    assert "phase=preauth" in line and "client=127.0.0.2:" in line, line
    assert_served(m, kind, "127.0.0.2")  # the same address gets a fresh session


@pytest.mark.parametrize("kind", ["smtp", "imap", "pop3"])
def test_max_errors(lim_moat, kind):
    m = lim_moat({"max_preauth_commands": "50", "max_errors": "3"})
    c = Lines(m.ports[kind], "127.0.0.3")
    try:
        assert c.line().startswith(GREETING[kind])
        for _ in range(2):
            c.sock.sendall(BAD[kind])
            reply = c.line()
            assert reply.startswith((b"5", b"a BAD", b"-ERR")), reply
            assert reply not in TOO_MANY_ERRORS.values()
        c.sock.sendall(BAD[kind])
        rest = c.rest()
    finally:
        c.close()
    assert rest is not None and TOO_MANY_ERRORS[kind] in rest, rest
    rig.wait_until(lambda: close_lines(m, "too_many_errors"), 5, what="closing line")
    assert "client=127.0.0.3:" in close_lines(m, "too_many_errors")[0]
    assert_served(m, kind, "127.0.0.3")


STARTTLS_CMD = {"smtp": b"STARTTLS\r\n", "imap": b"t STARTTLS\r\n", "pop3": b"STLS\r\n"}


def starttls(c, certs, kind):
    """STARTTLS on a Lines client: the go-ahead, then the client's socket is the TLS one."""
    c.sock.sendall(STARTTLS_CMD[kind])
    ok = c.line()
    assert ok.startswith(STARTTLS_OK[kind]), ok
    assert c.buf == b""
    c.sock = rig.client_context(certs).wrap_socket(c.sock, server_hostname="mx.moat.test")


@pytest.mark.parametrize("kind", ["smtp", "imap", "pop3"])
def test_starttls_keeps_the_preauth_command_count(lim_moat, certs, kind):
    """STARTTLS forgets what the client said, not how much: two commands and STARTTLS in
    plaintext, so the second command over TLS is one too many."""
    m = lim_moat({"max_preauth_commands": "4", "max_errors": "50"})
    c = Lines(m.ports[kind], "127.0.0.9")
    try:
        assert c.line().startswith(GREETING[kind])
        for _ in range(2):
            c.sock.sendall(NOOP[kind])
            assert not c.line().startswith((b"421", b"* BYE", b"-ERR"))
        starttls(c, certs, kind)
        c.sock.sendall(NOOP[kind])
        assert not c.line().startswith((b"421", b"* BYE", b"-ERR"))
        c.sock.sendall(NOOP[kind])
        assert c.line().startswith(TOO_MANY_COMMANDS[kind])
    finally:
        c.close()
    rig.wait_until(lambda: close_lines(m, "too_many_commands"), 5, what="closing line")
    assert "client=127.0.0.9:" in close_lines(m, "too_many_commands")[0]


@pytest.mark.parametrize("kind", ["smtp", "imap", "pop3"])
def test_starttls_keeps_the_error_count(lim_moat, certs, kind):
    m = lim_moat({"max_preauth_commands": "50", "max_errors": "3"})
    c = Lines(m.ports[kind], "127.0.0.10")
    try:
        assert c.line().startswith(GREETING[kind])
        for _ in range(2):
            c.sock.sendall(BAD[kind])
            reply = c.line()
            assert reply.startswith((b"5", b"a BAD", b"-ERR")) and reply not in \
                TOO_MANY_ERRORS.values(), reply
        starttls(c, certs, kind)
        c.sock.sendall(BAD[kind])
        got = c.line()
        if kind == "imap":  # the tagged BAD, then the farewell
            got = c.line()
        elif kind == "smtp":  # the 5xx, then the 421
            got = c.line()
        assert got.startswith(TOO_MANY_ERRORS[kind]), got
    finally:
        c.close()
    rig.wait_until(lambda: close_lines(m, "too_many_errors"), 5, what="closing line")
    assert "client=127.0.0.10:" in close_lines(m, "too_many_errors")[0]


def test_commands_after_handoff_are_not_counted(lim_moat):
    """SMTP counts commands only before the backend is in the session."""
    m = lim_moat({"max_preauth_commands": "3", "max_errors": "50"})
    r = Raw.plain(m.ports["smtp"], "127.0.0.4")
    try:
        assert r.code() == 220
        assert r.cmd("EHLO client.example")[-1].startswith(b"250")
        assert r.cmd("MAIL FROM:<someone@sender.test>")[-1].startswith(b"250")  # hand-off
        for _ in range(4):
            assert r.cmd("RCPT TO:<alice@example.test>")[-1].startswith(b"250")
        assert r.cmd("RSET")[-1].startswith(b"250")
        assert r.cmd("QUIT")[-1].startswith(b"221")
    finally:
        r.close()
    assert not close_lines(m, "too_many_commands")


STARTTLS_BUSY = {
    "smtp": (b"STARTTLS\r\n", b"454 4.7.0 TLS not available due to temporary reason"),
    "imap": (b"t STARTTLS\r\n", b"t NO [UNAVAILABLE] TLS not available due to temporary reason"),
    "pop3": (b"STLS\r\n", b"-ERR [SYS/TEMP] TLS not available due to temporary reason"),
}
STARTTLS_OK = {"smtp": b"220 2.0.0", "imap": b"t OK", "pop3": b"+OK"}


def hold_handshakes(m):
    """Clients on the implicit-TLS port that send the start of a ClientHello and stall, until one
    is refused at accept: a handshake counts from its first bytes (a silent socket holds no slot),
    and accept, hand-off to a worker and the first read are asynchronous."""
    hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"  # a record, 11 of its bytes
    held = []
    end = time.monotonic() + 5
    while time.monotonic() < end:
        s = rig.client_socket(m.ports["imaps"], src="127.0.0.5")
        try:
            s.sendall(hello)
        except OSError:
            s.close()
            return held
        s.settimeout(0.3)
        try:
            closed = s.recv(1) == b""
        except socket.timeout:
            closed = False
        except ConnectionResetError:
            closed = True
        if closed:
            s.close()
            return held
        held.append(s)
    raise AssertionError("no handshake was counted")


@pytest.mark.parametrize("kind", ["smtp", "imap", "pop3"])
def test_starttls_refused_at_max_tls_handshakes(lim_moat, certs, kind):
    m = lim_moat({}, moat_section="max_tls_handshakes = 1\n")
    held = hold_handshakes(m)
    try:
        c = Lines(m.ports[kind], "127.0.0.6")
        assert c.line().startswith(GREETING[kind])
        cmd, refusal = STARTTLS_BUSY[kind]
        c.sock.sendall(cmd)
        assert c.line() == refusal
        c.sock.sendall(NOOP[kind])  # the session goes on in plaintext
        assert not c.line().startswith((b"421", b"* BYE", b"-ERR"))
        rig.wait_until(lambda: "command=starttls" in m.log(), 5, what="refusal log")
        # once the handshakes in progress end, STARTTLS works again
        for s in held:
            s.close()
        rig.wait_until(lambda: m.log().count("event=close") >= len(held), 5,
                       what="held sessions closed")
        c.sock.sendall(cmd.replace(b"t ", b"u ") if kind == "imap" else cmd)
        ok = c.line()
        assert ok.startswith(STARTTLS_OK[kind].replace(b"t ", b"u ")), ok
        tls = rig.client_context(certs).wrap_socket(c.sock, server_hostname="mx.moat.test")
        tls.settimeout(5)
        tls.sendall(b"EHLO c.example\r\n" if kind == "smtp" else NOOP[kind])
        assert tls.recv(300).startswith((b"250", b"a OK", b"+OK"))
        tls.close()
    finally:
        for s in held:
            s.close()
    assert "reason=max_tls_handshakes" in m.log()


def test_relay_idle_imap_says_bye(lim_moat, certs):
    m = lim_moat({"relay_idle": "1s"})
    i = rig.IMAPS(m.ports["imaps"], certs=certs, src="127.0.0.7")
    i.login("alice@example.test", "alice-secret-1")
    i.select("INBOX")
    sock = i.socket()
    sock.settimeout(6)
    got = b""
    end = time.monotonic() + 6
    while time.monotonic() < end:
        try:
            chunk = sock.recv(4096)
        except (socket.timeout, ConnectionResetError, OSError):
            break
        if not chunk:
            break
        got += chunk
    sock.close()
    assert got == b"* BYE Autologout; idle for too long\r\n", got
    rig.wait_until(lambda: close_lines(m, "idle_timeout"), 5, what="closing line")
    line = close_lines(m, "idle_timeout")[0]
    assert "timeout=relay_idle" in line and "phase=relay" in line, line


def test_relay_idle_pop3_just_closes(lim_moat, certs):
    m = lim_moat({"relay_idle": "1s"})
    p = rig.POP3(m.ports["pop3"], src="127.0.0.8")
    p.stls(context=rig.client_context(certs))
    p.user("alice@example.test")
    p.pass_("alice-secret-1")
    sock = p.sock
    sock.settimeout(6)
    try:
        got = sock.recv(4096)  # POP3 has no unsolicited responses: nothing, then the close
    except ConnectionResetError:
        got = b""
    sock.close()
    assert got == b"", got
    rig.wait_until(lambda: close_lines(m, "idle_timeout"), 5, what="closing line")
    assert "timeout=relay_idle" in close_lines(m, "idle_timeout")[0]
