/*
 * hv.h - hypervisor operations.
 *
 * Every access sharemig makes to a hypervisor goes through one const
 * struct hv_ops.  There is one instance per backend (hv_sim_ops in
 * hv_sim.c, hv_xen_ops in hv_xen.c); nothing outside those files knows
 * which backend is in use.  The model is Xen's struct xc_sr_save_ops.
 *
 * Conventions for every member:
 *  - return 0 on success or a negative errno; out-parameters are written
 *    only on success;
 *  - buffers returned through a "**out" parameter are malloc'd and owned
 *    by the caller (free());
 *  - an hv instance and its hv_dom handles may be used by one thread at a
 *    time, except where a member says otherwise.  A daemon opens one
 *    instance for its event-loop thread and another for its scanner
 *    thread.
 */
#ifndef SHAREMIG_HV_H
#define SHAREMIG_HV_H

#include <stddef.h>
#include <stdint.h>

#define HV_PAGE_SHIFT	12
#define HV_PAGE_SIZE	4096u
#define HV_NAME_MAX	64	/* including the terminating NUL */
#define HV_CONTEXT_MAX	(1u << 20)	/* largest context blob */
#define HV_CONFIG_MAX	(64u << 10)	/* largest backend config blob */

/* Flags of struct hv_dom_info. */
#define HV_DOM_RUNNING	0x1u	/* a vCPU/guest process is running it */
#define HV_DOM_PAUSED	0x2u	/* paused (by a pause op) */
#define HV_DOM_INCOMING	0x4u	/* being built by a migration; not usable */
#define HV_DOM_DYING	0x8u
/*
 * Reported by dom_info() on the handle create() returned, while the
 * domain is still incoming: every page of it read as zero when create()
 * returned, so a page nobody has written through map() since still
 * does, and writing zeros to it is redundant.  sim: the domain is a
 * sparse file (a page never written is a hole).  xen: never (libxl
 * builds firmware and tables into the new domain, and a pfn may be a
 * hole that must be populated).
 */
#define HV_DOM_ZEROED	0x10u

struct hv_dom_info {
	uint32_t	domid;
	uint32_t	vcpus;
	uint32_t	flags;			/* HV_DOM_* */
	uint32_t	reserved;
	uint64_t	pages;			/* pfn space: valid pfns are < pages */
	uint8_t		uuid[16];
	char		name[HV_NAME_MAX];	/* NUL-terminated */
};

/* Parameters of a backend instance; read during open() only. */
struct hv_params {
	const char	*state_dir;	/* sim: the simulated host's directory */
	const char	*simhv_path;	/* sim: the simhv binary to spawn guests
					 * with; NULL = search next to the
					 * running executable, then $PATH */
};

struct hv;		/* a backend instance (opaque) */
struct hv_dom;		/* an open domain (opaque) */
struct hv_map;		/* a live mapping of a batch of pages (opaque) */

struct hv_ops {
	const char *name;	/* "sim", "xen" */

	/*
	 * Open a backend instance.  -ENOENT/-EACCES/... when the hypervisor
	 * (or the sim state directory) is not usable.
	 */
	int	(*open)(const struct hv_params *p, struct hv **out);
	/* Close an instance; accepts NULL.  All its domains must be closed. */
	void	(*close)(struct hv *hv);

	/*
	 * List the guest domains of the host (never Domain-0, never
	 * HV_DOM_INCOMING ones).  *out is a malloc'd array of *n entries.
	 */
	int	(*list)(struct hv *hv, struct hv_dom_info **out, size_t *n);

	/*
	 * Open a domain by name, or by decimal domid.  -ENOENT if there is
	 * no such domain.  -EOPNOTSUPP if it is of a kind the backend cannot
	 * migrate (Xen PV without shadow paging), with nothing opened.
	 */
	int	(*dom_open)(struct hv *hv, const char *name, struct hv_dom **out);
	/* Close a handle (not the domain); accepts NULL.  Unmaps nothing:
	 * every hv_map must have been unmapped first. */
	void	(*dom_close)(struct hv_dom *d);
	/* Current facts about an open domain. */
	int	(*dom_info)(struct hv_dom *d, struct hv_dom_info *out);

	/*
	 * Map n pages.  pages[i] receives the address of pfns[i], or NULL
	 * when that pfn is a hole (not populated: normal for Xen, never for
	 * sim).  -EINVAL if any pfn >= pages.  *out must be given to unmap()
	 * exactly once, by the same thread, before the domain is closed.
	 * Writable mappings are only allowed on an HV_DOM_INCOMING domain
	 * (-EPERM otherwise).  n may be at most HV_MAP_BATCH_MAX.
	 */
	int	(*map)(struct hv_dom *d, const uint64_t *pfns, size_t n,
		    int writable, void **pages, struct hv_map **out);
	/* Release a mapping; accepts NULL. */
	void	(*unmap)(struct hv_dom *d, struct hv_map *m);

	/* Start/stop log-dirty mode.  Enabling clears the dirty bitmap. */
	int	(*logdirty_enable)(struct hv_dom *d);
	int	(*logdirty_disable)(struct hv_dom *d);
	/*
	 * Read and clear the dirty bitmap: bit p of bitmap (64-bit words,
	 * little-endian bit order, dom_info.pages bits) is set when pfn p
	 * was written since the previous call (or since enable).  final = 1
	 * on the last read while paused.  -EINVAL if log-dirty is off.
	 */
	int	(*dirty_fetch)(struct hv_dom *d, uint64_t *bitmap, int final);

	/* Pause / unpause.  Pause returns once no vCPU (sim: guest process)
	 * can write memory any more.  Unpausing a domain that has no
	 * running guest starts it (sim: spawns the guest process). */
	int	(*pause)(struct hv_dom *d);
	int	(*unpause)(struct hv_dom *d);

	/*
	 * Throttle the domain's vCPUs (auto-converge): take percent (1..99)
	 * of the CPU time they may use now away from them, or with percent
	 * 0 give them back what they had.  *saved is the backend's record
	 * of the domain's own setting, opaque to the caller: 0 before the
	 * first throttle; a call with percent > 0 fills it when it is 0 and
	 * uses it otherwise (steps are taken from the domain's own
	 * setting, not compounded); percent 0 restores from it and leaves
	 * it as it was.  A caller that must undo a throttle after a crash
	 * keeps *saved in stable storage and later calls throttle(d, 0,
	 * &saved) on a fresh handle.  -EINVAL for percent > 99;
	 * -EOPNOTSUPP when the domain cannot be throttled (xen: its
	 * scheduler is neither credit nor credit2), with nothing changed.
	 * sim: the guest process honours it at once (docs/SIM.md); xen: the
	 * scheduler's cap (docs/XEN.md).
	 */
	int	(*throttle)(struct hv_dom *d, unsigned percent, uint64_t *saved);

	/* The vCPU and platform context of a paused domain, as an opaque
	 * blob of at most HV_CONTEXT_MAX bytes, and its restore. */
	int	(*context_get)(struct hv_dom *d, void **buf, size_t *len);
	int	(*context_set)(struct hv_dom *d, const void *buf, size_t len);

	/* The backend configuration needed to build the domain elsewhere
	 * (sim: the guest profile; xen: the toolstack's domain config), at
	 * most HV_CONFIG_MAX bytes. */
	int	(*config_get)(struct hv_dom *d, void **buf, size_t *len);

	/*
	 * Create an empty, paused domain of the given shape (name, uuid,
	 * pages, vcpus) and config, flagged HV_DOM_INCOMING: invisible to
	 * list(), its memory writable through map().  -EEXIST if a domain of
	 * that name exists.
	 */
	int	(*create)(struct hv *hv, const struct hv_dom_info *shape,
		    const void *config, size_t config_len, struct hv_dom **out);
	/* Turn an HV_DOM_INCOMING domain into a normal (still paused) one. */
	int	(*commit)(struct hv_dom *d);
	/*
	 * Destroy the domain (stop its guest, free its memory) and close the
	 * handle, which is invalid afterwards even on error.
	 */
	int	(*destroy)(struct hv_dom *d);

	/*
	 * Destroy every HV_DOM_INCOMING domain that nobody is building any
	 * more (left by a daemon that died before GO).  Called once by the
	 * destination daemon at start-up, before it accepts migrations.
	 * *names is a malloc'd array of *n malloc'd names of what was
	 * destroyed (caller frees).  A domain that cannot be destroyed is
	 * skipped; the first such error is returned after the others were
	 * tried.
	 */
	int	(*reap_incoming)(struct hv *hv, char ***names, size_t *n);

	/*
	 * Of the n pfns in cand (ascending, mappable), those whose content
	 * the guest's dirty log cannot vouch for, into out (at most max);
	 * returns how many (0 when none, or when they cannot be read).  xen:
	 * the xenstore and console ring pages, which dom0's xenstored and
	 * xenconsoled write through mappings that log-dirty does not see,
	 * and pages Xen owns that the guest placed in its physmap (shared
	 * info, grant frames; typed XTAB), which Xen writes itself.  Xen's
	 * own restore clears the former and its save skips the latter
	 * (docs/XEN.md); sim: none.  --verify leaves them out of its digest
	 * (hv_digest).
	 */
	size_t	(*outside_pfns)(struct hv_dom *d, const uint64_t *cand,
		    size_t n, uint64_t *out, size_t max);
};

/* At most this many pfns are left out of a --verify digest (the rest
 * are hashed); the same bound as the END record's list. */
#define HV_OUTSIDE_MAX		16

#define HV_MAP_BATCH_MAX	1024

extern const struct hv_ops hv_sim_ops;
#ifdef HAVE_XEN
extern const struct hv_ops hv_xen_ops;
#endif

/* Find a backend by name; NULL if unknown or not built. */
const struct hv_ops *hv_find(const char *name);

/*
 * The whole-memory digest of --verify: SHA-256 over the pages of d whose
 * bit in set (pages bits) equals want, in pfn order, holes skipped; both
 * ends hash the pfns the stream carried (docs/PROTOCOL.md, END).  Pages
 * the dirty log cannot vouch for are left out: with skip == NULL the
 * backend names them (ops->outside_pfns, the source), otherwise the nskip
 * pfns in skip (what the source named, at the destination); out->outside
 * lists what was left out.  So that a mismatch can be traced to pages,
 * the hashed pages are also cut into segments of HV_DIGEST_SEG pages,
 * each with its own SHA-256, reported through seg (may be NULL) in pfn
 * order; two ends that log their segments can be compared line by line.
 * 0 or -errno; the caller's thread must own d.
 */
#define HV_DIGEST_SEG		1024

struct hv_digest {
	uint8_t		sha256[32];
	uint64_t	pages;			/* hashed */
	uint64_t	outside[HV_OUTSIDE_MAX]; /* left out, ascending */
	size_t		noutside;
};

struct hv_digest_seg {
	uint64_t	index;			/* 0, 1, ... */
	uint64_t	first, last;		/* pfns hashed first and last */
	uint64_t	pages;			/* hashed, <= HV_DIGEST_SEG */
	uint8_t		sha256[32];
};

typedef void	hv_digest_seg_fn(void *arg, const struct hv_digest_seg *s);

int	hv_digest(const struct hv_ops *ops, struct hv_dom *d,
	    const uint64_t *set, uint64_t pages, int want,
	    const uint64_t *skip, size_t nskip, struct hv_digest *out,
	    hv_digest_seg_fn *seg, void *arg);
/* A hv_digest_seg_fn that logs each segment at debug level; arg is the
 * message's prefix (a C string, "migration 3: guest"). */
void	hv_digest_log_seg(void *arg, const struct hv_digest_seg *s);
/* Log at info level what d's digest hashed and left out. */
void	hv_digest_log(const char *prefix, const struct hv_digest *dg);

#endif
