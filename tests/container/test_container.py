"""The container image for real (run by scripts/container-test, which builds the images first and
names them in $MOAT_IMAGE and $MAIL_IMAGE): moat's image runs read-only with every capability
dropped, as its non-root user, in front of the rig's Postfix and Dovecot (host network, loopback
only); mail goes in through the MX, submission and submissions listeners, IMAPS and POP3S read it,
/readyz answers 200, the image's HEALTHCHECK passes, and SIGTERM ends it with status 0 within the
grace. Then the examples, each with the sidecar image of docker/mail.Dockerfile:
docker/compose.yaml's two services (run as compose would) carry mail in and out, and
docker/k8s-pod.yaml under `podman kube play` comes up ready."""

import json
import os
import poplib
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import rig  # noqa: E402
import smtp_helpers  # noqa: E402

MOAT_IMAGE = os.environ.get("MOAT_IMAGE", "localhost/moat:test")
MAIL_IMAGE = os.environ.get("MAIL_IMAGE", "localhost/moat-mail:test")
GRACE_S = 20  # shutdown_grace in the test configuration
ALICE, BOB = "alice@example.test", "bob@example.test"


def podman(*args, timeout=120, check=True, input=None):
    p = subprocess.run(["podman"] + list(args), capture_output=True, text=True, timeout=timeout,
                       input=input)
    if check and p.returncode != 0:
        raise AssertionError("podman %s: exit %d\n%s%s" % (" ".join(args), p.returncode,
                                                          p.stdout, p.stderr))
    return p


def volumes_of(container):
    """Names of the volumes mounted in a container (anonymous ones included: the image's
    VOLUME /etc/moat gets one whenever only paths below it are mounted)."""
    r = podman("inspect", "-f", "{{range .Mounts}}{{.Name}} {{end}}", container, check=False)
    return r.stdout.split() if r.returncode == 0 else []


def remove_containers(*names):
    vols = [v for n in names for v in volumes_of(n)]
    for n in names:
        podman("rm", "-f", "-v", "-t", "0", n, check=False)
    for v in vols:
        podman("volume", "rm", "-f", v, check=False)


def http_get(port, path, timeout=5.0):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return 0, str(e)


@pytest.fixture(scope="module")
def certs():
    d = tempfile.mkdtemp(prefix="mcc", dir="/tmp")
    try:
        yield rig.Certs(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def backends():
    if os.geteuid() != 0:
        pytest.skip("the rig and podman need root")
    b = rig.Backends()
    try:
        b.start()
        yield b
    finally:
        b.stop()


def etc_moat(certs, conf_text):
    """A directory for /etc/moat: moat.conf and tls/{fullchain,privkey}.pem, readable by the
    image's moat user (uid 10025)."""
    d = tempfile.mkdtemp(prefix="mce", dir="/tmp")
    os.chmod(d, 0o755)
    os.mkdir(os.path.join(d, "tls"), 0o755)
    shutil.copy(certs.ecdsa, os.path.join(d, "tls", "fullchain.pem"))
    shutil.copy(certs.ecdsa_key, os.path.join(d, "tls", "privkey.pem"))
    for f in ("fullchain.pem", "privkey.pem"):
        os.chmod(os.path.join(d, "tls", f), 0o644)
    rig.write_file(os.path.join(d, "moat.conf"), conf_text)
    return d


def rig_conf(backends, ports):
    """moat.conf for the image in front of the rig: the sidecar layout of docker/moat.conf, on
    free loopback ports (host network)."""
    common = "local_domains = example.test\n"
    lst = [("mx", "smtp", "starttls", "smtp"), ("submission", "submission", "starttls", "smtp"),
           ("submissions", "submission", "implicit", "smtp"), ("imaps", "imap", "implicit", "imap"),
           ("pop3s", "pop3", "implicit", "pop3")]
    text = ("[moat]\nhostname = mx.moat.test\nworkers = 2\nlog_format = json\n"
            "metrics = 127.0.0.1:%d\nshutdown_grace = %ds\n\n[tls]\n"
            "certificate = /etc/moat/tls/fullchain.pem\nkey = /etc/moat/tls/privkey.pem\n\n"
            % (ports["metrics"], GRACE_S))
    text += ("[backend smtp]\naddress = 127.0.0.1:%d\nidentity = xclient\n\n"
             "[backend imap]\naddress = 127.0.0.1:%d\nidentity = id\n\n"
             "[backend pop3]\naddress = 127.0.0.1:%d\nidentity = xclient\n\n"
             % (backends.ports["smtp_xclient"], backends.ports["imap"], backends.ports["pop3"]))
    for name, proto, tls, backend in lst:
        text += ("[listener %s]\nprotocol = %s\nlisten = 127.0.0.1:%d\ntls = %s\nbackend = %s\n%s\n"
                 % (name, proto, ports[name], tls, backend, common))
    return text


@pytest.fixture(scope="module")
def moat_container(backends, certs):
    names = ("mx", "submission", "submissions", "imaps", "pop3s", "metrics")
    ports = dict(zip(names, rig.free_ports(len(names))))
    d = etc_moat(certs, rig_conf(backends, ports))
    name = "moat-ct-%s" % uuid.uuid4().hex[:8]
    podman("run", "-d", "--name", name, "--network", "host", "--read-only", "--cap-drop", "ALL",
           "--security-opt", "no-new-privileges",
           "-e", "MOAT_HEALTH_PORT=%d" % ports["metrics"], "-v", "%s:/etc/moat:ro" % d, MOAT_IMAGE)
    c = {"name": name, "ports": ports, "dir": d}
    try:
        rig.wait_ports(list(ports.values()), 20,
                       alive=lambda: podman("inspect", "-f", "{{.State.Running}}", name)
                       .stdout.strip() == "true")
        yield c
    finally:
        logs = podman("logs", name, check=False)
        print(logs.stdout + logs.stderr)
        remove_containers(name)
        shutil.rmtree(d, ignore_errors=True)


def proc_status(pid):
    fields = {}
    for line in rig.read_text("/proc/%d/status" % pid).splitlines():
        k, _, v = line.partition(":")
        fields[k] = v.split()
    return fields


def test_runs_read_only_unprivileged_as_moat_user(moat_container):
    name = moat_container["name"]
    info = podman("inspect", "-f", "{{.State.Pid}} {{.HostConfig.ReadonlyRootfs}} "
                  "{{.Config.User}}", name).stdout.split()
    pid, read_only, user = int(info[0]), info[1], info[2]
    assert read_only == "true" and user == "moat:moat"
    st = proc_status(pid)
    assert st["Uid"] == ["10025"] * 4 and st["Gid"] == ["10025"] * 4, st
    assert int(st["CapEff"][0], 16) == 0 and int(st["CapPrm"][0], 16) == 0, st
    assert int(st["CapBnd"][0], 16) == 0, st
    assert st["NoNewPrivs"] == ["1"], st
    # the root file system is read-only for moat's user and root alike
    r = podman("exec", "-u", "0", name, "touch", "/usr/sbin/x", check=False)
    assert r.returncode != 0 and "Read-only file system" in r.stderr, r.stderr


def test_ready_and_healthcheck(moat_container):
    port = moat_container["ports"]["metrics"]
    rig.wait_until(lambda: http_get(port, "/readyz")[0] == 200, 15, interval=0.2,
                   what="/readyz 200")
    assert http_get(port, "/healthz")[0] == 200
    # the image's HEALTHCHECK (kept by --format docker) runs inside the container
    r = podman("healthcheck", "run", moat_container["name"], check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def code(lines):
    return int(lines[-1][:3])


def send(port, subject, certs, starttls, implicit, user=None):
    c = smtp_helpers.session(port, certs=certs, starttls=starttls, implicit=implicit)
    sender = user or "someone@remote.example"
    try:
        if user:
            assert code(smtp_helpers.login(c, user, rig.USERS[user])) == 235
        assert code(c.cmd("MAIL FROM:<%s>" % sender)) == 250
        assert code(c.cmd("RCPT TO:<%s>" % BOB)) == 250
        assert code(c.cmd("DATA")) == 354
        c.send(smtp_helpers.message(subject, sender=sender).encode() + b".\r\n")
        assert c.code() == 250
        c.cmd("QUIT")
    finally:
        c.close()


def test_mail_in_through_25_587_465_and_read_with_imaps_pop3s(moat_container, backends, certs):
    p = moat_container["ports"]
    tag = uuid.uuid4().hex[:10]
    subjects = {"mx": "ct-mx-" + tag, "submission": "ct-587-" + tag,
                "submissions": "ct-465-" + tag}
    send(p["mx"], subjects["mx"], certs, starttls=True, implicit=False)
    send(p["submission"], subjects["submission"], certs, starttls=True, implicit=False,
         user=ALICE)
    send(p["submissions"], subjects["submissions"], certs, starttls=False, implicit=True,
         user=ALICE)
    for s in subjects.values():
        backends.wait_maildir(BOB, s, timeout=15)
    # what the backend saw: XCLIENT gave Postfix the real client, not the container's loopback
    log = rig.read_text(backends.pf_log)
    assert "client=unknown[127.0.0.2]" in log or "[127.0.0.2]" in log, log[-2000:]

    im = rig.IMAPS(p["imaps"], certs)
    try:
        assert im.login(BOB, rig.USERS[BOB])[0] == "OK"
        im.select("INBOX")
        for s in subjects.values():
            typ, data = im.search(None, "SUBJECT", s)
            assert typ == "OK" and len(data[0].split()) == 1, (s, data)
        im.logout()
    finally:
        im.shutdown() if im.state != "LOGOUT" else None

    pop = POP3S(p["pop3s"], certs)
    try:
        pop.user(BOB)
        pop.pass_(rig.USERS[BOB])
        count, _ = pop.stat()
        bodies = [b"\n".join(pop.retr(i)[1]) for i in range(1, count + 1)]
        for s in subjects.values():
            assert any(s.encode() in b for b in bodies), s
        pop.quit()
    finally:
        pop.close()


class POP3S(poplib.POP3):
    """POP3 over implicit TLS from 127.0.0.2, verified against the test CA as mx.moat.test."""

    def __init__(self, port, certs, src="127.0.0.2"):
        self._ctx = rig.client_context(certs)
        self._src = src
        super().__init__("127.0.0.1", port, timeout=10)

    def _create_socket(self, timeout):
        sock = rig.client_socket(self.port, self._src, timeout=timeout)
        return self._ctx.wrap_socket(sock, server_hostname="mx.moat.test")


def test_sigterm_exits_zero_within_grace(moat_container, certs):
    name = moat_container["name"]
    # an idle IMAP session is open: moat says BYE and exits without waiting the grace out
    im = rig.IMAPS(moat_container["ports"]["imaps"], certs)
    t0 = time.monotonic()
    podman("kill", "--signal", "TERM", name)
    r = podman("wait", name, timeout=GRACE_S + 30)
    took = time.monotonic() - t0
    assert r.stdout.strip() == "0", r.stdout
    assert took < GRACE_S, took  # the idle session does not hold the exit back
    try:
        line = im.readline()
        assert line.startswith(b"* BYE") or line == b"", line
    finally:
        im.sock.close()
    events = [json.loads(line) for line in podman("logs", name).stderr.splitlines()
              if line.startswith("{")]
    assert any(e["event"] == "shutdown" for e in events), events
    assert any(e["event"] == "stopped" and "status=0" in e.get("detail", "") for e in events)


# --- the examples: compose and the Kubernetes pod, with the mail sidecar image ---------------

CAROL, CAROL_PW = "carol", "carol-secret-3"  # a system user of the mail sidecar


def add_mail_user(container):
    podman("exec", container, "sh", "-c", "useradd --create-home %s && echo %s:%s | chpasswd"
           % (CAROL, CAROL, CAROL_PW))


def sidecar_roundtrip(ports, certs):
    """Mail to carol@example.org in through 25, 587 and 465, read back with IMAPS and POP3S.
    From 127.0.0.1: Podman forwards a published loopback port only for that source (and moat
    sees the bridge's gateway address, not loopback)."""
    src = "127.0.0.1"
    tag = uuid.uuid4().hex[:10]
    subjects = ["sc-25-" + tag, "sc-587-" + tag, "sc-465-" + tag]
    for port, subject, starttls, user in ((ports[25], subjects[0], True, None),
                                          (ports[587], subjects[1], True, CAROL),
                                          (ports[465], subjects[2], False, CAROL)):
        c = smtp_helpers.session(port, src=src, certs=certs, starttls=starttls,
                                 implicit=not starttls)
        # a system user logs in as "carol": the one sender moat lets that login use
        sender = user or "someone@remote.example"
        try:
            if user:
                assert code(smtp_helpers.login(c, user, CAROL_PW)) == 235
            assert code(c.cmd("MAIL FROM:<%s>" % sender)) == 250
            assert code(c.cmd("RCPT TO:<carol@example.org>")) == 250
            assert code(c.cmd("DATA")) == 354
            c.send(smtp_helpers.message(subject, sender=sender, to="carol@example.org")
                   .encode() + b".\r\n")
            assert c.code() == 250
            c.cmd("QUIT")
        finally:
            c.close()

    def imap_found():
        im = rig.IMAPS(ports[993], certs, src=src)
        try:
            assert im.login(CAROL, CAROL_PW)[0] == "OK"
            im.select("INBOX")
            return all(len(im.search(None, "SUBJECT", s)[1][0].split()) == 1 for s in subjects)
        finally:
            im.logout()
    rig.wait_until(imap_found, 20, interval=0.5, what="the three mails in carol's INBOX")
    pop = POP3S(ports[995], certs, src=src)
    try:
        pop.user(CAROL)
        pop.pass_(CAROL_PW)
        count, _ = pop.stat()
        bodies = [b"\n".join(pop.retr(i)[1]) for i in range(1, count + 1)]
        assert all(any(s.encode() in b for b in bodies) for s in subjects), subjects
        pop.quit()
    finally:
        pop.close()


COMPOSE_KEYS = {"build", "image", "hostname", "ports", "volumes", "restart", "network_mode",
                "depends_on", "read_only", "cap_drop", "security_opt", "stop_grace_period"}


def compose_run_args(project, name, svc, ports, binds):
    """`podman run` arguments for one service of docker/compose.yaml. Debian 12's podman-compose
    (1.0.3) cannot run it: it passes network_mode through verbatim ("service:mail", which Podman
    does not know) and adds --net beside it. So the test runs what compose would: the same
    keys, translated here; a key this does not know fails the test rather than being ignored."""
    assert set(svc) <= COMPOSE_KEYS, set(svc) - COMPOSE_KEYS
    args = ["run", "-d", "--name", "%s_%s" % (project, name)]
    if "hostname" in svc:
        args += ["--hostname", svc["hostname"]]
    if svc.get("network_mode", "").startswith("service:"):
        args += ["--network", "container:%s_%s" % (project, svc["network_mode"][8:])]
    for p in svc.get("ports", []):
        host, _, inner = p.rpartition(":")
        args += ["-p", "127.0.0.1:%d:%s" % (ports[int(host.split(":")[-1])], inner)]
    for v in svc.get("volumes", []):
        src, _, rest = v.partition(":")
        if src.startswith("./"):  # a bind mount relative to docker/: the test's copy
            args += ["-v", "%s:%s" % (binds[src], rest)]
        else:
            args += ["-v", "%s_%s:%s" % (project, src, rest)]
    if svc.get("read_only"):
        args.append("--read-only")
    for c in svc.get("cap_drop", []):
        args += ["--cap-drop", c]
    for o in svc.get("security_opt", []):
        args += ["--security-opt", o.replace(":true", "")]
    if "stop_grace_period" in svc:
        args += ["--stop-timeout", str(int(svc["stop_grace_period"].rstrip("s")))]
    return args


def test_compose_stack(certs):
    """docker/compose.yaml as written (sidecar in the mail service's network namespace,
    read-only, no capabilities), with the images built by scripts/container-test and the
    published ports moved to free loopback ports (nothing listens beyond loopback)."""
    compose = yaml.safe_load(open(os.path.join(rig.ROOT, "docker", "compose.yaml")))
    services = compose["services"]
    assert services["moat"]["network_mode"] == "service:mail"
    assert services["moat"]["read_only"] and services["moat"]["cap_drop"] == ["ALL"]
    published = [int(p.rpartition(":")[0].split(":")[-1]) for p in services["mail"]["ports"]]
    ports = dict(zip(published, rig.free_ports(len(published))))
    d = etc_moat(certs, rig.read_text(os.path.join(rig.ROOT, "docker", "moat.conf")))
    binds = {"./moat.conf": os.path.join(d, "moat.conf"), "./tls": os.path.join(d, "tls")}
    images = {"mail": MAIL_IMAGE, "moat": MOAT_IMAGE}
    project = "moatct%s" % uuid.uuid4().hex[:6]
    try:
        for name in ("mail", "moat"):  # depends_on order
            podman(*compose_run_args(project, name, services[name], ports, binds),
                   images[name])
        last = []
        try:
            rig.wait_until(lambda: last.append(http_get(ports[9100], "/readyz")) or
                           last[-1][0] == 200, 30, interval=0.5, what="/readyz 200")
        except TimeoutError:
            pytest.fail("compose stack never ready: last /readyz answer %r" % (last[-1:],))
        add_mail_user("%s_mail" % project)
        sidecar_roundtrip(ports, certs)
        # the compose file's stop: SIGTERM, moat exits 0 well within stop_grace_period
        podman("stop", "%s_moat" % project, timeout=60)
        assert podman("inspect", "-f", "{{.State.ExitCode}}", "%s_moat" % project).stdout \
            .strip() == "0"
    finally:
        r = podman("logs", "%s_moat" % project, check=False)
        print(r.stdout + r.stderr)
        remove_containers("%s_moat" % project, "%s_mail" % project)
        for vol in compose.get("volumes", {}):
            podman("volume", "rm", "-f", "%s_%s" % (project, vol), check=False)
        shutil.rmtree(d, ignore_errors=True)


def pod_volume_names(pod):
    """The names `podman kube play` gives the pod's volumes: a ConfigMap's or Secret's own."""
    for v in pod["spec"]["volumes"]:
        yield (v.get("configMap") or {}).get("name") or \
            (v.get("secret") or {}).get("secretName") or v["name"]


def test_kube_play_pod_example(certs, tmp_path):
    """`podman kube play docker/k8s-pod.yaml` as it is, with its ConfigMap (docker/moat.conf),
    its Secret (the test certificate) and the two images tagged as the example names them."""
    pod = list(yaml.safe_load_all(open(os.path.join(rig.ROOT, "docker", "k8s-pod.yaml"))))[0]
    images = {c["name"]: c["image"] for c in pod["spec"]["containers"]}
    podman("tag", MOAT_IMAGE, images["moat"])
    podman("tag", MAIL_IMAGE, images["mail"])
    conf = rig.read_text(os.path.join(rig.ROOT, "docker", "moat.conf"))
    conf = conf.replace("/etc/moat/tls/fullchain.pem", "/etc/moat/tls/tls.crt")
    conf = conf.replace("/etc/moat/tls/privkey.pem", "/etc/moat/tls/tls.key")
    cm = tmp_path / "configmap.yaml"
    cm.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "moat-config"},
        "data": {"moat.conf": conf}}))
    # Podman 4.3 writes a Secret's data values out verbatim, without the base64 decoding of
    # Kubernetes (and ignores stringData): so the PEM text goes in as it is
    secret = yaml.safe_dump({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "mail-tls"},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": rig.read_text(certs.ecdsa), "tls.key": rig.read_text(certs.ecdsa_key)}})
    podman("secret", "rm", "mail-tls", check=False)
    for v in pod_volume_names(pod):  # left over by an interrupted run, with old contents
        podman("volume", "rm", "-f", v, check=False)
    podman("secret", "create", "mail-tls", "-", input=secret)
    example = os.path.join(rig.ROOT, "docker", "k8s-pod.yaml")
    try:
        podman("kube", "play", "--replace", "--configmap", str(cm), example, timeout=180)
        name = "%s-moat" % pod["metadata"]["name"]

        def readyz():
            r = podman("exec", name, "bash", "-c",
                       "exec 3<>/dev/tcp/127.0.0.1/9100 && "
                       "printf 'GET /readyz HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3", check=False)
            return r.stdout
        rig.wait_until(lambda: " 200 " in readyz().split("\n")[0], 30, interval=0.5,
                       what="/readyz 200 in the pod")
        info = podman("inspect", "-f", "{{.State.Pid}}", name).stdout.split()
        st = proc_status(int(info[0]))
        assert st["Uid"] == ["10025"] * 4 and int(st["CapEff"][0], 16) == 0, st
    finally:
        r = podman("logs", "%s-moat" % pod["metadata"]["name"], check=False)
        print(r.stdout + r.stderr)
        vols = [v for c in images for v in volumes_of("%s-%s" % (pod["metadata"]["name"], c))]
        podman("kube", "down", example, check=False, timeout=120)
        podman("secret", "rm", "mail-tls", check=False)
        for v in set(vols) | set(pod_volume_names(pod)):  # kube down leaves them
            podman("volume", "rm", "-f", v, check=False)
        for image in images.values():
            podman("untag", image, image, check=False)  # only this name
