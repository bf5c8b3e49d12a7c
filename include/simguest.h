/*
 * simguest.h - the simulated guest: what every page of a sim domain must
 * contain (profile.c) and the guest process that writes them, honours
 * pause and checks its own memory (guest.c).  See docs/SIM.md.
 *
 * Guest memory layout:
 *	pfn 0			header page (struct sg_header, then unique
 *				filler)
 *	pfn 1 .. ntable		version table: each page starts with a
 *				struct sg_table_head, then SG_TABLE_ENTRIES
 *				u32 entries; entry for pfn p lives in table
 *				page p / SG_TABLE_ENTRIES, slot p % ...
 *	pfn first .. pages-1	data pages ("first" = 1 + ntable)
 *
 * A table entry is 0 (the page holds its initial content) or the
 * version of the last write (SG_VER_MASK bits, never 0), with
 * SG_VER_ZERO set when that write zeroed the page.
 */
#ifndef SHAREMIG_SIMGUEST_H
#define SHAREMIG_SIMGUEST_H

#include <stdint.h>

#include "simdom.h"

#define SG_HEADER_MAGIC		0x5244484747534853ull	/* "SHSGGHDR" */
#define SG_TABLE_MAGIC		0x4c425447u		/* "GTBL" */
#define SG_STATE_MAGIC		0x4554415447534853ull	/* "SHSGSTAE" */
#define SG_STATE_VERSION	1u
#define SG_TABLE_ENTRIES	1020u
#define SG_VER_ZERO		0x80000000u
#define SG_VER_MASK		0x7fffffffu

struct sg_header {
	uint64_t	magic;
	uint64_t	uid;
	uint64_t	pages;
	uint64_t	seed;
	uint32_t	profile;
	uint32_t	ntable;
	uint64_t	share_ppb;	/* share * 1e9 */
};

struct sg_table_head {
	uint64_t	uid;
	uint32_t	index;
	uint32_t	magic;
};
_Static_assert(sizeof(struct sg_table_head) + 4 * SG_TABLE_ENTRIES ==
    HV_PAGE_SIZE, "table page");

/*
 * Workloads modelled on the seed report's realistic benchmarks.  They are
 * variants of the `writer` profile, selected by the top byte of the
 * config's seed (the profile list itself lives in simdom.c): seed =
 * (SG_WL_x << 56) | image.  A writer seed whose top byte is none of these
 * is the classic writer, unchanged.  See docs/SIM.md.
 */
#define SG_WL_SHIFT		56
#define SG_WL_NONE		0u	/* profile's own behaviour */
#define SG_WL_WEB		0x57u	/* 'W': httperf-like web server */
#define SG_WL_KV		0x4bu	/* 'K': memaslap-like key-value cache */
#define SG_WL_KBUILD		0x42u	/* 'B': kernel build */
/* kbuild: a cycle of SG_KB_PERIOD_MS, writing during the first
 * SG_KB_BURST_MS of it, idle (I/O-bound) for the rest. */
#define SG_KB_PERIOD_MS		2000u
#define SG_KB_BURST_MS		600u

/* Initial kinds of pages. */
enum sg_kind { SG_HEADER, SG_TABLE, SG_COMMON, SG_ZERO, SG_UNIQUE };

/* Where everything is; derived from config and page count only. */
struct sg_layout {
	struct sd_config cfg;
	uint64_t	pages;
	uint64_t	ntable;
	uint64_t	first;		/* first data pfn */
	uint64_t	ndata;		/* data pages */
	uint64_t	rot;		/* per-domain rotation of the data */
	uint64_t	ncommon;	/* data slots 0..ncommon-1: image */
	uint64_t	nzero;		/* next nzero slots: zero */
	uint64_t	wset;		/* writer: hot set = first wset pfns;
					   web: hot slots after ncommon */
	uint32_t	wl;		/* SG_WL_*: workload variant */
	uint32_t	burst_phase;	/* kbuild: this guest's cycle offset, ms */
};

/*
 * The guest's saved state: the "vCPU context" blob that the daemons
 * carry across a migration.  table_hash is the XOR over all non-zero
 * table entries e of pfn p of sg_entry_hash(p, e): the guest's own idea
 * of the version table, which the self-check compares with memory.
 */
struct sg_state {
	uint64_t	magic;
	uint32_t	version;
	uint32_t	size;
	uint64_t	uid;
	uint64_t	pages;
	uint64_t	rng;
	uint64_t	seq;		/* last version used */
	uint64_t	table_hash;
	uint64_t	writes;		/* over the guest's whole life */
	uint64_t	sum;		/* sg_state_sum() of the fields above */
};

struct sg_check {
	uint64_t	bad;		/* number of bad pages */
	uint64_t	first_bad;	/* first bad pfn (UINT64_MAX if none) */
};

/* profile.c */
int	sg_layout_init(struct sg_layout *l, const struct sd_config *cfg,
	    uint64_t pages);
enum sg_kind sg_initial_kind(const struct sg_layout *l, uint64_t pfn,
	    uint64_t *block);
void	sg_gen_common(void *page, uint64_t seed, uint64_t block);
void	sg_gen_unique(void *page, uint64_t uid, uint64_t pfn, uint32_t ver);
/* A private (unique) data page: sg_gen_unique's bytes, the first
 * cfg.compressible of the page replaced by text-like bytes. */
void	sg_gen_private(const struct sg_layout *l, void *page, uint64_t pfn,
	    uint32_t ver);
/* Expected content of pfn (header: the initial header; table pages:
 * with all entries 0; data pages: per the table entry). */
void	sg_expected(const struct sg_layout *l, uint64_t pfn, uint32_t entry,
	    void *page);
uint32_t *sg_entry(uint8_t *mem, uint64_t pfn);
uint64_t sg_entry_hash(uint64_t pfn, uint32_t entry);
uint64_t sg_rand(uint64_t *state);
/* Choose the next write: pfn, and whether it zeroes the page.  0, or
 * -ENOENT when the profile writes nothing. */
int	sg_pick_write(const struct sg_layout *l, uint64_t *rng,
	    uint64_t *pfn, int *zero);
/* Workload variant of a config: SG_WL_* (SG_WL_NONE for idle, micro
 * and classic writer). */
uint32_t sg_workload(const struct sd_config *cfg);
/* Choose the next write with the guest's whole state (kbuild walks a
 * cursor derived from st->writes); for every other profile exactly
 * sg_pick_write(l, &st->rng, ...). */
int	sg_next_write(const struct sg_layout *l, struct sg_state *st,
	    uint64_t *pfn, int *zero);
/* Write-rate multiplier at monotonic time t_ms (kbuild: bursts and
 * pauses, average 1); 1 for every other profile.  *peak: the largest
 * value it can take. */
double	sg_rate_factor(const struct sg_layout *l, uint64_t t_ms, double *peak);
/* Fill a new domain's memory with its initial content and store the
 * initial guest state as its context. */
int	sg_init_memory(struct simdom *sd);

/* guest.c */
void	sg_state_init(struct sg_state *st, const struct sg_layout *l);
int	sg_state_load(struct simdom *sd, struct sg_state *st);
void	sg_state_save(struct simdom *sd, struct sg_state *st);
/* Compare every page with what st says it must hold. */
void	sg_self_check(struct simdom *sd, const struct sg_layout *l,
	    const struct sg_state *st, struct sg_check *res);
/* One page write (content, table entry, dirty bits, counters). */
void	sg_write(struct simdom *sd, const struct sg_layout *l,
	    struct sg_state *st, uint64_t pfn, int zero);
/* The guest process: returns the exit status. */
int	sg_run(const char *dir, const char *name);

#endif
