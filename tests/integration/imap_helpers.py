"""Shared helpers of the IMAP front's integration tests: a moat configuration with one listener
per identity (id, proxy-v2, none) plus a STARTTLS listener, and a raw line client with bounded
reads for the protocol-level cases imaplib cannot express."""

import re
import socket
import ssl
import time

import rig

LISTENERS = ("imap", "imaps", "imaps_proxy", "imaps_none")


def imap_conf(backends, certs, ports, limits="", timeouts=""):
    p = backends.ports
    backend_sections = {
        "dv_id": {"address": "127.0.0.1:%d" % p["imap"], "identity": "id"},
        "dv_proxy": {"address": "127.0.0.1:%d" % p["imap_proxy"], "identity": "proxy-v2"},
        "dv_none": {"address": "127.0.0.1:%d" % p["imap"], "identity": "none"},
    }

    def lsn(name, tls, backend):
        return {"protocol": "imap", "listen": "127.0.0.1:%d" % ports[name], "tls": tls,
                "backend": backend}

    listeners = {
        "imap": lsn("imap", "starttls", "dv_id"),
        "imaps": lsn("imaps", "implicit", "dv_id"),
        "imaps_proxy": lsn("imaps_proxy", "implicit", "dv_proxy"),
        "imaps_none": lsn("imaps_none", "implicit", "dv_none"),
    }
    extra = ("[limits]\nconnection_rate_per_ip = 10000/1m\nmax_sessions_per_ip = 500\n%s\n"
             "[timeouts]\npreauth_idle = 10s\nbackend_reply = 2s\nbackend_connect = 1s\n%s\n"
             % (limits, timeouts))
    return rig.moat_conf(certs, backend_sections, listeners, extra)


def start_imap_moat(moat, backends, certs, **kw):
    ports = dict(zip(LISTENERS, rig.free_ports(len(LISTENERS))))
    m = moat(imap_conf(backends, certs, ports, **kw), wait_ports=list(ports.values()))
    m.imap_ports = ports
    return m


def login_lines(backends, user, src, wait=0.0):
    """Dovecot's imap-login "Login:" lines for user from client address src (polled for up to
    wait seconds: Dovecot writes its log asynchronously)."""
    def find():
        return [l for l in backends.dovecot_log().splitlines()
                if "imap-login:" in l and " Login: " in l and "user=<%s>" % user in l
                and "rip=%s," % src in l]
    if wait > 0:
        try:
            rig.wait_until(find, wait, what="dovecot login line")
        except (TimeoutError, RuntimeError):
            pass
    return find()


class Raw:
    """A line client over a socket; every read is bounded by a deadline."""

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
        self.sock.sendall(data)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no reply; have %r" % self.buf[-300:])
        self.sock.settimeout(left)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed; have %r" % self.buf[-300:])
        self.buf += chunk

    def line(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        for _ in range(100000):
            i = self.buf.find(b"\r\n")
            if i >= 0:
                out, self.buf = self.buf[:i], self.buf[i + 2:]
                return out
            self._fill(deadline)
        raise TimeoutError("too many reads")

    def until_tagged(self, tag, timeout=5.0):
        """Lines up to and including the one tagged with tag."""
        lines = []
        deadline = time.monotonic() + timeout
        for _ in range(10000):
            l = self.line(max(0.01, deadline - time.monotonic()))
            lines.append(l)
            if l.startswith(tag + b" "):
                return lines
        raise TimeoutError("no tagged reply for %r" % tag)

    def quiet(self, wait=0.3):
        """Whatever arrives within wait seconds (b"" if nothing)."""
        deadline = time.monotonic() + wait
        try:
            for _ in range(1000):
                self._fill(deadline)
        except (TimeoutError, socket.timeout, EOFError, ssl.SSLError):
            pass
        out, self.buf = self.buf, b""
        return out

    def starttls(self, certs):
        ctx = rig.client_context(certs)
        self.sock = ctx.wrap_socket(self.sock, server_hostname="mx.moat.test")
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def greeting_caps(greeting):
    m = re.match(rb"\* OK \[CAPABILITY ([^\]]*)\]", greeting)
    assert m, greeting
    return m.group(1).split()
