/*
 * tls.h: TLS termination, the only interface to wolfSSL. A tls_ctx holds the policy (versions,
 * ciphers, groups, certificates, tickets) of one config generation; a struct tls is one
 * server-side connection over a non-blocking socket, created only when TLS starts. Nothing
 * outside proxy/tls includes a wolfSSL header.
 */
#ifndef MOAT_TLS_H
#define MOAT_TLS_H

#include <stdio.h>
#include <time.h>

#include "common.h"

struct config_tls;
struct tls_ctx;
struct tls;

enum tls_status { TLS_OK = 0, TLS_WANT_READ, TLS_WANT_WRITE, TLS_CLOSED, TLS_ERROR };

void tls_library_init(void);
void tls_library_cleanup(void);
/* Print wolfSSL's version and the features compiled into it (AES-NI, assembly, ...) to f. */
void tls_library_describe(FILE *f);
/* Per worker thread, at exit: frees wolfSSL's thread-local ECC cache. */
void tls_thread_cleanup(void);

/* Build the policy. On failure returns NULL; *err_out names the problem and *cert_index_out
 * (if >= 0) which certificate pair it concerns, so callers can point at the config line. */
struct tls_ctx *tls_ctx_new(const struct config_tls *conf, const char **err_out,
                            int *cert_index_out);
struct tls_ctx *tls_ctx_ref(struct tls_ctx *ctx);
/* When certificate pair i (config order) stops being valid, in seconds since the epoch; 0 when
 * its notAfter could not be read. */
time_t tls_ctx_cert_not_after(const struct tls_ctx *ctx, size_t i);
void tls_ctx_unref(struct tls_ctx *ctx);

/* alpn: the one ALPN id this listener speaks ("smtp", "imap", "pop3"); with strict, a client
 * that offers ALPN without it fails the handshake. A client without ALPN is fine. */
struct tls *tls_new(struct tls_ctx *ctx, int fd, const char *alpn, bool strict);
void tls_free(struct tls *t);
enum tls_status tls_handshake(struct tls *t);
enum tls_status tls_read(struct tls *t, char *p, size_t cap, size_t *n_out);
/* At most one record per call: TLS_RECORD_PLAIN_MAX bytes of (p, n). */
#define TLS_RECORD_PLAIN_MAX 16384
enum tls_status tls_write(struct tls *t, const char *p, size_t n, size_t *n_out);
/* The caller has more records to write right after this one (a bulk relay): the socket is told
 * (MSG_MORE), so several records leave in one TCP segment of up to 64 KB rather than one each.
 * tls_push() sends what waits when the caller stops before its last record. */
void tls_more_follows(struct tls *t, bool more);
void tls_push(struct tls *t);
size_t tls_pending(struct tls *t);
/* The socket reported readable: reads may try it again (a short read marks it drained). */
void tls_on_readable(struct tls *t);
/* Send close_notify once, best effort, never waiting for the peer's. */
void tls_shutdown(struct tls *t, bool quiet);

const char *tls_version(struct tls *t);
const char *tls_cipher(struct tls *t);
/* Text of the last error on this connection (static storage per connection). */
const char *tls_error(struct tls *t);
bool tls_alpn_mismatch(struct tls *t);

#endif

/* DANE: SHA-256 of the certificate's SubjectPublicKeyInfo (TLSA 3 1 1) into out. */
int tls_spki_sha256(const char *cert_file, unsigned char out[32], const char **err_out);

/* base64 (RFC 4648) through wolfCrypt's coder, for the SASL framing. decode: the input must be
 * canonical (length a multiple of 4, padding only at the end); returns the decoded length or -1.
 * encode: returns the encoded length (no newlines) or -1 if it does not fit. */
int tls_base64_decode(const char *in, size_t n, unsigned char *out, size_t cap);
int tls_base64_encode(const unsigned char *in, size_t n, char *out, size_t cap);
/* HMAC-SHA-256 through wolfCrypt over the concatenation of n parts (parts[i], lens[i]), into
 * out (32 bytes). 0, or -1 on a wolfCrypt failure. */
#define TLS_HMAC_SHA256_BYTES 32
int tls_hmac_sha256(const unsigned char *key, size_t key_len, const void *const *parts,
                    const size_t *lens, size_t n, unsigned char out[TLS_HMAC_SHA256_BYTES]);
