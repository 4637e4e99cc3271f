"""A fleet for the tests: a private redis-server and a HAProxy in mode tcp (send-proxy-v2,
round-robin, no health checks so the order is exact) in front of two moats on loopback ports.
Every wait is bounded; every process is stopped at teardown."""

import os
import shutil
import subprocess
import time

import rig


def tool(name):
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


class Redis:
    """redis-server on 127.0.0.1:port, nothing saved to disk; stop() kills it, start() brings
    it back on the same port (empty)."""

    def __init__(self, directory, port=None, password=None):
        self.dir = directory
        self.port = port or rig.free_port()
        self.password = password
        self.proc = None
        os.makedirs(directory, exist_ok=True)
        self.start()

    def start(self, timeout=5.0):
        self.log = open(os.path.join(self.dir, "redis.log"), "ab")
        self.proc = subprocess.Popen(
            [tool("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self.dir, "--daemonize", "no"]
            + (["--requirepass", self.password] if self.password else []),
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)
        rig.wait_ports([self.port], timeout, alive=lambda: self.proc.poll() is None)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None
        if not self.log.closed:
            self.log.close()
        rig.wait_until(lambda: not rig.port_open(self.port), 5.0, what="redis gone")

    def cli(self, *args):
        auth = ["--no-auth-warning", "-a", self.password] if self.password else []
        r = subprocess.run([tool("redis-cli"), "-h", "127.0.0.1", "-p", str(self.port), *auth,
                            *args],
                           capture_output=True, text=True, timeout=5)
        return r.stdout.strip()


HAPROXY_CONF = """global
    maxconn 500
defaults
    mode tcp
    timeout connect 2s
    timeout client 30s
    timeout server 30s
"""


class HAProxy:
    """haproxy -db with one frontend per service, each round-robin over the moats' ports with
    send-proxy-v2."""

    def __init__(self, directory, services):
        """services: {name: [moat port, moat port]} -> self.ports {name: frontend port}"""
        self.ports = dict(zip(services, rig.free_ports(len(services))))
        text = HAPROXY_CONF
        for name, backends in services.items():
            text += "frontend f_%s\n    bind 127.0.0.1:%d\n    default_backend b_%s\n" % (
                name, self.ports[name], name)
            text += "backend b_%s\n    balance roundrobin\n" % name
            for i, port in enumerate(backends):
                text += "    server m%d 127.0.0.1:%d send-proxy-v2\n" % (i + 1, port)
        os.makedirs(directory, exist_ok=True)
        self.conf = os.path.join(directory, "haproxy.cfg")
        rig.write_file(self.conf, text)
        self.log = open(os.path.join(directory, "haproxy.log"), "ab")
        self.proc = subprocess.Popen([tool("haproxy"), "-db", "-f", self.conf],
                                     stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        rig.wait_ports(list(self.ports.values()), 5.0, alive=lambda: self.proc.poll() is None)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()


def metric(text, name):
    """The value of an unlabelled metric in Prometheus text, or None."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def http_get(port, path, timeout=3.0):
    """(status, body) of GET path on 127.0.0.1:port."""
    s = rig.client_socket(port, src="127.0.0.1", timeout=timeout)
    try:
        s.sendall(b"GET %s HTTP/1.0\r\n\r\n" % path.encode())
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode(errors="replace")
