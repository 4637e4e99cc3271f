"""Adversarial end-to-end tests: one moat with every listener kind (SMTP MX / submission /
submissions, IMAP and IMAPS, POP3 and POP3S, a plain MX, and an MX in front of a recording fake
backend) attacked with real sockets: seeded random garbage and command sequences, half-closed
connections, hundreds of pipelined commands, literals and TLS records split into single bytes, a
ClientHello or an HTTP request where a command was expected, oversized AUTH lines and DATA
lines, floods of CR and NUL, many sessions at once.

What must hold: moat never crashes or trips a sanitizer, every session ends (its closing line
appears) within its timeouts, moat keeps serving, replies come in command order whether the
client pipelines or not, and what reaches an SMTP backend is canonical (CRLF only, no NUL, no
client XCLIENT). Randomness is seeded; every loop is bounded in count and time."""

import base64
import random
import re
import socket
import ssl
import threading
import time

import pytest

import rig
from conftest import moat_binary, sanitizer_reports

A_USER = "alice@example.test"
PLAIN_B64 = None  # set from the rig's password in the fixture
TLS_LISTENERS = ("subs", "imaps", "pop3s")
STARTTLS_CMD = {"mx": b"STARTTLS\r\n", "imap": b"a STARTTLS\r\n", "pop3": b"STLS\r\n"}
GO_AHEAD = {"mx": b"220 ", "imap": b"a OK", "pop3": b"+OK"}


class Recorder:
    """A fake SMTP backend that speaks just enough (XCLIENT, DATA) and keeps every byte moat
    sends it, one transcript per connection."""

    def __init__(self):
        self.transcripts = []
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(64)
        self.srv.settimeout(0.3)
        self.port = self.srv.getsockname()[1]
        self.stop = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stop:
            try:
                c, _ = self.srv.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        rec = bytearray()
        self.transcripts.append(rec)
        c.settimeout(10)
        buf, data = b"", False
        try:
            c.sendall(b"220 rec ESMTP\r\n")
            for _ in range(100000):
                d = c.recv(65536)
                if not d:
                    break
                rec += d
                buf += d
                for _ in range(100000):
                    if data:
                        i = buf.find(b"\r\n.\r\n")
                        if i < 0:
                            buf = buf[-4:]
                            break
                        buf, data = buf[i + 5:], False
                        c.sendall(b"250 2.0.0 queued\r\n")
                        continue
                    i = buf.find(b"\n")
                    if i < 0:
                        break
                    line, buf = buf[:i + 1].upper(), buf[i + 1:]
                    if line.startswith(b"EHLO"):
                        c.sendall(b"250-rec\r\n250-XCLIENT ADDR NAME PROTO HELO LOGIN\r\n"
                                  b"250 PIPELINING\r\n")
                    elif line.startswith(b"XCLIENT"):
                        c.sendall(b"220 rec ESMTP\r\n")
                    elif line.startswith(b"DATA"):
                        c.sendall(b"354 go\r\n")
                        buf, data = b"\r\n" + buf, True  # an empty message is "\r\n.\r\n" too
                    elif line.startswith(b"QUIT"):
                        c.sendall(b"221 bye\r\n")
                        return
                    else:
                        c.sendall(b"250 2.0.0 ok\r\n")
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.stop = True
        self.thread.join(5)
        self.srv.close()


@pytest.fixture(scope="module")
def rec():
    r = Recorder()
    yield r
    r.close()


@pytest.fixture(scope="module")
def adv(backends, certs, rec, tmp_path_factory):
    names = ("mx", "sub", "subs", "imap", "imaps", "pop3", "pop3s", "mxplain", "rec")
    ports = dict(zip(names, rig.free_ports(len(names))))
    bp = backends.ports
    backend_sections = {
        "pf": {"address": "127.0.0.1:%d" % bp["smtp_xclient"], "identity": "xclient"},
        "dv": {"address": "127.0.0.1:%d" % bp["imap"], "identity": "id"},
        "dvpop": {"address": "127.0.0.1:%d" % bp["pop3_proxy"], "identity": "proxy-v2"},
        "rec": {"address": "127.0.0.1:%d" % rec.port, "identity": "xclient"},
    }

    def lsn(proto, name, tls, backend, **kw):
        return dict(kw, protocol=proto, listen="127.0.0.1:%d" % ports[name], tls=tls,
                    backend=backend)

    smtp = {"local_domains": "example.test"}
    listeners = {
        "mx": lsn("smtp", "mx", "starttls", "pf", **smtp),
        "sub": lsn("submission", "sub", "starttls", "pf", auth="yes", **smtp),
        "subs": lsn("submission", "subs", "implicit", "pf", auth="yes", **smtp),
        "imap": lsn("imap", "imap", "starttls", "dv"),
        "imaps": lsn("imap", "imaps", "implicit", "dv"),
        "pop3": lsn("pop3", "pop3", "starttls", "dvpop"),
        "pop3s": lsn("pop3", "pop3s", "implicit", "dvpop"),
        "mxplain": lsn("smtp", "mxplain", "none", "pf", **smtp),
        "rec": lsn("smtp", "rec", "none", "rec", bare_newline="normalize",
                   max_preauth_commands="1000", **smtp),
    }
    extra = ("[limits]\nconnection_rate_per_ip = 100000/1m\nmax_sessions_per_ip = 1000\n"
             "max_errors = 20\n"
             "[timeouts]\npreauth_idle = 3s\nhandshake = 3s\nbackend_reply = 4s\n"
             "backend_connect = 1s\ncommand = 4s\ndata = 4s\n"
             "[auth]\nban_ip = 0\nban_user = 0\nfailure_delay = 100ms\n"
             "failure_delay_max = 200ms\n")
    conf = rig.moat_conf(certs, backend_sections, listeners, extra)
    m = rig.Moat(moat_binary(), conf, str(tmp_path_factory.mktemp("adv")),
                 ports=list(ports.values()))
    m.ports = ports
    m.certs = certs
    global PLAIN_B64
    PLAIN_B64 = base64.b64encode(("\0%s\0%s" % (A_USER, backends.users[A_USER])).encode())
    try:
        yield m
    finally:
        m.stop()
        problems = sanitizer_reports(m.log())
        if problems:
            pytest.fail("moat's sanitizers reported problems:\n" + "\n".join(problems[:40]),
                        pytrace=False)


# ---------------------------------------------------------------------------------------------
# helpers


def connect(m, name, src="127.0.0.2", timeout=5.0):
    s = rig.client_socket(m.ports[name], src, timeout=timeout)
    if name in TLS_LISTENERS:
        s = rig.client_context(m.certs).wrap_socket(s, server_hostname="mx.moat.test")
    return s


def drain(s, wait, limit=1 << 21):
    """Everything that arrives within wait seconds: (bytes, "eof" | "timeout" | "error")."""
    out = b""
    end = time.monotonic() + wait
    for _ in range(100000):
        left = end - time.monotonic()
        if left <= 0 or len(out) >= limit:
            return out, "timeout"
        s.settimeout(left)
        try:
            d = s.recv(65536)
        except socket.timeout:
            return out, "timeout"
        except (OSError, ssl.SSLError):
            return out, "error"
        if not d:
            return out, "eof"
        out += d
    return out, "timeout"


def close_lines(m, ports):
    """The closing lines of the sessions whose client ends ("127.0.0.N:PORT") are given."""
    want = set(ports)
    out = {}
    for line in m.log().splitlines():
        mm = re.search(r"event=close .*client=(127\.0\.0\.\d+:\d+) ", line)
        if mm and mm.group(1) in want:
            out[mm.group(1)] = line
    return out


def end(s):
    return "%s:%d" % s.getsockname()[:2]


def wait_closed(m, ports, timeout):
    """Every session of ports has its one closing line within timeout seconds."""
    try:
        rig.wait_until(lambda: len(close_lines(m, ports)) == len(set(ports)), timeout,
                       interval=0.1, what="closing lines")
    except (TimeoutError, RuntimeError):
        missing = set(ports) - set(close_lines(m, ports))
        pytest.fail("%d of %d sessions never ended (client ports %s)"
                    % (len(missing), len(set(ports)), sorted(missing)[:10]))
    return close_lines(m, ports)


def assert_serving(m):
    """moat is alive and every protocol still answers a fresh client."""
    assert m.alive(), m.log()[-3000:]
    for name, cmd, want in (("mx", b"NOOP\r\n", b"250 "), ("imaps", b"a NOOP\r\n", b"a OK"),
                            ("pop3s", b"NOOP\r\n", b"+OK")):
        s = connect(m, name, "127.0.0.250")
        try:
            drain(s, 0.2)
            s.sendall(cmd)
            out, _ = drain_until(s, want, 3.0)
            assert want in out, (name, out)
        finally:
            s.close()


def drain_until(s, marker, wait):
    out = b""
    end = time.monotonic() + wait
    for _ in range(10000):
        if marker in out:
            break
        left = end - time.monotonic()
        if left <= 0:
            break
        d, why = drain(s, min(left, 0.2))
        out += d
        if why in ("eof", "error"):
            return out, "ok" if marker in out else why
    return out, "ok" if marker in out else "timeout"


def run_threads(fns, batch=40):
    for i in range(0, len(fns), batch):
        ts = [threading.Thread(target=f) for f in fns[i:i + batch]]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
            assert not t.is_alive(), "client thread stuck"


# ---------------------------------------------------------------------------------------------
# garbage and random command sequences on every listener


def test_random_garbage_on_every_listener(adv):
    rnd = random.Random(20261123)
    names = [n for n in adv.ports if n != "rec"]
    ports, failures = [], []

    def one(i, name, seed):
        r = random.Random(seed)
        try:
            s = connect(adv, name, "127.0.0.%d" % (2 + i % 200), timeout=4)
        except (OSError, ssl.SSLError) as e:
            failures.append((name, repr(e)))
            return
        ports.append(end(s))
        try:
            for _ in range(r.randint(1, 6)):
                k = r.random()
                if k < 0.3:
                    data = bytes(r.randrange(256) for _ in range(r.randint(1, 2000)))
                elif k < 0.5:
                    data = b"\x00" * r.randint(1, 70000)
                elif k < 0.7:
                    data = b"\r" * r.randint(1, 5000) + b"A" * r.randint(0, 40000)
                else:
                    data = b"A" * r.randint(0, 20000) + b"\n"
                s.sendall(data)
            drain(s, r.choice((0.0, 0.3, 1.0)))
        except (OSError, ssl.SSLError):
            pass  # moat may close first (too many errors)
        finally:
            s.close()

    run_threads([(lambda i=i, n=names[i % len(names)], sd=rnd.randrange(1 << 30):
                  one(i, n, sd)) for i in range(64)])
    assert not failures, failures
    wait_closed(adv, ports, 10)
    assert_serving(adv)


SMTP_WORDS = ["EHLO x", "HELO y", "MAIL FROM:<a@remote.test>", "RCPT TO:<bob@example.test>",
              "RCPT TO:<x@external.test>", "DATA", "BDAT 5", "RSET", "NOOP", "VRFY bob",
              "STARTTLS", "AUTH PLAIN {plain}", "AUTH PLAIN AGFAYg==", "AUTH PLAIN", "{plain}",
              "*", "AUTH LOGIN", "QUIT", "XCLIENT ADDR=1.2.3.4", "Subject: x", ".", "", " ",
              "EHLO " + "a" * 600, "HELP", "\x00", "mail from:<>", "GET / HTTP/1.1"]
IMAP_WORDS = ["{t} CAPABILITY", "{t} NOOP", "{t} LOGOUT", "{t} STARTTLS",
              "{t} LOGIN alice@example.test wrong", "{t} AUTHENTICATE PLAIN", "{plain}", "*",
              "{t} AUTHENTICATE PLAIN {plain}", "{t} AUTHENTICATE LOGIN", "{t} ID (\"a\" \"b\")",
              "{t} ID NIL", "{t} SELECT INBOX", "{t} LOGIN {{18}}", "alice@example.test {{5}}",
              "{t} LOGIN {{5+}}", "{t} IDLE", "DONE", "{t} APPEND INBOX {{10}}", "0123456789",
              "", "{t}", "{t} LOGIN {{4294967296}}", "{t} NOOP {{0}}", "POST / HTTP/1.1"]
POP_WORDS = ["CAPA", "STLS", "USER alice@example.test", "PASS wrong", "AUTH PLAIN", "{plain}",
             "*", "AUTH PLAIN {plain}", "AUTH LOGIN", "STAT", "LIST", "RETR 1", "UIDL", "NOOP",
             "RSET", "QUIT", "APOP a b", "", "USER " + "u" * 300, "AUTH"]


def test_random_command_sequences(adv):
    """Sequences drawn from each protocol's vocabulary (logins that succeed included), with odd
    line ends, byte-split writes, STARTTLS upgrades and half-closes at random points."""
    rnd = random.Random(7)
    names = [n for n in adv.ports if n != "rec"]
    plain = PLAIN_B64.decode()
    ports = []

    def one(i, name, seed):
        r = random.Random(seed)
        vocab = (IMAP_WORDS if name.startswith("imap") else
                 POP_WORDS if name.startswith("pop") else SMTP_WORDS)
        try:
            s = connect(adv, name, "127.0.0.%d" % (2 + i % 200), timeout=4)
        except (OSError, ssl.SSLError):
            return
        ports.append(end(s))
        upgraded = name in TLS_LISTENERS
        try:
            for _ in range(r.randint(1, 20)):
                cmds = [r.choice(vocab).format(t="t%d" % r.randrange(99), plain=plain)
                        for _ in range(r.randint(1, 4))]
                data = "".join(c + r.choice(["\r\n", "\r\n", "\r\n", "\n", "\r"])
                               for c in cmds).encode()
                if r.random() < 0.1:
                    for j in range(0, len(data), 3):
                        s.send(data[j:j + 3])
                else:
                    s.sendall(data)
                if not upgraded and (b"STARTTLS" in data or b"STLS" in data):
                    out, why = drain(s, 0.3)
                    if why != "timeout":
                        break
                    if b"Ready to start TLS" in out or b"Begin TLS" in out:
                        s = rig.client_context(adv.certs).wrap_socket(
                            s, server_hostname="mx.moat.test")
                        upgraded = True
                elif r.random() < 0.3:
                    if r.random() < 0.2:
                        s.shutdown(socket.SHUT_WR)
                    if drain(s, 0.2)[1] != "timeout":
                        break
            drain(s, r.choice((0.0, 0.1, 0.4)))
        except (OSError, ssl.SSLError):
            pass
        finally:
            s.close()

    run_threads([(lambda i=i, n=names[i % len(names)], sd=rnd.randrange(1 << 30):
                  one(i, n, sd)) for i in range(160)])
    # the longest legitimate wait: an idle relayed IMAP/POP3 session is ended by the client's
    # close; a preauth one by preauth_idle (3 s); a relayed SMTP one by command (4 s)
    wait_closed(adv, ports, 15)
    assert_serving(adv)


# ---------------------------------------------------------------------------------------------
# half-closed connections


def half_close_cases():
    p = lambda: PLAIN_B64  # noqa: E731 (set by the fixture)
    return [
        ("smtp-mid-command", "mx", [b"EHLO x\r\n"], lambda: b"MAIL FROM:<a@b"),
        ("smtp-mid-auth", "subs", [b"EHLO x\r\n", b"AUTH PLAIN\r\n"], lambda: p()[:10]),
        ("smtp-mid-data", "mxplain",
         [b"EHLO x\r\n", b"MAIL FROM:<a@remote.test>\r\n", b"RCPT TO:<bob@example.test>\r\n",
          b"DATA\r\n"], lambda: b"Subject: x\r\n\r\nhello"),
        ("smtp-handoff", "mxplain", [b"EHLO x\r\n"],
         lambda: b"MAIL FROM:<a@remote.test>\r\nRCPT TO:<bob@example.test>\r\nQUIT\r\n"),
        ("smtp-relayed-data", "subs",
         [b"EHLO x\r\n", b"AUTH PLAIN %s\r\n" % PLAIN_B64, b"MAIL FROM:<%s>\r\n" % A_USER.encode(),
          b"RCPT TO:<bob@example.test>\r\n", b"DATA\r\n"], lambda: b"Subject: x\r\n\r\nhi\r\n"),
        ("imap-literal-header", "imaps", [], lambda: b"a LOGIN {5}\r\n"),
        ("imap-mid-literal", "imaps", [b"a LOGIN {19}\r\n"], lambda: b"alice@exa"),
        ("imap-mid-auth", "imaps", [b"a AUTHENTICATE PLAIN\r\n"], lambda: p()[:7]),
        ("imap-relayed-literal", "imaps",
         [b"a AUTHENTICATE PLAIN %s\r\n" % PLAIN_B64, b"b SELECT INBOX\r\n"],
         lambda: b"c APPEND INBOX {100}\r\nabc"),
        ("pop3-mid-auth", "pop3s", [b"AUTH PLAIN\r\n"], lambda: p()[:5]),
        ("pop3-mid-pass", "pop3s", [b"USER alice@example.test\r\n"], lambda: b"PASS alice-sec"),
        ("pop3-relayed", "pop3s", [b"AUTH PLAIN %s\r\n" % PLAIN_B64], lambda: b"STAT"),
        ("starttls-then-eof", "imap", [], lambda: b"a STARTTLS\r\n"),
    ]


def test_half_closed_sessions_end(adv):
    """shutdown(SHUT_WR) mid-command, mid-literal, mid-AUTH, mid-DATA, during the backend
    hand-off and after STARTTLS: every session ends promptly with its closing line."""
    ports = []
    for label, name, pre, last in half_close_cases():
        s = connect(adv, name, "127.0.0.40")
        ports.append(end(s))
        try:
            drain(s, 0.2)
            for step in pre:
                s.sendall(step)
                drain(s, 0.5)
            s.sendall(last())
            s.shutdown(socket.SHUT_WR)
            t0 = time.monotonic()
            out, why = drain(s, 8.0)
            assert why != "timeout", (label, out[-200:])
            assert time.monotonic() - t0 < 6.0, label
        finally:
            s.close()
    lines = wait_closed(adv, ports, 5)
    # client_quit: a QUIT that came with the FIN is answered before closing (nothing lost)
    assert all(re.search(r"reason=(client_eof|client_quit|handshake_failed) ", l)
               for l in lines.values()), \
        list(lines.values())
    assert_serving(adv)


def test_half_close_after_pipelined_preauth_commands_still_answered(adv):
    """Commands moat answers itself that arrive with the FIN are answered before it closes."""
    s = connect(adv, "mx", "127.0.0.41")
    try:
        drain(s, 0.2)
        s.sendall(b"EHLO x\r\nNOOP\r\nQUIT\r\n")
        s.shutdown(socket.SHUT_WR)
        out, why = drain(s, 5.0)
    finally:
        s.close()
    assert why == "eof"
    assert re.search(rb"250 SMTPUTF8\r\n250 2\.0\.0 Ok\r\n221 2\.0\.0 Bye\r\n$", out), out


# ---------------------------------------------------------------------------------------------
# pipelining, splitting, TLS on the wrong foot


def test_hundreds_of_pipelined_commands(adv):
    """500 commands in one write: answered in order up to max_preauth_commands, then a
    goodbye; after login (relay) all 500 are answered in order."""
    for name, data, ok, bye in (
            ("mx", b"NOOP\r\n" * 500, b"250 2.0.0 Ok", b"421 4.7.0"),
            ("imaps", b"".join(b"t%d NOOP\r\n" % i for i in range(500)), b" OK NOOP",
             b"* BYE"),
            ("pop3s", b"NOOP\r\n" * 500, b"+OK", b"-ERR Too many commands")):
        s = connect(adv, name, "127.0.0.42")
        try:
            drain(s, 0.2)
            s.sendall(data)
            out, why = drain(s, 5.0)
        finally:
            s.close()
        assert why == "eof", (name, out[-200:])
        assert out.count(ok) == 50 and out.rstrip().endswith(out[out.rfind(bye):].rstrip()), \
            (name, out[-300:])
        if name == "imaps":
            tags = re.findall(rb"t(\d+) OK", out)
            assert [int(t) for t in tags] == list(range(50))
    s = connect(adv, "imaps", "127.0.0.42")
    try:
        drain(s, 0.2)
        s.sendall(b"a AUTHENTICATE PLAIN %s\r\n" % PLAIN_B64 +
                  b"".join(b"t%d NOOP\r\n" % i for i in range(500)) + b"z LOGOUT\r\n")
        out, why = drain_until(s, b"z OK", 10.0)
    finally:
        s.close()
    assert why == "ok", out[-300:]
    assert [int(t) for t in re.findall(rb"t(\d+) OK", out)] == list(range(500))


def test_literals_split_byte_by_byte(adv):
    s = connect(adv, "imaps", "127.0.0.43")
    try:
        drain(s, 0.2)
        user, password = base64.b64decode(PLAIN_B64).split(b"\0")[1:]
        msg = b"a LOGIN {%d}\r\n%s {%d}\r\n%s\r\nb NOOP\r\n" % (len(user), user, len(password),
                                                               password)
        for i in range(len(msg)):
            s.send(msg[i:i + 1])
            time.sleep(0.001)
        out, why = drain_until(s, b"b OK", 8.0)
    finally:
        s.close()
    assert why == "ok" and re.search(rb"\+ OK.*\r\n\+ OK.*\r\na OK .*Logged in", out, re.S), out


def one_byte_tls(sock, certs, payload):
    """A TLS handshake and one record of payload over sock, written one byte per send()."""
    ctx = rig.client_context(certs)
    inc, outb = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, outb, server_hostname="mx.moat.test")
    sock.settimeout(3)
    for _ in range(50):
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            for b in outb.read():
                sock.send(bytes([b]))
            d = sock.recv(65536)
            assert d, "EOF during the handshake"
            inc.write(d)
    for b in outb.read():
        sock.send(bytes([b]))
    obj.write(payload)
    for b in outb.read():
        sock.send(bytes([b]))
    got = b""
    end = time.monotonic() + 3
    while time.monotonic() < end and b"\r\n" not in got:
        try:
            got += obj.read(65536)
        except ssl.SSLWantReadError:
            d = sock.recv(65536)
            if not d:
                break
            inc.write(d)
    return got


def test_starttls_with_tls_records_in_single_bytes(adv):
    for name, pre, probe, want in (("mx", b"EHLO x\r\n", b"EHLO y\r\n", b"250-"),
                                   ("imap", b"", b"b CAPABILITY\r\n", b"* CAPABILITY"),
                                   ("pop3", b"", b"CAPA\r\n", b"+OK")):
        s = rig.client_socket(adv.ports[name], "127.0.0.44")
        try:
            drain(s, 0.2)
            if pre:
                s.sendall(pre)
                drain(s, 0.3)
            s.sendall(STARTTLS_CMD[name])
            out, _ = drain_until(s, GO_AHEAD[name], 3.0)
            assert GO_AHEAD[name] in out, (name, out)
            assert one_byte_tls(s, adv.certs, probe).startswith(want), name
        finally:
            s.close()


def test_client_hello_before_starttls(adv):
    """A TLS ClientHello where a command was expected is garbage, never a handshake; the
    session ends (too many errors or preauth_idle) and moat keeps serving."""
    ports = []
    for name in ("mx", "imap", "pop3", "mxplain"):
        s = rig.client_socket(adv.ports[name], "127.0.0.45")
        ports.append(end(s))
        drain(s, 0.2)
        with pytest.raises((ssl.SSLError, OSError)):
            rig.client_context(adv.certs).wrap_socket(s, server_hostname="mx.moat.test")
        s.close()
    lines = wait_closed(adv, ports, 6)
    assert all("tls=none" in l for l in lines.values())
    assert_serving(adv)


def test_http_request_on_smtp_listeners(adv):
    for name in ("mx", "sub", "subs", "mxplain"):
        s = connect(adv, name, "127.0.0.46")
        try:
            drain(s, 0.2)
            s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nQUIT\r\n")
            out, why = drain(s, 3.0)
        finally:
            s.close()
        assert why == "eof" and out.startswith(b"421 4.7.0") and b"Host" not in out, out


# ---------------------------------------------------------------------------------------------
# oversized input


def test_long_auth_lines(adv):
    for name, start, refusal in (("subs", b"EHLO x\r\nAUTH PLAIN\r\n", b"500 5.5.6"),
                                 ("imaps", b"a AUTHENTICATE PLAIN\r\n", b"a BAD"),
                                 ("pop3s", b"AUTH PLAIN\r\n", b"-ERR")):
        for n in (12287, 12288, 12300, 200000):
            s = connect(adv, name, "127.0.0.47")
            try:
                drain(s, 0.2)
                s.sendall(start)
                drain_until(s, b"+" if name != "subs" else b"334", 2.0)
                s.sendall(b"A" * n + b"\r\n")
                out, _ = drain_until(s, refusal, 3.0)
            finally:
                s.close()
            assert refusal in out, (name, n, out[-200:])
    assert_serving(adv)


def test_data_with_huge_lines_and_floods(adv):
    """A 1 MB line in DATA passes; floods of bare CR and NUL are refused; the session goes
    on in order (QUIT answered)."""
    for body, want in ((b"x" * (1 << 20), b"250 2.0.0 Ok: queued"),
                       (b"x\r" * 300000, b"550 5.5.2 Error: bare <CR>"),
                       (b"\x00" * 300000, b"550 5.6.0 Error: NUL")):
        s = connect(adv, "mxplain", "127.0.0.48", timeout=10)
        try:
            drain(s, 0.2)
            s.sendall(b"EHLO x\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<bob@example.test>\r\n"
                      b"DATA\r\n")
            out, _ = drain_until(s, b"354 ", 5.0)
            assert b"354 " in out, out
            s.sendall(b"Subject: adv\r\n\r\n" + body + b"\r\n.\r\nQUIT\r\n")
            out, why = drain_until(s, b"221 ", 10.0)
        finally:
            s.close()
        assert why == "ok" and out.startswith(want), out[-200:]


# ---------------------------------------------------------------------------------------------
# reply order and what the backend sees


SMTP_ORACLE = ["NOOP", "RSET", "MAIL FROM:<a@remote.test>", "RCPT TO:<bob@example.test>",
               "RCPT TO:<x@external.test>", "HELO h", "EHLO e", "VRFY bob", "XYZZY",
               "MAIL FROM:<bad", "RCPT TO:<alice@example.test>", "STARTTLS", "X" * 1200,
               "MAIL FROM:<a@remote.test> SIZE=999999999999", "RCPT TO:<>", "BDAT 1",
               "AUTH PLAIN AGFAYg=="]


def reply_codes(data):
    return [l[:3] for l in data.split(b"\r\n") if len(l) >= 4 and l[3:4] == b" "]


def smtp_codes(m, name, seq, pipelined):
    s = connect(m, name, "127.0.0.49")
    got = b""
    try:
        drain(s, 0.2)
        if pipelined:
            s.sendall("".join(c + "\r\n" for c in seq).encode())
            end = time.monotonic() + 6
            while time.monotonic() < end and len(reply_codes(got)) < len(seq):
                d, why = drain(s, 0.3)
                got += d
                if why != "timeout":
                    break
        else:
            for c in seq:
                s.sendall((c + "\r\n").encode())
                before = len(reply_codes(got))
                end = time.monotonic() + 3
                why = "timeout"
                while time.monotonic() < end and len(reply_codes(got)) == before:
                    d, why = drain(s, 0.2)
                    got += d
                    if why != "timeout":
                        break
                if why != "timeout":
                    break
    finally:
        s.close()
    return reply_codes(got)


def test_pipelined_replies_match_lockstep(adv):
    """The same SMTP command sequence answered one command at a time and all in one write
    gives the same reply codes in the same order (moat's own replies never overtake the
    backend's, before or after the hand-off)."""
    rnd = random.Random(31)
    for _ in range(8):
        name = rnd.choice(["mxplain", "subs"])
        seq = ["EHLO x"] + (["AUTH PLAIN " + PLAIN_B64.decode()] if name == "subs" else [])
        seq += [rnd.choice(SMTP_ORACLE) for _ in range(rnd.randint(3, 10))]
        if "STARTTLS" in seq:
            seq = seq[:seq.index("STARTTLS") + 1]
        assert smtp_codes(adv, name, seq, False) == smtp_codes(adv, name, seq, True), seq


REC_ATOMS = [b"MAIL FROM:<a@remote.test>", b"RCPT TO:<bob@example.test>", b"DATA", b"RSET",
             b"NOOP", b"EHLO x", b"QUIT", b"Subject: s", b"", b".", b"..", b".x", b"\x00",
             b"a\rb", b"\x7f\xff", b"rcpt to:<bob@example.test> NOTIFY=NEVER", b"X" * 3000,
             b"XCLIENT ADDR=6.6.6.6", b"XFORWARD ADDR=6.6.6.6", b"\t"]
REC_ENDS = [b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r", b"\r\r\n", b"\n\r"]


def test_backend_sees_only_canonical_smtp(adv, rec):
    """Random command and DATA soup with bare CR/LF, NUL and smuggling dots: every byte the
    backend receives is CRLF-terminated, NUL-free, and no command line of the client's
    XCLIENT/XFORWARD reaches it outside a message."""
    rnd = random.Random(99)
    start = len(rec.transcripts)
    ports = []
    for _ in range(40):
        s = rig.client_socket(adv.ports["rec"], "127.0.0.%d" % rnd.randint(60, 120), timeout=4)
        ports.append(end(s))
        try:
            drain(s, 0.05)
            s.sendall(b"EHLO c\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<bob@example.test>\r\n")
            drain(s, 0.1)
            for _ in range(rnd.randint(1, 5)):
                s.sendall(b"".join(rnd.choice(REC_ATOMS) + rnd.choice(REC_ENDS)
                                   for _ in range(rnd.randint(1, 12))))
                if drain(s, 0.03)[1] != "timeout":
                    break
            drain(s, 0.1)
        except OSError:
            pass
        finally:
            s.close()
    wait_closed(adv, ports, 10)
    time.sleep(0.3)
    mine = [bytes(t) for t in rec.transcripts[start:]]
    assert len(mine) >= 40
    for t in mine:
        assert not re.search(rb"\r(?!\n)|(?<!\r)\n", t), t[:500]
        assert b"\x00" not in t, t[:500]
        # outside DATA (the recorder's 354 was the only way in), the client's XCLIENT never
        # reaches the backend: moat's own is the second line
        commands, in_data = [], False
        for line in t.split(b"\r\n"):
            if in_data:
                in_data = line != b"."
            else:
                commands.append(line)
                in_data = line.upper() == b"DATA"
        assert sum(l.upper().startswith((b"XCLIENT", b"XFORWARD")) for l in commands) == 1, \
            commands
