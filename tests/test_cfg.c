/*
 * test_cfg.c - cfg.c: defaults, every key, bad values, unknown keys and
 * sections, line numbers in errors, the struct untouched on error.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "cfg.h"

static char dir[64];
static char path[128];

static void
write_file(const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static int
setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/test_cfg.XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(path, sizeof(path), "%s/sharemig.conf", dir);
	return 0;
}

static int
teardown(void **state)
{
	unlink(path);
	return rmdir(dir);
}

static void
test_defaults(void **state)
{
	struct cfg c;

	cfg_defaults(&c);
	assert_string_equal(c.backend, "xen");
	assert_string_equal(c.state_dir, "/var/lib/sharemig");
	assert_string_equal(c.listen, "0.0.0.0:8002");
	assert_string_equal(c.destd_control, "/run/sharemig/destd.sock");
	assert_string_equal(c.sourced_control, "/run/sharemig/sourced.sock");
	assert_string_equal(c.tls_cert, "/etc/sharemig/tls/host.pem");
	assert_string_equal(c.tls_key, "/etc/sharemig/tls/host.key");
	assert_string_equal(c.tls_ca, "/etc/sharemig/tls/ca.pem");
	assert_int_equal(c.insecure, 0);
	assert_null(c.tls_pin);	/* CA mode by default */
	assert_true(c.scan_cpu == 0.25);
	assert_int_equal(c.scan_interval_ms, 10000);
	assert_string_equal(c.dedup, "all");
	assert_int_equal(c.downtime_ms, 100);
	assert_int_equal(c.max_iters, 30);
	assert_int_equal(c.bandwidth, 0);
	assert_int_equal(c.streams, 1);
	cfg_free(&c);
	assert_null(c.backend);
	cfg_free(&c);		/* twice is fine */
	cfg_free(NULL);
}

static void
test_full_file(void **state)
{
	char err[256] = "";
	struct cfg c;

	write_file(
	    "; sharemig.conf\n"
	    "# comments both ways\n"
	    "\n"
	    "[host]\n"
	    "backend = sim\n"
	    "state_dir = /srv/sharemig\n"
	    "[destd]\n"
	    "listen = [::1]:9000\n"
	    "control = /tmp/d.sock\n"
	    "[sourced]\n"
	    "control=/tmp/s.sock\n"
	    "[tls]\n"
	    "cert = /etc/x/h.pem\n"
	    "key = /etc/x/h.key\n"
	    "ca = /etc/x/ca.pem\n"
	    "insecure = yes\n"
	    "pin = sha256:00112233445566778899aabbccddeeff"
	    "00112233445566778899AABBCCDDEEFF\n"
	    "[scanner]\n"
	    "cpu_budget = 0.5\n"
	    "interval_ms = 250\n"
	    "[migration]\n"
	    "dedup = shared\n"
	    "downtime_ms = 50\n"
	    "max_iterations = 7\n"
	    "bandwidth = 125000000\n"
	    "auto_converge = yes\n"
	    "streams = 4\n");
	cfg_defaults(&c);
	assert_int_equal(cfg_load(&c, path, err, sizeof(err)), 0);
	assert_string_equal(err, "");
	assert_string_equal(c.backend, "sim");
	assert_string_equal(c.state_dir, "/srv/sharemig");
	assert_string_equal(c.listen, "[::1]:9000");
	assert_string_equal(c.destd_control, "/tmp/d.sock");
	assert_string_equal(c.sourced_control, "/tmp/s.sock");
	assert_string_equal(c.tls_cert, "/etc/x/h.pem");
	assert_string_equal(c.tls_key, "/etc/x/h.key");
	assert_string_equal(c.tls_ca, "/etc/x/ca.pem");
	assert_int_equal(c.insecure, 1);
	assert_string_equal(c.tls_pin, "sha256:00112233445566778899aabbccddeeff"
	    "00112233445566778899AABBCCDDEEFF");
	assert_true(c.scan_cpu == 0.5);
	assert_int_equal(c.scan_interval_ms, 250);
	assert_string_equal(c.dedup, "shared");
	assert_int_equal(c.downtime_ms, 50);
	assert_int_equal(c.max_iters, 7);
	assert_int_equal(c.bandwidth, 125000000);
	assert_int_equal(c.auto_converge, 1);
	assert_int_equal(c.streams, 4);
	cfg_free(&c);
}

/* One key at a time: the others keep their defaults. */
static void
test_each_key(void **state)
{
	static const struct {
		const char	*text;
		size_t		 off;	/* of the field that changes */
	} cases[] = {
		{ "[host]\nbackend = xen\n", offsetof(struct cfg, backend) },
		{ "[tls]\ninsecure = no\n", offsetof(struct cfg, insecure) },
		{ "[tls]\ninsecure = TRUE\n", offsetof(struct cfg, insecure) },
		{ "[tls]\ninsecure = on\n", offsetof(struct cfg, insecure) },
		{ "[tls]\ninsecure = 1\n", offsetof(struct cfg, insecure) },
		{ "[scanner]\ncpu_budget = 1\n", offsetof(struct cfg, scan_cpu) },
		{ "[scanner]\ncpu_budget = 0.01\n",
		    offsetof(struct cfg, scan_cpu) },
		{ "[migration]\ndedup = none\n", offsetof(struct cfg, dedup) },
		{ "[migration]\ncompress = lz4\n",
		    offsetof(struct cfg, compress) },
		{ "[migration]\nbandwidth = 18446744073709551615\n",
		    offsetof(struct cfg, bandwidth) },
		{ "[migration]\nbandwidth = 8M\n",
		    offsetof(struct cfg, bandwidth) },
		{ "[migration]\nstreams = 8\n", offsetof(struct cfg, streams) },
		{ "[destd]\nmax_streams = 2\n",
		    offsetof(struct cfg, max_streams) },
		{ "[destd]\nlisten = host.example:1 ; inline comment\n",
		    offsetof(struct cfg, listen) },
		{ "", 0 },
		{ "[host]\n", 0 },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cfg c, d;
		char err[256];

		write_file(cases[i].text);
		cfg_defaults(&c);
		cfg_defaults(&d);
		if (cfg_load(&c, path, err, sizeof(err)) != 0)
			fail_msg("case %zu: %s", i, err);
		assert_string_equal(c.state_dir, d.state_dir);
		assert_string_equal(c.tls_ca, d.tls_ca);
		assert_int_equal(c.max_iters, d.max_iters);
		assert_int_equal(c.downtime_ms, d.downtime_ms);
		if (cases[i].off == offsetof(struct cfg, insecure))
			assert_int_equal(c.insecure,
			    strstr(cases[i].text, "no") == NULL);
		if (cases[i].off == offsetof(struct cfg, scan_cpu))
			assert_true(c.scan_cpu == (strstr(cases[i].text,
			    "0.01") ? 0.01 : 1.0));
		if (cases[i].off == offsetof(struct cfg, dedup))
			assert_string_equal(c.dedup, "none");
		if (cases[i].off == offsetof(struct cfg, compress))
			assert_string_equal(c.compress, "lz4");
		else
			assert_string_equal(c.compress, "none");
		if (cases[i].off == offsetof(struct cfg, bandwidth))
			assert_true(c.bandwidth == (strstr(cases[i].text,
			    "8M") ? 8ull << 20 : UINT64_MAX));
		if (cases[i].off == offsetof(struct cfg, streams))
			assert_int_equal(c.streams, 8);
		if (cases[i].off == offsetof(struct cfg, max_streams))
			assert_int_equal(c.max_streams, 2);
		else
			assert_int_equal(c.max_streams, 8);
		if (cases[i].off == offsetof(struct cfg, listen))
			assert_string_equal(c.listen, "host.example:1");
		if (cases[i].off == 0)
			assert_string_equal(c.backend, "xen");
		cfg_free(&c);
		cfg_free(&d);
	}
}

static void
test_errors(void **state)
{
	static const struct {
		const char	*text;
		const char	*err;	/* after "path:" */
	} cases[] = {
		{ "[host]\nbogus = 1\n", "2: unknown key 'bogus' in [host]" },
		{ "[bogus]\nkey = 1\n", "1: unknown section [bogus]" },
		{ "[host]\nbackend = sim\n[empty]\n",
		    "3: unknown section [empty]" },
		{ "backend = sim\n", "1: unknown key 'backend' in []" },
		{ "[destd]\n\n\n; c\nstate_dir = /x\n",
		    "5: unknown key 'state_dir' in [destd]" },
		{ "[host]\nbackend = kvm\n", "2: backend: 'kvm' is not sim or xen" },
		{ "[host]\nstate_dir = relative\n",
		    "2: state_dir: 'relative' is not an absolute path" },
		{ "[host]\nstate_dir =\n", "2: state_dir: empty value" },
		{ "[sourced]\ncontrol = run/s.sock\n",
		    "2: control: 'run/s.sock' is not an absolute path" },
		{ "[destd]\ncontrol = /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		    "aaaaaaaaaaaaaaaaaa\n", "2: control: socket path too long" },
		{ "[tls]\ninsecure = maybe\n",
		    "2: insecure: 'maybe' is not yes or no" },
		{ "[tls]\npin = sha1:00\n",
		    "2: pin: 'sha1:00' is not sha256: and 64 hex digits" },
		{ "[tls]\npin = sha256:0123456789abcdef0123456789abcdef"
		    "0123456789abcdef0123456789abcdeg\n",
		    "2: pin: 'sha256:0123456789abcdef0123456789abcdef"
		    "0123456789abcdef0123456789abcdeg' is not sha256: and 64 hex "
		    "digits" },
		/* inih would split a line this long and read its tail as a
		 * line of its own ("[host]" here): refused, whole. */
		{ "[destd]\nlisten = "
		    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		    "xxxxxxxxxx[host]\n", "2: line longer than 198 bytes" },
		{ "[scanner]\ncpu_budget = 0\n",
		    "2: cpu_budget: '0' is not a number in (0, 1]" },
		{ "[scanner]\ncpu_budget = 1.5\n",
		    "2: cpu_budget: '1.5' is not a number in (0, 1]" },
		{ "[scanner]\ncpu_budget = nan\n",
		    "2: cpu_budget: 'nan' is not a number in (0, 1]" },
		{ "[scanner]\ncpu_budget = 0.5x\n",
		    "2: cpu_budget: '0.5x' is not a number in (0, 1]" },
		{ "[scanner]\ninterval_ms = 0\n",
		    "2: interval_ms: '0' is not an integer in [1, 86400000]" },
		{ "[scanner]\ninterval_ms = -5\n",
		    "2: interval_ms: '-5' is not an integer in [1, 86400000]" },
		{ "[migration]\ndedup = some\n",
		    "2: dedup: 'some' is not none, shared or all" },
		{ "[migration]\ncompress = gzip\n",
		    "2: compress: 'gzip' is not none, zstd or lz4" },
		{ "[migration]\ndowntime_ms = 10ms\n",
		    "2: downtime_ms: '10ms' is not an integer in [1, 3600000]" },
		{ "[migration]\nmax_iterations = 0\n",
		    "2: max_iterations: '0' is not an integer in [1, 100000]" },
		{ "[migration]\nbandwidth = 18446744073709551616\n",
		    "2: bandwidth: '18446744073709551616' is not a rate in bytes "
		    "per second (an integer, optionally with K, M or G)" },
		{ "[migration]\nbandwidth = 10Mbit\n",
		    "2: bandwidth: '10Mbit' is not a rate in bytes "
		    "per second (an integer, optionally with K, M or G)" },
		{ "[migration]\nauto_converge = maybe\n",
		    "2: auto_converge: 'maybe' is not yes or no" },
		{ "[migration]\nstreams = 9\n",
		    "2: streams: '9' is not an integer in [1, 8]" },
		{ "[migration]\nstreams = +2\n",
		    "2: streams: '+2' is not an integer in [1, 8]" },
		{ "[destd]\nmax_streams = 0\n",
		    "2: max_streams: '0' is not an integer in [1, 8]" },
		{ "[host]\nbackend sim\n", "2: syntax error" },
		{ "[host\nbackend = sim\n", "1: syntax error" },
		/* The first error wins. */
		{ "[host]\nbackend = sim\nx = 1\ny = 2\n",
		    "3: unknown key 'x' in [host]" },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char err[512], want[512];
		struct cfg c;

		write_file(cases[i].text);
		cfg_defaults(&c);
		snprintf(want, sizeof(want), "%s:%s", path, cases[i].err);
		if (cfg_load(&c, path, err, sizeof(err)) != -EINVAL)
			fail_msg("case %zu: no error", i);
		if (strcmp(err, want) != 0)
			fail_msg("case %zu: got \"%s\", want \"%s\"", i, err,
			    want);
		/* Untouched on error, even by the good lines before. */
		assert_string_equal(c.backend, "xen");
		assert_string_equal(c.state_dir, "/var/lib/sharemig");
		cfg_free(&c);
	}
}

static void
test_missing(void **state)
{
	char err[256], p[160];
	struct cfg c;

	snprintf(p, sizeof(p), "%s/none.conf", dir);
	cfg_defaults(&c);
	assert_int_equal(cfg_load(&c, p, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "none.conf"));
	assert_string_equal(c.backend, "xen");
	/* A directory is not a config file. */
	assert_true(cfg_load(&c, dir, err, sizeof(err)) < 0);
	cfg_free(&c);
}

/* Rates: bytes per second with binary K/M/G (or KiB/MiB/GiB). */
static void
test_rate(void **state)
{
	static const struct {
		const char	*s;
		int		 rc;
		uint64_t	 want;
	} t[] = {
		{ "0", 0, 0 },
		{ "125000000", 0, 125000000 },
		{ "8M", 0, 8ull << 20 },
		{ "8m", 0, 8ull << 20 },
		{ "8MiB", 0, 8ull << 20 },
		{ "512K", 0, 512ull << 10 },
		{ "1kib", 0, 1024 },
		{ "2G", 0, 2ull << 30 },
		{ "18446744073709551615", 0, UINT64_MAX },
		{ "17179869183G", 0, 17179869183ull << 30 },
		{ "17179869184G", -EINVAL, 0 },		/* overflow */
		{ "18446744073709551616", -EINVAL, 0 },
		{ "", -EINVAL, 0 },
		{ "M", -EINVAL, 0 },
		{ "-1", -EINVAL, 0 },
		{ " 8M", -EINVAL, 0 },
		{ "8 M", -EINVAL, 0 },
		{ "8MB", -EINVAL, 0 },		/* not a unit we define */
		{ "8Mbit", -EINVAL, 0 },
		{ "8T", -EINVAL, 0 },
		{ "1.5M", -EINVAL, 0 },
	};
	uint64_t v;
	size_t i;

	(void)state;
	assert_int_equal(cfg_parse_rate(NULL, &v), -EINVAL);
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		v = 12345;
		if (cfg_parse_rate(t[i].s, &v) != t[i].rc)
			fail_msg("'%s': want %d", t[i].s, t[i].rc);
		assert_true(v == (t[i].rc == 0 ? t[i].want : 12345));
	}
}

static void
test_dedup(void **state)
{
	assert_int_equal(cfg_parse_dedup("none"), 0);
	assert_int_equal(cfg_parse_dedup("shared"), 1);
	assert_int_equal(cfg_parse_dedup("all"), 2);
	assert_int_equal(cfg_parse_dedup("ALL"), -EINVAL);
	assert_int_equal(cfg_parse_dedup(""), -EINVAL);
	assert_int_equal(cfg_parse_dedup(NULL), -EINVAL);
}

/* The daemons' first pass: --config FILE, --config=FILE, --check-config. */
static void
test_load_args(void **state)
{
	struct cfg c;
	char err[256], arg[160];
	int check = -1;

	write_file("[host]\nbackend = sim\n");
	cfg_defaults(&c);
	{
		char *argv[] = { "d", "--config", path, "--check-config", NULL };

		assert_int_equal(cfg_load_args(&c, 4, argv, &check, err,
		    sizeof(err)), 0);
		assert_int_equal(check, 1);
		assert_string_equal(c.backend, "sim");
	}
	cfg_free(&c);
	write_file("[host]\nbackend = kvm\n");
	cfg_defaults(&c);
	snprintf(arg, sizeof(arg), "--config=%s", path);
	{
		char *argv[] = { "d", arg, NULL };

		assert_int_equal(cfg_load_args(&c, 2, argv, &check, err,
		    sizeof(err)), -EINVAL);
		assert_int_equal(check, 0);
		assert_non_null(strstr(err, ":2: backend"));
	}
	cfg_free(&c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_load_args),
		cmocka_unit_test(test_full_file),
		cmocka_unit_test(test_each_key),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_missing),
		cmocka_unit_test(test_dedup),
		cmocka_unit_test(test_rate),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
