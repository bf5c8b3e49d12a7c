/*
 * cfg.c - /etc/sharemig/sharemig.conf, parsed with libinih.  See cfg.h.
 *
 * The file is read through our own line reader so that every error can
 * name its line (Debian's libinih is built without INI_HANDLER_LINENO).
 * The file is parsed into a copy of the caller's struct cfg, which
 * replaces it only when the whole file is good.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <strings.h>
#include <sys/un.h>

#include <ini.h>

#include "cfg.h"

struct parse {
	struct cfg	 c;
	FILE		*f;
	const char	*path;
	int		 line;		/* line the handler is looking at */
	int		 at_bol;	/* the next fgets() starts a line */
	int		 failed;	/* the first error is in errline/errmsg */
	int		 errline;
	char		 errmsg[512];
};

static int	perr(struct parse *, const char *, ...)
		    __attribute__((format(printf, 2, 3)));

static const char *sections[] = { "host", "destd", "sourced", "tls",
	"scanner", "migration" };

/*
 * Reject an unknown "[section]" header even when no key follows it
 * (inih calls the handler only for keys).
 */
static void
check_section(struct parse *p, const char *s)
{
	const char *close;
	size_t i, n;

	while (*s == ' ' || *s == '\t')
		s++;
	if (*s != '[' || (close = strchr(s, ']')) == NULL)
		return;		/* not a header, or inih's syntax error */
	s++;
	n = (size_t)(close - s);
	for (i = 0; i < sizeof(sections) / sizeof(sections[0]); i++)
		if (strlen(sections[i]) == n && strncmp(sections[i], s, n) == 0)
			return;
	perr(p, "unknown section [%.*s]", (int)n, s);
}

/* inih's reader: fgets() that counts lines. */
static char *
reader(char *str, int num, void *stream)
{
	struct parse *p = stream;
	char *s;
	int bol = p->at_bol;

	s = fgets(str, num, p->f);
	if (s == NULL)
		return NULL;
	if (bol)
		p->line++;
	p->at_bol = strchr(s, '\n') != NULL;
	if (bol)
		check_section(p, s);
	/* inih reads at most num - 1 bytes per line and would take the rest
	 * of a longer one as a line of its own: refuse such a file. */
	if (!p->at_bol && !feof(p->f))
		perr(p, "line longer than %d bytes", num - 2);
	return s;
}

/* Record the first error and its line; returns 0 for inih. */
static int
perr(struct parse *p, const char *fmt, ...)
{
	va_list ap;

	if (p->failed)
		return 0;
	p->failed = 1;
	p->errline = p->line;
	va_start(ap, fmt);
	vsnprintf(p->errmsg, sizeof(p->errmsg), fmt, ap);
	va_end(ap);
	return 0;
}

static int
set_str(struct parse *p, char **dst, const char *v)
{
	char *s = strdup(v);

	if (s == NULL)
		return perr(p, "out of memory");
	free(*dst);
	*dst = s;
	return 1;
}

/* A decimal integer in [min, max], all of v. */
static int
parse_u64(const char *v, uint64_t min, uint64_t max, uint64_t *out)
{
	unsigned long long x;
	char *end;

	if (*v < '0' || *v > '9')
		return -EINVAL;
	errno = 0;
	x = strtoull(v, &end, 10);
	if (errno != 0 || *end != '\0' || x < min || x > max)
		return -EINVAL;
	*out = x;
	return 0;
}

int
cfg_parse_rate(const char *s, uint64_t *out)
{
	static const struct {
		const char	*suffix;
		unsigned	 shift;
	} units[] = {
		{ "", 0 }, { "K", 10 }, { "KiB", 10 }, { "M", 20 },
		{ "MiB", 20 }, { "G", 30 }, { "GiB", 30 },
	};
	unsigned long long x;
	char *end;
	size_t i;

	if (s == NULL || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	x = strtoull(s, &end, 10);
	if (errno != 0)
		return -EINVAL;
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcasecmp(end, units[i].suffix) != 0)
			continue;
		if (x > (UINT64_MAX >> units[i].shift))
			return -EINVAL;
		*out = (uint64_t)x << units[i].shift;
		return 0;
	}
	return -EINVAL;
}

static int
parse_bool(const char *v)
{
	static const char *yes[] = { "yes", "true", "on", "1" };
	static const char *no[] = { "no", "false", "off", "0" };
	size_t i;

	for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcasecmp(v, yes[i]) == 0)
			return 1;
		if (strcasecmp(v, no[i]) == 0)
			return 0;
	}
	return -EINVAL;
}

int
cfg_parse_dedup(const char *s)
{
	if (s == NULL)
		return -EINVAL;
	if (strcmp(s, "none") == 0)
		return 0;
	if (strcmp(s, "shared") == 0)
		return 1;
	if (strcmp(s, "all") == 0)
		return 2;
	return -EINVAL;
}

int
cfg_pin_valid(const char *s)
{
	return s != NULL && strncasecmp(s, "sha256:", 7) == 0 &&
	    strlen(s) == 7 + 64 &&
	    strspn(s + 7, "0123456789abcdefABCDEF") == 64;
}

enum key_type { K_STR, K_PATH, K_SOCKET, K_BACKEND, K_BOOL, K_CPU, K_UINT,
	K_U64, K_DEDUP, K_RATE, K_COMPRESS, K_PIN };

static const struct key {
	const char	*section, *name;
	enum key_type	 type;
	size_t		 off;
	uint64_t	 min, max;	/* K_UINT, K_U64 */
} keys[] = {
	{ "host", "backend", K_BACKEND, offsetof(struct cfg, backend), 0, 0 },
	{ "host", "state_dir", K_PATH, offsetof(struct cfg, state_dir), 0, 0 },
	{ "destd", "listen", K_STR, offsetof(struct cfg, listen), 0, 0 },
	{ "destd", "control", K_SOCKET, offsetof(struct cfg, destd_control), 0, 0 },
	{ "destd", "max_streams", K_UINT, offsetof(struct cfg, max_streams),
	    1, 8 },
	{ "sourced", "control", K_SOCKET,
	    offsetof(struct cfg, sourced_control), 0, 0 },
	{ "tls", "cert", K_PATH, offsetof(struct cfg, tls_cert), 0, 0 },
	{ "tls", "key", K_PATH, offsetof(struct cfg, tls_key), 0, 0 },
	{ "tls", "ca", K_PATH, offsetof(struct cfg, tls_ca), 0, 0 },
	{ "tls", "insecure", K_BOOL, offsetof(struct cfg, insecure), 0, 0 },
	{ "tls", "pin", K_PIN, offsetof(struct cfg, tls_pin), 0, 0 },
	{ "scanner", "cpu_budget", K_CPU, offsetof(struct cfg, scan_cpu), 0, 0 },
	{ "scanner", "interval_ms", K_UINT,
	    offsetof(struct cfg, scan_interval_ms), 1, 86400000 },
	{ "migration", "dedup", K_DEDUP, offsetof(struct cfg, dedup), 0, 0 },
	{ "migration", "compress", K_COMPRESS, offsetof(struct cfg, compress),
	    0, 0 },
	{ "migration", "downtime_ms", K_UINT,
	    offsetof(struct cfg, downtime_ms), 1, 3600000 },
	{ "migration", "max_iterations", K_UINT,
	    offsetof(struct cfg, max_iters), 1, 100000 },
	{ "migration", "bandwidth", K_RATE, offsetof(struct cfg, bandwidth),
	    0, 0 },
	{ "migration", "auto_converge", K_BOOL,
	    offsetof(struct cfg, auto_converge), 0, 0 },
	{ "migration", "streams", K_UINT, offsetof(struct cfg, streams),
	    1, 8 },
};

/* inih handler: one "name = value" in section.  1 ok, 0 error. */
static int
handler(void *user, const char *section, const char *name, const char *v)
{
	struct parse *p = user;
	const struct key *k = NULL;
	void *dst;
	uint64_t u;
	double d;
	char *end;
	size_t i;
	int b;

	if (p->failed)
		return 0;
	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (strcmp(keys[i].section, section) == 0 &&
		    strcmp(keys[i].name, name) == 0) {
			k = &keys[i];
			break;
		}
	if (k == NULL)
		return perr(p, "unknown key '%s' in [%s]", name, section);
	dst = (char *)&p->c + k->off;
	if (*v == '\0')
		return perr(p, "%s: empty value", name);

	switch (k->type) {
	case K_STR:
		return set_str(p, dst, v);
	case K_PATH:
		if (v[0] != '/')
			return perr(p, "%s: '%s' is not an absolute path",
			    name, v);
		return set_str(p, dst, v);
	case K_SOCKET:
		if (v[0] != '/')
			return perr(p, "%s: '%s' is not an absolute path",
			    name, v);
		if (strlen(v) >= sizeof(((struct sockaddr_un *)0)->sun_path))
			return perr(p, "%s: socket path too long", name);
		return set_str(p, dst, v);
	case K_BACKEND:
		if (strcmp(v, "xen") != 0 && strcmp(v, "sim") != 0)
			return perr(p, "backend: '%s' is not sim or xen", v);
		return set_str(p, dst, v);
	case K_DEDUP:
		if (cfg_parse_dedup(v) < 0)
			return perr(p, "dedup: '%s' is not none, shared or all",
			    v);
		return set_str(p, dst, v);
	case K_COMPRESS:
		if (strcmp(v, "none") != 0 && strcmp(v, "zstd") != 0 &&
		    strcmp(v, "lz4") != 0)
			return perr(p, "compress: '%s' is not none, zstd or "
			    "lz4", v);
		return set_str(p, dst, v);
	case K_PIN:
		if (!cfg_pin_valid(v))
			return perr(p, "pin: '%s' is not sha256: and 64 hex "
			    "digits", v);
		return set_str(p, dst, v);
	case K_BOOL:
		if ((b = parse_bool(v)) < 0)
			return perr(p, "%s: '%s' is not yes or no", name, v);
		*(int *)dst = b;
		return 1;
	case K_RATE:
		if (cfg_parse_rate(v, (uint64_t *)dst) < 0)
			return perr(p, "%s: '%s' is not a rate in bytes per "
			    "second (an integer, optionally with K, M or G)",
			    name, v);
		return 1;
	case K_CPU:
		errno = 0;
		d = strtod(v, &end);
		if (errno != 0 || end == v || *end != '\0' || !isfinite(d) ||
		    d <= 0 || d > 1)
			return perr(p, "%s: '%s' is not a number in (0, 1]",
			    name, v);
		*(double *)dst = d;
		return 1;
	case K_UINT:
	case K_U64:
		if (parse_u64(v, k->min, k->max, &u) < 0)
			return perr(p, "%s: '%s' is not an integer in "
			    "[%llu, %llu]", name, v, (unsigned long long)k->min,
			    (unsigned long long)k->max);
		if (k->type == K_UINT)
			*(unsigned *)dst = (unsigned)u;
		else
			*(uint64_t *)dst = u;
		return 1;
	}
	return perr(p, "internal error");
}

static char *
dup_or_null(const char *s)
{
	return s != NULL ? strdup(s) : NULL;
}

/* A deep copy of src into dst.  0 or -ENOMEM (dst then freed). */
static int
cfg_copy(struct cfg *dst, const struct cfg *src)
{
	*dst = *src;
	dst->backend = dup_or_null(src->backend);
	dst->state_dir = dup_or_null(src->state_dir);
	dst->listen = dup_or_null(src->listen);
	dst->destd_control = dup_or_null(src->destd_control);
	dst->sourced_control = dup_or_null(src->sourced_control);
	dst->tls_cert = dup_or_null(src->tls_cert);
	dst->tls_key = dup_or_null(src->tls_key);
	dst->tls_ca = dup_or_null(src->tls_ca);
	dst->tls_pin = dup_or_null(src->tls_pin);
	dst->dedup = dup_or_null(src->dedup);
	dst->compress = dup_or_null(src->compress);
	if ((src->backend && !dst->backend) ||
	    (src->state_dir && !dst->state_dir) ||
	    (src->listen && !dst->listen) ||
	    (src->destd_control && !dst->destd_control) ||
	    (src->sourced_control && !dst->sourced_control) ||
	    (src->tls_cert && !dst->tls_cert) ||
	    (src->tls_key && !dst->tls_key) ||
	    (src->tls_ca && !dst->tls_ca) ||
	    (src->tls_pin && !dst->tls_pin) ||
	    (src->dedup && !dst->dedup) ||
	    (src->compress && !dst->compress)) {
		cfg_free(dst);
		return -ENOMEM;
	}
	return 0;
}

void
cfg_defaults(struct cfg *c)
{
	memset(c, 0, sizeof(*c));
	c->backend = strdup("xen");
	c->state_dir = strdup("/var/lib/sharemig");
	c->listen = strdup("0.0.0.0:8002");
	c->destd_control = strdup("/run/sharemig/destd.sock");
	c->sourced_control = strdup("/run/sharemig/sourced.sock");
	c->tls_cert = strdup("/etc/sharemig/tls/host.pem");
	c->tls_key = strdup("/etc/sharemig/tls/host.key");
	c->tls_ca = strdup("/etc/sharemig/tls/ca.pem");
	c->insecure = 0;
	c->scan_cpu = 0.25;
	c->scan_interval_ms = 10000;
	c->dedup = strdup("all");
	c->compress = strdup("none");
	c->downtime_ms = 100;
	c->max_iters = 30;
	c->bandwidth = 0;
	c->streams = 1;
	c->max_streams = 8;
}

int
cfg_load(struct cfg *c, const char *path, char *err, size_t errlen)
{
	struct parse p;
	int r;

	memset(&p, 0, sizeof(p));
	p.path = path;
	p.at_bol = 1;
	if ((p.f = fopen(path, "re")) == NULL) {
		r = -errno;
		if (errlen > 0)
			snprintf(err, errlen, "%s: %s", path, strerror(-r));
		return r;
	}
	if (cfg_copy(&p.c, c) < 0) {
		fclose(p.f);
		if (errlen > 0)
			snprintf(err, errlen, "%s: out of memory", path);
		return -ENOMEM;
	}
	r = ini_parse_stream(reader, &p, handler, &p);
	if (ferror(p.f) && !p.failed) {
		p.line = 0;
		perr(&p, "read error");
	}
	fclose(p.f);
	/*
	 * r is the first line inih found wrong: ours (a handler failure) or
	 * its own (no '=', an unclosed '[').  An earlier line than our first
	 * error can only be its own.
	 */
	if (r > 0 && (!p.failed || r < p.errline)) {
		p.failed = 0;
		p.line = r;
		perr(&p, "syntax error");
	} else if (r < 0 && !p.failed)
		perr(&p, "out of memory");
	if (p.failed) {
		if (errlen > 0)
			snprintf(err, errlen, "%s:%d: %s", path, p.errline,
			    p.errmsg);
		cfg_free(&p.c);
		return -EINVAL;
	}
	cfg_free(c);
	*c = p.c;
	return 0;
}

int
cfg_load_args(struct cfg *c, int argc, char **argv, int *check, char *err,
    size_t errlen)
{
	const char *config = NULL;
	int i;

	*check = 0;
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			config = argv[i + 1];
		else if (strncmp(argv[i], "--config=", 9) == 0)
			config = argv[i] + 9;
		else if (strcmp(argv[i], "--check-config") == 0)
			*check = 1;
	}
	if (config == NULL && access(CFG_DEFAULT_PATH, R_OK) != 0)
		return 0;
	return cfg_load(c, config ? config : CFG_DEFAULT_PATH, err, errlen);
}

void
cfg_free(struct cfg *c)
{
	if (c == NULL)
		return;
	free(c->backend);
	free(c->state_dir);
	free(c->listen);
	free(c->destd_control);
	free(c->sourced_control);
	free(c->tls_cert);
	free(c->tls_key);
	free(c->tls_ca);
	free(c->tls_pin);
	free(c->dedup);
	free(c->compress);
	c->backend = c->state_dir = c->listen = NULL;
	c->destd_control = c->sourced_control = NULL;
	c->tls_cert = c->tls_key = c->tls_ca = c->tls_pin = c->dedup = NULL;
	c->compress = NULL;
}
