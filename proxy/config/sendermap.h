/*
 * sendermap.h: which logins may use which envelope sender on submission
 * (sender_login_map). A map file holds "address login[,login...]" lines, keys either a full
 * address or "@domain"; '#' starts a comment. Without an entry, a sender must equal the login.
 * Loaded with the configuration generation; lookups are pure and case-insensitive.
 */
#ifndef MOAT_SENDERMAP_H
#define MOAT_SENDERMAP_H

#include "common.h"

struct sender_map;

/* NULL on failure with *err_out (static text or strerror) and *line_out (0 = whole file). */
struct sender_map *sender_map_load(const char *path, const char **err_out, int *line_out);
struct sender_map *sender_map_parse(const char *text, size_t n, const char **err_out,
                                    int *line_out);
void sender_map_free(struct sender_map *m);
/* May login use sender (addr, n)? m may be NULL (exact match only). */
bool sender_map_allows(const struct sender_map *m, const char *addr, size_t n, const char *login);

#endif
