"""Authentication service, mechanisms Cyrus SASL runs (issue 5): CRAM-MD5 and SCRAM-SHA-256 /
SCRAM-SHA-1 with verifier = sasl over SMTP AUTH, IMAP AUTHENTICATE and POP3 AUTH, computed by a
small client here (hmac, RFC 5802/7677). Postfix learns the login from XCLIENT LOGIN=; Dovecot
is logged in as the user through its master user. Offered only where the hand-off can honour
them; failures byte-identical to PLAIN's; no password (nor the master password) in any log.
"""

import base64
import hashlib
import hmac
import os

import pytest

import rig
from test_auth import (ALICE, BOB, IMAP_FAILED, POP3_FAILED, SMTP_FAILED, WRONG_PASSWORD, Raw,
                       make_sasldb, plain_b64)

MECHS = "PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256"
PASSWORDS = (ALICE[1], BOB[1], WRONG_PASSWORD, rig.MASTER_PASSWORD)


def b64(data):
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def unb64(line):
    return base64.b64decode(line).decode()


def cram_md5(user, password):
    """Generator: receives the decoded challenge, yields the response."""
    challenge = yield None
    digest = hmac.new(password.encode(), challenge.encode(), hashlib.md5).hexdigest()
    yield "%s %s" % (user, digest)


def scram(hashname, user, password):
    """Generator (RFC 5802): first yields client-first, then answers server-first with
    client-final, then checks server-final and yields the empty response."""
    nonce = b64(os.urandom(18))
    bare = "n=%s,r=%s" % (user.replace("=", "=3D").replace(",", "=2C"), nonce)
    server_first = yield "n,," + bare
    attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
    assert attrs["r"].startswith(nonce)
    salted = hashlib.pbkdf2_hmac(hashname, password.encode(), base64.b64decode(attrs["s"]),
                                 int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", hashname).digest()
    stored = hashlib.new(hashname, client_key).digest()
    without_proof = "c=biws,r=" + attrs["r"]
    auth_msg = ",".join((bare, server_first, without_proof)).encode()
    sig = hmac.new(stored, auth_msg, hashname).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, sig))
    server_final = yield without_proof + ",p=" + b64(proof)
    server_key = hmac.new(salted, b"Server Key", hashname).digest()
    assert server_final == "v=" + b64(hmac.new(server_key, auth_msg, hashname).digest())
    yield ""


def mech_client(mech, user, password):
    if mech == "CRAM-MD5":
        return cram_md5(user, password), False
    return scram({"SCRAM-SHA-1": "sha1", "SCRAM-SHA-256": "sha256"}[mech], user, password), True


def run_exchange(c, mech, user, password, command, prompt, done):
    """One exchange on Raw c: command (with an initial response for SCRAM), each challenge
    line starting with prompt answered in base64, until a line that is not a challenge."""
    gen, client_first = mech_client(mech, user, password)
    first = next(gen)
    c.send(command + (" " + b64(first) if client_first else ""))
    for _ in range(6):
        line = c.line()
        if not line.startswith(prompt):
            return line
        challenge = unb64(line[len(prompt):].strip())
        try:
            c.send(b64(gen.send(challenge)))
        except (AssertionError, StopIteration):
            c.send("*")
    raise AssertionError("exchange did not end")


class Front:
    """moat with verifier = sasl and every mechanism: submission (STARTTLS, Postfix via
    XCLIENT), IMAPS and POP3S with the Dovecot master user, and an IMAPS listener whose backend
    has no master user (only PLAIN/LOGIN there)."""

    def __init__(self, moat, backends, certs, tmp):
        self.db = str(tmp / "sasldb2")
        make_sasldb(self.db, [ALICE, BOB])
        master_file = tmp / "master-password"
        master_file.write_text(rig.MASTER_PASSWORD + "\n")
        names = ("sub", "imaps", "pop3s", "imaps_nomaster")
        self.ports = dict(zip(names, rig.free_ports(len(names))))
        b = backends.ports
        master = {"master_user": rig.MASTER_USER, "master_password_file": str(master_file)}
        backend_defs = {
            "pf": {"address": "127.0.0.1:%d" % b["smtp_xclient"], "identity": "xclient"},
            "dv_imap": dict({"address": "127.0.0.1:%d" % b["imap"], "identity": "id"}, **master),
            "dv_pop3": dict({"address": "127.0.0.1:%d" % b["pop3"], "identity": "xclient"},
                            **master),
            "dv_plain": {"address": "127.0.0.1:%d" % b["imap"], "identity": "id"},
        }
        L = lambda proto, name, tls, be: {"protocol": proto, "tls": tls, "backend": be,
                                          "listen": "127.0.0.1:%d" % self.ports[name]}
        listeners = {
            "sub": L("submission", "sub", "starttls", "pf"),
            "imaps": L("imap", "imaps", "implicit", "dv_imap"),
            "pop3s": L("pop3", "pop3s", "implicit", "dv_pop3"),
            "imaps_nomaster": L("imap", "imaps_nomaster", "implicit", "dv_plain"),
        }
        extra = ("[auth]\nverifier = sasl\nsasldb_path = %s\nrealm = example.test\n"
                 "mech_list = %s\nfailure_delay = 200ms\nmax_failures = 3\nban_ip = 0\n"
                 "ban_user = 0\nverify_timeout = 3s\n"
                 "[timeouts]\nbackend_connect = 1s\nbackend_reply = 10s\n" % (self.db, MECHS))
        conf = rig.moat_conf(certs, backend_defs, listeners, extra=extra)
        self.moat = moat(conf, wait_ports=list(self.ports.values()))
        self.certs = certs

    def smtp(self, src):
        c = Raw(self.ports["sub"], src=src)
        c.until(b"220 ")
        c.send("EHLO client.test")
        c.until(b"250 ")
        c.send("STARTTLS")
        c.until(b"220 ")
        c.starttls(self.certs)
        c.send("EHLO client.test")
        ehlo = []
        for _ in range(20):
            ln = c.line()
            ehlo.append(ln)
            if ln.startswith(b"250 "):
                return c, ehlo
        raise AssertionError("no EHLO end")

    def raw(self, name, src):
        c = Raw(self.ports[name], self.certs, src=src)
        c.line()
        return c


@pytest.fixture
def front(moat, backends, certs, tmp_path):
    f = Front(moat, backends, certs, tmp_path)
    yield f
    logs = {"moat": f.moat.log(), "postfix": backends.postfix_log(),
            "dovecot": backends.dovecot_log()}
    for name, text in logs.items():
        for pw in PASSWORDS:
            assert pw not in text, "%s log contains a test password" % name


def smtp_exchange(c, mech, user, password):
    return run_exchange(c, mech, user, password, "AUTH " + mech, b"334 ", None)


def imap_exchange(c, mech, user, password, tag="a1"):
    return run_exchange(c, mech, user, password, "%s AUTHENTICATE %s" % (tag, mech), b"+ ",
                        None)


def pop3_exchange(c, mech, user, password):
    return run_exchange(c, mech, user, password, "AUTH " + mech, b"+ ", None)


# --- negative cases first ---------------------------------------------------------------------


def test_not_offered_where_the_handoff_cannot_honour_them(front):
    """An IMAP backend without a master user: only PLAIN/LOGIN advertised, CRAM-MD5 refused."""
    c = front.raw("imaps_nomaster", "127.0.0.20")
    c.send("a0 CAPABILITY")
    caps = c.line()
    assert b"AUTH=PLAIN AUTH=LOGIN\r\n" in caps and b"CRAM" not in caps and b"SCRAM" not in caps
    c.until(b"a0 OK")
    c.send("a1 AUTHENTICATE CRAM-MD5")
    assert c.line() == b"a1 NO Unsupported authentication mechanism.\r\n"
    c.close()


def test_wrong_password_and_unknown_user_same_reply_as_plain(front):
    for mech in ("CRAM-MD5", "SCRAM-SHA-256"):
        for user in (ALICE[0], "nobody@example.test"):
            c, _ = front.smtp("127.0.0.21")
            assert smtp_exchange(c, mech, user, WRONG_PASSWORD) == SMTP_FAILED, (mech, user)
            c.close()
            c = front.raw("imaps", "127.0.0.21")
            assert imap_exchange(c, mech, user, WRONG_PASSWORD) == b"a1 " + IMAP_FAILED
            c.close()
            c = front.raw("pop3s", "127.0.0.21")
            assert pop3_exchange(c, mech, user, WRONG_PASSWORD) == POP3_FAILED
            c.close()
    log = front.moat.log()
    assert "event=auth_failed" in log and "mech=SCRAM-SHA-256 verifier=sasl" in log


def test_cancel_mid_exchange_then_plain_works(front):
    c, _ = front.smtp("127.0.0.22")
    c.send("AUTH SCRAM-SHA-256")
    assert c.line() == b"334 \r\n"  # client-first expected: an empty challenge
    c.send("*")
    assert c.line() == b"501 5.7.0 Authentication aborted\r\n"
    c.send("AUTH CRAM-MD5")
    assert c.line().startswith(b"334 ")
    c.send("*")
    assert c.line() == b"501 5.7.0 Authentication aborted\r\n"
    c.send("AUTH PLAIN " + plain_b64(*ALICE))
    assert c.line().startswith(b"235 ")
    c.close()
    c = front.raw("imaps", "127.0.0.22")
    c.send("a1 AUTHENTICATE CRAM-MD5")
    assert c.line().startswith(b"+ ")
    c.send("*")
    assert c.line() == b"a1 BAD Authentication cancelled.\r\n"
    c.close()


# --- logins -----------------------------------------------------------------------------------


def test_smtp_cram_and_scram_then_xclient_login(front, backends):
    before = len(backends.postfix_log())
    c, ehlo = front.smtp("127.0.0.23")
    assert b"250-AUTH PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256\r\n" in ehlo
    c.close()
    for mech in ("CRAM-MD5", "SCRAM-SHA-256", "SCRAM-SHA-1"):
        c, _ = front.smtp("127.0.0.23")
        assert smtp_exchange(c, mech, *ALICE) == b"235 2.7.0 Authentication successful\r\n"
        c.send("MAIL FROM:<%s>" % ALICE[0])
        assert c.line().startswith(b"250 ")
        c.send("RCPT TO:<%s>" % BOB[0])
        assert c.line().startswith(b"250 ")
        c.send("DATA")
        assert c.line().startswith(b"354 ")
        c.send("Subject: %s\r\n\r\nhello\r\n." % mech)
        assert c.line().startswith(b"250 ")
        c.send("QUIT")
        c.close()
    rig.wait_until(lambda: backends.postfix_log()[before:].count(
        "sasl_username=alice@example.test") >= 3, timeout=5.0, what="postfix sasl_username")
    log = front.moat.log()
    for mech in ("CRAM-MD5", "SCRAM-SHA-256", "SCRAM-SHA-1"):
        assert 'user="alice@example.test" mech=%s verifier=sasl' % mech in log or \
            "user=alice@example.test mech=%s verifier=sasl" % mech in log


def test_imap_cram_and_scram_through_the_master_user(front, backends):
    before = len(backends.dovecot_log())
    c = front.raw("imaps", "127.0.0.24")
    c.send("a0 CAPABILITY")
    assert b"AUTH=CRAM-MD5 AUTH=SCRAM-SHA-1 AUTH=SCRAM-SHA-256" in c.line()
    c.until(b"a0 OK")
    c.close()
    for mech, who in (("CRAM-MD5", ALICE), ("SCRAM-SHA-256", BOB)):
        c = front.raw("imaps", "127.0.0.24")
        reply = imap_exchange(c, mech, *who)
        assert reply.startswith(b"a1 OK"), reply
        c.send("a2 SELECT INBOX")
        assert c.until(b"a2 ").startswith(b"a2 OK")
        c.send("a3 LOGOUT")
        c.close()
    rig.wait_until(lambda: "imap-login: Info: Login: user=<bob@example.test>" in
                   backends.dovecot_log()[before:], timeout=5.0, what="dovecot login")
    dv = backends.dovecot_log()[before:]
    assert "imap-login: Info: Login: user=<alice@example.test>" in dv
    assert "Master user logging in as alice@example.test" in dv
    assert "mech=SCRAM-SHA-256 verifier=sasl" in front.moat.log()


def test_pop3_cram_and_scram_through_the_master_user(front, backends):
    before = len(backends.dovecot_log())
    c = front.raw("pop3s", "127.0.0.25")
    c.send("CAPA")
    capa = []
    for _ in range(20):
        capa.append(c.line())
        if capa[-1] == b".\r\n":
            break
    assert b"SASL PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256\r\n" in capa
    c.close()
    for mech in ("SCRAM-SHA-256", "CRAM-MD5"):
        c = front.raw("pop3s", "127.0.0.25")
        c.send("AUTH " + mech)  # no initial response: SCRAM starts with an empty challenge
        gen, client_first = mech_client(mech, *BOB)
        first = next(gen)
        line = c.line()
        if client_first:
            assert line == b"+ \r\n"
            c.send(b64(first))
            line = c.line()
        for _ in range(4):
            if not line.startswith(b"+ "):
                break
            c.send(b64(gen.send(unb64(line[2:].strip()))))
            line = c.line()
        assert line.startswith(b"+OK"), line
        c.send("STAT")
        assert c.line().startswith(b"+OK")
        c.send("QUIT")
        c.close()
    rig.wait_until(lambda: backends.dovecot_log()[before:].count(
        "pop3-login: Info: Login: user=<bob@example.test>") >= 2, timeout=5.0,
        what="dovecot pop3 login")
