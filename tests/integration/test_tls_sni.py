"""TLS server name policy and certificate expiry, with openssl s_client against an implicit-TLS
IMAP listener in front of the real Dovecot: [tls] sni_strict refuses a name no certificate
answers to, sni_required a handshake without SNI, both with a TLS alert and without disturbing
the next client; the default accepts both. A certificate that expires within 14 days is named in
a warning at startup and at each reload, and every certificate's time left is on /metrics."""

import re
import signal
import subprocess
import time
import urllib.request
from datetime import datetime, timezone

import pytest

import rig

TWO_CERTS = "[tls]\ncertificate = {c.ecdsa}\nkey = {c.ecdsa_key}\n" \
            "certificate = {c.other}\nkey = {c.other_key}\n"


def s_client(port, sni, *args, src="127.0.0.2"):
    """openssl s_client with SNI sni (None: no SNI extension at all); sends an IMAP LOGOUT and
    reads until the server closes. Returns the combined output."""
    cmd = ["openssl", "s_client", "-bind", "%s:0" % src, "-connect", "127.0.0.1:%d" % port,
           "-brief", "-ign_eof"] + (["-noservername"] if sni is None else ["-servername", sni])
    p = subprocess.run(cmd + list(args), input=b"a1 LOGOUT\r\n", capture_output=True,
                       timeout=15)
    return (p.stdout + p.stderr).decode(errors="replace")


def served(out):
    return "CONNECTION ESTABLISHED" in out and "* OK" in out and "a1 OK" in out


@pytest.fixture
def imaps(moat, backends, certs, free_port):
    """start(tls_section, moat_extra="") -> rig.Moat with .port (implicit-TLS IMAP) and
    .metrics (the metrics port)."""
    def start(tls_section, moat_extra=""):
        port, mport = free_port(), free_port()
        conf = rig.moat_conf(certs, backends={
            "imap": {"address": "127.0.0.1:%d" % backends.ports["imap"], "identity": "id"},
        }, listeners={
            "imaps": {"protocol": "imap", "listen": "127.0.0.1:%d" % port, "tls": "implicit",
                      "backend": "imap"},
        })
        conf = conf.replace("[moat]\n", "[moat]\nmetrics = 127.0.0.1:%d\n%s" % (mport, moat_extra),
                            1)
        conf = re.sub(r"\[tls\]\n(?:[a-z_]+ = [^\n]*\n)+", tls_section, conf)
        m = moat(conf, wait_ports=[port, mport])
        m.port, m.metrics = port, mport
        return m
    return start


# --- SNI policy -------------------------------------------------------------------------------

def test_default_accepts_unknown_and_missing_sni(imaps, certs):
    m = imaps(TWO_CERTS.format(c=certs))
    for sni in ("mx.moat.test", "nobody.example", None):
        out = s_client(m.port, sni)
        assert served(out), (sni, out)
    assert m.alive()


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
def test_sni_strict_refuses_unknown_name_with_alert(imaps, certs, version):
    m = imaps(TWO_CERTS.format(c=certs) + "sni_strict = yes\n")
    out = s_client(m.port, "nobody.example", version)
    assert "CONNECTION ESTABLISHED" not in out and "* OK" not in out, out
    assert "unrecognized name" in out, out  # the alert, not a dropped connection
    rig.wait_until(lambda: "reason=handshake_failed" in m.log(), 5, what="the close line")
    assert 'error="SNI names no certificate (sni_strict)"' in m.log()
    # both certificates' names (one of them a wildcard-free SAN of the second pair) still work,
    # and so does a client without SNI: strict is about names, not their absence
    for sni in ("mx.moat.test", "other.moat.test", "LOCALHOST", None):
        assert served(s_client(m.port, sni, version)), sni
    assert m.alive()


def test_sni_required_refuses_handshake_without_sni(imaps, certs):
    m = imaps("[tls]\ncertificate = %s\nkey = %s\nsni_required = yes\n"
              % (certs.ecdsa, certs.ecdsa_key))
    for version in ("-tls1_2", "-tls1_3"):
        out = s_client(m.port, None, version)
        assert "CONNECTION ESTABLISHED" not in out and "* OK" not in out, out
        assert "missing extension" in out, out
        assert 'error="no SNI (sni_required)"' in m.log()
        # required alone is not strict: any name is taken, the default certificate answers
        assert served(s_client(m.port, "nobody.example", version))
        assert served(s_client(m.port, "mx.moat.test", version, "-CAfile", certs.ca,
                               "-verify_return_error"))
    assert m.alive()


def test_sni_strict_and_required_together(imaps, certs):
    m = imaps(TWO_CERTS.format(c=certs) + "sni_strict = yes\nsni_required = yes\n")
    assert "missing extension" in s_client(m.port, None)
    assert "unrecognized name" in s_client(m.port, "nobody.example")
    out = s_client(m.port, "other.moat.test", "-CAfile", certs.ca, "-verify_return_error")
    assert served(out) and "other.moat.test" in out, out
    assert m.alive()


# --- certificate expiry -----------------------------------------------------------------------

def not_after(path):
    out = subprocess.run(["openssl", "x509", "-in", path, "-noout", "-enddate"], check=True,
                         capture_output=True, text=True).stdout
    when = datetime.strptime(out.strip().split("=", 1)[1], "%b %d %H:%M:%S %Y GMT")
    return when.replace(tzinfo=timezone.utc).timestamp()


def expiry_metrics(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        body = r.read().decode()
    return {f: float(v) for f, v in
            re.findall(r'^moat_tls_certificate_expiry_seconds\{file="([^"]*)"\} (\S+)$', body,
                       flags=re.M)}


def expiring_lines(m):
    return [line for line in m.log().splitlines() if "certificate_expiring" in line]


def test_expiring_certificate_warned_at_start_and_reload_and_on_metrics(imaps, certs):
    m = imaps("[tls]\ncertificate = %s\nkey = %s\ncertificate = %s\nkey = %s\n"
              % (certs.ecdsa, certs.ecdsa_key, certs.soon, certs.soon_key))
    soon_left = not_after(certs.soon) - time.time()
    assert 2 * 86400 < soon_left < 3 * 86400  # the rig's cert, made minutes ago for 3 days
    lines = rig.wait_until(lambda: expiring_lines(m), 5, what="expiry warning")
    assert len(lines) == 1, lines  # the long-lived certificate is not warned about
    assert 'file="%s"' % certs.soon in lines[0] and "days_left=2" in lines[0], lines
    assert "warn" in lines[0].lower()
    got = expiry_metrics(m.metrics)
    assert set(got) == {certs.ecdsa, certs.soon}, got
    assert abs(got[certs.soon] - (not_after(certs.soon) - time.time())) < 60, got
    assert abs(got[certs.ecdsa] - (not_after(certs.ecdsa) - time.time())) < 60, got
    assert got[certs.ecdsa] > 800 * 86400

    m.signal(signal.SIGHUP)
    rig.wait_until(lambda: len(expiring_lines(m)) == 2, 5, what="expiry warning after reload")
    rig.wait_until(lambda: "event=reloaded" in m.log() or '"reloaded"' in m.log(), 5,
                   what="reload")
    # the metric follows the generation: a reload without the short-lived pair drops it
    rig.write_file(m.conf_path, re.sub(r"certificate = %s\nkey = %s\n" % (
        re.escape(certs.soon), re.escape(certs.soon_key)), "", rig.read_text(m.conf_path)))
    m.signal(signal.SIGHUP)
    rig.wait_until(lambda: set(expiry_metrics(m.metrics)) == {certs.ecdsa}, 5,
                   what="metric without the removed certificate")
    assert len(expiring_lines(m)) == 2
    assert served(s_client(m.port, "soon.moat.test"))  # permissive default: default cert
    assert m.alive()


def test_expiry_after_2049_is_generalized_time(imaps, certs, tmp_path):
    """RFC 5280 writes a notAfter from 2050 on as GeneralizedTime (4-digit year), not UTCTime."""
    cert, key = str(tmp_path / "far.pem"), str(tmp_path / "far.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "10000", "-subj", "/CN=far.moat.test"], check=True,
                   capture_output=True, timeout=30)
    der = subprocess.run(["openssl", "x509", "-in", cert, "-outform", "DER"], check=True,
                         capture_output=True).stdout
    assert b"\x18\x0f20" in der  # GeneralizedTime, 15 bytes, 20xx
    m = imaps("[tls]\ncertificate = %s\nkey = %s\n" % (cert, key))
    got = expiry_metrics(m.metrics)
    assert abs(got[cert] - (not_after(cert) - time.time())) < 60, got
    assert not expiring_lines(m)
