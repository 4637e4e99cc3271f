/*
 * der.h: the two things moat reads from a DER certificate itself, with a small bounded parser
 * (no wolfSSL: its date helpers need the OpenSSL compatibility layer or certificate generation):
 * the SubjectPublicKeyInfo for DANE and the notAfter for the expiry warning and metric.
 */
#ifndef MOAT_DER_H
#define MOAT_DER_H

#include <time.h>

#include "common.h"

/* The SubjectPublicKeyInfo element (header included) inside a DER certificate; -1 if the
 * certificate is malformed. */
int der_cert_spki(const unsigned char *der, size_t n, const unsigned char **spki_out,
                  size_t *len_out);

/* The notAfter of a DER certificate (RFC 5280 4.1.2.5: UTCTime YYMMDDHHMMSSZ for 1950-2049,
 * else GeneralizedTime YYYYMMDDHHMMSSZ) in seconds since the epoch; 0 if it cannot be read. */
time_t der_cert_not_after(const unsigned char *der, size_t n);

#endif
