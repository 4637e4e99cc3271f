"""Security of authentication (issue: nothing from the internet can stop moat or lock a user
out): SASL exchanges abandoned in every way, peer-sized SCRAM challenges, over-long SASL lines,
refused literals before TLS. Every attack is followed by a check that moat is still up and
serves the next client; the fixtures fail the test on any sanitizer report or MOAT_ASSERT.
"""

import base64
import socket
import threading
import time

import pytest

import rig
from test_auth import ALICE, BOB, POP3_FAILED, Raw, plain_b64
from test_auth import Front as AuthFront
from test_auth_mechs import MECHS, Front, b64, imap_exchange, pop3_exchange, smtp_exchange

SMTP_OK = b"235 2.7.0 Authentication successful\r\n"


@pytest.fixture
def front(moat, backends, certs, tmp_path):
    return Front(moat, backends, certs, tmp_path)


def served(front, src="127.0.0.40"):
    """moat is alive and logs alice in over IMAP with SCRAM (the auth pool works)."""
    assert front.moat.alive(), front.moat.log()[-3000:]
    c = front.raw("imaps", src)
    reply = imap_exchange(c, "SCRAM-SHA-256", *ALICE, tag="z1")
    assert reply.startswith(b"z1 OK"), reply
    c.close()


# --- 1: an exchange abandoned on a bad or over-long line drops its parked job ----------------


def test_pop3_sasl_abandoned_on_bad_line_then_user_pass(front):
    c = front.raw("pop3s", "127.0.0.41")
    c.send("AUTH CRAM-MD5")
    assert c.line().startswith(b"+ ")
    c.sock.sendall(b"\x00\r\n")  # a bad line: the exchange is abandoned, its job parked
    assert c.line() == b"-ERR [AUTH] Invalid authentication data\r\n"
    c.send("USER a")
    assert c.line() == b"+OK\r\n"
    c.send("PASS b")
    assert c.line() == POP3_FAILED
    c.send("USER " + ALICE[0])
    assert c.line() == b"+OK\r\n"
    c.send("PASS " + ALICE[1])
    assert c.line().startswith(b"+OK")
    c.close()
    served(front)


def test_pop3_sasl_abandoned_on_long_line_then_new_exchange(front):
    c = front.raw("pop3s", "127.0.0.42")
    c.send("AUTH SCRAM-SHA-256")
    assert c.line() == b"+ \r\n"
    c.send("A" * 3000)  # over POP3's SASL line limit
    assert c.line() == b"-ERR Line too long\r\n"
    c.send("AUTH CRAM-MD5")  # a new exchange must not step the old one's job
    assert c.line().startswith(b"+ ")
    c.send("*")
    assert c.line() == b"-ERR Authentication cancelled\r\n"
    assert pop3_exchange(c, "SCRAM-SHA-256", *ALICE).startswith(b"+OK")
    c.close()
    served(front)


def test_every_protocol_abandons_then_logs_in(front):
    """SMTP and IMAP: a bad line mid-exchange, then PLAIN (moat's own check) and a new
    server-run exchange both work in the same session."""
    c, _ = front.smtp("127.0.0.43")
    c.send("AUTH CRAM-MD5")
    assert c.line().startswith(b"334 ")
    c.send("!!!")
    assert c.line().startswith(b"501 ")
    c.send("AUTH PLAIN " + plain_b64(*ALICE))
    assert c.line() == SMTP_OK
    c.close()
    c = front.raw("imaps", "127.0.0.43")
    c.send("a1 AUTHENTICATE SCRAM-SHA-256")
    assert c.line() == b"+ \r\n"
    c.send("!!!")
    assert c.line() == b"a1 BAD Invalid SASL response.\r\n"
    c.send("a2 LOGIN %s %s" % ALICE)
    assert c.line().startswith(b"a2 OK")
    c.close()
    served(front)


# --- 2: a SCRAM nonce sized so the challenge line would overflow a 2 KB formatter ------------


def scram_overhead(front):
    """len(server-first) - len(client nonce), measured on a real exchange for alice."""
    c = front.raw("imaps", "127.0.0.44")
    nonce = "n" * 24
    c.send("a1 AUTHENTICATE SCRAM-SHA-256 " + b64("n,,n=%s,r=%s" % (ALICE[0], nonce)))
    line = c.line()
    assert line.startswith(b"+ "), line
    server_first = base64.b64decode(line[2:].strip())
    c.send("*")
    c.close()
    return len(server_first) - len(nonce)


def test_scram_huge_nonce_refused_not_fatal(front):
    # a server-first of 1533 bytes is 2044 base64 chars: it fits the 2 KB challenge buffer, but
    # "334 " / "+ " + challenge + CRLF does not fit a 2048-byte line
    nonce = "N" * (1533 - scram_overhead(front))
    first = b64("n,,n=%s,r=%s" % (ALICE[0], nonce))
    c, _ = front.smtp("127.0.0.45")
    c.send("AUTH SCRAM-SHA-256 " + first)
    assert c.line() == b"501 5.5.2 Error: cannot decode response\r\n"
    c.send("AUTH PLAIN " + plain_b64(*ALICE))
    assert c.line() == SMTP_OK
    c.close()
    c = front.raw("imaps", "127.0.0.45")
    c.send("a1 AUTHENTICATE SCRAM-SHA-256 " + first)
    assert c.line() == b"a1 BAD Invalid SASL response.\r\n"
    c.close()
    c = front.raw("pop3s", "127.0.0.45")
    c.send("AUTH SCRAM-SHA-256")
    assert c.line() == b"+ \r\n"
    c.send(first)
    assert c.line() == b"-ERR [AUTH] Invalid authentication data\r\n"
    c.close()
    served(front)


# --- 17: an over-long AUTHENTICATE line must not swallow the next command --------------------


def test_imap_long_sasl_line_next_command_answered(front):
    c = front.raw("imaps", "127.0.0.46")
    c.send("a1 AUTHENTICATE PLAIN")
    assert c.line() == b"+ \r\n"
    c.send("A" * 10000)  # over IMAP's 8 KB line, its LF in the same TLS record
    assert c.line() == b"a1 BAD Invalid SASL response.\r\n"
    c.sock.settimeout(5.0)
    c.send("a2 NOOP")
    try:
        assert c.line() == b"a2 OK NOOP completed.\r\n"
    except socket.timeout:
        pytest.fail("the command after the over-long SASL line was swallowed")
    c.send("a3 LOGIN %s %s" % BOB)
    assert c.line().startswith(b"a3 OK")
    c.close()
    served(front)


def test_imap_long_command_line_next_command_answered(front):
    """The same for an over-long command line before login."""
    c = front.raw("imaps", "127.0.0.48")
    c.send("a1 LOGIN " + "A" * 10000)
    assert c.line() == b"* BAD Command line too long.\r\n"
    c.sock.settimeout(5.0)
    c.send("a2 NOOP")
    try:
        assert c.line() == b"a2 OK NOOP completed.\r\n"
    except socket.timeout:
        pytest.fail("the command after the over-long line was swallowed")
    c.close()


# --- 12: LOGIN with a literal before TLS is a counted command and error ----------------------


def test_imap_login_literal_before_tls_is_counted(moat, backends, certs, tmp_path):
    port = rig.free_port()
    listeners = {"imap": {"protocol": "imap", "tls": "starttls", "backend": "dv",
                          "listen": "127.0.0.1:%d" % port}}
    backend = {"dv": {"address": "127.0.0.1:%d" % backends.ports["imap"], "identity": "id"}}
    extra = "[limits]\nmax_preauth_commands = 8\nmax_errors = 50\n"
    m = moat(rig.moat_conf(certs, backend, listeners, extra=extra), wait_ports=[port])
    c = Raw(port, src="127.0.0.47")
    c.line()
    replies = []
    for i in range(12):
        try:
            c.send("a%d LOGIN {1}" % i)
            replies.append(c.line())
        except (EOFError, OSError):
            break
    assert b"* BYE Too many commands\r\n" in replies, replies
    assert len(replies) <= 10
    assert c.closed()
    c.close()
    # the errors count too: max_errors ends it before max_preauth_commands
    m.stop()
    extra = "[limits]\nmax_preauth_commands = 50\nmax_errors = 3\n"
    moat(rig.moat_conf(certs, backend, listeners, extra=extra), wait_ports=[port])
    c = Raw(port, src="127.0.0.47")
    c.line()
    replies = []
    for i in range(12):
        try:
            c.send("a%d LOGIN {1}" % i)
            replies.append(c.line())
        except (EOFError, OSError):
            break
    assert b"* BYE Too many errors\r\n" in replies, replies
    assert len(replies) <= 5
    c.close()
    c = Raw(port, src="127.0.0.47")
    assert c.line().startswith(b"* OK")
    c.close()


# --- 15: a few clients with hung checks do not starve every login -----------------------------


class Saslauthd:
    """A saslauthd stand-in on a unix socket: holds every request for a user whose name starts
    with "slow" forever (a hung verifier), answers the others (OK for alice's password) after
    delay seconds."""

    def __init__(self, path, delay=0.0):
        self.path = path
        self.delay = delay
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(path)
        self.srv.listen(32)
        self.srv.settimeout(0.2)
        self.held = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    @staticmethod
    def field(conn):
        n = int.from_bytes(Saslauthd.exactly(conn, 2), "big")
        return Saslauthd.exactly(conn, n)

    @staticmethod
    def exactly(conn, n):
        out = b""
        for _ in range(100):
            if len(out) == n:
                return out
            chunk = conn.recv(n - len(out))
            if not chunk:
                raise EOFError
            out += chunk
        raise EOFError

    def serve(self, conn):
        conn.settimeout(5.0)
        try:
            login, password, _service, _realm = (self.field(conn) for _ in range(4))
        except (EOFError, OSError):
            conn.close()
            return
        if login.startswith(b"slow"):
            self.held.append(conn)
            return
        answer = b"OK" if password == ALICE[1].encode() else b"NO"
        time.sleep(self.delay)
        conn.sendall(len(answer).to_bytes(2, "big") + answer)
        conn.close()

    def run(self):
        while not self.stop.is_set():
            try:
                conn = self.srv.accept()[0]
            except OSError:
                continue
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def close(self):
        self.stop.set()
        self.thread.join(timeout=2)
        for c in self.held:
            c.close()
        self.srv.close()


def test_hung_checks_of_one_client_do_not_starve_others(moat, backends, certs, tmp_path):
    sasld = Saslauthd(str(tmp_path / "mux"))
    try:
        f = AuthFront(moat, backends, certs, tmp_path,
                      auth={"pwcheck_method": "saslauthd", "saslauthd_path": sasld.path,
                            "verify_timeout": "3s", "ban_ip": "0"})
        first = f.raw("imaps", src="127.0.0.50")
        first.until(b"* OK")
        first.send('a1 LOGIN "slow1@example.test" "x"')
        rig.wait_until(lambda: len(sasld.held) >= 1, timeout=5.0, what="a held check")
        # more checks from the same address wait behind the hung one (never a second thread):
        # three queue (max_checks_per_client 1, 4 in the pool in all) and time out at
        # verify_timeout, the rest are refused at once; the same temporary failure for each
        waiting = []
        for i in range(2, 7):
            c = f.raw("imaps", src="127.0.0.50")
            c.until(b"* OK")
            c.send('a1 LOGIN "slow%d@example.test" "x"' % i)
            waiting.append(c)
        replies = []
        for c in waiting:
            c.sock.settimeout(10.0)
            try:
                replies.append(c.line())
            except socket.timeout:
                replies.append(None)
        assert replies == [b"a1 NO [UNAVAILABLE] Service temporarily unavailable.\r\n"] * 5
        assert len(sasld.held) == 1
        # another client still gets a thread and its answer
        c = f.raw("imaps", src="127.0.0.51")
        c.until(b"* OK")
        c.send('a1 LOGIN "%s" "%s"' % ALICE)
        assert c.line().startswith(b"a1 OK"), "a login starved behind another client's checks"
        c.close()
        assert "why=client_busy" in f.moat.log()
        assert f.moat.alive()
    finally:
        sasld.close()


def test_auth_threads_bounds_the_checks_that_run_at_once(moat, backends, certs, tmp_path):
    """auth_threads = 2: two clients whose checks hang hold both threads; a third client's
    login waits for a thread and fails temporarily at verify_timeout, never reaching the
    verifier (with the default 3 it would be answered at once, as in the test above)."""
    sasld = Saslauthd(str(tmp_path / "mux"))
    try:
        f = AuthFront(moat, backends, certs, tmp_path,
                      auth={"pwcheck_method": "saslauthd", "saslauthd_path": sasld.path,
                            "verify_timeout": "2s", "ban_ip": "0"},
                      moat_keys="auth_threads = 2\n")
        assert "event=auth_ready threads=2 " in f.moat.log()
        hung = []
        for i, src in enumerate(("127.0.0.56", "127.0.0.57")):
            c = f.raw("imaps", src=src)
            c.until(b"* OK")
            c.send('a1 LOGIN "slow%d@example.test" "x"' % i)
            hung.append(c)
        rig.wait_until(lambda: len(sasld.held) >= 2, timeout=5.0, what="two held checks")
        c = f.raw("imaps", src="127.0.0.58")
        c.until(b"* OK")
        c.send('a1 LOGIN "%s" "%s"' % ALICE)
        c.sock.settimeout(10.0)
        assert c.line() == b"a1 NO [UNAVAILABLE] Service temporarily unavailable.\r\n"
        assert len(sasld.held) == 2
        c.close()
        for c in hung:
            c.close()
        assert f.moat.alive()
    finally:
        sasld.close()


def test_parallel_logins_of_one_client_all_go_through(moat, backends, certs, tmp_path):
    """A mail client opens several connections and logs in on each at once: with one check per
    client running at a time, the others wait their turn instead of failing."""
    # each check takes a while, so the logins are in the auth service at the same time
    sasld = Saslauthd(str(tmp_path / "mux"), delay=0.3)
    try:
        f = AuthFront(moat, backends, certs, tmp_path,
                      auth={"pwcheck_method": "saslauthd", "saslauthd_path": sasld.path,
                            "verify_timeout": "10s", "ban_ip": "0"})
        conns = []
        for _ in range(4):
            c = f.raw("imaps", src="127.0.0.52")
            c.until(b"* OK")
            conns.append(c)
        for c in conns:
            c.send('a1 LOGIN "%s" "%s"' % ALICE)
        for c in conns:
            assert c.line().startswith(b"a1 OK"), "a parallel login from one address failed"
            c.close()
        assert "why=client_busy" not in f.moat.log()
    finally:
        sasld.close()


# --- 13: smart lockout: failures from elsewhere never lock the user out ----------------------

LOCKOUT = {"ban_user": "3/1m", "ban_ip": "0", "ban_time": "1m", "failure_delay": "20ms",
           "failure_delay_max": "50ms", "max_failures": "3"}


def imap_login(f, src, user, password):
    c = f.raw("imaps", src=src)
    c.until(b"* OK")
    c.send('a1 LOGIN "%s" "%s"' % (user, password))
    return c, c.line()


def test_failures_from_elsewhere_do_not_lock_the_user_out(moat, backends, certs, tmp_path):
    f = AuthFront(moat, backends, certs, tmp_path, auth=LOCKOUT)
    home, attacker, fresh = "127.0.0.3", "127.0.0.5", "127.0.0.4"
    c, reply = imap_login(f, home, *ALICE)
    assert reply.startswith(b"a1 OK"), reply
    c.close()
    # the attacker fails as alice until the name is banned
    c, reply = imap_login(f, attacker, ALICE[0], "wrong-1")
    assert reply == b"a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
    for i in (2, 3):
        c.send('a%d LOGIN "%s" "wrong-%d"' % (i, ALICE[0], i))
        c.line()
    c.close()
    rig.wait_until(lambda: "ban_user=yes" in f.moat.log(), timeout=5.0, what="the user ban")
    # a new address for alice is refused while the name is banned, even with the password
    c, reply = imap_login(f, fresh, *ALICE)
    assert reply == b"a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
    c.close()
    c, reply = imap_login(f, attacker, *ALICE)
    assert reply == b"a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
    c.close()
    # alice at home still reads and sends mail
    c, reply = imap_login(f, home, *ALICE)
    assert reply.startswith(b"a1 OK"), "alice locked out of her mailbox by someone else"
    c.send("a2 SELECT INBOX")
    assert c.until(b"a2 ").startswith(b"a2 OK")
    c.close()
    s = f.submission(src=home)
    s.login(*ALICE)
    assert s.sendmail(ALICE[0], [BOB[0]], "Subject: from home\r\n\r\nstill works\r\n") == {}
    s.quit()
    assert f.moat.alive()


def test_familiar_table_holds_max_familiar_pairs(moat, backends, certs, tmp_path):
    """max_familiar = 8: alice logs in from nine addresses; the first, least recently seen, is
    forgotten, so under a ban of her name it is refused like any other address while the other
    eight still log in. (With the default size all nine would stay familiar.)"""
    f = AuthFront(moat, backends, certs, tmp_path, auth=LOCKOUT, moat_keys="max_familiar = 8\n")
    homes = ["127.0.0.%d" % (31 + i) for i in range(9)]
    for src in homes:
        c, reply = imap_login(f, src, *ALICE)
        assert reply.startswith(b"a1 OK"), (src, reply)
        c.close()
        time.sleep(0.01)  # each pair seen at its own time
    c, _ = imap_login(f, "127.0.0.5", ALICE[0], "wrong-1")
    for i in (2, 3):
        c.send('a%d LOGIN "%s" "wrong-%d"' % (i, ALICE[0], i))
        c.line()
    c.close()
    rig.wait_until(lambda: "ban_user=yes" in f.moat.log(), timeout=5.0, what="the user ban")
    c, reply = imap_login(f, homes[0], *ALICE)
    assert reply == b"a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n", reply
    c.close()
    for src in (homes[1], homes[-1]):
        c, reply = imap_login(f, src, *ALICE)
        assert reply.startswith(b"a1 OK"), (src, reply)
        c.close()


def test_user_bans_do_not_fill_the_client_table(moat, backends, certs, tmp_path):
    f = AuthFront(moat, backends, certs, tmp_path,
                  auth=dict(LOCKOUT, ban_user="1/1m"), moat_keys="max_tracked_clients = 16\n")
    for batch in range(8):  # 24 user names banned, from one address
        c = f.raw("imaps", src="127.0.0.5")
        c.until(b"* OK")
        for i in range(3):
            c.send('a%d LOGIN "victim%d-%d@example.test" "x"' % (i, batch, i))
            c.line()
        c.close()
    greeted = []
    for i in range(20):  # new clients, more than the table holds
        c = Raw(f.ports["sub"], src="127.0.0.%d" % (100 + i))
        try:
            greeted.append(c.line().startswith(b"220 "))
        except (EOFError, OSError):
            greeted.append(False)
        c.close()
    assert all(greeted), greeted
    assert f.moat.log().count("ban_user=yes") == 24  # every reply came after its count
    c, reply = imap_login(f, "127.0.0.99", *BOB)
    assert reply.startswith(b"a1 OK"), reply
    c.close()


# --- 4: SCRAM does not tell known from unknown user names -------------------------------------


def server_first(front, proto, mech, user, src):
    """The decoded server-first-message for user's client-first, and the session."""
    first = b64("n,,n=%s,r=%s" % (user, "c" * 24))
    if proto == "smtp":
        c, _ = front.smtp(src)
        c.send("AUTH %s %s" % (mech, first))
        line, prefix = c.line(), b"334 "
    else:
        c = front.raw(proto, src)
        c.send(("a1 AUTHENTICATE %s %s" if proto == "imaps" else "AUTH %s %s") % (mech, first))
        line, prefix = c.line(), b"+ "
    assert line.startswith(prefix), (proto, mech, user, line)
    attrs = dict(kv.split("=", 1) for kv in base64.b64decode(line[len(prefix):]).decode()
                 .split(","))
    return attrs, c


def test_scram_unknown_user_gets_a_challenge_like_a_known_one(front):
    for mech in ("SCRAM-SHA-256", "SCRAM-SHA-1"):
        real, c = server_first(front, "smtp", mech, ALICE[0], "127.0.0.60")
        c.close()
        fakes = []
        for proto in ("smtp", "imaps", "pop3s"):
            fake, c = server_first(front, proto, mech, "nobody@example.test", "127.0.0.61")
            c.close()
            fakes.append(fake)
        for fake in fakes:
            assert sorted(fake) == sorted(real) == ["i", "r", "s"]
            assert fake["i"] == real["i"]
            assert len(fake["r"]) == len(real["r"]) and fake["r"].startswith("c" * 24)
            assert len(base64.b64decode(fake["s"])) == len(base64.b64decode(real["s"]))
            assert fake["s"] == fakes[0]["s"]  # the same salt for the same name every time
            assert fake["r"] != fakes[0]["r"] or fake is fakes[0]
        other, c = server_first(front, "smtp", mech, "someone-else@example.test", "127.0.0.61")
        c.close()
        assert other["s"] != fakes[0]["s"]
    # the whole exchange fails exactly as a wrong password does, at the last step, delayed
    for user in (ALICE[0], "nobody@example.test"):
        c, _ = front.smtp("127.0.0.62")
        assert smtp_exchange(c, "SCRAM-SHA-256", user, "wrong-pw-7f3a") == \
            b"535 5.7.8 Authentication credentials invalid\r\n"
        c.close()
        c = front.raw("imaps", "127.0.0.62")
        assert imap_exchange(c, "SCRAM-SHA-256", user, "wrong-pw-7f3a") == \
            b"a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
        c.close()
    log = front.moat.log()
    assert 'user=nobody@example.test mech=SCRAM-SHA-256' in log or \
        'user="nobody@example.test" mech=SCRAM-SHA-256' in log
    served(front)


# --- 7: verifier = backend: moat knows only the name the client typed -------------------------


def test_backend_verifier_login_is_the_typed_name(moat, backends, certs):
    """The backend may accept a name that is not the account's own (here a Dovecot master-user
    login, "alice*master", which Dovecot logs in as alice): moat cannot observe what the
    backend authenticated, so its sender check and XCLIENT LOGIN= use the typed name. The
    check then fails closed: the typed name owns no address."""
    from smtp_helpers import login, session, start_smtp_moat
    m = start_smtp_moat(moat, backends, certs)
    typed = "%s*%s" % (ALICE[0], rig.MASTER_USER)
    c = session(m.smtp_ports["submissions"], "127.0.0.70", certs, implicit=True)
    reply = login(c, typed, rig.MASTER_PASSWORD)[-1]
    if not reply.startswith(b"235"):
        c.close()
        pytest.skip("the rig's Postfix does not accept master-user logins: %r" % reply)
    assert c.cmd("MAIL FROM:<%s>" % ALICE[0])[-1].startswith(b"553 5.7.1")
    assert c.cmd("MAIL FROM:<%s>" % BOB[0])[-1].startswith(b"553 5.7.1")
    c.cmd("QUIT")
    c.close()
    log = m.log()
    assert ('user="%s"' % typed in log or "user=%s " % typed in log) and "verifier=backend" in log
