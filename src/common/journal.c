/*
 * journal.c - atomic JSON records of in-flight migrations (journal.h).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "journal.h"

#define SUFFIX	".json"
#define TMP	".json.tmp"

int
journal_init(const char *dir)
{
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int
journal_path(char *buf, size_t len, const char *dir, const char *name,
    const char *suffix)
{
	if (strchr(name, '/') != NULL || name[0] == '\0' || name[0] == '.')
		return -EINVAL;
	if ((size_t)snprintf(buf, len, "%s/%s%s", dir, name, suffix) >= len)
		return -ENAMETOOLONG;
	return 0;
}

int
journal_put(const char *dir, const char *name, struct json_object *o)
{
	char path[4096], tmp[4096];
	const char *text;
	size_t len;
	int fd, rc;

	if ((rc = journal_path(path, sizeof(path), dir, name, SUFFIX)) != 0 ||
	    (rc = journal_path(tmp, sizeof(tmp), dir, name, TMP)) != 0)
		return rc;
	text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	len = strlen(text);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600))
	    == -1)
		return -errno;
	rc = 0;
	if (write(fd, text, len) != (ssize_t)len)
		rc = errno ? -errno : -EIO;
	else if (fsync(fd) != 0)
		rc = -errno;
	close(fd);
	if (rc == 0 && rename(tmp, path) != 0)
		rc = -errno;
	if (rc != 0)
		unlink(tmp);
	return rc;
}

int
journal_del(const char *dir, const char *name)
{
	char path[4096];
	int rc;

	if ((rc = journal_path(path, sizeof(path), dir, name, SUFFIX)) != 0)
		return rc;
	if (unlink(path) != 0 && errno != ENOENT)
		return -errno;
	return 0;
}

int
journal_each(const char *dir, void (*fn)(const char *name,
    struct json_object *o, void *arg), void *arg)
{
	char path[4096], name[256];
	struct json_object *o;
	struct dirent *de;
	size_t len;
	int n = 0;
	DIR *dp;

	if ((dp = opendir(dir)) == NULL)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(dp)) != NULL) {
		len = strlen(de->d_name);
		if (de->d_name[0] == '.')
			continue;
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir,
		    de->d_name) >= sizeof(path))
			continue;
		if (len > strlen(TMP) &&
		    strcmp(de->d_name + len - strlen(TMP), TMP) == 0) {
			unlink(path);
			continue;
		}
		if (len <= strlen(SUFFIX) || len - strlen(SUFFIX) >=
		    sizeof(name) ||
		    strcmp(de->d_name + len - strlen(SUFFIX), SUFFIX) != 0)
			continue;
		memcpy(name, de->d_name, len - strlen(SUFFIX));
		name[len - strlen(SUFFIX)] = '\0';
		o = json_object_from_file(path);
		if (o != NULL && !json_object_is_type(o, json_type_object)) {
			json_object_put(o);
			o = NULL;
		}
		fn(name, o, arg);
		json_object_put(o);
		n++;
	}
	closedir(dp);
	return n;
}
