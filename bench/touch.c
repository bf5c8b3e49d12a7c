/*
 * touch.c - what a write to guest memory costs the daemon that writes it,
 * as the sim lays guest memory out: a file in DIR, grown with ftruncate
 * (all holes, as sd_create makes an incoming domain) and mapped shared.
 *
 *	first	 memcpy of one 4 KiB page into each page never written, so
 *		 the kernel allocates and clears it in the fault (on a VM,
 *		 its host may have to back it first)
 *	rewrite	 the same copies again, into pages that exist
 *
 * The destination daemon pays "first" for every page a migration writes
 * into the new domain, DATA or REF fill alike; Xen's dom0 does not (the
 * hypervisor builds the domain's memory).  bench/run runs it on /dev/shm
 * (4 KiB pages) and on its huge=always tmpfs (--guest-memory huge).
 *
 *	touch DIR [MIB]   prints one JSON object (microseconds per page).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE	4096u

static double
now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Copy src into every page of [p, p + len); seconds taken. */
static double
write_pages(unsigned char *p, size_t len, const unsigned char *src)
{
	double t0 = now();
	size_t off;

	for (off = 0; off < len; off += PAGE)
		memcpy(p + off, src, PAGE);
	return now() - t0;
}

int
main(int argc, char **argv)
{
	static unsigned char src[PAGE];
	size_t mib = argc > 2 ? strtoul(argv[2], NULL, 10) : 512, len, pages;
	double first, again;
	unsigned char *p;
	char *path;
	int fd;

	if (argc < 2 || mib == 0) {
		fprintf(stderr, "usage: touch DIR [MIB]\n");
		return 2;
	}
	len = mib << 20;
	pages = len / PAGE;
	if (asprintf(&path, "%s/touch.XXXXXX", argv[1]) < 0)
		return 1;
	if ((fd = mkstemp(path)) < 0) {
		fprintf(stderr, "touch: %s: %s\n", path, strerror(errno));
		return 1;
	}
	unlink(path);
	if (ftruncate(fd, (off_t)len) != 0 ||
	    (p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
	    0)) == MAP_FAILED) {
		fprintf(stderr, "touch: %s\n", strerror(errno));
		return 1;
	}
	memset(src, 0x5a, sizeof(src));
	first = write_pages(p, len, src);
	again = write_pages(p, len, src);
	printf("{\"dir\": \"%s\", \"mib\": %zu, \"first_us\": %.3f, "
	    "\"rewrite_us\": %.3f}\n", argv[1], mib, first * 1e6 / pages,
	    again * 1e6 / pages);
	munmap(p, len);
	close(fd);
	free(path);
	return 0;
}
