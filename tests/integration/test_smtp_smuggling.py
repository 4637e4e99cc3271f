"""SMTP front, DATA: every bare-LF / bare-CR / NUL end-of-data variant of the SMTP smuggling
scanners, followed by a pipelined MAIL/RCPT/DATA, gives exactly one message in the maildir, in
both bare_newline modes (normalize: the smuggled text stays inside the first message; reject /
bare CR / NUL: 550, then a clean follow-up message). Also: a backend that dies after 354 gives the
client a 4xx and never sees a final dot; the message size limit."""

import socket
import threading
import time
import uuid

import pytest

import rig
from smtp_helpers import BOB, Raw, message, session, start_smtp_moat

LF_ONLY = [b"\n.\n", b"\n.\r\n", b"\r\n.\n"]
WITH_CR = [b"\r.\r\n", b"\r.\n", b"\n.\r", b"\r.\r", b"\r\n.\r\r\n", b"\r\r\n.\r\r\n",
           b"\r\n\x00.\r\n"]


@pytest.fixture(scope="module")
def fake_backend():
    """A tiny SMTP server that accepts one transaction and dies after some DATA bytes."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    srv.settimeout(0.5)
    state = {"received": b"", "stop": False}

    def serve():
        while not state["stop"]:
            try:
                c, _ = srv.accept()
            except socket.timeout:
                continue
            c.settimeout(5)
            f = c.makefile("rb")
            c.sendall(b"220 fake ESMTP\r\n")
            try:
                while True:
                    line = f.readline()
                    if not line:
                        break
                    if line.upper().startswith(b"DATA"):
                        c.sendall(b"354 go\r\n")
                        state["received"] += f.read1(65536)
                        break  # die in the middle of the message
                    c.sendall(b"250 ok\r\n")
            except OSError:
                pass
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            f.close()
            c.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    state["port"] = srv.getsockname()[1]
    yield state
    state["stop"] = True
    t.join(5)
    srv.close()


@pytest.fixture(scope="module")
def m(backends, certs, fake_backend, tmp_path_factory):
    conf_dir = tmp_path_factory.mktemp("smtpsmug")
    started = []

    def start(conf_text, wait_ports=(), timeout=5.0):
        mm = rig.Moat(__import__("conftest").moat_binary(), conf_text, str(conf_dir),
                      ports=wait_ports, timeout=timeout)
        started.append(mm)
        return mm
    try:
        yield start_smtp_moat(start, backends, certs, extra_listener={
            "reject": {"protocol": "smtp", "tls": "none", "backend": "xclient",
                       "local_domains": "example.test", "bare_newline": "reject",
                       "message_size": "20000"},
            "fake": {"protocol": "smtp", "tls": "none", "backend": "fake",
                     "local_domains": "example.test"}},
            extra_backends={"fake": {"address": "127.0.0.1:%d" % fake_backend["port"],
                                     "identity": "none"}})
    finally:
        for mm in started:
            mm.stop()


def header_of(data):
    return data.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]


def smuggle(port, variant, src):
    mk = uuid.uuid4().hex[:10]
    c = session(port, src)
    assert c.cmd("MAIL FROM:<a@remote.example>")[-1].startswith(b"250")
    assert c.cmd("RCPT TO:<%s>" % BOB)[-1].startswith(b"250")
    assert c.cmd("DATA")[-1].startswith(b"354")
    c.send(b"Subject: first-" + mk.encode() + b"\r\n\r\nbody" + variant +
           b"MAIL FROM:<evil@remote.example>\r\nRCPT TO:<" + BOB.encode() + b">\r\nDATA\r\n"
           b"Subject: smuggled-" + mk.encode() + b"\r\n\r\nevil\r\n.\r\n")
    first = c.reply()[-1]
    # nothing else was answered: the next reply is the NOOP's
    assert c.cmd("NOOP")[-1].startswith(b"250 2.0.0")
    return c, mk, first


@pytest.mark.parametrize("variant", LF_ONLY + WITH_CR, ids=repr)
@pytest.mark.parametrize("mode", ["normalize", "reject"])
def test_smuggling_one_message(m, backends, variant, mode):
    port = m.smtp_ports["mx" if mode == "normalize" else "reject"]
    c, mk, first = smuggle(port, variant, "127.0.0.31")
    accepted = mode == "normalize" and variant in LF_ONLY
    if accepted:
        assert first.startswith(b"250"), first
    else:
        assert first.startswith(b"550 5."), first
        # a clean follow-up message in the same session
        assert c.cmd("MAIL FROM:<a@remote.example>")[-1].startswith(b"250")
        assert c.cmd("RCPT TO:<%s>" % BOB)[-1].startswith(b"250")
        assert c.cmd("DATA")[-1].startswith(b"354")
        c.send("Subject: followup-%s\r\n\r\nclean\r\n.\r\n" % mk)
        assert c.reply()[-1].startswith(b"250")
    c.cmd("QUIT")
    c.close()
    backends.wait_maildir(BOB, mk)
    time.sleep(0.5)
    mine = [d for _, d in backends.messages(BOB) if mk.encode() in d]
    assert len(mine) == 1, mine
    assert b"smuggled-" not in header_of(mine[0])
    if accepted:
        assert b"first-" + mk.encode() in header_of(mine[0])
        assert b"\r" not in mine[0].replace(b"\r\n", b"")
    else:
        assert b"followup-" + mk.encode() in header_of(mine[0])
        assert b"smuggled-" not in mine[0]


def test_message_size_limit(m, backends):
    c = session(m.smtp_ports["reject"], "127.0.0.32")
    assert c.cmd("MAIL FROM:<a@remote.example> SIZE=30000")[-1].startswith(b"552 5.3.4")
    assert c.cmd("MAIL FROM:<a@remote.example>")[-1].startswith(b"250")
    assert c.cmd("RCPT TO:<%s>" % BOB)[-1].startswith(b"250")
    assert c.cmd("DATA")[-1].startswith(b"354")
    mk = uuid.uuid4().hex[:10]
    c.send("Subject: big-%s\r\n\r\n%s\r\n.\r\n" % (mk, ("x" * 70 + "\r\n") * 400))
    assert c.reply()[-1].startswith(b"552 5.3.4")
    assert c.cmd("NOOP")[-1].startswith(b"250")
    c.close()
    time.sleep(0.5)
    assert not [d for _, d in backends.messages(BOB) if mk.encode() in d]


def test_large_message_streams(m, backends):
    """A message far bigger than the buffers goes through with flow control."""
    c = session(m.smtp_ports["mx"], "127.0.0.33")
    assert c.cmd("MAIL FROM:<a@remote.example>")[-1].startswith(b"250")
    assert c.cmd("RCPT TO:<%s>" % BOB)[-1].startswith(b"250")
    assert c.cmd("DATA")[-1].startswith(b"354")
    mk = uuid.uuid4().hex[:10]
    body = ("." + "y" * 998 + "\r\n") * 3000  # 3 MB of dot-started long lines
    c.send("Subject: large-%s\r\n\r\n%s.\r\n" % (mk, body))
    c.sock.settimeout(30)
    assert c.reply()[-1].startswith(b"250")
    c.close()
    data = backends.wait_maildir(BOB, mk, timeout=20)
    assert data.count(b"\n" + b"y" * 998) == 3000  # the stuffing dot was removed


def test_backend_dies_after_354(m, backends, fake_backend):
    c = session(m.smtp_ports["fake"], "127.0.0.34")
    assert c.cmd("MAIL FROM:<a@remote.example>")[-1].startswith(b"250")
    assert c.cmd("RCPT TO:<%s>" % BOB)[-1].startswith(b"250")
    assert c.cmd("DATA")[-1].startswith(b"354")
    time.sleep(0.2)
    try:
        c.send("Subject: doomed\r\n\r\n" + "line\r\n" * 20)
        time.sleep(0.5)
        c.send(".\r\n")
    except OSError:
        pass
    r = c.reply()[-1]
    assert r[:1] == b"4", r
    assert not fake_backend["received"].endswith(b"\r\n.\r\n")
    # the lines sent after moat closed may have drawn a reset instead of a plain end
    with pytest.raises((EOFError, ConnectionResetError)):
        c.line()
    c.close()
    c = session(m.smtp_ports["mx"], "127.0.0.35")
    assert c.cmd("NOOP")[-1].startswith(b"250")
    c.close()
