"""`moat -t -c FILE`: one broken configuration per error kind, asserting the exact
FILE:LINE: key: message and exit status 1; a good configuration exits 0."""

import os
import subprocess

import pytest

import conftest


def run_check(tmp_path, text):
    path = tmp_path / "moat.conf"
    path.write_text(text)
    binary = conftest.moat_binary()
    if not os.access(binary, os.X_OK):
        pytest.skip("moat binary not found")
    p = subprocess.run([binary, "-t", "-c", str(path)], capture_output=True, text=True,
                       timeout=20)
    return p.returncode, p.stdout, p.stderr, str(path)


def base(certs, tls_extra="", listener_extra="", backend_extra="", extra=""):
    return (
        "[moat]\n"                                   # 1
        "hostname = mx.moat.test\n"                  # 2
        "[tls]\n"                                    # 3
        "certificate = %s\n"                         # 4
        "key = %s\n"                                 # 5
        "%s"
        "[backend dovecot]\n"
        "address = 127.0.0.1:10143\n"
        "%s"
        "[listener imaps]\n"
        "protocol = imap\n"
        "listen = 127.0.0.1:19993\n"
        "tls = implicit\n"
        "backend = dovecot\n"
        "%s%s" % (certs.ecdsa, certs.ecdsa_key, tls_extra, backend_extra, listener_extra, extra))


def test_good_config_passes(tmp_path, certs):
    rc, out, err, path = run_check(tmp_path, base(certs))
    assert rc == 0, err
    assert "configuration ok" in out
    assert err == ""


def test_reference_config_documents_a_loadable_file(tmp_path, certs):
    """conf/moat.conf with its certificate paths pointed at the test certificates loads."""
    text = open(os.path.join(conftest.rig.ROOT, "conf", "moat.conf")).read()
    lines = []
    for line in text.splitlines():
        if line.startswith("certificate ="):
            line = "certificate = %s" % certs.ecdsa
        elif line.startswith("key ="):
            line = "key = %s" % certs.ecdsa_key
        lines.append(line)
    rc, out, err, _ = run_check(tmp_path, "\n".join(lines) + "\n")
    assert rc == 0, err


def expect_error(tmp_path, text, line, key_and_message):
    rc, out, err, path = run_check(tmp_path, text)
    assert rc == 1, (out, err)
    want = "%s:%d: %s" % (path, line, key_and_message)
    assert any(l.startswith(want) for l in err.splitlines()), "want %r in:\n%s" % (want, err)
    return err


def test_unknown_key(tmp_path, certs):
    expect_error(tmp_path, base(certs, listener_extra="frobnicate = yes\n"), 13,
                 "frobnicate: unknown key in [listener imaps]")


def test_bad_duration(tmp_path, certs):
    expect_error(tmp_path, base(certs, extra="[timeouts]\nhandshake = 5x\n"), 14,
                 "handshake: bad duration '5x': unknown unit 'x'")


def test_bad_rate(tmp_path, certs):
    expect_error(tmp_path, base(certs, extra="[limits]\nconnection_rate_per_ip = 60\n"), 14,
                 "connection_rate_per_ip: bad rate '60'")


def test_bad_address(tmp_path, certs):
    text = base(certs).replace("listen = 127.0.0.1:19993", "listen = localhost:993")
    expect_error(tmp_path, text, 10, "listen: bad address 'localhost:993': not a numeric address")


def test_missing_certificate(tmp_path, certs):
    text = base(certs).replace(certs.ecdsa, "/nonexistent/cert.pem")
    expect_error(tmp_path, text, 4,
                 "certificate: cannot read '/nonexistent/cert.pem': No such file or directory")


def test_key_does_not_match_certificate(tmp_path, certs):
    text = base(certs).replace(certs.ecdsa_key, certs.rsa_key)
    err = expect_error(tmp_path, text, 4, "certificate: ")
    assert "does not match" in err


def test_listener_names_missing_backend(tmp_path, certs):
    text = base(certs).replace("backend = dovecot", "backend = nosuch")
    expect_error(tmp_path, text, 12, "backend: no [backend nosuch] section")


def test_duplicate_listen_address(tmp_path, certs):
    extra = ("[listener imaps2]\nprotocol = imap\nlisten = 127.0.0.1:19993\ntls = implicit\n"
             "backend = dovecot\n")
    expect_error(tmp_path, base(certs, extra=extra), 15,
                 "listen: 127.0.0.1:19993 already used by listener 'imaps' (line 10)")


def test_every_error_is_reported_at_once(tmp_path, certs):
    text = base(certs, listener_extra="frobnicate = yes\n",
                extra="[timeouts]\nhandshake = 5x\n[limits]\nclient_buffer = 1k\n")
    rc, out, err, path = run_check(tmp_path, text)
    assert rc == 1
    lines = [l for l in err.splitlines() if l.startswith(path + ":")]
    assert len(lines) == 3, err
