/*
 * hv_xen.c - the Xen backend of struct hv_ops.
 *
 * Libraries (Debian's libxen-dev 4.17):
 *  - libxenctrl: domain list and facts, pause/unpause, log-dirty,
 *    HVM context and params, TSC info, populating pfns;
 *  - libxenforeignmemory: mapping guest pages into this process;
 *  - libxenstore: domain names (/local/domain/N/name), opened lazily;
 *  - libxenlight: the domain's toolstack configuration (config_get), and
 *    building, renaming and destroying domains (create/commit/destroy),
 *    opened lazily.
 * open() needs only the first two, so list/map/log-dirty work in a dom0
 * where only xenstored is missing.
 *
 * Guests: HVM and PVH with HAP only.  Log-dirty of a PV guest needs shadow
 * paging, which Debian builds Xen without, so dom_open() refuses PV guests
 * (and HVM ones without HAP) with -EOPNOTSUPP.
 *
 * Domains being built by a migration are named "<name>--incoming" (as
 * `xl migrate-receive` does) and list() skips them; commit() renames them.
 *
 * docs/XEN.md explains the choices (why create() drives libxl, what the
 * context blob holds, what the lab covers).  Library code: no logging,
 * except libxc/libxl's own messages on stderr when SHAREMIG_XEN_DEBUG is
 * set in the environment.
 */
#define LIBXL_API_VERSION 0x041300

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

#include <xenctrl.h>
#include <xenforeignmemory.h>
#include <xenstore.h>
#include <xentoollog.h>
#include <libxl.h>
#include <libxl_utils.h>
#include <xen/hvm/params.h>

#include "hv.h"

/*
 * Xen's dirty bitmap is an array of unsigned long, bit p of word p/BITS is
 * pfn p (LSB first); ours is the same with uint64_t words.  On x86_64
 * (LP64, little-endian), the only target Debian's Xen tools exist for,
 * the two layouts are byte-identical.
 */
_Static_assert(sizeof(unsigned long) == sizeof(uint64_t),
    "Xen's bitmap words must be 64-bit");
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
    "Xen's bitmap layout equals ours only on little-endian hosts");
_Static_assert(sizeof(xen_domain_handle_t) == 16, "uuid is 16 bytes");

#define INCOMING_SUFFIX	"--incoming"
#define LIST_CHUNK	256

/*
 * The decoded context blob (see hv_xen_ctx_encode() for the wire layout).
 * hvm points into the blob it was decoded from, or to the caller's buffer
 * when encoding.
 */
#define HV_XEN_CTX_MAGIC	"SMXHVMC1"
#define HV_XEN_CTX_VERSION	1
#define HV_XEN_CTX_HDR		48
#define HV_XEN_CTX_PARAM	16
#define HV_XEN_PARAMS_MAX	16

struct hv_xen_param {
	uint32_t	index;
	uint64_t	value;
};

struct hv_xen_ctx {
	uint32_t	tsc_mode;
	uint32_t	gtsc_khz;
	uint64_t	elapsed_nsec;
	uint32_t	incarnation;
	uint32_t	nparams;
	struct hv_xen_param params[HV_XEN_PARAMS_MAX];
	const uint8_t	*hvm;		/* Xen's HVM save records */
	uint32_t	hvm_len;
};

/*
 * Internal helpers with external linkage so that tests/test_hv_xen.c can
 * call them without a hypervisor.  Not part of the hv_ops contract.
 */
void	hv_xen_bitmap_import(uint64_t *dst, const unsigned long *src,
	    uint64_t nbits);
int	hv_xen_ctx_encode(const struct hv_xen_ctx *c, void **buf,
	    size_t *len);
int	hv_xen_ctx_decode(const void *buf, size_t len,
	    struct hv_xen_ctx *out);
int	hv_xen_param_allowed(uint32_t index);
int	hv_xen_parse_domid(const char *s, uint32_t *out);
int	hv_xen_is_incoming_name(const char *name);
uint32_t hv_xen_dom_flags(uint32_t dominf_flags);
int	hv_xen_shutdown_reason(uint32_t dominf_flags);
int	hv_xen_want_suspend(uint64_t callback_irq, uint64_t acpi_s_state);
int	hv_xen_suspend_acked(const char *state);
uint16_t hv_xen_throttle_cap(uint16_t own_cap, uint32_t vcpus,
	    unsigned percent);
uint64_t hv_xen_throttle_save(uint16_t own_cap);
int	hv_xen_throttle_saved_cap(uint64_t saved, uint16_t *cap);
int	hv_xen_sched_capped(uint32_t sched_id);

/*
 * The wait for a cooperative suspend (see xen_pause()), as a pure state
 * machine so that the unit tests can drive it with a fake clock.
 */
#define HV_XEN_SUSPEND_ACK_MS	10000	/* guest must clear control/shutdown */
#define HV_XEN_SUSPEND_DONE_MS	60000	/* then reach shutdown(suspend); libxl's */
#define HV_XEN_SETTLE_MS	250	/* rings unchanged this long: settled */
#define HV_XEN_SETTLE_MAX_MS	2000	/* give up waiting for them */

enum hv_xen_susp {
	HV_XEN_SUSP_WAIT = 0,	/* poll again */
	HV_XEN_SUSP_DONE,	/* shut down for suspend */
	HV_XEN_SUSP_CANCEL,	/* no acknowledgement in time: cancel, pause */
	HV_XEN_SUSP_TIMEDOUT,	/* acknowledged but never suspended */
	HV_XEN_SUSP_GONE,	/* shut down for another reason, or dying */
};

struct hv_xen_susp_wait {
	uint64_t	start_ms;	/* request written */
	uint64_t	ack_at_ms;	/* acknowledged (valid when acked) */
	uint32_t	ack_timeout_ms;
	uint32_t	done_timeout_ms;
	int		acked;
};

void	hv_xen_susp_init(struct hv_xen_susp_wait *w, uint64_t now_ms);
enum hv_xen_susp hv_xen_susp_next(struct hv_xen_susp_wait *w,
	    uint64_t now_ms, uint32_t dominf_flags, int node_acked);

/*
 * The HVM params a restore needs: the list Xen's own save code
 * (xg_sr_save_x86_hvm.c, write_hvm_params) sends.  Only these may be set
 * by context_set(); event channel params are the destination's own.
 */
static const uint32_t ctx_params[HV_XEN_PARAMS_MAX] = {
	HVM_PARAM_STORE_PFN,
	HVM_PARAM_IOREQ_PFN,
	HVM_PARAM_BUFIOREQ_PFN,
	HVM_PARAM_PAGING_RING_PFN,
	HVM_PARAM_MONITOR_RING_PFN,
	HVM_PARAM_SHARING_RING_PFN,
	HVM_PARAM_VM86_TSS_SIZED,
	HVM_PARAM_CONSOLE_PFN,
	HVM_PARAM_ACPI_IOPORTS_LOCATION,
	HVM_PARAM_VIRIDIAN,
	HVM_PARAM_IDENT_PT,
	HVM_PARAM_VM_GENERATION_ID_ADDR,
	HVM_PARAM_IOREQ_SERVER_PFN,
	HVM_PARAM_NR_IOREQ_SERVER_PAGES,
	HVM_PARAM_X87_FIP_WIDTH,
	HVM_PARAM_MCA_CAP,
};

/*
 * A backend instance.  Used by one thread at a time (hv.h); the lazily
 * opened xenstore and libxl handles belong to the instance.
 */
struct hv {
	xentoollog_logger	*lg;	/* shared by xc, fmem and libxl */
	xc_interface		*xch;
	xenforeignmemory_handle	*fmem;
	struct xs_handle	*xsh;	/* NULL until a name is needed */
	libxl_ctx		*ctx;	/* NULL until the toolstack is needed */
	unsigned int		 ndoms;	/* open hv_dom handles */
};

struct hv_dom {
	struct hv	*hv;
	uint32_t	 domid;
	uint8_t		 uuid[16];	/* guards against domid reuse */
	char		 name[HV_NAME_MAX];
	uint64_t	 pages;		/* pfn space, refreshed by dom_info */
	uint32_t	 vcpus;
	int		 incoming;	/* built by create(), not committed */
	int		 logdirty;	/* enabled by us */
	unsigned int	 nmaps;		/* live hv_map objects */
	unsigned int	 nring;		/* ring pfns of a suspended guest */
	uint64_t	 ring[2];	/* forced into the final dirty fetch */
};

struct hv_map {
	void	*addr;
	size_t	 n;
};

/* ---- pure helpers (unit-tested without Xen) ---- */

/*
 * Copy nbits of a Xen dirty bitmap into ours (bm_words(nbits) words), with
 * the bits past nbits in the last word cleared.
 */
void
hv_xen_bitmap_import(uint64_t *dst, const unsigned long *src, uint64_t nbits)
{
	size_t words = (size_t)((nbits + 63) / 64);

	if (words == 0)
		return;
	memcpy(dst, src, words * sizeof(uint64_t));
	if (nbits % 64)
		dst[words - 1] &= (1ull << (nbits % 64)) - 1;
}

int
hv_xen_param_allowed(uint32_t index)
{
	for (size_t i = 0; i < HV_XEN_PARAMS_MAX; i++)
		if (ctx_params[i] == index)
			return 1;
	return 0;
}

/* Parse a decimal domid of a guest (1..DOMID_FIRST_RESERVED-1). */
int
hv_xen_parse_domid(const char *s, uint32_t *out)
{
	uint32_t v = 0;

	if (s == NULL || *s == '\0')
		return -EINVAL;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		v = v * 10 + (uint32_t)(*p - '0');
		if (v >= DOMID_FIRST_RESERVED)
			return -ERANGE;
	}
	if (v == 0)
		return -ERANGE;
	*out = v;
	return 0;
}

int
hv_xen_is_incoming_name(const char *name)
{
	size_t n = strlen(name), s = strlen(INCOMING_SUFFIX);

	return n > s && strcmp(name + n - s, INCOMING_SUFFIX) == 0;
}

/*
 * The guest-supplied shutdown code of a domain that has shut down
 * (XEN_DOMINF_shutdown), or -1 while it has not.
 */
int
hv_xen_shutdown_reason(uint32_t dominf_flags)
{
	if (!(dominf_flags & XEN_DOMINF_shutdown))
		return -1;
	return (int)((dominf_flags >> XEN_DOMINF_shutdownshift) &
	    XEN_DOMINF_shutdownmask);
}

/*
 * HV_DOM_* flags from Xen's XEN_DOMINF_* flags.  A domain shut down for
 * suspend (our pause() of a cooperative guest) counts as paused: none of
 * its vCPUs runs and unpause() resumes it.
 */
uint32_t
hv_xen_dom_flags(uint32_t dominf_flags)
{
	uint32_t f = 0;
	int reason = hv_xen_shutdown_reason(dominf_flags);

	if ((dominf_flags & XEN_DOMINF_paused) || reason == SHUTDOWN_suspend)
		f |= HV_DOM_PAUSED;
	else if (reason < 0)
		f |= HV_DOM_RUNNING;
	if (dominf_flags & XEN_DOMINF_dying)
		f |= HV_DOM_DYING;
	return f;
}

/*
 * libxl's rule (libxl_dom_suspend.c, domain_suspend_callback_common) for
 * an HVM/PVH guest: ask it through xenstore's control/shutdown when it
 * has PV drivers (a callback irq registered) and is not in an ACPI sleep
 * state.  Otherwise the guest would never answer.
 */
int
hv_xen_want_suspend(uint64_t callback_irq, uint64_t acpi_s_state)
{
	return callback_irq != 0 && acpi_s_state == 0;
}

/* Any value but "suspend", a missing node included, is an acknowledgement. */
int
hv_xen_suspend_acked(const char *state)
{
	return state == NULL || strcmp(state, "suspend") != 0;
}

void
hv_xen_susp_init(struct hv_xen_susp_wait *w, uint64_t now_ms)
{
	memset(w, 0, sizeof(*w));
	w->start_ms = now_ms;
	w->ack_timeout_ms = HV_XEN_SUSPEND_ACK_MS;
	w->done_timeout_ms = HV_XEN_SUSPEND_DONE_MS;
}

/*
 * One step of the wait: the domain's XEN_DOMINF_* flags and whether the
 * control/shutdown node reads as acknowledged, both sampled at now_ms.
 * Shutdown is checked first: a guest may suspend faster than we poll.
 */
enum hv_xen_susp
hv_xen_susp_next(struct hv_xen_susp_wait *w, uint64_t now_ms,
    uint32_t dominf_flags, int node_acked)
{
	int reason = hv_xen_shutdown_reason(dominf_flags);

	if (dominf_flags & XEN_DOMINF_dying)
		return HV_XEN_SUSP_GONE;
	if (reason == SHUTDOWN_suspend)
		return HV_XEN_SUSP_DONE;
	if (reason >= 0)
		return HV_XEN_SUSP_GONE;
	if (!w->acked && node_acked) {
		w->acked = 1;
		w->ack_at_ms = now_ms;
	}
	if (!w->acked)
		return now_ms - w->start_ms >= w->ack_timeout_ms ?
		    HV_XEN_SUSP_CANCEL : HV_XEN_SUSP_WAIT;
	return now_ms - w->ack_at_ms >= w->done_timeout_ms ?
	    HV_XEN_SUSP_TIMEDOUT : HV_XEN_SUSP_WAIT;
}

static void
put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void
put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t
get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 24;
}

static uint64_t
get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static size_t
ctx_blob_len(uint32_t nparams, uint32_t hvm_len)
{
	size_t len = HV_XEN_CTX_HDR + (size_t)nparams * HV_XEN_CTX_PARAM +
	    hvm_len;

	return (len + 7) & ~(size_t)7;
}

/*
 * Encode a context into a malloc'd blob.  Layout, all little-endian:
 *
 *   0  u8[8]  magic "SMXHVMC1"
 *   8  u32    version (1)
 *  12  u32    flags (0; ignored on receive)
 *  16  u32    tsc_mode        } xc_domain_get_tsc_info()
 *  20  u32    gtsc_khz        }
 *  24  u64    elapsed_nsec    }
 *  32  u32    incarnation     }
 *  36  u32    nparams (<= 16)
 *  40  u32    hvm_len
 *  44  u32    reserved (0)
 *  48  nparams x { u32 index, u32 reserved (0), u64 value }  HVM params
 *  ..  hvm_len bytes: Xen's HVM context (XEN_DOMCTL_gethvmcontext)
 *  ..  zero padding to a multiple of 8; the total is exact
 */
int
hv_xen_ctx_encode(const struct hv_xen_ctx *c, void **buf, size_t *len)
{
	uint8_t *b, *p;
	size_t n;

	if (c == NULL || buf == NULL || len == NULL ||
	    c->nparams > HV_XEN_PARAMS_MAX || (c->hvm_len && c->hvm == NULL))
		return -EINVAL;
	n = ctx_blob_len(c->nparams, c->hvm_len);
	if (n > HV_CONTEXT_MAX)
		return -E2BIG;
	if ((b = calloc(1, n)) == NULL)
		return -ENOMEM;
	memcpy(b, HV_XEN_CTX_MAGIC, 8);
	put32(b + 8, HV_XEN_CTX_VERSION);
	put32(b + 16, c->tsc_mode);
	put32(b + 20, c->gtsc_khz);
	put64(b + 24, c->elapsed_nsec);
	put32(b + 32, c->incarnation);
	put32(b + 36, c->nparams);
	put32(b + 40, c->hvm_len);
	p = b + HV_XEN_CTX_HDR;
	for (uint32_t i = 0; i < c->nparams; i++, p += HV_XEN_CTX_PARAM) {
		put32(p, c->params[i].index);
		put64(p + 8, c->params[i].value);
	}
	if (c->hvm_len)
		memcpy(p, c->hvm, c->hvm_len);
	*buf = b;
	*len = n;
	return 0;
}

/*
 * Validate and decode a blob: magic, version, counts, exact length, every
 * param index in ctx_params[], no duplicate index, zero padding.
 * out->hvm points into buf.
 */
int
hv_xen_ctx_decode(const void *buf, size_t len, struct hv_xen_ctx *out)
{
	const uint8_t *b = buf, *p;
	struct hv_xen_ctx c;

	if (buf == NULL || out == NULL)
		return -EINVAL;
	if (len < HV_XEN_CTX_HDR || len > HV_CONTEXT_MAX)
		return -EBADMSG;
	if (memcmp(b, HV_XEN_CTX_MAGIC, 8) != 0 ||
	    get32(b + 8) != HV_XEN_CTX_VERSION)
		return -EBADMSG;
	memset(&c, 0, sizeof(c));
	c.tsc_mode = get32(b + 16);
	c.gtsc_khz = get32(b + 20);
	c.elapsed_nsec = get64(b + 24);
	c.incarnation = get32(b + 32);
	c.nparams = get32(b + 36);
	c.hvm_len = get32(b + 40);
	if (c.nparams > HV_XEN_PARAMS_MAX || c.hvm_len > HV_CONTEXT_MAX ||
	    ctx_blob_len(c.nparams, c.hvm_len) != len)
		return -EBADMSG;
	p = b + HV_XEN_CTX_HDR;
	for (uint32_t i = 0; i < c.nparams; i++, p += HV_XEN_CTX_PARAM) {
		c.params[i].index = get32(p);
		c.params[i].value = get64(p + 8);
		if (!hv_xen_param_allowed(c.params[i].index))
			return -EBADMSG;
		for (uint32_t j = 0; j < i; j++)
			if (c.params[j].index == c.params[i].index)
				return -EBADMSG;
	}
	c.hvm = c.hvm_len ? p : NULL;
	for (const uint8_t *q = p + c.hvm_len; q < b + len; q++)
		if (*q != 0)
			return -EBADMSG;
	*out = c;
	return 0;
}

/* ---- logging glue ---- */

static void
quiet_vmessage(struct xentoollog_logger *l, xentoollog_level level,
    int errnoval, const char *context, const char *format, va_list al)
{
}

static void
quiet_progress(struct xentoollog_logger *l, const char *context,
    const char *doing_what, int percent, unsigned long done,
    unsigned long total)
{
}

static void
quiet_destroy(struct xentoollog_logger *l)
{
	free(l);
}

/* A silent logger, or libxc's stderr logger when SHAREMIG_XEN_DEBUG is set. */
static xentoollog_logger *
logger_new(void)
{
	xentoollog_logger *l;

	if (getenv("SHAREMIG_XEN_DEBUG") != NULL)
		return (xentoollog_logger *)xtl_createlogger_stdiostream(stderr,
		    XTL_DEBUG, 0);
	if ((l = calloc(1, sizeof(*l))) == NULL)
		return NULL;
	l->vmessage = quiet_vmessage;
	l->progress = quiet_progress;
	l->destroy = quiet_destroy;
	return l;
}

/* Map a libxl ERROR_* code to a negative errno. */
static int
libxl_errno(int rc)
{
	switch (rc) {
	case 0:
		return 0;
	case ERROR_NOMEM:
		return -ENOMEM;
	case ERROR_INVAL:
		return -EINVAL;
	case ERROR_DOMAIN_NOTFOUND:
		return -ENOENT;
	case ERROR_NOT_READY:
		return -EAGAIN;
	case ERROR_NOPARAVIRT:
		return -EOPNOTSUPP;
	default:
		return -EIO;
	}
}

static int
neg_errno(void)
{
	return errno > 0 ? -errno : -EIO;
}

/* ---- instance ---- */

static void
xen_close(struct hv *hv)
{
	if (hv == NULL)
		return;
	assert(hv->ndoms == 0);
	if (hv->ctx)
		libxl_ctx_free(hv->ctx);
	if (hv->xsh)
		xs_close(hv->xsh);
	if (hv->fmem)
		xenforeignmemory_close(hv->fmem);
	if (hv->xch)
		xc_interface_close(hv->xch);
	if (hv->lg)
		xtl_logger_destroy(hv->lg);
	free(hv);
}

/*
 * Open libxenctrl and libxenforeignmemory.  Without a privcmd device (not
 * a Xen dom0, or xenfs not mounted) this fails with -ENOENT before any
 * library is asked, so nothing is printed.
 */
static int
xen_open(const struct hv_params *p, struct hv **out)
{
	struct stat st;
	struct hv *hv;
	int rc;

	if (out == NULL)
		return -EINVAL;
	if (stat("/dev/xen/privcmd", &st) != 0 &&
	    stat("/proc/xen/privcmd", &st) != 0)
		return -ENOENT;
	if ((hv = calloc(1, sizeof(*hv))) == NULL)
		return -ENOMEM;
	if ((hv->lg = logger_new()) == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	if ((hv->xch = xc_interface_open(hv->lg, hv->lg, 0)) == NULL) {
		rc = neg_errno();
		goto fail;
	}
	if ((hv->fmem = xenforeignmemory_open(hv->lg, 0)) == NULL) {
		rc = neg_errno();
		goto fail;
	}
	*out = hv;
	return 0;
fail:
	xen_close(hv);
	return rc;
}

static int
need_xs(struct hv *hv)
{
	if (hv->xsh == NULL && (hv->xsh = xs_open(0)) == NULL)
		return neg_errno();
	return 0;
}

static int
need_libxl(struct hv *hv)
{
	int rc;

	if (hv->ctx)
		return 0;
	rc = libxl_ctx_alloc(&hv->ctx, LIBXL_VERSION, 0, hv->lg);
	if (rc) {
		hv->ctx = NULL;
		return libxl_errno(rc);
	}
	return 0;
}

/* The domain's name from xenstore into buf (empty when unknown). */
static void
dom_name(struct hv *hv, uint32_t domid, char *buf, size_t size)
{
	char path[64];
	unsigned int len = 0;
	char *v;

	buf[0] = '\0';
	if (need_xs(hv) != 0)
		return;
	snprintf(path, sizeof(path), "/local/domain/%u/name", domid);
	if ((v = xs_read(hv->xsh, XBT_NULL, path, &len)) == NULL)
		return;
	if (len < size) {
		memcpy(buf, v, len);
		buf[len] = '\0';
	}
	free(v);
}

/* Exactly domain domid's info, or -ENOENT. */
static int
getinfo(struct hv *hv, uint32_t domid, xc_domaininfo_t *info)
{
	int n = xc_domain_getinfolist(hv->xch, domid, 1, info);

	if (n < 0)
		return neg_errno();
	if (n == 0 || info->domain != domid)
		return -ENOENT;
	return 0;
}

static int
pfn_space(struct hv *hv, uint32_t domid, uint64_t *pages)
{
	xen_pfn_t max = 0;

	if (xc_domain_maximum_gpfn(hv->xch, domid, &max) < 0)
		return neg_errno();
	*pages = (uint64_t)max + 1;
	return 0;
}

static void
fill_info(struct hv *hv, const xc_domaininfo_t *xi, uint64_t pages,
    const char *name, struct hv_dom_info *o)
{
	memset(o, 0, sizeof(*o));
	o->domid = xi->domain;
	o->vcpus = xi->max_vcpu_id == XEN_INVALID_MAX_VCPU_ID ? 0 :
	    xi->max_vcpu_id + 1;
	o->flags = hv_xen_dom_flags(xi->flags);
	o->pages = pages;
	memcpy(o->uuid, xi->handle, 16);
	snprintf(o->name, sizeof(o->name), "%s", name);
}

static int
xen_list(struct hv *hv, struct hv_dom_info **out, size_t *nout)
{
	xc_domaininfo_t *xi = NULL;
	struct hv_dom_info *v = NULL, *nv;
	size_t n = 0, cap = 0;
	uint32_t first = 1;	/* skips Domain-0 */
	int got, rc;

	if (hv == NULL || out == NULL || nout == NULL)
		return -EINVAL;
	if ((xi = calloc(LIST_CHUNK, sizeof(*xi))) == NULL)
		return -ENOMEM;
	do {
		got = xc_domain_getinfolist(hv->xch, first, LIST_CHUNK, xi);
		if (got < 0) {
			rc = neg_errno();
			goto fail;
		}
		for (int i = 0; i < got; i++) {
			char name[HV_NAME_MAX];
			uint64_t pages;

			first = xi[i].domain + 1u;
			if (xi[i].domain == 0 ||
			    (xi[i].flags & (XEN_DOMINF_dying |
			    XEN_DOMINF_xs_domain)))
				continue;
			dom_name(hv, xi[i].domain, name, sizeof(name));
			if (hv_xen_is_incoming_name(name))
				continue;
			/* A domain that vanished meanwhile is skipped. */
			if (pfn_space(hv, xi[i].domain, &pages) != 0)
				continue;
			if (n == cap) {
				cap = cap ? 2 * cap : 16;
				if ((nv = reallocarray(v, cap,
				    sizeof(*v))) == NULL) {
					rc = -ENOMEM;
					goto fail;
				}
				v = nv;
			}
			fill_info(hv, &xi[i], pages, name, &v[n++]);
		}
	} while (got == LIST_CHUNK);
	free(xi);
	if (v == NULL && (v = malloc(sizeof(*v))) == NULL)
		return -ENOMEM;
	*out = v;
	*nout = n;
	return 0;
fail:
	free(xi);
	free(v);
	return rc;
}

/* Find a live guest by xenstore name. */
static int
find_by_name(struct hv *hv, const char *name, uint32_t *domid)
{
	xc_domaininfo_t *xi;
	uint32_t first = 1;
	int got, rc = -ENOENT;

	if ((rc = need_xs(hv)) != 0)
		return rc == -ENOENT ? -ENOENT : rc;
	rc = -ENOENT;
	if ((xi = calloc(LIST_CHUNK, sizeof(*xi))) == NULL)
		return -ENOMEM;
	do {
		got = xc_domain_getinfolist(hv->xch, first, LIST_CHUNK, xi);
		if (got < 0) {
			rc = neg_errno();
			break;
		}
		for (int i = 0; i < got; i++) {
			char n[HV_NAME_MAX];

			first = xi[i].domain + 1u;
			if (xi[i].flags & XEN_DOMINF_dying)
				continue;
			dom_name(hv, xi[i].domain, n, sizeof(n));
			if (strcmp(n, name) == 0) {
				*domid = xi[i].domain;
				free(xi);
				return 0;
			}
		}
	} while (got == LIST_CHUNK);
	free(xi);
	return rc;
}

/*
 * Build a handle for a live domain after checking its kind.  incoming is
 * set by create().
 */
static int
dom_new(struct hv *hv, uint32_t domid, int incoming, struct hv_dom **out)
{
	xc_domaininfo_t xi;
	struct hv_dom *d;
	int rc;

	if ((rc = getinfo(hv, domid, &xi)) != 0)
		return rc;
	if (xi.flags & XEN_DOMINF_dying)
		return -ENOENT;
	/* PV log-dirty needs shadow paging: not in Debian's Xen. */
	if (!(xi.flags & XEN_DOMINF_hvm_guest) || !(xi.flags & XEN_DOMINF_hap))
		return -EOPNOTSUPP;
	if ((d = calloc(1, sizeof(*d))) == NULL)
		return -ENOMEM;
	d->hv = hv;
	d->domid = domid;
	d->incoming = incoming;
	memcpy(d->uuid, xi.handle, 16);
	d->vcpus = xi.max_vcpu_id == XEN_INVALID_MAX_VCPU_ID ? 0 :
	    xi.max_vcpu_id + 1;
	if ((rc = pfn_space(hv, domid, &d->pages)) != 0) {
		free(d);
		return rc;
	}
	dom_name(hv, domid, d->name, sizeof(d->name));
	hv->ndoms++;
	*out = d;
	return 0;
}

static int
xen_dom_open(struct hv *hv, const char *name, struct hv_dom **out)
{
	uint32_t domid;
	int rc;

	if (hv == NULL || name == NULL || out == NULL || *name == '\0')
		return -EINVAL;
	rc = hv_xen_parse_domid(name, &domid);
	if (rc == -ERANGE)
		return -ENOENT;	/* Domain-0 or a reserved id: not a guest */
	if (rc != 0 && (rc = find_by_name(hv, name, &domid)) != 0)
		return rc;
	return dom_new(hv, domid, 0, out);
}

static void
xen_dom_close(struct hv_dom *d)
{
	if (d == NULL)
		return;
	assert(d->nmaps == 0);
	d->hv->ndoms--;
	free(d);
}

/* Info of the domain this handle was opened on (-ENOENT if it is gone). */
static int
dom_getinfo(struct hv_dom *d, xc_domaininfo_t *xi)
{
	int rc;

	if ((rc = getinfo(d->hv, d->domid, xi)) != 0)
		return rc;
	if (memcmp(xi->handle, d->uuid, 16) != 0)
		return -ENOENT;		/* domid reused by another domain */
	return 0;
}

static int
xen_dom_info(struct hv_dom *d, struct hv_dom_info *out)
{
	xc_domaininfo_t xi;
	uint64_t pages;
	int rc;

	if (d == NULL || out == NULL)
		return -EINVAL;
	if ((rc = dom_getinfo(d, &xi)) != 0)
		return rc;
	if ((rc = pfn_space(d->hv, d->domid, &pages)) != 0)
		return rc;
	/* The pfn space only grows as far as callers are concerned. */
	if (pages > d->pages)
		d->pages = pages;
	dom_name(d->hv, d->domid, d->name, sizeof(d->name));
	fill_info(d->hv, &xi, d->pages, d->name, out);
	if (d->incoming)
		out->flags |= HV_DOM_INCOMING;
	return 0;
}

/* ---- memory ---- */

/*
 * Populate the holes among pfns of an incoming domain so that they can be
 * mapped writable.  Holes are the entries with err[i] != 0.
 */
static int
populate_holes(struct hv_dom *d, const xen_pfn_t *xp, const int *err,
    size_t n)
{
	xen_pfn_t holes[HV_MAP_BATCH_MAX];
	size_t k = 0;

	for (size_t i = 0; i < n; i++)
		if (err[i])
			holes[k++] = xp[i];
	if (k == 0)
		return 0;
	if (xc_domain_populate_physmap_exact(d->hv->xch, d->domid, k, 0, 0,
	    holes) != 0)
		return neg_errno();
	return 0;
}

/*
 * Map n pfns.  A read-only map returns holes as NULL.  A writable map
 * (incoming domains only) first populates the holes, since the source
 * may hold a page where the freshly built domain has none; a page that
 * still cannot be mapped fails the whole call.
 */
static int
xen_map(struct hv_dom *d, const uint64_t *pfns, size_t n, int writable,
    void **pages, struct hv_map **out)
{
	xen_pfn_t xp[HV_MAP_BATCH_MAX];
	int err[HV_MAP_BATCH_MAX];
	struct hv_map *m;
	void *addr;
	int prot = writable ? PROT_READ | PROT_WRITE : PROT_READ;
	int rc;

	if (d == NULL || pfns == NULL || pages == NULL || out == NULL ||
	    n == 0 || n > HV_MAP_BATCH_MAX)
		return -EINVAL;
	if (writable && !d->incoming)
		return -EPERM;
	for (size_t i = 0; i < n; i++) {
		if (pfns[i] >= d->pages) {
			/* Refresh once: the guest may have grown. */
			uint64_t np;

			if (pfn_space(d->hv, d->domid, &np) == 0 &&
			    np > d->pages)
				d->pages = np;
			if (pfns[i] >= d->pages)
				return -EINVAL;
		}
		xp[i] = (xen_pfn_t)pfns[i];
	}
	if ((m = calloc(1, sizeof(*m))) == NULL)
		return -ENOMEM;
	addr = xenforeignmemory_map(d->hv->fmem, d->domid, prot, n, xp, err);
	if (addr == NULL) {
		rc = neg_errno();
		goto fail;
	}
	if (writable) {
		size_t bad = 0;

		for (size_t i = 0; i < n; i++)
			bad += err[i] != 0;
		if (bad) {
			xenforeignmemory_unmap(d->hv->fmem, addr, n);
			addr = NULL;
			if ((rc = populate_holes(d, xp, err, n)) != 0)
				goto fail;
			addr = xenforeignmemory_map(d->hv->fmem, d->domid,
			    prot, n, xp, err);
			if (addr == NULL) {
				rc = neg_errno();
				goto fail;
			}
			for (size_t i = 0; i < n; i++)
				if (err[i]) {
					rc = err[i] < 0 ? err[i] : -EFAULT;
					goto fail;
				}
		}
	}
	for (size_t i = 0; i < n; i++)
		pages[i] = err[i] ? NULL :
		    (uint8_t *)addr + i * (size_t)HV_PAGE_SIZE;
	m->addr = addr;
	m->n = n;
	d->nmaps++;
	*out = m;
	return 0;
fail:
	if (addr)
		xenforeignmemory_unmap(d->hv->fmem, addr, n);
	free(m);
	return rc;
}

static void
xen_unmap(struct hv_dom *d, struct hv_map *m)
{
	if (m == NULL)
		return;
	xenforeignmemory_unmap(d->hv->fmem, m->addr, m->n);
	d->nmaps--;
	free(m);
}

/* ---- log-dirty ---- */

static int
xen_logdirty_enable(struct hv_dom *d)
{
	xc_interface *xch;

	if (d == NULL)
		return -EINVAL;
	xch = d->hv->xch;
	if (xc_shadow_control(xch, d->domid,
	    XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY, NULL, 0) != 0) {
		/*
		 * Still on from an earlier, abandoned run (as Xen's own
		 * save code assumes): switch it off and on again.  A PV
		 * guest fails here with EOPNOTSUPP.
		 */
		int e = errno;

		if (e == EOPNOTSUPP ||
		    xc_shadow_control(xch, d->domid, XEN_DOMCTL_SHADOW_OP_OFF,
		    NULL, 0) != 0 ||
		    xc_shadow_control(xch, d->domid,
		    XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY, NULL, 0) != 0)
			return e > 0 ? -e : -EIO;
	}
	d->logdirty = 1;
	return 0;
}

static int
xen_logdirty_disable(struct hv_dom *d)
{
	if (d == NULL)
		return -EINVAL;
	if (xc_shadow_control(d->hv->xch, d->domid, XEN_DOMCTL_SHADOW_OP_OFF,
	    NULL, 0) != 0)
		return neg_errno();
	d->logdirty = 0;
	return 0;
}

/*
 * XEN_DOMCTL_SHADOW_OP_CLEAN into a hypercall buffer of d->pages bits,
 * then imported into the caller's bitmap (bm_words(d->pages) words).
 */
static int
xen_dirty_fetch(struct hv_dom *d, uint64_t *bitmap, int final)
{
	xc_interface *xch;
	uint64_t nbits;
	size_t bytes, npg;
	long long got;
	int rc = 0;

	if (d == NULL || bitmap == NULL)
		return -EINVAL;
	if (!d->logdirty)
		return -EINVAL;
	xch = d->hv->xch;
	nbits = d->pages;
	bytes = (size_t)((nbits + 63) / 64) * sizeof(uint64_t);
	npg = (bytes + XC_PAGE_SIZE - 1) / XC_PAGE_SIZE;
	DECLARE_HYPERCALL_BUFFER(unsigned long, xbm);
	xbm = xc_hypercall_buffer_alloc_pages(xch, xbm, npg);
	if (xbm == NULL)
		return -ENOMEM;
	memset(xbm, 0, npg * XC_PAGE_SIZE);
	got = xc_logdirty_control(xch, d->domid, XEN_DOMCTL_SHADOW_OP_CLEAN,
	    HYPERCALL_BUFFER(xbm), nbits,
	    final ? XEN_DOMCTL_SHADOW_LOGDIRTY_FINAL : 0, NULL);
	if (got < 0) {
		rc = neg_errno();
		goto out;
	}
	/*
	 * Xen may report fewer pfns than asked (its p2m is smaller); the
	 * rest of the buffer is still zero.
	 */
	hv_xen_bitmap_import(bitmap, xbm, nbits);
	if (final)
		for (unsigned int i = 0; i < d->nring; i++)
			if (d->ring[i] < nbits)
				bitmap[d->ring[i] / 64] |= 1ull <<
				    (d->ring[i] % 64);
out:
	xc_hypercall_buffer_free_pages(xch, xbm, npg);
	return rc;
}

/* ---- run state ---- */

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* control/shutdown of the domain: 1 if acknowledged, 0 if not, <0 error. */
static int
pvcontrol_acked(struct hv *hv, xs_transaction_t t, const char *path)
{
	unsigned int len = 0;
	char *v;
	int acked;

	errno = 0;
	if ((v = xs_read(hv->xsh, t, path, &len)) == NULL)
		return errno == ENOENT ? 1 : neg_errno();
	acked = hv_xen_suspend_acked(v);
	free(v);
	return acked;
}

/*
 * The guest did not acknowledge in time: take the request back, in a
 * transaction so that a last-moment acknowledgement is not lost (as
 * libxl does).  1 = cancelled, 0 = the guest acknowledged after all,
 * <0 = xenstore error.
 */
static int
pvcontrol_cancel(struct hv *hv, const char *path)
{
	xs_transaction_t t;
	int acked;

	for (;;) {
		if ((t = xs_transaction_start(hv->xsh)) == XBT_NULL)
			return neg_errno();
		if ((acked = pvcontrol_acked(hv, t, path)) != 0) {
			xs_transaction_end(hv->xsh, t, true);
			return acked < 0 ? acked : 0;
		}
		if (!xs_write(hv->xsh, t, path, "", 0)) {
			int rc = neg_errno();

			xs_transaction_end(hv->xsh, t, true);
			return rc;
		}
		if (xs_transaction_end(hv->xsh, t, false))
			return 1;
		if (errno != EAGAIN)
			return neg_errno();
	}
}

/*
 * Ask the guest to suspend itself, as xl's save does for the last round
 * (libxl_dom_suspend.c): write "suspend" to control/shutdown, wait until
 * the guest clears the node, then until the domain has shut down with
 * SHUTDOWN_suspend.  Returns 1 when suspended, 0 when the guest never
 * acknowledged (the request is withdrawn; the caller pauses instead),
 * -ETIMEDOUT when it acknowledged but never suspended, -ESHUTDOWN when
 * it shut down for another reason.  Polls every millisecond: the time it
 * adds to the downtime is at most that.
 */
static int
suspend_guest(struct hv_dom *d)
{
	struct hv *hv = d->hv;
	struct hv_xen_susp_wait w;
	struct timespec tick = { 0, 1000000 };
	xc_domaininfo_t xi;
	char path[64];
	int acked = 0, rc;

	snprintf(path, sizeof(path), "/local/domain/%u/control/shutdown",
	    d->domid);
	if (!xs_write(hv->xsh, XBT_NULL, path, "suspend", 7))
		return neg_errno();
	hv_xen_susp_init(&w, now_ms());
	for (;;) {
		if ((rc = dom_getinfo(d, &xi)) != 0)
			return rc;
		if (!w.acked && (acked = pvcontrol_acked(hv, XBT_NULL,
		    path)) < 0)
			return acked;
		switch (hv_xen_susp_next(&w, now_ms(), xi.flags, acked)) {
		case HV_XEN_SUSP_WAIT:
			nanosleep(&tick, NULL);
			break;
		case HV_XEN_SUSP_DONE:
			return 1;
		case HV_XEN_SUSP_GONE:
			return -ESHUTDOWN;
		case HV_XEN_SUSP_TIMEDOUT:
			return -ETIMEDOUT;
		case HV_XEN_SUSP_CANCEL:
			if ((rc = pvcontrol_cancel(hv, path)) != 0)
				return rc < 0 ? rc : 0;
			acked = 1;	/* acknowledged at the last moment */
			break;
		}
	}
}

/* The xenstore and console ring pfns (the HVM params), in that order. */
static unsigned int
ring_pfns(struct hv_dom *d, uint64_t pfns[2])
{
	const uint32_t which[2] = { HVM_PARAM_STORE_PFN, HVM_PARAM_CONSOLE_PFN };
	uint64_t v;
	unsigned int n = 0;

	for (unsigned int i = 0; i < 2; i++)
		if (xc_hvm_param_get(d->hv->xch, d->domid, which[i], &v) == 0 &&
		    v != 0 && v < d->pages)
			pfns[n++] = v;
	return n;
}

/*
 * Exported by libxenctrl 4.17 (VERS_4.17.0) but declared only in its
 * private xc_private.h: the page-type query Xen's own save code uses
 * (XEN_DOMCTL_getpageframeinfo3, types replace the pfns in arr).
 */
int xc_get_pfn_type_batch(xc_interface *xch, uint32_t dom, unsigned int num,
    xen_pfn_t *arr);

/*
 * The ring pages, and the pfns typed XTAB although they map: pages Xen
 * owns that the guest placed in its physmap (shared info, grant-table
 * frames), which Xen writes itself (event-channel bits, grant flags)
 * without logging and its save code does not send (xg_sr_save.c maps no
 * XTAB pfn).  One type query per call; a failed query names the rings
 * only.
 */
static size_t
xen_outside_pfns(struct hv_dom *d, const uint64_t *cand, size_t n,
    uint64_t *out, size_t max)
{
	xen_pfn_t *t = NULL;
	uint64_t ring[2];
	unsigned int nring;
	size_t k = 0;

	if (d == NULL || cand == NULL || out == NULL || n == 0 ||
	    n > HV_MAP_BATCH_MAX)
		return 0;
	nring = ring_pfns(d, ring);
	if ((t = malloc(n * sizeof(*t))) != NULL) {
		for (size_t i = 0; i < n; i++)
			t[i] = (xen_pfn_t)cand[i];
		if (xc_get_pfn_type_batch(d->hv->xch, d->domid,
		    (unsigned int)n, t) != 0) {
			free(t);
			t = NULL;
		}
	}
	for (size_t i = 0; i < n && k < max; i++) {
		int hit = 0;

		for (unsigned int r = 0; r < nring; r++)
			if (cand[i] == ring[r])
				hit = 1;
		if (t != NULL && (t[i] & XEN_DOMCTL_PFINFO_LTAB_MASK) ==
		    XEN_DOMCTL_PFINFO_XTAB)
			hit = 1;
		if (hit)
			out[k++] = cand[i];
	}
	free(t);
	return k;
}

/*
 * The guest's xenstore and console rings are written by dom0's xenstored
 * and xenconsoled through long-lived mappings, and Xen's log-dirty does
 * not see writes made through a mapping that already exists: only the
 * guest's own writes to those pages are logged.  After a suspend the
 * daemons are still catching up (the guest's last console lines, the
 * response and watch event for its control/shutdown write), and a write
 * they make after the page's last copy is lost at the destination and
 * makes a --verify digest differ.  So once the guest is suspended and
 * paused: wait until both pages have not changed for HV_XEN_SETTLE_MS
 * (at most HV_XEN_SETTLE_MAX_MS), and report both pfns dirty in the
 * final fetch so that the last round copies their settled content.
 */
static void
settle_rings(struct hv_dom *d)
{
	xen_pfn_t pfns[2];
	int err[2];
	uint8_t *prev = NULL, *addr;
	uint64_t start, stable;
	unsigned int n;

	n = ring_pfns(d, d->ring);
	d->nring = n;
	if (n == 0)
		return;
	for (unsigned int i = 0; i < n; i++)
		pfns[i] = (xen_pfn_t)d->ring[i];
	addr = xenforeignmemory_map(d->hv->fmem, d->domid, PROT_READ, n, pfns,
	    err);
	if (addr == NULL)
		return;
	if ((prev = malloc(n * (size_t)XC_PAGE_SIZE)) == NULL)
		goto out;
	memcpy(prev, addr, n * (size_t)XC_PAGE_SIZE);
	start = stable = now_ms();
	while (now_ms() - stable < HV_XEN_SETTLE_MS &&
	    now_ms() - start < HV_XEN_SETTLE_MAX_MS) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };

		nanosleep(&ts, NULL);
		for (unsigned int i = 0; i < n; i++) {
			uint8_t *pg = addr + i * (size_t)XC_PAGE_SIZE;
			uint8_t *pv = prev + i * (size_t)XC_PAGE_SIZE;

			if (err[i] == 0 && memcmp(pg, pv, XC_PAGE_SIZE) != 0) {
				memcpy(pv, pg, XC_PAGE_SIZE);
				stable = now_ms();
			}
		}
	}
out:
	free(prev);
	xenforeignmemory_unmap(d->hv->fmem, addr, n);
}

/*
 * Stop the guest for the last round.  A guest with PV drivers is asked
 * to suspend itself first (see suspend_guest()), so that on the
 * destination it wakes from its suspend hypercall with 0 and re-binds its
 * event channels, xenstore and console and re-registers its shared
 * pages: a guest merely paused keeps the source host's bindings and its
 * timers and console stay dead after the move (docs/XEN.md).  A guest
 * without PV drivers, or one that does not acknowledge within
 * HV_XEN_SUSPEND_ACK_MS, is paused without its knowledge.  Either way the
 * domain is then paused with xc_domain_pause(), which returns once every
 * vCPU is descheduled (a shutdown alone pauses vCPUs asynchronously).
 * Idempotent: a paused domain is left as it is.  Blocks for as long as
 * the guest takes to suspend (up to HV_XEN_SUSPEND_ACK_MS +
 * HV_XEN_SUSPEND_DONE_MS).
 */
static int
xen_pause(struct hv_dom *d)
{
	xc_domaininfo_t xi;
	uint64_t cbirq = 0, sstate = 0;
	int rc;

	if (d == NULL)
		return -EINVAL;
	if ((rc = dom_getinfo(d, &xi)) != 0)
		return rc;
	if (xi.flags & XEN_DOMINF_paused)
		return 0;
	if (!d->incoming && hv_xen_shutdown_reason(xi.flags) < 0 &&
	    xc_hvm_param_get(d->hv->xch, d->domid, HVM_PARAM_CALLBACK_IRQ,
	    &cbirq) == 0 &&
	    xc_hvm_param_get(d->hv->xch, d->domid, HVM_PARAM_ACPI_S_STATE,
	    &sstate) == 0 &&
	    hv_xen_want_suspend(cbirq, sstate) && need_xs(d->hv) == 0) {
		if ((rc = suspend_guest(d)) < 0)
			return rc;
	}
	if (xc_domain_pause(d->hv->xch, d->domid) != 0)
		return neg_errno();
	if (!d->incoming && dom_getinfo(d, &xi) == 0 &&
	    hv_xen_shutdown_reason(xi.flags) == SHUTDOWN_suspend)
		settle_rings(d);
	return 0;
}

/*
 * Let the domain run.  A domain that our pause() suspended (the migration
 * failed before GO) is resumed the way xl resumes a guest after a failed
 * save: libxl_domain_resume() with suspend_cancel = 1, i.e.
 * xc_domain_resume(fast = 1), which makes the guest's suspend hypercall
 * return 1 ("cancelled": it keeps its connections), then
 * xs_resume_domain(); only then is our pause dropped.  A committed
 * incoming domain (context_set() done) is started with
 * libxl_domain_unpause(), as xl does after migrate-receive; its guest
 * returns 0 from the suspend hypercall and reconnects to this host.
 * Idempotent.
 */
static int
xen_unpause(struct hv_dom *d)
{
	xc_domaininfo_t xi;
	int rc;

	if (d == NULL)
		return -EINVAL;
	d->nring = 0;
	if ((rc = dom_getinfo(d, &xi)) != 0)
		return rc;
	if (hv_xen_shutdown_reason(xi.flags) == SHUTDOWN_suspend) {
		if (d->incoming)
			return -EINVAL;
		if ((rc = need_libxl(d->hv)) != 0)
			return rc;
		rc = libxl_domain_resume(d->hv->ctx, d->domid, 1, NULL);
		if (rc)
			return libxl_errno(rc);
		if ((rc = dom_getinfo(d, &xi)) != 0)
			return rc;
	}
	if (!(xi.flags & XEN_DOMINF_paused))
		return 0;
	if (need_libxl(d->hv) == 0) {
		if ((rc = libxl_domain_unpause(d->hv->ctx, d->domid, NULL)))
			return libxl_errno(rc);
	} else if (xc_domain_unpause(d->hv->xch, d->domid) != 0)
		return neg_errno();
	return 0;
}

/* ---- throttle (auto-converge): the scheduler's cap ----
 *
 * credit and credit2 cap a domain at cap percent of one pCPU (0 = no
 * cap).  A throttle of P% caps it at (100 - P)% of what it may use now:
 * its own cap when it has one, else 100% per vCPU.  The domain's own cap
 * is what *saved records (bit 32 = recorded, bits 0..15 = the cap), so a
 * restarted sourced can put it back from its journal.
 */
#define HV_XEN_THR_SAVED	(1ull << 32)

/* The cap for a throttle of percent (1..99), at least 1. */
uint16_t
hv_xen_throttle_cap(uint16_t own_cap, uint32_t vcpus, unsigned percent)
{
	uint64_t base = own_cap ? own_cap : 100ull * (vcpus ? vcpus : 1);
	uint64_t cap;

	if (base > UINT16_MAX)
		base = UINT16_MAX;
	if (percent > 99)
		percent = 99;
	cap = base * (100 - percent) / 100;
	return cap ? (uint16_t)cap : 1;
}

uint64_t
hv_xen_throttle_save(uint16_t own_cap)
{
	return HV_XEN_THR_SAVED | own_cap;
}

/* The domain's own cap from a saved record: 0 or -EINVAL. */
int
hv_xen_throttle_saved_cap(uint64_t saved, uint16_t *cap)
{
	if ((saved & ~(HV_XEN_THR_SAVED | 0xffffu)) != 0 ||
	    !(saved & HV_XEN_THR_SAVED))
		return -EINVAL;
	*cap = (uint16_t)(saved & 0xffffu);
	return 0;
}

/* 1 if domains under this scheduler have a cap. */
int
hv_xen_sched_capped(uint32_t sched_id)
{
	return sched_id == XEN_SCHEDULER_CREDIT ||
	    sched_id == XEN_SCHEDULER_CREDIT2;
}

/* The scheduler of the domain's cpupool. */
static int
dom_sched(struct hv_dom *d, uint32_t *sched_id)
{
	xc_cpupoolinfo_t *pool;
	xc_domaininfo_t xi;
	int rc;

	if ((rc = dom_getinfo(d, &xi)) != 0)
		return rc;
	if ((pool = xc_cpupool_getinfo(d->hv->xch, xi.cpupool)) == NULL)
		return neg_errno();
	rc = pool->cpupool_id == xi.cpupool ? 0 : -ENOENT;
	if (rc == 0)
		*sched_id = pool->sched_id;
	xc_cpupool_infofree(d->hv->xch, pool);
	return rc;
}

/* Read (set = 0) or write the domain's cap under credit or credit2;
 * the weight is left as it is. */
static int
sched_cap(struct hv_dom *d, uint32_t sched_id, int set, uint16_t *cap)
{
	xc_interface *xch = d->hv->xch;
	struct xen_domctl_sched_credit c1;
	struct xen_domctl_sched_credit2 c2;

	if (sched_id == XEN_SCHEDULER_CREDIT) {
		if (xc_sched_credit_domain_get(xch, d->domid, &c1) != 0)
			return neg_errno();
		if (!set) {
			*cap = c1.cap;
			return 0;
		}
		c1.cap = *cap;
		return xc_sched_credit_domain_set(xch, d->domid, &c1) != 0 ?
		    neg_errno() : 0;
	}
	if (xc_sched_credit2_domain_get(xch, d->domid, &c2) != 0)
		return neg_errno();
	if (!set) {
		*cap = c2.cap;
		return 0;
	}
	c2.cap = *cap;
	return xc_sched_credit2_domain_set(xch, d->domid, &c2) != 0 ?
	    neg_errno() : 0;
}

static int
xen_throttle(struct hv_dom *d, unsigned percent, uint64_t *saved)
{
	uint16_t own, cap;
	uint32_t sched;
	int rc;

	if (d == NULL || saved == NULL || percent > 99)
		return -EINVAL;
	if ((rc = dom_sched(d, &sched)) != 0)
		return rc;
	if (!hv_xen_sched_capped(sched))
		return -EOPNOTSUPP;
	if (percent == 0) {
		if (*saved == 0)
			return 0;	/* never throttled */
		if ((rc = hv_xen_throttle_saved_cap(*saved, &own)) != 0)
			return rc;
		return sched_cap(d, sched, 1, &own);
	}
	if (*saved == 0) {
		if ((rc = sched_cap(d, sched, 0, &own)) != 0)
			return rc;
		*saved = hv_xen_throttle_save(own);
	} else if ((rc = hv_xen_throttle_saved_cap(*saved, &own)) != 0)
		return rc;
	cap = hv_xen_throttle_cap(own, d->vcpus, percent);
	return sched_cap(d, sched, 1, &cap);
}

/* ---- context ---- */

static int
xen_context_get(struct hv_dom *d, void **buf, size_t *len)
{
	struct hv_xen_ctx c;
	xc_interface *xch;
	uint8_t *hvm = NULL;
	int size, rc;

	if (d == NULL || buf == NULL || len == NULL)
		return -EINVAL;
	xch = d->hv->xch;
	memset(&c, 0, sizeof(c));
	if (xc_domain_get_tsc_info(xch, d->domid, &c.tsc_mode,
	    &c.elapsed_nsec, &c.gtsc_khz, &c.incarnation) != 0)
		return neg_errno();
	for (size_t i = 0; i < HV_XEN_PARAMS_MAX; i++) {
		uint64_t v = 0;

		if (xc_hvm_param_get(xch, d->domid, ctx_params[i], &v) != 0)
			return neg_errno();
		if (v != 0) {
			c.params[c.nparams].index = ctx_params[i];
			c.params[c.nparams].value = v;
			c.nparams++;
		}
	}
	if ((size = xc_domain_hvm_getcontext(xch, d->domid, NULL, 0)) < 0)
		return neg_errno();
	if ((size_t)size > HV_CONTEXT_MAX)
		return -E2BIG;
	if ((hvm = malloc(size ? size : 1)) == NULL)
		return -ENOMEM;
	if ((size = xc_domain_hvm_getcontext(xch, d->domid, hvm, size)) < 0) {
		rc = neg_errno();
		goto out;
	}
	c.hvm = hvm;
	c.hvm_len = (uint32_t)size;
	rc = hv_xen_ctx_encode(&c, buf, len);
out:
	free(hvm);
	return rc;
}

/*
 * Restore in the order Xen's own restore uses: TSC info, HVM params, then
 * the HVM context.  The domain must be paused (-EBUSY otherwise).
 */
static int
xen_context_set(struct hv_dom *d, const void *buf, size_t len)
{
	struct hv_xen_ctx c;
	xc_domaininfo_t xi;
	xc_interface *xch;
	uint8_t *hvm = NULL;
	int rc;

	if (d == NULL || buf == NULL)
		return -EINVAL;
	if ((rc = hv_xen_ctx_decode(buf, len, &c)) != 0)
		return rc;
	if ((rc = dom_getinfo(d, &xi)) != 0)
		return rc;
	if (!(xi.flags & XEN_DOMINF_paused))
		return -EBUSY;
	xch = d->hv->xch;
	if (xc_domain_set_tsc_info(xch, d->domid, c.tsc_mode, c.elapsed_nsec,
	    c.gtsc_khz, c.incarnation) != 0)
		return neg_errno();
	for (uint32_t i = 0; i < c.nparams; i++)
		if (xc_hvm_param_set(xch, d->domid, c.params[i].index,
		    c.params[i].value) != 0)
			return neg_errno();
	if (c.hvm_len == 0)
		return -EBADMSG;
	/* setcontext takes a non-const buffer. */
	if ((hvm = malloc(c.hvm_len)) == NULL)
		return -ENOMEM;
	memcpy(hvm, c.hvm, c.hvm_len);
	if (xc_domain_hvm_setcontext(xch, d->domid, hvm, c.hvm_len) != 0)
		rc = neg_errno();
	free(hvm);
	return rc;
}

/* ---- toolstack ---- */

/* The domain's libxl configuration as JSON text (no NUL in *len). */
static int
xen_config_get(struct hv_dom *d, void **buf, size_t *len)
{
	libxl_domain_config cfg;
	char *json;
	size_t n;
	int rc;

	if (d == NULL || buf == NULL || len == NULL)
		return -EINVAL;
	if ((rc = need_libxl(d->hv)) != 0)
		return rc;
	libxl_domain_config_init(&cfg);
	rc = libxl_retrieve_domain_configuration(d->hv->ctx, d->domid, &cfg,
	    NULL);
	if (rc) {
		rc = libxl_errno(rc);
		goto out;
	}
	if ((json = libxl_domain_config_to_json(d->hv->ctx, &cfg)) == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	n = strlen(json);
	if (n > HV_CONFIG_MAX) {
		free(json);
		rc = -E2BIG;
		goto out;
	}
	*buf = json;
	*len = n;
out:
	libxl_domain_config_dispose(&cfg);
	return rc;
}

/* A guest name we can put in xenstore and suffix: printable, no '/'. */
static int
name_ok(const char *name)
{
	size_t n = strnlen(name, HV_NAME_MAX);

	if (n == 0 || n + sizeof(INCOMING_SUFFIX) > HV_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (name[i] <= ' ' || name[i] > '~' || name[i] == '/')
			return 0;
	return !hv_xen_is_incoming_name(name);
}

/*
 * Build the domain with libxl from the source's JSON config, under the
 * name "<name>--incoming" and the source's uuid.  libxl leaves a new
 * domain paused (xl unpauses it itself).  The kernel and ramdisk paths in
 * the config must exist on this host: libxl loads them, then the
 * migration overwrites all memory and the context.
 */
static int
xen_create(struct hv *hv, const struct hv_dom_info *shape,
    const void *config, size_t config_len, struct hv_dom **out)
{
	libxl_domain_config cfg;
	char iname[HV_NAME_MAX], *json = NULL;
	uint32_t domid = (uint32_t)INVALID_DOMID, other;
	struct hv_dom *d = NULL;
	int rc;

	if (hv == NULL || shape == NULL || config == NULL || out == NULL ||
	    config_len == 0 || config_len > HV_CONFIG_MAX ||
	    !name_ok(shape->name))
		return -EINVAL;
	if ((rc = need_libxl(hv)) != 0)
		return rc;
	snprintf(iname, sizeof(iname), "%s%s", shape->name, INCOMING_SUFFIX);
	if (libxl_name_to_domid(hv->ctx, shape->name, &other) == 0 ||
	    libxl_name_to_domid(hv->ctx, iname, &other) == 0)
		return -EEXIST;
	if ((json = malloc(config_len + 1)) == NULL)
		return -ENOMEM;
	memcpy(json, config, config_len);
	json[config_len] = '\0';
	libxl_domain_config_init(&cfg);
	if (strlen(json) != config_len ||
	    libxl_domain_config_from_json(hv->ctx, &cfg, json) != 0) {
		rc = -EBADMSG;
		goto out;
	}
	if (cfg.c_info.type != LIBXL_DOMAIN_TYPE_PVH &&
	    cfg.c_info.type != LIBXL_DOMAIN_TYPE_HVM) {
		rc = -EOPNOTSUPP;
		goto out;
	}
	if (shape->vcpus != 0 && cfg.b_info.max_vcpus != (int)shape->vcpus) {
		rc = -EINVAL;
		goto out;
	}
	free(cfg.c_info.name);
	if ((cfg.c_info.name = strdup(iname)) == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	memcpy(libxl_uuid_bytearray(&cfg.c_info.uuid), shape->uuid, 16);
	rc = libxl_domain_create_new(hv->ctx, &cfg, &domid, NULL, NULL);
	if (rc) {
		rc = libxl_errno(rc);
		goto out;
	}
	if ((rc = dom_new(hv, domid, 1, &d)) != 0)
		goto out;
	/* Mappings are checked against the source's pfn space too. */
	if (shape->pages > d->pages)
		d->pages = shape->pages;
	*out = d;
	d = NULL;
	domid = (uint32_t)INVALID_DOMID;
out:
	if (domid != (uint32_t)INVALID_DOMID)
		libxl_domain_destroy(hv->ctx, domid, NULL);
	libxl_domain_config_dispose(&cfg);
	free(json);
	return rc;
}

/* Rename "<name>--incoming" to "<name>"; the domain stays paused. */
static int
xen_commit(struct hv_dom *d)
{
	char name[HV_NAME_MAX];
	size_t n;
	int rc;

	if (d == NULL || !d->incoming)
		return -EINVAL;
	if ((rc = need_libxl(d->hv)) != 0)
		return rc;
	dom_name(d->hv, d->domid, d->name, sizeof(d->name));
	if (!hv_xen_is_incoming_name(d->name))
		return -ESTALE;
	n = strlen(d->name) - strlen(INCOMING_SUFFIX);
	memcpy(name, d->name, n);
	name[n] = '\0';
	rc = libxl_domain_rename(d->hv->ctx, d->domid, d->name, name);
	if (rc)
		return libxl_errno(rc);
	snprintf(d->name, sizeof(d->name), "%s", name);
	d->incoming = 0;
	return 0;
}

/*
 * Destroy through libxl (devices, xenstore, the domain); plain
 * xc_domain_destroy only when libxl cannot be had (no xenstored).
 */
static int
xen_destroy(struct hv_dom *d)
{
	xc_domaininfo_t xi;
	int rc;

	if (d == NULL)
		return -EINVAL;
	assert(d->nmaps == 0);
	if ((rc = dom_getinfo(d, &xi)) != 0)
		goto out;
	if (need_libxl(d->hv) == 0)
		rc = libxl_errno(libxl_domain_destroy(d->hv->ctx, d->domid,
		    NULL));
	else if (xc_domain_destroy(d->hv->xch, d->domid) != 0)
		rc = neg_errno();
out:
	xen_dom_close(d);
	return rc;
}

/*
 * Destroy domains named "<name>--incoming": a destination daemon that
 * died before GO left them half-built (only destd creates them, and it
 * calls this once at start-up, before it accepts migrations).
 */
static int
xen_reap_incoming(struct hv *hv, char ***names, size_t *nout)
{
	xc_domaininfo_t *xi = NULL;
	char **v = NULL, **nv, name[HV_NAME_MAX];
	size_t n = 0, cap = 0, len;
	uint32_t first = 1;
	int got, rc = 0, i;

	if (hv == NULL || names == NULL || nout == NULL)
		return -EINVAL;
	if ((xi = calloc(LIST_CHUNK, sizeof(*xi))) == NULL)
		return -ENOMEM;
	do {
		got = xc_domain_getinfolist(hv->xch, first, LIST_CHUNK, xi);
		if (got < 0) {
			rc = neg_errno();
			break;
		}
		for (i = 0; i < got; i++) {
			first = xi[i].domain + 1u;
			if (xi[i].domain == 0 ||
			    (xi[i].flags & XEN_DOMINF_dying))
				continue;
			dom_name(hv, xi[i].domain, name, sizeof(name));
			if (!hv_xen_is_incoming_name(name))
				continue;
			if (need_libxl(hv) == 0) {
				if (libxl_domain_destroy(hv->ctx, xi[i].domain,
				    NULL) != 0 && rc == 0)
					rc = -EIO;
			} else if (xc_domain_destroy(hv->xch,
			    xi[i].domain) != 0 && rc == 0) {
				rc = neg_errno();
			}
			if (n == cap) {
				cap = cap ? 2 * cap : 8;
				if ((nv = reallocarray(v, cap,
				    sizeof(*v))) == NULL) {
					rc = -ENOMEM;
					goto out;
				}
				v = nv;
			}
			len = strlen(name) - strlen(INCOMING_SUFFIX);
			if ((v[n] = strndup(name, len)) == NULL) {
				rc = -ENOMEM;
				goto out;
			}
			n++;
		}
	} while (got == LIST_CHUNK);
out:
	free(xi);
	if (rc == -ENOMEM) {
		while (n > 0)
			free(v[--n]);
		free(v);
		return rc;
	}
	*names = v;
	*nout = n;
	return rc;
}

const struct hv_ops hv_xen_ops = {
	.name = "xen",
	.open = xen_open,
	.close = xen_close,
	.list = xen_list,
	.dom_open = xen_dom_open,
	.dom_close = xen_dom_close,
	.dom_info = xen_dom_info,
	.map = xen_map,
	.unmap = xen_unmap,
	.logdirty_enable = xen_logdirty_enable,
	.logdirty_disable = xen_logdirty_disable,
	.dirty_fetch = xen_dirty_fetch,
	.pause = xen_pause,
	.unpause = xen_unpause,
	.throttle = xen_throttle,
	.context_get = xen_context_get,
	.context_set = xen_context_set,
	.config_get = xen_config_get,
	.create = xen_create,
	.commit = xen_commit,
	.destroy = xen_destroy,
	.reap_incoming = xen_reap_incoming,
	.outside_pfns = xen_outside_pfns,
};
