"""moat against nginx mail and HAProxy (mode tcp), side by side in one run: run by
`tests/bench/run.sh compare [--quick]`, or directly:

    /usr/bin/python3 tests/bench/compare.py --moat build-bench/moat \
        --loadgen build-bench/moat_loadgen [--quick] [--rounds N] [--only OP,...] [--readme FILE]

Starts the integration rig's private Postfix + Dovecot (tests/integration/rig.py, through
bench.py's BenchBackends) and the three fronts of peers.py in front of them, with the same
certificates and TLS policy. Each operation runs in rounds, interleaved: moat, nginx, HAProxy,
moat, nginx, HAProxy... Each run reads the front's CPU time (every process and thread of it)
before and after, so the figure is CPU per operation whatever else the 2 shared cores are
doing. Memory: a fresh front per measurement, RSS before and after holding N idle sessions.
Prints a Markdown report; a full run (not --quick) also writes it into tests/bench/README.md
between the "compare:begin" and "compare:end" markers. Every step is bounded in count and time.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)
import rig  # noqa: E402
import bench  # noqa: E402
import peers  # noqa: E402

ALICE = bench.ALICE
PASS = rig.USERS[ALICE]
TLS = ["-C", "TLS_AES_128_GCM_SHA256", "-G", "X25519"]  # pinned: TLS 1.3, AES-128-GCM, X25519
LOGIN = ["-u", ALICE, "-w", PASS]
README = os.path.join(HERE, "README.md")
BEGIN, END = "<!-- compare:begin -->", "<!-- compare:end -->"


class Op:
    """One operation: a loadgen run per front and round (kind "cpu"), or a hold of idle
    sessions in a fresh front (kind "mem")."""

    def __init__(self, key, title, listener, argv, kind="cpu", per="op"):
        self.key, self.title, self.listener, self.argv = key, title, listener, argv
        self.kind, self.per = kind, per


def operations(quick):
    d = 2 if quick else 4  # seconds of each handshake run

    def hs(*extra):
        return ["handshake", "-t", "-c", 8, "-d", d, "-T", d + 30] + TLS + list(extra)

    return [
        Op("hs_ecdsa", "Full TLS 1.3 handshake, ECDSA P-256 (+ IMAP greeting)", "imaps_ecdsa",
           hs()),
        Op("hs_rsa", "Full TLS 1.3 handshake, RSA-2048 (+ IMAP greeting)", "imaps_rsa", hs()),
        Op("hs_resumed", "Resumed TLS 1.3 handshake, ticket (+ IMAP greeting)", "imaps_ecdsa",
           hs("-R")),
        Op("greeting", "SMTP greeting, plaintext (connect to 220)", "smtp_plain",
           ["handshake", "-c", 8, "-d", d, "-T", d + 30]),
        Op("starttls", "SMTP EHLO, STARTTLS, EHLO (ECDSA, TLS 1.3)", "mx",
           ["starttls", "-n", 150 if quick else 400, "-c", 8, "-T", 60] + TLS),
        Op("imap_login", "IMAP implicit TLS: handshake, LOGIN, NOOP", "imaps_ecdsa",
           ["imap-login", "-t", "-n", 30 if quick else 80, "-c", 4, "-T", 60] + LOGIN + TLS),
        Op("fetch", "IMAP FETCH of a 10 MB message, implicit TLS, AES-128-GCM", "imaps_ecdsa",
           ["imap-fetch", "-t", "-n", 4 if quick else 10, "-T", 120] + LOGIN + TLS, per="GB"),
        Op("submit", "SMTP submission of a 10 KB message (implicit TLS, AUTH PLAIN)",
           "submissions", ["smtp-submit", "-t", "-n", 15 if quick else 40, "-c", 2, "-T", 60,
                           "-r", ALICE, "-b", 10240] + LOGIN + TLS),
        Op("mem_tls", "Idle IMAP session, implicit TLS, logged in", "imaps_ecdsa",
           ["hold", "-t", "-n", 1000, "-c", 32, "-T", 600] + LOGIN + TLS,
           kind="mem"),
        Op("mem_plain", "Idle IMAP session, plaintext, greeted (pre-auth)", "imap_plain",
           ["hold", "-n", 2000, "-c", 64, "-T", 600], kind="mem"),
    ]


def kv(line):
    return dict(p.split("=", 1) for p in line.split() if "=" in p)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Compare:
    def __init__(self, args):
        self.args = args
        self.work = tempfile.mkdtemp(prefix="mc", dir="/tmp")
        os.chmod(self.work, 0o755)
        self.certs = rig.Certs(os.path.join(self.work, "certs"))
        self.backends = bench.BenchBackends(os.path.join(self.work, "b"))
        self.auth_http = None
        self.fronts = []
        self.serial = 0
        # results[op.key][front name] = list of per-round dicts
        self.results = {}
        self.load = []

    # --- fronts ---------------------------------------------------------------------------

    def new_front(self, cls):
        self.serial += 1
        f = cls(self, "%s%d" % (cls.name, self.serial))
        self.fronts.append(f)
        return f.start()

    # --- one measurement ---------------------------------------------------------------------

    def loadgen(self, front, op):
        argv = [self.args.loadgen] + [str(a) for a in op.argv[:1]] + [
            "-s", bench.SRC, "-p", str(front.ports[op.listener])] + [str(a) for a in op.argv[1:]]
        time.sleep(0.2)
        c0, s0 = front.cpu(), front.stat_cpu()
        r = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        cpu, scpu = front.cpu() - c0, front.stat_cpu() - s0
        line = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
        if r.stderr.strip():
            log("    loadgen: " + r.stderr.strip().replace("\n", "\n    loadgen: "))
        out = kv(line)
        ops = int(out.get("ops", 0))
        res = {"ops": ops, "fail": int(out.get("fail", 0)) + (0 if line else 1),
               "cpu_s": cpu, "stat_cpu_s": scpu, "rate": float(out.get("rate", 0)),
               "p50": float(out.get("lat_p50_ms", 0)), "p90": float(out.get("lat_p90_ms", 0)),
               "p99": float(out.get("lat_p99_ms", 0)), "cipher": out.get("cipher", "-"),
               "version": out.get("version", "-"), "resumed": int(out.get("resumed", 0)),
               "bytes": int(out.get("bytes", 0)), "mb_per_s": float(out.get("mb_per_s", 0))}
        if op.per == "GB":
            res["cpu"] = cpu / (res["bytes"] / 1e9) if res["bytes"] else None
        else:
            res["cpu"] = 1e6 * cpu / ops if ops else None  # microseconds per operation
        log("  %-8s %-11s ops=%d fail=%d cpu=%.3fs (stat %.2fs) per=%s p50=%.2fms p99=%.2fms "
            "rate=%.0f/s %s %s%s" % (front.name, op.key, ops, res["fail"], cpu, scpu,
                                     "%.1f" % res["cpu"] if res["cpu"] else "-", res["p50"],
                                     res["p99"], res["rate"], res["version"], res["cipher"],
                                     " resumed=%d" % res["resumed"] if "-R" in op.argv else ""))
        return res

    def hold(self, front, op):
        """A fresh front holds N idle sessions: (RSS after - RSS before) / sessions up."""
        time.sleep(0.5)
        before = front.rss()
        argv = [self.args.loadgen, op.argv[0], "-s", bench.SRC,
                "-p", str(front.ports[op.listener])] + [str(a) for a in op.argv[1:]]
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        try:
            line = p.stdout.readline().strip()  # bounded by the loadgen's own -T
            time.sleep(1.0)
            after = front.rss()
            ok = int(kv(line).get("ok", 0))
            fail = int(kv(line).get("fail", 0)) + (0 if line else 1)
        finally:
            p.stdin.close()
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
            err = p.stderr.read().strip()
            if err:
                log("    loadgen: " + err.replace("\n", "\n    loadgen: "))
        kb = (after - before) / ok if ok else None
        log("  %-8s %-11s %s RSS %d -> %d KB: %s KB/session" % (
            front.name, op.key, line, before, after, "%.1f" % kb if kb else "-"))
        return {"cpu": kb, "ops": ok, "fail": fail, "rss_before": before, "rss_after": after}

    # --- the run ---------------------------------------------------------------------------

    def loadavg(self):
        with open("/proc/loadavg") as f:
            self.load.append(float(f.read().split()[0]))

    def run(self):
        only = set(self.args.only.split(",")) if self.args.only else None
        ops = [o for o in operations(self.args.quick) if not only or o.key in only]
        rounds = self.args.rounds or (2 if self.args.quick else 3)
        self.rounds = rounds
        self.ops = ops
        self.backends.start()
        self.auth_http = peers.AuthHTTP(self.backends)
        self.loadavg()
        cpu_ops = [o for o in ops if o.kind == "cpu"]
        if cpu_ops:
            running = [self.new_front(cls) for cls in peers.FRONTS]
            for op in cpu_ops:
                if op.key == "fetch":
                    size = bench.big_message(self.backends, 10)
                    log("== %s (%d bytes)" % (op.title, size))
                    # warm the page cache and Dovecot's index
                    self.loadgen(running[-1], op)
                else:
                    log("== " + op.title)
                for r in range(rounds):
                    for f in running:
                        if f.supports(op.listener):
                            self.results.setdefault(op.key, {}).setdefault(f.name, []).append(
                                self.loadgen(f, op))
                if op.key == "submit":
                    self.backends.cleanup_maildirs()
            for f in running:
                f.stop()
            self.loadavg()
        mem_rounds = max(1, rounds - 1)
        for op in (o for o in ops if o.kind == "mem"):
            log("== %s, %d rounds" % (op.title, mem_rounds))
            for r in range(mem_rounds):
                for cls in peers.FRONTS:
                    f = self.new_front(cls)
                    try:
                        self.results.setdefault(op.key, {}).setdefault(f.name, []).append(
                            self.hold(f, op))
                    finally:
                        f.stop()
        self.loadavg()

    def close(self):
        for f in self.fronts:
            f.stop()
        if self.auth_http:
            self.auth_http.close()
        self.backends.stop(remove=False)
        if not os.environ.get("MOAT_KEEP"):
            shutil.rmtree(self.work, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# the report


def fmt(v):
    if v is None:
        return "–"
    if v >= 100:
        return "%.0f" % v
    if v >= 10:
        return "%.1f" % v
    return "%.2f" % v


def counted(r):
    """A run counts if it did something and at most 1% of its sessions failed."""
    return r.get("cpu") is not None and r["fail"] <= 0.01 * max(r["ops"], 1)


def summary(runs, field):
    vals = [r[field] for r in runs if r.get(field) is not None and counted(r)]
    if not vals:
        return None, None, None
    return statistics.median(vals), min(vals), max(vals)


FIGURES = {
    "cpu": [("cpu", "CPU µs / op"), ("p50", "latency p50, ms"), ("p90", "latency p90, ms"),
            ("p99", "latency p99, ms")],
    "GB": [("cpu", "CPU s / GB"), ("p50", "FETCH p50, ms"), ("p90", "FETCH p90, ms"),
           ("p99", "FETCH p99, ms")],
    "mem": [("cpu", "KB / session")],
}


def versions(moat_bin):
    def out(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"

    def deb(pkg):
        return out(["dpkg-query", "-W", "-f=${Version}", pkg])

    commit = out(["git", "-C", HERE, "rev-parse", "--short", "HEAD"])
    root = os.path.realpath(os.path.join(HERE, "..", ".."))
    if not os.path.realpath(moat_bin).startswith(root + os.sep):
        commit += ", binary %s" % moat_bin  # MOAT_BIN from elsewhere
    return ("moat %s (Release; %s), nginx %s + libnginx-mod-mail (OpenSSL %s), "
            "HAProxy %s, Dovecot %s, Postfix %s" % (
                commit, wolfssl(moat_bin), deb("nginx"), deb("libssl3"), deb("haproxy"),
                deb("dovecot-core"), deb("postfix")))


def wolfssl(moat_bin):
    """Which wolfSSL the moat binary runs with: Debian's package, another shared library, or
    one linked in statically."""
    try:
        r = subprocess.run(["ldd", moat_bin], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "wolfSSL ?"
    for line in r.stdout.splitlines():
        if "wolfssl" in line and "=>" in line:
            path = os.path.realpath(line.split("=>")[1].split("(")[0].strip())
            q = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True, timeout=10)
            if q.returncode == 0:
                pkg = q.stdout.split(":")[0]
                v = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg],
                                   capture_output=True, text=True, timeout=10).stdout.strip()
                return "Debian's %s %s" % (pkg, v)
            return "wolfSSL from %s" % path
    # linked in: `moat -V` names it ("wolfSSL 5.5.4 (Debian source ..., static, ...)")
    v = subprocess.run([moat_bin, "-V"], capture_output=True, text=True, timeout=10)
    for line in v.stdout.splitlines():
        if line.startswith("wolfSSL ") and "(" in line:
            return line
    return "wolfSSL linked statically"


def report(c):
    names = [cls.name for cls in peers.FRONTS]
    lines = []
    para = lambda text: lines.append(textwrap.fill(text, 100, break_on_hyphens=False))  # noqa: E731
    para("Run %s on %d CPUs (load average %s over the run), %d rounds per operation "
         "(memory: %d), %s." % (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                os.cpu_count(), "–".join("%.1f" % x for x in c.load),
                                c.rounds, max(1, c.rounds - 1),
                                "quick" if c.args.quick else "full"))
    lines.append("")
    para(versions(c.args.moat) + ".")
    lines.append("")
    para("Each cell: median over the rounds (min in brackets). Ratios: medians, moat / peer "
         "(below 1: moat uses less). Spread: the largest (max - min) / median of the three "
         "fronts over the rounds.")
    lines.append("")
    lines.append("| operation | figure | moat | nginx | HAProxy | moat/nginx | moat/HAProxy | "
                 "spread |")
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|")
    notes = []
    for op in c.ops:
        res = c.results.get(op.key, {})
        figs = FIGURES["mem" if op.kind == "mem" else op.per if op.per == "GB" else "cpu"]
        for i, (field, label) in enumerate(figs):
            cells, med, spread = [], {}, 0.0
            for n in names:
                runs = res.get(n)
                if not runs:
                    cells.append("n/a")
                    continue
                m, lo, hi = summary(runs, field)
                med[n] = m
                if m is None:
                    cells.append("failed")
                    continue
                cells.append("%s (%s)" % (fmt(m), fmt(lo)) if len(runs) > 1 else fmt(m))
                if m:
                    spread = max(spread, (hi - lo) / m)
            ratios = []
            for peer in names[1:]:
                a, b = med.get("moat"), med.get(peer)
                ratios.append("%.2f" % (a / b) if a and b else "–")
            lines.append("| %s | %s | %s | %s | %s | %s |" % (
                op.title if i == 0 else "", label, " | ".join(cells), ratios[0], ratios[1],
                "%.0f%%" % (100 * spread)))
        for n in names:
            runs = res.get(n) or []
            fails = sum(r["fail"] for r in runs)
            if fails:
                notes.append("%s, %s: %d failed sessions over the rounds (a round with more "
                             "than 1%% failed is left out of the figures)." % (op.title, n, fails))
            if op.kind == "cpu" and runs and runs[0].get("rate"):
                rate = statistics.median(r["mb_per_s" if op.per == "GB" else "rate"]
                                         for r in runs)
                extra = ""
                if "-R" in op.argv:
                    extra = ", %d%% resumed" % (100 * sum(r["resumed"] for r in runs)
                                                / max(1, sum(r["ops"] for r in runs)))
                tls = ("%s %s" % (runs[0]["version"], runs[0]["cipher"])
                       if runs[0]["version"] != "-" else "plaintext")
                notes.append("%s, %s: %.0f %s/s (%s%s)." % (
                    op.key, n, rate, "MB" if op.per == "GB" else "ops", tls, extra))
    lines.append("")
    para("Rates reached and negotiated TLS (median over the rounds; the rates depend on "
                 "the load generator and the backends, see the method):")
    lines.append("")
    lines += [textwrap.fill(n, 100, initial_indent="- ", subsequent_indent="  ",
                           break_on_hyphens=False) for n in notes]
    return "\n".join(lines) + "\n"


def write_readme(text, path=README):
    with open(path) as f:
        old = f.read()
    if BEGIN not in old or END not in old:
        raise RuntimeError("%s has no %s ... %s block" % (path, BEGIN, END))
    head, rest = old.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(path, "w") as f:
        f.write(head + BEGIN + "\n" + text + END + tail)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moat", required=True)
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--quick", action="store_true", help="fewer rounds, smaller counts")
    ap.add_argument("--rounds", type=int, help="rounds per operation (default 3, quick 2)")
    ap.add_argument("--only", help="comma list of operations: " +
                    ",".join(o.key for o in operations(False)))
    ap.add_argument("--readme", help="write the report into this README (default: "
                    "tests/bench/README.md after a full run of every operation)")
    ap.add_argument("--no-readme", action="store_true", help="print only")
    args = ap.parse_args()
    args.moat, args.loadgen = os.path.abspath(args.moat), os.path.abspath(args.loadgen)
    if os.geteuid() != 0:
        log("compare.py: run as root (the rig's private Postfix and Dovecot)")
        return 1
    missing = peers.missing_tools()
    if missing:
        log("compare.py: missing Debian packages: %s (tests/bench/run.sh compare installs "
            "them)" % " ".join(missing))
        return 1
    c = Compare(args)
    try:
        c.run()
    finally:
        c.close()
    text = report(c)
    print(text)
    target = args.readme or (README if not (args.quick or args.only or args.rounds) else None)
    if target and not args.no_readme:
        write_readme(text, target)
        log("compare.py: report written to %s" % target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
