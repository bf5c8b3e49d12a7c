/*
 * test_hostid.c - hostid.c: the HELLO identity is stable per state
 * directory, differs between state directories, and the name is the
 * override or the host name, always NUL-terminated.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "hostid.h"

struct dirs {
	char	root[64];
	char	a[PATH_MAX];
	char	b[PATH_MAX];
	char	link[PATH_MAX];
};

static int
setup(void **state)
{
	struct dirs *d = calloc(1, sizeof(*d));

	assert_non_null(d);
	snprintf(d->root, sizeof(d->root), "/tmp/test_hostid.XXXXXX");
	assert_non_null(mkdtemp(d->root));
	snprintf(d->a, sizeof(d->a), "%s/a", d->root);
	snprintf(d->b, sizeof(d->b), "%s/b", d->root);
	snprintf(d->link, sizeof(d->link), "%s/link-to-a", d->root);
	assert_int_equal(mkdir(d->a, 0700), 0);
	assert_int_equal(mkdir(d->b, 0700), 0);
	assert_int_equal(symlink(d->a, d->link), 0);
	*state = d;
	return 0;
}

static int
teardown(void **state)
{
	struct dirs *d = *state;

	unlink(d->link);
	rmdir(d->a);
	rmdir(d->b);
	rmdir(d->root);
	free(d);
	return 0;
}

static void
get_id(const char *dir, uint8_t id[16])
{
	char name[128];

	memset(id, 0, 16);
	hostid_get(dir, id, name, sizeof(name), NULL);
}

static const uint8_t zero16[16];

/* Spellings of one directory: all must give the same id. */
static void
test_same_dir_same_id(void **state)
{
	struct dirs *d = *state;
	char alias[3][PATH_MAX + 16];
	uint8_t ref[16], id[16];
	size_t i;

	get_id(d->a, ref);
	assert_memory_not_equal(ref, zero16, 16);
	get_id(d->a, id);
	assert_memory_equal(ref, id, 16);

	snprintf(alias[0], sizeof(alias[0]), "%s/", d->a);
	snprintf(alias[1], sizeof(alias[1]), "%s/../a/.", d->a);
	snprintf(alias[2], sizeof(alias[2]), "%s", d->link);
	for (i = 0; i < 3; i++) {
		get_id(alias[i], id);
		if (memcmp(ref, id, 16) != 0)
			fail_msg("\"%s\" gives another id than \"%s\"",
			    alias[i], d->a);
	}
}

static void
test_different_dirs_different_ids(void **state)
{
	struct dirs *d = *state;
	uint8_t ia[16], ib[16], inone[16], iroot[16];

	get_id(d->a, ia);
	get_id(d->b, ib);
	get_id(NULL, inone);
	get_id(d->root, iroot);
	assert_memory_not_equal(ia, ib, 16);
	assert_memory_not_equal(ia, inone, 16);
	assert_memory_not_equal(ib, inone, 16);
	assert_memory_not_equal(ia, iroot, 16);
}

/* A directory that does not exist (yet) still gives a stable id. */
static void
test_missing_dir(void **state)
{
	struct dirs *d = *state;
	char missing[PATH_MAX + 16];
	uint8_t i1[16], i2[16], ia[16];

	snprintf(missing, sizeof(missing), "%s/not-there", d->root);
	get_id(missing, i1);
	get_id(missing, i2);
	get_id(d->a, ia);
	assert_memory_equal(i1, i2, 16);
	assert_memory_not_equal(i1, ia, 16);
}

static void
test_name_override(void **state)
{
	struct dirs *d = *state;
	uint8_t i1[16], i2[16];
	char name[128];

	memset(name, 'x', sizeof(name));
	hostid_get(d->a, i1, name, sizeof(name), "dest-1");
	assert_string_equal(name, "dest-1");
	/* The override names the host; it does not change its id. */
	get_id(d->a, i2);
	assert_memory_equal(i1, i2, 16);
}

/* Without an override the name starts with the host name. */
static void
test_name_default(void **state)
{
	struct dirs *d = *state;
	char host[256], name[512];
	uint8_t id[16];

	memset(host, 0, sizeof(host));
	assert_int_equal(gethostname(host, sizeof(host) - 1), 0);
	memset(name, 'x', sizeof(name));
	hostid_get(d->a, id, name, sizeof(name), NULL);
	assert_non_null(memchr(name, '\0', sizeof(name)));
	assert_true(strlen(name) > 0);
	assert_int_equal(strncmp(name, host, strlen(host)), 0);
}

struct trunc_case {
	size_t		 len;		/* buffer size given */
	const char	*override;	/* NULL: host name */
};

static const struct trunc_case trunc_cases[] = {
	{ 1, "a-long-override-name" },
	{ 2, "a-long-override-name" },
	{ 5, "a-long-override-name" },
	{ 20, "a-long-override-name" },	/* exactly one byte short */
	{ 21, "a-long-override-name" },	/* fits */
	{ 1, NULL },
	{ 3, NULL },
	{ 8, NULL },
};

/* Small buffers: truncated, NUL-terminated, nothing written past len. */
static void
test_name_truncated(void **state)
{
	struct dirs *d = *state;
	char buf[64], full[512];
	uint8_t id[16];
	size_t i, j, want;

	for (i = 0; i < sizeof(trunc_cases) / sizeof(trunc_cases[0]); i++) {
		const struct trunc_case *c = &trunc_cases[i];

		hostid_get(d->a, id, full, sizeof(full), c->override);
		memset(buf, 'Z', sizeof(buf));
		hostid_get(d->a, id, buf, c->len, c->override);
		want = strlen(full) < c->len - 1 ? strlen(full) : c->len - 1;
		if (buf[want] != '\0' || strlen(buf) != want)
			fail_msg("len %zu: name not terminated at %zu", c->len,
			    want);
		assert_memory_equal(buf, full, want);
		for (j = c->len; j < sizeof(buf); j++)
			if (buf[j] != 'Z')
				fail_msg("len %zu: byte %zu written", c->len,
				    j);
	}
}

/* A zero-length name buffer is not written at all. */
static void
test_name_len_zero(void **state)
{
	struct dirs *d = *state;
	char buf[4] = { 'Z', 'Z', 'Z', 'Z' };
	uint8_t id[16], ref[16];

	hostid_get(d->a, id, buf, 0, "whatever");
	assert_memory_equal(buf, "ZZZZ", 4);
	get_id(d->a, ref);
	assert_memory_equal(id, ref, 16);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_same_dir_same_id,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_different_dirs_different_ids,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_dir,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_name_override,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_name_default,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_name_truncated,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_name_len_zero,
		    setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
