/*
 * config_dns.c: the [dns] section's values that need more than the key table: the DNSBL/DNSWL
 * list specification (parsed once at load, errors as FILE:LINE), the signed allowlist threshold,
 * the servers list (spaces allowed), and a check that enforcement is asked only where a protocol
 * can enforce it. It never resolves anything.
 */
#include <stdlib.h>
#include <string.h>

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

void
config_check_dns(struct loader *ld)
{
    struct config_dns *d = &ld->config->dns;
    if (d->servers != NULL) { /* "a:53 b:53" or "a:53,b:53": c-ares wants commas */
        for (char *p = d->servers; *p; p++)
            if (*p == ' ' || *p == '\t')
                *p = ',';
    }
    check_allowlist_threshold(ld, d);
    if (d->dnsbl != NULL) {
        struct dnsbl_list *l = xcalloc(1, sizeof(*l));
        const char *err = NULL;
        if (dnsbl_parse(d->dnsbl, l, &err) != 0) {
            config_error(ld, dns_seen(ld, "dnsbl"), "dnsbl", "%s", err);
            free(l);
        } else if (l->n == 0) {
            free(l);
        } else {
            d->dnsbl_list = l;
        }
    }
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
    memset(d, 0, sizeof(*d));
}
