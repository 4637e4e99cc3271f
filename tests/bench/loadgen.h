/*
 * moat_loadgen's shared state: one connection, the options, the counters. loadgen.c owns the
 * event loop, sockets, TLS and statistics; loadgen_modes.c owns the protocol dialogues (one
 * on_line function per mode). Nothing here talks to anything but 127.0.0.0/8.
 */
#ifndef MOAT_LOADGEN_H
#define MOAT_LOADGEN_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>

enum mode {
    M_HANDSHAKE = 0,
    M_HOLD,
    M_SMTP_SEND,
    M_IMAP_FETCH,
    M_IMAP_LOGIN,
    M_SMTP_SUBMIT,
    M_STARTTLS,
};
enum cstate { C_CONNECT = 0, C_TLS, C_RUN, C_DEAD };

#define INBUF (64 * 1024)
#define OUTBUF (32 * 1024)

struct conn {
    int fd;
    SSL *ssl;
    enum cstate st;
    int pstate;        /* protocol step */
    int reply;         /* smtp: final replies seen in the transaction loop */
    int sent;          /* smtp: messages accepted on this connection */
    int fetches;       /* imap-fetch: FETCH commands completed */
    long long literal; /* bytes of an IMAP literal still to consume */
    int ok;            /* the session did what it should */
    uint32_t events;   /* epoll interest */
    double t0;         /* connect time */
    double t_cmd;      /* imap-fetch: when the current FETCH was sent */
    size_t inlen, outlen, outoff;
    char in[INBUF];
    char out[OUTBUF];
    struct conn *next_dead;
};

struct options {
    enum mode mode;
    const char *host;
    int port;
    int tls;
    int conc;
    long total;
    double duration;
    double timeout;
    int src_lo, src_hi;
    const char *user, *pass;
    int ehlo;
    int no_starttls; /* starttls -P: EHLO, EHLO, QUIT (the dialogue without TLS) */
    int per_conn;
    const char *rcpt;
    const char *ciphersuites, *cipher_list, *groups, *sigalgs;
    int resume;
    size_t body_bytes;
    int verbose;
};

struct stats {
    long started, ok, fail, active, msgs, resumed;
    long long bytes;
    double lat_max;
    double t_first, t_last; /* imap-fetch: timing of the fetch loop */
    char cipher[64], version[16];
};

extern struct options opt;
extern struct stats st;

/* loadgen.c */
double now(void);
void warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void finish(struct conn *c, int ok);
int sendf(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int send_bytes(struct conn *c, const char *p, size_t n);
void sample(double secs);       /* one latency sample, in seconds */
void tls_start(struct conn *c); /* begin a TLS handshake on a running connection (STARTTLS) */
void note_tls(struct conn *c);  /* record version/cipher/resumption once the handshake is done */

/* loadgen_modes.c */
void on_line(struct conn *c, char *line);
void on_tls_ready(struct conn *c);   /* the handshake finished (after connect or STARTTLS) */
int on_eof_expected(struct conn *c); /* the server closing now is the normal end */

#endif
