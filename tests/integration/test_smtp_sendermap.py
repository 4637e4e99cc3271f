"""sender_login_map on submission: a mapped shared address may be used by the logins listed
for it, and by nobody else; without an entry only the login's own address is accepted. What
reached the backend is checked in the maildir."""

import uuid

import rig
from smtp_helpers import ALICE, BOB, login, message, session, start_smtp_moat


def start(moat, backends, certs, tmp_path):
    mapfile = tmp_path / "senders"
    mapfile.write_text("# shared\nsales@example.test alice@example.test\n"
                       "@lists.example.test bob@example.test\n")
    return start_smtp_moat(moat, backends, certs, extra_listener={
        "shared": {"protocol": "submission", "tls": "implicit", "backend": "xclient",
                   "auth": "yes", "local_domains": "example.test",
                   "sender_login_map": str(mapfile)}})


def send_as(m, certs, backends, src, user, sender, mark):
    c = session(m.smtp_ports["shared"], src, certs, implicit=True)
    assert login(c, user, backends.users[user])[-1].startswith(b"235")
    reply = c.cmd("MAIL FROM:<%s>" % sender)[-1]
    if reply.startswith(b"250"):
        assert c.cmd("RCPT TO:<%s>" % BOB)[-1].startswith(b"250")
        assert c.cmd("DATA")[-1].startswith(b"354")
        c.send(message(mark, sender=sender) + ".\r\n")
        assert c.reply()[-1].startswith(b"250")
    c.cmd("QUIT")
    c.close()
    return reply


def test_sender_login_map(moat, backends, certs, tmp_path):
    m = start(moat, backends, certs, tmp_path)
    refused = "refused-%s" % uuid.uuid4().hex
    # negative cases first: a login not listed for the shared address, and a foreign address
    assert send_as(m, certs, backends, "127.0.0.31", BOB, "sales@example.test",
                   refused).startswith(b"553 5.7.1")
    assert send_as(m, certs, backends, "127.0.0.32", ALICE, BOB, refused).startswith(b"553")
    assert send_as(m, certs, backends, "127.0.0.33", ALICE, "x@lists.example.test",
                   refused).startswith(b"553")
    ok = "mapped-%s" % uuid.uuid4().hex
    assert send_as(m, certs, backends, "127.0.0.34", ALICE, "Sales@Example.test",
                   ok).startswith(b"250")
    assert send_as(m, certs, backends, "127.0.0.35", BOB, "news@lists.example.test",
                   ok + "-list").startswith(b"250")
    backends.wait_maildir(BOB, ok)
    backends.wait_maildir(BOB, ok + "-list")
    assert not any(refused.encode() in body for _, body in backends.messages(BOB))
