"""The monitoring files in docs/: the Grafana dashboard (docs/grafana-moat.json) and the
Prometheus alerting rules (docs/prometheus-moat-rules.yml, with promtool unit tests in
docs/prometheus-moat-rules.test.yml). Every metric name and label value they use must exist in
a live moat's /metrics, so a renamed metric breaks this test instead of a dashboard; the rules
must pass `promtool check rules` and their unit tests."""
import json
import os
import re
import shutil
import subprocess
import urllib.request

import pytest

import rig

try:
    import yaml
except ImportError:  # python3-yaml (scripts/deps)
    yaml = None
try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:  # python3-prometheus-client (scripts/deps)
    text_string_to_metric_families = None

DOCS = os.path.join(rig.ROOT, "docs")
DASHBOARD = os.path.join(DOCS, "grafana-moat.json")
RULES = os.path.join(DOCS, "prometheus-moat-rules.yml")
RULES_TEST = os.path.join(DOCS, "prometheus-moat-rules.test.yml")
# series that Prometheus makes itself, not moat
PROMETHEUS_SERIES = {"up"}
METRIC = re.compile(r"\b(moat_[a-z0-9_]+)\b")
MATCHER = re.compile(r"\b(listener|proto|control|reason)\s*=\s*\"([^\"$]*)\"")


def dashboard_exprs():
    with open(DASHBOARD) as f:
        dash = json.load(f)
    out = []

    def walk(v):
        if isinstance(v, dict):
            for k, x in v.items():
                if k in ("expr", "query", "definition") and isinstance(x, str):
                    out.append(x)
                else:
                    walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
    walk(dash)
    return dash, out


def rules_exprs():
    if yaml is None:
        pytest.skip("python3-yaml missing (scripts/deps)")
    with open(RULES) as f:
        doc = yaml.safe_load(f)
    return doc, [r["expr"] for g in doc["groups"] for r in g["rules"]]


def series_names(expr):
    """Every series name an expression selects (moat_* and bare names like up{...})."""
    names = set(METRIC.findall(expr))
    names |= {n for n in re.findall(r"\b([a-z_][a-z0-9_]*)\s*\{", expr)
              if n not in ("by", "on", "without", "ignoring")}
    return names


@pytest.fixture(scope="module")
def live_metrics(backends, certs, tmp_path_factory):
    """(sample names, {label: set of values}) of a running moat's /metrics."""
    if text_string_to_metric_families is None:
        pytest.skip("python3-prometheus-client missing (scripts/deps)")
    binary = os.environ.get("MOAT_BIN") or os.path.join(rig.ROOT, "build", "moat")
    if not os.access(binary, os.X_OK):
        pytest.skip("moat binary missing")
    ports = dict(zip(("mx", "imaps", "pop3", "metrics"), rig.free_ports(4)))
    conf = "\n".join([
        "[moat]", "hostname = mx.moat.test", "workers = 1",
        "metrics = 127.0.0.1:%d" % ports["metrics"],
        "[tls]", "certificate = %s" % certs.ecdsa, "key = %s" % certs.ecdsa_key,
        "[backend smtp]", "address = 127.0.0.1:%d" % backends.ports["smtp_xclient"],
        "[backend imap]", "address = 127.0.0.1:%d" % backends.ports["imap"],
        "[backend pop3]", "address = 127.0.0.1:%d" % backends.ports["pop3"],
        "[listener mx]", "protocol = smtp", "listen = 127.0.0.1:%d" % ports["mx"],
        "backend = smtp", "local_domains = example.test",
        "[listener imaps]", "protocol = imap", "listen = 127.0.0.1:%d" % ports["imaps"],
        "tls = implicit", "backend = imap",
        "[listener pop3]", "protocol = pop3", "listen = 127.0.0.1:%d" % ports["pop3"],
        "backend = pop3"]) + "\n"
    m = rig.Moat(binary, conf, str(tmp_path_factory.mktemp("dash")),
                 ports=list(ports.values()))
    try:
        def scrape():
            url = "http://127.0.0.1:%d/metrics" % ports["metrics"]
            with urllib.request.urlopen(url, timeout=5) as r:
                body = r.read().decode()
            # moat_backend_up appears once the first probe has run
            return body if "moat_backend_up{" in body else None
        body = rig.wait_until(scrape, timeout=10, interval=0.2, what="a complete /metrics")
    finally:
        m.stop()
    names, labels = set(), {}
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            names.add(s.name)
            for k, v in s.labels.items():
                labels.setdefault(k, set()).add(v)
    return names, labels


def test_dashboard_is_grafana_json():
    dash, exprs = dashboard_exprs()
    assert dash["title"] and dash["uid"] and dash["panels"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in dash["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        for t in p.get("targets", []):
            assert t["expr"] and t["refId"], p["title"]
    # the topics an operator looks for are all there
    used = set().union(*(series_names(e) for e in exprs))
    for name in ("moat_sessions_open", "moat_sessions_total", "moat_refusals_total",
                 "moat_auth_failures_total", "moat_tls_handshake_failures_total",
                 "moat_backend_up", "moat_tls_certificate_expiry_seconds"):
        assert name in used, name


def test_dashboard_and_rules_use_only_live_metrics(live_metrics):
    names, labels = live_metrics
    _, dexprs = dashboard_exprs()
    _, rexprs = rules_exprs()
    missing = []
    for where, exprs in (("dashboard", dexprs), ("rules", rexprs)):
        for e in exprs:
            for n in series_names(e) - PROMETHEUS_SERIES:
                if n not in names:
                    missing.append("%s: %s (in %r)" % (where, n, e))
            for key, value in MATCHER.findall(e):
                if value not in labels.get(key, ()):
                    missing.append("%s: %s=%r (in %r)" % (where, key, value, e))
    assert missing == [], "\n".join(missing)
    # the check above can fail: a made-up name or label value is not in /metrics
    assert "moat_no_such_metric_total" not in names
    assert "no_such_control" not in labels["control"]


def test_rules_pass_promtool():
    _, rexprs = rules_exprs()
    assert len(rexprs) >= 8
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool missing (Debian package prometheus: run scripts/deps)")
    r = subprocess.run([promtool, "check", "rules", RULES], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout
    # the unit tests: alerts fire on the series they are meant for, and only then
    r = subprocess.run([promtool, "test", "rules", os.path.basename(RULES_TEST)], cwd=DOCS,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
