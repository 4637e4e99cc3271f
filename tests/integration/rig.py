"""Real-backend test rig for moat's integration tests and demo.

Starts PRIVATE Postfix and Dovecot instances (never the system ones, never /etc configs) in a
temporary directory on free loopback ports, configured like a legacy mail server that trusts
loopback: from 127.0.0.1 Postfix relays anywhere (mynetworks), so a naive proxy in front of it
would be an open relay. moat's tests check what reached these backends: the maildirs, the
Postfix queue and the two daemons' logs.

Also holds the client-side helpers the tests share: free ports, sockets bound to 127.0.0.2+
(127.0.0.1 is moat's own trusted address, clients must never use it), smtplib/imaplib/poplib
wrappers with a source address, a TLS context trusting the test CA, and a runner for the moat
binary.

Plain module: imported by conftest.py, usable from scripts as
    /usr/bin/python3 tests/integration/rig.py serve STATE_DIR
which starts the backends in STATE_DIR, writes STATE_DIR/backends.env and runs until SIGINT or
SIGTERM (used by scripts/demo).

Every wait here is bounded in time; every loop is bounded in count.
"""

import email.utils
import grp
import imaplib
import json
import os
import poplib
import pwd
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MKCERTS = os.path.join(ROOT, "certs", "mkcerts.sh")

USERS = {
    "alice@example.test": "alice-secret-1",
    "bob@example.test": "bob-secret-2",
}
LOCAL_DOMAIN = "example.test"
# Dovecot master user (master passdb, separator "*"): moat logs in on a user's behalf with it
# after CRAM-MD5 / SCRAM, which carry no password to replay.
MASTER_USER = "moat-master"
MASTER_PASSWORD = "master-secret-4c1d"
BACKEND_HOSTNAME = "mail.example.test"
MAIL_USER = "moatmail"  # owns the maildirs; Postfix virtual(8) and Dovecot both run as it

POSTFIX_DAEMON_DIR = "/usr/lib/postfix/sbin"


# ---------------------------------------------------------------------------------------------
# small utilities


def wait_until(pred, timeout=5.0, interval=0.02, what="condition"):
    """Poll pred() until it returns a true value (returned) or timeout seconds pass (raises)."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 2):
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    raise TimeoutError("timed out after %.1fs waiting for %s" % (timeout, what))


PORT_REGISTRY = "/tmp/moat-test-ports.json"  # ports handed out lately, across test processes
PORT_HOLD_S = 1800  # a port handed out is not handed out again for this long


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(n, host="127.0.0.1"):
    """n distinct free TCP ports on host. Taken below the kernel's ephemeral range, so that no
    outgoing connection (a test client, moat's backend leg) can take one between this call and
    the server's bind, and recorded in a registry shared by every test process under a lock, so
    that two parallel pytest processes never get the same port. Falls back to ports the kernel
    picks (bind to 0) when there is no room below the ephemeral range."""
    import fcntl
    import random
    lo, hi = 20000, _ephemeral_low() - 1
    if hi - lo < 1000:
        return _kernel_ports(n, host)
    with open(PORT_REGISTRY + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        now = time.time()
        try:
            with open(PORT_REGISTRY) as f:
                recent = {int(k): v for k, v in json.load(f).items() if now - v < PORT_HOLD_S}
        except (OSError, ValueError):
            recent = {}
        got = []
        for _ in range(50 * n + 200):  # bounded: a busy range falls back below
            if len(got) == n:
                break
            port = random.randint(lo, hi)
            if port in recent or port in got:
                continue
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((host, port))
                got.append(port)
            except OSError:
                pass
            finally:
                s.close()
        if len(got) < n:
            got += _kernel_ports(n - len(got), host)
        for port in got:
            recent[port] = now
        tmp = PORT_REGISTRY + ".%d" % os.getpid()
        with open(tmp, "w") as f:
            json.dump(recent, f)
        os.replace(tmp, PORT_REGISTRY)
        return got


def _kernel_ports(n, host):
    """n distinct free TCP ports on host (bound to port 0 together, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port(host="127.0.0.1"):
    return free_ports(1, host)[0]


def port_open(port, host="127.0.0.1", timeout=0.2):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def listening_ports():
    """Set of (address, port) in LISTEN state, from /proc/net/tcp and tcp6 (addresses as
    inet_ntop gives them: "127.0.0.1", "::1", "::"). Checking this instead of connecting keeps
    probe connections out of the daemons' (and moat's) logs and counters."""
    out = set()
    for path, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        try:
            with open(path) as f:
                lines = f.readlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != "0A":  # TCP_LISTEN
                continue
            addr, port = fields[1].split(":")
            # The kernel prints each 32-bit word of the address in host (little-endian) order.
            raw = b"".join(int(addr[i:i + 8], 16).to_bytes(4, "little")
                           for i in range(0, len(addr), 8))
            out.add((socket.inet_ntop(family, raw), int(port, 16)))
    return out


def wait_ports(ports, timeout=5.0, host="127.0.0.1", alive=None, connect=False):
    """Wait until every port listens on host (or on a wildcard address), or accepts TCP if
    connect; alive() (if given) returning false means give up at once."""
    def ready():
        if alive is not None and not alive():
            raise RuntimeError("process exited while waiting for ports %s" % list(ports))
        if connect:
            return all(port_open(p, host) for p in ports)
        ls = listening_ports()
        return all((host, p) in ls or ("0.0.0.0", p) in ls or ("::", p) in ls for p in ports)
    wait_until(ready, timeout, what="ports %s" % list(ports))


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still "exists": reap it if it is ours.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        pass
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def stop_pid(pid, timeout=5.0, group=False):
    """SIGTERM pid, wait up to timeout, then SIGKILL (the process group if group)."""
    if not pid or not pid_alive(pid):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        wait_until(lambda: not pid_alive(pid), timeout, what="pid %d to exit" % pid)
    except TimeoutError:
        pass
    try:
        (os.killpg if group else os.kill)(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def read_text(path):
    try:
        with open(path, "r", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def write_file(path, text, mode=0o644):
    """Write a file and date it 10 s in the past: Postfix refuses to read a configuration or
    table file modified within the last second ("being edited") and sleeps in 300 ms steps
    until it is old enough, which would add ~2 s to every start."""
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    past = time.time() - 10
    os.utime(path, (past, past))


def mail_ids():
    """uid/gid of the mail owner; creates the system user on first use (root only)."""
    try:
        pw = pwd.getpwnam(MAIL_USER)
    except KeyError:
        # Parallel test processes may race here; a failed useradd is fine if the user exists.
        subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", "--user-group", MAIL_USER],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        pw = pwd.getpwnam(MAIL_USER)
    return pw.pw_uid, pw.pw_gid


# ---------------------------------------------------------------------------------------------
# the backends


PORT_NAMES = ("smtp_plain", "smtp_xclient", "smtp_proxy", "imap", "imap_proxy", "pop3",
              "pop3_proxy", "smtp_strict", "smtp_slow", "smtp_xclient_lax")


class Backends:
    """A private Postfix + Dovecot pair in one directory.

    Attributes: dir, ports {name: port} (see PORT_NAMES), users {address: password},
    host ("127.0.0.1").
    """

    host = "127.0.0.1"

    def __init__(self, directory=None):
        self.dir = directory or tempfile.mkdtemp(prefix="mr", dir="/tmp")
        self.own_dir = directory is None
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)  # Postfix/Dovecot users must traverse it
        self.users = dict(USERS)
        self.ports = dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES))))
        self.uid, self.gid = mail_ids()
        # Postfix
        self.pf_conf = os.path.join(self.dir, "pf")     # config_directory: main.cf, master.cf
        self.pf_queue = os.path.join(self.dir, "pq")    # queue_directory
        self.pf_data = os.path.join(self.dir, "pd")     # data_directory
        self.pf_log = os.path.join(self.dir, "postfix.log")
        # Dovecot
        self.dv_dir = os.path.join(self.dir, "dv")
        self.dv_conf = os.path.join(self.dv_dir, "dovecot.conf")
        self.dv_run = os.path.join(self.dv_dir, "run")  # base_dir (sockets, master.pid)
        self.dv_log = os.path.join(self.dir, "dovecot.log")
        self.auth_socket = os.path.join(self.dv_dir, "auth-postfix")  # for Postfix SASL
        # mail
        self.mail_base = os.path.join(self.dir, "mail")
        self._started = False

    # --- paths and reading state --------------------------------------------------------

    def maildir(self, user):
        local, domain = user.split("@", 1)
        return os.path.join(self.mail_base, domain, local)

    def messages(self, user):
        """[(path, bytes)] of every message in user's INBOX (new/ and cur/)."""
        out = []
        for sub in ("new", "cur"):
            d = os.path.join(self.maildir(user), sub)
            try:
                names = sorted(os.listdir(d))
            except FileNotFoundError:
                continue
            for name in names:
                p = os.path.join(d, name)
                try:
                    with open(p, "rb") as f:
                        out.append((p, f.read()))
                except FileNotFoundError:  # moved new/ -> cur/ by Dovecot meanwhile
                    pass
        return out

    def wait_maildir(self, user, match, timeout=5.0):
        """Wait for a message in user's maildir; match is a substring (str/bytes) or a
        predicate on the message bytes. Returns the message bytes."""
        if callable(match):
            pred = match
        else:
            needle = match.encode() if isinstance(match, str) else match
            pred = lambda data: needle in data  # noqa: E731

        def found():
            for _, data in self.messages(user):
                if pred(data):
                    return data
            return None
        return wait_until(found, timeout, 0.02, "mail matching %r for %s" % (match, user))

    def cleanup_maildirs(self):
        """Delete every message of every user (Dovecot copes with vanished files)."""
        for user in self.users:
            for sub in ("new", "cur", "tmp"):
                d = os.path.join(self.maildir(user), sub)
                for name in os.listdir(d) if os.path.isdir(d) else ():
                    try:
                        os.unlink(os.path.join(d, name))
                    except FileNotFoundError:
                        pass

    def postfix_log(self):
        return read_text(self.pf_log)

    def dovecot_log(self):
        return read_text(self.dv_log)

    def queue_entries(self):
        """Parsed `postqueue -j` records (one dict per queued message)."""
        r = subprocess.run(["postqueue", "-c", self.pf_conf, "-j"], capture_output=True,
                           text=True, timeout=10)
        if r.returncode != 0:
            raise RuntimeError("postqueue -j failed: %s" % r.stderr.strip())
        return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]

    def queue(self):
        """Recipient addresses of every queued message."""
        return [rc["address"] for e in self.queue_entries() for rc in e.get("recipients", [])]

    def flush_queue(self):
        """Delete every queued message."""
        subprocess.run(["postsuper", "-c", self.pf_conf, "-d", "ALL"], capture_output=True,
                       timeout=10, check=True)

    # --- helpers that talk to the backends directly -------------------------------------

    def deliver(self, to, subject, body, sender="rig@sender.test", timeout=5.0):
        """Inject a mail via smtp_plain from 127.0.0.1 and wait until it is in to's maildir.
        Returns the delivered message bytes."""
        marker = "<rig-%d-%d@rig.test>" % (os.getpid(), time.monotonic_ns())
        msg = ("From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: %s\r\n\r\n%s\r\n"
               % (sender, to, subject, email.utils.formatdate(), marker, body))
        with smtplib.SMTP(self.host, self.ports["smtp_plain"], timeout=timeout,
                          source_address=("127.0.0.1", 0)) as s:
            s.sendmail(sender, [to], msg.encode())
        return self.wait_maildir(to, marker, timeout)

    # --- configuration -------------------------------------------------------------------

    def _write_postfix(self):
        # Create the queue and data directories as /etc/postfix/postfix-files says, then
        # touch quick-start: `postfix start` then skips its integrity checks, which take ~2 s
        # (post-install create-missing, postsuper, find over the whole tree).
        postfix_uid = pwd.getpwnam("postfix").pw_uid
        postdrop_gid = grp.getgrnam("postdrop").gr_gid
        os.makedirs(self.pf_conf, exist_ok=True)
        dirs = [(self.pf_queue, 0, -1, 0o755), (self.pf_data, postfix_uid, -1, 0o700),
                (os.path.join(self.pf_queue, "pid"), 0, -1, 0o755),
                (os.path.join(self.pf_queue, "maildrop"), postfix_uid, postdrop_gid, 0o730),
                (os.path.join(self.pf_queue, "public"), postfix_uid, postdrop_gid, 0o710)]
        dirs += [(os.path.join(self.pf_queue, q), postfix_uid, -1, 0o700) for q in
                 ("active", "bounce", "corrupt", "defer", "deferred", "flush", "hold",
                  "incoming", "private", "saved", "trace")]
        for path, uid, gid, mode in dirs:
            os.makedirs(path, exist_ok=True)
            os.chown(path, uid, gid)
            os.chmod(path, mode)
        write_file(os.path.join(self.pf_queue, "quick-start"), "")
        vmailbox = os.path.join(self.pf_conf, "vmailbox")
        write_file(vmailbox, "".join("%s %s/\n" % (u, os.path.relpath(self.maildir(u),
                                                                      self.mail_base))
                                     for u in self.users))
        write_file(os.path.join(self.pf_conf, "main.cf"), f"""\
# Private test Postfix for moat's integration tests: a LEGACY server that trusts loopback.
compatibility_level = 3.6
queue_directory = {self.pf_queue}
data_directory = {self.pf_data}
myhostname = {BACKEND_HOSTNAME}
mydomain = example.test
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
# Loopback is trusted: from 127.0.0.1 this server relays anywhere (the open-relay trap).
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
# Local mailboxes (shared with Dovecot).
virtual_mailbox_domains = {LOCAL_DOMAIN}
virtual_mailbox_base = {self.mail_base}
virtual_mailbox_maps = texthash:{vmailbox}
virtual_uid_maps = static:{self.uid}
virtual_gid_maps = static:{self.gid}
virtual_minimum_uid = 1
# Mail for other domains stays in the queue: tests inspect it with postqueue -j.
defer_transports = smtp, relay
# No DNS anywhere.
smtp_dns_support_level = disabled
smtp_host_lookup = native
smtpd_peername_lookup = no
# Nothing local.
alias_maps =
alias_database =
local_recipient_maps =
biff = no
append_dot_mydomain = no
readme_directory = no
smtputf8_enable = no
# Logging to a file (postlogd, see master.cf), readable by the tests.
maillog_file = {self.pf_log}
maillog_file_prefixes = {self.dir}
""")
        common = "inet n - n - - smtpd"
        write_file(os.path.join(self.pf_conf, "master.cf"), f"""\
# Private test Postfix: six smtpd services on loopback high ports, no port 25.
# smtp_plain: trusts loopback via mynetworks, no XCLIENT.
127.0.0.1:{self.ports["smtp_plain"]} {common}
  -o syslog_name=postfix/smtp_plain
# smtp_xclient: XCLIENT from loopback; SMTP AUTH through Dovecot's auth socket; no TLS.
127.0.0.1:{self.ports["smtp_xclient"]} {common}
  -o syslog_name=postfix/smtp_xclient
  -o smtpd_authorized_xclient_hosts=127.0.0.0/8
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_sasl_type=dovecot
  -o smtpd_sasl_path={self.auth_socket}
  -o smtpd_tls_security_level=none
# smtp_strict: like smtp_xclient, but its first error ends the session with its own 421.
127.0.0.1:{self.ports["smtp_strict"]} {common}
  -o syslog_name=postfix/smtp_strict
  -o smtpd_authorized_xclient_hosts=127.0.0.0/8
  -o smtpd_hard_error_limit=1
  -o smtpd_error_sleep_time=0
# smtp_slow: like smtp_xclient, but its greeting comes a second late (a slow backend leg).
127.0.0.1:{self.ports["smtp_slow"]} {common}
  -o syslog_name=postfix/smtp_slow
  -o smtpd_authorized_xclient_hosts=127.0.0.0/8
  -o smtpd_delay_reject=no
  -o smtpd_client_restrictions=sleep,1
# smtp_proxy: HAProxy PROXY protocol (v1 and v2) in front of every session.
127.0.0.1:{self.ports["smtp_proxy"]} {common}
  -o syslog_name=postfix/smtp_proxy
  -o smtpd_upstream_proxy_protocol=haproxy
# smtp_xclient_lax: XCLIENT from loopback and IPv6 client addresses (inet_protocols = all),
# but TEST-NET-1 is in mynetworks: a backend that takes XCLIENT without honouring it (moat -B).
127.0.0.1:{self.ports["smtp_xclient_lax"]} {common}
  -o syslog_name=postfix/smtp_xclient_lax
  -o smtpd_authorized_xclient_hosts=127.0.0.0/8
  -o inet_protocols=all
  -o mynetworks=127.0.0.0/8,192.0.2.0/24
# service   type  private unpriv  chroot  wakeup  maxproc command
pickup      unix  n       -       n       60      1       pickup
cleanup     unix  n       -       n       -       0       cleanup
qmgr        unix  n       -       n       300     1       qmgr
rewrite     unix  -       -       n       -       -       trivial-rewrite
bounce      unix  -       -       n       -       0       bounce
defer       unix  -       -       n       -       0       bounce
trace       unix  -       -       n       -       0       bounce
verify      unix  -       -       n       -       1       verify
flush       unix  n       -       n       1000?   0       flush
proxymap    unix  -       -       n       -       -       proxymap
proxywrite  unix  -       -       n       -       1       proxymap
smtp        unix  -       -       n       -       -       smtp
relay       unix  -       -       n       -       -       smtp
showq       unix  n       -       n       -       -       showq
error       unix  -       -       n       -       -       error
retry       unix  -       -       n       -       -       error
discard     unix  -       -       n       -       -       discard
local       unix  -       n       n       -       -       local
virtual     unix  -       n       n       -       -       virtual
lmtp        unix  -       -       n       -       -       lmtp
anvil       unix  -       -       n       -       1       anvil
scache      unix  -       -       n       -       1       scache
postlog     unix-dgram n  -       n       -       1       postlogd
""")

    def _write_dovecot(self):
        for d in (self.dv_dir, self.dv_run, os.path.join(self.dv_dir, "state")):
            os.makedirs(d, exist_ok=True)
        os.chmod(self.dv_dir, 0o755)
        passwd = os.path.join(self.dv_dir, "passwd")
        write_file(passwd, "".join("%s:{PLAIN}%s\n" % (u, p) for u, p in self.users.items()),
                   0o640)
        os.chown(passwd, -1, grp.getgrnam("dovecot").gr_gid)
        master_users = os.path.join(self.dv_dir, "master-users")
        write_file(master_users, "%s:{PLAIN}%s\n" % (MASTER_USER, MASTER_PASSWORD), 0o640)
        os.chown(master_users, -1, grp.getgrnam("dovecot").gr_gid)
        p = self.ports
        write_file(self.dv_conf, f"""\
# Private test Dovecot for moat's integration tests: a LEGACY server that trusts loopback.
# Self-contained: nothing from /etc/dovecot is included.
instance_name = moat-rig-{os.path.basename(self.dir)}
protocols = imap pop3
listen = 127.0.0.1
base_dir = {self.dv_run}
state_dir = {self.dv_dir}/state
log_path = {self.dv_log}
info_log_path = {self.dv_log}
auth_verbose = yes
# Dovecot 2.3.19 still answers failures from a 500 ms timer (0..0.5 s), even with this at 0.
auth_failure_delay = 0
ssl = no
# Loopback is trusted: sessions from it count as secured and may pass ID/XCLIENT fields.
disable_plaintext_auth = yes
login_trusted_networks = 127.0.0.0/8
haproxy_trusted_networks = 127.0.0.0/8
auth_mechanisms = plain login
first_valid_uid = {self.uid}
last_valid_uid = {self.uid}
first_valid_gid = {self.gid}
last_valid_gid = {self.gid}
mail_location = maildir:{self.mail_base}/%d/%n
mail_max_userip_connections = 200
auth_master_user_separator = *
passdb {{
  driver = passwd-file
  args = {master_users}
  master = yes
  pass = yes
}}
passdb {{
  driver = passwd-file
  args = {passwd}
}}
userdb {{
  driver = static
  args = uid={self.uid} gid={self.gid} home={self.mail_base}/%d/%n
}}
service imap-login {{
  inet_listener imap {{
    port = {p["imap"]}
  }}
  inet_listener imap_proxy {{
    port = {p["imap_proxy"]}
    haproxy = yes
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {p["pop3"]}
  }}
  inet_listener pop3_proxy {{
    port = {p["pop3_proxy"]}
    haproxy = yes
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
# No auth penalty (the anvil-based growing delay per IP after failures): the delays moat's
# tests measure must be moat's own. mode = 0 is Dovecot's documented way to disable it.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service auth {{
  unix_listener {self.auth_socket} {{
    mode = 0660
    user = postfix
    group = postfix
  }}
}}
""")

    def _make_maildirs(self):
        os.makedirs(self.mail_base, exist_ok=True)
        os.chown(self.mail_base, self.uid, self.gid)
        for user in self.users:
            md = self.maildir(user)
            for sub in ("", "new", "cur", "tmp"):
                os.makedirs(os.path.join(md, sub), exist_ok=True)
            for d in (os.path.dirname(md), md, *(os.path.join(md, s) for s in
                                                 ("new", "cur", "tmp"))):
                os.chown(d, self.uid, self.gid)
                os.chmod(d, 0o700)

    # --- lifecycle -----------------------------------------------------------------------

    def start(self):
        if os.geteuid() != 0:
            raise RuntimeError("the backend rig must run as root (Postfix master, Dovecot)")
        self._make_maildirs()
        self._write_postfix()
        self._write_dovecot()
        self._started = True
        self.start_dovecot()  # first: Postfix SASL needs its auth socket
        errfile = os.path.join(self.dir, "postfix-start.err")
        with open(errfile, "w") as err:
            r = subprocess.run(["postfix", "-c", self.pf_conf, "start"],
                               stdin=subprocess.DEVNULL, stdout=err, stderr=err, timeout=30)
        if r.returncode != 0:
            raise RuntimeError("postfix start failed (%d): %s\n%s" % (
                r.returncode, read_text(errfile), self.postfix_log()))
        wait_ports([self.ports[n] for n in ("smtp_plain", "smtp_xclient", "smtp_proxy",
                                            "smtp_strict", "smtp_slow", "smtp_xclient_lax")], 10)
        return self

    def dovecot_pid(self):
        try:
            return int(read_text(os.path.join(self.dv_run, "master.pid")).split()[0])
        except (ValueError, IndexError):
            return None

    def postfix_pid(self):
        try:
            return int(read_text(os.path.join(self.pf_queue, "pid", "master.pid")).split()[0])
        except (ValueError, IndexError):
            return None

    def dovecot_running(self):
        pid = self.dovecot_pid()
        return bool(pid) and pid_alive(pid)

    def start_dovecot(self, timeout=10.0):
        """Start Dovecot (no-op if it is running), wait for its ports and auth socket."""
        if self.dovecot_running():
            return
        # The daemon inherits stdout/stderr: give it a file, not a pipe we would wait on.
        errfile = os.path.join(self.dv_dir, "start.err")
        with open(errfile, "w") as err:
            r = subprocess.run(["dovecot", "-c", self.dv_conf], stdin=subprocess.DEVNULL,
                               stdout=err, stderr=err, timeout=30)
        if r.returncode != 0:
            raise RuntimeError("dovecot start failed (%d): %s\n%s" % (
                r.returncode, read_text(errfile), self.dovecot_log()))
        wait_ports([self.ports[n] for n in ("imap", "imap_proxy", "pop3", "pop3_proxy")],
                   timeout)
        wait_until(lambda: os.path.exists(self.auth_socket), timeout, what="dovecot auth socket")

    def stop_dovecot(self, timeout=10.0):
        """Stop Dovecot (the master kills its children) and wait until its ports are closed."""
        pid = self.dovecot_pid()
        stop_pid(pid, timeout)
        wait_until(lambda: ("127.0.0.1", self.ports["imap"]) not in listening_ports(), timeout,
                   what="dovecot ports to close")

    def stop_postfix(self, timeout=10.0):
        # What `postfix -c DIR stop` does (SIGTERM to the master), without its fixed 1 s sleep
        # before it checks. The master is a process group leader: after it is gone, make sure
        # nothing of this instance lingers.
        pid = self.postfix_pid()
        stop_pid(pid, timeout, group=True)
        if pid:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def stop(self, remove=None):
        if self._started:
            self.stop_postfix()
            self.stop_dovecot()
            self._started = False
        if remove if remove is not None else (self.own_dir and not os.environ.get("MOAT_KEEP")):
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def env(self):
        """Shell-sourceable description (used by scripts/demo)."""
        lines = ["RIG_DIR=%s" % self.dir]
        lines += ["PORT_%s=%d" % (k.upper(), v) for k, v in self.ports.items()]
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# certificates


class Certs:
    """Paths of the test certificates made by certs/mkcerts.sh (see there)."""

    def __init__(self, directory):
        subprocess.run([MKCERTS, directory], check=True, timeout=60)
        self.dir = directory
        for name in ("ca", "ecdsa", "rsa", "other", "soon"):
            setattr(self, name, os.path.join(directory, name + ".pem"))
            setattr(self, name + "_key", os.path.join(directory, name + ".key"))


def client_context(certs=None, cafile=None, check_hostname=True):
    """A client TLS context trusting only the test CA (TLS 1.2+)."""
    ctx = ssl.create_default_context(cafile=cafile or certs.ca)
    ctx.check_hostname = check_hostname
    return ctx


# ---------------------------------------------------------------------------------------------
# clients: ALWAYS from 127.0.0.2 and up (127.0.0.1 is moat's own trusted address)


def src_addr(n=2):
    """127.0.0.n, n in 2..254."""
    if not 2 <= n <= 254:
        raise ValueError("client source address index must be 2..254")
    return "127.0.0.%d" % n


def client_socket(port, src="127.0.0.2", host="127.0.0.1", timeout=5.0):
    """A TCP connection to host:port from source address src."""
    return socket.create_connection((host, port), timeout=timeout, source_address=(src, 0))


def tls_socket(port, certs, src="127.0.0.2", server_hostname="mx.moat.test", ctx=None,
               timeout=5.0):
    """An implicit-TLS connection verified against the test CA."""
    ctx = ctx or client_context(certs)
    return ctx.wrap_socket(client_socket(port, src, timeout=timeout),
                           server_hostname=server_hostname)


def smtp(port, src="127.0.0.2", tls=False, certs=None, ctx=None, timeout=10.0,
         server_hostname="mx.moat.test"):
    """smtplib client from src; tls=True means implicit TLS (SMTP_SSL). For STARTTLS call
    .starttls(context=client_context(certs)) yourself."""
    if tls:
        ctx = ctx or client_context(certs)
        s = smtplib.SMTP_SSL(timeout=timeout, source_address=(src, 0), context=ctx)
        s._host = server_hostname  # used for SNI / verification by SMTP_SSL._get_socket
        s.connect("127.0.0.1", port)
        return s
    return smtplib.SMTP("127.0.0.1", port, timeout=timeout, source_address=(src, 0))


class IMAP(imaplib.IMAP4):
    """imaplib.IMAP4 from a chosen source address."""

    def __init__(self, port, src="127.0.0.2", host="127.0.0.1", timeout=10.0):
        self.source_address = (src, 0)
        super().__init__(host, port, timeout=timeout)

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout,
                                        source_address=self.source_address)


class IMAPS(imaplib.IMAP4_SSL):
    """imaplib.IMAP4_SSL (implicit TLS) from a chosen source address."""

    def __init__(self, port, certs=None, src="127.0.0.2", host="127.0.0.1", ctx=None,
                 server_hostname="mx.moat.test", timeout=10.0):
        self.source_address = (src, 0)
        self.server_hostname = server_hostname
        super().__init__(host, port, ssl_context=ctx or client_context(certs), timeout=timeout)

    def _create_socket(self, timeout):
        sock = socket.create_connection((self.host, self.port), timeout,
                                        source_address=self.source_address)
        return self.ssl_context.wrap_socket(sock, server_hostname=self.server_hostname)


class POP3(poplib.POP3):
    """poplib.POP3 from a chosen source address."""

    def __init__(self, port, src="127.0.0.2", host="127.0.0.1", timeout=10.0):
        self.source_address = (src, 0)
        super().__init__(host, port, timeout=timeout)

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout,
                                        source_address=self.source_address)


class POP3S(poplib.POP3_SSL):
    """poplib.POP3_SSL (implicit TLS) from a chosen source address."""

    def __init__(self, port, certs=None, src="127.0.0.2", host="127.0.0.1", ctx=None,
                 server_hostname="mx.moat.test", timeout=10.0):
        self.source_address = (src, 0)
        self.server_hostname = server_hostname
        super().__init__(host, port, context=ctx or client_context(certs), timeout=timeout)

    def _create_socket(self, timeout):
        sock = socket.create_connection((self.host, self.port), timeout,
                                        source_address=self.source_address)
        return self.context.wrap_socket(sock, server_hostname=self.server_hostname)


# ---------------------------------------------------------------------------------------------
# moat itself


def allow_root_for_tests(conf_text):
    """moat refuses to keep root without [moat] user; the rig runs it as root (private Postfix
    and Dovecot need root anyway), so a test config that sets neither user nor allow_root says
    allow_root = yes. Tests of the refusal itself start moat without this helper."""
    if os.geteuid() != 0 or re.search(r"(?m)^\s*(user|allow_root)\s*=", conf_text):
        return conf_text
    if re.search(r"(?m)^\[moat\]\s*$", conf_text):
        return re.sub(r"(?m)^\[moat\]\s*$", "[moat]\nallow_root = yes", conf_text, count=1)
    return "[moat]\nallow_root = yes\n" + conf_text


class Moat:
    """One running moat process: moat -c FILE, stdout+stderr to a log file. wrap: a command that
    execs moat (its pid stays moat's), e.g. unshare into a time namespace."""

    def __init__(self, binary, conf_text, workdir, ports=(), timeout=5.0, wrap=()):
        conf_text = allow_root_for_tests(conf_text)
        os.makedirs(workdir, exist_ok=True)
        self.conf_path = os.path.join(workdir, "moat.conf")
        self.log_path = os.path.join(workdir, "moat.log")
        write_file(self.conf_path, conf_text)
        self._logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(list(wrap) + [binary, "-c", self.conf_path],
                                     stdin=subprocess.DEVNULL,
                                     stdout=self._logf, stderr=subprocess.STDOUT,
                                     cwd=workdir, start_new_session=True)
        self.pid = self.proc.pid
        try:
            wait_ports(list(ports), timeout, alive=self.alive)
        except (TimeoutError, RuntimeError) as e:
            self.stop()
            raise RuntimeError("moat did not come up: %s\n--- moat log ---\n%s"
                               % (e, self.log())) from None

    def alive(self):
        return self.proc.poll() is None

    def log(self):
        return read_text(self.log_path)

    def signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def stop(self, timeout=5.0):
        """SIGTERM, then SIGKILL after timeout. Returns the exit status."""
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if not self._logf.closed:
            self._logf.close()
        return self.proc.returncode


def moat_conf(certs, backends=None, listeners=None, extra="", hostname="mx.moat.test",
              workers=2):
    """Build moat INI text.

    backends: {name: {"address": "127.0.0.1:PORT", "identity": "xclient", ...}}
    listeners: {name: {"protocol": "imap", "listen": "127.0.0.1:PORT", ...}}
    extra: appended verbatim (more sections or overrides).
    """
    parts = ["[moat]\nhostname = %s\nworkers = %d\n" % (hostname, workers),
             "[tls]\ncertificate = %s\nkey = %s\n" % (certs.ecdsa, certs.ecdsa_key)]
    for kind, sections in (("backend", backends or {}), ("listener", listeners or {})):
        for name, kv in sections.items():
            parts.append("[%s %s]\n%s" % (kind, name,
                                          "".join("%s = %s\n" % i for i in kv.items())))
    return "\n".join(parts) + ("\n" + extra if extra else "")


# ---------------------------------------------------------------------------------------------
# CLI: run the backends for scripts/demo


def _serve(state_dir):
    b = Backends(os.path.join(state_dir, "backends"))
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    signal.signal(signal.SIGINT, lambda *a: stop.append(1))
    try:
        b.start()
        write_file(os.path.join(state_dir, "backends.env"), b.env())
        # Bounded in count (one per second for at most a week), ends at the first signal.
        for _ in range(7 * 24 * 3600):
            if stop:
                break
            time.sleep(1)
    finally:
        b.stop(remove=False)
    return 0


def main(argv):
    if len(argv) == 3 and argv[1] == "serve":
        return _serve(argv[2])
    print("usage: %s serve STATE_DIR" % argv[0], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
