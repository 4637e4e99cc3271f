"""The core against real clients and the real Dovecot: TLS policy (versions, ciphers, ALPN,
SNI), handshake timeouts that trickled bytes do not extend, backend failover, reading a mail
that Postfix delivered through moat with curl, the global session limit, the closing log line,
and a clean drain on SIGTERM."""

import os
import re
import signal
import socket
import ssl
import subprocess
import time

import pytest

import rig


def s_client(port, *args, src="127.0.0.2", timeout=10, stdin=b"", brief=True):
    """openssl s_client from a 127.0.0.2+ source; returns (rc, combined output). With stdin
    it keeps reading until the server closes (-ign_eof)."""
    cmd = ["openssl", "s_client", "-bind", "%s:0" % src, "-connect", "127.0.0.1:%d" % port]
    cmd += (["-brief"] if brief else []) + (["-ign_eof"] if stdin else []) + list(args)
    p = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout)
    return p.returncode, (p.stdout + p.stderr).decode(errors="replace")


def established(out):
    return "CONNECTION ESTABLISHED" in out


@pytest.fixture
def tls_moat(moat, backends, certs, free_port):
    """moat with an implicit-TLS IMAP and POP3 listener and a STARTTLS IMAP listener."""
    ports = {"imaps": free_port(), "pop3s": free_port(), "imap": free_port()}

    def start(extra="", imap_addresses=None, tls_section=None, moat_section=""):
        addr = imap_addresses or "127.0.0.1:%d" % backends.ports["imap"]
        conf = rig.moat_conf(certs, backends={
            "dovecot_imap": {"address": addr, "identity": "id"},
            "dovecot_pop3": {"address": "127.0.0.1:%d" % backends.ports["pop3"],
                             "identity": "xclient"},
        }, listeners={
            "imaps": {"protocol": "imap", "listen": "127.0.0.1:%d" % ports["imaps"],
                      "tls": "implicit", "backend": "dovecot_imap"},
            "pop3s": {"protocol": "pop3", "listen": "127.0.0.1:%d" % ports["pop3s"],
                      "tls": "implicit", "backend": "dovecot_pop3"},
            "imap": {"protocol": "imap", "listen": "127.0.0.1:%d" % ports["imap"],
                     "tls": "starttls", "backend": "dovecot_imap"},
        }, extra=extra)
        conf = conf.replace("[moat]\n", "[moat]\n" + moat_section, 1)
        if tls_section is not None:
            conf = re.sub(r"\[tls\]\n(?:[a-z_]+ = [^\n]*\n)+", tls_section, conf)
        m = moat(conf, wait_ports=list(ports.values()))
        m.ports = ports
        return m
    return start


# --- negative cases first -------------------------------------------------------------------

@pytest.mark.parametrize("version", ["-tls1", "-tls1_1"])
def test_old_tls_versions_refused(tls_moat, version):
    m = tls_moat()
    # SECLEVEL=0 so that the client really offers the old version
    rc, out = s_client(m.ports["imaps"], version, "-cipher", "DEFAULT:@SECLEVEL=0")
    assert not established(out), out
    assert rc != 0
    # the closing line is written from moat's loop after the client has gone: wait for it
    rig.wait_until(lambda: "reason=handshake_failed" in m.log(), 5, what="closing line")


@pytest.mark.parametrize("cipher", ["AES128-SHA", "AES256-SHA256", "ECDHE-RSA-AES128-SHA",
                                    "ECDHE-ECDSA-AES128-SHA256"])
def test_weak_tls12_ciphers_refused(tls_moat, cipher):
    m = tls_moat()
    rc, out = s_client(m.ports["imaps"], "-tls1_2", "-cipher", cipher + ":@SECLEVEL=0")
    assert not established(out), out


def test_tls13_ccm_suite_refused(tls_moat):
    m = tls_moat()
    rc, out = s_client(m.ports["imaps"], "-tls1_3", "-ciphersuites", "TLS_AES_128_CCM_SHA256")
    assert not established(out), out


def test_alpn_mismatch_aborts_handshake(tls_moat):
    m = tls_moat()
    rc, out = s_client(m.ports["imaps"], "-alpn", "http/1.1")
    assert not established(out), out
    assert "no application protocol" in out
    # the POP3 listener speaks pop3, not imap: ALPACA cross-protocol attempt
    rc, out = s_client(m.ports["pop3s"], "-alpn", "imap")
    assert not established(out), out
    rig.wait_until(lambda: "reason=alpn_mismatch" in m.log(), 5, what="closing line")


def test_handshake_timeout_silent_client(tls_moat):
    m = tls_moat(extra="[timeouts]\nhandshake = 1s\n")
    s = rig.client_socket(m.ports["imaps"], src="127.0.0.3", timeout=10)
    t0 = time.monotonic()
    assert s.recv(100) == b""  # moat closes; nothing is ever sent in the clear
    elapsed = time.monotonic() - t0
    s.close()
    assert 0.8 <= elapsed < 4, elapsed
    rig.wait_until(lambda: "reason=handshake_timeout" in m.log(), 5, what="close line")


def client_hello_bytes():
    """The first flight of a real TLS client, made with a memory BIO (no network)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="mx.moat.test")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return out.read()


def test_handshake_timeout_not_extended_by_trickle(tls_moat):
    m = tls_moat(extra="[timeouts]\nhandshake = 1s\n")
    hello = client_hello_bytes()
    s = rig.client_socket(m.ports["imaps"], src="127.0.0.4", timeout=10)
    t0 = time.monotonic()
    closed_at = None
    # one byte every 100 ms: at most ~5 s of trickling, far beyond the 1 s handshake limit
    for i in range(min(len(hello), 50)):
        try:
            s.sendall(hello[i:i + 1])
        except OSError:
            closed_at = time.monotonic() - t0
            break
        time.sleep(0.1)
        s.setblocking(False)
        try:
            if s.recv(100) == b"":
                closed_at = time.monotonic() - t0
                break
        except BlockingIOError:
            pass
        except OSError:
            closed_at = time.monotonic() - t0
            break
        finally:
            s.setblocking(True)
    s.close()
    assert closed_at is not None, "trickling client was never closed"
    assert closed_at < 2.5, closed_at
    rig.wait_until(lambda: "reason=handshake_timeout" in m.log(), 5, what="close line")


# --- TLS accepted ---------------------------------------------------------------------------

@pytest.mark.parametrize("version,name", [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")])
def test_tls12_and_tls13_accepted(tls_moat, certs, version, name):
    m = tls_moat()
    rc, out = s_client(m.ports["imaps"], version, "-CAfile", certs.ca, "-verify_return_error",
                       "-servername", "mx.moat.test", stdin=b"a1 LOGOUT\r\n")
    assert established(out), out
    assert "Protocol version: %s" % name in out
    assert "* OK" in out  # the IMAP greeting came through TLS
    rig.wait_until(lambda: "tls=%s" % name in m.log(), 5, what="close line with tls version")


def test_alpn_matching_or_absent_accepted(tls_moat):
    m = tls_moat()
    rc, out = s_client(m.ports["imaps"], "-alpn", "imap", stdin=b"a1 LOGOUT\r\n", brief=False)
    assert "ALPN protocol: imap" in out and "a1 OK" in out, out
    rc, out = s_client(m.ports["pop3s"], "-alpn", "pop3", stdin=b"QUIT\r\n")
    assert established(out), out


def test_sni_selects_second_certificate(tls_moat, certs):
    tls = ("[tls]\ncertificate = %s\nkey = %s\ncertificate = %s\nkey = %s\n"
           % (certs.ecdsa, certs.ecdsa_key, certs.other, certs.other_key))
    m = tls_moat(tls_section=tls)
    ctx = rig.client_context(certs)
    for name, want in (("other.moat.test", "other.moat.test"), ("mx.moat.test", "mx.moat.test")):
        with rig.tls_socket(m.ports["imaps"], certs, server_hostname=name, ctx=ctx) as s:
            sans = [v for k, v in s.getpeercert()["subjectAltName"] if k == "DNS"]
            assert want in sans
            assert s.recv(100).startswith(b"* OK")


def test_rsa_certificate(tls_moat, certs):
    m = tls_moat(tls_section="[tls]\ncertificate = %s\nkey = %s\n" % (certs.rsa, certs.rsa_key))
    rc, out = s_client(m.ports["imaps"], "-tls1_2", "-CAfile", certs.ca, "-verify_return_error",
                       stdin=b"a1 LOGOUT\r\n")
    assert established(out) and "ECDHE-RSA" in out, out


# --- through to the backends ----------------------------------------------------------------

def curl(args, timeout=30):
    p = subprocess.run(["curl", "-sS", "--max-time", "20", "--interface", "127.0.0.2"] + args,
                       capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def test_read_delivered_mail_with_curl(tls_moat, backends, certs):
    m = tls_moat()
    backends.cleanup_maildirs()
    token = "core-curl-%d" % os.getpid()
    backends.deliver("bob@example.test", token, "body of " + token)
    user, pw = "bob@example.test", backends.users["bob@example.test"]
    imaps = ["--cacert", certs.ca, "--resolve", "mx.moat.test:%d:127.0.0.1" % m.ports["imaps"],
             "-u", "%s:%s" % (user, pw)]
    url = "imaps://mx.moat.test:%d/INBOX" % m.ports["imaps"]
    # the message's UID, not an assumed 1: Dovecot's UIDs keep growing across cleanups, and
    # mail of earlier tests may still arrive
    rc, out, err = curl(imaps + ["-X", "UID SEARCH SUBJECT %s" % token, url])
    assert rc == 0, err
    uids = [w for line in out.splitlines() if line.startswith("* SEARCH")
            for w in line.split()[2:]]
    assert len(uids) == 1, out
    rc, out, err = curl(imaps + [url + ";UID=" + uids[0]])
    assert rc == 0, err
    assert "body of " + token in out
    pop3s = ["--cacert", certs.ca, "--resolve", "mx.moat.test:%d:127.0.0.1" % m.ports["pop3s"],
             "-u", "%s:%s" % (user, pw)]
    rc, out, err = curl(pop3s + ["pop3s://mx.moat.test:%d/" % m.ports["pop3s"]])  # LIST
    assert rc == 0, err
    numbers = [line.split()[0] for line in out.splitlines() if line.strip()]
    bodies = []
    for n in numbers:
        rc, body, err = curl(pop3s + ["pop3s://mx.moat.test:%d/%s" % (m.ports["pop3s"], n)])
        assert rc == 0, err
        bodies.append(body)
    assert any("body of " + token in body for body in bodies), bodies
    assert pw not in m.log()
    # Dovecot saw the real client, not moat's loopback address
    assert "rip=127.0.0.2" in backends.dovecot_log()


def test_failover_to_second_backend_address(tls_moat, backends, certs, free_port):
    dead = free_port()  # nothing listens there
    m = tls_moat(imap_addresses="127.0.0.1:%d 127.0.0.1:%d" % (dead, backends.ports["imap"]))
    with rig.IMAPS(m.ports["imaps"], certs) as c:
        c.login("alice@example.test", backends.users["alice@example.test"])
        typ, _ = c.select("INBOX")
        assert typ == "OK"
        c.logout()
    want = "backend=127.0.0.1:%d" % backends.ports["imap"]
    rig.wait_until(lambda: want in m.log(), 5, what="close line naming the second address")
    log = m.log()
    assert "backend_connect_failed" in log and ":%d" % dead in log


def test_large_mail_through_small_buffers(tls_moat, backends, certs):
    """Back-pressure: a 1.5 MB message crosses 4 KB buffers intact."""
    m = tls_moat(extra="[limits]\nclient_buffer = 4k\nbackend_buffer = 4k\n")
    backends.cleanup_maildirs()
    line = "0123456789abcdefghijklmnopqrstuvwxyz" * 2 + "\n"
    body = line * (1_500_000 // len(line))
    backends.deliver("alice@example.test", "big", body, timeout=20)
    with rig.IMAPS(m.ports["imaps"], certs, timeout=30) as c:
        c.login("alice@example.test", backends.users["alice@example.test"])
        c.select("INBOX")
        typ, data = c.fetch("1", "(BODY[TEXT])")
        assert typ == "OK"
        got = data[0][1].replace(b"\r\n", b"\n").decode()
        assert got.rstrip("\n") == body.rstrip("\n")
        c.logout()


def test_max_sessions_refuses_with_protocol_reply(tls_moat):
    m = tls_moat(moat_section="max_sessions = 2\n")
    held = [rig.client_socket(m.ports["imap"], src="127.0.0.%d" % (10 + i)) for i in range(2)]
    try:
        for h in held:
            assert h.recv(200).startswith(b"* OK")
        extra = rig.client_socket(m.ports["imap"], src="127.0.0.12")
        extra.settimeout(5)
        assert extra.recv(200).startswith(b"* BYE [UNAVAILABLE]")
        assert extra.recv(200) == b""
        extra.close()
        # an implicit-TLS listener just closes: no plaintext before the handshake
        tls = rig.client_socket(m.ports["imaps"], src="127.0.0.13")
        tls.settimeout(5)
        assert tls.recv(200) == b""
        tls.close()
    finally:
        for h in held:
            h.close()
    # once one leaves, the next is served
    rig.wait_until(lambda: m.log().count("event=close") >= 2, 5, what="sessions closed")
    again = rig.client_socket(m.ports["imap"], src="127.0.0.14")
    again.settimeout(5)
    assert again.recv(200).startswith(b"* OK")
    again.close()
    assert "reason=max_sessions" in m.log()


# --- operations -----------------------------------------------------------------------------

def close_lines(log):
    return [l for l in log.splitlines() if "event=close" in l]


def test_one_closing_line_per_session(tls_moat):
    m = tls_moat()
    for i in range(3):
        rc, out = s_client(m.ports["imaps"], stdin=b"a1 LOGOUT\r\n", src="127.0.0.%d" % (5 + i))
        assert established(out)
    rig.wait_until(lambda: len(close_lines(m.log())) >= 3, 5, what="close lines")
    lines = close_lines(m.log())
    assert len(lines) == 3
    sids = set()
    for l in lines:
        for key in ("sid=", "listener=imaps", "client=127.0.0.", "tls=TLSv1.3", "cipher=",
                    "backend=", "in=", "out=", "dur_ms=", "reason=", "phase="):
            assert key in l, (key, l)
        sids.add(re.search(r"sid=(\w+)", l).group(1))
    assert len(sids) == 3


def test_sigterm_drains_and_exits_zero(tls_moat):
    m = tls_moat()
    idle = rig.client_socket(m.ports["imap"], src="127.0.0.9")
    assert idle.recv(200).startswith(b"* OK")
    m.signal(signal.SIGTERM)
    got = b""
    idle.settimeout(5)
    for _ in range(20):
        chunk = idle.recv(200)
        if not chunk:
            break
        got += chunk
    idle.close()
    assert b"* BYE" in got
    m.proc.wait(10)
    assert m.proc.returncode == 0
    assert "event=stopped" in m.log()
    # the listening sockets are gone
    with pytest.raises(OSError):
        rig.client_socket(m.ports["imaps"], timeout=1).close()
