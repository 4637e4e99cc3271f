"""A fleet of moats: two moats behind a real HAProxy (mode tcp, send-proxy-v2, round-robin)
sharing limits, rates and bans through a real redis-server. Negative cases first: a forged PROXY
header from an untrusted address, a malformed one from the trusted balancer. Then: the backend
sees the real client through the balancer; max_sessions_per_ip, connection rates, message rates
and bans hold across replicas; Redis killed mid-test leaves both serving on local limits, and
they share again once it is back. Clients use 127.0.0.2 and up; every wait is bounded."""

import re
import socket
import struct
import subprocess
import time

import pytest

import fleet_rig
import rig
from imap_helpers import login_lines

ALICE = ("alice@example.test", "alice-secret-1")
SMTP_OK = b"220 "
SMTP_BUSY = b"421 4.7.0 mx.moat.test Too many connections from your host"


@pytest.fixture
def fleet(moat, backends, certs, tmp_path):
    """start(limits={...}, auth={...}, cluster=True, clock_offset=0) -> object with .moats,
    .ports (moat i's listener ports), .front (HAProxy ports: smtp, imap), .redis. clock_offset:
    the second moat runs in a time namespace whose monotonic clock is that many seconds ahead,
    as on a host that booted earlier."""
    if not (fleet_rig.tool("redis-server") and fleet_rig.tool("haproxy")):
        pytest.skip("redis-server and haproxy are needed (run scripts/deps)")
    made = []

    class Fleet:
        pass

    def start(limits=None, auth=None, cluster=True, extra="",
              cluster_keys="timeout = 2s\nconnect_timeout = 2s\n", redis_password=None,
              wait_cluster=True, moat_keys="", clock_offset=0):
        f = Fleet()
        f.redis = fleet_rig.Redis(str(tmp_path / "redis"), password=redis_password)
        made.append(f.redis)
        lim = {"max_sessions_per_ip": "0", "connection_rate_per_ip": "0"}
        lim.update(limits or {})
        au = {"failure_delay": "10ms", "failure_delay_max": "10ms", "max_failures": "5",
              "ban_ip": "0", "ban_user": "0", "ban_time": "1m"}
        au.update(auth or {})
        f.moats, f.ports = [], []
        for i in range(2):
            ports = dict(zip(("smtp", "imap", "imaps", "metrics"), rig.free_ports(4)))
            common = {"proxy_protocol": "v2", "proxy_trusted": "127.0.0.1/32"}
            listeners = {
                "mx": dict(common, protocol="smtp", tls="starttls", backend="postfix",
                           local_domains="example.test", listen="127.0.0.1:%d" % ports["smtp"]),
                "imap": dict(common, protocol="imap", tls="starttls", backend="imap",
                             listen="127.0.0.1:%d" % ports["imap"]),
                "imaps": dict(common, protocol="imap", tls="implicit", backend="imap",
                              listen="127.0.0.1:%d" % ports["imaps"]),
            }
            conf = rig.moat_conf(certs, backends={
                "postfix": {"address": "127.0.0.1:%d" % backends.ports["smtp_xclient"],
                            "identity": "xclient"},
                "imap": {"address": "127.0.0.1:%d" % backends.ports["imap"], "identity": "id"},
            }, listeners=listeners, extra=(
                "[limits]\n" + "".join("%s = %s\n" % kv for kv in lim.items()) +
                "[auth]\n" + "".join("%s = %s\n" % kv for kv in au.items()) +
                ("[cluster]\nredis = 127.0.0.1:%d\nlease = 3s\n%s" % (f.redis.port, cluster_keys)
                 if cluster else "") + extra))
            conf = conf.replace("[moat]\n", "[moat]\nmetrics = 127.0.0.1:%d\n%s"
                                % (ports["metrics"], moat_keys), 1)
            wrap = ()
            if i == 1 and clock_offset:
                wrap = ("unshare", "--time", "--monotonic", str(clock_offset),
                        "--boottime", str(clock_offset))
            f.moats.append(moat(conf, wait_ports=[ports["smtp"], ports["imap"], ports["imaps"]],
                                wrap=wrap))
            f.ports.append(ports)
        hp = fleet_rig.HAProxy(str(tmp_path / "haproxy"), {
            "smtp": [f.ports[0]["smtp"], f.ports[1]["smtp"]],
            "imap": [f.ports[0]["imap"], f.ports[1]["imap"]],
            "imaps": [f.ports[0]["imaps"], f.ports[1]["imaps"]]})
        made.append(hp)
        f.front = hp.ports
        if cluster and wait_cluster:
            for m in f.moats:
                rig.wait_until(lambda: "event=cluster_up" in m.log() or links_up(f, m) > 0,
                               5.0, what="cluster link")
        return f

    yield start
    for thing in made:
        thing.kill() if isinstance(thing, fleet_rig.Redis) else thing.stop()


def links_up(f, m):
    port = f.ports[f.moats.index(m)]["metrics"]
    status, body = fleet_rig.http_get(port, "/metrics")
    return fleet_rig.metric(body, "moat_cluster_links_up") or 0


def greet(port, src):
    """(socket, first line) of a connection from src; the caller closes the socket."""
    s = rig.client_socket(port, src=src)
    s.settimeout(5)
    data = b""
    while not data.endswith(b"\n"):
        chunk = s.recv(300)
        if not chunk:
            break
        data += chunk
    return s, data


def silent_close(s):
    """True when the peer closed without sending a byte (a close with unread input is a
    reset)."""
    try:
        return s.recv(300) == b""
    except ConnectionResetError:
        return True


def closed(s):
    try:
        return s.recv(300) == b""
    except (ConnectionResetError, socket.timeout):
        return isinstance(s, socket.socket)


# --- negative cases first --------------------------------------------------------------------

def test_forged_header_from_untrusted_address_is_closed_silently(fleet, backends):
    f = fleet(cluster=False)
    port = f.ports[0]["smtp"]
    # a client straight to moat (not through the balancer) forging a header: closed, no reply
    s = rig.client_socket(port, src="127.0.0.3")
    s.settimeout(5)
    s.sendall(b"PROXY TCP4 192.0.2.9 203.0.113.1 40000 25\r\nEHLO x\r\n")
    assert silent_close(s)
    s.close()
    # without any header too
    s = rig.client_socket(port, src="127.0.0.3")
    s.settimeout(5)
    assert s.recv(300) == b""
    s.close()
    rig.wait_until(lambda: "reason=proxy_untrusted" in f.moats[0].log(), 3.0, what="log")
    log = f.moats[0].log()
    assert "client=127.0.0.3" in log and "192.0.2.9" not in log
    # a malformed header from the trusted address: closed without a reply
    s = rig.client_socket(port, src="127.0.0.1")
    s.settimeout(5)
    s.sendall(b"PROXY TCP4 192.0.2.9 nonsense\r\n")
    assert silent_close(s)
    s.close()
    # and a v1 header where v2 is configured
    s = rig.client_socket(port, src="127.0.0.1")
    s.settimeout(5)
    s.sendall(b"PROXY TCP4 192.0.2.9 203.0.113.1 40000 25\r\n")
    assert silent_close(s)
    s.close()
    rig.wait_until(lambda: f.moats[0].log().count("reason=proxy_header") >= 2, 3.0, what="log")
    # the balancer's clients are still served
    s, line = greet(f.front["smtp"], "127.0.0.4")
    assert line.startswith(SMTP_OK)
    s.close()
    assert "192.0.2.9" not in backends.postfix_log()


def test_balancer_own_connections(fleet):
    """A silent connection from the balancer ends at proxy_header; its health checks (a v2
    LOCAL header) are served and counted against no client limit."""
    f = fleet(cluster=False, limits={"max_sessions_per_ip": "1"},
              extra="[timeouts]\nproxy_header = 300ms\n")
    local = b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"
    held = []
    for _ in range(3):
        s = rig.client_socket(f.ports[0]["smtp"], src="127.0.0.1")
        s.settimeout(5)
        s.sendall(local)
        assert s.recv(300).startswith(SMTP_OK)
        held.append(s)
    for s in held:
        s.close()
    s = rig.client_socket(f.ports[1]["smtp"], src="127.0.0.1")
    s.settimeout(5)
    s.sendall(b"\r\n\r\n\x00\r\nQUIT\n")  # half a v2 header, then nothing
    t0 = time.monotonic()
    assert s.recv(300) == b""
    assert time.monotonic() - t0 < 3
    s.close()


PROXY_V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v2_tcp4(src, dst="127.0.0.1", sport=40000, dport=25):
    return (PROXY_V2_SIG + b"\x21\x11" + struct.pack("!H", 12) + socket.inet_aton(src) +
            socket.inet_aton(dst) + struct.pack("!HH", sport, dport))


def sessions_open(f, i, listener="mx"):
    status, body = fleet_rig.http_get(f.ports[i]["metrics"], "/metrics")
    m = re.search(r'^moat_sessions_open\{listener="%s"[^}]*\} (\d+)' % listener, body, re.M)
    return int(m.group(1)) if m else None


def test_health_checks_give_their_session_back(fleet):
    """A balancer's health check (PROXY LOCAL) is a session while open (max_sessions counts it)
    and gives its count back when it ends: after several, clients are admitted up to
    max_sessions and no further."""
    f = fleet(cluster=False, moat_keys="max_sessions = 2\n")
    port = f.ports[0]["smtp"]
    local = PROXY_V2_SIG + b"\x20\x00\x00\x00"
    for _ in range(4):
        s = rig.client_socket(port, src="127.0.0.1")
        s.settimeout(5)
        s.sendall(local)
        assert s.recv(300).startswith(SMTP_OK)
        s.close()
        # each check's count comes back once moat has seen it end (the next check may come
        # before that: max_sessions would refuse it on a busy machine)
        rig.wait_until(lambda: sessions_open(f, 0) == 0, 5.0, what="health check ended")
    held = []
    for header in (local, proxy_v2_tcp4("192.0.2.21")):
        s = rig.client_socket(port, src="127.0.0.1")
        s.settimeout(5)
        s.sendall(header)
        assert s.recv(300).startswith(SMTP_OK)
        held.append(s)
    # two sessions open (one of them a health check): the next connection is refused at accept,
    # before its header (nothing sent, so the refusal is read rather than reset)
    s = rig.client_socket(port, src="127.0.0.1")
    s.settimeout(5)
    assert s.recv(300).startswith(b"421 ")
    s.close()
    for s in held:
        s.close()
    rig.wait_until(lambda: sessions_open(f, 0) == 0, 5.0, what="sessions ended")
    for src in ("192.0.2.23", "192.0.2.24"):
        s = rig.client_socket(port, src="127.0.0.1")
        s.settimeout(5)
        s.sendall(proxy_v2_tcp4(src))
        assert s.recv(300).startswith(SMTP_OK)
        held.append(s)
    for s in held:
        s.close()


# --- the real client through the balancer ------------------------------------------------------

def test_backend_sees_the_real_client_through_the_balancer(fleet, backends, certs):
    f = fleet(cluster=False)
    # SMTP to both replicas: Postfix logs the real client (XCLIENT)
    for src in ("127.0.0.5", "127.0.0.6"):
        c = rig.smtp(f.front["smtp"], src=src)
        c.ehlo("client.test")
        c.mail("someone@remote.example")
        c.rcpt("bob@example.test")
        c.data(b"Subject: fleet\r\n\r\nvia the balancer\r\n")
        c.quit()
    log = lambda: backends.postfix_log()
    for src in ("127.0.0.5", "127.0.0.6"):
        pat = r"client=\S*\[%s\]" % re.escape(src)
        rig.wait_until(lambda: re.search(pat, log()), 5.0, what="postfix client line")
    # each replica logged its session with the real client address
    for m in f.moats:
        rig.wait_until(lambda: re.search(r"event=close .*client=127\.0\.0\.[56]:", m.log()),
                       5.0, what="moat close line")
    # IMAP: Dovecot's rip= is the real client
    c = rig.IMAP(f.front["imap"], src="127.0.0.7")
    c.starttls(rig.client_context(certs))
    c.login(*ALICE)
    c.logout()
    assert login_lines(backends, ALICE[0], "127.0.0.7", wait=5.0)
    # implicit TLS: the header is read before the handshake, on both replicas
    for src in ("127.0.0.15", "127.0.0.16"):
        c = rig.IMAPS(f.front["imaps"], certs=certs, src=src)
        c.login(*ALICE)
        c.logout()
        assert login_lines(backends, ALICE[0], src, wait=5.0)


# --- shared limits -------------------------------------------------------------------------------

def fill_sessions_per_ip(f, src, limit):
    """limit sessions from src through the balancer (m1, m2, m1, ...), held open; the next one
    (on the replica that holds fewer) is refused for the fleet's count. Returns the held sockets."""
    held = []
    for _ in range(limit):
        s, line = greet(f.front["smtp"], src)
        assert line.startswith(SMTP_OK), line
        held.append(s)
    s, line = greet(f.front["smtp"], src)
    assert line.startswith(SMTP_BUSY), line
    assert closed(s)
    s.close()
    assert "reason=max_sessions_per_ip" in f.moats[limit % 2].log()
    return held


def test_sessions_per_ip_across_replicas(fleet):
    f = fleet(limits={"max_sessions_per_ip": "3"})
    src = "127.0.0.8"
    held = fill_sessions_per_ip(f, src, 3)  # m2 refuses: its own count is 1, the fleet's 3
    # another address is not affected
    s, line = greet(f.front["smtp"], "127.0.0.9")
    assert line.startswith(SMTP_OK)
    s.close()
    # a session that ends gives its place back across the fleet
    held.pop().close()
    rig.wait_until(lambda: f.redis.cli("ZCARD", "moat:c:{%s}" % src) == "2", 5.0,
                   what="lease released")
    s, line = greet(f.front["smtp"], src)
    assert line.startswith(SMTP_OK), line
    held.append(s)
    for s in held:
        s.close()


def test_ban_earned_on_one_replica_refuses_on_the_other(fleet, certs):
    f = fleet(auth={"ban_ip": "2/10m", "ban_time": "1m"})
    src = "127.0.0.10"
    c = rig.IMAP(f.front["imap"], src=src)  # m1
    c.starttls(rig.client_context(certs))
    for _ in range(2):
        with pytest.raises(c.error):
            c.login(ALICE[0], "wrong-password")
    c.shutdown()
    rig.wait_until(lambda: f.redis.cli("EXISTS", "moat:b:{%s}" % src) == "1", 5.0,
                   what="ban in redis")
    # m2 never saw a failure from this address, and refuses it
    s, line = greet(f.front["imap"], src)
    assert line.startswith(b"* BYE [UNAVAILABLE] Too many failures"), line
    s.close()
    m2 = [l for l in f.moats[1].log().splitlines() if "127.0.0.10" in l]
    assert m2 and all(re.search(r"event=refused .*client=127\.0\.0\.10:\d+ reason=banned", l)
                      for l in m2), m2
    # m1 too
    s, line = greet(f.front["imap"], src)
    assert line.startswith(b"* BYE"), line
    s.close()


def imap_login(f, certs, src, password):
    """True when LOGIN of alice from src through the balancer succeeds."""
    c = rig.IMAP(f.front["imap"], src=src)
    try:
        c.starttls(rig.client_context(certs))
        c.login(ALICE[0], password)
        c.logout()
        return True
    except rig.imaplib.IMAP4.error:
        c.shutdown()
        return False


def test_user_ban_and_familiar_addresses_are_shared(fleet, certs):
    """Smart lockout across the fleet: a user-name ban earned on one replica refuses the name on
    the other from unfamiliar addresses, while an address where the user logged in (on the
    other replica) still gets in."""
    f = fleet(auth={"ban_ip": "0", "ban_user": "2/10m", "ban_time": "1m"})
    rig.wait_until(lambda: f.redis.cli("PUBSUB", "NUMSUB", "moat:bans").split()[-1] == "2", 5.0,
                   what="each moat subscribed to the bans channel")
    home = "127.0.0.22"
    assert imap_login(f, certs, home, ALICE[1])  # m1: home is familiar for alice
    c = rig.IMAP(f.front["imap"], src="127.0.0.23")  # m2: an attacker earns the ban there
    c.starttls(rig.client_context(certs))
    for _ in range(2):
        with pytest.raises(c.error):
            c.login(ALICE[0], "wrong-password")
    c.shutdown()
    rig.wait_until(lambda: f.redis.cli("KEYS", "moat:k:*"), 5.0, what="user ban in redis")
    # from elsewhere, the right password is refused on both replicas (a pair of connections
    # covers both; the ban reaches the other replica over the bans channel)
    refused_pair = None
    for i in range(10):
        pair = [imap_login(f, certs, "127.0.0.%d" % (30 + 2 * i + j), ALICE[1]) for j in (0, 1)]
        if pair == [False, False]:
            refused_pair = i
            break
        time.sleep(0.3)
    assert refused_pair is not None, "the user ban did not reach the other replica"
    # the familiar address gets in on both replicas, though only m1 saw its login
    assert imap_login(f, certs, home, ALICE[1])
    assert imap_login(f, certs, home, ALICE[1])


def test_rates_are_counted_once_across_replicas(fleet):
    # hour-long windows: a test that straddles a window's start would see it slide
    f = fleet(limits={"connection_rate_per_ip": "4/1h", "messages_per_client": "2/1h"})
    src = "127.0.0.11"
    for i in range(4):
        s, line = greet(f.front["smtp"], src)
        assert line.startswith(SMTP_OK), (i, line)
        s.close()
    # two per replica: each is under 4 alone; the fleet counted 4
    s, line = greet(f.front["smtp"], src)
    assert line.startswith(SMTP_BUSY), line
    s.close()
    keys = f.redis.cli("KEYS", "moat:r:{%s}:*" % src).split()
    assert len(keys) == 1 and f.redis.cli("GET", keys[0]) == "4"
    # messages: one through each replica, then the third is refused wherever it lands
    src = "127.0.0.12"
    for i in range(2):
        c = rig.smtp(f.front["smtp"], src=src)
        c.ehlo("client.test")
        c.mail("someone@remote.example")
        c.rcpt("bob@example.test")
        c.data(b"Subject: rate %d\r\n\r\nx\r\n" % i)
        c.quit()
    keys = f.redis.cli("KEYS", "moat:m:{%s}:*" % src).split()
    rig.wait_until(lambda: f.redis.cli("GET", keys[0]) == "2", 3.0, what="messages counted")
    c = rig.smtp(f.front["smtp"], src=src)
    c.ehlo("client.test")
    code, _ = c.mail("someone@remote.example")
    if code == 250:
        code, _ = c.rcpt("bob@example.test")
        if code == 250:
            code, _ = c.data(b"Subject: rate 3\r\n\r\nx\r\n")
    assert 400 <= code < 500, code
    c.close()



def time_ns_works():
    try:
        return subprocess.run(["unshare", "--time", "--monotonic", "1", "true"],
                              capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def test_replicas_whose_clocks_started_apart_share_counts(fleet):
    """Replicas run on hosts that booted at different times: each monotonic clock counts from
    its own boot. The second moat runs in a time namespace 10 days ahead. Its session leases must
    not evict the first one's (they would, compared on monotonic times), and both must count
    connections in the same rate windows (a window numbered from each host's boot is another
    key)."""
    if not time_ns_works():
        pytest.skip("no time namespaces here (unshare --time)")
    f = fleet(limits={"max_sessions_per_ip": "3", "connection_rate_per_ip": "6/1h"},
              clock_offset=10 * 86400)
    src = "127.0.0.21"
    held = fill_sessions_per_ip(f, src, 3)  # m2 refuses, its clock 10 days ahead of m1's leases
    assert f.redis.cli("ZCARD", "moat:c:{%s}" % src) == "3"
    for s in held:
        s.close()
    # the rate: 6 connections, 3 through each replica, all in one window's key
    src = "127.0.0.22"
    for i in range(6):
        s, line = greet(f.front["smtp"], src)
        assert line.startswith(SMTP_OK), (i, line)
        s.close()
    keys = f.redis.cli("KEYS", "moat:r:{%s}:*" % src).split()
    assert len(keys) == 1 and f.redis.cli("GET", keys[0]) == "6", keys
    s, line = greet(f.front["smtp"], src)
    assert line.startswith(SMTP_BUSY), line
    s.close()


def test_rate_slides_across_a_window_boundary(fleet):
    """3 connections per 4 s, counted in the fleet as a sliding window: 3 made just before a
    window's end still count, fading, just after it. One more is allowed (3 x 0.9, rounded down,
    is 2), the next is refused, by the fleet: each replica alone has seen at most 2. Fixed
    windows would allow 3 more at once."""
    window = 4.0
    f = fleet(limits={"connection_rate_per_ip": "3/4s"})
    src = "127.0.0.23"

    def wait_phase(lo, hi):
        """Sleep until the wall clock is between lo and hi seconds into a 4-s window (as
        moat numbers them: since the epoch)."""
        for _ in range(3):
            phase = time.time() % window
            if lo <= phase <= hi:
                return
            time.sleep((lo - phase) % window + 0.01)
        raise AssertionError("could not reach the window phase")

    wait_phase(window - 1.2, window - 0.9)
    for i in range(3):  # m1, m2, m1: the end of one window
        s, line = greet(f.front["smtp"], src)
        assert line.startswith(SMTP_OK), (i, line)
        s.close()
    wait_phase(0.05, 0.4)  # the next window: the previous one still counts > 2/3
    s, line = greet(f.front["smtp"], src)  # m2
    assert line.startswith(SMTP_OK), line
    s.close()
    s, line = greet(f.front["smtp"], src)  # m1
    assert line.startswith(SMTP_BUSY), line
    s.close()
    assert time.time() % window < window / 3, "too slow to test the boundary"
    rig.wait_until(lambda: any("reason=connection_rate_per_ip" in m.log() for m in f.moats), 3.0,
                   what="the refusal logged")


# --- Redis gone and back ------------------------------------------------------------------------

def test_redis_down_local_limits_then_shared_again(fleet):
    f = fleet(limits={"max_sessions_per_ip": "2"})
    for m in f.moats:
        assert fleet_rig.http_get(f.ports[f.moats.index(m)]["metrics"], "/readyz")[0] == 200
    f.redis.kill()
    src = "127.0.0.13"
    held = []
    # both replicas keep serving, each on its own limit of 2: four sessions in all
    for i in range(4):
        s, line = greet(f.front["smtp"], src)
        assert line.startswith(SMTP_OK), (i, line)
        held.append(s)
    s, line = greet(f.front["smtp"], src)  # m1's third
    assert line.startswith(SMTP_BUSY), line
    s.close()
    for i, m in enumerate(f.moats):
        assert m.log().count("event=cluster_down") == 1
        status, body = fleet_rig.http_get(f.ports[i]["metrics"], "/metrics")
        assert fleet_rig.metric(body, "moat_cluster_links_up") == 0
        assert fleet_rig.metric(body, "moat_cluster_fallbacks_total") >= 2
        assert fleet_rig.http_get(f.ports[i]["metrics"], "/readyz")[0] == 200
    # Redis comes back (empty): the links reconnect and the live sessions count again
    f.redis.start()
    for m in f.moats:
        rig.wait_until(lambda: "event=cluster_up" in m.log().split("event=cluster_down")[-1],
                       10.0, what="cluster_up")
    rig.wait_until(lambda: f.redis.cli("ZCARD", "moat:c:{%s}" % src) == "4", 5.0,
                   what="leases renewed")
    for s in held:
        s.close()
    src = "127.0.0.14"
    held = []
    for i in range(2):
        s, line = greet(f.front["smtp"], src)
        assert line.startswith(SMTP_OK), (i, line)
        held.append(s)
    s, line = greet(f.front["smtp"], src)
    assert line.startswith(SMTP_BUSY), line
    s.close()
    for s in held:
        s.close()


def test_redis_slow_sessions_do_not_wait(fleet):
    """A Redis that stops answering (SIGSTOP): admissions fall back to local counters after the
    short timeout, the link is declared down, and it comes back when Redis answers again."""
    f = fleet(limits={"max_sessions_per_ip": "2"},
              cluster_keys="timeout = 200ms\nconnect_timeout = 500ms\n")
    src = "127.0.0.17"
    f.redis.proc.send_signal(rig.signal.SIGSTOP)
    try:
        held = []
        for i in range(4):  # two per replica: each replica's own limit
            s, line = greet(f.front["smtp"], src)
            assert line.startswith(SMTP_OK), (i, line)
            held.append(s)
        for m in f.moats:
            rig.wait_until(lambda: "event=cluster_down" in m.log(), 10.0, what="cluster_down")
        # reconnects reach the stopped server's backlog, but a link is up only when Redis
        # answers: no flapping while it hangs
        time.sleep(2)
        for m in f.moats:
            log = m.log()
            assert log.count("event=cluster_down") == 1, log
            assert "event=cluster_up" not in log.split("event=cluster_down")[-1]
    finally:
        f.redis.proc.send_signal(rig.signal.SIGCONT)
    for m in f.moats:
        rig.wait_until(lambda: "event=cluster_up" in m.log().split("event=cluster_down")[-1],
                       10.0, what="cluster_up")
    for s in held:
        s.close()


def test_redis_password(fleet):
    """A wrong password: the link is down (logged once, without the password) and both
    replicas serve on local limits; the right one shares."""
    f = fleet(limits={"max_sessions_per_ip": "1"}, redis_password="pw-right-7d2e",
              cluster_keys="password = pw-wrong-91ac\n", wait_cluster=False)
    for m in f.moats:
        rig.wait_until(lambda: "event=cluster_down" in m.log(), 5.0, what="cluster_down")
        assert "AUTH refused" in m.log() and "pw-wrong-91ac" not in m.log()
    held = []
    for i in range(2):  # one per replica
        s, line = greet(f.front["smtp"], "127.0.0.18")
        assert line.startswith(SMTP_OK), (i, line)
        held.append(s)
    for s in held:
        s.close()
    g = fleet(limits={"max_sessions_per_ip": "1"}, redis_password="pw-right-7d2e",
              cluster_keys="password = pw-right-7d2e\n")
    s, line = greet(g.front["smtp"], "127.0.0.19")
    assert line.startswith(SMTP_OK), line
    t, line = greet(g.front["smtp"], "127.0.0.19")
    assert line.startswith(SMTP_BUSY), line
    s.close()
    t.close()
    assert all("pw-right-7d2e" not in m.log() for m in g.moats)


# --- configuration and the examples ---------------------------------------------------------------

def moat_check(text, tmp_path):
    binary = rig.os.environ.get("MOAT_BIN") or rig.os.path.join(rig.ROOT, "build", "moat")
    if not rig.os.access(binary, rig.os.X_OK):
        pytest.skip("moat binary missing")
    conf = tmp_path / "check.conf"
    conf.write_text(rig.allow_root_for_tests(text))
    return subprocess.run([binary, "-t", "-c", str(conf)], capture_output=True, text=True,
                          timeout=10)


def test_proxy_protocol_without_a_trusted_balancer_is_refused(certs, tmp_path):
    text = rig.moat_conf(certs, backends={"pf": {"address": "127.0.0.1:10025"}}, listeners={
        "mx": {"protocol": "smtp", "listen": "127.0.0.1:2525", "backend": "pf",
               "proxy_protocol": "v2"}})
    r = moat_check(text, tmp_path)
    assert r.returncode != 0
    assert "proxy_trusted: [listener mx] uses proxy_protocol = v2 but trusts no balancer" in (
        r.stdout + r.stderr)
    r = moat_check(text.replace("proxy_protocol = v2", "proxy_protocol = v3"), tmp_path)
    assert r.returncode != 0 and "expected one of off, v1, v2, any" in r.stdout + r.stderr


def test_fleet_examples_check(certs, tmp_path):
    d = rig.os.path.join(rig.ROOT, "docker", "fleet")
    text = rig.read_text(rig.os.path.join(d, "moat.conf"))
    text = text.replace("/etc/moat/tls/fullchain.pem", certs.ecdsa)
    text = text.replace("/etc/moat/tls/privkey.pem", certs.ecdsa_key)
    r = moat_check(text, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([fleet_rig.tool("haproxy"), "-c", "-f", rig.os.path.join(d, "haproxy.cfg")],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stdout + r.stderr
    if fleet_rig.tool("docker-compose"):
        r = subprocess.run(["docker-compose", "-f", rig.os.path.join(d, "compose.yaml"), "config"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert "send-proxy-v2" in rig.read_text(rig.os.path.join(d, "haproxy.cfg"))
