/*
 * test_der.c: the bounded DER walk (der.h) over hand-built certificates: notAfter as UTCTime and
 * GeneralizedTime, with and without the version field, long-form lengths, bad dates, and every
 * truncation of a good certificate (ASan sees any read past the end).
 */
#include <stdint.h>
#include <stdlib.h>

#include "der.h"
#include "test.h"

struct der {
    unsigned char p[1024];
    size_t n;
};

/* Append tag, length (short or 0x81/0x82 long form) and content. */
static void
put(struct der *d, unsigned tag, const void *content, size_t len)
{
    d->p[d->n++] = (unsigned char)tag;
    if (len < 0x80) {
        d->p[d->n++] = (unsigned char)len;
    } else if (len < 0x100) {
        d->p[d->n++] = 0x81;
        d->p[d->n++] = (unsigned char)len;
    } else {
        d->p[d->n++] = 0x82;
        d->p[d->n++] = (unsigned char)(len >> 8);
        d->p[d->n++] = (unsigned char)len;
    }
    memcpy(d->p + d->n, content, len);
    d->n += len;
}

/* A certificate whose notAfter is the given time element; subject_len pads the subject so the
 * enclosing lengths need the long form; the tbsCertificate's content is cut after tbs_cut bytes
 * (its length and the outer one say so: a well-formed prefix). */
static struct der
cert_cut(bool version, unsigned after_tag, const char *after, size_t subject_len, size_t tbs_cut)
{
    struct der validity = {0}, tbs = {0}, top = {0}, out = {0};
    put(&validity, 0x17, "260101000000Z", 13);
    put(&validity, after_tag, after, strlen(after));
    static const unsigned char v3[] = {0x02, 0x01, 0x02}, serial[] = {0x01, 0x02};
    static const unsigned char alg[] = {0x06, 0x03, 0x2b, 0x65, 0x70};
    unsigned char subject[300];
    memset(subject, 'a', sizeof(subject));
    static const unsigned char spki[] = {0x30, 0x09, 0x06, 0x03, 0x2b, 0x65,
                                         0x70, 0x03, 0x02, 0x00, 0x07};
    if (version)
        put(&tbs, 0xa0, v3, sizeof(v3));
    put(&tbs, 0x02, serial, sizeof(serial));
    put(&tbs, 0x30, alg, sizeof(alg));
    put(&tbs, 0x30, "issuer", 6);
    put(&tbs, 0x30, validity.p, validity.n);
    put(&tbs, 0x30, subject, subject_len);
    memcpy(tbs.p + tbs.n, spki, sizeof(spki));
    tbs.n += sizeof(spki);
    if (tbs_cut < tbs.n)
        tbs.n = tbs_cut;
    put(&top, 0x30, tbs.p, tbs.n);
    put(&top, 0x30, alg, sizeof(alg));
    put(&top, 0x03, "\0sig", 4);
    put(&out, 0x30, top.p, top.n);
    return out;
}

static struct der
cert(bool version, unsigned after_tag, const char *after, size_t subject_len)
{
    return cert_cut(version, after_tag, after, subject_len, SIZE_MAX);
}

static void
test_dates(void)
{
    struct der d = cert(true, 0x17, "491231235959Z", 4);
    CHECK(der_cert_not_after(d.p, d.n) == 2524607999); /* UTCTime 49 is 2049 */
    d = cert(true, 0x17, "500101000000Z", 4);
    CHECK(der_cert_not_after(d.p, d.n) == -631152000); /* and 50 is 1950 */
    d = cert(false, 0x18, "20540420123000Z", 4);
    CHECK(der_cert_not_after(d.p, d.n) == 2660301000); /* GeneralizedTime, no version */
    d = cert(true, 0x17, "261206104423Z", 200);        /* long-form lengths */
    CHECK(der_cert_not_after(d.p, d.n) == 1796553863);
    d = cert(true, 0x17, "261206104423Z", 290); /* two length octets */
    CHECK(der_cert_not_after(d.p, d.n) == 1796553863);
}

static void
test_bad_dates(void)
{
    static const struct {
        unsigned tag;
        const char *text;
    } bad[] = {
        {0x17, "49123123595aZ"},   {0x17, "491231235959"},    {0x17, "4912312359590"},
        {0x17, "491331235959Z"},   {0x17, "491200235959Z"},   {0x17, "491231245959Z"},
        {0x17, "491231236059Z"},   {0x17, "4912312359Z"},     {0x18, "491231235959Z"},
        {0x17, "20540420123000Z"}, {0x0c, "491231235959Z"},   {0x18, "2054042012300Z"},
        {0x18, "-0540420123000Z"}, {0x18, "20540420123000+"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct der d = cert(true, bad[i].tag, bad[i].text, 4);
        time_t t = der_cert_not_after(d.p, d.n);
        if (t != 0)
            fprintf(stderr, "  accepted '%s' as %lld\n", bad[i].text, (long long)t);
        CHECK(t == 0);
    }
}

static void
test_truncated_and_garbage(void)
{
    struct der d = cert(true, 0x17, "491231235959Z", 200);
    const unsigned char *spki;
    size_t len;
    CHECK(der_cert_spki(d.p, d.n, &spki, &len) == 0);
    CHECK(len == 11 && spki[0] == 0x30 && spki[10] == 0x07);
    /* a copy of exactly n bytes, so ASan sees a read past any truncation */
    for (size_t n = 0; n < d.n; n++) {
        unsigned char *p = malloc(n ? n : 1);
        memcpy(p, d.p, n);
        CHECK(der_cert_not_after(p, n) == 0);
        CHECK(der_cert_spki(p, n, &spki, &len) == -1);
        free(p);
    }
    /* every prefix of the tbsCertificate, well framed: the notAfter is read or not, never
     * anything else, and nothing past an element is touched */
    bool got_date = false;
    for (size_t cut = 0; cut < 400; cut++) {
        struct der c = cert_cut(true, 0x17, "491231235959Z", 200, cut);
        unsigned char *p = malloc(c.n);
        memcpy(p, c.p, c.n);
        time_t t = der_cert_not_after(p, c.n);
        CHECK(t == 0 || t == 2524607999);
        got_date |= t != 0;
        free(p);
    }
    CHECK(got_date);
    static const unsigned char huge[] = {0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0x30, 0x00};
    CHECK(der_cert_not_after(huge, sizeof(huge)) == 0);
    static const unsigned char not_seq[] = {0x31, 0x02, 0x30, 0x00};
    CHECK(der_cert_not_after(not_seq, sizeof(not_seq)) == 0);
}

int
main(void)
{
    test_dates();
    test_bad_dates();
    test_truncated_and_garbage();
    return test_finish("test_der");
}
