"""The soak's end: reconcile the maildirs against what moat answered, judge, write the table and
the plot (tests/soak/soak.py calls these)."""

import collections
import hashlib
import json
import os
import re

import proto

QUEUE_ID = re.compile(rb"(?m)^\s+by [^\n]*\(Postfix\) with E?SMTPS?A? id ([0-9A-F]+)")


def read_maildirs(backends, users):
    """{(msgid, user): [(ok_body, queue_id)]} and [foreign message heads]."""
    found = collections.defaultdict(list)
    foreign = []
    for user in users:
        for path, data in backends.messages(user):
            head, _, body = data.partition(b"\n\n")
            m = proto.MSGID_RE.search(head)
            h = proto.HASH_RE.search(head)
            if not m or not h or not m.group(1).startswith(b"soak-"):
                foreign.append("%s: %r" % (path, head[:300]))
                continue
            ok = hashlib.sha256(body).hexdigest() == h.group(1).decode()
            q = QUEUE_ID.search(head)
            found[(m.group(1).decode(), user)].append((ok, q.group(1).decode() if q else "?"))
    return found, foreign


def oracle(events_path):
    """{msgid: last backend code the fault proxy saw after the final dot (int or 'cut')}."""
    out = {}
    try:
        with open(events_path) as f:
            for line in f:
                e = json.loads(line)
                if "msgid" in e:
                    out[e["msgid"]] = e["code"]
    except FileNotFoundError:
        pass
    return out


def in_window(t, windows, before=5.0, after=5.0):
    return any(a - before <= t <= b + after for a, b in windows)


def reconcile(msgs, found, foreign, proxied, postfix_windows):
    """Compare. Returns (counts Counter, failures [str], notes [str])."""
    n = collections.Counter()
    fails, notes = [], []
    seen = set()
    users = sorted({u for _, u in found} | {"alice@example.test", "bob@example.test"})
    for msgid, rec in msgs.items():
        st = rec["state"]
        n["sent " + st] += 1
        for user in users:
            copies = found.get((msgid, user), [])
            seen.add((msgid, user))
            if any(not ok for ok, _ in copies):
                fails.append("%s for %s: delivered body differs from what was sent" % (msgid, user))
                n["corrupt"] += 1
            k = len(copies)
            accepted = user in rec["rcpts"]
            if k > 1:
                qids = sorted({q for _, q in copies})
                if len(qids) == 1 and "?" not in qids and in_window(
                        rec.get("t_dot", rec["t"]), postfix_windows, before=30, after=10):
                    # One queue id: Postfix took it once and its delivery agent wrote it twice,
                    # killed by the stop after the maildir write and before the queue update
                    # (Postfix delivers at least once). Not moat's doing; reported apart.
                    n["redelivered by Postfix after its stop"] += 1
                    notes.append("%s for %s: %d copies with one Postfix queue id %s, final dot "
                                 "while Postfix was being stopped: Postfix redelivered it"
                                 % (msgid, user, k, qids[0]))
                else:
                    n["duplicated"] += 1
                    fails.append("%s for %s: %d copies (state %s, Postfix queue ids %s)"
                                 % (msgid, user, k, st, ", ".join(qids)))
            if st == "acked":
                if accepted and k == 0:
                    n["lost"] += 1
                    fails.append("%s for %s: 250 from moat, not in the maildir" % (msgid, user))
                elif accepted and k == 1:
                    n["acked and delivered once"] += 1
                elif k:
                    n["delivered to a refused recipient"] += 1
                    fails.append("%s: delivered to %s whose RCPT was refused" % (msgid, user))
            elif st in ("before_data", "no_dot"):
                if k:
                    n["delivered though never finished"] += 1
                    fails.append("%s for %s: delivered, but the client never sent the final dot"
                                 " (state %s)" % (msgid, user, st))
            elif not accepted:
                if k:
                    n["delivered to a refused recipient"] += 1
                    fails.append("%s: delivered to %s whose RCPT was refused" % (msgid, user))
            else:  # after_dot_reply / after_dot_drop: maybe
                if not k:
                    n["maybe: not delivered"] += 1
                    continue
                n["maybe: delivered"] += 1
                code = proxied.get(msgid)
                t = rec.get("t_dot", rec["t"])
                why = None
                if code == "cut":
                    why = "the fault relay reset Postfix's reply after the dot"
                elif code == 250:
                    fails.append("%s for %s: Postfix said 250 after the dot, the client got %s"
                                 % (msgid, user, rec.get("reply", "no reply (dropped)")))
                elif in_window(t, postfix_windows):
                    why = "final dot while Postfix was being stopped"
                elif st == "after_dot_drop":
                    why = "the client's connection dropped after the dot"
                if why:
                    n["maybe: delivered, explained"] += 1
                    notes.append("%s for %s: %s, %s; delivered (%s)" % (
                        msgid, user, st, rec.get("reply", "no reply"), why))
                elif code != 250:
                    n["maybe: delivered, unexplained"] += 1
                    fails.append("%s for %s: moat answered %r after the dot, yet it was "
                                 "delivered, with no fault to explain it" % (
                                     msgid, user, rec.get("reply")))
    for key in found:
        if key not in seen:
            n["in maildir, not sent by the soak"] += 1
            fails.append("%s for %s: in the maildir, but the soak never sent it" % key)
    for f in foreign:
        n["in maildir, not sent by the soak"] += 1
        fails.append("foreign message: " + f)
    return n, fails, notes


def plot(samples, faults, path, title):
    """RSS, fds, sessions and errors over time as a PNG (matplotlib, Agg)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    t0 = samples[0]["t"]
    ts = [s["t"] - t0 for s in samples]
    fig, ax = plt.subplots(4, 1, figsize=(11, 10), sharex=True)
    ax[0].plot(ts, [s["rss_kb"] / 1024 for s in samples], color="tab:blue")
    ax[0].set_ylabel("moat RSS (MB)")
    ax[1].plot(ts, [s["fds"] for s in samples], color="tab:orange")
    ax[1].set_ylabel("moat fds")
    ax[2].plot(ts, [s["moat_sessions"] for s in samples], label="moat sessions open")
    ax[2].plot(ts, [s["client_open"] for s in samples], label="client connections", alpha=0.7)
    ax[2].set_ylabel("sessions")
    ax[2].legend(loc="upper right", fontsize=8)
    errs = [0] + [max(0, b["errors"] - a["errors"]) for a, b in zip(samples, samples[1:])]
    acks = [0] + [max(0, b["acked"] - a["acked"]) for a, b in zip(samples, samples[1:])]
    ax[3].plot(ts, errs, color="tab:red", label="client errors / sample")
    ax[3].plot(ts, acks, color="tab:green", label="messages acked / sample", alpha=0.7)
    ax[3].set_ylabel("per sample")
    ax[3].legend(loc="upper right", fontsize=8)
    ax[3].set_xlabel("seconds")
    colors = {"dovecot restart": "purple", "postfix stopped": "brown", "backend hangs": "gray",
              "backend resets": "red", "burst": "black", "warm-up burst": "black",
              "load off": "green"}
    for f in faults:
        if f["name"] == "reload":
            for a in ax:
                a.axvline(f["t0"] - t0, color="0.85", lw=0.6, zorder=0)
            continue
        c = colors.get(f["name"], "olive")
        for a in ax:
            a.axvspan(f["t0"] - t0, max(f["t1"], f["t0"] + 2) - t0, color=c, alpha=0.15)
        ax[0].annotate(f["name"], (f["t0"] - t0, ax[0].get_ylim()[1]), fontsize=7,
                       rotation=90, va="top", color=c)
    for s0, s1 in zip(samples, samples[1:]):
        if s0["phase"] != s1["phase"]:
            for a in ax:
                a.axvline(s1["t"] - t0, color="k", ls="--", lw=0.8)
            ax[3].annotate(s1["phase"], (s1["t"] - t0, 0), fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def table(rows):
    out = ["| | |", "|---|---|"]
    out += ["| %s | %s |" % (k, v) for k, v in rows]
    return "\n".join(out) + "\n"


def update_readme(readme, section):
    """Replace the text between the report markers of README (added if missing)."""
    begin, end = "<!-- soak-report -->", "<!-- /soak-report -->"
    text = open(readme).read() if os.path.exists(readme) else ""
    block = "%s\n%s\n%s" % (begin, section.strip(), end)
    if begin in text and end in text:
        text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    with open(readme, "w") as f:
        f.write(text)
