#!/bin/bash
# tests/bench/run.sh — moat's benchmarks (on demand; never part of ctest).
#
# Builds a release moat and the load generator in build-bench/ (-DMOAT_BENCH=ON), raises the
# open-file limit, then runs tests/bench/bench.py: the integration rig's private Postfix + Dovecot
# on loopback, moat in front, moat_loadgen from 127.0.0.2..250. Prints a summary table.
# Needs root (the rig) and libssl-dev (the load generator's TLS client; scripts/deps installs it).
#
#   tests/bench/run.sh [--quick] [--only handshake,memory,throughput,smtp]
#   tests/bench/run.sh fleet [--quick]
#       what [cluster] (counters shared through Redis) costs moat per connection
#       (tests/bench/fleet.py); needs redis-server.
#   tests/bench/run.sh compare [--quick] [--rounds N] [--only OP,...] [--no-readme]
#       moat against nginx mail and HAProxy (tests/bench/compare.py); installs nginx-light,
#       libnginx-mod-mail and haproxy with apt if missing (their services are not started).
#       A full run writes its report into tests/bench/README.md.
# Environment: MOAT_BIN / MOAT_LOADGEN use prebuilt binaries; MOAT_KEEP=1 keeps the state dir.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ "$(id -u)" -ne 0 ]; then
    echo "tests/bench/run.sh: run as root (it starts private Postfix and Dovecot instances)" >&2
    exit 1
fi

script=tests/bench/bench.py
if [ "${1:-}" = fleet ]; then
    shift
    script=tests/bench/fleet.py
elif [ "${1:-}" = compare ]; then
    shift
    script=tests/bench/compare.py
    peers="nginx-light libnginx-mod-mail haproxy"
    missing=""
    for p in $peers; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
            missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        echo "== installing:$missing" >&2
        # The packages' system services must not start (nginx would listen on *:80): a
        # policy-rc.d that denies every start, for the length of the install only.
        own_policy=""
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
            chmod 755 /usr/sbin/policy-rc.d
            own_policy=1
        fi
        rc=0
        DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null || rc=$?
        # shellcheck disable=SC2086
        [ $rc -eq 0 ] && { DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            --no-install-recommends $missing >/dev/null || rc=$?; }
        [ -n "$own_policy" ] && rm -f /usr/sbin/policy-rc.d
        [ $rc -eq 0 ] || { echo "tests/bench/run.sh: apt-get failed ($rc)" >&2; exit 1; }
        for svc in nginx haproxy; do
            if command -v systemctl >/dev/null 2>&1 &&
                systemctl is-active -q "$svc" 2>/dev/null; then
                systemctl stop "$svc" || true
            fi
        done
    fi
fi

if [ -z "${MOAT_BIN:-}" ] || [ -z "${MOAT_LOADGEN:-}" ]; then
    echo "== building (Release, MOAT_BENCH=ON) in build-bench" >&2
    cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DMOAT_BENCH=ON >/dev/null
    cmake --build build-bench -j"$(nproc)" --target moat moat_loadgen moat_cryptofloor >/dev/null
fi

# Thousands of sessions: two descriptors each in moat, one in the load generator, plus Dovecot.
hard=$(ulimit -Hn)
want=20000
[ "$hard" != unlimited ] && [ "$hard" -lt "$want" ] && want=$hard
ulimit -n "$want"

exec /usr/bin/python3 "$script" --moat "${MOAT_BIN:-build-bench/moat}" \
    --loadgen "${MOAT_LOADGEN:-build-bench/moat_loadgen}" "$@"
