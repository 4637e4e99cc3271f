/*
 * test_uriscan.c: URL host names found in message text (uriscan.h): plain text and HTML, the
 * MIME structure (nested multiparts, message/rfc822, non-text parts skipped), quoted-printable
 * and base64, every input in one piece and byte by byte, and the caps on bytes, parts and depth.
 */
#include <string.h>

#include "test.h"
#include "uriscan.h"

struct found {
    char text[2048]; /* "host host ..." */
};

static void
on_found(void *arg, const char *host, size_t n)
{
    struct found *f = arg;
    size_t len = strlen(f->text);
    if (len + n + 2 < sizeof(f->text)) {
        memcpy(f->text + len, host, n);
        f->text[len + n] = ' ';
        f->text[len + n + 1] = '\0';
    }
}

static const struct uriscan_limits big = {1u << 20, 64, 8};

/* Scan msg with lim, in one piece or byte by byte; returns the hosts found. */
static const char *
scan(const char *msg, const struct uriscan_limits *lim, bool bytewise, struct uriscan *u)
{
    static struct found f;
    f.text[0] = '\0';
    uriscan_init(u, lim, on_found, &f);
    size_t n = strlen(msg);
    if (bytewise) {
        for (size_t i = 0; i < n; i++)
            uriscan_feed(u, msg + i, 1);
    } else {
        uriscan_feed(u, msg, n);
    }
    uriscan_finish(u);
    return f.text;
}

static void
check_scan(const char *msg, const char *want)
{
    static struct uriscan u;
    CHECK_STR(scan(msg, &big, false, &u), want);
    CHECK_STR(scan(msg, &big, true, &u), want);
}

static void
test_plain(void)
{
    check_scan("Subject: http://header.example\r\n\r\n"
               "see http://www.Spam.Example/x?y=1 and HTTPS://other.example:8443/ now\r\n"
               "or www.bare.example, or http://user:pw@real.example/ or "
               "http://1.2.3.4/ or http://nodot/ or wwwx.not.example or awww.no.example\r\n"
               "redirect http://go.example/?u=http://target.example/ end.\r\n"
               "last http://trailing.example.",
               "www.spam.example other.example www.bare.example real.example 1.2.3.4 go.example "
               "target.example trailing.example ");
    /* a URL cut by a line break ends there; hosts over 253 bytes or labels over 63 are not
     * reported */
    char longhost[400] = "\r\nhttp://";
    for (int i = 0; i < 70; i++)
        strcat(longhost, "a");
    strcat(longhost, ".example/ http://ok.example\r\n");
    check_scan(longhost, "ok.example ");
}

/* IPv4 literals are reported in dotted decimal only: not with leading zeros (octal to some
 * clients), out of range, with too few or too many numbers, or in hexadecimal. */
static void
test_ipv4_literals(void)
{
    check_scan("\r\nhttp://192.0.2.7/x http://01.2.3.4/ http://1.2.3.256/ http://1.2.3/ "
               "http://1.2.3.4.5/ http://user:pw@10.0.0.1:8080/x https://0x7f.0.0.1/ "
               "http://203.0.113.9./ www.1.2.3 http://0.0.0.0/ http://1234.1.1.1/\r\n",
               "192.0.2.7 10.0.0.1 203.0.113.9 0.0.0.0 ");
}

static void
test_html(void)
{
    check_scan("Content-Type: text/html; charset=utf-8\r\n\r\n"
               "<a href=\"http://html.example/a\">x</a><img src='https://img.example/p.png'>"
               "<a href=http://noquote.example>y</a>\r\n",
               "html.example img.example noquote.example ");
}

/* HTML character references hide no link: numeric (decimal, hex, without ';'), the named ones
 * of a URL's structure; anything else is text as it came (and ends a host as before). */
static void
test_html_references(void)
{
    check_scan("Content-Type: text/html\r\n\r\n"
               "<a href=\"http&#58;//spam&#46;example/x\">a</a> "
               "<a href=\"&#x68;ttps://hex&#X2e;example\">b</a> "
               "http&colon;&sol;&sol;named&period;example/ www&#46noscolon.example "
               "AT&T &amp; http://a&b.example/ &#46;&#; &#x; &unknown; &PERIOD; "
               "http://big&#x110000041;example/ http://nul&#0;example/ "
               "http://long&#0000000000000046;example/ http://x.example&#47;y\r\n"
               "last http://end&#46;example&#46",
               "spam.example hex.example named.example www.noscolon.example x.example "
               "end.example ");
}

/* Percent escapes in a host are read as a browser reads them; a broken one ends the host, and
 * an escaped byte that is no host character ends it as well. */
static void
test_percent_escapes(void)
{
    check_scan("\r\nhttp://%73pam%2Eexample/x http://www.%65VIL.example http://bad%zz.example/ "
               "http://x%40y.example/ http://ok.example%2Fpath http://a%2 b.example "
               "http://%77%77%77%2e%68%69%64%65%2e%65%78%61%6d%70%6c%65/ "
               "100%25 www.pct.example%\r\nlast http://cut.example%2",
               "spam.example www.evil.example ok.example www.hide.example www.pct.example "
               "cut.example ");
}

static void
test_qp(void)
{
    check_scan("MIME-Version: 1.0\r\n"
               "Content-Type: text/html\r\n"
               "Content-Transfer-Encoding: quoted-printable\r\n"
               "\r\n"
               "<a href=3D\"http://qp.exa=\r\n"
               "mple/path\">link</a> =E2=82=AC http://=77ww.encoded.example/ =ZZ\r\n",
               "qp.example www.encoded.example ");
}

static void
test_base64(void)
{
    /* "Visit http://b64.example/now and www.second.example\n" */
    check_scan("Content-Type: text/plain\r\n"
               "Content-Transfer-Encoding: BASE64\r\n"
               "\r\n"
               "VmlzaXQgaHR0cDovL2I2NC5leGFtcGxl\r\n"
               "L25vdyBhbmQgd3d3LnNlY29uZC5leGFtcGxlCg==\r\n",
               "b64.example www.second.example ");
}

static void
test_multipart(void)
{
    const char *msg = "Content-Type: multipart/mixed;\r\n"
                      "\tboundary=\"outer b\"\r\n"
                      "\r\n"
                      "preamble http://preamble.example/\r\n"
                      "--outer b\r\n"
                      "Content-Type: multipart/alternative; boundary=inner\r\n"
                      "\r\n"
                      "--inner\r\n"
                      "Content-Type: text/plain\r\n"
                      "\r\n"
                      "plain http://alt-plain.example/\r\n"
                      "--inner\r\n"
                      "Content-Type: text/html\r\n"
                      "Content-Transfer-Encoding: quoted-printable\r\n"
                      "\r\n"
                      "<a href=3D\"http://alt-html.example/\">\r\n"
                      "--inner--\r\n"
                      "inner epilogue http://inner-epilogue.example/\r\n"
                      "--outer b\r\n"
                      "Content-Type: image/png\r\n"
                      "Content-Transfer-Encoding: base64\r\n"
                      "\r\n"
                      "aHR0cDovL2ltYWdlLmV4YW1wbGUv\r\n"
                      "--outer b\r\n"
                      "Content-Type: message/rfc822\r\n"
                      "\r\n"
                      "Subject: forwarded\r\n"
                      "Content-Type: text/plain\r\n"
                      "\r\n"
                      "inside http://forwarded.example/\r\n"
                      "--outer b--\r\n"
                      "epilogue http://epilogue.example/\r\n";
    check_scan(msg, "alt-plain.example alt-html.example forwarded.example ");
}

static void
test_caps(void)
{
    static struct uriscan u;
    /* bytes: what lies past the cap is not looked at */
    struct uriscan_limits lim = {60, 64, 8};
    CHECK_STR(scan("\r\nhttp://first.example/ ........................ http://second.example/\r\n",
                   &lim, false, &u),
              "first.example ");
    CHECK(u.capped == URISCAN_CAP_BYTES);
    /* parts: the message and one part; the second part stops the scan */
    const char *parts = "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
                        "--b\r\n\r\nhttp://one.example/\r\n"
                        "--b\r\n\r\nhttp://two.example/\r\n--b--\r\n";
    lim = (struct uriscan_limits){1u << 20, 2, 8};
    CHECK_STR(scan(parts, &lim, false, &u), "one.example ");
    CHECK(u.capped == URISCAN_CAP_PARTS);
    lim.max_parts = 3;
    CHECK_STR(scan(parts, &lim, true, &u), "one.example two.example ");
    CHECK(u.capped == URISCAN_CAP_NONE && u.parts == 3);
    /* depth: a multipart nested deeper than allowed is skipped, the rest is scanned */
    const char *deep = "Content-Type: multipart/mixed; boundary=a\r\n\r\n"
                       "--a\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
                       "--b\r\n\r\nhttp://deep.example/\r\n--b--\r\n"
                       "--a\r\n\r\nhttp://shallow.example/\r\n--a--\r\n";
    lim = (struct uriscan_limits){1u << 20, 64, 1};
    CHECK_STR(scan(deep, &lim, false, &u), "shallow.example ");
    CHECK(u.capped == URISCAN_CAP_DEPTH);
    lim.max_depth = 2;
    CHECK_STR(scan(deep, &lim, false, &u), "deep.example shallow.example ");
}

static void
test_long_lines(void)
{
    /* a line longer than URISCAN_LINE_MAX is scanned in pieces: a URL across the cut is whole */
    static char msg[4000];
    strcpy(msg, "\r\n");
    for (int i = 0; i < URISCAN_LINE_MAX - 10; i++)
        strcat(msg, "x");
    strcat(msg, " http://across-the-cut.example/ ");
    for (int i = 0; i < 1500; i++)
        strcat(msg, "y");
    strcat(msg, "\r\n--not-a-boundary\r\nhttp://after.example/\r\n");
    check_scan(msg, "across-the-cut.example after.example ");
    /* a long header field is cut, the headers still end at the empty line */
    static char hdr[3000];
    strcpy(hdr, "Content-Type: text/plain; x=\"");
    for (int i = 0; i < 2000; i++)
        strcat(hdr, "z");
    strcat(hdr, "\"\r\n\r\nhttp://body.example/\r\n");
    check_scan(hdr, "body.example ");
}

int
main(void)
{
    test_plain();
    test_ipv4_literals();
    test_html();
    test_html_references();
    test_percent_escapes();
    test_qp();
    test_base64();
    test_multipart();
    test_caps();
    test_long_lines();
    return test_finish("test_uriscan");
}
