"""Shared helpers for the SMTP front's integration tests: a moat config with the four SMTP
listeners of the issue (MX with XCLIENT, submission with STARTTLS, submissions with implicit TLS,
and the open-relay trap: an MX whose backend trusts 127.0.0.1 and gets no identity), and a raw
line-oriented SMTP client bound to 127.0.0.2+."""

import socket
import ssl

import rig

LOCAL = "example.test"
ALICE = "alice@example.test"
BOB = "bob@example.test"


def start_smtp_moat(moat, backends, certs, bare_newline="normalize", extra_listener=None,
                    extra_backends=None):
    ports = dict(zip(("mx", "submission", "submissions", "trap"), rig.free_ports(4)))
    common = {"local_domains": LOCAL, "bare_newline": bare_newline, "max_errors": "20",
              "preauth_idle": "5s", "backend_reply": "5s"}
    listeners = {
        "mx": dict(common, protocol="smtp", listen="127.0.0.1:%d" % ports["mx"],
                   tls="starttls", backend="xclient"),
        "submission": dict(common, protocol="submission",
                           listen="127.0.0.1:%d" % ports["submission"], tls="starttls",
                           backend="xclient", auth="yes"),
        "submissions": dict(common, protocol="submission",
                            listen="127.0.0.1:%d" % ports["submissions"], tls="implicit",
                            backend="xclient", auth="yes"),
        "trap": dict(common, protocol="smtp", listen="127.0.0.1:%d" % ports["trap"],
                     tls="starttls", backend="plain"),
    }
    for name, kv in (extra_listener or {}).items():
        ports[name] = rig.free_port()
        listeners[name] = dict(kv, listen="127.0.0.1:%d" % ports[name])
    backend_sections = {
        "xclient": {"address": "127.0.0.1:%d" % backends.ports["smtp_xclient"],
                    "identity": "xclient"},
        "plain": {"address": "127.0.0.1:%d" % backends.ports["smtp_plain"],
                  "identity": "none"},
    }
    backend_sections.update(extra_backends or {})
    conf = rig.moat_conf(certs, backends=backend_sections, listeners=listeners)
    m = moat(conf, wait_ports=list(ports.values()))
    m.smtp_ports = ports
    return m


class Raw:
    """A raw SMTP client: send bytes, read reply lines, upgrade to TLS."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    @classmethod
    def plain(cls, port, src="127.0.0.2"):
        return cls(rig.client_socket(port, src))

    @classmethod
    def tls(cls, port, certs, src="127.0.0.2"):
        return cls(rig.tls_socket(port, certs, src))

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed; buffered %r" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r")

    def reply(self):
        """One complete (possibly multi-line) reply as a list of lines."""
        lines = [self.line()]
        while len(lines[-1]) > 3 and lines[-1][3:4] == b"-":
            lines.append(self.line())
        return lines

    def code(self):
        return int(self.reply()[-1][:3])

    def cmd(self, text):
        self.send(text + "\r\n")
        return self.reply()

    def starttls(self, certs):
        ctx = rig.client_context(certs)
        self.sock = ctx.wrap_socket(self.sock, server_hostname="mx.moat.test")

    def closed(self, timeout=3.0):
        """True if the server closes without sending anything more."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, ssl.SSLError, ConnectionResetError):
            return False
        return data == b"" and self.buf == b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def session(port, src="127.0.0.2", certs=None, starttls=False, implicit=False, helo="client.test"):
    c = Raw.tls(port, certs, src) if implicit else Raw.plain(port, src)
    assert c.code() == 220
    if starttls:
        c.cmd("EHLO " + helo)
        assert c.cmd("STARTTLS")[-1].startswith(b"220")
        c.starttls(certs)
    lines = c.cmd("EHLO " + helo)
    assert lines[-1].startswith(b"250")
    c.ehlo_lines = lines
    return c


def login(c, user=ALICE, password=None, backends=None):
    import base64
    pw = password if password is not None else backends.users[user]
    token = base64.b64encode(("\0%s\0%s" % (user, pw)).encode()).decode()
    return c.cmd("AUTH PLAIN " + token)


def message(subject, body="hello", sender="sender@remote.example", to=BOB):
    return ("From: %s\r\nTo: %s\r\nSubject: %s\r\n\r\n%s\r\n" % (sender, to, subject, body))


def assert_serving(m, src="127.0.0.9"):
    c = Raw.plain(m.smtp_ports["mx"], src)
    assert c.code() == 220
    assert c.cmd("NOOP")[-1].startswith(b"250")
    c.cmd("QUIT")
    c.close()
    assert m.alive()
