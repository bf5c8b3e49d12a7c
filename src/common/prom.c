/*
 * prom.c - the Prometheus text endpoint shared by both daemons.
 * See prom.h.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "net.h"
#include "prom.h"

struct prom_server {
	struct evhttp	*http;
	prom_writer	 w;
	void		*arg;
};

static void
prom_on_metrics(struct evhttp_request *req, void *arg)
{
	struct prom_server *c = arg;
	struct evbuffer *b;

	if ((b = evbuffer_new()) == NULL) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	c->w(b, c->arg);
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
	evhttp_send_reply(req, HTTP_OK, "OK", b);
	evbuffer_free(b);
}

static void
prom_on_other(struct evhttp_request *req, void *arg)
{
	evhttp_send_error(req, HTTP_NOTFOUND, "only /metrics is served");
}

int
prom_addr_valid(const char *addr)
{
	const char *colon = strrchr(addr, ':');
	struct net_addr a;

	return colon != NULL && colon[1] != '\0' &&
	    net_parse_addr(addr, 0, &a) == 0 && a.port != 0;
}

int
prom_server_start(struct event_base *base, const char *addr, prom_writer w,
    void *arg, struct prom_server **out)
{
	struct prom_server *ps;
	struct net_addr a;
	int e;

	if (!prom_addr_valid(addr) || net_parse_addr(addr, 0, &a) != 0)
		return -EINVAL;
	if ((ps = calloc(1, sizeof(*ps))) == NULL)
		return -ENOMEM;
	ps->w = w;
	ps->arg = arg;
	if ((ps->http = evhttp_new(base)) == NULL) {
		free(ps);
		return -ENOMEM;
	}
	evhttp_set_allowed_methods(ps->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_max_headers_size(ps->http, 8192);
	evhttp_set_max_body_size(ps->http, 0);
	evhttp_set_timeout(ps->http, 10);
	evhttp_set_cb(ps->http, "/metrics", prom_on_metrics, ps);
	evhttp_set_gencb(ps->http, prom_on_other, NULL);
	if (evhttp_bind_socket_with_handle(ps->http, a.host, a.port) == NULL) {
		e = errno ? errno : EADDRINUSE;
		prom_server_free(ps);
		return -e;
	}
	*out = ps;
	return 0;
}

void
prom_server_free(struct prom_server *ps)
{
	if (ps == NULL)
		return;
	if (ps->http != NULL)
		evhttp_free(ps->http);
	free(ps);
}

void
prom_head(struct evbuffer *b, const char *name, const char *type,
    const char *help)
{
	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help,
	    name, type);
}

void
prom_u64(struct evbuffer *b, const char *name, const char *type,
    const char *help, uint64_t v)
{
	prom_head(b, name, type, help);
	evbuffer_add_printf(b, "%s %llu\n", name, (unsigned long long)v);
}
