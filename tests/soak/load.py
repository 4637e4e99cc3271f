"""The soak's client population (tests/soak/soak.py): idle sessions held open (IMAP IDLE, POP3
and SMTP clients that dawdle), a smaller pool of active workers (MX deliveries, submissions with
AUTH, IMAP FETCH, POP3 RETR, failed logins, clients that vanish mid-command, mid-DATA and
mid-handshake) and the one burst above every limit.

Every session is bounded by the protocol timeouts in proto.py; every loop ends when Load.stop is
set. Outcomes go to Load.stats (counters), Load.msgs (each message sent: what moat answered) and
Load.failures (what must fail the run: a corrupt copy, a wrong password accepted, a session moat
kept open past its timeout).
"""

import asyncio
import collections
import time

import proto
from proto import Closed, Refused

USERS = {"alice@example.test": "alice-secret-1", "bob@example.test": "bob-secret-2"}
RCPTS = list(USERS)
SLACK = 20.0  # seconds a silent client may wait beyond moat's timeout on this loaded machine

# Source addresses (127.0.0.1 is moat's own): ordinary clients, failed logins (they get banned),
# the burst's many addresses and its one address.
LEGIT = ["127.0.0.%d" % i for i in range(2, 251)] + ["127.0.1.%d" % i for i in range(1, 251)]
FAILERS = ["127.0.2.%d" % i for i in range(1, 251)]
BURST_MANY = ["127.0.3.%d" % i for i in range(1, 251)]
BURST_TLS = ["127.0.4.%d" % i for i in range(1, 251)]
BURST_ONE = "127.0.5.1"
BURST_RATE = "127.0.5.2"


class Load:
    """listeners: {name: (port, proto, tls mode)}; timeouts: moat's, in seconds."""

    def __init__(self, listeners, timeouts, tls_ctx, run_id, rng, active, sessions):
        self.l = listeners
        self.t = timeouts
        self.ctx = tls_ctx
        self.run_id = run_id
        self.rng = rng
        self.n_active = active
        self.n_sessions = sessions
        self.stop = asyncio.Event()
        self.stats = collections.Counter()
        self.errors = 0
        self.open = 0
        self.msgs = {}
        self.seq = 0
        self.failures = []
        self.close_delays = collections.defaultdict(list)  # kind -> [seconds]
        self.watchers = set()
        self.tasks = []

    # --- bookkeeping ----------------------------------------------------------------------

    def err(self, what, e=None):
        self.errors += 1
        self.stats["err %s %s" % (what, type(e).__name__ if e else "")] += 1

    def fail(self, text):
        if len(self.failures) < 200:
            self.failures.append("%.0f %s" % (time.time(), text))
        self.stats["FAILURE"] += 1

    def src(self):
        return self.rng.choice(LEGIT)

    async def pause(self, secs):
        """Sleep secs, or less when the load stops; True if it stopped."""
        try:
            await asyncio.wait_for(self.stop.wait(), secs)
            return True
        except asyncio.TimeoutError:
            return False

    async def session(self, what, coro):
        self.open += 1
        try:
            await coro
            self.stats["ok " + what] += 1
            return True
        except Refused as e:
            self.stats["refused " + what] += 1
            self.err(what, e)
        except (Closed, asyncio.TimeoutError) as e:
            self.err(what, e)
        finally:
            self.open -= 1
        return False

    # --- the population -------------------------------------------------------------------

    def start(self):
        s = self.n_sessions
        plan = [(self.idle_imap, int(s * 0.38)), (self.slow_imap, int(s * 0.12)),
                (self.idle_pop3, int(s * 0.10)), (self.slow_smtp, int(s * 0.32)),
                (self.active, self.n_active)]
        for fn, n in plan:
            for i in range(n):
                self.tasks.append(asyncio.ensure_future(self.loop(fn, i * 0.01)))

    async def loop(self, fn, delay):
        """One simulated client: sessions one after another until the load stops."""
        if await self.pause(delay + self.rng.uniform(0, 5)):
            return
        for _ in range(1000000):
            if self.stop.is_set():
                return
            ok = await fn()
            if await self.pause(self.rng.uniform(0.2, 2.0) if ok else self.rng.uniform(1, 6)):
                return

    async def drain(self, timeout):
        """Stop the population; wait for every task and silent watcher (bounded)."""
        self.stop.set()
        # a task that ends may start a watcher for its silent session: wait for those too
        deadline = time.monotonic() + timeout
        for _ in range(1000):
            pending = [t for t in self.tasks + list(self.watchers) if not t.done()]
            if not pending or time.monotonic() >= deadline:
                break
            await asyncio.wait(pending, timeout=deadline - time.monotonic())
        left = [t for t in self.tasks + list(self.watchers) if not t.done()]
        for t in left:
            t.cancel()
        return len(left)

    # --- idle sessions --------------------------------------------------------------------

    def pick(self, *names):
        return self.l[self.rng.choice(names)]

    async def imap_login(self, port, mode, user=None):
        user = user or self.rng.choice(RCPTS)
        im = await proto.imap_open(port, self.src(), self.ctx, mode)
        st, _ = await im.cmd('LOGIN "%s" "%s"' % (user, USERS[user]))
        if st != "OK":
            im.c.close()
            raise Closed("LOGIN %s" % st)
        return im

    async def idle_imap(self):
        port, _, mode = self.pick("imaps", "imaps", "imap")

        async def run():
            im = await self.imap_login(port, mode)
            try:
                st, _ = await im.cmd("SELECT INBOX")
                if st != "OK":
                    raise Closed("SELECT %s" % st)
                end = time.monotonic() + self.rng.uniform(60, 300)
                for _ in range(1000):
                    im.n += 1
                    tag = b"s%d" % im.n
                    await im.c.send(tag + b" IDLE\r\n")
                    line = await im.c.line()
                    if not line.startswith(b"+"):
                        raise Closed("IDLE: %r" % line[:60])
                    stopped = await self.idle_wait(im, self.rng.uniform(20, 45))
                    await im.c.send(b"DONE\r\n")
                    for _ in range(100000):
                        line, _ = await im.response_line()
                        if line.startswith(tag + b" "):
                            break
                    if stopped or time.monotonic() > end:
                        break
                await im.cmd("LOGOUT")
            finally:
                im.c.close()
        return await self.session("idle-imap", run())

    async def idle_wait(self, im, secs):
        """Read untagged IDLE updates for secs (or until the load stops); True if stopped."""
        reader = asyncio.ensure_future(self.idle_reader(im))
        stopper = asyncio.ensure_future(self.stop.wait())
        try:
            done, _ = await asyncio.wait([reader, stopper], timeout=secs,
                                         return_when=asyncio.FIRST_COMPLETED)
            if reader in done:
                reader.result()  # raises Closed
            return stopper in done
        finally:
            reader.cancel()
            stopper.cancel()
            # the next read must wait until the cancelled one has really let go of the stream
            await asyncio.gather(reader, stopper, return_exceptions=True)

    async def idle_reader(self, im):
        # A plain readline, not under asyncio.wait_for: Python 3.11's wait_for can swallow the
        # cancellation when the read completes at the same moment (a new-mail notification), and
        # this reader would then never end.
        for _ in range(1000000):
            try:
                data = await im.c.r.readline()
            except (ConnectionError, proto.ssl.SSLError, OSError) as e:
                raise Closed(str(e)) from None
            if not data.endswith(b"\n"):
                raise Closed("eof in IDLE")

    async def slow_imap(self):
        """Pre-auth IMAP that sends a NOOP now and then (within preauth_idle), then logs in."""
        port, _, mode = self.pick("imaps", "imap")

        async def run():
            im = await proto.imap_open(port, self.src(), self.ctx, mode)
            try:
                end = time.monotonic() + self.rng.uniform(30, 150)
                for _ in range(100):
                    if await self.pause(self.rng.uniform(5, self.t["preauth_idle"] * 0.6)):
                        break
                    st, _ = await im.cmd("NOOP")
                    if st != "OK":
                        raise Closed("NOOP %s" % st)
                    if time.monotonic() > end:
                        break
                user = self.rng.choice(RCPTS)
                st, _ = await im.cmd('LOGIN "%s" "%s"' % (user, USERS[user]))
                if st != "OK":
                    raise Closed("LOGIN %s" % st)
                await im.cmd("LOGOUT")
            finally:
                im.c.close()
        return await self.session("slow-imap", run())

    async def pop3_login(self, port, mode, user=None):
        user = user or self.rng.choice(RCPTS)
        p = await proto.pop3_open(port, self.src(), self.ctx, mode)
        ok, text, _ = await p.cmd("USER " + user)
        if ok:
            ok, text, _ = await p.cmd("PASS " + USERS[user])
        if not ok:
            p.c.close()
            raise Closed("login: %s" % text)
        return p

    async def idle_pop3(self):
        port, _, mode = self.pick("pop3s", "pop3s", "pop3")

        async def run():
            p = await self.pop3_login(port, mode)
            try:
                end = time.monotonic() + self.rng.uniform(40, 200)
                for _ in range(100):
                    if await self.pause(self.rng.uniform(10, self.t["relay_idle"] * 0.6)):
                        break
                    ok, text, _ = await p.cmd("NOOP")
                    if not ok:
                        raise Closed("NOOP: %s" % text)
                    if time.monotonic() > end:
                        break
                await p.cmd("QUIT")
            finally:
                p.c.close()
        return await self.session("idle-pop3", run())

    async def slow_smtp(self):
        """An SMTP client that dawdles (NOOPs within preauth_idle), some then deliver one
        message slowly (the body in pieces, pauses below the data timeout)."""
        name = self.rng.choice(("mx", "mx", "submission", "submissions"))
        port, _, mode = self.l[name]
        mode = "plain" if mode == "starttls" and self.rng.random() < 0.3 else mode
        if name != "mx" and mode == "plain":
            mode = "starttls"

        async def run():
            c = await proto.smtp_open(port, self.src(), self.ctx, mode)
            try:
                end = time.monotonic() + self.rng.uniform(20, 150)
                for _ in range(100):
                    if await self.pause(self.rng.uniform(4, self.t["preauth_idle"] * 0.6)):
                        break
                    code, text = await proto.smtp_cmd(c, "NOOP")
                    if code != 250:
                        raise Closed("NOOP: %s" % text)
                    if time.monotonic() > end:
                        break
                if name == "mx" and not self.stop.is_set() and self.rng.random() < 0.4:
                    await self.send_messages(c, name, "soak@remote.test", 1, slow=True)
                await proto.smtp_cmd(c, "QUIT")
            finally:
                c.close()
        return await self.session("slow-smtp", run())

    # --- messages -------------------------------------------------------------------------

    async def send_messages(self, c, listener, sender, count, slow=False, vanish=None):
        """count transactions on an open SMTP session. vanish: 'silent' or 'rst' mid-DATA
        (the message is registered as never finished: it must never be delivered)."""
        for _ in range(count):
            rcpts = self.rng.sample(RCPTS, self.rng.choice((1, 1, 1, 2)))
            self.seq += 1
            msgid, wire, digest = proto.make_message(self.run_id, self.seq, sender, rcpts,
                                                     self.rng)
            rec = {"msgid": msgid, "listener": listener, "rcpts": [], "state": "before_data",
                   "digest": digest, "t": time.time()}
            self.msgs[msgid] = rec
            code, text = await proto.smtp_cmd(c, "MAIL FROM:<%s>" % sender)
            if code != 250:
                rec["reply"] = text
                self.err("mail-from")
                return
            for r in rcpts:
                code, text = await proto.smtp_cmd(c, "RCPT TO:<%s>" % r)
                if code == 250:
                    rec["rcpts"].append(r)
            code, text = await proto.smtp_cmd(c, "DATA")
            if code != 354:
                rec["reply"] = text
                code, text = await proto.smtp_cmd(c, "RSET")
                if not rec["rcpts"] or code != 250:
                    self.err("data-refused")
                return
            rec["state"] = "no_dot"
            if vanish:
                await c.send(wire[:self.rng.randint(1, len(wire) - 1)])
                return await self.vanish(c, vanish, "mid-DATA", self.t["data"])
            if slow:
                k = len(wire) // 3
                for piece in (wire[:k], wire[k:2 * k]):
                    await c.send(piece)
                    if await self.pause(self.rng.uniform(1, self.t["data"] * 0.3)):
                        pass
                await c.send(wire[2 * k:])
            else:
                await c.send(wire)
            rec["state"] = "after_dot_drop"  # until a reply says otherwise
            rec["t_dot"] = time.time()
            await c.send(b".\r\n")
            code, text = await proto.smtp_reply(c)
            rec["reply"] = text
            if code == 250:
                rec["state"] = "acked"
                self.stats["msg acked"] += 1
            else:
                rec["state"] = "after_dot_reply"
                self.err("after-dot-%d" % code)
                return

    # --- active workers -------------------------------------------------------------------

    async def active(self):
        kinds = (("mx", 24), ("sub", 20), ("fetch", 14), ("retr", 10), ("badlogin", 8),
                 ("vanish_cmd", 8), ("vanish_data", 8), ("vanish_tls", 8))
        kind = self.rng.choices([k for k, _ in kinds], [w for _, w in kinds])[0]
        return await self.session(kind, getattr(self, "do_" + kind)())

    async def do_mx(self):
        mode = "starttls" if self.rng.random() < 0.85 else "plain"
        c = await proto.smtp_open(self.l["mx"][0], self.src(), self.ctx, mode)
        try:
            await self.send_messages(c, "mx", "soak@remote.test", self.rng.randint(1, 3))
            await proto.smtp_cmd(c, "QUIT")
        finally:
            c.close()

    async def smtp_auth(self, name, user, password, src=None):
        port, _, mode = self.l[name]
        c = await proto.smtp_open(port, src or self.src(), self.ctx, mode)
        if self.rng.random() < 0.5:
            code, text = await proto.smtp_cmd(c, "AUTH PLAIN " + proto.auth_plain(user, password))
        else:
            code, text = await proto.smtp_cmd(c, "AUTH LOGIN")
            if code == 334:
                code, text = await proto.smtp_cmd(c, proto.base64.b64encode(
                    user.encode()).decode())
            if code == 334:
                code, text = await proto.smtp_cmd(c, proto.base64.b64encode(
                    password.encode()).decode())
        return c, code, text

    async def do_sub(self):
        name = self.rng.choice(("submission", "submissions"))
        user = self.rng.choice(RCPTS)
        c, code, text = await self.smtp_auth(name, user, USERS[user])
        try:
            if code != 235:
                raise Closed("AUTH: %s" % text)
            await self.send_messages(c, name, user, self.rng.randint(1, 3))
            await proto.smtp_cmd(c, "QUIT")
        finally:
            c.close()

    async def do_fetch(self):
        port, _, mode = self.pick("imaps", "imap")
        im = await self.imap_login(port, mode)
        try:
            st, unt = await im.cmd("SELECT INBOX")
            if st != "OK":
                raise Closed("SELECT %s" % st)
            n = max([int(l.split()[1]) for l, _ in unt if l.endswith(b" EXISTS\r\n")] or [0])
            for _ in range(self.rng.randint(1, 3) if n else 0):
                st, unt = await im.cmd("FETCH %d BODY.PEEK[]" % self.rng.randint(1, n))
                if st != "OK":
                    raise Closed("FETCH %s" % st)
                for _, lits in unt:
                    for lit in lits:
                        self.check_copy(lit, "imap")
            await im.cmd("LOGOUT")
        finally:
            im.c.close()

    def check_copy(self, data, how):
        ok = proto.check_copy(data)
        self.stats["copies checked %s" % how] += 1
        if ok is None:
            self.fail("%s: a message that is not the soak's: %r" % (how, data[:200]))
        elif not ok:
            self.fail("%s: a copy whose body does not match its X-Soak-Hash: %r"
                      % (how, data[:300]))

    async def do_retr(self):
        port, _, mode = self.pick("pop3s", "pop3s", "pop3")
        p = await self.pop3_login(port, mode)
        try:
            ok, text, _ = await p.cmd("STAT")
            if not ok:
                raise Closed("STAT: %s" % text)
            n = int(text.split()[1])
            for _ in range(self.rng.randint(1, 2) if n else 0):
                ok, text, body = await p.cmd("RETR %d" % self.rng.randint(1, n), multi=True)
                if not ok:
                    raise Closed("RETR: %s" % text)
                self.check_copy(body, "pop3")
            await p.cmd("QUIT")
        finally:
            p.c.close()

    async def do_badlogin(self):
        """Up to three wrong logins (unknown users: bans hit only FAILERS' addresses)."""
        user = "ghost%d@example.test" % self.rng.randint(1, 5)
        src = self.rng.choice(FAILERS)
        kind = self.rng.choice(("imap", "pop3", "smtp"))
        if kind == "smtp":
            c, code, text = await self.smtp_auth("submission", user, "wrong", src)
            try:
                if code == 235:
                    self.fail("submission accepted a wrong password for %s" % user)
                self.stats["badlogin refused"] += 1
            finally:
                c.close()
            return
        port, _, mode = self.l["imaps" if kind == "imap" else "pop3s"]
        opener = proto.imap_open if kind == "imap" else proto.pop3_open
        s = await opener(port, src, self.ctx, mode)
        try:
            for _ in range(3):
                if kind == "imap":
                    st, _ = await s.cmd('LOGIN "%s" "wrong"' % user)
                    accepted = st == "OK"
                else:
                    ok, _, _ = await s.cmd("USER " + user)
                    ok, _, _ = await s.cmd("PASS wrong")
                    accepted = ok
                if accepted:
                    self.fail("%s accepted a wrong password for %s" % (kind, user))
                self.stats["badlogin refused"] += 1
        except Closed:
            self.stats["badlogin closed by moat"] += 1  # max_failures reached
        finally:
            s.c.close()

    # --- clients that vanish ----------------------------------------------------------------

    async def vanish(self, c, how, kind, timeout):
        """RST now, or go silent and check (in a watcher task) that moat closes within timeout."""
        self.stats["vanish %s %s" % (how, kind)] += 1
        if how == "rst":
            c.reset()
            return
        t0 = time.monotonic()
        task = asyncio.ensure_future(self.watch(c, kind, timeout, t0))
        self.watchers.add(task)
        task.add_done_callback(self.watchers.discard)

    async def watch(self, c, kind, timeout, t0):
        self.open += 1
        try:
            closed = await c.until_closed(timeout + SLACK)
            delay = time.monotonic() - t0
            self.close_delays[kind].append(delay)
            if not closed:
                self.fail("session %s still open %.0fs after the client went silent "
                          "(timeout %.0fs)" % (kind, delay, timeout))
        finally:
            self.open -= 1
            c.reset()

    async def do_vanish_cmd(self):
        how = self.rng.choice(("silent", "rst"))
        which = self.rng.choice(("smtp-pre", "smtp-relay", "imap-pre", "imap-relay", "pop3-pre",
                                 "pop3-relay"))
        t = self.t
        if which.startswith("smtp"):
            c = await proto.smtp_open(self.l["mx"][0], self.src(), self.ctx, "starttls")
            timeout = t["preauth_idle"]
            if which == "smtp-relay":
                code, text = await proto.smtp_cmd(c, "MAIL FROM:<soak@remote.test>")
                if code != 250:
                    c.close()
                    raise Closed("MAIL: %s" % text)
                timeout = t["command"]
            await c.send(b"RCPT TO:<alice@exa")
        elif which.startswith("imap"):
            port, _, mode = self.pick("imaps", "imap")
            if which == "imap-pre":
                im = await proto.imap_open(port, self.src(), self.ctx, mode)
                timeout = t["preauth_idle"]
                await im.c.send(b"a1 LOGIN alice")
            else:
                im = await self.imap_login(port, mode)
                timeout = t["relay_idle"]
                await im.c.send(b"a9 FETCH 1 (BOD")
            c = im.c
        else:
            port, _, mode = self.pick("pop3s", "pop3")
            if which == "pop3-pre":
                p = await proto.pop3_open(port, self.src(), self.ctx, mode)
                timeout = t["preauth_idle"]
                await p.c.send(b"USER ali")
            else:
                p = await self.pop3_login(port, mode)
                timeout = t["relay_idle"]
                await p.c.send(b"RETR")
            c = p.c
        await self.vanish(c, how, "mid-command " + which, timeout)

    async def do_vanish_data(self):
        how = self.rng.choice(("silent", "rst"))
        if self.rng.random() < 0.5:
            c = await proto.smtp_open(self.l["mx"][0], self.src(), self.ctx, "starttls")
            name, sender = "mx", "soak@remote.test"
        else:
            user = self.rng.choice(RCPTS)
            name = self.rng.choice(("submission", "submissions"))
            c, code, text = await self.smtp_auth(name, user, USERS[user])
            if code != 235:
                c.close()
                raise Closed("AUTH: %s" % text)
            sender = user
        try:
            await self.send_messages(c, name, sender, 1, vanish=how)
        except BaseException:
            c.close()
            raise

    async def do_vanish_tls(self):
        how = self.rng.choice(("silent", "rst"))
        which = self.rng.choice(("implicit-nothing", "implicit-hello", "starttls-nothing",
                                 "starttls-hello"))
        t = self.t
        if which.startswith("implicit"):
            port = self.pick("imaps", "pop3s", "submissions")[0]
            c = await proto.Conn.open(port, self.src())
        else:
            c = await proto.Conn.open(self.l["mx"][0], self.src())
            if (await proto.smtp_reply(c))[0] != 220:
                c.close()
                raise Refused("greeting")
            for cmd in ("EHLO soak.client.test", "STARTTLS"):
                code, text = await proto.smtp_cmd(c, cmd)
                if code not in (220, 250):
                    c.close()
                    raise Closed("%s: %s" % (cmd, text))
        timeout = t["tls_first_byte"]
        if which.endswith("hello"):
            hello = proto.client_hello(self.ctx)
            await c.send(hello[:self.rng.randint(5, len(hello) - 1)])
            timeout = t["handshake"]
        await self.vanish(c, how, "mid-handshake " + which, timeout)

    # --- the burst --------------------------------------------------------------------------

    async def burst(self, tls_over, many, one):
        """Connections above every limit at once: `one` short ones in a row from one address (over
        connection_rate_per_ip), then tls_over partial ClientHellos on imaps (over
        max_tls_handshakes), `many` plain SMTP connections from 250 addresses (over
        max_sessions), `one` from a single address (over max_sessions_per_ip and
        connection_rate_per_ip). Held ~5 s, then reset. Returns {what: (held, refused)}."""
        hello = proto.client_hello(self.ctx)
        out = {}

        async def conn(port, src, first):
            try:
                c = await proto.Conn.open(port, src, timeout=20)
            except Closed:
                return None
            if first:
                try:
                    await c.send(hello[:len(hello) // 2])
                except Closed:
                    return c
            return c

        async def alive(c, smtp):
            """True if moat kept it (SMTP: a 220 greeting; TLS: no close within 2 s)."""
            if c is None:
                return False
            try:
                if smtp:
                    line = await c.line(timeout=20)
                    return line.startswith(b"220")
                return not await c.until_closed(2.0)
            except Closed:
                return False

        mx, imaps = self.l["mx"][0], self.l["imaps"][0]
        # connection_rate_per_ip: short connections one after another from one more address
        rate = [0, 0]
        for _ in range(one):
            c = await conn(mx, BURST_RATE, False)
            ok = await alive(c, True)
            rate[0 if ok else 1] += 1
            if c is not None:
                c.reset()
        out["connection_rate_per_ip"] = tuple(rate)
        groups = [("per_ip", [(mx, BURST_ONE, False) for _ in range(one)], True),
                  ("max_tls_handshakes (in handshake)",
                   [(imaps, BURST_TLS[i % len(BURST_TLS)], True) for i in range(tls_over)],
                   False),
                  ("max_tls_handshakes (next)",
                   [(imaps, BURST_TLS[i % len(BURST_TLS)], False) for i in range(100)], False),
                  ("max_sessions", [(mx, BURST_MANY[i % len(BURST_MANY)], False)
                                    for i in range(many)], True)]
        conns = {}
        self.open += sum(len(g[1]) for g in groups)
        try:
            for name, specs, _ in groups:
                conns[name] = await asyncio.gather(*(conn(*sp) for sp in specs))
                await asyncio.sleep(0.5)
            for name, _, smtp in groups:
                res = await asyncio.gather(*(alive(c, smtp) for c in conns[name]))
                out[name] = (sum(res), len(res) - sum(res))
            await asyncio.sleep(3)
        finally:
            for v in conns.values():
                for c in v:
                    if c is not None:
                        c.reset()
            self.open -= sum(len(g[1]) for g in groups)
        return out
