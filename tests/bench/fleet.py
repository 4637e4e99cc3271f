"""What sharing counters through Redis costs moat per connection: tests/bench/run.sh fleet
(or directly: /usr/bin/python3 tests/bench/fleet.py --moat build-bench/moat
--loadgen build-bench/moat_loadgen [--quick]).

Starts the rig's Postfix + Dovecot, a private redis-server, and moat twice in turn: with local
counters only, and with [cluster] redis set (same limits, high enough never to refuse). Each
runs the load generator's plaintext SMTP greeting (connect, 220, close) from 127.0.0.2..250 for
a few seconds, in rounds. Reported per connection: moat's CPU (user + system of all its threads,
from /proc/PID/task/*/schedstat), redis-server's CPU, and the Redis commands moat sent (from
/metrics); admission waits for exactly one of them (the admission script), the rest (the lease's
release, renewals) are sent without waiting. Prints a Markdown table. Bounded in count and time.
"""

import argparse
import glob
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import fleet_rig  # noqa: E402
import rig  # noqa: E402

SRC = "2-250"


def cpu_ns(pid):
    total = 0
    for path in glob.glob("/proc/%d/task/*/schedstat" % pid):
        try:
            with open(path) as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def kv(line):
    return dict(p.split("=", 1) for p in line.split() if "=" in p)


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else 0.0


def start_moat(args, work, certs, backends, redis_port, name):
    ports = dict(zip(("mx", "metrics"), rig.free_ports(2)))
    cluster = ("[cluster]\nredis = 127.0.0.1:%d\n" % redis_port) if redis_port else ""
    conf = rig.moat_conf(
        certs,
        backends={"postfix": {"address": "127.0.0.1:%d" % backends.ports["smtp_xclient"],
                              "identity": "xclient"}},
        listeners={"mx": {"protocol": "smtp", "listen": "127.0.0.1:%d" % ports["mx"],
                          "tls": "starttls", "backend": "postfix",
                          "local_domains": rig.LOCAL_DOMAIN}},
        extra="[limits]\nmax_sessions_per_ip = 100000\nconnection_rate_per_ip = 100000000/1m\n"
              + cluster)
    conf = conf.replace("[moat]\n", "[moat]\nmax_sessions = 20000\nmetrics = 127.0.0.1:%d\n"
                        % ports["metrics"], 1)
    m = rig.Moat(args.moat, conf, os.path.join(work, name), ports=[ports["mx"]])
    m.ports = ports
    if redis_port:
        rig.wait_until(lambda: requests(m) is not None and links(m) >= 2, 5.0,
                       what="cluster links")
    return m


def metrics(m):
    return fleet_rig.http_get(m.ports["metrics"], "/metrics")[1]


def requests(m):
    return fleet_rig.metric(metrics(m), "moat_cluster_requests_total")


def links(m):
    return fleet_rig.metric(metrics(m), "moat_cluster_links_up") or 0


def run_once(args, m, redis, dur):
    c0, r0 = cpu_ns(m.pid), cpu_ns(redis.proc.pid)
    q0 = requests(m) or 0
    cmd = [args.loadgen, "handshake", "-s", SRC, "-p", str(m.ports["mx"]), "-c", "8",
           "-d", str(dur), "-T", str(dur + 30)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=dur + 60)
    line = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    res = kv(line)
    time.sleep(0.5)  # the last closes reach moat and Redis
    ok = int(res.get("ok", 0)) or 1
    return {"moat_us": (cpu_ns(m.pid) - c0) / 1000.0 / ok,
            "redis_us": (cpu_ns(redis.proc.pid) - r0) / 1000.0 / ok,
            "cmds": ((requests(m) or 0) - q0) / ok,
            "rate": float(res.get("rate", 0)), "fail": res.get("fail", "?"),
            "p50": res.get("lat_p50_ms", "?")}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moat", required=True)
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=0)
    args = ap.parse_args()
    args.moat, args.loadgen = os.path.abspath(args.moat), os.path.abspath(args.loadgen)
    rounds = args.rounds or (2 if args.quick else 3)
    dur = 3 if args.quick else 6
    work = tempfile.mkdtemp(prefix="mf", dir="/tmp")
    os.chmod(work, 0o755)
    certs = rig.Certs(os.path.join(work, "certs"))
    backends = rig.Backends(os.path.join(work, "b"))
    redis = None
    moats = []
    try:
        backends.start()
        redis = fleet_rig.Redis(os.path.join(work, "redis"))
        local = start_moat(args, work, certs, backends, None, "local")
        shared = start_moat(args, work, certs, backends, redis.port, "cluster")
        moats = [local, shared]
        runs = {"local": [], "cluster": []}
        for i in range(rounds):
            for name, m in (("local", local), ("cluster", shared)):
                print("== round %d: %s" % (i + 1, name), file=sys.stderr)
                runs[name].append(run_once(args, m, redis, dur))
                print("   %s" % runs[name][-1], file=sys.stderr)
        med = {n: {k: median([r[k] for r in rs]) for k in ("moat_us", "redis_us", "cmds",
                                                            "rate")}
               for n, rs in runs.items()}
        print("\n| SMTP greeting, plaintext (connect to 220) | moat CPU µs / conn | "
              "Redis commands / conn (waited for) | redis-server CPU µs / conn | conn/s |")
        print("|---|---:|---:|---:|---:|")
        print("| local counters only | %.0f | 0 (0) | - | %.0f |"
              % (med["local"]["moat_us"], med["local"]["rate"]))
        print("| [cluster] Redis on loopback | %.0f | %.2f (1) | %.0f | %.0f |"
              % (med["cluster"]["moat_us"], med["cluster"]["cmds"], med["cluster"]["redis_us"],
                 med["cluster"]["rate"]))
        print("\nMedians over %d rounds of %d s, 8 connections at once; the cost of sharing is "
              "the difference of the moat column." % (rounds, dur))
    finally:
        for m in moats:
            m.stop()
        if redis is not None:
            redis.kill()
        backends.stop()
        if not os.environ.get("MOAT_KEEP"):
            import shutil
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
