"""moat's CPU per session, one build against another (A/B), rounds interleaved, medians.

    /usr/bin/python3 tests/bench/ab.py --base OLD/moat --moat NEW/moat \
        --loadgen build-bench/moat_loadgen [--rounds 5]

On demand only, as root (the rig's private Postfix and Dovecot, as bench.py). Both moats run at
once on the same backends and the same configuration (bench.py's); each round runs every case
against both, in alternating order. Cases: a plaintext SMTP dialogue (EHLO, EHLO, QUIT), the
same with STARTTLS (EHLO, STARTTLS, handshake, EHLO, QUIT) and an implicit-TLS handshake with
the IMAP greeting. moat's CPU time comes from /proc, so the load generator's own cost is not in
it. Every run is bounded in count and time.
"""

import argparse
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import tuning  # noqa: E402
from bench import cpu_secs  # noqa: E402

CASES = (
    ("SMTP EHLO, EHLO, QUIT (no TLS)", "mx", ["starttls", "-P", "-n", 1500]),
    ("SMTP EHLO, STARTTLS, EHLO, QUIT (ECDSA, TLS 1.3)", "mx", ["starttls", "-n", 1500]),
    ("IMAPS handshake + greeting (ECDSA, TLS 1.3)", "imaps", ["handshake", "-t", "-d", 3]),
)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True, help="the moat binary to compare against")
    ap.add_argument("--moat", required=True, help="the moat binary measured")
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("ab.py: run as root (the rig's private Postfix and Dovecot)", file=sys.stderr)
        return 1
    bins = {"base": os.path.abspath(args.base), "new": os.path.abspath(args.moat)}
    args.loadgen = os.path.abspath(args.loadgen)
    targs = argparse.Namespace(moat=bins["new"], loadgen=args.loadgen, only=None, n=100,
                               duration=3, perf=None, sessions=100, noops=100, quick=True)
    t = tuning.Tuning(targs)
    res = {(b, c[0]): [] for b in bins for c in CASES}
    try:
        t.backends.start()
        moats = {}
        for b, path in bins.items():
            t.args.moat = path
            moats[b] = t.start_moat()
        for rnd in range(max(1, min(args.rounds, 50))):
            for name, listener, mode in CASES:
                for b in (("base", "new") if rnd % 2 == 0 else ("new", "base")):
                    m = moats[b]
                    c0 = cpu_secs(m.pid)
                    r = t.loadgen(mode[0], "-p", m.ports[listener], "-c", 16, "-T", 60,
                                  *mode[1:])
                    ok = int(r.get("ok", 0))
                    if ok:
                        res[(b, name)].append(1e6 * (cpu_secs(m.pid) - c0) / ok)
    finally:
        t.close()
    print("| moat CPU per session, µs (median of %d rounds; all rounds) | base | new | new/base |"
          % args.rounds)
    print("|---|---:|---:|---:|")
    for name, _, _ in CASES:
        b, n = res[("base", name)], res[("new", name)]
        if not b or not n:
            continue
        mb, mn = statistics.median(b), statistics.median(n)
        print("| %s (%s; %s) | %.0f | %.0f | %.2f |" % (
            name, " ".join("%.0f" % x for x in b), " ".join("%.0f" % x for x in n), mb, mn,
            mn / mb))
    return 0


if __name__ == "__main__":
    sys.exit(main())
