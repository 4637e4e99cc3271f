"""Cross-protocol (ALPACA-style) requests at the IMAP and POP3 fronts: an HTTP request or header
line is never answered, so none of its bytes are reflected; the client gets one goodbye line
and the connection closes, and moat keeps serving. (SMTP: test_smtp_relay.py.)"""

import socket

import pytest

import rig

REQUEST = (b"POST /x HTTP/1.1\r\nHost: mx.moat.test\r\nContent-Type: text/plain\r\n"
           b"Content-Length: 32\r\n\r\na1 LOGIN evil secret<script>\r\n")


@pytest.fixture
def ports(moat, backends, certs):
    p = dict(zip(("imap", "imaps", "pop3"), rig.free_ports(3)))
    moat(rig.moat_conf(certs, backends={
        "imap": {"address": "127.0.0.1:%d" % backends.ports["imap"], "identity": "id"},
        "pop3": {"address": "127.0.0.1:%d" % backends.ports["pop3"], "identity": "xclient"},
    }, listeners={
        "imap": {"protocol": "imap", "listen": "127.0.0.1:%d" % p["imap"], "tls": "starttls",
                 "backend": "imap"},
        "imaps": {"protocol": "imap", "listen": "127.0.0.1:%d" % p["imaps"], "tls": "implicit",
                  "backend": "imap"},
        "pop3": {"protocol": "pop3", "listen": "127.0.0.1:%d" % p["pop3"], "tls": "starttls",
                 "backend": "pop3"},
    }), wait_ports=list(p.values()))
    return p


def exchange(sock, data, timeout=5.0):
    """Read the greeting, send data, return everything after the greeting until the close."""
    sock.settimeout(timeout)
    f = sock.makefile("rb")
    greeting = f.readline()
    assert greeting.startswith((b"* OK", b"+OK"))
    sock.sendall(data)
    out = b""
    for _ in range(100):
        line = f.readline()
        if not line:
            return out
        out += line
    raise AssertionError("never closed: %r" % out)


@pytest.mark.parametrize("name,bye", [("imap", b"* BYE"), ("pop3", b"-ERR")])
@pytest.mark.parametrize("data", [REQUEST, b"Host: mx.moat.test\r\n"], ids=["request", "header"])
def test_http_is_not_answered(ports, certs, name, bye, data):
    s = rig.client_socket(ports[name], src="127.0.0.81")
    out = exchange(s, data)
    s.close()
    assert out.count(b"\n") == 1 and out.startswith(bye), out
    for word in (b"POST", b"HTTP", b"Host", b"script", b"evil"):
        assert word not in out
    # the next client is served
    c = rig.client_socket(ports[name], src="127.0.0.82")
    c.settimeout(5)
    assert c.recv(100).startswith((b"* OK", b"+OK"))
    c.close()


def test_http_over_tls_without_alpn_is_not_answered(ports, certs):
    s = rig.tls_socket(ports["imaps"], certs, src="127.0.0.83")
    out = exchange(s, REQUEST)
    s.close()
    assert out == b"* BYE This is an IMAP server\r\n", out
