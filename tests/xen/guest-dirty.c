/*
 * guest-dirty.c - the lab's workload inside a PVH domU (static, /dirty in
 * the domU initramfs).
 *
 * It fills DIRTY_PAGES pages with a pattern, each page starting with a
 * header that dom0 can find by scanning guest memory:
 *
 *   u8[8] "SMGDIRTY", u64 page index, u64 round, u64 check
 *
 * then rewrites the round field of every page, round after round, without
 * any system call (so it keeps running even where the kernel gets no timer
 * interrupt).  A child forked first prints "sharemig-guest: round N" on the
 * console once a second: the counter the lab watches.  check is
 * index ^ round ^ CHECK_SALT, so a torn or foreign page is detectable.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define DIRTY_PAGES	2048		/* 8 MiB */
#define PAGE		4096
#define CHECK_SALT	0x5eed5eed5eed5eedull

struct hdr {
	char		magic[8];
	uint64_t	index;
	volatile uint64_t round;
	volatile uint64_t check;
};

int
main(void)
{
	volatile uint64_t *shared;
	uint8_t *mem;

	/*
	 * The printer is forked before the marked pages exist: a fork after
	 * would leave stale copy-on-write twins of them in the child.
	 */
	shared = mmap(NULL, PAGE, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shared == MAP_FAILED) {
		perror("sharemig-guest: mmap");
		return 1;
	}
	if (fork() == 0) {
		for (;;) {
			printf("sharemig-guest: round %llu\n",
			    (unsigned long long)*shared);
			fflush(stdout);
			sleep(1);
		}
	}
	mem = mmap(NULL, (size_t)DIRTY_PAGES * PAGE, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		perror("sharemig-guest: mmap");
		return 1;
	}
	/* Keep each marked page at one pfn: no THP collapse, no swap. */
	madvise(mem, (size_t)DIRTY_PAGES * PAGE, MADV_NOHUGEPAGE);
	mlock(mem, (size_t)DIRTY_PAGES * PAGE);
	for (uint64_t i = 0; i < DIRTY_PAGES; i++) {
		uint8_t *p = mem + i * PAGE;
		struct hdr *h = (struct hdr *)p;

		for (size_t b = sizeof(*h); b < PAGE; b++)
			p[b] = (uint8_t)(i * 31 + b);
		memcpy(h->magic, "SMGDIRTY", 8);
		h->index = i;
		h->round = 0;
		h->check = i ^ CHECK_SALT;
	}
	for (uint64_t r = 1;; r++) {
		for (uint64_t i = 0; i < DIRTY_PAGES; i++) {
			struct hdr *h = (struct hdr *)(mem + i * PAGE);

			h->round = r;
			h->check = i ^ r ^ CHECK_SALT;
		}
		*shared = r;
	}
}
