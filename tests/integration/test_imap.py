"""IMAP front end to end against the real Dovecot of the rig: imaplib over implicit TLS (993
style) and STARTTLS (143 style), curl imaps:// and imap:// --ssl-reqd, each backend identity
(id, proxy-v2, none) with Dovecot's log showing the real client address. The mail fetched was
delivered by the rig's Postfix."""

import subprocess
import uuid

import pytest

import rig
from imap_helpers import login_lines, start_imap_moat

ALICE = "alice@example.test"
BOB = "bob@example.test"


@pytest.fixture
def m(moat, backends, certs):
    return start_imap_moat(moat, backends, certs)


def deliver(backends, user):
    subject = "moat-imap-%s" % uuid.uuid4().hex[:12]
    body = "body of %s" % subject
    backends.deliver(user, subject, body)
    backends.wait_maildir(user, subject)
    return subject, body


def list_and_fetch(im, subject, body):
    typ, boxes = im.list()
    assert typ == "OK" and any(b"INBOX" in b for b in boxes), boxes
    typ, _ = im.select("INBOX")
    assert typ == "OK"
    typ, data = im.search(None, "SUBJECT", '"%s"' % subject)
    assert typ == "OK"
    nums = data[0].split()
    assert len(nums) == 1, data
    typ, msg = im.fetch(nums[0], "(RFC822)")
    assert typ == "OK"
    raw = msg[0][1]
    assert subject.encode() in raw and body.encode() in raw


def test_imaps_login_list_fetch_id_identity(m, backends, certs):
    src = "127.0.0.41"
    subject, body = deliver(backends, ALICE)
    im = rig.IMAPS(m.imap_ports["imaps"], certs, src=src)
    assert "AUTH=PLAIN" in im.capabilities
    typ, data = im.login(ALICE, backends.users[ALICE])
    assert typ == "OK"
    # after login the capabilities are Dovecot's, forwarded in the tagged OK
    typ, caps = im.capability()
    assert b"MOVE" in caps[0]
    list_and_fetch(im, subject, body)
    im.logout()
    lines = login_lines(backends, ALICE, src, wait=3)
    assert lines, backends.dovecot_log()[-2000:]
    assert "secured" in lines[-1]
    assert "session=<" in lines[-1]
    assert "event=login" in m.log()


def test_starttls_login_list_fetch(m, backends, certs):
    src = "127.0.0.42"
    subject, body = deliver(backends, BOB)
    im = rig.IMAP(m.imap_ports["imap"], src=src)
    assert "LOGINDISABLED" in im.capabilities and "STARTTLS" in im.capabilities
    im.starttls(ssl_context=rig.client_context(certs, check_hostname=False))
    assert "AUTH=PLAIN" in im.capabilities and "LOGINDISABLED" not in im.capabilities
    im.login(BOB, backends.users[BOB])
    list_and_fetch(im, subject, body)
    im.logout()
    assert login_lines(backends, BOB, src, wait=3)


def test_authenticate_plain_and_literals(m, backends, certs):
    src = "127.0.0.43"
    im = rig.IMAPS(m.imap_ports["imaps"], certs, src=src)
    pw = backends.users[ALICE]
    typ, _ = im.authenticate("PLAIN", lambda _: ("\0%s\0%s" % (ALICE, pw)).encode())
    assert typ == "OK"
    im.select("INBOX")
    im.logout()
    # LOGIN with synchronising literals, by hand
    from imap_helpers import Raw
    c = Raw.tls(m.imap_ports["imaps"], certs, src)
    c.line()
    c.send(b"a LOGIN {%d}\r\n" % len(ALICE))
    assert c.line() == b"+ OK"
    c.send(ALICE.encode() + b" {%d}\r\n" % len(pw))
    assert c.line() == b"+ OK"
    c.send(pw.encode() + b"\r\n")
    reply = c.until_tagged(b"a")
    assert reply[-1].startswith(b"a OK [CAPABILITY") and len(reply) == 1, reply
    c.send(b"b LOGOUT\r\n")
    assert c.until_tagged(b"b")[-1].startswith(b"b OK")
    c.close()


def test_proxy_v2_identity(m, backends, certs):
    src = "127.0.0.44"
    subject, body = deliver(backends, ALICE)
    im = rig.IMAPS(m.imap_ports["imaps_proxy"], certs, src=src)
    im.login(ALICE, backends.users[ALICE])
    list_and_fetch(im, subject, body)
    im.logout()
    lines = login_lines(backends, ALICE, src, wait=3)
    assert lines, backends.dovecot_log()[-2000:]
    assert "secured" in lines[-1]


def test_identity_none(m, backends, certs):
    im = rig.IMAPS(m.imap_ports["imaps_none"], certs, src="127.0.0.45")
    im.login(ALICE, backends.users[ALICE])
    im.select("INBOX")
    im.logout()
    # without an identity Dovecot only knows moat's own address
    assert login_lines(backends, ALICE, "127.0.0.1", wait=3)


def curl(args, timeout=20):
    return subprocess.run(["curl", "-sS", "--max-time", "15"] + args, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("scheme,port_name,src", [("imaps", "imaps", "127.0.0.46"),
                                                   ("imap", "imap", "127.0.0.47")])
def test_curl(m, backends, certs, scheme, port_name, src):
    subject, body = deliver(backends, ALICE)
    port = m.imap_ports[port_name]
    base = "%s://mx.moat.test:%d" % (scheme, port)
    common = ["--cacert", certs.ca, "--interface", src,
              "--resolve", "mx.moat.test:%d:127.0.0.1" % port,
              "-u", "%s:%s" % (ALICE, backends.users[ALICE])]
    if scheme == "imap":
        common.append("--ssl-reqd")
    r = curl(common + [base + "/"])
    assert r.returncode == 0, r.stderr
    assert "INBOX" in r.stdout
    r = curl(common + [base + "/INBOX", "-X", 'UID SEARCH SUBJECT "%s"' % subject])
    assert r.returncode == 0, r.stderr
    uids = r.stdout.split()[2:]
    assert len(uids) == 1, r.stdout
    r = curl(common + [base + "/INBOX/;UID=%s" % uids[0]])
    assert r.returncode == 0, r.stderr
    assert subject in r.stdout and body in r.stdout
    assert login_lines(backends, ALICE, src, wait=3)
