"""A TCP relay between moat and a real backend that can turn faulty (run by tests/soak/soak.py
as its own process, so its CPU is not the driver's):

    faultproxy.py CONTROL EVENTS LISTEN_PORT:TARGET_PORT:KIND ...

CONTROL is a file holding the mode, re-read every 200 ms:
    pass   relay both ways
    hang   new connections are accepted and never answered (no backend connection at all)
    reset  every backend reply after the greeting is cut: half of it goes to moat, then a RST

EVENTS gets one JSON object per line. For KIND smtp the relay also watches the plaintext
moat <-> Postfix dialogue and logs, for each message whose final dot it relayed, the Message-ID
and the backend's reply code (or "cut" when it reset the reply): the soak's oracle for what
Postfix told moat, to compare with what moat told the client.
Bounded: runs until SIGTERM; every connection ends when either side closes.
"""

import asyncio
import json
import re
import signal
import socket
import struct
import sys
import time

MSGID = re.compile(rb"(?i)^Message-ID:\s*<([^>]+)>")


class Proxy:
    def __init__(self, control, events):
        self.control = control
        self.mode = "pass"
        self.ev = open(events, "a", buffering=1)
        self.counts = {}

    def event(self, **kw):
        kw["t"] = round(time.time(), 3)
        self.ev.write(json.dumps(kw) + "\n")

    async def watch_control(self):
        while True:
            try:
                with open(self.control) as f:
                    mode = f.read().strip() or "pass"
            except OSError:
                mode = "pass"
            if mode != self.mode:
                self.event(mode=mode)
                self.mode = mode
            await asyncio.sleep(0.2)

    async def handle(self, reader, writer, target, kind):
        if self.mode == "hang":
            self.event(hang=kind)
            try:
                while await reader.read(65536):
                    pass
            except (ConnectionError, OSError):
                pass
            writer.close()
            return
        try:
            br, bw = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", target), 5)
        except (OSError, asyncio.TimeoutError):
            writer.close()
            return
        state = {"dots": [], "in_data": False, "msgid": None, "cbuf": b"", "bbuf": b"",
                 "chunks": 0}
        up = asyncio.ensure_future(self.pump_up(reader, bw, kind, state))
        down = asyncio.ensure_future(self.pump_down(br, writer, kind, state))
        await asyncio.wait([up, down], return_when=asyncio.FIRST_COMPLETED)
        for t in (up, down):
            t.cancel()
        for w in (writer, bw):
            try:
                w.close()
            except (OSError, RuntimeError):
                pass

    async def pump_up(self, reader, bw, kind, st):
        """moat -> backend; for SMTP, note each relayed final dot and its Message-ID."""
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    bw.write_eof()
                    await asyncio.sleep(3600)
                    return
                if kind == "smtp":
                    self.parse_up(st, data)
                bw.write(data)
                await bw.drain()
        except (ConnectionError, OSError):
            return

    def parse_up(self, st, data):
        buf = st["cbuf"] + data
        lines = buf.split(b"\r\n")
        st["cbuf"] = lines.pop()
        for line in lines:
            if st["in_data"]:
                if line == b".":
                    st["in_data"] = False
                    st["dots"].append(st["msgid"] or "?")
                    st["msgid"] = None
                elif st["msgid"] is None:
                    m = MSGID.match(line)
                    if m:
                        st["msgid"] = m.group(1).decode("latin-1")
            elif line.upper() == b"DATA":
                st["in_data"] = True  # moat sends the content only after the 354

    async def pump_down(self, br, writer, kind, st):
        """backend -> moat; in reset mode cut every reply after the first (the greeting)."""
        try:
            while True:
                data = await br.read(65536)
                if not data:
                    writer.write_eof()
                    await asyncio.sleep(3600)
                    return
                st["chunks"] += 1
                if self.mode == "reset" and st["chunks"] > 1:
                    writer.write(data[:max(1, len(data) // 2)])
                    await writer.drain()
                    if kind == "smtp" and st["dots"] and not st["in_data"]:
                        for m in st["dots"]:
                            self.event(msgid=m, code="cut", partial=data[:40].decode("latin-1"))
                        st["dots"] = []
                    self.event(reset=kind)
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    return
                if kind == "smtp":
                    self.parse_down(st, data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            return

    def parse_down(self, st, data):
        buf = st["bbuf"] + data
        lines = buf.split(b"\r\n")
        st["bbuf"] = lines.pop()
        for line in lines:
            if st["dots"] and len(line) >= 4 and line[3:4] == b" " and line[:3].isdigit():
                self.event(msgid=st["dots"].pop(0), code=int(line[:3]))


async def main(argv):
    p = Proxy(argv[1], argv[2])
    servers = []
    for spec in argv[3:]:
        lport, tport, kind = spec.split(":")
        srv = await asyncio.start_server(
            lambda r, w, t=int(tport), k=kind: p.handle(r, w, t, k), "127.0.0.1", int(lport),
            backlog=1024)
        servers.append(srv)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    watcher = asyncio.ensure_future(p.watch_control())
    p.event(started=len(servers))
    await stop.wait()
    watcher.cancel()
    for s in servers:
        s.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv))
