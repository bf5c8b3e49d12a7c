/*
 * prom.h - a Prometheus text-format (0.0.4) endpoint on libevent's evhttp:
 * GET/HEAD /metrics answered by the owner's writer, everything else 404.
 * Event-loop thread only; no logging.
 */
#ifndef SHAREMIG_PROM_H
#define SHAREMIG_PROM_H

#include <stdint.h>

struct event_base;
struct evbuffer;
struct prom_server;

/* Writes the exposition into b. */
typedef void (*prom_writer)(struct evbuffer *b, void *arg);

/*
 * Serve /metrics on "ADDR:PORT" (port required).  0, -EINVAL (address),
 * -ENOMEM, or -errno from bind.
 */
int	prom_server_start(struct event_base *base, const char *addr,
	    prom_writer w, void *arg, struct prom_server **out);
void	prom_server_free(struct prom_server *ps);	/* accepts NULL */

/* 1 if addr is a usable "ADDR:PORT" for prom_server_start(). */
int	prom_addr_valid(const char *addr);

/* "# HELP name help" and "# TYPE name type" lines. */
void	prom_head(struct evbuffer *b, const char *name, const char *type,
	    const char *help);
/* A head and one unlabelled sample. */
void	prom_u64(struct evbuffer *b, const char *name, const char *type,
	    const char *help, uint64_t v);

#endif
