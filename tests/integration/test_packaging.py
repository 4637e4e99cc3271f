"""Packaging: the compose file validates, the Dockerfile's runtime stage installs exactly the
libraries the binary links against (from ldd and dpkg -S), the example sidecar config passes
`moat -t`, the Kubernetes example parses, the man page renders and the systemd unit has its
hardening. No container engine is needed."""
import os
import platform
import re
import shutil
import subprocess

import pytest

import rig

DOCKER = os.path.join(rig.ROOT, "docker")
# always present in the base image, or only there because of a sanitizer build
IGNORED = {"libc6", "libgcc-s1", "libstdc++6", "libasan8", "libubsan1", "libasan6", "libubsan1"}


def moat_binary():
    return os.environ.get("MOAT_BIN") or os.path.join(rig.ROOT, "build", "moat")


def runtime_packages():
    text = rig.read_text(os.path.join(DOCKER, "Dockerfile")).replace("\\\n", " ")
    stages = re.split(r"^FROM ", text, flags=re.M)
    runtime = stages[-1]
    m = re.search(r"apt-get install -y --no-install-recommends ([^&]+)&&", runtime)
    assert m, "no apt-get install line in the runtime stage"
    return {p for p in m.group(1).split() if not p.startswith("$")}


def linked_packages(binary):
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    pkgs = set()
    for path in re.findall(r"=> (/\S+)", out):
        for candidate in (path, os.path.realpath(path),
                          re.sub(r"^/usr/lib/", "/lib/", os.path.realpath(path))):
            r = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
            if r.returncode == 0:
                pkgs.add(r.stdout.split(":")[0])
                break
        else:
            pytest.fail("no package owns %s" % path)
    return pkgs


def test_runtime_stage_installs_only_linked_libraries():
    binary = moat_binary()
    if not os.access(binary, os.X_OK):
        pytest.skip("moat binary missing")
    linked = linked_packages(binary) - IGNORED
    assert runtime_packages() == linked


def test_version_names_the_tuned_wolfssl():
    """`moat -V` names moat's version, the wolfSSL it carries (Debian's source at the version
    scripts/wolfssl-build pins) and the features of the default build: AES-NI and assembly on
    x86-64, the ARMv8 crypto paths on arm64, none of the extras moat does not use."""
    binary = moat_binary()
    if not os.access(binary, os.X_OK):
        pytest.skip("moat binary missing")
    r = subprocess.run([binary, "-V"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert re.fullmatch(r"moat \d+\.\d+\.\d+", lines[0])
    m = re.fullmatch(r"wolfSSL (\d+\.\d+\.\d+) \((.*)\)", lines[1])
    assert m, lines[1]
    if m.group(2) == "system library":
        pytest.skip("built with -DMOAT_SYSTEM_WOLFSSL=ON")
    script = rig.read_text(os.path.join(rig.ROOT, "scripts", "wolfssl-build"))
    pinned = re.search(r"^DEB_VERSION=(\S+)$", script, flags=re.M).group(1)
    assert m.group(2).startswith("Debian source %s, static" % pinned)
    assert pinned.startswith(m.group(1) + "-")
    features = dict(line.split(":", 1) for line in lines[2:4])
    have = set(features["wolfSSL features"].split())
    assert {"TLS1.3", "TLS1.2", "X25519", "AES-GCM", "ChaCha20-Poly1305", "SNI", "ALPN",
            "session-tickets", "getrandom", "SP-ECC", "SP-RSA", "SP-asm"} <= have
    expected = {"x86_64": {"AES-NI", "intel-asm(AVX1/AVX2)"}, "aarch64": {"ARMv8-crypto"}}
    assert expected.get(platform.machine(), set()) <= have
    assert features["wolfSSL extras"].split() == ["none"]


@pytest.mark.parametrize("switch", ["session_test_assume_tls", "auth_test_scram_iterations"])
def test_binary_has_no_test_switch(switch):
    """The fuzz harness's switches ('pretend TLS', SCRAM with one iteration) are only weak
    references in moat: the binary defines no such variable, so nothing can turn them on."""
    if not shutil.which("nm"):
        pytest.skip("nm (binutils) is not installed")
    out = subprocess.run(["nm", moat_binary()], capture_output=True, text=True, check=True).stdout
    kinds = re.findall(r"^\s*(?:[0-9a-f]+\s+)?(\S)\s+%s$" % switch, out, re.M)
    assert kinds, "the symbol is gone: update this test with the switch"
    assert set(kinds) <= {"w", "v"}, "moat defines %s (%s)" % (switch, kinds)


def test_groups_outside_the_default_build_refused_at_load(certs, tmp_path):
    """The default wolfSSL build has X25519, P-256 and P-384 only: a configuration naming P-521
    or X448 fails `moat -t` with a reason that says so, instead of a TLS 1.2 client getting that
    curve."""
    binary = moat_binary()
    if not os.access(binary, os.X_OK):
        pytest.skip("moat binary missing")
    v = subprocess.run([binary, "-V"], capture_output=True, text=True, timeout=30).stdout
    if "(system library)" in v:
        pytest.skip("built with -DMOAT_SYSTEM_WOLFSSL=ON")
    for groups, ok in (("X25519:P-256:P-384", True), ("P-521", False), ("X25519:X448", False)):
        conf = tmp_path / "moat.conf"
        conf.write_text("[moat]\nhostname = mx.moat.test\n[tls]\ncertificate = %s\nkey = %s\n"
                        "groups = %s\n[backend d]\naddress = 127.0.0.1:1143\nidentity = id\n"
                        "[listener imaps]\nprotocol = imap\nlisten = 127.0.0.1:1993\n"
                        "tls = implicit\nbackend = d\n" % (certs.ecdsa, certs.ecdsa_key, groups))
        r = subprocess.run([binary, "-t", "-c", str(conf)], capture_output=True, text=True,
                           timeout=30)
        if ok:
            assert r.returncode == 0, r.stderr
        else:
            assert r.returncode == 1 and "a group this wolfSSL build does not have" in r.stderr, \
                (groups, r.stderr)


def test_dockerfile_shape():
    text = rig.read_text(os.path.join(DOCKER, "Dockerfile"))
    assert re.search(r"^ARG BASE_IMAGE=debian:bookworm", text, flags=re.M)
    assert len(re.findall(r"^FROM \$\{BASE_IMAGE\}", text, flags=re.M)) == 2
    assert re.search(r"^USER moat", text, flags=re.M)
    assert re.search(r"^HEALTHCHECK .*/healthz", text, flags=re.M | re.S)
    assert re.search(r"^VOLUME \[\"/etc/moat\"\]", text, flags=re.M)
    for port in re.findall(r"^EXPOSE (.*)$", text, flags=re.M)[0].split():
        assert int(port) >= 1024


def test_compose_file_validates():
    path = os.path.join(DOCKER, "compose.yaml")
    if shutil.which("docker-compose"):
        r = subprocess.run(["docker-compose", "-f", path, "config"], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        cfg = r.stdout
    else:
        r = subprocess.run(["docker", "compose", "-f", path, "config"], capture_output=True,
                           text=True, timeout=60)
        if r.returncode != 0 and "unknown command" in r.stderr:
            pytest.skip("neither docker-compose nor the compose plugin (scripts/deps)")
        assert r.returncode == 0, r.stderr
        cfg = r.stdout
    assert "network_mode: service:mail" in cfg


def test_kubernetes_pod_example_parses():
    yaml = pytest.importorskip("yaml")
    docs = list(yaml.safe_load_all(open(os.path.join(DOCKER, "k8s-pod.yaml"))))
    pod = docs[0]
    assert pod["kind"] == "Pod"
    moat = [c for c in pod["spec"]["containers"] if c["name"] == "moat"][0]
    sc = moat["securityContext"]
    assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"]
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert moat["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert all(p["containerPort"] >= 1024 for p in moat["ports"])


def test_sidecar_config_passes_check(certs, tmp_path):
    binary = moat_binary()
    if not os.access(binary, os.X_OK):
        pytest.skip("moat binary missing")
    text = rig.read_text(os.path.join(DOCKER, "moat.conf"))
    text = text.replace("/etc/moat/tls/fullchain.pem", certs.ecdsa)
    text = text.replace("/etc/moat/tls/privkey.pem", certs.ecdsa_key)
    conf = tmp_path / "moat.conf"
    conf.write_text(text)
    r = subprocess.run([binary, "-t", "-c", str(conf)], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0, r.stderr


def test_man_page_renders():
    if not shutil.which("groff"):
        pytest.skip("groff missing")
    r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", os.path.join(rig.ROOT, "docs",
                                                                      "moat.8")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    plain = re.sub(r"\x1b\[[0-9;]*m|.\x08", "", r.stdout)
    for word in ("SIGHUP", "/readyz", "TLSA", "shutdown_grace"):
        assert word in plain


def test_systemd_unit_hardening():
    text = rig.read_text(os.path.join(rig.ROOT, "conf", "moat.service"))
    for line in ("NoNewPrivileges=yes", "ProtectSystem=strict", "ExecReload=/bin/kill -HUP $MAINPID",
                 "CapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_SETUID CAP_SETGID"):
        assert line in text
