"""URI block lists on MX message content ([dns] uribl), against real Postfix and the in-process
DNS server of the DNS tests (dns_rig.OddDns) serving two URI lists. A message linking to a listed
domain, whether in plain text, HTML, a quoted-printable or base64 part or a nested multipart, is
refused at its end with 554 5.7.1 naming the list and never delivered: Postfix never gets its
final dot (nothing in the maildir or the queue, no delivery in its log), and the same session
then delivers a clean message. Negative cases first; unlisted URLs, URLs in non-text parts,
warn / dry-run and lookups that time out are delivered."""

import base64
import re
import time
import uuid

import pytest

import conftest
import rig
from dns_rig import OddDns
from smtp_helpers import BOB, Raw

RULES = {
    # ubl.test: filter 127.0.0.2..11; ubl2.test: any answer
    "spam.test.ubl.test": [("A", "127.0.0.2")],
    "evil.co.uk.ubl.test": [("A", "127.0.0.4")],  # reached only through the Public Suffix List
    "co.uk.ubl.test": [("A", "127.0.0.2")],  # a naive "last two labels" would hit this
    "both.test.ubl.test": [("A", "127.0.0.2")],
    "both.test.ubl2.test": [("A", "127.0.0.2")],
    "refused.test.ubl.test": [("A", "127.0.0.1")],  # outside the filter: the list refusing us
    "slow.test.ubl.test": [("A", "127.0.0.2"), ("delay", 1.0)],
    "hang.test.ubl.test": [("A", "timeout")],
    # an address in a URL, reversed; ubl2.test answers too, but takes no addresses in the test
    "7.2.0.192.ubl.test": [("A", "127.0.0.2")],
    "7.2.0.192.ubl2.test": [("A", "127.0.0.2")],
}


@pytest.fixture(scope="module")
def ubl():
    d = OddDns(RULES)
    yield d
    d.stop()


@pytest.fixture
def start(moat, backends, certs, ubl):
    def go(dns, metrics_port=None):
        port = rig.free_port()
        conf = rig.moat_conf(
            certs,
            backends={"pf": {"address": "127.0.0.1:%d" % backends.ports["smtp_xclient"],
                             "identity": "xclient"}},
            listeners={"mx": {"protocol": "smtp", "listen": "127.0.0.1:%d" % port,
                              "tls": "starttls", "backend": "pf", "local_domains": "example.test",
                              "preauth_idle": "10s"}},
            extra="[dns]\nservers = 127.0.0.1:%d\ntimeout = 2s\ntries = 1\n%s\n" % (ubl.port, dns))
        if metrics_port is not None:
            conf = conf.replace("[moat]\n", "[moat]\nmetrics = 127.0.0.1:%d\n" % metrics_port, 1)
        m = moat(conf, wait_ports=[port] + ([metrics_port] if metrics_port else []))
        m.port = port
        return m
    return go


LISTS = "uribl = ubl.test=127.0.0.[2..11]*2, ubl2.test"


def msg(subject, body, headers=""):
    mid = "<%s@client.test>" % uuid.uuid4().hex
    return ("From: a@remote.example\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: %s\r\n%s\r\n%s\r\n"
            % (BOB, subject, mid, headers, body)), mid


def transaction(c, text):
    """MAIL, RCPT, DATA and the content; returns the reply to the final dot."""
    assert c.cmd("MAIL FROM:<a@remote.example>")[-1].startswith(b"250")
    assert c.cmd("RCPT TO:<%s>" % BOB)[-1].startswith(b"250")
    assert c.cmd("DATA")[-1].startswith(b"354")
    c.send(text + ".\r\n")
    return c.reply()[-1]


def connect(m, src="127.0.0.2"):
    c = Raw.plain(m.port, src)
    assert c.code() == 220
    assert c.cmd("EHLO client.test")[-1].startswith(b"250")
    return c


def delivered(m, backends, tag, body, headers=""):
    """One message in a session of its own, answered 250 and found in the maildir: its bytes."""
    c = connect(m)
    subject = "uribl-%s-%s" % (tag, uuid.uuid4().hex)
    text, _ = msg(subject, body, headers)
    assert transaction(c, text).startswith(b"250")
    c.cmd("QUIT")
    c.close()
    return backends.wait_maildir(BOB, subject)


def assert_not_delivered(backends, subject, mid):
    """The refused message is nowhere in Postfix: call after a later message of the same session
    was delivered (Postfix handles its connection's messages in order)."""
    assert not any(subject.encode() in data for _, data in backends.messages(BOB))
    assert all(subject not in str(e) for e in backends.queue_entries())
    log = backends.postfix_log()
    # cleanup saw the headers (the content did stream to Postfix) ...
    qids = re.findall(r"postfix/cleanup\[\d+\]: ([0-9A-F]+): message-id=%s" % re.escape(mid), log)
    assert len(qids) == 1, qids
    # ... but the message was never committed: no queue manager, no delivery
    assert not re.search(r"\b%s: (from=<|.*status=sent)" % qids[0], log), qids[0]


QP_BODY = ('<p>Click <a href=3D"http://www.sp=\r\nam=2Etest/offer">here</a></p>')
B64_BODY = base64.encodebytes(b"Hello,\nvisit https://deals.evil.co.uk/now today\n").decode()
NESTED = (
    "--outer\r\n"
    "Content-Type: multipart/alternative; boundary=\"inner b\"\r\n\r\n"
    "--inner b\r\nContent-Type: text/plain\r\n\r\nnothing to see\r\n"
    "--inner b\r\nContent-Type: text/html; charset=utf-8\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    "<a href=3D\"https://user@track.spam.test:8080/x\">x</a>\r\n"
    "--inner b--\r\n"
    "--outer\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    "JVBERi0xLjQK\r\n"
    "--outer--\r\n")
CASES = {
    "plain": ("", "Visit http://www.spam.test/offer now!"),
    "html": ("Content-Type: text/html\r\n", "<html><a href=\"HTTP://Spam.Test/\">win</a></html>"),
    "qp": ("MIME-Version: 1.0\r\nContent-Type: text/html\r\n"
           "Content-Transfer-Encoding: quoted-printable\r\n", QP_BODY),
    "base64": ("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n"
               "Content-Transfer-Encoding: base64\r\n", B64_BODY),
    "nested": ("MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=outer\r\n", NESTED),
    "slow_answer": ("", "the end of data waits for http://slow.test/ to be looked up"),
    # HTML character references hiding the link from a scanner that reads bytes, not HTML
    "html_references": ("Content-Type: text/html\r\n",
                        "<a href=\"http&#58;//www&#46;spam&#x2E;test/\">win</a>"),
    "percent_escapes": ("", "Visit http://%77ww.%73pam%2Etest/offer now!"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_listed_url_refused_never_delivered_next_message_is(start, backends, case):
    m = start(LISTS)
    headers, body = CASES[case]
    c = connect(m)
    subject = "uribl-%s-%s" % (case, uuid.uuid4().hex)
    text, mid = msg(subject, body, headers)
    r = transaction(c, text)
    assert r.startswith(b"554 5.7.1 ") and b"listed by ubl.test" in r, r
    want = b"evil.co.uk" if case == "base64" else b"spam.test" if case != "slow_answer" \
        else b"slow.test"
    assert want in r, r
    # the session goes on: a clean message in the same session is delivered (a new backend leg)
    clean = "uribl-clean-" + uuid.uuid4().hex
    text2, _ = msg(clean, "fine: http://www.unlisted.test/ and http://refused.test/")
    assert transaction(c, text2).startswith(b"250"), "clean message refused"
    c.cmd("QUIT")
    c.close()
    backends.wait_maildir(BOB, clean)
    assert_not_delivered(backends, subject, mid)
    rig.wait_until(lambda: "event=uribl_refused" in m.log(), 3, what="refusal logged")
    assert "zone=ubl.test domain=%s" % want.decode() in m.log()
    assert m.alive()


def test_weights_threshold_and_pipelined_quit(start, backends):
    """Threshold 3: one list (weight 2) is not enough, both lists (2 + 1) are; QUIT pipelined
    behind the dot is answered after the refusal."""
    mport = rig.free_port()
    m = start(LISTS + "\nuribl_threshold = 3", metrics_port=mport)
    c = connect(m)
    subject = "uribl-one-" + uuid.uuid4().hex
    text, _ = msg(subject, "http://spam.test/ is only on one list")
    assert transaction(c, text).startswith(b"250")
    backends.wait_maildir(BOB, subject)
    subject2 = "uribl-both-" + uuid.uuid4().hex
    text2, mid2 = msg(subject2, "http://www.both.test/ is on both")
    assert c.cmd("MAIL FROM:<a@remote.example>")[-1].startswith(b"250")
    assert c.cmd("RCPT TO:<%s>" % BOB)[-1].startswith(b"250")
    assert c.cmd("DATA")[-1].startswith(b"354")
    c.send(text2 + ".\r\nQUIT\r\n")
    r = c.reply()[-1]
    assert r.startswith(b"554 5.7.1 ") and b"both.test" in r, r
    assert c.reply()[-1].startswith(b"221")
    c.close()
    rig.wait_until(lambda: "event=uribl_refused" in m.log(), 3, what="refusal logged")
    assert "score=3" in m.log()
    # one refusal on /metrics (parsed as Prometheus text)
    from prometheus_client.parser import text_string_to_metric_families
    import urllib.request
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport, timeout=5) as resp:
        body = resp.read().decode()
    refusals = {tuple(sorted(s.labels.items())): s.value
                for fam in text_string_to_metric_families(body) for s in fam.samples
                if s.name == "moat_refusals_total"}
    assert refusals.get((("control", "uribl"), ("listener", "mx"))) == 1, refusals


def test_unlisted_and_non_text_parts_delivered(start, backends):
    m = start(LISTS)
    # a listed URL inside a PDF attachment is not looked at; unlisted ones in text are
    pdf = base64.encodebytes(b"%PDF http://spam.test/ inside an attachment").decode()
    body = ("--b\r\nContent-Type: text/plain\r\n\r\nsee http://www.unlisted.test/ and "
            "http://refused.test/ (the list's 127.0.0.1 is outside its filter)\r\n"
            "--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + pdf + "--b--\r\n")
    delivered(m, backends, "ok", body,
              "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n")
    rig.wait_until(lambda: "event=uribl " in m.log(), 3, what="scan logged")
    assert "domains=2" in m.log() and "score=0" in m.log()
    assert "uribl_refused" not in m.log()


@pytest.mark.parametrize("policy,event", [("warn", "dns_warn"), ("dry-run", "dns_would_refuse")])
def test_warn_and_dry_run_deliver(start, backends, policy, event):
    m = start(LISTS + "\nuribl_policy = " + policy)
    delivered(m, backends, policy, "Visit http://www.spam.test/offer now!")
    rig.wait_until(lambda: "event=%s" % event in m.log(), 3, what="finding logged")
    assert "check=uribl zone=ubl.test domain=spam.test" in m.log()
    assert "uribl_refused" not in m.log()


def test_lookup_timeout_counts_as_not_listed(start, backends):
    m = start(LISTS + "\nuribl_timeout = 300ms")
    delivered(m, backends, "hang", "this list never answers about http://hang.test/")
    rig.wait_until(lambda: "event=uribl " in m.log(), 3, what="scan logged")
    assert re.search(r"event=uribl .*timeout=[12]\b", m.log()), m.log()


def test_lookups_capped_per_message(start, backends, ubl):
    m = start(LISTS + "\nuribl_max_lookups = 4")
    delivered(m, backends, "cap", " ".join("http://cap%d.test/" % i for i in range(10)))
    rig.wait_until(lambda: "event=uribl " in m.log(), 3, what="scan logged")
    assert "domains=2 skipped=8" in m.log(), m.log()
    asked = sum(ubl.count("cap%d.test.%s" % (i, z), "A") for i in range(10)
                for z in ("ubl.test", "ubl2.test"))
    assert asked == 4, asked


@pytest.mark.parametrize("line,why", [
    ("uribl = not..a.zone", "bad list zone name"),
    ("uribl = a.test, b.test\nuribl_max_lookups = 1", "at least the number of uribl lists"),
    ("uribl_policy = maybe", "uribl_policy"),
    ("uribl_max_depth = 17", "uribl_max_depth"),
    ("uribl_timeout = 2m", "must be at most 60s"),
    ("uribl = a.test\nuribl_ip_zones = a.test, b.test", "'b.test' is not one of the uribl lists"),
    ("uribl_ip_zones = a.test", "'a.test' is not one of the uribl lists"),
])
def test_config_check_names_the_line(certs, tmp_path, line, why):
    import subprocess
    conf = rig.moat_conf(
        certs, backends={"pf": {"address": "127.0.0.1:10025"}},
        listeners={"mx": {"protocol": "smtp", "listen": "127.0.0.1:%d" % rig.free_port(),
                          "backend": "pf"}},
        extra="[dns]\n" + line + "\n")
    path = tmp_path / "moat.conf"
    path.write_text(conf)
    r = subprocess.run([conftest.moat_binary(), "-t", "-c", str(path)], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 1
    assert why in r.stderr and re.search(r"moat\.conf:\d+: ", r.stderr), r.stderr


def test_half_close_after_the_dot_still_answered(start, backends):
    """The client shuts its side right after the dot while the lookups are still out: it still
    gets the answer, and a clean message is delivered."""
    import socket
    m = start(LISTS + "\nuribl_timeout = 5s")
    for body, want in (("http://slow.test/ is listed, its answer comes late", b"554 5.7.1 "),
                       ("http://hang.test/ never answers: delivered", b"250 ")):
        c = connect(m)
        subject = "uribl-halfclose-" + uuid.uuid4().hex
        text, mid = msg(subject, body)
        assert c.cmd("MAIL FROM:<a@remote.example>")[-1].startswith(b"250")
        assert c.cmd("RCPT TO:<%s>" % BOB)[-1].startswith(b"250")
        assert c.cmd("DATA")[-1].startswith(b"354")
        c.send(text + ".\r\n")
        c.sock.shutdown(socket.SHUT_WR)
        c.sock.settimeout(10)
        assert c.reply()[-1].startswith(want)
        c.close()
        if want == b"250 ":
            backends.wait_maildir(BOB, subject)
        else:
            rig.wait_until(lambda: "event=uribl_refused" in m.log(), 3, what="refusal logged")


def test_answers_cached_within_worker(start, backends, ubl):
    """The same domain in a second message of the session is answered from the worker's cache."""
    m = start(LISTS)
    c = connect(m)
    before = ubl.count("cached.spam.test.ubl.test", "A"), ubl.count("spam.test.ubl.test", "A")
    for _ in range(2):
        text, _ = msg("uribl-cache-" + uuid.uuid4().hex, "http://cached.spam.test/ again")
        r = transaction(c, text)
        assert r.startswith(b"554 5.7.1 ") and b"spam.test" in r, r
    c.cmd("QUIT")
    c.close()
    # the registered domain is what is asked, once
    assert ubl.count("cached.spam.test.ubl.test", "A") == before[0]
    assert ubl.count("spam.test.ubl.test", "A") == before[1] + 1


def test_url_past_the_byte_cap_not_looked_at(start, backends, ubl):
    m = start(LISTS + "\nuribl_max_bytes = 4k")
    body = "http://early.test/\r\n" + ("filler " * 70 + "\r\n") * 20 + "http://www.spam.test/ late"
    msg_bytes = delivered(m, backends, "bytes", body)
    assert b"http://www.spam.test/ late" in msg_bytes  # the whole message went through
    rig.wait_until(lambda: "event=uribl " in m.log(), 3, what="scan logged")
    assert "domains=1" in m.log() and "capped=bytes" in m.log(), m.log()


def test_address_urls_asked_reversed_only_in_ip_zones(start, backends, ubl):
    """A URL to an address (http://192.0.2.7/) is looked up reversed (7.2.0.192.ubl.test) in the
    uribl_ip_zones lists only: a list that takes no addresses is never asked (Spamhaus DBL answers
    such a query with a code a list without a filter would count). Without uribl_ip_zones the
    message is delivered and no address is asked anywhere."""
    body = "Click http://192.0.2.7/offer or http://user@203.0.113.9:8080/ or http://010.1.1.1/"
    names = ("7.2.0.192.ubl.test", "7.2.0.192.ubl2.test", "9.113.0.203.ubl.test",
             "9.113.0.203.ubl2.test", "1.1.1.010.ubl.test", "1.1.1.8.ubl.test")

    def asked():
        return [ubl.count(n, "A") for n in names]

    before = asked()
    m = start(LISTS)
    delivered(m, backends, "ip-off", body)
    assert asked() == before
    m.stop()

    m = start(LISTS + "\nuribl_ip_zones = UBL.test")
    c = connect(m)
    subject = "uribl-ip-" + uuid.uuid4().hex
    text, mid = msg(subject, body)
    r = transaction(c, text)
    assert r == b"554 5.7.1 Message content rejected: it links to 192.0.2.7, listed by ubl.test", r
    clean = "uribl-ip-clean-" + uuid.uuid4().hex
    text2, _ = msg(clean, "only http://203.0.113.9/ here, not listed")
    assert transaction(c, text2).startswith(b"250")
    c.cmd("QUIT")
    c.close()
    backends.wait_maildir(BOB, clean)
    assert_not_delivered(backends, subject, mid)
    # each address asked once in ubl.test (the second message from the cache), never in
    # ubl2.test; the octal-looking 010.1.1.1 is not an address moat reports
    assert [a - b for a, b in zip(asked(), before)] == [1, 0, 1, 0, 0, 0]
    assert "zone=ubl.test domain=192.0.2.7" in m.log()
    assert m.alive()
