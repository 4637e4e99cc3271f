"""The three fronts compared by tests/bench/compare.py, each started privately on loopback in
front of the integration rig's Postfix + Dovecot, with the same certificates and TLS policy:

- moat (two processes: one with the ECDSA certificate, one with the RSA one, since moat picks
  a certificate by SNI only),
- nginx with Debian's mail module (libnginx-mod-mail), with a tiny auth_http server here,
- HAProxy in mode tcp: TLS termination only, no protocol work (the floor).

Each front exposes the same listener names (ports differ):
  imaps_ecdsa, imaps_rsa   IMAP over implicit TLS -> Dovecot
  imap_plain               IMAP without TLS -> Dovecot
  submissions              SMTP submission over implicit TLS, AUTH -> Postfix (XCLIENT port)
  mx                       SMTP with STARTTLS -> Postfix (XCLIENT port); HAProxy: none (mode
                           tcp cannot terminate STARTTLS)
  smtp_plain               SMTP without TLS (greeting latency): moat's and nginx's mx; HAProxy
                           relays to Postfix

Every process is ours (started here, stopped by pid); nothing listens beyond 127.0.0.1.
"""

import http.server
import os
import subprocess
import threading
import urllib.parse

import rig

# The TLS policy every front gets: TLS 1.2 minimum; AEAD suites only; X25519 and P-256.
TLS13_SUITES = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
TLS12_CIPHERS = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                 "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                 "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305")
WOLFSSL_CIPHERS = ("TLS13-AES128-GCM-SHA256:TLS13-AES256-GCM-SHA384:"
                   "TLS13-CHACHA20-POLY1305-SHA256:" + TLS12_CIPHERS)
GROUPS_OPENSSL = "X25519:prime256v1"
GROUPS_MOAT = "X25519:P-256"

NGINX = "/usr/sbin/nginx"
NGINX_MAIL_MODULE = "/usr/lib/nginx/modules/ngx_mail_module.so"
HAPROXY = "/usr/sbin/haproxy"


# ---------------------------------------------------------------------------------------------
# /proc readings


def children(pid):
    """Direct children of pid (nginx workers)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(name))
        except (OSError, ValueError, IndexError):
            pass
    return out


def cpu_secs(pid):
    """CPU time (user + system) of every thread of pid, in seconds, with nanosecond resolution:
    the sum of /proc/PID/task/*/schedstat (the same clock utime + stime of /proc/PID/stat are
    read from, without their 10 ms ticks). Falls back to /proc/PID/stat."""
    total, seen = 0, False
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except OSError:
        tasks = []
    for t in tasks:
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, t)) as f:
                total += int(f.read().split()[0])
                seen = True
        except (OSError, ValueError, IndexError):
            pass
    if seen:
        return total / 1e9
    return stat_cpu_secs(pid)


def stat_cpu_secs(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


# ---------------------------------------------------------------------------------------------
# the fronts


class Front:
    """A front: start() on its own loopback ports, pids(), cpu(), rss(), stop()."""

    name = "?"
    listeners = ("imaps_ecdsa", "imaps_rsa", "imap_plain", "submissions", "mx", "smtp_plain")

    def __init__(self, bench, tag):
        self.bench = bench
        self.dir = os.path.join(bench.work, tag)
        os.makedirs(self.dir, exist_ok=True)
        self.procs = []
        self.ports = {}

    def pids(self):
        out = []
        for p in self.procs:
            if p.poll() is None:
                out.append(p.pid)
                out += children(p.pid)
        return out

    def cpu(self):
        return sum(cpu_secs(p) for p in self.pids())

    def stat_cpu(self):
        return sum(stat_cpu_secs(p) for p in self.pids())

    def rss(self):
        return sum(rss_kb(p) for p in self.pids())

    def supports(self, listener):
        return listener in self.ports

    def _spawn(self, argv, log, ports):
        logf = open(os.path.join(self.dir, log), "ab")
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                             cwd=self.dir, start_new_session=True)
        logf.close()
        self.procs.append(p)
        try:
            rig.wait_ports(ports, 10, alive=lambda: p.poll() is None)
        except (TimeoutError, RuntimeError) as e:
            self.stop()
            raise RuntimeError("%s did not come up: %s\n%s" % (
                self.name, e, rig.read_text(os.path.join(self.dir, log))[-3000:])) from None

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
        self.procs = []


class MoatFront(Front):
    name = "moat"

    def start(self):
        b, certs = self.bench.backends.ports, self.bench.certs
        names = ("imaps_ecdsa", "imap_plain", "submissions", "mx")
        self.ports = dict(zip(names + ("imaps_rsa",), rig.free_ports(len(names) + 1)))
        self.ports["smtp_plain"] = self.ports["mx"]
        dovecot = {"address": "127.0.0.1:%d" % b["imap"], "identity": "id"}
        postfix = {"address": "127.0.0.1:%d" % b["smtp_xclient"], "identity": "xclient"}
        lsn = lambda name, **kv: dict(kv, listen="127.0.0.1:%d" % self.ports[name])  # noqa
        main = {
            "imaps": lsn("imaps_ecdsa", protocol="imap", tls="implicit", backend="dovecot"),
            "imap": lsn("imap_plain", protocol="imap", tls="none", backend="dovecot"),
            "subs": lsn("submissions", protocol="submission", tls="implicit", backend="postfix",
                        auth="yes"),
            "mx": lsn("mx", protocol="smtp", tls="starttls", backend="postfix",
                      local_domains=rig.LOCAL_DOMAIN),
        }
        rsa = {"imaps": lsn("imaps_rsa", protocol="imap", tls="implicit", backend="dovecot")}
        for tag, listeners, cert, key in (("ecdsa", main, certs.ecdsa, certs.ecdsa_key),
                                          ("rsa", rsa, certs.rsa, certs.rsa_key)):
            conf = rig.moat_conf(certs, backends={"dovecot": dovecot, "postfix": postfix},
                                 listeners=listeners, extra=MOAT_EXTRA)
            conf = conf.replace("[moat]\n", "[moat]\nmax_sessions = 20000\nlog_file = %s\n"
                                % os.path.join(self.dir, "moat-%s.log" % tag), 1)
            conf = conf.replace("certificate = %s\nkey = %s\n" % (certs.ecdsa, certs.ecdsa_key),
                                "certificate = %s\nkey = %s\nmin_version = 1.2\nciphers = %s\n"
                                "groups = %s\nticket_lifetime = 1h\n"
                                % (cert, key, WOLFSSL_CIPHERS, GROUPS_MOAT))
            path = os.path.join(self.dir, "moat-%s.conf" % tag)
            rig.write_file(path, rig.allow_root_for_tests(conf))
            self._spawn([self.bench.args.moat, "-c", path], "moat-%s.out" % tag,
                        [int(v.rsplit(":", 1)[1]) for v in
                         (kv["listen"] for kv in listeners.values())])
        return self


MOAT_EXTRA = """[limits]
max_sessions_per_ip = 0
connection_rate_per_ip = 0
messages_per_client = 0
recipients_per_client = 0
[timeouts]
preauth_idle = 10m
preauth_total = 30m
[auth]
ban_ip = 0
ban_user = 0
"""


class AuthHTTP:
    """nginx mail's auth_http endpoint: checks the password against the rig's users (as
    Dovecot would) and sends IMAP to Dovecot, SMTP to Postfix's XCLIENT port. One thread."""

    def __init__(self, backends):
        imap = ("127.0.0.1", backends.ports["imap_proxy"])
        smtp = ("127.0.0.1", backends.ports["smtp_xclient"])

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                h = self.headers
                method = h.get("Auth-Method", "")
                user = urllib.parse.unquote(h.get("Auth-User", ""))
                password = urllib.parse.unquote(h.get("Auth-Pass", ""))
                self.send_response(200)
                if method != "none" and rig.USERS.get(user) != password:
                    self.send_header("Auth-Status", "Invalid login or password")
                    self.send_header("Auth-Wait", "1")
                else:
                    host, port = imap if h.get("Auth-Protocol") == "imap" else smtp
                    self.send_header("Auth-Status", "OK")
                    self.send_header("Auth-Server", host)
                    self.send_header("Auth-Port", str(port))
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class NginxFront(Front):
    name = "nginx"

    def start(self):
        certs = self.bench.certs
        names = ("imaps_ecdsa", "imaps_rsa", "imap_plain", "submissions", "mx")
        self.ports = dict(zip(names, rig.free_ports(len(names))))
        self.ports["smtp_plain"] = self.ports["mx"]
        p = self.ports
        ecdsa = "ssl_certificate %s;\n    ssl_certificate_key %s;" % (certs.ecdsa, certs.ecdsa_key)
        rsa = "ssl_certificate %s;\n    ssl_certificate_key %s;" % (certs.rsa, certs.rsa_key)
        conf = f"""\
# tests/bench: nginx mail in front of the rig's Dovecot and Postfix, on loopback only.
load_module {NGINX_MAIL_MODULE};
worker_processes 2;
worker_rlimit_nofile 20000;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log warn;
events {{
  worker_connections 10000;
}}
mail {{
  server_name mx.moat.test;
  auth_http 127.0.0.1:{self.bench.auth_http.port}/auth;
  proxy_pass_error_message on;
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_ciphers {TLS12_CIPHERS};
  ssl_conf_command Ciphersuites {TLS13_SUITES};
  ssl_ecdh_curve {GROUPS_OPENSSL};
  ssl_session_tickets on;
  ssl_session_timeout 1h;
  {ecdsa}
  server {{
    listen 127.0.0.1:{p["imaps_ecdsa"]} ssl;
    protocol imap;
    proxy_protocol on;
  }}
  server {{
    listen 127.0.0.1:{p["imaps_rsa"]} ssl;
    protocol imap;
    proxy_protocol on;
    {rsa}
  }}
  server {{
    listen 127.0.0.1:{p["imap_plain"]};
    protocol imap;
    proxy_protocol on;
  }}
  server {{
    listen 127.0.0.1:{p["submissions"]} ssl;
    protocol smtp;
    smtp_auth plain login;
    xclient on;
  }}
  server {{
    listen 127.0.0.1:{p["mx"]};
    protocol smtp;
    starttls on;
    smtp_auth none;
    xclient on;
  }}
}}
"""
        path = os.path.join(self.dir, "nginx.conf")
        rig.write_file(path, conf)
        self._spawn([NGINX, "-p", self.dir, "-c", path, "-e", os.path.join(self.dir, "error.log"),
                     "-g", "daemon off; master_process on;"], "nginx.out",
                    list(set(self.ports.values())))
        # The workers are up when the master has forked them.
        rig.wait_until(lambda: len(self.pids()) >= 3, 10, what="nginx workers")
        return self


class HAProxyFront(Front):
    name = "haproxy"

    def start(self):
        b, certs = self.bench.backends.ports, self.bench.certs
        names = ("imaps_ecdsa", "imaps_rsa", "imap_plain", "submissions", "smtp_plain")
        self.ports = dict(zip(names, rig.free_ports(len(names))))
        p = self.ports
        pems = {}
        for kind, cert, key in (("ecdsa", certs.ecdsa, certs.ecdsa_key),
                                ("rsa", certs.rsa, certs.rsa_key)):
            pems[kind] = os.path.join(self.dir, kind + ".pem")
            rig.write_file(pems[kind], rig.read_text(cert) + rig.read_text(key), 0o600)
        tls = "ssl crt %%s curves %s" % GROUPS_OPENSSL.replace("prime256v1", "P-256")
        conf = f"""\
# tests/bench: HAProxy in mode tcp, TLS termination only, on loopback only.
global
  maxconn 9000
  nbthread 2
  pidfile {self.dir}/haproxy.pid
  ssl-default-bind-options ssl-min-ver TLSv1.2
  ssl-default-bind-ciphers {TLS12_CIPHERS}
  ssl-default-bind-ciphersuites {TLS13_SUITES}
defaults
  mode tcp
  timeout connect 5s
  timeout client 1h
  timeout server 1h
frontend imaps_ecdsa
  bind 127.0.0.1:{p["imaps_ecdsa"]} {tls % pems["ecdsa"]}
  default_backend dovecot
frontend imaps_rsa
  bind 127.0.0.1:{p["imaps_rsa"]} {tls % pems["rsa"]}
  default_backend dovecot
frontend imap_plain
  bind 127.0.0.1:{p["imap_plain"]}
  default_backend dovecot
frontend submissions
  bind 127.0.0.1:{p["submissions"]} {tls % pems["ecdsa"]}
  default_backend postfix_submission
frontend smtp_plain
  bind 127.0.0.1:{p["smtp_plain"]}
  default_backend postfix_mx
backend dovecot
  server dovecot 127.0.0.1:{b["imap_proxy"]} send-proxy-v2
backend postfix_submission
  server postfix 127.0.0.1:{b["smtp_xclient"]}
backend postfix_mx
  server postfix 127.0.0.1:{b["smtp_proxy"]} send-proxy
"""
        path = os.path.join(self.dir, "haproxy.cfg")
        rig.write_file(path, conf)
        self._spawn([HAPROXY, "-db", "-f", path], "haproxy.out", list(self.ports.values()))
        return self


FRONTS = (MoatFront, NginxFront, HAProxyFront)


def missing_tools():
    """What is missing to run the comparison (Debian packages to install)."""
    out = []
    if not os.access(NGINX, os.X_OK):
        out.append("nginx-light")
    if not os.path.exists(NGINX_MAIL_MODULE):
        out.append("libnginx-mod-mail")
    if not os.access(HAPROXY, os.X_OK):
        out.append("haproxy")
    return out
