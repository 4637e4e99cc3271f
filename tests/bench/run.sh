#!/bin/bash
# tests/bench/run.sh — moat's benchmarks (on demand; never part of ctest).
#
# Builds a release moat and the load generator in build-bench/ (-DMOAT_BENCH=ON), raises the
# open-file limit, then runs tests/bench/bench.py: the integration rig's private Postfix + Dovecot
# on loopback, moat in front, moat_loadgen from 127.0.0.2..250. Prints a summary table.
# Needs root (the rig) and libssl-dev (the load generator's TLS client; scripts/deps installs it).
#
#   tests/bench/run.sh [--quick] [--only handshake,memory,throughput,smtp]
# Environment: MOAT_BIN / MOAT_LOADGEN use prebuilt binaries; MOAT_KEEP=1 keeps the state dir.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ "$(id -u)" -ne 0 ]; then
    echo "tests/bench/run.sh: run as root (it starts private Postfix and Dovecot instances)" >&2
    exit 1
fi

if [ -z "${MOAT_BIN:-}" ] || [ -z "${MOAT_LOADGEN:-}" ]; then
    echo "== building (Release, MOAT_BENCH=ON) in build-bench" >&2
    cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DMOAT_BENCH=ON >/dev/null
    cmake --build build-bench -j"$(nproc)" --target moat moat_loadgen >/dev/null
fi

# Thousands of sessions: two descriptors each in moat, one in the load generator, plus Dovecot.
hard=$(ulimit -Hn)
want=20000
[ "$hard" != unlimited ] && [ "$hard" -lt "$want" ] && want=$hard
ulimit -n "$want"

exec /usr/bin/python3 tests/bench/bench.py --moat "${MOAT_BIN:-build-bench/moat}" \
    --loadgen "${MOAT_LOADGEN:-build-bench/moat_loadgen}" "$@"
