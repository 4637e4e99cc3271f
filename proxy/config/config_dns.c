/*
 * config_dns.c: the [dns] section's values that need more than the key table: the DNSBL/DNSWL
 * and URI list specifications (parsed once at load, errors as FILE:LINE), the signed allowlist
 * threshold, the servers list (spaces allowed), and a check that enforcement is asked only where a
 * protocol can enforce it. It never resolves anything.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config_impl.h"
#include "dnsbl.h"

static int
dns_seen(const struct loader *ld, const char *key)
{
    const struct key_def *k = config_key_find(SEC_DNS, key);
    for (size_t i = 0; k != NULL && i < ld->nsecs; i++)
        if (ld->secs[i].kind == SEC_DNS)
            return ld->secs[i].seen[k - config_keys];
    return 0;
}

static void
check_allowlist_threshold(struct loader *ld, struct config_dns *d)
{
    const char *t = d->dnsbl_allowlist_threshold_text;
    char *end;
    long v = t ? strtol(t, &end, 10) : 0;
    if (t != NULL && (*t == '\0' || *end != '\0' || v > 0 || v < -100000)) {
        config_error(ld, dns_seen(ld, "dnsbl_allowlist_threshold"), "dnsbl_allowlist_threshold",
                     "must be 0 (off) or a negative score");
        return;
    }
    d->dnsbl_allowlist_threshold = (int)v;
}

/* "192.0.2.1", "192.0.2.1:5353", "2001:db8::1" or "[2001:db8::1]:5353": what c-ares takes. */
static bool
server_ok(const char *p, size_t n)
{
    char host[64];
    const char *port = NULL, *end = p + n;
    unsigned char buf[16];
    if (n > 0 && p[0] == '[') {
        const char *close = memchr(p, ']', n);
        if (close == NULL || (close + 1 < end && close[1] != ':') || close + 1 == end - 1)
            return false;
        port = close + 1 < end ? close + 2 : NULL;
        p++;
        end = close;
    } else {
        const char *colon = memchr(p, ':', n);
        if (colon != NULL && memchr(colon + 1, ':', (size_t)(end - colon - 1)) == NULL) {
            port = colon + 1;
            end = colon;
        }
    }
    size_t hlen = (size_t)(end - p);
    if (hlen == 0 || hlen >= sizeof(host))
        return false;
    memcpy(host, p, hlen);
    host[hlen] = '\0';
    if (inet_pton(AF_INET, host, buf) != 1 && inet_pton(AF_INET6, host, buf) != 1)
        return false;
    if (port == NULL)
        return true;
    char *stop;
    long v = strtol(port, &stop, 10);
    return stop != port && (*stop == '\0' || *stop == ',') && v > 0 && v < 65536;
}

static void
check_servers(struct loader *ld, char *servers)
{
    for (char *p = servers; *p; p++) /* "a:53 b:53" or "a:53,b:53": c-ares wants commas */
        if (*p == ' ' || *p == '\t')
            *p = ',';
    for (char *p = servers; *p;) {
        size_t n = strcspn(p, ",");
        if (n > 0 && !server_ok(p, n)) {
            char shown[80];
            config_error(ld, dns_seen(ld, "servers"), "servers",
                         "bad server '%s': an address with an optional port (192.0.2.1:53, "
                         "[2001:db8::1]:53)",
                         config_show(shown, sizeof(shown), p));
            return;
        }
        p += n;
        while (*p == ',')
            p++;
    }
}

/* A dnsbl / uribl list specification; NULL when empty or wrong (reported). */
static struct dnsbl_list *
parse_list(struct loader *ld, const char *key, const char *text)
{
    if (text == NULL)
        return NULL;
    struct dnsbl_list *l = xcalloc(1, sizeof(*l));
    const char *err = NULL;
    if (dnsbl_parse(text, l, &err) != 0) {
        config_error(ld, dns_seen(ld, key), key, "%s", err);
        free(l);
        return NULL;
    }
    if (l->n == 0) {
        free(l);
        return NULL;
    }
    return l;
}

/* uribl_ip_zones names uribl lists (by zone) that also list IPv4 addresses; each must be one. */
static void
check_uribl_ip_zones(struct loader *ld, struct config_dns *d)
{
    if (d->uribl_ip_zones == NULL)
        return;
    char *copy = xstrdup(d->uribl_ip_zones), *save = NULL;
    for (char *w = strtok_r(copy, " \t,", &save); w != NULL; w = strtok_r(NULL, " \t,", &save)) {
        size_t i = 0;
        while (d->uribl_list != NULL && i < d->uribl_list->n &&
               strcasecmp(d->uribl_list->zones[i].name, w) != 0)
            i++;
        if (d->uribl_list == NULL || i == d->uribl_list->n) {
            char shown[80];
            config_error(ld, dns_seen(ld, "uribl_ip_zones"), "uribl_ip_zones",
                         "'%s' is not one of the uribl lists",
                         config_show(shown, sizeof(shown), w));
            break;
        }
        d->uribl_ip_mask |= 1u << i;
    }
    free(copy);
}

void
config_check_dns(struct loader *ld)
{
    struct config_dns *d = &ld->config->dns;
    if (d->servers != NULL)
        check_servers(ld, d->servers);
    check_allowlist_threshold(ld, d);
    d->dnsbl_list = parse_list(ld, "dnsbl", d->dnsbl);
    d->uribl_list = parse_list(ld, "uribl", d->uribl);
    check_uribl_ip_zones(ld, d);
    if (d->uribl_list != NULL && d->uribl_max_lookups < d->uribl_list->n)
        config_error(ld, dns_seen(ld, "uribl_max_lookups"), "uribl_max_lookups",
                     "must be at least the number of uribl lists (%zu)", d->uribl_list->n);
    if (d->uribl_timeout_ms > 60000) /* the backend holds the message meanwhile: keep it short */
        config_error(ld, dns_seen(ld, "uribl_timeout"), "uribl_timeout",
                     "must be at most 60s (the backend waits for the end of the message)");
    for (size_t i = 0; i < ld->nsecs; i++) {
        const struct section_rec *sec = &ld->secs[i];
        if (sec->kind != SEC_LISTENER || sec->listener->dns_checks != DNS_CHECKS_ENFORCE)
            continue;
        enum listener_proto p = sec->listener->proto;
        if (p != LPROTO_SMTP && p != LPROTO_SUBMISSION) {
            const struct key_def *k = config_key_find(SEC_LISTENER, "dns_checks");
            config_error(ld, sec->seen[k - config_keys], "dns_checks",
                         "[listener %s]: enforce is for SMTP listeners; use log", sec->name);
        }
    }
}

void
config_dns_free(struct config_dns *d)
{
    free(d->servers);
    free(d->dnsbl);
    free(d->dnsbl_list);
    free(d->dnsbl_allowlist_threshold_text);
    free(d->uribl);
    free(d->uribl_list);
    free(d->uribl_ip_zones);
    memset(d, 0, sizeof(*d));
}
