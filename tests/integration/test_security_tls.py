"""TLS and admission hardening, end to end with real clients (openssl s_client, imaplib,
smtplib) against real Postfix and Dovecot:

* silent sockets on implicit-TLS ports hold no max_tls_handshakes slot (IMAPS, submissions and
  STARTTLS on the MX port keep working, a mail is delivered over STARTTLS) and close after
  [timeouts] tls_first_byte, named in the closing line;
* a hostname that is not a DNS name is refused by `moat -t`, and the longest valid one makes
  whole refusal lines (no bytes beyond the line);
* [tls] ticket_lifetime: the hint is the configured value, 0 turns off resumption (TLS 1.3
  tickets, TLS 1.2 tickets and session IDs); early data is never accepted;
* [tls] groups: exactly the configured groups in TLS 1.2 and TLS 1.3.
"""

import os
import socket
import subprocess
import time
import uuid

import pytest

import conftest
import rig
from smtp_helpers import ALICE, BOB, message

LONG_HOST = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])  # 253 characters


def s_client(port, *args, src="127.0.0.2", stdin=b"", timeout=15):
    """openssl s_client from src; returns (rc, output). With stdin it reads until the server
    closes (-ign_eof)."""
    cmd = ["openssl", "s_client", "-bind", "%s:0" % src, "-connect", "127.0.0.1:%d" % port]
    cmd += (["-ign_eof"] if stdin else []) + list(args)
    p = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout)
    return p.returncode, (p.stdout + p.stderr).decode(errors="replace")


def established(out):
    return "Cipher is (NONE)" not in out and ", Cipher is " in out


def marker():
    return "moat-tls-" + uuid.uuid4().hex[:12]


def start(moat, backends, certs, moat_section="", tls_extra="", extra="", cert=None):
    """moat with implicit-TLS IMAP and submission and a STARTTLS MX listener."""
    ports = dict(zip(("imaps", "submissions", "mx"), rig.free_ports(3)))
    conf = rig.moat_conf(certs, backends={
        "dovecot": {"address": "127.0.0.1:%d" % backends.ports["imap"], "identity": "id"},
        "postfix": {"address": "127.0.0.1:%d" % backends.ports["smtp_xclient"],
                    "identity": "xclient"},
    }, listeners={
        "imaps": {"protocol": "imap", "listen": "127.0.0.1:%d" % ports["imaps"],
                  "tls": "implicit", "backend": "dovecot"},
        "submissions": {"protocol": "submission", "tls": "implicit", "auth": "yes",
                        "listen": "127.0.0.1:%d" % ports["submissions"], "backend": "postfix",
                        "local_domains": "example.test"},
        "mx": {"protocol": "smtp", "tls": "starttls", "listen": "127.0.0.1:%d" % ports["mx"],
               "backend": "postfix", "local_domains": "example.test"},
    }, extra=extra)
    conf = conf.replace("[moat]\n", "[moat]\n" + moat_section, 1)
    if cert is not None:
        conf = conf.replace("certificate = %s\nkey = %s\n" % (certs.ecdsa, certs.ecdsa_key),
                            "certificate = %s\nkey = %s\n" % cert, 1)
    conf = conf.replace("[tls]\n", "[tls]\n" + tls_extra, 1)
    m = moat(conf, wait_ports=list(ports.values()))
    m.ports = ports
    return m


# --- silent sockets and max_tls_handshakes ---------------------------------------------------

def still_open(s):
    """True while moat has not closed s (nothing to read yet)."""
    s.setblocking(False)
    try:
        return s.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        s.setblocking(True)


def test_silent_sockets_hold_no_handshake_slot(moat, backends, certs):
    backends.flush_queue()
    m = start(moat, backends, certs, moat_section="max_tls_handshakes = 2\n",
              extra="[limits]\nmax_sessions_per_ip = 100\n"
                    "[timeouts]\ntls_first_byte = 60s\nhandshake = 60s\n")
    silent = []
    try:
        for port in (m.ports["imaps"], m.ports["submissions"]):
            for _ in range(10):
                silent.append(rig.client_socket(port, src="127.0.0.20", timeout=10))
        # real TLS clients on both implicit ports
        with rig.IMAPS(m.ports["imaps"], certs, timeout=30) as c:
            c.login(ALICE, backends.users[ALICE])
            assert c.noop()[0] == "OK"
            c.logout()
        s = rig.smtp(m.ports["submissions"], tls=True, certs=certs, timeout=30)
        s.login(ALICE, backends.users[ALICE])
        s.quit()
        # STARTTLS on the MX port is not refused with 454, and a mail comes through it
        mk = marker()
        s = rig.smtp(m.ports["mx"], timeout=30)
        s.ehlo("client.test")
        code, text = s.starttls(context=rig.client_context(certs))
        assert code == 220, (code, text)
        s.sendmail("someone@remote.example", [BOB], message(mk))
        s.quit()
        backends.wait_maildir(BOB, mk, timeout=20)
        # the silent sockets were held open all along
        assert all(still_open(x) for x in silent)
    finally:
        for x in silent:
            x.close()
    log = m.log()
    assert "reason=max_tls_handshakes" not in log, log


def test_silent_socket_closed_at_tls_first_byte(moat, backends, certs):
    m = start(moat, backends, certs,
              extra="[timeouts]\ntls_first_byte = 1s\nhandshake = 30s\n")
    for port in (m.ports["imaps"], m.ports["submissions"]):
        s = rig.client_socket(port, src="127.0.0.21", timeout=20)
        t0 = time.monotonic()
        assert s.recv(100) == b""  # closed by moat, nothing sent in the clear
        elapsed = time.monotonic() - t0
        s.close()
        assert 0.8 <= elapsed < 15, elapsed
    rig.wait_until(lambda: m.log().count("timeout=tls_first_byte") >= 2, 10,
                   what="two closing lines naming tls_first_byte")
    closes = [l for l in m.log().splitlines() if "timeout=tls_first_byte" in l]
    assert all("reason=handshake_timeout" in l and "phase=handshake" in l for l in closes)
    # a client that starts its handshake in time gets the whole handshake timeout after it
    with rig.IMAPS(m.ports["imaps"], certs, timeout=30) as c:
        assert c.noop()[0] == "OK"
        c.logout()


# --- hostname ------------------------------------------------------------------------------

def check_config(tmp_path, text):
    path = tmp_path / "check.conf"
    path.write_text(text)
    binary = conftest.moat_binary()
    p = subprocess.run([binary, "-t", "-c", str(path)], capture_output=True, text=True,
                       timeout=20)
    return p.returncode, p.stdout + p.stderr, str(path)


@pytest.mark.parametrize("host,why", [
    ("x" * 300, "must be 1 to 253 characters"),
    ("a" * 64 + ".example", "a label is longer than 63 characters"),
    ("mx.example/%s%s%s%s", "only letters, digits, '-' and '.' are allowed"),
])
def test_bad_hostname_refused_by_config_check(tmp_path, certs, host, why):
    text = ("[moat]\nhostname = %s\n[tls]\ncertificate = %s\nkey = %s\n"
            "[backend b]\naddress = 127.0.0.1:10025\n"
            "[listener mx]\nprotocol = smtp\nlisten = 127.0.0.1:2525\ntls = none\nbackend = b\n"
            % (host, certs.ecdsa, certs.ecdsa_key))
    rc, out, path = check_config(tmp_path, text)
    assert rc == 1, out
    assert "%s:2: hostname: not a host name: %s" % (path, why) in out, out


def test_refusal_with_longest_hostname_is_one_whole_line(moat, backends, certs):
    ports = dict(zip(("mx", "imap"), rig.free_ports(2)))
    conf = rig.moat_conf(certs, hostname=LONG_HOST, backends={
        "postfix": {"address": "127.0.0.1:%d" % backends.ports["smtp_xclient"],
                    "identity": "xclient"},
        "dovecot": {"address": "127.0.0.1:%d" % backends.ports["imap"], "identity": "id"},
    }, listeners={
        "mx": {"protocol": "smtp", "tls": "none", "listen": "127.0.0.1:%d" % ports["mx"],
               "backend": "postfix", "deny": "127.0.0.22/32"},
        "imap": {"protocol": "imap", "tls": "none", "listen": "127.0.0.1:%d" % ports["imap"],
                 "backend": "dovecot", "deny": "127.0.0.22/32"},
    })
    m = moat(conf, wait_ports=list(ports.values()))
    for port, want in ((ports["mx"], b"554 5.7.1 %s Access denied\r\n" % LONG_HOST.encode()),
                       (ports["imap"], b"* BYE Access denied\r\n")):
        s = rig.client_socket(port, src="127.0.0.22", timeout=10)
        got = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
        s.close()
        assert got == want, got
    assert m.alive()


# --- session resumption and early data -------------------------------------------------------

def resume_pair(port, tmp_path, *args, tls13=True):
    """Two connections, the second offering the first one's session; returns the outputs."""
    sess = str(tmp_path / ("sess-%s" % uuid.uuid4().hex[:8]))
    stdin = b"a1 LOGOUT\r\n"
    _, first = s_client(port, *args, "-sess_out", sess, stdin=stdin)
    if not os.path.exists(sess):
        return first, None  # the server gave nothing resumable
    _, second = s_client(port, *args, "-sess_in", sess, stdin=stdin)
    return first, second


def test_ticket_lifetime_hint_and_resumption(moat, backends, certs, tmp_path):
    m = start(moat, backends, certs)  # ticket_lifetime default: 1h
    port = m.ports["imaps"]
    for proto in ("-tls1_3", "-tls1_2"):
        first, second = resume_pair(port, tmp_path, proto)
        assert "TLS session ticket lifetime hint: 3600 (seconds)" in first, first
        assert second is not None and "Reused, " in second, second
    # TLS 1.2 session-ID resumption without tickets
    first, second = resume_pair(port, tmp_path, "-tls1_2", "-no_ticket")
    assert second is not None and "Reused, " in second, second
    m2 = start(moat, backends, certs, tls_extra="ticket_lifetime = 90s\n")
    first, second = resume_pair(m2.ports["imaps"], tmp_path, "-tls1_3")
    assert "TLS session ticket lifetime hint: 90 (seconds)" in first, first
    assert second is not None and "Reused, " in second, second


def test_ticket_lifetime_zero_turns_resumption_off(moat, backends, certs, tmp_path):
    m = start(moat, backends, certs, tls_extra="ticket_lifetime = 0\n")
    port = m.ports["imaps"]
    for args in (("-tls1_3",), ("-tls1_2",), ("-tls1_2", "-no_ticket")):
        first, second = resume_pair(port, tmp_path, *args)
        assert established(first), first
        assert "* OK" in first, first
        assert "session ticket lifetime hint" not in first, first
        assert second is None or ("New, " in second and "Reused, " not in second), second


def test_early_data_not_accepted(moat, backends, certs, tmp_path):
    m = start(moat, backends, certs)
    port = m.ports["imaps"]
    sess = str(tmp_path / "sess-early")
    _, first = s_client(port, "-tls1_3", "-sess_out", sess, stdin=b"a1 LOGOUT\r\n")
    assert os.path.exists(sess), first
    assert "Max Early Data: 0" in first, first
    early = tmp_path / "early.txt"
    early.write_bytes(b"e1 CAPABILITY\r\n")
    _, out = s_client(port, "-tls1_3", "-sess_in", sess, "-early_data", str(early),
                      stdin=b"a2 LOGOUT\r\n")
    assert "Reused, " in out, out
    assert "Early data was accepted" not in out, out
    assert "e1 OK" not in out, out  # the early command never reached the IMAP session
    assert "a2 OK" in out, out


# --- key exchange groups ---------------------------------------------------------------------

CONFIGURED = ["X25519", "P-256", "P-384"]
NOT_CONFIGURED_13 = ["P-521", "X448", "ffdhe2048"]
NOT_CONFIGURED_12 = ["P-521", "X448", "secp256k1", "brainpoolP256r1", "brainpoolP384r1",
                     "brainpoolP512r1"]


def test_groups_exactly_the_configured_ones(moat, backends, certs):
    # an RSA certificate: in TLS 1.2 an ECDSA one ties the client to its own curve
    m = start(moat, backends, certs, cert=(certs.rsa, certs.rsa_key))
    port = m.ports["imaps"]
    for g in CONFIGURED:
        _, out = s_client(port, "-tls1_3", "-groups", g, stdin=b"a1 LOGOUT\r\n")
        assert established(out) and "a1 OK" in out, (g, out)
        _, out = s_client(port, "-tls1_2", "-curves", g, stdin=b"a1 LOGOUT\r\n")
        assert established(out) and "a1 OK" in out, (g, out)
    for g in NOT_CONFIGURED_13:
        _, out = s_client(port, "-tls1_3", "-groups", g)
        assert not established(out), (g, out)
    for g in NOT_CONFIGURED_12:
        _, out = s_client(port, "-tls1_2", "-curves", g)
        assert not established(out), (g, out)
        assert "Server Temp Key" not in out, (g, out)  # no ServerKeyExchange on it either


def test_groups_narrowed(moat, backends, certs):
    m = start(moat, backends, certs, cert=(certs.rsa, certs.rsa_key),
              tls_extra="groups = P-384\n")
    port = m.ports["imaps"]
    for proto, opt in (("-tls1_3", "-groups"), ("-tls1_2", "-curves")):
        _, out = s_client(port, proto, opt, "P-384", stdin=b"a1 LOGOUT\r\n")
        assert established(out) and "a1 OK" in out, out
        for g in ("X25519", "P-256"):
            _, out = s_client(port, proto, opt, g)
            assert not established(out), (proto, g, out)


def test_group_outside_the_list_never_carries_a_session(moat, backends, certs):
    """Only X25519 configured: a TLS 1.2 client offering only P-256 gets wolfSSL's fallback
    curve at best, and moat ends the connection before the first byte of the protocol."""
    m = start(moat, backends, certs, cert=(certs.rsa, certs.rsa_key),
              tls_extra="groups = X25519\n")
    port = m.ports["imaps"]
    _, out = s_client(port, "-tls1_2", "-curves", "X25519", stdin=b"a1 LOGOUT\r\n")
    assert established(out) and "a1 OK" in out, out
    for proto, opt in (("-tls1_2", "-curves"), ("-tls1_3", "-groups")):
        _, out = s_client(port, proto, opt, "P-256", stdin=b"a1 LOGOUT\r\n")
        assert "* OK" not in out and "a1 OK" not in out, (proto, out)
    rig.wait_until(lambda: m.log().count("reason=handshake_failed") >= 2, 10,
                   what="two failed handshakes")
