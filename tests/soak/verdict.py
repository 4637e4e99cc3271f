"""Judge a finished soak (tests/soak/soak.py) and write its report: table, plot, raw data."""

import collections
import json
import os
import re
import shutil
import subprocess
import sys
import time

import report

HERE = os.path.dirname(os.path.abspath(__file__))


def sanitizer_reports(log, marks):
    lines = log.splitlines()
    out = []
    for i, line in enumerate(lines):
        if any(m in line for m in marks):
            out.extend(lines[i:i + 12])
    return out


def pct(a, b):
    return 100.0 * (a - b) / b if b else 0.0


def git_head():
    try:
        return subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def write(s, a, result, found, foreign, queued, status, metrics_end, t_begin):
    import soak
    ld_w, base, ld, end = result
    fails = list(s.failures) + ld_w.failures + ld.failures
    msgs = dict(ld_w.msgs)
    msgs.update(ld.msgs)
    proxied = report.oracle(s.events)
    counts, rfails, notes = report.reconcile(msgs, found, foreign, proxied, s.postfix_windows)
    fails += rfails
    if queued:
        fails.append("%d local recipients still in Postfix's queue after 180 s" % queued)
    drift_rss = pct(end["rss_kb"], base["rss_kb"])
    drift_fds = pct(end["fds"], base["fds"])
    if abs(drift_rss) > soak.DRIFT * 100 and a.smoke:
        notes.append("RSS drift %.1f%% (not judged in --smoke: 20 s phases are too short for a "
                     "stable baseline)" % drift_rss)
    elif drift_rss > soak.DRIFT * 100:
        fails.append("RSS drift %.1f%% (%d KB after warm-up, %d KB at the end)"
                     % (drift_rss, base["rss_kb"], end["rss_kb"]))
    elif drift_rss < -soak.DRIFT * 100:
        # below the baseline: the warm-up's own peak was still in it and malloc has since given
        # pages back. Growth is what a leak looks like; a fall is reported, not failed.
        notes.append("RSS %.1f%% below the warm-up baseline (%d -> %d KB): memory returned, "
                     "not a drift" % (drift_rss, base["rss_kb"], end["rss_kb"]))
    if abs(drift_fds) > soak.DRIFT * 100:
        fails.append("fd drift %.1f%% (%d after warm-up, %d at the end)"
                     % (drift_fds, base["fds"], end["fds"]))
    log = s.moat_log()
    shutil.copy(s.moat.log_path, os.path.join(s.out, "moat.log"))
    for path in (s.backends.pf_log, s.backends.dv_log):
        if os.path.exists(path):
            shutil.copy(path, s.out)
    san = sanitizer_reports(log, soak.SANITIZER_MARKS)
    if san:
        fails.append("sanitizer / assertion reports in moat's log:\n    " +
                     "\n    ".join(san[:40]))
    if status != 0:
        fails.append("moat exited with status %s after SIGTERM" % status)
    reload_failed = log.count("event=reload_failed")
    if reload_failed:
        fails.append("%d reloads failed" % reload_failed)
    refused = collections.Counter(re.findall(r"event=refused .*?reason=(\w+)", log))
    for need in ("max_sessions", "max_sessions_per_ip", "max_tls_handshakes",
                 "connection_rate_per_ip"):
        if not refused.get(need):
            fails.append("the bursts never hit %s (no event=refused reason=%s)" % (need, need))
    for f in s.faults:
        for group, (held, nrefused) in (f.get("held_refused") or {}).items():
            if not nrefused and group != "max_tls_handshakes (in handshake)":
                fails.append("%s: nothing refused in group %s (%d held)" % (f["name"], group,
                                                                            held))
    timeout_rows = []
    kinds = sorted(set(ld_w.close_delays) | set(ld.close_delays))
    for kind in kinds:
        d = ld_w.close_delays.get(kind, []) + ld.close_delays.get(kind, [])
        timeout_rows.append((kind, len(d), max(d), sorted(d)[len(d) // 2]))
    peak = max((x["moat_sessions"] for x in s.samples), default=0)
    peak_rss = max((x["rss_kb"] for x in s.samples), default=0)
    peak_fds = max((x["fds"] for x in s.samples), default=0)
    total_sessions = sum(int(v) for v in re.findall(r"(?m)^moat_sessions_total\{[^}]*\} (\d+)",
                                                     metrics_end))
    st = collections.Counter()
    for c in (ld_w.stats, ld.stats):
        st.update(c)
    ok_sessions = sum(v for k, v in st.items() if k.startswith("ok "))
    err_sessions = sum(v for k, v in st.items() if k.startswith("err "))

    verdict = "PASS" if not fails else "FAIL (%d)" % len(fails)
    faults = [f for f in s.faults if f["phase"] == "run" and f["name"] not in ("reload",
                                                                             "load off")]
    t_run = min((x["t"] for x in s.samples if x["phase"] == "run"), default=t_begin)
    fault_text = "; ".join("%s at +%.0f s (%.0f s)" % (f["name"], f["t0"] - t_run,
                                                       f["t1"] - f["t0"]) for f in faults)
    bursts = [f for f in s.faults if "burst" in f["name"]]
    rows = [
        ("verdict", "**%s**" % verdict),
        ("when, what", "%s, moat %s (ASan+UBSan), %d CPUs" % (
            time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t_begin)), git_head(),
            os.cpu_count())),
        ("load", "%d target sessions (%d active workers), warm-up %.0f s, run %.0f s" % (
            a.sessions, a.active, a.warmup, a.duration)),
        ("peak moat sessions open / sessions accepted in all", "%d / %d" % (peak,
                                                                           total_sessions)),
        ("client sessions completed / failed (all causes)", "%d / %d" % (ok_sessions,
                                                                        err_sessions)),
        ("faults in the run", fault_text),
        ("SIGHUP reloads (certificate ECDSA <-> RSA)", "%d done, %d failed" % (s.reloads,
                                                                              reload_failed)),
        ("burst (held, refused) per limit", "; ".join(str(f.get("held_refused"))
                                                      for f in bursts)),
        ("moat refusals by reason (whole run)", ", ".join("%s %d" % kv for kv in
                                                          sorted(refused.items()))),
        ("messages sent (MAIL FROM issued)", len(msgs)),
        ("250 from moat", counts["sent acked"]),
        ("250 and in the maildir exactly once, byte-exact (per recipient)",
         counts["acked and delivered once"]),
        ("lost (250, not delivered)", counts["lost"]),
        ("duplicated (by moat: more than one Postfix queue id, or outside a Postfix stop)",
         counts["duplicated"]),
        ("redelivered by Postfix itself (one queue id, killed mid-delivery by the stop)",
         counts["redelivered by Postfix after its stop"]),
        ("corrupt (body differs)", counts["corrupt"]),
        ("never finished (no final dot), must be absent: sent / delivered",
         "%d / %d" % (counts["sent no_dot"] + counts["sent before_data"],
                      counts["delivered though never finished"])),
        ("after the dot without a 250 (reply or drop): sent",
         counts["sent after_dot_reply"] + counts["sent after_dot_drop"]),
        ("... of them delivered (explained) / not delivered / unexplained",
         "%d / %d / %d" % (counts["maybe: delivered, explained"],
                           counts["maybe: not delivered"],
                           counts["maybe: delivered, unexplained"])),
        ("in the maildir but not sent by the soak", counts["in maildir, not sent by the soak"]),
        ("copies read back through moat (IMAP FETCH / POP3 RETR), all byte-exact",
         "%d / %d" % (st["copies checked imap"], st["copies checked pop3"])),
        ("wrong passwords refused", st["badlogin refused"]),
        ("RSS after warm-up -> peak -> end", "%d -> %d -> %d KB (%+.1f%%)" % (
            base["rss_kb"], peak_rss, end["rss_kb"], drift_rss)),
        ("fds after warm-up -> peak -> end", "%d -> %d -> %d (%+.1f%%)" % (
            base["fds"], peak_fds, end["fds"], drift_fds)),
        ("sessions open after the load went away", "%d (all closed %.0f s after)" % (
            end["left"], end["drain_s"])),
        ("sanitizer reports / assertions", len(san)),
        ("driver event-loop lag (max over the samples)", "%d ms" % max(
            (x.get("lag_ms", 0) for x in s.samples), default=0)),
    ]
    for kind, n, mx, med in timeout_rows:
        rows.append(("silent client %s: closed by moat after (median, max)" % kind,
                     "%.1f s, %.1f s (n=%d)" % (med, mx, n)))
    text = report.table(rows)
    if fails:
        text += "\nFailures:\n\n" + "".join("- %s\n" % f for f in fails[:100])
    if notes:
        text += "\nExplained (not moat's doing):\n\n" + "".join(
            "- %s\n" % n for n in notes[:30])
    text += "\nClient outcomes:\n\n```\n" + "".join(
        "%-50s %d\n" % kv for kv in sorted(st.items())) + "```\n"
    png = os.path.join(s.out, "soak.png")
    try:
        report.plot(s.samples, s.faults, png, "moat soak %s: %d sessions, %.0f s run (%s)" % (
            time.strftime("%Y-%m-%d", time.gmtime(t_begin)), a.sessions, a.duration,
            verdict))
    except ImportError as e:
        print("no plot (python3-matplotlib missing: %s)" % e, file=sys.stderr)
    with open(os.path.join(s.out, "report.md"), "w") as f:
        f.write(text)
    with open(os.path.join(s.out, "samples.jsonl"), "w") as f:
        f.writelines(json.dumps(x) + "\n" for x in s.samples)
    with open(os.path.join(s.out, "messages.jsonl"), "w") as f:
        f.writelines(json.dumps(m) + "\n" for m in msgs.values())
    with open(os.path.join(s.out, "close-delays.json"), "w") as f:
        json.dump({"warm-up": ld_w.close_delays, "run": ld.close_delays}, f)
    with open(os.path.join(s.out, "faults.json"), "w") as f:
        json.dump(s.faults, f, indent=1)
    print(text)
    print("== %s; report, plot and data in %s" % (verdict, s.out), file=sys.stderr)
    if a.readme:
        shutil.copy(png, os.path.join(HERE, "soak-report.png"))
        report.update_readme(os.path.join(HERE, "README.md"),
                             "## Latest run\n\n" + text + "\n![soak plot](soak-report.png)\n")
    return not fails
