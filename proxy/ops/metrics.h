/*
 * metrics.h: the metrics and health endpoint ([moat] metrics = ADDR:PORT), a small HTTP/1.1
 * server on the main thread's loop: GET /metrics (Prometheus text), /healthz (the process
 * answers), /readyz (every listener's backend accepts TCP connections, probed every few
 * seconds). One request per connection, bounded in size, time and number of connections.
 */
#ifndef MOAT_METRICS_H
#define MOAT_METRICS_H

#include <ev.h>

#include "common.h"

struct config;
struct metrics;

enum http_parse { HTTP_MORE = 0, HTTP_GET, HTTP_HEAD, HTTP_BAD_METHOD, HTTP_BAD };

/* Pure: parse the request head in p[0..n). HTTP_MORE until the blank line arrives; for GET and
 * HEAD, *path_out / *path_len_out point into p (query string cut off). */
enum http_parse metrics_parse_request(const char *p, size_t n, const char **path_out,
                                      size_t *path_len_out);

/* Bind conf's metrics address (before privileges are dropped). NULL with err when it cannot;
 * NULL without err when metrics are off. */
struct metrics *metrics_open(const struct config *conf, char *err, size_t cap);
void metrics_start(struct metrics *m, struct ev_loop *loop, struct config *conf);
/* A new generation: the probes follow its backends. The address cannot change (warned). */
void metrics_reload(struct metrics *m, struct config *conf);
void metrics_close(struct metrics *m);

#endif
