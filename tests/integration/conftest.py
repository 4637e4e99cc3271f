"""pytest fixtures for moat's integration tests (run with /usr/bin/python3 -m pytest).

    certs     (session)  rig.Certs: .dir, .ca, .ecdsa/.ecdsa_key, .rsa/.rsa_key, .other/.other_key,
                         .soon/.soon_key (expires in 3 days)
    backends  (session)  rig.Backends: private Postfix + Dovecot on free loopback ports
    moat      (function) factory start(conf_text, wait_ports=[...]) -> rig.Moat; all stopped
                         at teardown. Skips when the moat binary ($MOAT_BIN, default
                         build/moat) is missing.
    free_port (function) callable returning a free 127.0.0.1 TCP port

Everything else (client_socket, tls_socket, smtp, IMAP, IMAPS, POP3, POP3S, client_context,
moat_conf, wait_until, src_addr) is imported from rig.
"""

import os
import shutil
import tempfile

import pytest

import rig


@pytest.fixture(scope="session")
def certs():
    d = tempfile.mkdtemp(prefix="mc", dir="/tmp")
    try:
        yield rig.Certs(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def backends():
    if os.geteuid() != 0:
        pytest.skip("the real-backend rig needs root (private Postfix and Dovecot instances)")
    for tool in ("postfix", "dovecot", "postqueue", "postsuper"):
        if not shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin"):
            pytest.skip("%s is not installed (run scripts/deps)" % tool)
    b = rig.Backends()
    try:
        b.start()
    except BaseException:
        b.stop()
        raise
    try:
        yield b
    finally:
        b.stop()


def moat_binary():
    return os.environ.get("MOAT_BIN") or os.path.join(rig.ROOT, "build", "moat")


@pytest.fixture
def moat(tmp_path):
    """start(conf_text, wait_ports=(), timeout=5.0, wrap=()) -> rig.Moat (.pid, .log(),
    .alive(), .stop(), .signal(sig), .conf_path, .log_path)."""
    binary = moat_binary()
    if not os.access(binary, os.X_OK):
        pytest.skip("moat binary not found at %s (build it, or set MOAT_BIN)" % binary)
    started = []

    def start(conf_text, wait_ports=(), timeout=5.0, wrap=()):
        m = rig.Moat(binary, conf_text, str(tmp_path / ("moat%d" % len(started))),
                     ports=wait_ports, timeout=timeout, wrap=wrap)
        started.append(m)
        return m

    yield start
    problems = []
    for m in started:
        m.stop()
        problems += sanitizer_reports(m.log())
    if problems:
        pytest.fail("moat's sanitizers reported problems:\n" + "\n".join(problems[:40]),
                    pytrace=False)


SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "moat: panic", "MOAT_ASSERT")


def sanitizer_reports(log):
    """Lines of a moat log that show an ASan/LSan/UBSan report or an assertion failure: the
    suite must run clean under the sanitizers, not merely survive them."""
    lines = log.splitlines()
    out = []
    for i, line in enumerate(lines):
        if any(mark in line for mark in SANITIZER_MARKS):
            out.extend(lines[i:i + 12])
    return out


@pytest.fixture
def free_port():
    return rig.free_port


@pytest.fixture(scope="session")
def dns_servers():
    """(dnsmasq, odd): dns_rig.Dnsmasq serving dns_rig.ZONE, forwarding the odd names to
    dns_rig.OddDns (timeouts, SERVFAIL, slow answers, a PTR with CR/LF)."""
    import dns_rig
    if not os.access("/usr/sbin/dnsmasq", os.X_OK):
        pytest.skip("dnsmasq is not installed (run scripts/deps)")
    d = tempfile.mkdtemp(prefix="mdns", dir="/tmp")
    odd = dns_rig.OddDns()
    try:
        masq = dns_rig.Dnsmasq(d, odd)
    except BaseException:
        odd.stop()
        raise
    try:
        yield masq, odd
    finally:
        masq.stop()
        odd.stop()
        shutil.rmtree(d, ignore_errors=True)
