#!/usr/bin/python3
"""Write the seed inputs of fuzz_session (see the comment at the top of fuzz_session.c for the
format): tests/fuzz/corpus/session/* (normal sessions, must replay clean) and
tests/fuzz/crashers/session/* (inputs that crashed moat once; each stays until its fix is in).

    tests/fuzz/session_seeds.py [SRCDIR]
"""
import base64
import os
import sys

SMTP, SUBMISSION, IMAP, POP3 = 0, 1, 2, 3
SASL, STARTTLS, ASSUME_TLS, REJECT, REFUSE_GREETING, CLOSE_ON_ACCEPT = 4, 8, 16, 32, 64, 128
CUT = b"\xff."  # ends a chunk
HALF_CLOSE = b"\xffh"
BACKEND_CLOSE = b"\xffk"
BACKEND_ERROR = b"\xffe"
BACKEND_JUNK = b"\xffj"
BACKEND_LONG_LINE = b"\xffJ"


def b64(b):
    return base64.b64encode(b).decode()


def plain(user, password):
    return b64(b"\0" + user.encode() + b"\0" + password.encode())


def script(setting, *chunks):
    """One chunk per argument (str or bytes); a bytes op (HALF_CLOSE ...) is used as is."""
    out = bytes([setting])
    for c in chunks:
        if isinstance(c, bytes) and len(c) == 2 and c[0] == 0xFF:
            out += c
            continue
        data = c.encode() if isinstance(c, str) else c
        out += data.replace(b"\xff", b"\xff" + b"f") + CUT
    return out


def lines(*ls):
    return "".join(x + "\r\n" for x in ls)


# 1445 nonce characters: the server-first message (with Cyrus's 32-character nonce and the
# salt of this sasldb) is 2044..2047 characters of base64, which still fits libsasl2's and the
# auth pool's 2 KB but not a reply line ("334 " / "+ " in front, CRLF after) of 2 KB.
SCRAM_LONG = b64(b"n,,n=alice,r=" + b"A" * 1445)

SEEDS = {
    "smtp_mx_delivery": script(
        SMTP, lines("EHLO client.example"), lines("MAIL FROM:<a@example.org> SIZE=100"),
        lines("RCPT TO:<bob@fuzz.test>"), lines("RCPT TO:<reject@fuzz.test>"), lines("DATA"),
        lines("Subject: hi", "", "body", "..dot", "."), lines("QUIT")),
    "smtp_mx_pipelined": script(
        SMTP, lines("EHLO client.example", "MAIL FROM:<a@example.org>", "RCPT TO:<bob@fuzz.test>",
                    "DATA"), lines("x", ".", "RSET", "NOOP", "HELO again", "QUIT")),
    "smtp_mx_relay_denied": script(
        SMTP, lines("HELO c"), lines("MAIL FROM:<>"), lines("RCPT TO:<x@elsewhere.example>"),
        lines("VRFY bob"), lines("BDAT 5 LAST"), "hello", lines("QUIT")),
    "smtp_starttls_injection": script(
        SMTP | STARTTLS, lines("EHLO c"), lines("STARTTLS", "MAIL FROM:<evil@x>"),
        b"\x16\x03\x01\x00\x05hello"),
    "smtp_starttls_garbage_handshake": script(
        SUBMISSION | STARTTLS, lines("EHLO c"), lines("STARTTLS"), b"\x16\x03\x01\x02\x00\x01",
        b"\x00" * 64),
    "smtp_data_halfclose": script(
        SMTP, lines("EHLO c", "MAIL FROM:<a@b.example>", "RCPT TO:<bob@fuzz.test>", "DATA"),
        lines("Subject: cut"), HALF_CLOSE),
    "submission_auth_plain_backend": script(
        SUBMISSION | ASSUME_TLS, lines("EHLO client.example"),
        lines("AUTH PLAIN " + plain("alice@fuzz.test", "secret")), lines("MAIL FROM:<alice@fuzz.test>"),
        lines("RCPT TO:<someone@example.org>"), lines("DATA"), lines("Subject: s", "", "b", "."),
        lines("QUIT")),
    "submission_auth_login_sasl": script(
        SUBMISSION | SASL | ASSUME_TLS, lines("EHLO c"), lines("AUTH LOGIN"),
        lines(b64(b"alice")), lines(b64(b"secret")), lines("MAIL FROM:<alice@fuzz.test>"),
        lines("QUIT")),
    "submission_auth_plain_sasl_pipelined": script(
        SUBMISSION | SASL | ASSUME_TLS,
        lines("EHLO c", "AUTH PLAIN " + plain("alice", "secret"), "MAIL FROM:<alice@fuzz.test>",
              "RCPT TO:<x@example.org>", "DATA"), lines("hi", ".", "QUIT")),
    "submission_auth_failures": script(
        SUBMISSION | SASL | ASSUME_TLS, lines("EHLO c"),
        lines("AUTH PLAIN " + plain("alice", "wrong")), lines("AUTH PLAIN " + plain("bob", "x")),
        lines("AUTH PLAIN " + plain("nobody", "x")), lines("NOOP")),
    "submission_auth_rejected_by_backend": script(
        SUBMISSION | ASSUME_TLS | REJECT, lines("EHLO c"),
        lines("AUTH PLAIN " + plain("alice", "secret")), lines("AUTH PLAIN *"), lines("QUIT")),
    "submission_cram_md5": script(
        SUBMISSION | SASL | ASSUME_TLS, lines("EHLO c"), lines("AUTH CRAM-MD5"),
        lines(b64(b"alice 0123456789abcdef0123456789abcdef")), lines("AUTH CRAM-MD5"), lines("*"),
        lines("QUIT")),
    "submission_scram": script(
        SUBMISSION | SASL | ASSUME_TLS, lines("EHLO c"),
        lines("AUTH SCRAM-SHA-256 " + b64(b"n,,n=alice,r=fyko+d2lbbFgONRv9qkxdawL")),
        lines(b64(b"c=biws,r=fyko+d2lbbFgONRv9qkxdawLxyz,p=AAAA")), lines("QUIT")),
    "submission_no_tls_auth_refused": script(
        SUBMISSION | SASL | STARTTLS, lines("EHLO c"),
        lines("AUTH PLAIN " + plain("alice", "secret")), lines("QUIT")),
    "submission_backend_down": script(
        SUBMISSION | ASSUME_TLS | CLOSE_ON_ACCEPT, lines("EHLO c"),
        lines("AUTH PLAIN " + plain("alice@fuzz.test", "secret")), lines("QUIT")),
    "submission_backend_refuses": script(
        SUBMISSION | SASL | ASSUME_TLS | REFUSE_GREETING, lines("EHLO c"),
        lines("AUTH PLAIN " + plain("alice", "secret")), lines("QUIT")),
    "submission_backend_closes_in_relay": script(
        SUBMISSION | ASSUME_TLS, lines("EHLO c"), lines("AUTH PLAIN " + plain("alice@fuzz.test", "secret")),
        lines("MAIL FROM:<alice@fuzz.test>"), BACKEND_CLOSE, lines("RCPT TO:<x@example.org>")),
    "submission_backend_tempfail": script(
        SUBMISSION | ASSUME_TLS, lines("EHLO c"), lines("AUTH PLAIN " + plain("alice@fuzz.test", "secret")),
        BACKEND_ERROR, lines("MAIL FROM:<alice@fuzz.test>"), lines("QUIT")),
    "imap_login_select": script(
        IMAP | ASSUME_TLS, lines("a1 CAPABILITY"), lines("a2 LOGIN alice secret"),
        lines("a3 SELECT INBOX"), lines("a4 FETCH 1 BODY[]"), lines("a5 IDLE"), lines("DONE"),
        lines("a6 LOGOUT")),
    "imap_login_sasl_literal": script(
        IMAP | SASL | ASSUME_TLS, lines("a1 LOGIN {5}"), lines("alice {6}"), lines("secret"),
        lines("a2 APPEND INBOX {5+}", "hello"), lines("a3 LOGOUT")),
    "imap_authenticate_plain": script(
        IMAP | SASL | ASSUME_TLS, lines("a1 AUTHENTICATE PLAIN"),
        lines(plain("alice", "secret")), lines("a2 SELECT INBOX"), lines("a3 LOGOUT")),
    "imap_authenticate_ir_backend": script(
        IMAP | ASSUME_TLS, lines("a1 AUTHENTICATE PLAIN " + plain("alice", "secret")),
        lines("a2 NOOP"), BACKEND_CLOSE, lines("a3 NOOP")),
    "imap_cram_scram": script(
        IMAP | SASL | ASSUME_TLS, lines("a1 AUTHENTICATE CRAM-MD5"), lines("*"),
        lines("a2 AUTHENTICATE SCRAM-SHA-1 " + b64(b"n,,n=bob,r=abcdefgh")), lines("=")),
    "imap_rejected_then_logout": script(
        IMAP | ASSUME_TLS | REJECT, lines("a1 LOGIN alice secret"), lines("a2 LOGIN bob x"),
        lines("a3 LOGIN carol y"), lines("a4 LOGOUT")),
    "imap_starttls": script(
        IMAP | STARTTLS, lines("a1 CAPABILITY"), lines("a2 STARTTLS", "a3 LOGIN x y"),
        b"\x16\x03\x03\x00\x01\x01"),
    "imap_plaintext_login_refused": script(
        IMAP | STARTTLS, lines("a1 LOGIN alice secret"), lines("a2 AUTHENTICATE PLAIN"),
        lines("GET / HTTP/1.1"), lines("Host: x")),
    "pop3_user_pass_retr": script(
        POP3 | ASSUME_TLS, lines("CAPA"), lines("USER alice"), lines("PASS secret"),
        lines("STAT"), lines("LIST"), lines("RETR 1"), lines("DELE 1"), lines("QUIT")),
    "pop3_sasl_auth_plain_pipelined": script(
        POP3 | SASL | ASSUME_TLS, lines("CAPA", "AUTH PLAIN " + plain("alice", "secret"),
                                        "UIDL", "TOP 1 0", "QUIT")),
    "pop3_auth_continuation": script(
        POP3 | SASL | ASSUME_TLS, lines("AUTH PLAIN"), lines(plain("bob", "hunter2")),
        lines("STAT"), lines("QUIT")),
    "pop3_cram_abort": script(
        POP3 | SASL | ASSUME_TLS, lines("AUTH CRAM-MD5"), lines("*"), lines("USER alice"),
        lines("PASS secret"), lines("QUIT")),
    "pop3_rejected": script(
        POP3 | ASSUME_TLS | REJECT, lines("USER alice"), lines("PASS secret"),
        lines("USER alice"), lines("PASS x"), lines("USER a"), lines("PASS y")),
    "pop3_stls": script(POP3 | STARTTLS, lines("CAPA"), lines("STLS", "USER x"), b"\x16\x03"),
    "pop3_backend_refuses": script(
        POP3 | SASL | ASSUME_TLS | REFUSE_GREETING, lines("USER alice"), lines("PASS secret"),
        lines("QUIT")),
    "smtp_backend_junk_in_relay": script(
        SMTP, lines("EHLO c"), lines("MAIL FROM:<a@b.example>"), BACKEND_JUNK,
        lines("RCPT TO:<bob@fuzz.test>"), BACKEND_LONG_LINE, lines("QUIT")),
    "imap_backend_junk_during_login": script(
        IMAP | ASSUME_TLS, lines("a1 LOGIN alice secret"), BACKEND_JUNK, lines("a2 NOOP"),
        BACKEND_LONG_LINE, lines("a3 LOGOUT")),
    "pop3_backend_long_line": script(
        POP3 | ASSUME_TLS, lines("USER alice", "PASS secret"), BACKEND_LONG_LINE, lines("STAT")),
    "pop3_halfclose_after_pass": script(
        POP3 | ASSUME_TLS, lines("USER alice", "PASS secret"), HALF_CLOSE),
}

# Each crashed moat before its fix (MOAT_ASSERT reachable from a client).
CRASHERS = {
    # POP3: a CRAM-MD5 exchange abandoned by a bad line leaves its job parked; USER/PASS then
    # asserts at the top of session_auth_verify (s->auth_job != NULL).
    "pop3_cram_abandoned_then_pass": script(
        POP3 | SASL | ASSUME_TLS, lines("AUTH CRAM-MD5"), b"\x00\r\n", lines("USER a"),
        lines("PASS b")),
    # SCRAM: a client nonce of 1445 characters makes Cyrus's server-first message more than
    # 2 KB with its reply code; session_vwrite's 2 KB line asserts (334 / "+ ").
    "smtp_scram_long_nonce": script(
        SUBMISSION | SASL | ASSUME_TLS, lines("EHLO c"), lines("AUTH SCRAM-SHA-256 " + SCRAM_LONG)),
    "imap_scram_long_nonce": script(
        IMAP | SASL | ASSUME_TLS, lines("a1 AUTHENTICATE SCRAM-SHA-256 " + SCRAM_LONG)),
    "pop3_scram_long_nonce": script(
        POP3 | SASL | ASSUME_TLS, lines("AUTH SCRAM-SHA-256"), lines(SCRAM_LONG)),
}


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
    for sub, seeds in (("corpus", SEEDS), ("crashers", CRASHERS)):
        d = os.path.join(src, "tests", "fuzz", sub, "session")
        os.makedirs(d, exist_ok=True)
        for name, data in seeds.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
