/*
 * smtp_int.h: what smtp.c (the client-side state machine) and smtp_backend.c (the backend
 * hand-off and the command-aware relay) share: the per-session state and the few functions one
 * calls in the other. Only these two files include it.
 */
#ifndef MOAT_SMTP_INT_H
#define MOAT_SMTP_INT_H

#include "dialogue.h"
#include "protocol.h"
#include "smtp_data.h"
#include "smtp_parse.h"

#define SMTP_FIFO_MAX 64 /* pipelined commands waiting for a backend reply */

enum smtp_state {
    SMTP_FRESH = 0,   /* after the greeting or STARTTLS: EHLO/HELO expected */
    SMTP_READY,       /* EHLO/HELO done, no backend yet */
    SMTP_STARTTLS,    /* 220 sent, handshake pending: no input */
    SMTP_AUTH_LINE,   /* 334 sent, waiting for a SASL response line */
    SMTP_AUTH_VERIFY, /* credentials being checked by the backend */
    SMTP_HANDOFF,     /* backend being connected / told who the client is */
    SMTP_RELAY,       /* hand-off done: commands relayed one by one or pipelined */
    SMTP_DATA,        /* message content streamed to the backend */
    SMTP_CLOSING,
    SMTP_GREET_WAIT, /* greet_pause: greeting not sent yet; a client talking now is refused */
    SMTP_DATA_CHECK  /* end of data seen, the final dot waits for the URI list answers */
};

/* Where the hand-off sequence is (smtp_backend.c). */
enum smtp_handoff_step {
    HO_NONE = 0,
    HO_CONNECT,   /* session_backend_connect() asked */
    HO_GREETING,  /* waiting for 220 */
    HO_EHLO_MOAT, /* EHLO <moat> sent, XCLIENT expected in the reply */
    HO_XCLIENT1,  /* first XCLIENT of a split pair sent */
    HO_XCLIENT,   /* (last) XCLIENT sent, waiting for the new 220 */
    HO_EHLO,      /* EHLO <client's name> sent */
    HO_AUTH,      /* AUTH PLAIN (replayed credentials) sent */
    HO_DONE
};

/* What a reply the backend owes us belongs to. */
enum smtp_pending {
    PEND_OTHER = 0, /* forwarded verbatim */
    PEND_MAIL,
    PEND_RCPT,
    PEND_RSET,
    PEND_EHLO, /* replaced by moat's own EHLO keywords on success */
    PEND_DATA, /* 354 starts the content */
    PEND_DOT   /* the end of a message */
};

struct smtp_session {
    enum smtp_state state;
    enum smtp_handoff_step ho;
    bool ehlo; /* the client said EHLO (not HELO) */
    char helo[SMTP_HELO_MAX + 1];
    bool authenticated;
    char login[SASL_USER_MAX + 1];
    bool discarding;       /* an over-long line is being skipped up to its LF */
    bool early_talker;     /* spoke before the greeting (logged once) */
    bool paused;           /* we paused client input until the FIFO empties */
    bool skip_line;        /* the MAIL that triggered a failed hand-off: consume it unanswered */
    bool handoff_for_auth; /* the hand-off verifies AUTH credentials */
    bool backend_up;       /* the backend leg exists and its hand-off completed */
    bool in_mail;          /* a MAIL was accepted by the backend */
    bool data_wait;        /* DATA relayed, its reply not in yet: the next bytes may be content */
    bool data_dropped;     /* the message was refused mid-content: the backend leg was dropped */
    uint32_t rcpt_count;   /* RCPTs forwarded or accepted in this transaction */
    struct sasl_exchange sasl;
    uint8_t fifo[SMTP_FIFO_MAX]; /* enum smtp_pending, a byte each: every session carries it */
    size_t fifo_head, fifo_len;
    bool reply_streaming; /* lines of a multi-line backend reply are being passed on */
    bool ehlo_xclient;    /* the backend's EHLO reply listed XCLIENT */
    struct smtp_data data;
    const char *spf_header; /* smtp_dns.c: Received-SPF line for this transaction, or NULL */
};

/* smtp.c */
struct smtp_session *smtp_st(struct session *s);
void smtp_enter_state(struct session *s, enum smtp_state next);
void smtp_reply_ehlo(struct session *s);
/* moat-initiated close with a 421 line "421 <code> <hostname> <text>". */
void smtp_close_421(struct session *s, const char *code, const char *text, enum close_reason r);
void smtp_pause(struct session *s);
void smtp_resume(struct session *s);

/* smtp_auth.c: credentials complete (in st->sasl.cred): verify them; the one failure path */
void smtp_auth_start(struct session *s);
/* A mechanism the auth service runs (CRAM-MD5, SCRAM): its next step with st->sasl's response */
void smtp_auth_server_step(struct session *s);
void smtp_auth_failed(struct session *s);
void smtp_auth_succeeded(struct session *s, const char *user);
void smtp_on_auth_done(struct session *s, const struct auth_result *r);
/* smtp.c: its part in a SASL exchange */
extern const struct dialogue_sasl smtp_sasl;

/* smtp_dns.c */
/* Before a MAIL goes on: true when it must not (refused: reply sent; or *wait_out: keep the line,
 * input paused until on_dns_done). */
bool smtp_dns_gate(struct session *s, struct smtp_session *st, const struct smtp_path *path,
                   bool *wait_out);
void smtp_on_dns_done(struct session *s);
/* 354 arrived: the Received-SPF header goes to the backend ahead of the content. */
void smtp_dns_data_start(struct session *s, struct smtp_session *st);
/* The end of an acceptable message: delivered, refused, or held in SMTP_DATA_CHECK until the
 * URI list answers are in (on_dns_done) or [dns] uribl_timeout ran out (give_up). */
void smtp_dns_data_end(struct session *s, bool give_up);

/* smtp_backend.c: after the content, the final dot goes (deliver) or never does (refuse: the
 * backend leg is dropped, the client gets reply and may start a new transaction). */
void smtp_data_deliver(struct session *s);
void smtp_data_refuse(struct session *s, const char *reply);

/* smtp_backend.c */
void smtp_handoff_start(struct session *s, bool for_auth);
void smtp_on_backend(struct session *s, enum backend_event ev);
size_t smtp_on_backend_input(struct session *s, const char *p, size_t n);
/* Relay one client command line (already policy-checked) and note the reply it owes. */
int smtp_relay_command(struct session *s, const char *line, size_t n, enum smtp_pending what);
bool smtp_fifo_empty(const struct smtp_session *st);
/* Message content after 354; returns bytes consumed. */
size_t smtp_data_input(struct session *s, const char *p, size_t n);

#endif
