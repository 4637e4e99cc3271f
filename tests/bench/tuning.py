"""moat's per-session costs, for comparing builds (README.md, "Crypto and memory per session" and
"Second pass"): the public-key floor of a handshake (moat_cryptofloor), CPU per TLS handshake
(full ECDSA and RSA, resumed), CPU per SMTP session with and without STARTTLS, the NOOP round
trip through moat against Dovecot's own TLS, socket calls per session, memory per idle session,
CPU per GB relayed. On demand only, as root, like bench.py (whose rig and helpers it reuses):

    /usr/bin/python3 tests/bench/tuning.py --moat build-bench/moat \
        --loadgen build-bench/moat_loadgen \
        [--only floor,handshake,starttls,noop,syscalls,memory,bulk] [-n N]

Handshakes come from moat_loadgen or Python's ssl module (the client's cost is not measured:
moat's CPU time is read from /proc before and after). Every loop is bounded in count and time.
"""

import argparse
import os
import re
import socket
import ssl
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402
from bench import ALICE, cpu_secs, rig  # noqa: E402


class Tuning(bench.Bench):
    def __init__(self, args):
        super().__init__(args)
        # Dovecot with its own TLS too: the NOOP latency compares moat with it on equal terms
        self.backends = bench.BenchBackends(os.path.join(self.work, "b"), tls_certs=self.certs)

    def perf_start(self, m, label):
        """--perf: record moat's profile for this case into PERF.label."""
        if not self.args.perf:
            return None
        p = subprocess.Popen(["perf", "record", "-q", "-g", "-o",
                              "%s.%s" % (self.args.perf, label.replace(" ", "_")),
                              "-p", str(m.pid)], stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        return p

    @staticmethod
    def perf_stop(p):
        if p is not None:
            p.send_signal(2)
            p.wait(60)

    def client_ctx(self, tls12=False):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if tls12:
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            ctx.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256")
        else:
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        return ctx

    def session(self, port, ctx, src, session=None, logout=True):
        """One IMAP-over-TLS session: handshake, greeting, LOGOUT. Returns the SSL session."""
        raw = socket.create_connection(("127.0.0.1", port), timeout=10,
                                       source_address=(src, 0))
        s = ctx.wrap_socket(raw, session=session)
        try:
            greeting = s.recv(4096)
            assert greeting.startswith(b"* OK"), greeting
            if logout:
                s.sendall(b"a LOGOUT\r\n")
                deadline = time.time() + 10
                while time.time() < deadline and s.recv(4096):
                    pass
            return s.session, s.session_reused
        finally:
            s.close()

    def handshakes(self, m, n, tls12=False, resume=False):
        ctx = self.client_ctx(tls12)
        saved = None
        if resume:
            saved, _ = self.session(m.ports["imaps"], ctx, "127.0.0.3")
        reused = 0
        c0 = cpu_secs(m.pid)
        for i in range(n):
            _, r = self.session(m.ports["imaps"], ctx, "127.0.0.%d" % (2 + i % 200),
                                session=saved)
            reused += r
        cpu = cpu_secs(m.pid) - c0
        return cpu / n * 1000, reused

    def bench_handshake(self):
        """moat's CPU per handshake under load: moat_loadgen, 32 connections at once for -d
        seconds, each a handshake, moat's greeting, close (so the session's setup, log line
        and teardown count too)."""
        dur = self.args.duration
        tls12 = ["-L", "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"]
        for cert in ("ecdsa", "rsa"):
            m = self.start_moat(cert)
            self.loadgen("handshake", "-p", m.ports["imaps"], "-t", "-c", 8, "-d", 1, "-T", 30)
            cases = [("TLS 1.3 full", []), ("TLS 1.3 resumed", ["-R"]), ("TLS 1.2 full", tls12)]
            if cert == "rsa":
                cases = cases[:1]
            if cert == "ecdsa":
                # the same session without TLS (SMTP: connect, 220 greeting, close): what the
                # rows above cost beyond the handshake
                c0 = cpu_secs(m.pid)
                r = self.loadgen("handshake", "-p", m.ports["mx"], "-c", 32, "-d", dur,
                                 "-T", dur + 30)
                cpu = cpu_secs(m.pid) - c0
                ok = int(r.get("ok", 0))
                self.add("CPU per session without TLS (SMTP greeting, close)",
                         "%.3f" % (1000 * cpu / ok if ok else 0), "ms",
                         "%d sessions (%s failed) in %s s, moat CPU %.2f s"
                         % (ok, r.get("fail"), r.get("secs"), cpu))
            for label, extra in cases:
                perf = self.perf_start(m, "%s.%s" % (cert, label))
                c0 = cpu_secs(m.pid)
                r = self.loadgen("handshake", "-p", m.ports["imaps"], "-t", "-c", 32, "-d", dur,
                                 "-T", dur + 30, *extra)
                cpu = cpu_secs(m.pid) - c0
                self.perf_stop(perf)
                ok = int(r.get("ok", 0))
                self.add("CPU per handshake, %s, %s" % (cert.upper(), label),
                         "%.3f" % (1000 * cpu / ok if ok else 0), "ms",
                         "%d handshakes (%s resumed, %s failed) in %s s, %s, moat CPU %.2f s"
                         % (ok, r.get("resumed"), r.get("fail"), r.get("secs"), r.get("cipher"),
                            cpu))
            m.stop()

    def bench_floor(self):
        """The public-key work of one TLS 1.3 server handshake on the wolfSSL moat links
        (moat_cryptofloor, next to moat_loadgen), and OpenSSL's figures on the same CPU for
        reference: what a handshake cannot cost less than."""
        floor = os.path.join(os.path.dirname(self.args.loadgen), "moat_cryptofloor")
        keys = []
        for name, pem in (("rsa", self.certs.rsa_key), ("ecdsa", self.certs.ecdsa_key)):
            der = os.path.join(self.work, "%s.der" % name)
            subprocess.run(["openssl", "pkey", "-in", pem, "-outform", "DER", "-out", der],
                           check=True)
            keys.append(der)
        out = subprocess.run([floor] + keys + ["3"], capture_output=True, text=True,
                             check=True, timeout=120).stdout
        got = dict(line.split("=", 1) for line in out.split())
        ref = subprocess.run(["openssl", "speed", "-seconds", "3", "rsa2048", "ecdsap256",
                              "ecdhx25519"], capture_output=True, text=True, timeout=120).stdout
        rsa = re.search(r"^rsa 2048 bits\s+([0-9.]+)s", ref, re.M)
        p256 = re.search(r"ecdsa \(nistp256\)\s+([0-9.]+)s", ref)
        x = re.search(r"ecdh \(X25519\)\s+([0-9.]+)s", ref)
        for key, what, o in (("rsa2048_pss_sign", "RSA-2048 signature (CertificateVerify)", rsa),
                             ("p256_sign", "ECDSA P-256 signature (CertificateVerify)", p256),
                             ("x25519", "X25519 key pair + shared secret (key share)", x)):
            note = "moat's wolfSSL, CPU time per operation"
            if o:
                per = float(o.group(1)) * 1e6 * (2 if key == "x25519" else 1)
                note += "; OpenSSL %s on this CPU: %.0f µs" % (
                    ssl.OPENSSL_VERSION.split()[1], per)
            self.add("Crypto floor: %s" % what, "%.3f" % (float(got[key]) / 1000), "ms", note)

    def bench_starttls(self):
        """CPU per SMTP STARTTLS session (EHLO, STARTTLS, handshake, EHLO, QUIT) against the same
        dialogue without STARTTLS (EHLO, EHLO, QUIT): the difference is what STARTTLS costs."""
        dur = self.args.duration
        m = self.start_moat()
        self.loadgen("starttls", "-p", m.ports["mx"], "-c", 8, "-n", 200, "-T", 60)  # warm up
        for label, extra in (("EHLO, EHLO, QUIT (no TLS)", ["-P"]),
                             ("EHLO, STARTTLS, EHLO, QUIT (ECDSA, TLS 1.3)", [])):
            n = 400 * dur
            perf = self.perf_start(m, "starttls.%s" % ("plain" if extra else "tls"))
            c0 = cpu_secs(m.pid)
            r = self.loadgen("starttls", "-p", m.ports["mx"], "-c", 32, "-n", n,
                             "-T", dur + 60, *extra)
            cpu = cpu_secs(m.pid) - c0
            self.perf_stop(perf)
            ok = int(r.get("ok", 0))
            self.add("CPU per SMTP session, %s" % label,
                     "%.3f" % (1000 * cpu / ok if ok else 0), "ms",
                     "%d sessions (%s failed), moat CPU %.2f s" % (ok, r.get("fail"), cpu))
        m.stop()

    def noop_rtts(self, sock, n):
        """n sequential IMAP NOOPs on a logged-in connection: round trips in microseconds."""
        out = []
        for i in range(n):
            tag = b"n%d" % i
            t0 = time.perf_counter_ns()
            sock.sendall(tag + b" NOOP\r\n")
            buf = b""
            while not buf.endswith(b"\r\n") or (tag + b" ") not in buf:
                chunk = sock.recv(4096)
                if not chunk:
                    raise RuntimeError("connection closed during NOOP")
                buf += chunk
            out.append((time.perf_counter_ns() - t0) / 1000)
            if not buf.split(tag + b" ", 1)[1].startswith(b"OK"):
                raise RuntimeError("NOOP: %r" % buf)
        return out

    def imap_login(self, port, tls):
        raw = socket.create_connection(("127.0.0.1", port), timeout=10,
                                       source_address=("127.0.0.4", 0))
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s = self.client_ctx().wrap_socket(raw) if tls else raw
        buf = s.recv(4096)
        assert buf.startswith(b"* OK"), buf
        s.sendall(b'l LOGIN "%s" "%s"\r\n' % (ALICE.encode(), rig.USERS[ALICE].encode()))
        deadline = time.time() + 10
        while b"l OK" not in buf and b"l NO" not in buf and time.time() < deadline:
            buf += s.recv(4096)
        assert b"l OK" in buf, buf
        return s

    def bench_noop(self):
        """The latency a NOOP round trip gains through moat. One logged-in IMAP session each:
        through moat (implicit TLS, moat relays to Dovecot in plaintext), straight to Dovecot
        over its own implicit TLS (the same certificate: the client's TLS work is the same as
        through moat) and straight to Dovecot in plaintext; NOOPs in interleaved batches."""
        if "imaps" not in self.backends.ports:
            raise RuntimeError("noop: the backends were started without Dovecot's own TLS")
        m = self.start_moat()
        conns = {"moat": self.imap_login(m.ports["imaps"], True),
                 "dovecot_tls": self.imap_login(self.backends.ports["imaps"], True),
                 "dovecot_plain": self.imap_login(self.backends.ports["imap"], False)}
        rtts = {k: [] for k in conns}
        per = max(50, self.args.noops // 20)
        deadline = time.time() + 300
        for b in range(20):
            if time.time() > deadline:
                break
            for k in (list(conns) if b % 2 == 0 else list(reversed(list(conns)))):
                rtts[k] += self.noop_rtts(conns[k], per)
        for c in conns.values():
            c.close()
        m.stop()

        def pct(xs, q):
            xs = sorted(xs)
            return xs[min(len(xs) - 1, int(q * len(xs)))]

        for q, label in ((0.5, "p50"), (0.9, "p90"), (0.99, "p99")):
            t, d, p = (pct(rtts[k], q) for k in ("moat", "dovecot_tls", "dovecot_plain"))
            self.add("NOOP round trip %s: through moat / Dovecot's own TLS / Dovecot plaintext"
                     % label, "%.1f / %.1f / %.1f" % (t, d, p), "µs",
                     "moat adds %.1f µs over Dovecot direct (both TLS); %d NOOPs each, "
                     "interleaved batches of %d" % (t - d, len(rtts["moat"]), per))

    def bench_syscalls(self):
        n = min(self.args.n, 100)
        m = self.start_moat()
        ctx = self.client_ctx()
        self.handshakes(m, 5)
        out = os.path.join(self.work, "strace.out")
        tracer = subprocess.Popen(["strace", "-f", "-c", "-o", out, "-e",
                                   "trace=recvfrom,read,recvmsg,sendto,sendmsg,write,openat",
                                   "-p", str(m.pid)], stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        for i in range(n):
            self.session(m.ports["imaps"], ctx, "127.0.0.%d" % (2 + i % 200))
        time.sleep(0.5)
        tracer.terminate()
        tracer.wait(30)
        counts = {}
        with open(out) as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 5 and re.fullmatch(r"[0-9.]+", fields[0]):
                    name = fields[-1]
                    calls = int(fields[3])
                    errors = int(fields[4]) if len(fields) == 6 else 0
                    counts[name] = (calls, errors)
        for name in ("recvfrom", "read", "sendto", "write", "openat"):
            calls, errors = counts.get(name, (0, 0))
            self.add("%s per TLS session" % name, "%.1f" % (calls / n), "calls",
                     "%.1f of them failed (EAGAIN); %d sessions: handshake, greeting, LOGOUT"
                     % (errors / n, n))
        m.stop()

    def hold(self, m, n, opts, what):
        """bench.Bench.hold after a warm-up: a second of handshakes from every source address,
        so the admission tables (one entry per client address, a fixed cost) and the code
        paths are in place before the 'before' RSS, as in a server that has run a while."""
        self.loadgen("handshake", "-p", m.ports["imaps"], "-t", "-c", 8, "-d", 1, "-T", 30)
        return super().hold(m, n, opts, what)

    def bench_memory(self):
        n = self.args.sessions
        cases = (
            ("IMAP, implicit TLS, logged in (relay)", "imaps",
             ["-t", "-u", ALICE, "-w", rig.USERS[ALICE]]),
            ("IMAP, implicit TLS, pre-auth (greeted)", "imaps", ["-t"]),
            ("SMTP, plaintext, pre-auth (after EHLO)", "mx", ["-e"]),
        )
        for what, listener, opts in cases:
            m = self.start_moat()
            before, after, ok = self.hold(m, n, ["-p", m.ports[listener]] + opts, what)
            per = (after - before) / ok if ok else 0
            self.add("KB per idle session, %s, N=%d" % (what, n), "%.1f" % per, "KB",
                     "VmRSS %d -> %d KB, %d/%d sessions up" % (before, after, ok, n))
            m.stop()

    def bench_bulk(self):
        mb, reps = 10, 100  # 1 GB: about a second of moat CPU, runs ±5% instead of ±20%
        size = self.big_message(mb)
        login = ["-u", ALICE, "-w", rig.USERS[ALICE], "-n", reps, "-T", 300]
        self.loadgen("imap-fetch", "-p", self.backends.ports["imap"], *login)  # warm caches
        m = self.start_moat()
        for suite in ("TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256"):
            perf = self.perf_start(m, suite)
            c0 = cpu_secs(m.pid)
            r = self.loadgen("imap-fetch", "-p", m.ports["imaps"], "-t", "-C", suite, *login)
            cpu = cpu_secs(m.pid) - c0
            self.perf_stop(perf)
            gb = int(r.get("bytes", 0)) / 1e9
            self.add("CPU per GB relayed, IMAP FETCH of %.0f MB x%d, %s" % (size / 1e6, reps,
                                                                         suite),
                     "%.2f" % (cpu / gb if gb else 0), "CPU-s/GB",
                     "%s MB/s, moat CPU %.2f s" % (r.get("mb_per_s"), cpu))
        m.stop()

    def run(self):
        only = self.args.only.split(",") if self.args.only else None
        self.backends.start()
        for name in ("floor", "handshake", "starttls", "noop", "syscalls", "memory", "bulk"):
            if only and name not in only:
                continue
            getattr(self, "bench_" + name)()
        return self.results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moat", required=True)
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--only", help="comma list of: floor,handshake,starttls,noop,syscalls,"
                    "memory,bulk")
    ap.add_argument("--noops", type=int, default=4000, help="NOOPs per path (noop)")
    ap.add_argument("-n", type=int, default=100, help="sessions traced for the syscall counts")
    ap.add_argument("-d", dest="duration", type=int, default=8, help="seconds per handshake case")
    ap.add_argument("--perf", help="perf record moat during each handshake case into PERF.*")
    ap.add_argument("--sessions", type=int, default=1000, help="idle sessions held")
    args = ap.parse_args()
    args.moat, args.loadgen = os.path.abspath(args.moat), os.path.abspath(args.loadgen)
    args.quick = False
    if os.geteuid() != 0:
        print("tuning.py: run as root (the rig's private Postfix and Dovecot)", file=sys.stderr)
        return 1
    t = Tuning(args)
    try:
        results = t.run()
    finally:
        t.close()
    print("\nmoat per-session costs, %s, %s" % (time.strftime("%Y-%m-%d %H:%M"), args.moat))
    print("| measurement | result | unit | notes |")
    print("|---|---:|---|---|")
    for name, value, unit, note in results:
        print("| %s | %s | %s | %s |" % (name, value, unit, note))
    return 0


if __name__ == "__main__":
    sys.exit(main())
