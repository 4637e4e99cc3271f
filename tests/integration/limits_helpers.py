"""The four-listener moat the limit tests share: SMTP (MX), IMAP and POP3 with STARTTLS and an
implicit-TLS IMAP, in front of the rig's Postfix (XCLIENT port) and Dovecot.

Plain module: imported by test_session_limits.py and test_abuse_bounds.py.
"""

import rig

LISTENERS = ("smtp", "imap", "pop3", "imaps")


def start_four(moat, backends, certs, common, moat_section="", metrics=False):
    """Start moat with the four listeners, common in each of them and moat_section in [moat]
    (with metrics, also a metrics address); returns the rig.Moat with .ports {listener: port}
    and .metrics_port. The ports are taken together, so none is handed out twice."""
    taken = rig.free_ports(len(LISTENERS) + 1)
    ports = dict(zip(LISTENERS, taken))
    metrics_port = taken[-1]
    if metrics:
        moat_section += "metrics = 127.0.0.1:%d\n" % metrics_port
    listeners = {
        "smtp": dict(common, protocol="smtp", tls="starttls", backend="postfix",
                     local_domains="example.test"),
        "imap": dict(common, protocol="imap", tls="starttls", backend="imap"),
        "pop3": dict(common, protocol="pop3", tls="starttls", backend="pop3"),
        "imaps": dict(common, protocol="imap", tls="implicit", backend="imap"),
    }
    for name in listeners:
        listeners[name]["listen"] = "127.0.0.1:%d" % ports[name]
    conf = rig.moat_conf(certs, backends={
        "postfix": {"address": "127.0.0.1:%d" % backends.ports["smtp_xclient"],
                    "identity": "xclient"},
        "imap": {"address": "127.0.0.1:%d" % backends.ports["imap"], "identity": "id"},
        "pop3": {"address": "127.0.0.1:%d" % backends.ports["pop3"], "identity": "xclient"},
    }, listeners=listeners)
    conf = conf.replace("[moat]\n", "[moat]\n" + moat_section, 1)
    m = moat(conf, wait_ports=list(ports.values()))
    m.ports = ports
    m.metrics_port = metrics_port if metrics else None
    return m
