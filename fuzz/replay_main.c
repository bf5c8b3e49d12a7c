/*
 * replay_main.c - run a libFuzzer target without libFuzzer: feed every
 * file named on the command line, or every regular file of a directory
 * named there, to LLVMFuzzerTestOneInput() once.  Used by CI to replay
 * the seed corpus and past crashes under gcc.
 *
 * Exit status: 0 when every input ran (a finding aborts the process),
 * 1 when an input could not be read or nothing was run.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Read path whole and run it.  Returns 0 or -errno. */
static int
run_file(const char *path)
{
	FILE	*f;
	uint8_t	*data = NULL;
	long	 size;
	int	 ret = 0;

	if ((f = fopen(path, "rb")) == NULL)
		return -errno;
	if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0) {
		ret = -EIO;
		goto out;
	}
	/* One spare byte so that an empty input has a valid pointer. */
	if ((data = malloc((size_t)size + 1)) == NULL) {
		ret = -ENOMEM;
		goto out;
	}
	if (fread(data, 1, (size_t)size, f) != (size_t)size) {
		ret = -EIO;
		goto out;
	}
	LLVMFuzzerTestOneInput(data, (size_t)size);
out:
	free(data);
	fclose(f);
	return ret;
}

/* Run every regular file of dir.  Returns the number run or -errno. */
static int
run_dir(const char *dir)
{
	DIR		*d;
	struct dirent	*de;
	struct stat	 st;
	char		 path[4096];
	int		 n = 0, ret;

	if ((d = opendir(dir)) == NULL)
		return -errno;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >=
		    (int)sizeof(path))
			continue;
		if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
			continue;
		if ((ret = run_file(path)) < 0) {
			fprintf(stderr, "%s: %s\n", path, strerror(-ret));
			closedir(d);
			return ret;
		}
		n++;
	}
	closedir(d);
	return n;
}

int
main(int argc, char **argv)
{
	struct stat	st;
	int		i, ret, total = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
		return 1;
	}
	for (i = 1; i < argc; i++) {
		if (stat(argv[i], &st) != 0) {
			fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
			return 1;
		}
		if (S_ISDIR(st.st_mode)) {
			if ((ret = run_dir(argv[i])) < 0)
				return 1;
			total += ret;
		} else {
			if ((ret = run_file(argv[i])) < 0) {
				fprintf(stderr, "%s: %s\n", argv[i],
				    strerror(-ret));
				return 1;
			}
			total++;
		}
	}
	printf("replayed %d inputs\n", total);
	return total > 0 ? 0 : 1;
}
