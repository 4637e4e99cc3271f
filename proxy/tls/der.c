/*
 * der.c: a bounded DER walk over a certificate (see der.h). Every length is checked against the
 * end of its enclosing element; long-form lengths of more than 3 octets are refused.
 */
#include <time.h>

#include "der.h"

/* One DER element at p (< end): its tag, where its content starts, and its content length. */
static int
der_element(const unsigned char *p, const unsigned char *end, unsigned *tag_out,
            const unsigned char **content_out, size_t *len_out)
{
    if (end - p < 2)
        return -1;
    *tag_out = p[0];
    size_t len = p[1];
    p += 2;
    if (len & 0x80) {
        size_t nbytes = len & 0x7f;
        if (nbytes == 0 || nbytes > 3 || (size_t)(end - p) < nbytes)
            return -1;
        len = 0;
        for (size_t i = 0; i < nbytes; i++)
            len = len << 8 | *p++;
    }
    if ((size_t)(end - p) < len)
        return -1;
    *content_out = p;
    *len_out = len;
    return 0;
}

/* Fields of tbsCertificate, by position: [0] version (optional), serial, signature, issuer,
 * validity, subject, SubjectPublicKeyInfo. */
enum { TBS_VALIDITY = 4, TBS_SPKI = 6 };

/* The SEQUENCE at position want inside a DER certificate's tbsCertificate: where its element
 * starts (header included) and its whole length. */
static int
der_cert_field(const unsigned char *der, size_t n, int want, const unsigned char **elem_out,
               size_t *len_out)
{
    const unsigned char *end = der + n, *c;
    unsigned tag;
    size_t len;
    if (der_element(der, end, &tag, &c, &len) != 0 || tag != 0x30) /* Certificate */
        return -1;
    if (der_element(c, c + len, &tag, &c, &len) != 0 || tag != 0x30) /* tbsCertificate */
        return -1;
    const unsigned char *p = c, *tbs_end = c + len;
    for (int field = 0; field <= want; field++) {
        if (der_element(p, tbs_end, &tag, &c, &len) != 0)
            return -1;
        if (field == 0 && tag != 0xa0)
            field++; /* no version: this is the serial */
        if (field == want) {
            if (tag != 0x30)
                return -1;
            *elem_out = p;
            *len_out = (size_t)(c + len - p);
            return 0;
        }
        p = c + len;
    }
    return -1;
}

int
der_cert_spki(const unsigned char *der, size_t n, const unsigned char **spki_out, size_t *len_out)
{
    return der_cert_field(der, n, TBS_SPKI, spki_out, len_out);
}

/* n decimal digits at p, or -1. */
static int
der_digits(const unsigned char *p, size_t n)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

time_t
der_cert_not_after(const unsigned char *der, size_t n)
{
    const unsigned char *v, *c, *end;
    size_t len;
    unsigned tag;
    if (der_cert_field(der, n, TBS_VALIDITY, &v, &len) != 0 ||
        der_element(v, v + len, &tag, &c, &len) != 0) /* Validity */
        return 0;
    end = c + len;
    if (der_element(c, end, &tag, &c, &len) != 0) /* notBefore */
        return 0;
    if (der_element(c + len, end, &tag, &c, &len) != 0) /* notAfter */
        return 0;
    size_t ylen = tag == 0x17 ? 2 : tag == 0x18 ? 4 : 0;
    if (ylen == 0 || len != ylen + 11 || c[len - 1] != 'Z')
        return 0;
    int year = der_digits(c, ylen);
    if (ylen == 2 && year >= 0)
        year += year < 50 ? 2000 : 1900;
    struct tm tm = {
        .tm_year = year - 1900,
        .tm_mon = der_digits(c + ylen, 2) - 1,
        .tm_mday = der_digits(c + ylen + 2, 2),
        .tm_hour = der_digits(c + ylen + 4, 2),
        .tm_min = der_digits(c + ylen + 6, 2),
        .tm_sec = der_digits(c + ylen + 8, 2),
    };
    if (year < 0 || tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 ||
        tm.tm_hour < 0 || tm.tm_hour > 23 || tm.tm_min < 0 || tm.tm_min > 59 || tm.tm_sec < 0 ||
        tm.tm_sec > 60)
        return 0;
    time_t t = timegm(&tm);
    return t == (time_t)-1 ? 0 : t;
}
