/*
 * scramfake.h: a synthetic SCRAM server-first-message (RFC 5802) for a user name the verifier
 * does not know, so an exchange for an unknown user looks like one for a known user with a
 * wrong password: the challenge comes (same shape as Cyrus SASL's: the client nonce, a server
 * nonce, a salt of the hash's size that is the same for the same name on every try, the
 * iteration count), and the exchange fails only at its last step. Pure: the key (random per
 * process) and the server nonce are arguments.
 */
#ifndef MOAT_SCRAMFAKE_H
#define MOAT_SCRAMFAKE_H

#include "saslmech.h"

#define SCRAM_FAKE_KEY_LEN 32
#define SCRAM_FAKE_NONCE_LEN 32 /* server nonce characters, as Cyrus SASL makes them */
#define SCRAM_FAKE_ITERATIONS 4096

/* From client-first (in, n bytes): the server-first-message in out (NUL-terminated; its
 * length returned), and the user name, decoded, in user (NUL-terminated, cut to user_cap - 1).
 * -1 when in is not a client-first-message. nonce: SCRAM_FAKE_NONCE_LEN printable characters
 * other than ','. */
int scram_fake_first(enum sasl_mech m, const unsigned char *in, size_t n,
                     const uint8_t key[SCRAM_FAKE_KEY_LEN], const char *nonce, char *out,
                     size_t cap, char *user, size_t user_cap);

#endif
