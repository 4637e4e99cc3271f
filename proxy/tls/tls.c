/*
 * tls.c: every wolfSSL call in moat lives in this folder: the connections here, the contexts,
 * certificates and tickets in tls_ctx.c, base64 and HMAC in tls_crypto.c, the DER walk in der.c.
 * Non-blocking server connections over custom I/O callbacks with MSG_NOSIGNAL and a read-ahead,
 * strict ALPN, certificate choice by SNI (read from the ClientHello), FreeArrays after the
 * handshake. Uses only wolfSSL's native API (no OPENSSL_EXTRA functions): the tuned build
 * (scripts/wolfssl-build) has no compatibility layer.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/error-ssl.h>

#include "tls.h"
#include "tls_int.h"

struct tls {
    WOLFSSL *ssl;
    struct tls_ctx *ctx;
    int fd;
    int last_error;
    bool peer_closed;
    const char *refusal;      /* why moat itself ended the handshake, for tls_error() */
    bool sni_pending;         /* several certificate pairs: choose one from the ClientHello */
    bool send_more;           /* tls_more_follows(): sends carry MSG_MORE */
    bool sent_more;           /* the last send carried MSG_MORE: tls_push() has work */
    bool rx_drained;          /* a recv came back short: none again before the next read event */
    unsigned char *readahead; /* only while it holds bytes */
    size_t readahead_len, readahead_off;
    char alpn[8];
    char error_text[96];
};

/* I/O callbacks over the non-blocking socket. Reads go through a read-ahead buffer: one recv
 * takes what the client sent (wolfSSL asks for a 5-byte record header, then the body: two recvs
 * per record otherwise), and a recv that comes back short marks the socket drained, so the next
 * request answers WANT_READ without the recv that would only say EAGAIN; the next read event
 * (tls_on_readable) clears the mark. The buffer exists only while it holds bytes; during the
 * handshake the ClientHello waits there for the SNI choice. */
#define TLS_READAHEAD_BYTES (5 + 16384)

static int
recv_error(struct tls *t, ssize_t n)
{
    if (n == 0) {
        t->peer_closed = true;
        return WOLFSSL_CBIO_ERR_CONN_CLOSE;
    }
    switch (errno) {
    case EAGAIN:
#if EWOULDBLOCK != EAGAIN
    case EWOULDBLOCK:
#endif
        t->rx_drained = true;
        return WOLFSSL_CBIO_ERR_WANT_READ;
    case EINTR:
        return WOLFSSL_CBIO_ERR_ISR;
    case ECONNRESET:
        t->peer_closed = true;
        return WOLFSSL_CBIO_ERR_CONN_RST;
    default:
        return WOLFSSL_CBIO_ERR_GENERAL;
    }
}

static void
readahead_release(struct tls *t)
{
    free(t->readahead);
    t->readahead = NULL;
    t->readahead_len = t->readahead_off = 0;
}

/* Appends what the socket has to the read-ahead buffer: > 0 bytes, or recv_error()'s code. */
static int
readahead_fill(struct tls *t)
{
    if (t->rx_drained)
        return WOLFSSL_CBIO_ERR_WANT_READ;
    if (t->readahead == NULL)
        t->readahead = xmalloc(TLS_READAHEAD_BYTES);
    size_t room = TLS_READAHEAD_BYTES - t->readahead_len;
    ssize_t n = recv(t->fd, t->readahead + t->readahead_len, room, 0);
    if (n <= 0) {
        int err = recv_error(t, n);
        if (t->readahead_len == 0)
            readahead_release(t);
        return err;
    }
    if ((size_t)n < room)
        t->rx_drained = true;
    t->readahead_len += (size_t)n;
    return (int)n;
}

static int
io_recv(WOLFSSL *ssl, char *p, int sz, void *arg)
{
    struct tls *t = arg;
    if (sz <= 0)
        return t->peer_closed ? WOLFSSL_CBIO_ERR_CONN_CLOSE : WOLFSSL_CBIO_ERR_WANT_READ;
    if (t->readahead_off == t->readahead_len) {
        readahead_release(t);
        int r = readahead_fill(t);
        if (r <= 0)
            return r;
    }
    size_t k = MOAT_MIN((size_t)sz, t->readahead_len - t->readahead_off);
    memcpy(p, t->readahead + t->readahead_off, k);
    t->readahead_off += k;
    if (t->readahead_off == t->readahead_len)
        readahead_release(t);
    return (int)k;
}

void
tls_on_readable(struct tls *t)
{
    t->rx_drained = false;
}

/* Read until the first record (the ClientHello) is whole, or the buffer is full, or it is
 * plainly not a handshake record: wolfSSL will judge it. */
static enum tls_status
hello_gather(struct tls *t)
{
    for (;;) {
        size_t have = t->readahead_len;
        if (have >= 5) {
            const unsigned char *h = t->readahead;
            size_t record = 5 + ((size_t)h[3] << 8 | h[4]);
            if (h[0] != 0x16 || have >= record)
                return TLS_OK;
        }
        if (have == TLS_READAHEAD_BYTES)
            return TLS_OK;
        switch (readahead_fill(t)) {
        case WOLFSSL_CBIO_ERR_WANT_READ:
            return TLS_WANT_READ;
        case WOLFSSL_CBIO_ERR_ISR:
            continue;
        case WOLFSSL_CBIO_ERR_CONN_CLOSE:
        case WOLFSSL_CBIO_ERR_CONN_RST:
        case WOLFSSL_CBIO_ERR_GENERAL:
            t->last_error = SOCKET_ERROR_E;
            return TLS_ERROR;
        default:
            continue;
        }
    }
}

/* Ends the handshake before wolfSSL has read anything: a fatal alert in a plaintext record
 * (what a ClientHello gets back before any key exists). */
static enum tls_status
sni_refuse(struct tls *t, unsigned char alert, const char *why)
{
    const unsigned char record[] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x02, alert};
    (void)send(t->fd, record, sizeof(record), MSG_NOSIGNAL);
    t->refusal = why;
    return TLS_ERROR;
}

/* SNI with the native API (the servername callback belongs to the OpenSSL layer): load the pair
 * the ClientHello names onto this connection before wolfSSL reads it. With sni_required a
 * ClientHello without SNI ends in a missing_extension alert, with sni_strict one naming no
 * certificate in unrecognized_name. */
static enum tls_status
sni_choose(struct tls *t)
{
    enum tls_status st = hello_gather(t);
    if (st != TLS_OK)
        return st;
    t->sni_pending = false;
    const struct tls_ctx *tc = t->ctx;
    unsigned char name[256];
    word32 len = sizeof(name);
    int rc = wolfSSL_SNI_GetFromBuffer(t->readahead, (word32)t->readahead_len,
                                       WOLFSSL_SNI_HOST_NAME, name, &len);
    if (rc != WOLFSSL_SUCCESS) /* none, or a ClientHello wolfSSL will judge */
        return tc->sni_required ? sni_refuse(t, missing_extension, "no SNI (sni_required)")
                                : TLS_OK;
    int i = tls_cert_for_name(tc, (const char *)name, len);
    if (i < 0 && tc->sni_strict)
        return sni_refuse(t, unrecognized_name, "SNI names no certificate (sni_strict)");
    if (i <= 0)
        return TLS_OK;
    const struct tls_cert *c = &tc->certs[i];
    if (wolfSSL_use_certificate_chain_buffer(t->ssl, c->cert_pem, c->cert_len) != WOLFSSL_SUCCESS ||
        wolfSSL_use_PrivateKey_buffer(t->ssl, c->key_pem, c->key_len, WOLFSSL_FILETYPE_PEM) !=
            WOLFSSL_SUCCESS) {
        t->last_error = MEMORY_E;
        return TLS_ERROR;
    }
    if (tc->ecdhe_size != 0) /* the key just loaded reset it (ctx_set_groups) */
        (void)wolfSSL_SetTmpEC_DHE_Sz(t->ssl, tc->ecdhe_size);
    return TLS_OK;
}

static int
io_send(WOLFSSL *ssl, char *p, int sz, void *arg)
{
    struct tls *t = arg;
    ssize_t n = send(t->fd, p, (size_t)sz, MSG_NOSIGNAL | (t->send_more ? MSG_MORE : 0));
    if (n >= 0) {
        t->sent_more = t->send_more;
        return (int)n;
    }
    switch (errno) {
    case EAGAIN:
#if EWOULDBLOCK != EAGAIN
    case EWOULDBLOCK:
#endif
        return WOLFSSL_CBIO_ERR_WANT_WRITE;
    case EINTR:
        return WOLFSSL_CBIO_ERR_ISR;
    case ECONNRESET:
        return WOLFSSL_CBIO_ERR_CONN_RST;
    case EPIPE:
        return WOLFSSL_CBIO_ERR_CONN_CLOSE;
    default:
        return WOLFSSL_CBIO_ERR_GENERAL;
    }
}

struct tls *
tls_new(struct tls_ctx *ctx, int fd, const char *alpn, bool strict)
{
    WOLFSSL *ssl = wolfSSL_new(ctx->ctx);
    if (ssl == NULL)
        return NULL;
    struct tls *t = xcalloc(1, sizeof(*t));
    t->ssl = ssl;
    t->ctx = tls_ctx_ref(ctx);
    t->fd = fd;
    wolfSSL_SSLSetIORecv(ssl, io_recv);
    wolfSSL_SSLSetIOSend(ssl, io_send);
    wolfSSL_SetIOReadCtx(ssl, t);
    wolfSSL_SetIOWriteCtx(ssl, t);
    t->sni_pending = ctx->ncerts > 1 || ctx->sni_strict || ctx->sni_required;
    if (alpn != NULL) {
        snprintf(t->alpn, sizeof(t->alpn), "%s", alpn);
        unsigned char opt =
            strict ? WOLFSSL_ALPN_FAILED_ON_MISMATCH : WOLFSSL_ALPN_CONTINUE_ON_MISMATCH;
        if (wolfSSL_UseALPN(ssl, t->alpn, (unsigned)strlen(t->alpn), opt) != WOLFSSL_SUCCESS) {
            tls_free(t);
            return NULL;
        }
    }
    return t;
}

void
tls_free(struct tls *t)
{
    if (t == NULL)
        return;
    wolfSSL_free(t->ssl);
    tls_ctx_unref(t->ctx);
    free(t->readahead);
    free(t);
}

static enum tls_status
status_of(struct tls *t, int ret)
{
    int err = wolfSSL_get_error(t->ssl, ret);
    switch (err) {
    case WOLFSSL_ERROR_WANT_READ:
        return TLS_WANT_READ;
    case WOLFSSL_ERROR_WANT_WRITE:
        return TLS_WANT_WRITE;
    case WOLFSSL_ERROR_ZERO_RETURN:
        return TLS_CLOSED;
    default:
        t->last_error = err;
        if (t->peer_closed && (err == SOCKET_ERROR_E || err == SOCKET_PEER_CLOSED_E))
            return TLS_CLOSED;
        return TLS_ERROR;
    }
}

/* The key exchange group is one of the configured ones (a TLS 1.3 resumption without a key
 * exchange has none). */
static bool
group_configured(struct tls *t)
{
    const char *g = wolfSSL_get_curve_name(t->ssl);
    if (g == NULL)
        return true;
    for (size_t i = 0; i < t->ctx->ngroups; i++) {
        if (strcmp(t->ctx->group_names[i], g) == 0)
            return true;
    }
    return false;
}

enum tls_status
tls_handshake(struct tls *t)
{
    if (t->sni_pending) {
        enum tls_status st = sni_choose(t);
        if (st != TLS_OK)
            return st;
    }
    int ret = wolfSSL_accept(t->ssl);
    if (ret == WOLFSSL_SUCCESS) {
        if (!group_configured(t)) {
            t->last_error = ECC_CURVE_ERROR;
            return TLS_ERROR;
        }
        wolfSSL_FreeArrays(t->ssl);
        return TLS_OK;
    }
    enum tls_status st = status_of(t, ret);
    return st == TLS_CLOSED ? TLS_ERROR : st;
}

enum tls_status
tls_read(struct tls *t, char *p, size_t cap, size_t *n_out)
{
    *n_out = 0;
    int ret = wolfSSL_read(t->ssl, p, (int)MOAT_MIN(cap, (size_t)INT32_MAX));
    if (ret > 0) {
        *n_out = (size_t)ret;
        return TLS_OK;
    }
    return status_of(t, ret);
}

/* One record per call (what SSL_MODE_ENABLE_PARTIAL_WRITE does, but that needs the OpenSSL
 * layer): unsent tails stay in moat's buffer, never in wolfSSL's. After WANT_WRITE the caller
 * comes back with the same bytes, at least as many, which is what wolfSSL requires. */
enum tls_status
tls_write(struct tls *t, const char *p, size_t n, size_t *n_out)
{
    *n_out = 0;
    int ret = wolfSSL_write(t->ssl, p, (int)MOAT_MIN(n, (size_t)TLS_RECORD_PLAIN_MAX));
    if (ret > 0) {
        *n_out = (size_t)ret;
        return TLS_OK;
    }
    return status_of(t, ret);
}

void
tls_more_follows(struct tls *t, bool more)
{
    t->send_more = more;
}

void
tls_push(struct tls *t)
{
    if (!t->sent_more)
        return;
    t->sent_more = false;
    int one = 1; /* setting TCP_NODELAY pushes what MSG_MORE held back */
    (void)setsockopt(t->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

size_t
tls_pending(struct tls *t)
{
    int n = wolfSSL_pending(t->ssl);
    /* read-ahead bytes are records wolfSSL has yet to see: no socket event will announce them */
    return (n > 0 ? (size_t)n : 0) + (t->readahead_len - t->readahead_off);
}

void
tls_shutdown(struct tls *t, bool quiet)
{
    if (!quiet) /* quiet: no close_notify (wolfSSL_set_quiet_shutdown is an OpenSSL-layer call) */
        (void)wolfSSL_shutdown(t->ssl);
}

const char *
tls_version(struct tls *t)
{
    return wolfSSL_get_version(t->ssl);
}

const char *
tls_cipher(struct tls *t)
{
    const char *c = wolfSSL_get_cipher_name(t->ssl);
    return c ? c : "-";
}

const char *
tls_error(struct tls *t)
{
    if (t->refusal != NULL)
        return t->refusal;
    if (t->last_error == 0)
        return "none";
    snprintf(t->error_text, sizeof(t->error_text), "%d %s", t->last_error,
             wolfSSL_ERR_reason_error_string((unsigned long)t->last_error));
    return t->error_text;
}

bool
tls_alpn_mismatch(struct tls *t)
{
    return t->last_error == UNKNOWN_ALPN_PROTOCOL_NAME_E;
}
