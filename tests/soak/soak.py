"""moat's soak run (on demand; run it with tests/soak/run, which builds the ASan binary and raises
the open-file limit):

    /usr/bin/python3 tests/soak/soak.py --moat build-soak/moat [--minutes 10 | --quick | --smoke]
        [--sessions 2000] [--active 60] [--out DIR] [--readme]

Starts the integration rig's private Postfix + Dovecot (tests/integration/rig.py, with process
limits raised for thousands of sessions), a fault relay (faultproxy.py) in front of some of
them, and moat (ASan build) with seven listeners: smtp MX (STARTTLS), submission (STARTTLS and
implicit TLS), IMAP (STARTTLS and implicit), POP3 (STARTTLS and implicit). Then:

  1. warm-up: the full client population (load.py) with reloads and one burst, then the load
     goes away, every session must close, and moat's RSS and fd count are taken as the
     baseline (after warm-up: the allocator and ASan keep what they grew to);
  2. the run: the same load for the duration, with the fault schedule (Dovecot restarted,
     Postfix stopped and started, the relay hanging and resetting, SIGHUP every 30 s with the
     certificate alternating ECDSA / RSA, one burst above every limit);
  3. the load goes away: every session must close within its timeouts, RSS and fds must come
     back within 5% of the baseline, Postfix's queue drains, the maildirs are reconciled with
     what moat answered, moat is stopped and its log must hold no sanitizer report.

Writes report.md, soak.png (RSS, fds, sessions, errors over time), samples.jsonl and
messages.jsonl to --out; --readme also puts the table and plot into tests/soak/README.md.
Exit status 0 only when nothing failed. Needs root (the rig). Bounded: every phase has a limit.
"""

import argparse
import asyncio
import os
import random
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import rig  # noqa: E402

import load  # noqa: E402
import report  # noqa: E402

TIMEOUTS = {"tls_first_byte": 5, "handshake": 10, "preauth_idle": 20, "command": 30, "data": 30,
            "relay_idle": 60, "backend_reply": 15}
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "moat: panic", "MOAT_ASSERT")
DRIFT = 0.05


class SoakBackends(rig.Backends):
    """The rig's backends with room for thousands of sessions (one Dovecot imap/pop3 process
    per logged-in session, Postfix smtpd processes for every relayed SMTP session)."""

    def _write_dovecot(self):
        super()._write_dovecot()
        with open(self.dv_conf) as f:
            text = f.read()
        text = text.replace("mail_max_userip_connections = 200",
                            "mail_max_userip_connections = 10000")
        text += """
# --- tests/soak: thousands of sessions
default_client_limit = 20000
service imap {
  process_limit = 5000
}
service pop3 {
  process_limit = 2000
}
service imap-login {
  process_limit = 100
  service_count = 0
  process_min_avail = 2
  client_limit = 10000
}
service pop3-login {
  process_limit = 100
  service_count = 0
  process_min_avail = 1
  client_limit = 10000
}
"""
        rig.write_file(self.dv_conf, text)

    def _write_postfix(self):
        super()._write_postfix()
        main_cf = os.path.join(self.pf_conf, "main.cf")
        rig.write_file(main_cf, rig.read_text(main_cf) + "\n# tests/soak\n"
                       "default_process_limit = 400\n")

    def start_postfix(self):
        r = subprocess.run(["postfix", "-c", self.pf_conf, "start"], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("postfix start failed: %s" % r.stderr)
        rig.wait_ports([self.ports["smtp_xclient"]], 30)


def rss_kb(pid):
    for line in rig.read_text("/proc/%d/status" % pid).splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return 0


class Soak:
    def __init__(self, args):
        self.a = args
        self.work = tempfile.mkdtemp(prefix="msoak", dir="/tmp")
        os.chmod(self.work, 0o755)
        self.out = args.out or os.path.join(self.work, "out")
        os.makedirs(self.out, exist_ok=True)
        self.certs = rig.Certs(os.path.join(self.work, "certs"))
        self.backends = SoakBackends(os.path.join(self.work, "b"))
        self.samples = []
        self.faults = []
        self.failures = []
        self.phase = "start"
        self.cert_rsa = False
        self.reloads = 0
        self.moat = self.proxy = None

    # --- setup ----------------------------------------------------------------------------

    def start(self):
        self.backends.start()
        b = self.backends.ports
        names = ("mx", "submission", "submissions", "imaps", "imap", "pop3s", "pop3", "metrics",
                 "px_smtp", "px_imap", "px_pop3")
        self.ports = dict(zip(names, rig.free_ports(len(names))))
        p = self.ports
        self.control = os.path.join(self.work, "proxy.mode")
        self.events = os.path.join(self.out, "proxy-events.jsonl")
        rig.write_file(self.control, "pass\n")
        self.proxy_log = open(os.path.join(self.out, "proxy.log"), "ab")
        self.proxy = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "faultproxy.py"), self.control, self.events,
             "%d:%d:smtp" % (p["px_smtp"], b["smtp_xclient"]),
             "%d:%d:imap" % (p["px_imap"], b["imap"]),
             "%d:%d:pop3" % (p["px_pop3"], b["pop3"])],
            stdin=subprocess.DEVNULL, stdout=self.proxy_log, stderr=subprocess.STDOUT)
        rig.wait_ports([p["px_smtp"], p["px_imap"], p["px_pop3"]], 10)
        self.listeners = {"mx": (p["mx"], "smtp", "starttls"),
                          "submission": (p["submission"], "submission", "starttls"),
                          "submissions": (p["submissions"], "submission", "implicit"),
                          "imaps": (p["imaps"], "imap", "implicit"),
                          "imap": (p["imap"], "imap", "starttls"),
                          "pop3s": (p["pop3s"], "pop3", "implicit"),
                          "pop3": (p["pop3"], "pop3", "starttls")}
        self.max_sessions = self.a.sessions + 500
        # ASan without its quarantine (as tests/integration/test_admission.py for its RSS
        # check): RSS then measures moat, not the freed memory ASan holds back. With a 16 MB
        # quarantine the same run ends 8% above its baseline (README, findings).
        # SOAK_ASAN_EXTRA=":quarantine_size_mb=16" keeps one (better use-after-free checks).
        asan = os.environ.get("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        os.environ["ASAN_OPTIONS"] = asan + os.environ.get(
            "SOAK_ASAN_EXTRA", ":quarantine_size_mb=0:thread_local_quarantine_size_kb=0")
        os.environ.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        self.moat = rig.Moat(self.a.moat, self.conf(), os.path.join(self.work, "moat"),
                             ports=[p[n] for n in self.listeners] + [p["metrics"]], timeout=20)

    def conf(self):
        p, b = self.ports, self.backends.ports
        cert = self.certs.rsa if self.cert_rsa else self.certs.ecdsa
        key = self.certs.rsa_key if self.cert_rsa else self.certs.ecdsa_key
        backends = {"pf": b["smtp_xclient"], "pf_f": p["px_smtp"], "imap": b["imap"],
                    "imap_f": p["px_imap"], "pop3": b["pop3"], "pop3_f": p["px_pop3"]}
        identity = {"pf": "xclient", "pf_f": "xclient", "imap": "id", "imap_f": "id",
                    "pop3": "xclient", "pop3_f": "xclient"}
        wiring = {"mx": "pf", "submission": "pf", "submissions": "pf_f", "imaps": "imap",
                  "imap": "imap_f", "pop3s": "pop3", "pop3": "pop3_f"}
        t = TIMEOUTS
        out = ["[moat]", "hostname = mx.moat.test", "workers = 2",
               "metrics = 127.0.0.1:%d" % p["metrics"], "max_sessions = %d" % self.max_sessions,
               "shutdown_grace = 5s",
               "[tls]", "certificate = %s" % cert, "key = %s" % key,
               "[limits]", "messages_per_client = 0", "recipients_per_client = 0",
               "[timeouts]"] + ["%s = %ds" % (k, v) for k, v in t.items()
                                 if k != "relay_idle"] + [
               "[auth]", "failure_delay = 200ms", "failure_delay_max = 1s", "ban_ip = 30/1m",
               "ban_user = 30/1m", "ban_time = 1m"]
        for name, port in backends.items():
            out += ["[backend %s]" % name, "address = 127.0.0.1:%d" % port,
                    "identity = %s" % identity[name]]
        for name, (port, proto_, mode) in self.listeners.items():
            out += ["[listener %s]" % name, "protocol = %s" % proto_,
                    "listen = 127.0.0.1:%d" % port, "tls = %s" % mode,
                    "backend = %s" % wiring[name]]
            if proto_ == "smtp":
                out.append("local_domains = %s" % rig.LOCAL_DOMAIN)
            if proto_ in ("imap", "pop3"):
                out.append("relay_idle = %ds" % t["relay_idle"])
        return "\n".join(out) + "\n"

    def moat_log(self, offset=0):
        with open(self.moat.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")

    def stop(self):
        status = None
        if self.moat:
            status = self.moat.stop(timeout=30)
        if self.proxy and self.proxy.poll() is None:
            self.proxy.terminate()
            try:
                self.proxy.wait(10)
            except subprocess.TimeoutExpired:
                self.proxy.kill()
        self.backends.stop(remove=False)
        return status

    # --- sampling ---------------------------------------------------------------------------

    def metrics(self):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.ports["metrics"],
                                        timeout=10) as r:
                return r.read().decode()
        except OSError:
            return ""

    def moat_sessions(self, text=None):
        text = self.metrics() if text is None else text
        vals = re.findall(r"(?m)^moat_sessions_open\{[^}]*\} (\d+)", text)
        return sum(int(v) for v in vals) if vals else -1

    async def sampler(self, ld, every):
        loop = asyncio.get_running_loop()
        for _ in range(100000):
            text = await loop.run_in_executor(None, self.metrics)
            pid = self.moat.pid
            s = {"t": time.time(), "phase": self.phase, "rss_kb": rss_kb(pid),
                 "fds": fd_count(pid), "moat_sessions": self.moat_sessions(text),
                 "client_open": ld.open if ld else 0, "errors": ld.errors if ld else 0,
                 "acked": ld.stats["msg acked"] if ld else 0}
            self.samples.append(s)
            if not self.moat.alive():
                self.failures.append("moat exited (status %s)" % self.moat.proc.poll())
                return
            t = time.monotonic()
            await asyncio.sleep(every)
            s["lag_ms"] = round(1000 * (time.monotonic() - t - every))  # driver overload

    # --- faults -----------------------------------------------------------------------------

    def fault(self, name, t0, t1=None, **kw):
        f = dict(name=name, t0=t0, t1=t1 or t0, phase=self.phase, **kw)
        self.faults.append(f)
        print("  fault %-16s +%.0fs %s" % (name, t0 - self.t_start, kw or ""), file=sys.stderr)
        return f

    async def reload(self):
        self.cert_rsa = not self.cert_rsa
        offset = os.path.getsize(self.moat.log_path)
        rig.write_file(self.moat.conf_path, rig.allow_root_for_tests(self.conf()))
        t0 = time.time()
        self.moat.signal(signal.SIGHUP)
        for _ in range(200):
            if "event=reloaded" in self.moat_log(offset):
                self.reloads += 1
                self.fault("reload", t0, time.time(), cert="rsa" if self.cert_rsa else "ecdsa")
                return
            await asyncio.sleep(0.1)
        self.failures.append("SIGHUP at %.0f: no event=reloaded within 20 s" % t0)

    async def reloader(self, stop):
        for _ in range(100000):
            try:
                await asyncio.wait_for(stop.wait(), 30)
                return
            except asyncio.TimeoutError:
                await self.reload()

    async def blocking(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    async def burst(self, ld, name):
        t0 = time.time()
        # over max_sessions by 300 whatever the population is doing at this moment
        now = max(0, await self.blocking(self.moat_sessions))
        many = min(3000, max(300, self.max_sessions - now - 420 + 300))
        res = await ld.burst(tls_over=400, many=many, one=90)
        self.fault(name, t0, time.time(), held_refused=res)

    async def schedule(self, ld, duration):
        """The fault schedule, spread over the run; each step waits for its start time."""
        b = self.backends
        short = max(3.0, min(20.0, duration * 0.08))
        steps = [(0.12, "dovecot restart"), (0.28, "backend hangs"), (0.45, "postfix stopped"),
                 (0.62, "backend resets"), (0.80, "burst")]
        for frac, name in steps:
            await asyncio.sleep(max(0, self.t_start + frac * duration - time.time()))
            t0 = time.time()
            if name == "dovecot restart":
                await self.blocking(b.stop_dovecot)
                await self.blocking(b.start_dovecot)
                self.fault(name, t0, time.time())
            elif name == "postfix stopped":
                await self.blocking(b.stop_postfix)
                await asyncio.sleep(short)
                await self.blocking(b.start_postfix)
                self.fault(name, t0, time.time())
                self.postfix_windows.append((t0, time.time()))
            elif name in ("backend hangs", "backend resets"):
                rig.write_file(self.control, name.split()[1][:-1] + "\n")
                await asyncio.sleep(short)
                rig.write_file(self.control, "pass\n")
                await asyncio.sleep(0.5)
                self.fault(name, t0, time.time())
            elif name == "burst":
                await self.burst(ld, name)

    # --- phases -----------------------------------------------------------------------------

    async def settle(self, what, limit):
        """Wait until moat has no session open (bounded); then RSS and fds after 10 s."""
        t0 = time.time()
        left = -1
        for _ in range(int(limit) + 1):
            left = await self.blocking(self.moat_sessions)
            if left == 0:
                break
            await asyncio.sleep(1)
        took = time.time() - t0
        if left != 0:
            self.failures.append("%s: %d sessions still open %.0f s after the load went away "
                                 "(longest timeout %d s)" % (what, left, took,
                                                             max(TIMEOUTS.values())))
        # The allocator hands freed memory back to the kernel over some seconds: wait until RSS
        # holds still (within 1% over 10 s, at most 2 min), the same way before and after.
        rss, fds = [], []
        for _ in range(60):
            rss.append(rss_kb(self.moat.pid))
            fds.append(fd_count(self.moat.pid))
            last = rss[-6:]
            if len(rss) >= 6 and max(last) - min(last) <= 0.01 * max(last):
                break
            await asyncio.sleep(2)
        rss, fds = rss[-6:], fds[-6:]
        return {"drain_s": took, "left": left, "rss_kb": statistics.median(rss),
                "fds": statistics.median(fds)}

    async def phase_load(self, name, duration, run_id, seed):
        self.phase = name
        ctx = rig.client_context(self.certs)
        ld = load.Load(self.listeners, TIMEOUTS, ctx, run_id, random.Random(seed),
                       self.a.active, self.a.sessions)
        self.ld = ld
        sampler = asyncio.ensure_future(self.sampler(ld, self.a.sample))
        self.t_start = time.time()
        ld.start()
        stop = asyncio.Event()
        rel = asyncio.ensure_future(self.reloader(stop))
        sched = asyncio.ensure_future(self.schedule(ld, duration))
        await asyncio.sleep(max(0, self.t_start + duration - time.time()))
        await asyncio.wait([sched], timeout=180)
        if not sched.done():
            sched.cancel()
            self.failures.append("%s: the fault schedule did not finish in time" % name)
        elif sched.exception():
            self.failures.append("fault schedule: %r" % sched.exception())
        stop.set()
        await rel
        t_off = time.time()
        self.phase = name + " drain"
        left = await ld.drain(TIMEOUTS["relay_idle"] + load.SLACK + 40)
        if left:
            self.failures.append("%s: %d client tasks did not end in time" % (name, left))
        self.fault("load off", t_off, time.time())
        st = await self.settle(name, max(TIMEOUTS.values()) + load.SLACK)
        sampler.cancel()
        return ld, st

    async def main(self):
        a = self.a
        self.postfix_windows = []
        run_id = "%x" % int(time.time())
        ld_w, base = await self.phase_load("warm-up", a.warmup, run_id + "w", 1)
        print("== baseline after warm-up: RSS %d KB, %d fds (drained in %.0f s)"
              % (base["rss_kb"], base["fds"], base["drain_s"]), file=sys.stderr)
        ld, end = await self.phase_load("run", a.duration, run_id, 2)
        return ld_w, base, ld, end

    # --- the end ----------------------------------------------------------------------------

    def drain_queue(self, limit=180):
        subprocess.run(["postqueue", "-c", self.backends.pf_conf, "-f"], capture_output=True,
                       timeout=30)
        local = []
        for _ in range(limit):
            local = [r for r in self.backends.queue() if r.endswith("@" + rig.LOCAL_DOMAIN)]
            if not local:
                return 0
            time.sleep(1)
        return len(local)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--moat", default=os.environ.get("MOAT_BIN") or
                    os.path.join(rig.ROOT, "build-soak", "moat"))
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--quick", action="store_true", help="a 2-minute run")
    ap.add_argument("--smoke", action="store_true", help="20 s, 200 sessions")
    ap.add_argument("--sessions", type=int, default=None)
    ap.add_argument("--active", type=int, default=None)
    ap.add_argument("--warmup", type=float, default=None, help="seconds (default 180, quick 40, smoke 20)")
    ap.add_argument("--sample", type=float, default=2.0, help="seconds between samples")
    ap.add_argument("--out", default=None)
    ap.add_argument("--readme", action="store_true", help="write the report into README.md")
    a = ap.parse_args()
    a.moat = os.path.abspath(a.moat)
    a.duration = 120 if a.quick else 20 if a.smoke else a.minutes * 60
    if a.sessions is None:
        a.sessions = 200 if a.smoke else 2000
    if a.active is None:
        a.active = 20 if a.smoke else 60
    if a.warmup is None:
        a.warmup = 20 if a.smoke else 40 if a.quick else 180
    if os.geteuid() != 0:
        sys.exit("tests/soak: run as root (the rig's private Postfix and Dovecot)")
    if not os.access(a.moat, os.X_OK):
        sys.exit("tests/soak: no moat binary at %s" % a.moat)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < a.sessions * 3 + 2000:
        sys.exit("tests/soak: RLIMIT_NOFILE too low for %d sessions" % a.sessions)

    s = Soak(a)
    t_begin = time.time()
    status = None
    result = None
    try:
        s.start()
        print("== moat %s, %d sessions, %d active, warm-up %.0f s, run %.0f s, out %s"
              % (a.moat, a.sessions, a.active, a.warmup, a.duration, s.out), file=sys.stderr)
        result = asyncio.run(s.main())
        queued = s.drain_queue()
        found, foreign = report.read_maildirs(s.backends, list(load.USERS))
    finally:
        metrics_end = s.metrics() if s.moat and s.moat.alive() else ""
        status = s.stop()
    import verdict  # noqa: E402  (kept apart: the judging and writing of the report)
    ok = verdict.write(s, a, result, found, foreign, queued, status, metrics_end, t_begin)
    if not os.environ.get("MOAT_KEEP"):
        shutil.rmtree(os.path.join(s.work, "b"), ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
