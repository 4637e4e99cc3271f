"""A client that closes its sending side right after its last command still gets every reply it
asked for (nothing lost, and no message delivered twice by a client retrying after a missing
250), and a partial message is never delivered: SMTP before and after the hand-off, and the
IMAP and POP3 byte relay, which half-closes the backend and relays its answer."""

import socket
import uuid

import rig
from smtp_helpers import BOB, Raw, message, session, start_smtp_moat

ALICE = "alice@example.test"


def read_all(sock, timeout=10.0):
    """Everything until the server closes (bounded by timeout and size)."""
    sock.settimeout(timeout)
    data = b""
    for _ in range(1000):
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    raise AssertionError("server never closed")


def count(backends, user, mark):
    return sum(1 for _, body in backends.messages(user) if mark.encode() in body)


def test_smtp_message_then_quit_then_half_close(moat, backends, certs):
    m = start_smtp_moat(moat, backends, certs)
    mark = "halfclose-%s" % uuid.uuid4().hex
    c = session(m.smtp_ports["mx"], "127.0.0.71")
    assert c.cmd("MAIL FROM:<sender@remote.example>")[-1].startswith(b"250")
    assert c.cmd("RCPT TO:<%s>" % BOB)[-1].startswith(b"250")
    assert c.cmd("DATA")[-1].startswith(b"354")
    c.send(message(mark) + ".\r\nQUIT\r\n")
    c.sock.shutdown(socket.SHUT_WR)
    rest = c.buf + read_all(c.sock)
    c.close()
    assert b"\r\n250 " in b"\r\n" + rest and b"221" in rest, rest
    backends.wait_maildir(BOB, mark)
    assert count(backends, BOB, mark) == 1


def test_smtp_pipelined_handoff_then_half_close(moat, backends, certs):
    m = start_smtp_moat(moat, backends, certs)
    s = rig.client_socket(m.smtp_ports["mx"], "127.0.0.72")
    s.sendall(b"EHLO half.example\r\nMAIL FROM:<sender@remote.example>\r\n"
              b"RCPT TO:<bob@example.test>\r\nRCPT TO:<x@far.example>\r\nQUIT\r\n")
    s.shutdown(socket.SHUT_WR)
    replies = [l[:3] for l in read_all(s).split(b"\r\n") if l[3:4] == b" "]
    s.close()
    assert replies == [b"220", b"250", b"250", b"250", b"554", b"221"], replies


def test_smtp_partial_message_never_delivered(moat, backends, certs):
    m = start_smtp_moat(moat, backends, certs)
    mark = "partial-%s" % uuid.uuid4().hex
    c = session(m.smtp_ports["mx"], "127.0.0.73")
    assert c.cmd("MAIL FROM:<sender@remote.example>")[-1].startswith(b"250")
    assert c.cmd("RCPT TO:<%s>" % BOB)[-1].startswith(b"250")
    assert c.cmd("DATA")[-1].startswith(b"354")
    c.send(message(mark))  # no end of data
    c.sock.shutdown(socket.SHUT_WR)
    assert read_all(c.sock) == b""
    c.close()
    rig.wait_until(lambda: "client=127.0.0.73:" in m.log() and "reason=client_eof" in m.log(),
                   5, what="close line")
    backends.flush_queue()
    assert count(backends, BOB, mark) == 0


def start_tls_front(moat, backends, certs, proto, identity):
    """moat with one implicit-TLS listener of proto in front of the rig's Dovecot."""
    port = rig.free_port()
    moat(rig.moat_conf(certs, backends={proto: {
        "address": "127.0.0.1:%d" % backends.ports[proto], "identity": identity}},
        listeners={proto: {"protocol": proto, "listen": "127.0.0.1:%d" % port,
                           "tls": "implicit", "backend": proto}}), wait_ports=[port])
    return port


def logged_in_then_half_close(s, f, login, last):
    """After login, send the last commands and a TCP FIN under TLS (the TLS reader stays), then
    read every line until the server closes."""
    s.sendall(login)
    assert f.readline().startswith((b"+OK", b"a OK"))
    s.sendall(last)
    socket.socket.shutdown(s, socket.SHUT_WR)
    rest = b""
    for _ in range(10):
        line = f.readline()
        if not line:
            break
        rest += line
    s.close()
    return rest


def test_pop3_relay_half_close_gets_the_answers(moat, backends, certs):
    port = start_tls_front(moat, backends, certs, "pop3", "xclient")
    s = rig.tls_socket(port, certs, src="127.0.0.74")
    f = s.makefile("rb")
    assert f.readline().startswith(b"+OK")
    s.sendall(b"USER %s\r\n" % ALICE.encode())
    assert f.readline().startswith(b"+OK")
    rest = logged_in_then_half_close(s, f, b"PASS %s\r\n" % backends.users[ALICE].encode(),
                                     b"STAT\r\nQUIT\r\n")
    assert rest.startswith(b"+OK ") and b"\r\n+OK" in rest, rest  # STAT, then QUIT's answer


def test_imap_relay_half_close_gets_the_logout(moat, backends, certs):
    port = start_tls_front(moat, backends, certs, "imap", "id")
    s = rig.tls_socket(port, certs, src="127.0.0.75")
    f = s.makefile("rb")
    assert f.readline().startswith(b"* OK")
    rest = logged_in_then_half_close(
        s, f, b'a LOGIN "%s" "%s"\r\n' % (ALICE.encode(), backends.users[ALICE].encode()),
        b"b LOGOUT\r\n")
    assert b"* BYE" in rest and b"b OK" in rest, rest
