"""The backend self-check (`moat -B -c FILE`, and the same checks at start and on SIGHUP as log
warnings) against the rig's real Postfix and Dovecot: a correctly set XCLIENT port, the legacy
port that trusts loopback, a PROXY port, a lax XCLIENT port that relays for the client it is
told about, Dovecot's IMAP (ID) and POP3 (XCLIENT) and a backend that is down. Each check is
also confirmed from the backend's side (Postfix's log, its queue), and IPv6 clients are checked
end to end: logged as [addr]:port, and handed to Postfix by XCLIENT."""
import os
import re
import signal
import smtplib
import socket
import subprocess
import time

import pytest

import rig

BOB = "bob@example.test"
LINE = re.compile(r"^(ok|warn|fail) +(\S+) (\S+) ([a-z0-9_]+): (.*)$")
RELAY_RCPT = "nobody@moat-relay-check.example"


def binary():
    b = os.environ.get("MOAT_BIN") or os.path.join(rig.ROOT, "build", "moat")
    if not os.access(b, os.X_OK):
        pytest.skip("moat binary not found at %s" % b)
    return b


def conf_text(certs, backends, listeners, moat_extra=""):
    """backends: {name: "address = ...\\nidentity = ..."}; listeners: [(name, protocol,
    backend, extra)] on free loopback ports."""
    lines = ["[moat]", "hostname = mx.moat.test", "workers = 1", moat_extra,
             "[tls]", "certificate = %s" % certs.ecdsa, "key = %s" % certs.ecdsa_key]
    for name, body in backends.items():
        lines += ["[backend %s]" % name, body]
    ports = rig.free_ports(len(listeners))
    for (name, proto, backend, extra), port in zip(listeners, ports):
        lines += ["[listener %s]" % name, "protocol = %s" % proto,
                  "listen = 127.0.0.1:%d" % port, "backend = %s" % backend,
                  "local_domains = example.test", extra]
    return "\n".join(lines) + "\n"


def run_check(conf, tmp_path):
    path = tmp_path / "moat.conf"
    path.write_text(conf)
    r = subprocess.run([binary(), "-B", "-c", str(path)], capture_output=True, text=True,
                       timeout=120)
    assert "Sanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr
    results = {}
    for line in r.stdout.splitlines()[:-1]:
        m = LINE.match(line)
        assert m, "not a check line: %r" % line
        results[(m.group(2), m.group(4))] = (m.group(1), m.group(5))
    assert re.match(r"^\d+ failed, \d+ warnings$", r.stdout.splitlines()[-1]), r.stdout
    return r.returncode, results, r.stdout


def addr(backends, port_name):
    return "address = 127.0.0.1:%d" % backends.ports[port_name]


def expect(results, backend, check, status, *words):
    assert (backend, check) in results, "no %s line for %s: %s" % (check, backend, results)
    got, detail = results[(backend, check)]
    assert got == status, "%s %s: %s %s" % (backend, check, got, detail)
    for w in words:
        assert w in detail, "%s %s: %r not in %r" % (backend, check, w, detail)


def queued_check_recipients(backends):
    return [a for a in backends.queue() if "moat-relay-check" in a]


# --- negative cases first -------------------------------------------------------------------

def test_down_backend_is_a_failure_and_exit_1(backends, certs, tmp_path):
    dead = rig.free_port()
    conf = conf_text(certs, {"dead": "address = 127.0.0.1:%d\nidentity = xclient" % dead,
                             "pop3": addr(backends, "pop3") + "\nidentity = xclient"},
                     [("deadpop", "pop3", "dead", ""), ("pop", "pop3", "pop3", "")])
    rc, res, out = run_check(conf, tmp_path)
    assert rc == 1, out
    expect(res, "dead", "reachable", "fail", "cannot connect", "refused")
    assert not any(b == "dead" and c != "reachable" for b, c in res), out
    # the healthy one next to it is checked in full
    expect(res, "pop3", "reachable", "ok")
    expect(res, "pop3", "identity", "ok", "XCLIENT ADDR=192.0.2.1 accepted")
    assert out.splitlines()[-1].startswith("1 failed")


def test_xclient_taken_but_not_honoured_fails(backends, certs, tmp_path):
    """A Postfix that takes XCLIENT but has the TEST-NET client in mynetworks relays for it."""
    conf = conf_text(certs, {"lax": addr(backends, "smtp_xclient_lax") + "\nidentity = xclient"},
                     [("mx", "smtp", "lax", "")])
    rc, res, out = run_check(conf, tmp_path)
    assert rc == 1, out
    expect(res, "lax", "identity", "ok", "XCLIENT ADDR=192.0.2.1 accepted")
    expect(res, "lax", "honoured", "fail", "not honoured", "192.0.2.1", "250", "mynetworks")
    # inet_protocols = all: IPv6 client addresses are taken
    expect(res, "lax", "ipv6", "ok", "IPV6:2001:db8::1 accepted")
    # the accepted relay attempt never became a message
    assert queued_check_recipients(backends) == []


def test_legacy_backend_without_xclient(backends, certs, tmp_path):
    """The legacy port: no XCLIENT for moat, and it relays for moat's own address."""
    conf = conf_text(certs, {"legacy": addr(backends, "smtp_plain") + "\nidentity = xclient",
                             "bare": addr(backends, "smtp_plain") + "\nidentity = none"},
                     [("mx", "smtp", "legacy", ""), ("mx2", "smtp", "bare", "")])
    rc, res, out = run_check(conf, tmp_path)
    assert rc == 1, out
    expect(res, "legacy", "identity", "fail", "XCLIENT is not offered",
           "smtpd_authorized_xclient_hosts = 127.0.0.1")
    expect(res, "legacy", "relay_for_moat", "warn", "relays for moat's own address 127.0.0.1",
           "without XCLIENT")
    # identity = none in front of an MX: unauthenticated clients all look like moat
    expect(res, "bare", "relay_for_moat", "fail", "listener mx2", "identity = xclient")
    expect(res, "bare", "identity", "ok", "identity = none")
    assert queued_check_recipients(backends) == []


def test_proxy_v1_to_dovecot_cannot_log_in(backends, certs, tmp_path):
    """PROXY v1 cannot say the client used TLS: Dovecot (disable_plaintext_auth) then offers
    no mechanism at all to the client it was told about, and every login would fail."""
    conf = conf_text(certs, {"v1": addr(backends, "imap_proxy") + "\nidentity = proxy-v1"},
                     [("imaps", "imap", "v1", "tls = implicit")])
    rc, res, out = run_check(conf, tmp_path)
    assert rc == 1, out
    expect(res, "v1", "identity", "ok", "proxy-v1 header accepted")
    expect(res, "v1", "auth", "fail", "listener imaps", "LOGINDISABLED")


# --- the rig's correctly set backends -------------------------------------------------------

def test_xclient_proxy_and_dovecot_backends(backends, certs, tmp_path):
    before = len(backends.postfix_log())
    conf = conf_text(certs, {
        "xclient": addr(backends, "smtp_xclient") + "\nidentity = xclient",
        "proxy": addr(backends, "smtp_proxy") + "\nidentity = proxy-v2",
        "imap": addr(backends, "imap") + "\nidentity = id",
        "imapproxy": addr(backends, "imap_proxy") + "\nidentity = proxy-v2",
        "pop3": addr(backends, "pop3") + "\nidentity = xclient",
    }, [("mx", "smtp", "xclient", ""), ("sub", "submission", "xclient", "tls = starttls"),
        ("mx2", "smtp", "proxy", ""), ("imap", "imap", "imap", "tls = implicit"),
        ("imap2", "imap", "imapproxy", "tls = implicit"), ("pop", "pop3", "pop3", "")])
    rc, res, out = run_check(conf, tmp_path)
    assert rc == 0, out  # warnings only
    for b in ("xclient", "proxy", "imap", "imapproxy", "pop3"):
        expect(res, b, "reachable", "ok", "connected from 127.0.0.1")
    expect(res, "xclient", "greeting", "ok", "220 mail.example.test")
    expect(res, "xclient", "identity", "ok", "XCLIENT ADDR=192.0.2.1 accepted")
    expect(res, "xclient", "honoured", "ok", "refused", "5.7.1")
    # the rig trusts loopback (mynetworks): safe only behind XCLIENT, and said so
    expect(res, "xclient", "relay_for_moat", "warn", "127.0.0.1", "mynetworks",
           "never let an unauthenticated client reach it without XCLIENT")
    # inet_protocols = ipv4: Postfix refuses an IPv6 client address
    expect(res, "xclient", "ipv6", "warn", "501", "421 backend not ready",
           "inet_protocols = all")
    # the submission listener replays logins as AUTH PLAIN
    expect(res, "xclient", "auth", "ok", "PLAIN")
    expect(res, "proxy", "identity", "ok", "proxy-v2 header accepted")
    expect(res, "proxy", "honoured", "ok", "refused")
    expect(res, "proxy", "ipv6", "warn", "421", "inet_protocols = all")
    assert ("proxy", "relay_for_moat") not in res
    expect(res, "imap", "greeting", "ok", "* OK")
    expect(res, "imap", "identity", "ok", "ID with x-originating-ip 192.0.2.1 accepted")
    expect(res, "imap", "auth", "ok", "PLAIN")
    expect(res, "imap", "ipv6", "ok")
    # proxy-v2 carries the TLS of moat's listener (PP2_CLIENT_SSL): Dovecot allows PLAIN
    expect(res, "imapproxy", "identity", "ok", "proxy-v2 header accepted")
    expect(res, "imapproxy", "auth", "ok", "PLAIN")
    expect(res, "imapproxy", "ipv6", "ok")
    expect(res, "pop3", "identity", "ok", "XCLIENT ADDR=192.0.2.1 accepted")
    expect(res, "pop3", "auth", "ok", "PLAIN")
    expect(res, "pop3", "ipv6", "ok")
    # Postfix itself saw the TEST-NET client moat named, refused it, and nothing was queued
    log = backends.postfix_log()[before:]
    assert re.search(r"smtp_xclient/smtpd.*reject: RCPT from \S*\[192\.0\.2\.1\]: 554 5\.7\.1 "
                     r"<%s>: Relay access denied" % re.escape(RELAY_RCPT), log), log[-3000:]
    assert re.search(r"smtp_proxy/smtpd.*reject: RCPT from \S*\[192\.0\.2\.1\]", log)
    assert queued_check_recipients(backends) == []


# --- in a running moat ----------------------------------------------------------------------

def test_start_and_reload_log_warnings_and_serve_anyway(moat, backends, certs):
    dead = rig.free_port()
    backends_conf = {"dead": "address = 127.0.0.1:%d\nidentity = xclient" % dead,
                     "xclient": addr(backends, "smtp_xclient") + "\nidentity = xclient"}
    ports = rig.free_ports(2)
    listeners = ("[listener deadpop]\nprotocol = pop3\nlisten = 127.0.0.1:%d\nbackend = dead\n"
                 "[listener mx]\nprotocol = smtp\nlisten = 127.0.0.1:%d\nbackend = xclient\n"
                 "local_domains = example.test\n" % tuple(ports))
    text = conf_text(certs, backends_conf, []) + listeners
    m = moat(text, wait_ports=ports)
    rig.wait_until(lambda: "event=backend_check_done" in m.log(), timeout=30,
                   what="the start-up backend check")
    log = m.log()
    assert re.search(r"warn event=backend_check backend=dead address=127\.0\.0\.1:%d "
                     r"check=reachable status=fail detail=\"cannot connect" % dead, log), log
    assert re.search(r"warn event=backend_check backend=xclient \S+ check=ipv6 status=warn", log)
    assert "event=backend_check_done failed=1 " in log
    # it serves all the same: a mail through the healthy backend
    mk = "moat-bc-%d" % time.monotonic_ns()
    with rig.smtp(ports[1], src="127.0.0.30") as s:
        s.sendmail("someone@remote.example", [BOB], "Subject: %s\r\n\r\nhi\r\n" % mk)
    backends.wait_maildir(BOB, mk)
    # after a reload without the dead backend: checked again, no failure
    rig.write_file(m.conf_path, rig.read_text(m.conf_path).replace(
        "address = 127.0.0.1:%d\n" % dead, addr(backends, "pop3") + "\n"))
    m.signal(signal.SIGHUP)
    rig.wait_until(lambda: m.log().count("event=backend_check_done") == 2, timeout=30,
                   what="the reload's backend check")
    after = m.log()[len(log):]
    assert "event=reloaded" in after
    assert "event=backend_check_done failed=0 " in after
    assert "status=fail" not in after


def ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_ipv6_client_logged_in_brackets_and_handed_off(moat, backends, certs):
    """An IPv6 client: its close line says client=[::1]:PORT, and XCLIENT hands it to a Postfix
    that takes IPv6 addresses (DESTADDR too: moat's own address is IPv6 here)."""
    if not ipv6_loopback():
        pytest.skip("no IPv6 loopback here")
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        port = s.getsockname()[1]
    text = conf_text(certs, {"lax": addr(backends, "smtp_xclient_lax") + "\nidentity = xclient"},
                     []) + ("[listener mx6]\nprotocol = smtp\nlisten = [::1]:%d\nbackend = lax\n"
                            "local_domains = example.test\n" % port)
    m = moat(text)
    rig.wait_ports([port], host="::1", alive=m.alive)
    with smtplib.SMTP("::1", port, timeout=10) as c:
        c.ehlo("client6.test")
        cport = c.sock.getsockname()[1]
    rig.wait_until(lambda: "event=close" in m.log(), what="close line")
    assert re.search(r"event=close .*client=\[::1\]:%d " % cport, m.log()), m.log()
    mk = "moat-bc6-%d" % time.monotonic_ns()
    with smtplib.SMTP("::1", port, timeout=10) as c:
        c.sendmail("someone@remote.example", [BOB], "Subject: %s\r\n\r\nhi\r\n" % mk)
    data = backends.wait_maildir(BOB, mk)
    assert b"IPv6:::1" in data  # Postfix's Received: line names the IPv6 client
