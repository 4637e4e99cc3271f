"""DNS checks against a real DNS server (dnsmasq from Debian, with a python3-dnslib server for
timeouts, SERVFAIL, slow answers and a PTR carrying CR/LF): forward-confirmed reverse DNS and
XCLIENT NAME=, DNS block/allow lists with weights, HELO checks, SPF with Received-SPF, and a
slow resolver that must not stall the worker. Negative cases first; each checks what reached
Postfix (its log, the maildir), not only what moat answered."""

import threading
import time
import uuid

import pytest

import rig
from smtp_helpers import BOB, Raw, message

BL = "bl1.test=127.0.0.[2..11]*2, bl2.test*2, wl.test*-10"


@pytest.fixture
def start(moat, backends, certs, dns_servers):
    masq, odd = dns_servers

    def go(dns, direct=False, workers=2, timeout="400ms", tries=2, metrics_port=None):
        port = rig.free_port()
        server = odd.port if direct else masq.port
        conf = rig.moat_conf(
            certs, workers=workers,
            backends={"pf": {"address": "127.0.0.1:%d" % backends.ports["smtp_xclient"],
                             "identity": "xclient"}},
            listeners={"mx": {"protocol": "smtp", "listen": "127.0.0.1:%d" % port,
                              "tls": "starttls", "backend": "pf", "local_domains": "example.test",
                              "max_errors": "20", "preauth_idle": "10s"}},
            extra="[dns]\nservers = 127.0.0.1:%d\ntimeout = %s\ntries = %d\n%s\n" % (
                server, timeout, tries, dns))
        if metrics_port is not None:
            conf = conf.replace("[moat]\n", "[moat]\nmetrics = 127.0.0.1:%d\n" % metrics_port, 1)
        m = moat(conf, wait_ports=[port] + ([metrics_port] if metrics_port else []))
        m.port = port
        return m
    return go


def mail(m, src, sender="someone@remote.example", helo="client.test"):
    """EHLO + MAIL; returns (client, the MAIL reply's last line)."""
    c = Raw.plain(m.port, src)
    assert c.code() == 220
    assert c.cmd("EHLO " + helo)[-1].startswith(b"250")
    return c, c.cmd("MAIL FROM:<%s>" % sender)[-1]


def send(c, subject):
    assert c.cmd("RCPT TO:<%s>" % BOB)[-1].startswith(b"250")
    assert c.cmd("DATA")[-1].startswith(b"354")
    c.send(message(subject) + ".\r\n")
    r = c.reply()[-1]
    c.cmd("QUIT")
    c.close()
    return r


def postfix_lines(backends, ip):
    return [l for l in backends.postfix_log().splitlines() if "[%s]" % ip in l]


# --- reverse DNS ---


def test_injected_ptr_never_reaches_backend(start, backends):
    m = start("fcrdns = warn", direct=True)
    c, r = mail(m, "127.0.53.11")
    assert r.startswith(b"250"), r
    subject = "inject-" + uuid.uuid4().hex
    assert send(c, subject).startswith(b"250")
    msg = backends.wait_maildir(BOB, subject)
    log = backends.postfix_log()
    assert "evil" not in log and "spoofed" not in log
    assert b"evil" not in msg and b"spoofed" not in msg
    assert any("client=unknown[127.0.53.11]" in l for l in postfix_lines(backends, "127.0.53.11"))
    rig.wait_until(lambda: "rdns=none" in m.log(), 3, what="close line")
    assert "evil" not in m.log()


@pytest.mark.parametrize("src,code", [("127.0.53.3", b"550 5.7.25"), ("127.0.53.4", b"550 5.7.25"),
                                      ("127.0.53.5", b"450 4.7.25"), ("127.0.53.10", b"450 4.7.25")])
def test_fcrdns_reject(start, backends, src, code):
    m = start("fcrdns = reject")
    c, r = mail(m, src)
    assert r.startswith(code), r
    assert c.cmd("RCPT TO:<%s>" % BOB)[-1].startswith(b"503")
    c.cmd("QUIT")
    c.close()
    time.sleep(0.2)
    assert postfix_lines(backends, src) == []


def test_fcrdns_dry_run_and_warn_accept(start, backends):
    m = start("fcrdns = dry-run")
    c, r = mail(m, "127.0.53.3")
    assert r.startswith(b"250"), r
    c.close()
    rig.wait_until(lambda: "dns_would_refuse" in m.log(), 3, what="dry-run log")
    assert "check=fcrdns" in m.log()


def test_fcrdns_verified_name_reaches_postfix(start, backends):
    m = start("fcrdns = reject")
    c, r = mail(m, "127.0.53.2")
    assert r.startswith(b"250"), r
    subject = "fcrdns-" + uuid.uuid4().hex
    assert send(c, subject).startswith(b"250")
    backends.wait_maildir(BOB, subject)
    assert any("client=good.moat.test[127.0.53.2]" in l
               for l in postfix_lines(backends, "127.0.53.2"))
    rig.wait_until(lambda: "rdns=ok rdns_name=" in m.log() and "good.moat.test" in m.log(), 3, what="close line")


# --- DNS lists ---


def test_dnsbl_listed_over_threshold_refused(start, backends):
    mport = rig.free_port()
    m = start("fcrdns = reject\ndnsbl = %s\ndnsbl_threshold = 3\ndnsbl_allowlist_threshold = -5"
              % BL, metrics_port=mport)
    c, r = mail(m, "127.0.53.6")
    assert r.startswith(b"554 5.7.1 Service unavailable; client [127.0.53.6] blocked using bl"), r
    c.cmd("QUIT")
    c.close()
    time.sleep(0.2)
    assert postfix_lines(backends, "127.0.53.6") == []
    rig.wait_until(lambda: "dnsbl_score=4" in m.log(), 3, what="close line")
    # the refusal moves its /metrics counter (parsed as Prometheus text, not grepped)
    from prometheus_client.parser import text_string_to_metric_families
    import urllib.request
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport, timeout=5) as r:
        body = r.read().decode()
    refusals = {tuple(sorted(s.labels.items())): s.value
                for fam in text_string_to_metric_families(body) for s in fam.samples
                if s.name == "moat_refusals_total"}
    assert refusals.get((("control", "dnsbl"), ("listener", "mx"))) == 1, refusals


@pytest.mark.parametrize("src", ["127.0.53.7", "127.0.53.8", "127.0.53.9"])
def test_dnsbl_under_threshold_allowlisted_or_list_error_accepted(start, backends, src):
    """.7: one list (2 < 3); .8: both lists but allowlisted (-6), which also skips the rDNS check
    it would fail; .9: bl1 answers 127.255.255.254 (refusing us), which counts as not listed."""
    m = start("fcrdns = reject\ndnsbl = %s\ndnsbl_threshold = 3\ndnsbl_allowlist_threshold = -5"
              % BL)
    c, r = mail(m, src)
    assert r.startswith(b"250"), r
    subject = "dnsbl-" + uuid.uuid4().hex
    assert send(c, subject).startswith(b"250")
    backends.wait_maildir(BOB, subject)
    if src == "127.0.53.9":
        assert "event=dnsbl_error_code" in m.log() and "zone=bl1.test" in m.log()


# --- HELO ---


@pytest.mark.parametrize("helo,code", [("mx.moat.test", b"550 5.7.1"), ("localhost", b"504"),
                                       ("[127.0.0.1]", b"550 5.7.1"),
                                       ("nowhere.moat.test", b"550 5.7.1")])
def test_helo_check_reject(start, backends, helo, code):
    m = start("helo_check = reject\nhelo_resolve = yes")
    c, r = mail(m, "127.0.53.2", helo=helo)
    assert r.startswith(code), r
    c.close()


def test_helo_check_resolvable_passes(start, backends):
    m = start("helo_check = reject\nhelo_resolve = yes")
    c, r = mail(m, "127.0.53.2", helo="good.moat.test")
    assert r.startswith(b"250"), r
    c.close()


# --- SPF ---


@pytest.mark.parametrize("domain,result,code", [
    ("fail.spf.test", "fail", b"550 5.7.23"),
    ("pass.spf.test", "pass", b"250"),
    ("incl.spf.test", "pass", b"250"),
    ("mx.spf.test", "pass", b"250"),
    ("soft.spf.test", "softfail", b"250"),
    ("none.spf.test", "none", b"250"),
    ("temp.spf.test", "temperror", b"250"),
    ("loop.spf.test", "permerror", b"250"),
    ("many.spf.test", "permerror", b"250"),
])
def test_spf(start, backends, domain, result, code):
    m = start("spf = reject")
    sender = "user@" + domain
    c, r = mail(m, "127.0.53.2", sender=sender)
    assert r.startswith(code), r
    if code != b"250":
        c.close()
        time.sleep(0.2)
        assert sender not in backends.postfix_log()
        return
    subject = "spf-" + uuid.uuid4().hex
    assert send(c, subject).startswith(b"250")
    msg = backends.wait_maildir(BOB, subject)
    first = msg.split(b"\n")
    spf = [l for l in first if l.startswith(b"Received-SPF:")]
    assert len(spf) == 1, msg[:600]
    assert spf[0].startswith(b"Received-SPF: %s " % result.encode()), spf[0]
    assert b"client-ip=127.0.53.2;" in spf[0] and b'envelope-from="%s"' % sender.encode() in spf[0]
    assert b"helo=client.test;" in spf[0] and b"identity=mailfrom;" in spf[0]


def test_spf_dry_run_does_not_refuse(start, backends):
    m = start("spf = dry-run")
    c, r = mail(m, "127.0.53.2", sender="user@fail.spf.test")
    assert r.startswith(b"250"), r
    c.close()
    rig.wait_until(lambda: "check=spf" in m.log(), 3, what="dry-run log")


# --- the resolver under load ---


def test_slow_dns_burst_shares_lookups_and_does_not_stall(start, backends, dns_servers):
    masq, odd = dns_servers
    m = start("fcrdns = reject", workers=1, direct=True, timeout="3s", tries=1)
    before = odd.count("12.53.0.127.in-addr.arpa")
    results = []

    def one():
        try:
            c, r = mail(m, "127.0.53.12")
            results.append(r)
            c.close()
        except Exception as e:  # noqa: BLE001
            results.append(repr(e).encode())
    threads = [threading.Thread(target=one) for _ in range(12)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    # meanwhile another client on the same worker is served at once
    t0 = time.monotonic()
    c = Raw.plain(m.port, "127.0.53.2")
    assert c.code() == 220
    assert c.cmd("EHLO client.test")[-1].startswith(b"250")
    assert c.cmd("NOOP")[-1].startswith(b"250")
    assert time.monotonic() - t0 < 0.5
    c.close()
    for t in threads:
        t.join(10)
    assert len(results) == 12 and all(r.startswith(b"250") for r in results), results
    assert odd.count("12.53.0.127.in-addr.arpa") - before == 1


def test_session_closed_while_lookup_in_flight(start, dns_servers):
    """The client leaves while its PTR query is still out: the answer must find nothing to call
    (the sanitizers, checked at teardown, would report a use after free)."""
    masq, odd = dns_servers
    m = start("fcrdns = reject", workers=1, direct=True, timeout="3s", tries=1)
    for _ in range(3):
        c = Raw.plain(m.port, "127.0.53.12")
        assert c.code() == 220
        c.send("EHLO client.test\r\nMAIL FROM:<a@remote.example>\r\n")
        assert c.reply()[-1].startswith(b"250")
        c.close()
    time.sleep(2.0)  # the slow answer (1.5 s) arrives after every session is gone
    c, r = mail(m, "127.0.53.2")
    assert r.startswith(b"250"), r
    c.close()
    assert m.alive()


def test_answers_cached_per_worker(start, dns_servers):
    """Repeat clients are answered from the worker's cache: dnsmasq logs one PTR query."""
    masq, odd = dns_servers
    m = start("fcrdns = reject", workers=1)
    before = masq.count("7.53.0.127.in-addr.arpa")
    for _ in range(4):
        c, r = mail(m, "127.0.53.7")
        assert r.startswith(b"250"), r
        c.close()
    rig.wait_until(lambda: masq.count("7.53.0.127.in-addr.arpa") > before, 3, what="dnsmasq log")
    time.sleep(0.2)
    assert masq.count("7.53.0.127.in-addr.arpa") - before == 1


def test_reload_changes_resolver_and_policy(start, dns_servers):
    """SIGHUP with a new [dns]: new sessions use the new servers and policy; a session of the old
    generation waiting on the old resolver still gets its answer."""
    import signal
    masq, odd = dns_servers
    m = start("fcrdns = reject", workers=1, direct=True, timeout="3s", tries=1)
    # an old-generation session waits on the slow PTR through the old resolver
    old = Raw.plain(m.port, "127.0.53.12")
    assert old.code() == 220
    old.send("EHLO client.test\r\nMAIL FROM:<a@remote.example>\r\n")
    assert old.reply()[-1].startswith(b"250")
    text = rig.read_text(m.conf_path).replace("servers = 127.0.0.1:%d" % odd.port,
                                              "servers = 127.0.0.1:%d" % masq.port)
    rig.write_file(m.conf_path, text.replace("fcrdns = reject", "fcrdns = dry-run"))
    m.signal(signal.SIGHUP)
    rig.wait_until(lambda: "event=reloaded" in m.log(), 5, what="reload")
    before = odd.count("3.53.0.127.in-addr.arpa")
    c, r = mail(m, "127.0.53.3")  # no PTR: refused before, only logged now
    assert r.startswith(b"250"), r
    c.close()
    assert odd.count("3.53.0.127.in-addr.arpa") == before  # asked dnsmasq, not the old server
    assert old.reply()[-1].startswith(b"250")  # the old session's slow answer still arrived
    old.close()
    assert m.alive()


def test_imap_listener_only_logs(moat, backends, certs, dns_servers):
    """dns_checks = auto on IMAP: the checks run and are logged, never enforced."""
    masq, odd = dns_servers
    port = rig.free_port()
    conf = rig.moat_conf(
        certs, workers=1,
        backends={"dovecot": {"address": "127.0.0.1:%d" % backends.ports["imap"],
                              "identity": "id"}},
        listeners={"imap": {"protocol": "imap", "listen": "127.0.0.1:%d" % port,
                            "tls": "starttls", "backend": "dovecot"}},
        extra="[dns]\nservers = 127.0.0.1:%d\nfcrdns = reject\n" % masq.port)
    m = moat(conf, wait_ports=[port])
    s = rig.client_socket(port, "127.0.53.3")
    f = s.makefile("rb")
    assert f.readline().startswith(b"* OK")
    time.sleep(0.3)  # let the PTR answer arrive
    s.sendall(b"a LOGOUT\r\n")
    assert f.readline().startswith(b"* BYE")
    s.close()
    rig.wait_until(lambda: "proto=imap" in m.log() and "rdns=none" in m.log(), 3,
                   what="close line")
    assert "dns_refuse" not in m.log()
