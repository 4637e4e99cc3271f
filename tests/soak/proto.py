"""Minimal asyncio SMTP / IMAP / POP3 dialogues for the soak (tests/soak/soak.py).

Raw sockets with asyncio streams (TLS through the ssl module): thousands of sessions fit in one
Python process. Every read is bounded by a timeout (OP_TIMEOUT unless given); a peer that closes
raises Closed. Messages are built here too: each has a unique Message-ID and carries the sha256
of its body (as stored in a maildir: LF line ends) in an X-Soak-Hash header, so a fetched or
delivered copy can be checked byte for byte.
"""

import asyncio
import base64
import hashlib
import os
import random
import re
import socket
import ssl
import struct
import time

OP_TIMEOUT = 45.0  # one reply; > moat's backend_reply (15 s) so moat's own answer comes first
HOST = "127.0.0.1"
SNI = "mx.moat.test"


class Closed(Exception):
    """The peer closed the connection (or reset it)."""


class Refused(Exception):
    """moat refused the session at connect (421 / BYE / -ERR at greeting)."""


class Conn:
    """One client connection: line reads with a timeout, writes, STARTTLS, RST."""

    def __init__(self, reader, writer):
        self.r = reader
        self.w = writer

    @classmethod
    async def open(cls, port, src, tls_ctx=None, timeout=OP_TIMEOUT):
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(
                HOST, port, ssl=tls_ctx, server_hostname=SNI if tls_ctx else None,
                local_addr=(src, 0), limit=1 << 20), timeout)
        except (ConnectionError, ssl.SSLError, OSError) as e:
            raise Closed("connect: %s" % e) from None
        return cls(r, w)

    async def line(self, timeout=OP_TIMEOUT):
        try:
            data = await asyncio.wait_for(self.r.readline(), timeout)
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError, OSError) as e:
            raise Closed(str(e)) from None
        if not data.endswith(b"\n"):
            raise Closed("eof after %r" % data[:80])
        return data

    async def exactly(self, n, timeout=OP_TIMEOUT):
        try:
            return await asyncio.wait_for(self.r.readexactly(n), timeout)
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError, OSError) as e:
            raise Closed(str(e)) from None

    async def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        try:
            self.w.write(data)
            await asyncio.wait_for(self.w.drain(), OP_TIMEOUT)
        except (ConnectionError, ssl.SSLError, OSError, RuntimeError) as e:
            raise Closed("write: %s" % e) from None

    async def starttls(self, ctx):
        try:
            await asyncio.wait_for(self.w.start_tls(ctx, server_hostname=SNI), OP_TIMEOUT)
        except (ConnectionError, ssl.SSLError, OSError) as e:
            raise Closed("starttls: %s" % e) from None

    async def until_closed(self, timeout):
        """Read and discard until the peer closes; returns True if it did within timeout."""
        deadline = time.monotonic() + timeout
        for _ in range(100000):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                chunk = await asyncio.wait_for(self.r.read(65536), left)
            except asyncio.TimeoutError:
                return False
            except (ConnectionError, ssl.SSLError, OSError):
                return True
            if not chunk:
                return True
        return False

    def close(self):
        try:
            self.w.close()
        except (ConnectionError, ssl.SSLError, OSError, RuntimeError):
            pass

    def reset(self):
        """Vanish with a RST (SO_LINGER 0), no TLS close_notify."""
        sock = self.w.get_extra_info("socket")
        try:
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.w.transport.abort()


# --- SMTP -------------------------------------------------------------------------------------


async def smtp_reply(c, timeout=OP_TIMEOUT):
    """(code, text of the last line) of one possibly multi-line reply."""
    for _ in range(200):
        line = await c.line(timeout)
        if len(line) < 4 or not line[:3].isdigit():
            raise Closed("bad SMTP reply %r" % line[:80])
        if line[3:4] != b"-":
            return int(line[:3]), line.decode("latin-1").strip()
    raise Closed("endless SMTP reply")


async def smtp_cmd(c, cmd):
    await c.send(cmd + "\r\n")
    return await smtp_reply(c)


async def smtp_open(port, src, tls_ctx, mode):
    """Connect, greeting, EHLO (and STARTTLS + EHLO when mode == 'starttls')."""
    c = await Conn.open(port, src, tls_ctx if mode == "implicit" else None)
    try:
        code, text = await smtp_reply(c)
        if code != 220:
            raise Refused(text)
        code, text = await smtp_cmd(c, "EHLO soak.client.test")
        if code != 250:
            raise Closed("EHLO: %s" % text)
        if mode == "starttls":
            code, text = await smtp_cmd(c, "STARTTLS")
            if code != 220:
                raise Closed("STARTTLS: %s" % text)
            await c.starttls(tls_ctx)
            code, text = await smtp_cmd(c, "EHLO soak.client.test")
            if code != 250:
                raise Closed("EHLO after TLS: %s" % text)
    except BaseException:
        c.close()
        raise
    return c


def auth_plain(user, password):
    return base64.b64encode(b"\0%s\0%s" % (user.encode(), password.encode())).decode()


# --- messages ---------------------------------------------------------------------------------

_ALPHA = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/ "


def make_message(run_id, seq, sender, rcpts, rng):
    """(msgid, wire bytes dot-stuffed with CRLF and without the final dot, sha256 of the body as
    a maildir stores it). Bodies of 200 B .. 200 KB; some lines start with '.', some are
    empty, some are long (990 bytes)."""
    msgid = "soak-%s-%d@soak.test" % (run_id, seq)
    size = rng.choice((200, 800, 2000, 5000, 5000, 12000, 40000, 200000))
    lines = []
    total = 0
    while total < size:
        k = rng.random()
        if k < 0.05:
            line = b""
        elif k < 0.12:
            line = b"." * rng.randint(1, 3) + bytes(rng.choice(_ALPHA) for _ in range(20))
        elif k < 0.15:
            line = bytes(rng.choice(_ALPHA) for _ in range(990))
        else:
            line = bytes(rng.choice(_ALPHA) for _ in range(rng.randint(1, 76)))
        lines.append(line.rstrip(b" ") or line)
        total += len(line) + 1
    body_lf = b"".join(l + b"\n" for l in lines)
    digest = hashlib.sha256(body_lf).hexdigest()
    head = ("From: <%s>\r\nTo: %s\r\nSubject: soak %d\r\nMessage-ID: <%s>\r\n"
            "X-Soak-Hash: %s\r\n" % (sender, ", ".join("<%s>" % r for r in rcpts), seq, msgid,
                                      digest)).encode()
    wire = head + b"\r\n" + b"".join((b"." + l if l.startswith(b".") else l) + b"\r\n"
                                     for l in lines)
    return msgid, wire, digest


HASH_RE = re.compile(rb"(?mi)^X-Soak-Hash: ([0-9a-f]{64})\r?$")
MSGID_RE = re.compile(rb"(?mi)^Message-ID: <([^>]+)>\r?$")


def check_copy(data):
    """A fetched copy (CRLF or LF): None if it is not a soak message, True if its body matches
    its X-Soak-Hash byte for byte, False if not."""
    data = data.replace(b"\r\n", b"\n")
    head, sep, body = data.partition(b"\n\n")
    m = HASH_RE.search(head)
    if not m:
        return None
    return bool(sep) and hashlib.sha256(body).hexdigest() == m.group(1).decode()


# --- IMAP -------------------------------------------------------------------------------------


class Imap:
    def __init__(self, c):
        self.c = c
        self.n = 0

    async def response_line(self, timeout=OP_TIMEOUT):
        """One response line with its literals inlined: (text bytes, [literal bytes])."""
        line = await self.c.line(timeout)
        lits = []
        for _ in range(1000):
            m = re.search(rb"\{(\d+)\}\r\n$", line)
            if not m:
                return line, lits
            lits.append(await self.c.exactly(int(m.group(1))))
            line = line[:m.start()] + b"LIT" + await self.c.line(timeout)
        raise Closed("too many literals")

    async def cmd(self, text, timeout=OP_TIMEOUT):
        """Send a tagged command; (status 'OK'/'NO'/'BAD', untagged [(line, lits)])."""
        self.n += 1
        tag = b"s%d" % self.n
        await self.c.send(tag + b" " + text.encode() + b"\r\n")
        untagged = []
        for _ in range(100000):
            line, lits = await self.response_line(timeout)
            if line.startswith(tag + b" "):
                return line.split(b" ", 2)[1].decode(), untagged
            untagged.append((line, lits))
        raise Closed("endless response")


async def imap_open(port, src, tls_ctx, mode):
    c = await Conn.open(port, src, tls_ctx if mode == "implicit" else None)
    im = Imap(c)
    try:
        line, _ = await im.response_line()
        if not line.startswith(b"* OK"):
            raise Refused(line[:80].decode("latin-1"))
        if mode == "starttls":
            st, _ = await im.cmd("STARTTLS")
            if st != "OK":
                raise Closed("STARTTLS %s" % st)
            await c.starttls(tls_ctx)
    except BaseException:
        c.close()
        raise
    return im


# --- POP3 -------------------------------------------------------------------------------------


class Pop3:
    def __init__(self, c):
        self.c = c

    async def cmd(self, text, multi=False, timeout=OP_TIMEOUT):
        """(ok, first line, multi-line body dot-unstuffed with CRLF)."""
        await self.c.send(text + "\r\n")
        first = await self.c.line(timeout)
        ok = first.startswith(b"+OK")
        body = []
        if ok and multi:
            for _ in range(10000000):
                line = await self.c.line(timeout)
                if line == b".\r\n":
                    break
                body.append(line[1:] if line.startswith(b".") else line)
        return ok, first.decode("latin-1").strip(), b"".join(body)


async def pop3_open(port, src, tls_ctx, mode):
    c = await Conn.open(port, src, tls_ctx if mode == "implicit" else None)
    p = Pop3(c)
    try:
        first = await c.line()
        if not first.startswith(b"+OK"):
            raise Refused(first[:80].decode("latin-1"))
        if mode == "starttls":
            ok, text, _ = await p.cmd("STLS")
            if not ok:
                raise Closed("STLS: %s" % text)
            await c.starttls(tls_ctx)
    except BaseException:
        c.close()
        raise
    return p


# --- TLS bytes --------------------------------------------------------------------------------


def client_hello(ctx):
    """The bytes of a real ClientHello from ctx (for clients that vanish mid-handshake)."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=SNI)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def rng_for(name):
    return random.Random("%s-%d-%d" % (name, os.getpid(), time.monotonic_ns()))
