/*
 * simdom.h - one domain of the simulated host.
 *
 * A simulated host is a state directory DIR.  Each domain is one file,
 * DIR/NAME.dom (DIR/NAME.dom.incoming while a migration builds it), laid
 * out as
 *
 *	offset 0		struct sd_ctrl, padded to SD_CTRL_SIZE
 *	SD_CTRL_SIZE		dirty bitmap, bm_words(pages) u64, padded to 4 KiB
 *	mem_off			guest memory, pages * 4096 bytes
 *
 * The file is mapped MAP_SHARED by every process that uses the domain:
 * the daemons (through hv_sim), the simhv tool and the guest process.
 * Fields written after creation are only accessed with __atomic builtins
 * and are naturally aligned.  See docs/SIM.md.
 *
 * Other files in DIR: "domid" (the next domid, updated under flock),
 * NAME.log (the guest process's stderr).
 *
 * Locks (OFD byte-range locks on the domain file, released by the kernel
 * when the holder dies):
 *	byte 0	held by the hv handle that is building an incoming domain,
 *		so a crashed migration's leftover .incoming file is recognised
 *		as stale;
 *	byte 1	held by the running guest process: "a guest is alive" is
 *		exactly "byte 1 is locked".
 *
 * Library code: no logging; functions return 0 or a negative errno.
 */
#ifndef SHAREMIG_SIMDOM_H
#define SHAREMIG_SIMDOM_H

#include <stddef.h>
#include <stdint.h>

#include "hv.h"

#define SD_MAGIC		0x314d4f44564d4853ull	/* "SHMVDOM1" LE */
#define SD_LAYOUT_VERSION	2u	/* 2: sd_config.compressible */
#define SD_CTRL_SIZE		4096u
#define SD_CONTEXT_MAX		2048u
#define SD_CONFIG_TEXT_MAX	256u
#define SD_PAGES_MIN		16u
#define SD_PAGES_MAX		(1ull << 26)		/* 256 GiB */
#define SD_SUFFIX		".dom"
#define SD_INCOMING_SUFFIX	".dom.incoming"

/* Guest profiles (struct sd_config.profile). */
#define SD_PROFILE_IDLE		1u
#define SD_PROFILE_MICRO	2u
#define SD_PROFILE_WRITER	3u

/* struct sd_ctrl.flags */
#define SD_F_INCOMING		0x1u
#define SD_F_DYING		0x2u

/* struct sd_ctrl.guest_state: written by the guest (and by the spawner
 * before it forks). */
#define SD_GUEST_NONE		0u	/* no guest, or it exited */
#define SD_GUEST_SPAWNING	1u	/* spawner forked, guest not yet up */
#define SD_GUEST_STARTING	2u	/* guest up, restoring and checking */
#define SD_GUEST_RUNNING	3u	/* self-check done, writing */
#define SD_GUEST_FAILED		4u	/* guest could not start (bad state) */

/* struct sd_ctrl.check_result: the guest's self-check at its start. */
#define SD_CHECK_NONE		0u
#define SD_CHECK_OK		1u
#define SD_CHECK_FAILED		2u

/* Everything needed to continue the guest on another host.  Its text form
 * is the hv config blob: "profile=micro share=0.5 rate=1000 seed=42
 * uid=0x0123456789abcdef", plus " compressible=F" when F is not 0. */
struct sd_config {
	uint32_t	profile;	/* SD_PROFILE_* */
	uint32_t	rate;		/* page writes per second */
	double		share;		/* micro: fraction of common pages */
	uint64_t	seed;		/* common-image seed */
	uint64_t	uid;		/* domain-unique content id, never 0 */
	double		compressible;	/* fraction of each private page that
					 * is text-like (0: all random) */
};

struct sd_ctrl {
	/* Read-only after creation. */
	uint64_t	magic;
	uint32_t	version;
	uint32_t	ctrl_size;
	uint64_t	pages;
	uint64_t	bitmap_off;
	uint64_t	bitmap_len;
	uint64_t	mem_off;
	uint32_t	domid;
	uint32_t	vcpus;
	uint8_t		uuid[16];
	char		name[HV_NAME_MAX];
	struct sd_config cfg;

	/* Atomic; written by the processes named. */
	uint32_t	flags;		/* SD_F_*: creator, commit, destroy */
	int32_t		guest_pid;	/* guest; 0 after a clean exit */
	uint32_t	guest_state;	/* SD_GUEST_*: guest, spawner */
	uint32_t	pause_req;	/* pause()/unpause() */
	uint32_t	pause_gen;	/* pause(): bumped on each request */
	uint32_t	paused_ack;	/* guest: the pause_gen it stopped for */
	uint32_t	logdirty;	/* logdirty_enable/disable */
	uint32_t	check_result;	/* guest: SD_CHECK_* */
	uint64_t	check_bad_pfn;	/* guest: first bad pfn */
	uint64_t	check_bad_count; /* guest: number of bad pages */
	uint64_t	writes;		/* guest: page writes, ever increasing */

	/* The guest's saved state ("vCPU context"): written by the guest
	 * before it acknowledges a pause and when it exits, by create and
	 * by context_set while no guest runs; ctx_len is stored last
	 * (release) and read first (acquire). */
	uint32_t	ctx_len;
	uint32_t	throttle_pct;	/* throttle(): share of the guest's
					 * time taken away, 0..99 (was a
					 * reserved zero: old files read 0) */
	uint8_t		context[SD_CONTEXT_MAX];
};
_Static_assert(sizeof(struct sd_ctrl) <= SD_CTRL_SIZE, "sd_ctrl too big");

/* An open domain file.  Owned by one thread. */
struct simdom {
	int		 fd;
	int		 incoming;	/* named NAME.dom.incoming */
	int		 mem_writable;
	char		*dir;
	char		 name[HV_NAME_MAX];
	struct sd_ctrl	*ctrl;		/* control block and bitmap: RW */
	uint64_t	*bitmap;
	uint8_t		*mem;		/* guest memory */
	size_t		 head_len;	/* mapped length of ctrl + bitmap */
	size_t		 mem_len;
};

/* sd_open() flags */
#define SD_OPEN_MEM_RW		0x1u	/* map guest memory writable */

/* Layout of a domain of that many pages. */
void	sd_layout(uint64_t pages, uint64_t *bitmap_off, uint64_t *bitmap_len,
	    uint64_t *mem_off);
/* 1 if name is a valid domain name: [A-Za-z0-9_.-], 1..63 chars, not
 * starting with '.' and not all digits. */
int	sd_name_valid(const char *name);

/* Config text <-> struct.  parse: -EINVAL on anything malformed, unknown
 * or out of range (len bytes, NUL not required).  format: returns the
 * length written (excluding NUL) or -ENOSPC. */
int	sd_config_parse(const char *text, size_t len, struct sd_config *out);
int	sd_config_format(const struct sd_config *cfg, char *buf, size_t size);
const char *sd_profile_name(uint32_t profile);

/*
 * Remove every NAME.dom.incoming in dir whose builder is gone (its lock
 * is free), and stale creation temporaries.  *names lists the domains
 * removed (malloc'd; free with sd_list_free).  0 or the first error.
 */
int	sd_reap_incoming(const char *dir, char ***names, size_t *n);
/*
 * Create DIR/NAME.dom.incoming: zeroed memory (a heap chunk when
 * one fits, see sd_heap_add), a fresh domid, paused
 * (pause_req = 1), no guest, SD_F_INCOMING, memory mapped writable.
 * The returned handle holds the incoming lock until sd_commit() or
 * sd_close().  -EEXIST if NAME.dom exists or another live creator is
 * building NAME.dom.incoming; a stale .incoming file is replaced.
 */
int	sd_create(const char *dir, const char *name, uint64_t pages,
	    uint32_t vcpus, const uint8_t uuid[16], const struct sd_config *cfg,
	    struct simdom **out);
/* Rename NAME.dom.incoming to NAME.dom (-EEXIST if that exists), clear
 * SD_F_INCOMING, drop the lock, map memory read-only again. */
int	sd_commit(struct simdom *sd);
/* Open DIR/NAME.dom (never an incoming one).  -ENOENT, -EINVAL (not a
 * valid domain file). */
int	sd_open(const char *dir, const char *name, unsigned flags,
	    struct simdom **out);
/* Open by name, else by decimal domid. */
int	sd_open_any(const char *dir, const char *name_or_id, unsigned flags,
	    struct simdom **out);
void	sd_close(struct simdom *sd);	/* accepts NULL */
/* Kill the guest (SIGKILL, waits until gone), unlink the file and close
 * the handle (always, even on error). */
int	sd_destroy(struct simdom *sd);

/*
 * The host's heap, DIR/heap (docs/SIM.md): memory allocated ahead of any
 * domain, which sd_create takes before it grows a file of its own.
 * add: one chunk big enough for a domain of that many pages (-EINVAL out
 * of range, -ENOSPC).  stat: chunks and bytes held.  release: remove them
 * all and the directory.
 */
int	sd_heap_add(const char *dir, uint64_t pages);
int	sd_heap_stat(const char *dir, uint64_t *chunks, uint64_t *bytes);
int	sd_heap_release(const char *dir);

/* Names of the normal (not incoming) domains of DIR, sorted, malloc'd
 * array of malloc'd strings. */
int	sd_list(const char *dir, char ***names, size_t *n);
void	sd_list_free(char **names, size_t n);
/* Read a domain's control block without mapping it. */
int	sd_read_ctrl(const char *dir, const char *name, struct sd_ctrl *out);

/* Domid allocation: DIR/domid under flock; unique per host, never
 * reused.  Exposed for tests. */
int	sd_alloc_domid(const char *dir, uint32_t *out);

/* Dirty tracking.  See the ordering argument in simdom.c. */
void	sd_dirty_mark(struct simdom *sd, uint64_t pfn);	/* guest */
void	sd_logdirty_enable(struct simdom *sd);
void	sd_logdirty_disable(struct simdom *sd);
int	sd_dirty_fetch(struct simdom *sd, uint64_t *out);	/* -EINVAL if off */

/* Throttle: the guest process writes (100 - pct)% of its rate.  set:
 * -EINVAL above 99. */
int	sd_throttle_set(struct simdom *sd, unsigned pct);
unsigned sd_throttle_get(struct simdom *sd);

/* Guest process control. */
int	sd_guest_alive(struct simdom *sd);		/* 1 / 0 */
int	sd_paused(struct simdom *sd);	/* 1 if no guest can write now */
/* Request a pause; returns once the guest acknowledged (or at once when
 * no guest is alive).  -ETIMEDOUT after timeout_ms. */
int	sd_pause(struct simdom *sd, int timeout_ms);
/* Clear the pause request; if no guest is alive spawn one (simhv run) and
 * wait until it is running (-ETIMEDOUT after timeout_ms, -EIO if it
 * failed to start).  simhv: the binary, NULL = search (sd_find_simhv). */
int	sd_unpause(struct simdom *sd, const char *simhv, int timeout_ms);
/* SIGKILL the guest and wait until it is gone (5 s: -ETIMEDOUT). */
int	sd_kill_guest(struct simdom *sd);
/* Try to take the guest lock (byte 1).  -EBUSY if a guest holds it. */
int	sd_guest_lock(struct simdom *sd);

/* The simhv binary: explicit, $SHAREMIG_SIMHV, next to /proc/self/exe
 * (../simhv/simhv, ./simhv), then $PATH.  -ENOENT if none. */
int	sd_find_simhv(const char *explicit_path, char *buf, size_t size);

#endif
