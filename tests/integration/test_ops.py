"""Operations: SIGHUP reload (certificates, broken files, listeners, TLS tickets), SIGTERM drain
with sessions in each phase, privilege drop, JSON logs, the metrics/health endpoint and
`moat -T` (DANE TLSA). Every scenario checks what reached the backend or what the process
really is (/proc), not only what moat said."""
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid

import pytest

import rig

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:  # python3-prometheus-client (scripts/deps)
    text_string_to_metric_families = None

ALICE = "alice@example.test"
BOB = "bob@example.test"


def conf_text(certs, backends, ports, cert=None, key=None, moat_extra="", extra=""):
    """MX (STARTTLS), IMAPS and POP3 (STARTTLS) in front of the rig, metrics on ports['metrics']."""
    cert = cert or certs.ecdsa
    key = key or certs.ecdsa_key
    common = "local_domains = example.test\npreauth_idle = 5s\nbackend_reply = 5s\n"
    lines = ["[moat]", "hostname = mx.moat.test", "workers = 2",
             "metrics = 127.0.0.1:%d" % ports["metrics"], "shutdown_grace = 5s", moat_extra,
             "[tls]", "certificate = %s" % cert, "key = %s" % key,
             "[backend xclient]", "address = 127.0.0.1:%d" % backends.ports["smtp_xclient"],
             "identity = xclient",
             "[backend imap]", "address = 127.0.0.1:%d" % backends.ports["imap"], "identity = id",
             "[backend pop3]", "address = 127.0.0.1:%d" % backends.ports["pop3"],
             "identity = xclient",
             "[listener mx]", "protocol = smtp", "listen = 127.0.0.1:%d" % ports["mx"],
             "tls = starttls", "backend = xclient", common,
             "[listener imaps]", "protocol = imap", "listen = 127.0.0.1:%d" % ports["imaps"],
             "tls = implicit", "backend = imap", common,
             "[listener pop3]", "protocol = pop3", "listen = 127.0.0.1:%d" % ports["pop3"],
             "tls = starttls", "backend = pop3", common, extra]
    return "\n".join(lines) + "\n"


@pytest.fixture
def ops(moat, backends, certs):
    def start(**kw):
        ports = dict(zip(("mx", "imaps", "pop3", "metrics"), rig.free_ports(4)))
        m = moat(conf_text(certs, backends, ports, **kw), wait_ports=list(ports.values()))
        m.ports = ports
        m.rewrite = lambda **kw2: rig.write_file(m.conf_path,
                                                 conf_text(certs, backends, ports, **kw2))
        return m
    return start


def marker():
    return "moat-ops-" + uuid.uuid4().hex[:12]


def wait_log(m, pattern, timeout=5.0):
    rig.wait_until(lambda: re.search(pattern, m.log()), timeout=timeout, what=pattern)


def peer_cert_der(port, certs, src="127.0.0.3"):
    with rig.tls_socket(port, certs, src=src) as s:
        return s.getpeercert(binary_form=True)


def pem_der(path):
    return ssl.PEM_cert_to_DER_cert(rig.read_text(path))


def http_get(port, path, timeout=5.0):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metrics(m):
    status, body = http_get(m.ports["metrics"], "/metrics")
    assert status == 200
    out = {}
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(ms, name, **labels):
    return ms.get((name, tuple(sorted(labels.items()))), 0.0)


class Line:
    """A raw line client (SMTP / POP3 / IMAP) from a chosen source address."""

    def __init__(self, port, src):
        self.sock = rig.client_socket(port, src)
        self.buf = b""

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise EOFError(self.buf)
            self.buf += chunk
        l, self.buf = self.buf.split(b"\n", 1)
        return l + b"\n"

    def smtp_reply(self):
        lines = [self.line()]
        while lines[-1][3:4] == b"-":
            lines.append(self.line())
        return b"".join(lines)

    def send(self, data):
        self.sock.sendall(data)

    def starttls(self, certs):
        ctx = rig.client_context(certs)
        self.sock = ctx.wrap_socket(self.sock, server_hostname="mx.moat.test")

    def rest(self, timeout=5.0):
        """Everything until the peer closes."""
        self.sock.settimeout(timeout)
        data = self.buf
        for _ in range(100):
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return data


def smtp_to_data(port, certs, src, subject):
    """An MX session over STARTTLS up to the DATA content (354 received)."""
    c = Line(port, src)
    assert c.smtp_reply().startswith(b"220")
    c.send(b"EHLO ops.test\r\n")
    c.smtp_reply()
    c.send(b"STARTTLS\r\n")
    assert c.smtp_reply().startswith(b"220")
    c.starttls(certs)
    c.send(b"EHLO ops.test\r\n")
    c.smtp_reply()
    return c


def smtp_send_message(c, subject):
    c.send(b"MAIL FROM:<ops@remote.example>\r\n")
    assert c.smtp_reply().startswith(b"250")
    c.send(b"RCPT TO:<%s>\r\n" % BOB.encode())
    assert c.smtp_reply().startswith(b"250")
    c.send(b"DATA\r\n")
    assert c.smtp_reply().startswith(b"354")
    c.send(b"Subject: %s\r\n\r\nbody\r\n.\r\n" % subject.encode())
    assert c.smtp_reply().startswith(b"250")


# --- negative cases first -------------------------------------------------------------------

def test_reload_broken_config_keeps_old_generation(ops, certs):
    m = ops()
    before = peer_cert_der(m.ports["imaps"], certs)
    rig.write_file(m.conf_path, rig.read_text(m.conf_path) + "[tls]\nmin_version = 1.0\nbogus\n")
    m.signal(signal.SIGHUP)
    wait_log(m, r"event=reload_failed reason=config")
    assert re.search(r"event=reload_error error=\"%s:\d+: " % re.escape(m.conf_path), m.log())
    assert m.alive()
    assert peer_cert_der(m.ports["imaps"], certs) == before
    # a broken certificate is refused the same way, with the certificate's line
    m.rewrite(cert=certs.rsa, key=certs.ecdsa_key)
    m.signal(signal.SIGHUP)
    wait_log(m, r"event=reload_failed reason=tls")
    assert re.search(r"error=\"%s:\d+: certificate: " % re.escape(m.conf_path), m.log())
    assert peer_cert_der(m.ports["imaps"], certs) == before


def test_reload_names_the_table_sizes_only_a_restart_changes(ops, certs):
    """The bounded tables are sized at start: a reload that changes their size says so, keeps
    serving, and applies the rest."""
    m = ops()
    text = rig.read_text(m.conf_path)
    rig.write_file(m.conf_path, text.replace("[moat]\n", "[moat]\nmax_familiar = 64\n", 1))
    m.signal(signal.SIGHUP)
    wait_log(m, r"event=reload_partial key=max_tracked_clients/max_tracked_users/max_familiar "
                r"error=\"changes only with a restart\"")
    wait_log(m, r"event=reloaded")
    assert m.alive()
    assert peer_cert_der(m.ports["imaps"], certs)


def test_reload_refuses_listener_it_cannot_bind(ops, certs):
    m = ops()
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    busy = blocker.getsockname()[1]
    try:
        extra = ("[listener extra]\nprotocol = imap\nlisten = 127.0.0.1:%d\ntls = implicit\n"
                 "backend = imap\n" % busy)
        m.rewrite(extra=extra, cert=certs.rsa, key=certs.rsa_key)
        m.signal(signal.SIGHUP)
        wait_log(m, r"event=reload_failed reason=listeners")
        assert "listener extra: cannot listen" in m.log()
        # nothing of the new generation applied: still the old certificate
        assert peer_cert_der(m.ports["imaps"], certs) == pem_der(certs.ecdsa)
    finally:
        blocker.close()


def test_metrics_endpoint_survives_garbage_and_slow_clients(ops):
    m = ops()
    port = m.ports["metrics"]
    s = rig.client_socket(port, "127.0.0.4")
    s.sendall(b"\x16\x03\x01\x00garbage\r\n\r\n")
    assert s.recv(100).startswith(b"HTTP/1.1 400")
    s.close()
    s = rig.client_socket(port, "127.0.0.4")
    s.sendall(b"POST /metrics HTTP/1.1\r\n\r\n")
    assert s.recv(100).startswith(b"HTTP/1.1 405")
    s.close()
    s = rig.client_socket(port, "127.0.0.4")
    s.sendall(b"A" * 5000)
    assert s.recv(100).startswith(b"HTTP/1.1 400")
    s.close()
    assert http_get(port, "/nope")[0] == 404
    # slow clients: more than the cap hold connections open without a request
    slow = [rig.client_socket(port, "127.0.0.5") for _ in range(20)]
    for c in slow:
        c.sendall(b"GET /metr")
    t0 = time.monotonic()
    rig.wait_until(lambda: http_get(port, "/healthz", timeout=1)[0] == 200, timeout=10,
                   what="healthz after slow clients")
    for c in slow:  # each closed by eviction or at its deadline
        c.settimeout(8)
        try:
            assert c.recv(100) == b""
        except ConnectionResetError:
            pass
    assert time.monotonic() - t0 < 8
    for c in slow:
        c.close()
    assert m.alive()


# --- reload ---------------------------------------------------------------------------------

def test_reload_swaps_certificate_without_dropping_sessions(ops, backends, certs):
    m = ops()
    assert peer_cert_der(m.ports["imaps"], certs) == pem_der(certs.ecdsa)
    # sessions opened before the reload: SMTP over STARTTLS, and a logged-in IMAPS session
    subject = marker()
    c = smtp_to_data(m.ports["mx"], certs, "127.0.0.6", subject)
    imap = rig.IMAPS(m.ports["imaps"], certs, src="127.0.0.7")
    imap.login(ALICE, backends.users[ALICE])
    m.rewrite(cert=certs.rsa, key=certs.rsa_key)
    m.signal(signal.SIGHUP)
    wait_log(m, r"event=reloaded")
    # new handshakes see the new certificate
    assert peer_cert_der(m.ports["imaps"], certs) == pem_der(certs.rsa)
    # the old sessions go on: a full mail exchange, then reading it over IMAP
    smtp_send_message(c, subject)
    c.send(b"QUIT\r\n")
    assert c.smtp_reply().startswith(b"221")
    backends.wait_maildir(BOB, subject)
    assert imap.select("INBOX")[0] == "OK"
    assert imap.noop()[0] == "OK"
    imap.logout()
    def closes():
        return [l for l in m.log().splitlines() if "event=close" in l
                and ("client=127.0.0.6:" in l or "client=127.0.0.7:" in l)]
    rig.wait_until(lambda: len(closes()) == 2, what="both close lines")
    closes = closes()
    assert all(re.search(r"reason=(client_quit|client_eof|backend_eof) ", l) for l in closes), closes


def test_reload_opens_new_and_closes_removed_listeners(ops, certs):
    m = ops()
    new_port = rig.free_port()
    extra = ("[listener extra]\nprotocol = imap\nlisten = 127.0.0.1:%d\ntls = implicit\n"
             "backend = imap\n" % new_port)
    m.rewrite(extra=extra)
    m.signal(signal.SIGHUP)
    wait_log(m, r"event=listening listener=extra")
    assert peer_cert_der(new_port, certs) == pem_der(certs.ecdsa)
    # the unchanged listeners were kept, not re-bound
    assert len(re.findall(r"event=listening listener=imaps", m.log())) == 1
    m.rewrite()
    m.signal(signal.SIGHUP)
    wait_log(m, r"event=listener_closed listener=extra")
    with pytest.raises(OSError):
        rig.client_socket(new_port, "127.0.0.3", timeout=1).close()
    assert peer_cert_der(m.ports["imaps"], certs)


def test_tls_session_tickets_survive_reload(ops, certs):
    m = ops()
    ctx = rig.client_context(certs)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # a TLS 1.2 ticket is available at once
    with ctx.wrap_socket(rig.client_socket(m.ports["imaps"], "127.0.0.8"),
                         server_hostname="mx.moat.test") as s:
        s.recv(100)
        sess = s.session
    assert sess is not None and sess.has_ticket
    m.rewrite(cert=certs.ecdsa, key=certs.ecdsa_key, moat_extra="# reloaded")
    m.signal(signal.SIGHUP)
    wait_log(m, r"event=reloaded")
    with ctx.wrap_socket(rig.client_socket(m.ports["imaps"], "127.0.0.8"),
                         server_hostname="mx.moat.test", session=sess) as s:
        assert s.recv(100).startswith(b"* OK")
        assert s.session_reused


# --- drain ----------------------------------------------------------------------------------

def test_sigterm_goodbyes_and_message_in_progress_delivered(ops, backends, certs):
    m = ops()
    smtp_idle = Line(m.ports["mx"], "127.0.0.10")
    assert smtp_idle.smtp_reply().startswith(b"220")
    pop = Line(m.ports["pop3"], "127.0.0.11")
    assert pop.line().startswith(b"+OK")
    imap = rig.tls_socket(m.ports["imaps"], certs, src="127.0.0.12")
    assert imap.recv(200).startswith(b"* OK")
    subject = marker()
    c = smtp_to_data(m.ports["mx"], certs, "127.0.0.13", subject)
    c.send(b"MAIL FROM:<ops@remote.example>\r\n")
    assert c.smtp_reply().startswith(b"250")
    c.send(b"RCPT TO:<%s>\r\n" % BOB.encode())
    assert c.smtp_reply().startswith(b"250")
    c.send(b"DATA\r\n")
    assert c.smtp_reply().startswith(b"354")
    c.send(b"Subject: %s\r\n\r\nfirst half\r\n" % subject.encode())
    time.sleep(0.3)
    t0 = time.monotonic()
    m.signal(signal.SIGTERM)
    assert re.match(rb"421 4\.3\.2 \S+ Service shutting down", smtp_idle.rest())
    assert b"-ERR" in pop.rest()
    imap.settimeout(5)
    got = b""
    for _ in range(20):
        chunk = imap.recv(200)
        if not chunk:
            break
        got += chunk
    assert b"* BYE" in got
    # the message in progress completes and is delivered
    c.send(b"second half\r\n.\r\n")
    assert c.smtp_reply().startswith(b"250")
    backends.wait_maildir(BOB, subject)
    c.send(b"QUIT\r\n")
    m.proc.wait(8)
    assert m.proc.returncode == 0
    assert time.monotonic() - t0 < 5 + 2
    log = m.log()
    assert "event=stopped" in log


def test_sigterm_smtp_goodbye_words(ops):
    m = ops()
    c = Line(m.ports["mx"], "127.0.0.14")
    assert c.smtp_reply().startswith(b"220")
    m.signal(signal.SIGTERM)
    assert re.match(rb"421 4\.3\.2 \S+ Service shutting down", c.rest())
    m.proc.wait(8)
    assert m.proc.returncode == 0


# --- privileges -----------------------------------------------------------------------------

def proc_status(pid):
    fields = {}
    for line in rig.read_text("/proc/%d/status" % pid).splitlines():
        k, _, v = line.partition(":")
        fields[k] = v.split()
    return fields


def test_root_start_drops_to_configured_user(ops, certs):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    m = ops(moat_extra="user = nobody\ngroup = nogroup")
    import grp
    import pwd
    uid = pwd.getpwnam("nobody").pw_uid
    gid = grp.getgrnam("nogroup").gr_gid
    st = proc_status(m.pid)
    assert st["Uid"] == [str(uid)] * 4
    assert st["Gid"] == [str(gid)] * 4
    assert st["Groups"] in ([], [str(gid)])
    assert int(st["CapEff"][0], 16) == 0 and int(st["CapPrm"][0], 16) == 0
    assert st["NoNewPrivs"] == ["1"]
    # and it serves
    assert peer_cert_der(m.ports["imaps"], certs) == pem_der(certs.ecdsa)
    assert "event=privileges_dropped user=nobody" in m.log()


def test_runs_as_non_root_on_high_ports(backends, certs, tmp_path):
    if not shutil.which("setpriv"):
        pytest.skip("setpriv missing")
    d = tempfile.mkdtemp(prefix="mo", dir="/tmp")
    try:
        os.chmod(d, 0o755)
        for f in ("ecdsa.pem", "ecdsa.key"):
            shutil.copy(os.path.join(certs.dir, f), d)
            os.chmod(os.path.join(d, f), 0o644)
        ports = dict(zip(("mx", "imaps", "pop3", "metrics"), rig.free_ports(4)))
        conf = os.path.join(d, "moat.conf")
        rig.write_file(conf, conf_text(certs, backends, ports, cert=os.path.join(d, "ecdsa.pem"),
                                       key=os.path.join(d, "ecdsa.key")))
        binary = os.environ.get("MOAT_BIN") or os.path.join(rig.ROOT, "build", "moat")
        log = open(os.path.join(d, "log"), "wb")
        p = subprocess.Popen(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                              binary, "-c", conf], stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
        try:
            rig.wait_ports(list(ports.values()), 5, alive=lambda: p.poll() is None)
            assert proc_status(p.pid)["Uid"][0] != "0"
            assert peer_cert_der(ports["imaps"], certs) == pem_der(certs.ecdsa)
            assert http_get(ports["metrics"], "/healthz")[0] == 200
        finally:
            p.terminate()
            p.wait(10)
            log.close()
        assert p.returncode == 0, rig.read_text(os.path.join(d, "log"))
        assert "running_as_root" not in rig.read_text(os.path.join(d, "log"))
    finally:
        shutil.rmtree(d, ignore_errors=True)


# --- logs -----------------------------------------------------------------------------------

def test_json_logs_parse_and_never_hold_a_password(ops, backends, certs):
    m = ops(moat_extra="log_format = json")
    pw = backends.users[ALICE]
    imap = rig.IMAPS(m.ports["imaps"], certs, src="127.0.0.15")
    imap.login(ALICE, pw)
    imap.logout()
    bad = rig.IMAPS(m.ports["imaps"], certs, src="127.0.0.15")
    with pytest.raises(Exception):
        bad.login(ALICE, "wrong-" + pw)
    # hostile bytes in a peer-supplied field
    c = Line(m.ports["pop3"], "127.0.0.15")
    c.line()
    c.send(b"USER \"evil\\\x1b[31m\xff\r\nQUIT\r\n")
    c.rest()
    m.signal(signal.SIGHUP)
    m.stop()
    lines = [l for l in m.log().splitlines() if l.strip()]
    events = [json.loads(l) for l in lines]
    assert any(e.get("event") == "close" and e.get("sid") for e in events)
    assert any(e.get("event") == "login" for e in events)
    assert pw not in m.log()
    assert "wrong-" not in m.log()


# --- metrics and health ---------------------------------------------------------------------

def test_metrics_counters_move(ops, backends, certs):
    if text_string_to_metric_families is None:
        pytest.skip("python3-prometheus-client missing (scripts/deps)")
    m = ops(extra="[backend dead]\naddress = 127.0.0.1:%d\nidentity = id\n"
                  "[listener deadimap]\nprotocol = imap\nlisten = 127.0.0.1:%d\n"
                  "tls = implicit\nbackend = dead\n" % (rig.free_port(), rig.free_port()))
    dead_port = int(re.search(r"\[listener deadimap\]\nprotocol = imap\nlisten = 127.0.0.1:(\d+)",
                              rig.read_text(m.conf_path)).group(1))
    rig.wait_ports([dead_port])
    before = metrics(m)
    # a good and a bad login
    imap = rig.IMAPS(m.ports["imaps"], certs, src="127.0.0.16")
    imap.login(ALICE, backends.users[ALICE])
    imap.logout()
    bad = rig.IMAPS(m.ports["imaps"], certs, src="127.0.0.16")
    with pytest.raises(Exception):
        bad.login(ALICE, "not-the-password")
    bad.shutdown()
    # a failed handshake, an ALPN mismatch
    with rig.client_socket(m.ports["imaps"], "127.0.0.16") as s:
        s.sendall(b"this is not TLS\r\n" * 4)
        s.settimeout(5)
        s.recv(100)
    ctx = rig.client_context(certs)
    ctx.set_alpn_protocols(["h2"])
    with pytest.raises((ssl.SSLError, OSError)):
        with ctx.wrap_socket(rig.client_socket(m.ports["imaps"], "127.0.0.16"),
                             server_hostname="mx.moat.test") as s:
            s.recv(100)
    # relay refusal, smuggling attempt, STARTTLS injection on the MX
    c = smtp_to_data(m.ports["mx"], certs, "127.0.0.17", "x")
    c.send(b"MAIL FROM:<a@remote.example>\r\n")
    c.smtp_reply()
    c.send(b"RCPT TO:<victim@elsewhere.example>\r\n")
    assert c.smtp_reply().startswith(b"554")
    c.send(b"RCPT TO:<%s>\r\n" % BOB.encode())
    assert c.smtp_reply().startswith(b"250")
    c.send(b"DATA\r\n")
    assert c.smtp_reply().startswith(b"354")
    c.send(b"Subject: smuggle\r\n\r\nhi\n.\nMAIL FROM:<x@y>\r\n.\r\n")
    c.smtp_reply()
    c.send(b"QUIT\r\n")
    c.rest()
    c = Line(m.ports["mx"], "127.0.0.17")
    c.smtp_reply()
    c.send(b"EHLO ops.test\r\n")
    c.smtp_reply()
    c.send(b"STARTTLS\r\nRSET\r\n")
    assert c.smtp_reply().startswith(b"220")
    c.starttls(certs)
    c.send(b"QUIT\r\n")
    c.smtp_reply()
    # a backend that is down
    with rig.tls_socket(dead_port, certs, src="127.0.0.18") as s:
        s.settimeout(8)
        got = b""
        while b"\r\n" not in got:
            got += s.recv(200)
        s.sendall(b"a LOGIN alice@example.test x\r\n")
        while b"\na " not in got:
            chunk = s.recv(200)
            if not chunk:
                break
            got += chunk

    def moved():
        after = metrics(m)
        d = lambda name, **lb: value(after, name, **lb) - value(before, name, **lb)
        return {
            "sessions": d("moat_sessions_total", listener="imaps") >= 4,
            "handshakes": d("moat_tls_handshakes_total", listener="imaps") >= 2,
            "tls_fail": d("moat_tls_handshake_failures_total", listener="imaps",
                          reason="handshake_error") >= 1,
            "alpn": d("moat_refusals_total", listener="imaps", control="alpn_mismatch") >= 1,
            "auth_ok": d("moat_auth_successes_total", listener="imaps") >= 1,
            "auth_fail": d("moat_auth_failures_total", listener="imaps") >= 1,
            "relay": d("moat_refusals_total", listener="mx", control="relay") >= 1,
            "smuggling": d("moat_refusals_total", listener="mx", control="smuggling") >= 1,
            "injection": d("moat_refusals_total", listener="mx",
                           control="starttls_injection") >= 1,
            "bytes_in": d("moat_client_bytes_in_total", listener="imaps") > 0,
            "bytes_out": d("moat_client_bytes_out_total", listener="imaps") > 0,
            "backend_fail": d("moat_backend_connect_failures_total", listener="deadimap") >= 1,
            "duration": d("moat_session_duration_seconds_count", listener="imaps") >= 3,
            # the bounded tables: three client addresses, alice's login from .16 familiar
            "clients": value(after, "moat_table_entries", table="clients") >= 3,
            "familiar": d("moat_table_entries", table="familiar") == 1,
            "capacities": [value(after, "moat_table_capacity", table=t)
                           for t in ("clients", "users", "familiar")] == [65536, 8192, 16384],
        }
    deadline = time.monotonic() + 5
    got = moved()
    while not all(got.values()) and time.monotonic() < deadline:
        time.sleep(0.2)
        got = moved()
    assert all(got.values()), sorted(k for k, v in got.items() if not v)
    assert value(metrics(m), "moat_sessions_open", listener="imaps", proto="imap") == 0


def test_metrics_limit_refusal_counted(moat, backends, certs):
    if text_string_to_metric_families is None:
        pytest.skip("python3-prometheus-client missing (scripts/deps)")
    ports = dict(zip(("mx", "imaps", "pop3", "metrics"), rig.free_ports(4)))
    m = moat(conf_text(certs, backends, ports, moat_extra="max_sessions = 1"),
             wait_ports=list(ports.values()))
    m.ports = ports
    hold = Line(ports["pop3"], "127.0.0.19")
    hold.line()
    refused = Line(ports["pop3"], "127.0.0.20")
    assert refused.rest().startswith(b"-ERR")
    ms = metrics(m)
    assert value(ms, "moat_refusals_total", listener="pop3", control="limit") >= 1
    hold.sock.close()


def test_metrics_access_list_refusal_counted(moat, backends, certs):
    if text_string_to_metric_families is None:
        pytest.skip("python3-prometheus-client missing (scripts/deps)")
    ports = dict(zip(("mx", "imaps", "pop3", "metrics"), rig.free_ports(4)))
    m = moat(conf_text(certs, backends, ports, extra="[access]\ndeny = 127.0.0.21/32\n"),
             wait_ports=list(ports.values()))
    m.ports = ports
    refused = Line(ports["pop3"], "127.0.0.21")
    refused.rest()
    rig.wait_until(lambda: value(metrics(m), "moat_refusals_total", listener="pop3",
                                 control="access_list") >= 1, what="access_list refusal")
    assert value(metrics(m), "moat_refusals_total", listener="pop3", control="limit") == 0


def test_healthz_and_readyz_follow_the_backend(ops, backends):
    m = ops()
    port = m.ports["metrics"]
    assert http_get(port, "/healthz") == (200, "ok\n")
    rig.wait_until(lambda: http_get(port, "/readyz")[0] == 200, timeout=6, what="ready")
    try:
        backends.stop_dovecot()
        rig.wait_until(lambda: http_get(port, "/readyz")[0] == 503, timeout=6, what="unready")
        status, body = http_get(port, "/readyz")
        assert "imaps backend=imap down" in body and "mx backend=xclient up" in body
        assert http_get(port, "/healthz")[0] == 200
    finally:
        backends.start_dovecot()
    rig.wait_until(lambda: http_get(port, "/readyz")[0] == 200, timeout=6, what="ready again")


# --- DANE -----------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["ecdsa", "rsa"])
def test_tlsa_matches_openssl(certs, tmp_path, which):
    binary = os.environ.get("MOAT_BIN") or os.path.join(rig.ROOT, "build", "moat")
    if not os.access(binary, os.X_OK):
        pytest.skip("moat binary missing")
    cert, key = getattr(certs, which), getattr(certs, which + "_key")
    conf = tmp_path / "moat.conf"
    conf.write_text("[moat]\nhostname = mx.moat.test\n[tls]\ncertificate = %s\nkey = %s\n"
                    "[backend b]\naddress = 127.0.0.1:25\n[listener mx]\nprotocol = smtp\n"
                    "listen = 127.0.0.1:2525\ntls = starttls\nbackend = b\n" % (cert, key))
    r = subprocess.run([binary, "-T", "-c", str(conf)], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0, r.stderr
    records = [l for l in r.stdout.splitlines() if l and not l.startswith(";")]
    pub = subprocess.run(["openssl", "x509", "-in", cert, "-pubkey", "-noout"],
                         capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub,
                         capture_output=True, check=True).stdout
    digest = subprocess.run(["openssl", "dgst", "-sha256", "-r"], input=der,
                            capture_output=True, check=True).stdout.split()[0].decode()
    assert records == ["_25._tcp.mx.moat.test. IN TLSA 3 1 1 %s" % digest]


def test_refuses_to_keep_root_without_user(tmp_path, certs):
    """Started as root with neither user nor allow_root, moat exits 1 before binding."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    binary = os.environ.get("MOAT_BIN") or os.path.join(rig.ROOT, "build", "moat")
    port = rig.free_port()
    conf = tmp_path / "moat.conf"
    conf.write_text("[moat]\nhostname = mx.moat.test\n[tls]\ncertificate = %s\nkey = %s\n"
                    "[backend b]\naddress = 127.0.0.1:25\n[listener mx]\nprotocol = smtp\n"
                    "listen = 127.0.0.1:%d\ntls = starttls\nbackend = b\n"
                    % (certs.ecdsa, certs.ecdsa_key, port))
    r = subprocess.run([binary, "-c", str(conf)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 1
    assert "refusing to run as root" in r.stderr
    assert "event=root_refused" in r.stderr
    assert not rig.port_open(port)
    # told to, it runs (and says so)
    conf.write_text(conf.read_text().replace("[moat]\n", "[moat]\nallow_root = yes\n", 1))
    m = rig.Moat(binary, conf.read_text(), str(tmp_path / "ok"), ports=[port])
    try:
        assert m.alive()
    finally:
        assert m.stop() == 0
    assert "event=running_as_root" in m.log()
