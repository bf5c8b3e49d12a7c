/*
 * fuzz_cfg.c - libFuzzer target for the configuration parser
 * (src/common/cfg.c, libinih underneath).
 *
 * The input is the whole text of a sharemig.conf.  cfg_load() reads a
 * path, so the input is written to one file in /dev/shm (tmpfs: no disk
 * I/O), made once per process and rewritten for every input.
 *
 * Checks, any failure aborts:
 *   - cfg_load() returns 0 or -EINVAL (the file exists; -ENOMEM would be
 *     a finding under the fuzzer's memory limit only if it were common);
 *   - on -EINVAL the message is "PATH:LINE: reason" with LINE >= 0 and no
 *     greater than the input's line count + 1, and the struct is exactly
 *     what it was before (same strings, same numbers);
 *   - on 0 every field satisfies its documented constraint (backend sim
 *     or xen, absolute paths, socket paths fit sun_path, numbers in their
 *     ranges, dedup parses);
 *   - loading the same input a second time gives the same result: the
 *     parser has no hidden state;
 *   - cfg_free() releases everything (LeakSanitizer under libFuzzer).
 *
 * Past finding (fixed in cfg.c, seeds 18-20 of fuzz/corpus/cfg): a line
 * of 199 bytes or more was split by libinih (INI_MAX_LINE 200) into
 * several "lines"; cfg.c reported a line past the end of the file or
 * loaded a truncated value.  It now refuses such a line.
 *
 * Built with clang -fsanitize=fuzzer (fuzz/meson.build), or without
 * libFuzzer together with replay_main.c to replay a corpus.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "cfg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)	do { if (!(x)) abort(); } while (0)

static char	path[64];
static int	fd = -1;

static void
cleanup(void)
{
	if (fd >= 0) {
		close(fd);
		unlink(path);
	}
}

/* Make the scratch file once.  Aborts if that is impossible. */
static void
scratch_init(void)
{
	const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";

	snprintf(path, sizeof(path), "%s/fuzz_cfg.XXXXXX", dir);
	fd = mkstemp(path);
	CHECK(fd >= 0);
	atexit(cleanup);
}

static void
scratch_write(const uint8_t *data, size_t size)
{
	size_t off = 0;
	ssize_t n;

	CHECK(ftruncate(fd, 0) == 0);
	while (off < size) {
		n = pwrite(fd, data + off, size - off, (off_t)off);
		CHECK(n > 0);
		off += (size_t)n;
	}
}

static int
streq(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

/* Same values (strings by content). */
static int
cfg_equal(const struct cfg *a, const struct cfg *b)
{
	return streq(a->backend, b->backend) &&
	    streq(a->state_dir, b->state_dir) &&
	    streq(a->listen, b->listen) &&
	    streq(a->destd_control, b->destd_control) &&
	    streq(a->sourced_control, b->sourced_control) &&
	    streq(a->tls_cert, b->tls_cert) &&
	    streq(a->tls_key, b->tls_key) &&
	    streq(a->tls_ca, b->tls_ca) &&
	    streq(a->tls_pin, b->tls_pin) &&
	    a->insecure == b->insecure &&
	    memcmp(&a->scan_cpu, &b->scan_cpu, sizeof(a->scan_cpu)) == 0 &&
	    a->scan_interval_ms == b->scan_interval_ms &&
	    streq(a->dedup, b->dedup) &&
	    a->downtime_ms == b->downtime_ms &&
	    a->max_iters == b->max_iters &&
	    a->bandwidth == b->bandwidth &&
	    a->streams == b->streams;
}

static int
abs_path(const char *s)
{
	return s != NULL && s[0] == '/';
}

static int
sock_path(const char *s)
{
	return abs_path(s) &&
	    strlen(s) < sizeof(((struct sockaddr_un *)0)->sun_path);
}

/* A successfully loaded config obeys every documented constraint. */
static void
check_valid(const struct cfg *c)
{
	CHECK(streq(c->backend, "sim") || streq(c->backend, "xen"));
	CHECK(abs_path(c->state_dir));
	CHECK(c->listen != NULL && c->listen[0] != '\0');
	CHECK(sock_path(c->destd_control));
	CHECK(sock_path(c->sourced_control));
	CHECK(abs_path(c->tls_cert));
	CHECK(abs_path(c->tls_key));
	CHECK(abs_path(c->tls_ca));
	CHECK(c->tls_pin == NULL || cfg_pin_valid(c->tls_pin));
	CHECK(c->insecure == 0 || c->insecure == 1);
	CHECK(isfinite(c->scan_cpu) && c->scan_cpu > 0 && c->scan_cpu <= 1);
	CHECK(c->scan_interval_ms >= 1 && c->scan_interval_ms <= 86400000);
	CHECK(cfg_parse_dedup(c->dedup) >= 0);
	CHECK(c->downtime_ms >= 1 && c->downtime_ms <= 3600000);
	CHECK(c->max_iters >= 1 && c->max_iters <= 100000);
	CHECK(c->streams >= 1 && c->streams <= 64);
}

/* "PATH:LINE: reason" with a plausible LINE. */
static void
check_error(const char *err, const uint8_t *data, size_t size)
{
	size_t plen = strlen(path), i, lines = 1;
	char *end;
	long line;

	for (i = 0; i < size; i++)
		lines += data[i] == '\n';
	CHECK(strncmp(err, path, plen) == 0 && err[plen] == ':');
	line = strtol(err + plen + 1, &end, 10);
	CHECK(end != err + plen + 1 && line >= 0);
	CHECK((size_t)line <= lines);
	CHECK(end[0] == ':' && end[1] == ' ' && end[2] != '\0');
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cfg c, before, again;
	char err[1024], err2[1024];
	int r, r2;

	if (fd < 0)
		scratch_init();
	scratch_write(data, size);

	cfg_defaults(&c);
	cfg_defaults(&before);
	err[0] = '\0';
	r = cfg_load(&c, path, err, sizeof(err));
	CHECK(r == 0 || r == -EINVAL);
	if (r == 0) {
		check_valid(&c);
	} else {
		CHECK(cfg_equal(&c, &before));
		check_error(err, data, size);
	}

	/* Deterministic: the same file gives the same outcome and values. */
	cfg_defaults(&again);
	err2[0] = '\0';
	r2 = cfg_load(&again, path, err2, sizeof(err2));
	CHECK(r2 == r);
	if (r == 0)
		CHECK(cfg_equal(&c, &again));
	else
		CHECK(strcmp(err, err2) == 0);

	/* A bad file over a loaded config leaves the loaded values alone. */
	if (r == 0) {
		static const char bad[] = "[host]\nno_such_key = 1\n";

		cfg_free(&before);
		cfg_defaults(&before);
		cfg_free(&before);
		before = c;
		memset(&c, 0, sizeof(c));
		scratch_write((const uint8_t *)bad, sizeof(bad) - 1);
		CHECK(cfg_load(&before, path, err, sizeof(err)) == -EINVAL);
		CHECK(cfg_equal(&before, &again));
	}
	cfg_free(&c);
	cfg_free(&before);
	cfg_free(&again);
	return 0;
}
