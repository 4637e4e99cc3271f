"""moat's benchmarks: run by tests/bench/run.sh (which builds the release binaries and raises
RLIMIT_NOFILE), or directly:

    /usr/bin/python3 tests/bench/bench.py --moat build-bench/moat \
        --loadgen build-bench/moat_loadgen [--quick] [--only NAME,...]

Starts the integration rig's private Postfix + Dovecot (tests/integration/rig.py, with Dovecot's
IMAP process limits raised for thousands of sessions), starts moat in front of them and drives
it with moat_loadgen. Every step is bounded in count and in time. Prints a summary table.
Needs root (the rig's private Postfix and Dovecot).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import rig  # noqa: E402

ALICE = "alice@example.test"
SRC = "2-250"  # clients from 127.0.0.2..250, never 127.0.0.1


class BenchBackends(rig.Backends):
    """The rig's backends, with Dovecot able to hold thousands of logged-in IMAP sessions:
    more imap and login processes, no per-user+IP cap in the way. With tls_certs (rig.Certs),
    Dovecot also serves implicit TLS itself on ports["imaps"] (the ECDSA certificate), for
    comparisons on equal terms (tuning.py's NOOP latency)."""

    def __init__(self, directory=None, tls_certs=None):
        super().__init__(directory)
        self.tls_certs = tls_certs
        if tls_certs is not None:
            taken = set(self.ports.values())
            self.ports["imaps"] = next(p for p in rig.free_ports(len(taken) + 1) if p not in taken)

    def _write_dovecot(self):
        super()._write_dovecot()
        with open(self.dv_conf) as f:
            text = f.read()
        if self.tls_certs is not None:
            text = text.replace("ssl = no\n", "ssl = yes\nssl_cert = <%s\nssl_key = <%s\n" % (
                self.tls_certs.ecdsa, self.tls_certs.ecdsa_key), 1)
            text = text.replace("  inet_listener imaps {\n    port = 0\n",
                                "  inet_listener imaps {\n    port = %d\n    ssl = yes\n"
                                % self.ports["imaps"], 1)
        # Dovecot keeps the first value of a repeated setting: replace the rig's cap.
        text = text.replace("mail_max_userip_connections = 200",
                            "mail_max_userip_connections = 10000")
        with open(self.dv_conf, "w") as f:
            f.write(text + """
# --- tests/bench: room for thousands of idle IMAP sessions (one imap process each)
default_client_limit = 20000
service imap {
  process_limit = 5000
}
# High-performance login mode: each imap-login process serves many clients, so thousands of
# pre-auth connections (HAProxy relays them straight to Dovecot) cost no fork each.
service imap-login {
  process_limit = 400
  service_count = 0
  process_min_avail = 2
  client_limit = 10000
}
""")
        past = time.time() - 10
        os.utime(self.dv_conf, (past, past))


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_secs(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def big_message(backends, mb):
    """Replace alice's INBOX with one message of about mb MB; returns its size."""
    md = backends.maildir(ALICE)
    for sub in ("new", "cur"):
        d = os.path.join(md, sub)
        for name in os.listdir(d):
            os.unlink(os.path.join(d, name))
    path = os.path.join(md, "new", "1700000000.bench.big")
    line = ("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/0123456789ab"
            "\r\n").encode()
    n = mb * 1024 * 1024 // len(line)
    with open(path, "wb") as f:
        f.write(b"From: bench@sender.test\r\nTo: %s\r\nSubject: big\r\n\r\n" % ALICE.encode())
        for _ in range(n // 1024):
            f.write(line * 1024)
    os.chown(path, backends.uid, backends.gid)
    return os.path.getsize(path)


def kv(line):
    return dict(p.split("=", 1) for p in line.split() if "=" in p)


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = tempfile.mkdtemp(prefix="mb", dir="/tmp")
        os.chmod(self.work, 0o755)
        self.certs = rig.Certs(os.path.join(self.work, "certs"))
        self.backends = BenchBackends(os.path.join(self.work, "b"))
        self.moats = []
        self.results = []  # (benchmark, value, unit, note)

    # --- moat ------------------------------------------------------------------------

    def start_moat(self, cert="ecdsa"):
        ports = dict(zip(("imaps", "mx"), rig.free_ports(2)))
        b = self.backends.ports
        conf = rig.moat_conf(
            self.certs,
            backends={"dovecot": {"address": "127.0.0.1:%d" % b["imap"], "identity": "id"},
                      "postfix": {"address": "127.0.0.1:%d" % b["smtp_xclient"],
                                  "identity": "xclient"}},
            listeners={"imaps": {"protocol": "imap", "listen": "127.0.0.1:%d" % ports["imaps"],
                                 "tls": "implicit", "backend": "dovecot"},
                       "mx": {"protocol": "smtp", "listen": "127.0.0.1:%d" % ports["mx"],
                              "tls": "starttls", "backend": "postfix",
                              "local_domains": rig.LOCAL_DOMAIN}},
            extra="[limits]\nmax_sessions_per_ip = 0\nconnection_rate_per_ip = 0\n"
                  "messages_per_client = 0\nrecipients_per_client = 0\n"
                  "[timeouts]\npreauth_idle = 10m\npreauth_total = 30m\n")
        conf = conf.replace("[moat]\n", "[moat]\nmax_sessions = 20000\n", 1)
        if cert == "rsa":
            conf = conf.replace("certificate = %s\nkey = %s\n" % (self.certs.ecdsa,
                                                                 self.certs.ecdsa_key),
                                "certificate = %s\nkey = %s\n" % (self.certs.rsa,
                                                                 self.certs.rsa_key))
        m = rig.Moat(self.args.moat, conf, os.path.join(self.work, "moat%d" % len(self.moats)),
                     ports=list(ports.values()))
        m.ports = ports
        self.moats.append(m)
        time.sleep(0.3)
        return m

    def loadgen(self, mode, *opts, timeout=180):
        cmd = [self.args.loadgen, mode, "-s", SRC] + [str(o) for o in opts]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if r.stderr.strip():
            print("  loadgen: " + r.stderr.strip().replace("\n", "\n  loadgen: "),
                  file=sys.stderr)
        line = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
        print("  " + line, file=sys.stderr)
        return kv(line)

    def add(self, name, value, unit, note=""):
        self.results.append((name, value, unit, note))
        print("  => %s: %s %s %s" % (name, value, unit, note), file=sys.stderr)

    # --- (1) TLS handshakes per second ----------------------------------------------------

    def bench_handshake(self):
        dur = 5 if self.args.quick else 10
        for cert in ("ecdsa", "rsa"):
            m = self.start_moat(cert)
            for label, extra in (("TLS 1.3", []),
                                 ("TLS 1.2", ["-L", "ECDHE-ECDSA-AES128-GCM-SHA256:"
                                                    "ECDHE-RSA-AES128-GCM-SHA256"])):
                print("== handshakes, %s cert, %s" % (cert, label), file=sys.stderr)
                c0 = cpu_secs(m.pid)
                r = self.loadgen("handshake", "-p", m.ports["imaps"], "-t", "-c", 32,
                                 "-d", dur, "-T", dur + 30, *extra)
                cpu = cpu_secs(m.pid) - c0
                ok = int(r.get("ok", 0))
                secs = float(r.get("secs", 1))
                self.add("handshakes/s, %s, %s (%s)" % (cert.upper(), label,
                                                        r.get("cipher", "?")),
                         r.get("rate", "?"), "/s",
                         "moat CPU %.0f%%, %.0f per moat CPU-second; fail=%s; latency p50 %s ms, "
                         "p99 %s ms"
                         % (100 * cpu / secs, ok / cpu if cpu else 0, r.get("fail"),
                            r.get("lat_p50_ms"), r.get("lat_p99_ms")))
            m.stop()

    # --- (2) memory per session -------------------------------------------------------------

    def hold(self, m, n, opts, what):
        """Hold n sessions; returns (rss_before, rss_after, ok)."""
        time.sleep(0.5)
        before = rss_kb(m.pid)
        cmd = [self.args.loadgen, "hold", "-s", SRC, "-n", str(n), "-c", "64",
               "-T", "300"] + [str(o) for o in opts]
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        try:
            line = p.stdout.readline().strip()  # bounded by the loadgen's own -T
            print("  %s: %s" % (what, line), file=sys.stderr)
            time.sleep(1.0)
            after = rss_kb(m.pid)
            ok = int(kv(line).get("ok", 0))
        finally:
            p.stdin.close()
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
            err = p.stderr.read().strip()
            if err:
                print("  loadgen: " + err.replace("\n", "\n  loadgen: "), file=sys.stderr)
        return before, after, ok

    def bench_memory(self):
        sizes = (300, 1000) if self.args.quick else (1000, 3000)
        cases = (
            ("IMAP, implicit TLS, logged in (relay)", "imaps",
             ["-t", "-u", ALICE, "-w", rig.USERS[ALICE]]),
            ("IMAP, implicit TLS, pre-auth (greeted)", "imaps", ["-t"]),
            ("SMTP, plaintext, pre-auth (after EHLO)", "mx", ["-e"]),
        )
        for what, listener, opts in cases:
            for n in sizes:
                print("== memory: %d x %s" % (n, what), file=sys.stderr)
                m = self.start_moat()  # a fresh process for each: malloc keeps freed memory
                before, after, ok = self.hold(m, n, ["-p", m.ports[listener]] + opts, what)
                per = (after - before) / ok if ok else 0
                self.add("KB per session, %s, N=%d" % (what, n), "%.1f" % per, "KB",
                         "VmRSS %d -> %d KB, %d/%d sessions up" % (before, after, ok, n))
                m.stop()

    # --- (3) relay throughput ---------------------------------------------------------------

    def big_message(self, mb):
        return big_message(self.backends, mb)

    def bench_throughput(self):
        mb = 32 if self.args.quick else 100
        reps = 3
        size = self.big_message(mb)
        print("== throughput: FETCH of a %.0f MB message, %d times" % (size / 1e6, reps),
              file=sys.stderr)
        login = ["-u", ALICE, "-w", rig.USERS[ALICE], "-n", reps, "-T", 300]
        # warm the page cache and Dovecot's index
        self.loadgen("imap-fetch", "-p", self.backends.ports["imap"], *login)
        r = self.loadgen("imap-fetch", "-p", self.backends.ports["imap"], *login)
        self.add("IMAP FETCH, Dovecot directly (plaintext)", r.get("mb_per_s"), "MB/s",
                 "%s bytes" % r.get("bytes"))
        m = self.start_moat()
        for label, suites in (("TLS_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256"),
                              ("TLS_CHACHA20_POLY1305_SHA256", "TLS_CHACHA20_POLY1305_SHA256")):
            c0 = cpu_secs(m.pid)
            r = self.loadgen("imap-fetch", "-p", m.ports["imaps"], "-t", "-C", suites, *login)
            cpu = cpu_secs(m.pid) - c0
            self.add("IMAP FETCH through moat (%s)" % label, r.get("mb_per_s"), "MB/s",
                     "moat CPU %.1f s for %s bytes" % (cpu, r.get("bytes")))
        m.stop()

    # --- (4) SMTP messages per second ---------------------------------------------------------

    def bench_smtp(self):
        total = 1000 if self.args.quick else 3000
        common = ["-n", total, "-m", 50, "-c", 10, "-T", 300]
        print("== smtp: %d messages, 50 per connection, 10 connections at once" % total,
              file=sys.stderr)
        r = self.loadgen("smtp-send", "-p", self.backends.ports["smtp_plain"], *common)
        self.add("SMTP messages/s, Postfix directly", r.get("rate"), "/s",
                 "%s messages, conns_fail=%s" % (r.get("msgs"), r.get("conns_fail")))
        m = self.start_moat()
        c0 = cpu_secs(m.pid)
        r = self.loadgen("smtp-send", "-p", m.ports["mx"], *common)
        cpu = cpu_secs(m.pid) - c0
        self.add("SMTP messages/s through moat (MX, plaintext, XCLIENT)", r.get("rate"), "/s",
                 "%s messages, conns_fail=%s, moat CPU %.1f s" % (r.get("msgs"),
                                                                 r.get("conns_fail"), cpu))
        m.stop()
        self.backends.cleanup_maildirs()

    # --- driver -------------------------------------------------------------------------------

    def run(self):
        only = self.args.only.split(",") if self.args.only else None
        self.backends.start()
        for name in ("handshake", "memory", "throughput", "smtp"):
            if only and name not in only:
                continue
            getattr(self, "bench_" + name)()
        return self.results

    def close(self):
        for m in self.moats:
            m.stop()
        self.backends.stop(remove=False)
        if not os.environ.get("MOAT_KEEP"):
            shutil.rmtree(self.work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moat", required=True)
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--quick", action="store_true", help="smaller counts, shorter runs")
    ap.add_argument("--only", help="comma list of: handshake,memory,throughput,smtp")
    args = ap.parse_args()
    args.moat, args.loadgen = os.path.abspath(args.moat), os.path.abspath(args.loadgen)
    if os.geteuid() != 0:
        print("bench.py: run as root (the rig's private Postfix and Dovecot)", file=sys.stderr)
        return 1
    b = Bench(args)
    try:
        results = b.run()
    finally:
        b.close()
    print("\nmoat benchmarks, %s, %d CPUs, %s" % (time.strftime("%Y-%m-%d"), os.cpu_count(),
                                                 os.path.basename(args.moat)))
    print("| benchmark | result | unit | notes |")
    print("|---|---:|---|---|")
    for name, value, unit, note in results:
        print("| %s | %s | %s | %s |" % (name, value, unit, note))
    return 0


if __name__ == "__main__":
    sys.exit(main())
