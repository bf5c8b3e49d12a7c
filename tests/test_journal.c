/*
 * test_journal.c - journal.c: records round-trip, are replaced whole,
 * are listed with their names, leftovers of an interrupted write are
 * removed, unreadable records are reported as NULL (not skipped), and
 * names that would leave the directory are refused; records are read
 * with ctl.h's field accessors.
 */
#include <errno.h>
#include <fcntl.h>
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
#include <json-c/json.h>

#include "ctl.h"
#include "journal.h"

struct seen {
	char	names[8][64];
	char	states[8][32];
	int	n;
};

static void
collect(const char *name, struct json_object *o, void *arg)
{
	struct seen *s = arg;
	const char *st = "(unreadable)";

	assert_true(s->n < 8);
	if (o != NULL)
		assert_int_equal(ctl_get_str(o, "state", &st), 1);
	snprintf(s->names[s->n], sizeof(s->names[0]), "%s", name);
	snprintf(s->states[s->n], sizeof(s->states[0]), "%s", st);
	s->n++;
}

static const char *
state_of(const struct seen *s, const char *name)
{
	int i;

	for (i = 0; i < s->n; i++)
		if (strcmp(s->names[i], name) == 0)
			return s->states[i];
	return NULL;
}

static int
put_state(const char *dir, const char *name, const char *state)
{
	struct json_object *o = json_object_new_object();
	int rc;

	json_object_object_add(o, "state", json_object_new_string(state));
	rc = journal_put(dir, name, o);
	json_object_put(o);
	return rc;
}

static void
write_file(const char *dir, const char *file, const char *text)
{
	char path[PATH_MAX];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	assert_non_null(f = fopen(path, "w"));
	fputs(text, f);
	fclose(f);
}

static void
rm_rf(const char *dir)
{
	char cmd[PATH_MAX + 16];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

static void
test_roundtrip(void **state)
{
	char root[] = "/tmp/test_journal.XXXXXX", dir[PATH_MAX];
	char path[PATH_MAX + 32];
	struct seen s;
	struct stat st;

	(void)state;
	assert_non_null(mkdtemp(root));
	snprintf(dir, sizeof(dir), "%s/j", root);
	/* A missing directory is an empty journal. */
	memset(&s, 0, sizeof(s));
	assert_int_equal(journal_each(dir, collect, &s), 0);
	assert_int_equal(journal_init(dir), 0);
	assert_int_equal(journal_init(dir), 0);		/* idempotent */
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);

	assert_int_equal(put_state(dir, "web-1", "logdirty"), 0);
	assert_int_equal(put_state(dir, "db", "building"), 0);
	assert_int_equal(put_state(dir, "web-1", "paused"), 0);	/* replace */
	snprintf(path, sizeof(path), "%s/web-1.json", dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);

	memset(&s, 0, sizeof(s));
	assert_int_equal(journal_each(dir, collect, &s), 2);
	assert_string_equal(state_of(&s, "web-1"), "paused");
	assert_string_equal(state_of(&s, "db"), "building");

	assert_int_equal(journal_del(dir, "db"), 0);
	assert_int_equal(journal_del(dir, "db"), 0);	/* absent: fine */
	memset(&s, 0, sizeof(s));
	assert_int_equal(journal_each(dir, collect, &s), 1);
	assert_null(state_of(&s, "db"));
	rm_rf(root);
}

static void
test_leftovers(void **state)
{
	char root[] = "/tmp/test_journal.XXXXXX", path[PATH_MAX];
	struct seen s;

	(void)state;
	assert_non_null(mkdtemp(root));
	/* A crash between write and rename leaves NAME.json.tmp. */
	write_file(root, "half.json.tmp", "{\"state\":\"go");
	/* A record that is not a JSON object is reported as NULL. */
	write_file(root, "torn.json", "{\"state\":");
	write_file(root, "list.json", "[1,2]");
	/* Other files are not records. */
	write_file(root, "notes.txt", "x");
	write_file(root, ".hidden.json", "{}");
	memset(&s, 0, sizeof(s));
	assert_int_equal(journal_each(root, collect, &s), 2);
	assert_string_equal(state_of(&s, "torn"), "(unreadable)");
	assert_string_equal(state_of(&s, "list"), "(unreadable)");
	snprintf(path, sizeof(path), "%s/half.json.tmp", root);
	assert_int_equal(access(path, F_OK), -1);
	snprintf(path, sizeof(path), "%s/notes.txt", root);
	assert_int_equal(access(path, F_OK), 0);
	rm_rf(root);
}

static void
test_bad_names(void **state)
{
	char root[] = "/tmp/test_journal.XXXXXX", path[PATH_MAX];
	struct json_object *o = json_object_new_object();
	char longname[5000];

	(void)state;
	assert_non_null(mkdtemp(root));
	assert_int_equal(journal_put(root, "../escape", o), -EINVAL);
	assert_int_equal(journal_put(root, "a/b", o), -EINVAL);
	assert_int_equal(journal_put(root, "", o), -EINVAL);
	assert_int_equal(journal_put(root, ".x", o), -EINVAL);
	assert_int_equal(journal_del(root, "../escape"), -EINVAL);
	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_int_equal(journal_put(root, longname, o), -ENAMETOOLONG);
	/* A directory that cannot be written: an error, nothing left. */
	snprintf(path, sizeof(path), "%s/missing", root);
	assert_int_equal(journal_put(path, "x", o), -ENOENT);
	json_object_put(o);
	{
		/* How the recovery code reads a record's fields: a field of
		 * another type, a missing one and an unreadable record (NULL)
		 * are all "not a string". */
		const char *v;

		o = json_object_new_object();
		json_object_object_add(o, "n", json_object_new_int(3));
		assert_int_equal(ctl_get_str(o, "n", &v), -EINVAL);
		assert_int_equal(ctl_get_str(o, "absent", &v), 0);
		assert_int_equal(ctl_get_str(NULL, "n", &v), 0);
		json_object_put(o);
	}
	rm_rf(root);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_leftovers),
		cmocka_unit_test(test_bad_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
