/*
 * cfg.h - /etc/sharemig/sharemig.conf (INI, parsed with libinih).
 * Command-line flags override what the file says.  Parsed config is one
 * of the few allowed globals-by-value: the daemon keeps one struct cfg.
 */
#ifndef SHAREMIG_CFG_H
#define SHAREMIG_CFG_H

#include <stddef.h>
#include <stdint.h>

#define CFG_DEFAULT_PATH	"/etc/sharemig/sharemig.conf"

struct cfg {
	char	*backend;		/* [host] backend = sim|xen */
	char	*state_dir;		/* [host] state_dir */
	char	*listen;		/* [destd] listen = ADDR:PORT */
	char	*destd_control;		/* [destd] control = SOCKET */
	char	*sourced_control;	/* [sourced] control = SOCKET */
	char	*tls_cert, *tls_key, *tls_ca;	/* [tls] cert/key/ca */
	char	*tls_pin;		/* [tls] pin = sha256:HEX, NULL = CA */
	int	 insecure;		/* [tls] insecure = yes|no */
	double	 scan_cpu;		/* [scanner] cpu_budget = 0.25 */
	unsigned scan_interval_ms;	/* [scanner] interval_ms */
	char	*dedup;			/* [migration] dedup = none|shared|all */
	char	*compress;		/* [migration] compress = none|zstd|lz4 */
	unsigned downtime_ms;		/* [migration] downtime_ms */
	unsigned max_iters;		/* [migration] max_iterations */
	uint64_t bandwidth;		/* [migration] bandwidth = bytes/s, 0 = none */
	int	 auto_converge;		/* [migration] auto_converge = yes|no */
	unsigned streams;		/* [migration] streams = 1..8 */
	unsigned max_streams;		/* [destd] max_streams = 1..8 */
};

/* Defaults into c (strings malloc'd or NULL). */
void	cfg_defaults(struct cfg *c);
/*
 * Read path into c (keys not present keep their values).  0, -ENOENT,
 * or -EINVAL with "path:line: reason" in err.
 */
int	cfg_load(struct cfg *c, const char *path, char *err, size_t errlen);
/*
 * The daemons' first pass over their command line: --config FILE (or
 * --config=FILE), else CFG_DEFAULT_PATH when it is readable, is loaded
 * into c; *check is set when --check-config is present.  0, or the
 * cfg_load() error with its message in err.
 */
int	cfg_load_args(struct cfg *c, int argc, char **argv, int *check,
	    char *err, size_t errlen);
void	cfg_free(struct cfg *c);
/*
 * Parse a rate in bytes per second: an integer, optionally followed by
 * K, M or G (binary: x 2^10, 2^20, 2^30; KiB, MiB, GiB mean the same;
 * any case).  "0" is 0 (no cap).  0, or -EINVAL for anything else or a
 * value that does not fit 64 bits; *out is written only on success.
 */
int	cfg_parse_rate(const char *s, uint64_t *out);
/* 1 if s is "sha256:" and 64 hex digits (tls.h's pin form), else 0. */
int	cfg_pin_valid(const char *s);
/* Parse "none|shared|all": 0..2 or -EINVAL. */
int	cfg_parse_dedup(const char *s);

#endif
