/*
 * test_hv_xen.c - unit tests of the Xen backend that need no hypervisor:
 * the ops table, argument checks, open() without Xen, the dirty bitmap
 * import, the context blob codec, the small parsers, the run-state flags
 * and the cooperative-suspend wait (driven by a fake clock).  Everything that
 * needs a running Xen is in the lab (tests/xen/, docs/XEN.md).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>
#include <xenctrl.h>	/* XEN_DOMINF_*, SHUTDOWN_* (Xen's stable ABI) */

#include "hv.h"

/* Internal helpers of hv_xen.c (see there); must match its definitions. */
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
	const uint8_t	*hvm;
	uint32_t	hvm_len;
};
uint16_t hv_xen_throttle_cap(uint16_t own_cap, uint32_t vcpus,
	    unsigned percent);
uint64_t hv_xen_throttle_save(uint16_t own_cap);
int	hv_xen_throttle_saved_cap(uint64_t saved, uint16_t *cap);
int	hv_xen_sched_capped(uint32_t sched_id);
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
enum hv_xen_susp {
	HV_XEN_SUSP_WAIT = 0,
	HV_XEN_SUSP_DONE,
	HV_XEN_SUSP_CANCEL,
	HV_XEN_SUSP_TIMEDOUT,
	HV_XEN_SUSP_GONE,
};
struct hv_xen_susp_wait {
	uint64_t	start_ms;
	uint64_t	ack_at_ms;
	uint32_t	ack_timeout_ms;
	uint32_t	done_timeout_ms;
	int		acked;
};
void	hv_xen_susp_init(struct hv_xen_susp_wait *w, uint64_t now_ms);
enum hv_xen_susp hv_xen_susp_next(struct hv_xen_susp_wait *w,
	    uint64_t now_ms, uint32_t dominf_flags, int node_acked);

/* HVM param numbers from xen/hvm/params.h used below. */
#define P_STORE_PFN	1
#define P_STORE_EVTCHN	2
#define P_CONSOLE_PFN	17
#define P_CONSOLE_EVTCHN 18

static int
have_privcmd(void)
{
	struct stat st;

	return stat("/dev/xen/privcmd", &st) == 0 ||
	    stat("/proc/xen/privcmd", &st) == 0;
}

static void
test_ops_complete(void **state)
{
	const struct hv_ops *o = &hv_xen_ops;

	assert_string_equal(o->name, "xen");
	assert_non_null(o->open);
	assert_non_null(o->close);
	assert_non_null(o->list);
	assert_non_null(o->dom_open);
	assert_non_null(o->dom_close);
	assert_non_null(o->dom_info);
	assert_non_null(o->map);
	assert_non_null(o->unmap);
	assert_non_null(o->logdirty_enable);
	assert_non_null(o->logdirty_disable);
	assert_non_null(o->dirty_fetch);
	assert_non_null(o->pause);
	assert_non_null(o->unpause);
	assert_non_null(o->context_get);
	assert_non_null(o->context_set);
	assert_non_null(o->config_get);
	assert_non_null(o->create);
	assert_non_null(o->commit);
	assert_non_null(o->destroy);
}

/* Without Xen, open() fails with -ENOENT and leaves *out alone. */
static void
test_open_without_xen(void **state)
{
	struct hv *hv = (struct hv *)0x1;
	struct hv_params p = { 0 };

	if (have_privcmd())
		skip();
	assert_int_equal(hv_xen_ops.open(&p, &hv), -ENOENT);
	assert_ptr_equal(hv, (struct hv *)0x1);
	assert_int_equal(hv_xen_ops.open(NULL, &hv), -ENOENT);
}

static void
test_null_arguments(void **state)
{
	const struct hv_ops *o = &hv_xen_ops;
	struct hv_dom_info info, *list;
	struct hv_dom *d;
	struct hv_map *m;
	uint64_t pfn = 0, bm = 0;
	void *page, *buf;
	size_t n;

	assert_int_equal(o->open(NULL, NULL), -EINVAL);
	assert_int_equal(o->list(NULL, &list, &n), -EINVAL);
	assert_int_equal(o->dom_open(NULL, "1", &d), -EINVAL);
	assert_int_equal(o->dom_info(NULL, &info), -EINVAL);
	assert_int_equal(o->map(NULL, &pfn, 1, 0, &page, &m), -EINVAL);
	assert_int_equal(o->logdirty_enable(NULL), -EINVAL);
	assert_int_equal(o->logdirty_disable(NULL), -EINVAL);
	assert_int_equal(o->dirty_fetch(NULL, &bm, 0), -EINVAL);
	assert_int_equal(o->pause(NULL), -EINVAL);
	assert_int_equal(o->unpause(NULL), -EINVAL);
	assert_int_equal(o->throttle(NULL, 20, &bm), -EINVAL);
	assert_int_equal(o->context_get(NULL, &buf, &n), -EINVAL);
	assert_int_equal(o->context_set(NULL, "x", 1), -EINVAL);
	assert_int_equal(o->config_get(NULL, &buf, &n), -EINVAL);
	assert_int_equal(o->create(NULL, &info, "{}", 2, &d), -EINVAL);
	assert_int_equal(o->commit(NULL), -EINVAL);
	assert_int_equal(o->destroy(NULL), -EINVAL);
	/* Destructors accept NULL. */
	o->close(NULL);
	o->dom_close(NULL);
	o->unmap(NULL, NULL);
}

/* Xen's unsigned long bitmap is imported bit for bit, tail cleared. */
static void
test_bitmap_import(void **state)
{
	static const struct {
		uint64_t nbits;
		size_t	 words;
		uint64_t last;	/* expected last word of an all-ones source */
	} cases[] = {
		{ 1, 1, 0x1 },
		{ 63, 1, 0x7fffffffffffffffull },
		{ 64, 1, ~0ull },
		{ 65, 2, 0x1 },
		{ 0xff000, 0xff000 / 64, ~0ull },	/* a PVH guest */
		{ 1000, 16, (1ull << (1000 % 64)) - 1 },
	};

	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		size_t w = cases[c].words;
		unsigned long *src = malloc((w + 1) * sizeof(*src));
		uint64_t *dst = calloc(w + 1, sizeof(*dst));

		assert_non_null(src);
		assert_non_null(dst);
		memset(src, 0xff, (w + 1) * sizeof(*src));
		dst[w] = 0x5a5a;	/* past the end: untouched */
		hv_xen_bitmap_import(dst, src, cases[c].nbits);
		for (size_t i = 0; i + 1 < w; i++)
			assert_int_equal(dst[i], ~0ull);
		assert_int_equal(dst[w - 1], cases[c].last);
		assert_int_equal(dst[w], 0x5a5a);
		free(src);
		free(dst);
	}

	/* Bit p of Xen's map is pfn p in ours. */
	{
		unsigned long src[4] = { 0 };
		uint64_t dst[4] = { 0 };
		const uint64_t pfns[] = { 0, 5, 63, 64, 130, 255 };

		for (size_t i = 0; i < 6; i++)
			src[pfns[i] / (8 * sizeof(long))] |=
			    1ul << (pfns[i] % (8 * sizeof(long)));
		hv_xen_bitmap_import(dst, src, 256);
		for (uint64_t p = 0; p < 256; p++) {
			int want = 0;

			for (size_t i = 0; i < 6; i++)
				want |= pfns[i] == p;
			assert_int_equal((dst[p / 64] >> (p % 64)) & 1, want);
		}
	}
}

static void
fill_ctx(struct hv_xen_ctx *c, uint8_t *hvm, uint32_t hvm_len)
{
	memset(c, 0, sizeof(*c));
	c->tsc_mode = 2;
	c->gtsc_khz = 2400000;
	c->elapsed_nsec = 0x0123456789abcdefull;
	c->incarnation = 7;
	c->nparams = 2;
	c->params[0].index = P_STORE_PFN;
	c->params[0].value = 0xfeffc;
	c->params[1].index = P_CONSOLE_PFN;
	c->params[1].value = 0xfefff;
	for (uint32_t i = 0; i < hvm_len; i++)
		hvm[i] = (uint8_t)(i * 7 + 1);
	c->hvm = hvm;
	c->hvm_len = hvm_len;
}

static void
test_ctx_roundtrip(void **state)
{
	static const uint32_t lens[] = { 1, 7, 8, 9, 4096, 60001 };

	for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
		uint8_t *hvm = malloc(lens[k]);
		struct hv_xen_ctx c, d;
		void *buf;
		size_t len;

		assert_non_null(hvm);
		fill_ctx(&c, hvm, lens[k]);
		assert_int_equal(hv_xen_ctx_encode(&c, &buf, &len), 0);
		assert_int_equal(len % 8, 0);
		assert_int_equal(len, (48 + 2 * 16 + lens[k] + 7) / 8 * 8);
		assert_memory_equal(buf, "SMXHVMC1", 8);
		assert_int_equal(hv_xen_ctx_decode(buf, len, &d), 0);
		assert_int_equal(d.tsc_mode, c.tsc_mode);
		assert_int_equal(d.gtsc_khz, c.gtsc_khz);
		assert_int_equal(d.elapsed_nsec, c.elapsed_nsec);
		assert_int_equal(d.incarnation, c.incarnation);
		assert_int_equal(d.nparams, 2);
		assert_int_equal(d.params[0].index, P_STORE_PFN);
		assert_int_equal(d.params[0].value, 0xfeffc);
		assert_int_equal(d.params[1].index, P_CONSOLE_PFN);
		assert_int_equal(d.params[1].value, 0xfefff);
		assert_int_equal(d.hvm_len, lens[k]);
		assert_memory_equal(d.hvm, hvm, lens[k]);
		free(buf);
		free(hvm);
	}
}

/* Fixed little-endian layout, independent of the host's struct layout. */
static void
test_ctx_layout(void **state)
{
	static const uint8_t want[] = {
		'S', 'M', 'X', 'H', 'V', 'M', 'C', '1',
		1, 0, 0, 0, 0, 0, 0, 0,				/* version, flags */
		2, 0, 0, 0, 0x40, 0x9f, 0x24, 0,		/* tsc mode, khz */
		0xef, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01,	/* nsec */
		7, 0, 0, 0, 2, 0, 0, 0,				/* incarn., n */
		1, 0, 0, 0, 0, 0, 0, 0,				/* hvm_len */
		1, 0, 0, 0, 0, 0, 0, 0,				/* param 0 */
		0xfc, 0xff, 0x0f, 0, 0, 0, 0, 0,
		17, 0, 0, 0, 0, 0, 0, 0,			/* param 1 */
		0xff, 0xff, 0x0f, 0, 0, 0, 0, 0,
		1, 0, 0, 0, 0, 0, 0, 0,				/* hvm, pad */
	};
	uint8_t hvm[1];
	struct hv_xen_ctx c;
	void *buf;
	size_t len;

	fill_ctx(&c, hvm, 1);
	c.gtsc_khz = 0x249f40;
	c.params[0].value = 0xffffc;
	c.params[1].value = 0xfffff;
	assert_int_equal(hv_xen_ctx_encode(&c, &buf, &len), 0);
	assert_int_equal(len, sizeof(want));
	assert_memory_equal(buf, want, sizeof(want));
	free(buf);
}

/* Every malformed blob is refused with -EBADMSG, nothing written. */
static void
test_ctx_decode_rejects(void **state)
{
	uint8_t hvm[16], *b;
	struct hv_xen_ctx c, d;
	void *buf;
	size_t len;

	fill_ctx(&c, hvm, sizeof(hvm));
	assert_int_equal(hv_xen_ctx_encode(&c, &buf, &len), 0);
	b = buf;
	memset(&d, 0x77, sizeof(d));

	assert_int_equal(hv_xen_ctx_decode(b, 0, &d), -EBADMSG);
	assert_int_equal(hv_xen_ctx_decode(b, 47, &d), -EBADMSG);
	assert_int_equal(hv_xen_ctx_decode(b, len - 8, &d), -EBADMSG);
	assert_int_equal(hv_xen_ctx_decode(b, len - 1, &d), -EBADMSG);
	assert_int_equal(hv_xen_ctx_decode(NULL, len, &d), -EINVAL);

	b[0] ^= 1;					/* magic */
	assert_int_equal(hv_xen_ctx_decode(b, len, &d), -EBADMSG);
	b[0] ^= 1;
	b[8] = 2;					/* version */
	assert_int_equal(hv_xen_ctx_decode(b, len, &d), -EBADMSG);
	b[8] = 1;
	b[36] = 17;					/* nparams > max */
	assert_int_equal(hv_xen_ctx_decode(b, len, &d), -EBADMSG);
	b[36] = 3;					/* count vs length */
	assert_int_equal(hv_xen_ctx_decode(b, len, &d), -EBADMSG);
	b[36] = 2;
	b[43] = 0x80;					/* hvm_len huge */
	assert_int_equal(hv_xen_ctx_decode(b, len, &d), -EBADMSG);
	b[43] = 0;
	b[48] = P_STORE_EVTCHN;				/* not restorable */
	assert_int_equal(hv_xen_ctx_decode(b, len, &d), -EBADMSG);
	b[48] = P_CONSOLE_PFN;				/* duplicate */
	assert_int_equal(hv_xen_ctx_decode(b, len, &d), -EBADMSG);
	b[48] = P_STORE_PFN;
	assert_int_equal(d.nparams, 0x77777777);	/* never written */

	/* The flags and reserved fields are ignored on receive. */
	b[12] = 0xff;
	b[44] = 0xff;
	b[52] = 0xff;
	assert_int_equal(hv_xen_ctx_decode(b, len, &d), 0);

	assert_int_equal(d.nparams, 2);
	free(buf);

	/* Non-zero padding. */
	fill_ctx(&c, hvm, 3);
	assert_int_equal(hv_xen_ctx_encode(&c, &buf, &len), 0);
	((uint8_t *)buf)[len - 1] = 1;
	assert_int_equal(hv_xen_ctx_decode(buf, len, &d), -EBADMSG);
	free(buf);
}

static void
test_ctx_encode_rejects(void **state)
{
	uint8_t hvm[1];
	struct hv_xen_ctx c;
	void *buf = (void *)0x1;
	size_t len = 99;

	fill_ctx(&c, hvm, 1);
	c.nparams = HV_XEN_PARAMS_MAX + 1;
	assert_int_equal(hv_xen_ctx_encode(&c, &buf, &len), -EINVAL);
	fill_ctx(&c, hvm, 1);
	c.hvm_len = HV_CONTEXT_MAX;
	assert_int_equal(hv_xen_ctx_encode(&c, &buf, &len), -E2BIG);
	c.hvm = NULL;
	assert_int_equal(hv_xen_ctx_encode(&c, &buf, &len), -EINVAL);
	assert_ptr_equal(buf, (void *)0x1);
	assert_int_equal(len, 99);
}

static void
test_params_allowed(void **state)
{
	assert_true(hv_xen_param_allowed(P_STORE_PFN));
	assert_true(hv_xen_param_allowed(P_CONSOLE_PFN));
	/* Event channels belong to the destination's toolstack. */
	assert_false(hv_xen_param_allowed(P_STORE_EVTCHN));
	assert_false(hv_xen_param_allowed(P_CONSOLE_EVTCHN));
	assert_false(hv_xen_param_allowed(0));
	assert_false(hv_xen_param_allowed(0xffffffffu));
}

static void
test_parse_domid(void **state)
{
	static const struct {
		const char	*s;
		int		 rc;
		uint32_t	 v;
	} cases[] = {
		{ "1", 0, 1 },
		{ "42", 0, 42 },
		{ "32751", 0, 32751 },		/* DOMID_FIRST_RESERVED - 1 */
		{ "32752", -ERANGE, 0 },	/* DOMID_FIRST_RESERVED */
		{ "99999999999", -ERANGE, 0 },
		{ "0", -ERANGE, 0 },		/* Domain-0 */
		{ "", -EINVAL, 0 },
		{ "-1", -EINVAL, 0 },
		{ "1x", -EINVAL, 0 },
		{ "guest1", -EINVAL, 0 },
		{ " 1", -EINVAL, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint32_t v = 12345;

		assert_int_equal(hv_xen_parse_domid(cases[i].s, &v),
		    cases[i].rc);
		assert_int_equal(v, cases[i].rc == 0 ? cases[i].v : 12345);
	}
}

static void
test_incoming_name(void **state)
{
	assert_true(hv_xen_is_incoming_name("guest--incoming"));
	assert_false(hv_xen_is_incoming_name("--incoming"));
	assert_false(hv_xen_is_incoming_name("guest"));
	assert_false(hv_xen_is_incoming_name("guest--incomin"));
	assert_false(hv_xen_is_incoming_name(""));
}

/* XEN_DOMINF_* flags of a domain shut down with code reason. */
#define SHUT(reason)	(XEN_DOMINF_shutdown | \
	    ((uint32_t)(reason) << XEN_DOMINF_shutdownshift))

static void
test_shutdown_reason(void **state)
{
	assert_int_equal(hv_xen_shutdown_reason(0), -1);
	assert_int_equal(hv_xen_shutdown_reason(XEN_DOMINF_paused), -1);
	/* The code is only meaningful with the shutdown flag. */
	assert_int_equal(hv_xen_shutdown_reason(
	    SHUTDOWN_suspend << XEN_DOMINF_shutdownshift), -1);
	assert_int_equal(hv_xen_shutdown_reason(SHUT(SHUTDOWN_poweroff)),
	    SHUTDOWN_poweroff);
	assert_int_equal(hv_xen_shutdown_reason(SHUT(SHUTDOWN_suspend) |
	    XEN_DOMINF_hvm_guest | XEN_DOMINF_hap), SHUTDOWN_suspend);
	assert_int_equal(hv_xen_shutdown_reason(SHUT(255)), 255);
}

static void
test_dom_flags(void **state)
{
	static const struct {
		uint32_t xen, hv;
	} t[] = {
		{ 0, HV_DOM_RUNNING },
		{ XEN_DOMINF_hvm_guest | XEN_DOMINF_running, HV_DOM_RUNNING },
		{ XEN_DOMINF_paused, HV_DOM_PAUSED },
		/* Suspended by pause(): paused, whether or not also paused. */
		{ SHUT(SHUTDOWN_suspend), HV_DOM_PAUSED },
		{ SHUT(SHUTDOWN_suspend) | XEN_DOMINF_paused, HV_DOM_PAUSED },
		/* Shut down for good: neither running nor paused. */
		{ SHUT(SHUTDOWN_poweroff), 0 },
		{ SHUT(SHUTDOWN_crash), 0 },
		{ SHUT(SHUTDOWN_poweroff) | XEN_DOMINF_dying, HV_DOM_DYING },
		{ XEN_DOMINF_paused | XEN_DOMINF_dying,
		    HV_DOM_PAUSED | HV_DOM_DYING },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		assert_int_equal(hv_xen_dom_flags(t[i].xen), t[i].hv);
}

static void
test_want_suspend(void **state)
{
	/* libxl's rule: PV drivers (a callback irq) and no ACPI S-state. */
	assert_true(hv_xen_want_suspend(1, 0));
	assert_true(hv_xen_want_suspend(0x0200000000000000ull | 0xf3, 0));
	assert_false(hv_xen_want_suspend(0, 0));
	assert_false(hv_xen_want_suspend(1, 3));
	assert_false(hv_xen_want_suspend(0, 3));
}

static void
test_suspend_acked(void **state)
{
	assert_false(hv_xen_suspend_acked("suspend"));
	assert_true(hv_xen_suspend_acked(NULL));
	assert_true(hv_xen_suspend_acked(""));
	assert_true(hv_xen_suspend_acked("suspen"));
	assert_true(hv_xen_suspend_acked("suspend "));
	assert_true(hv_xen_suspend_acked("poweroff"));
}

/*
 * The suspend wait, step by step with a fake clock.  Each row is a
 * sequence of samples { ms since the request, domain flags, node acked }
 * and the expected verdict of each.
 */
static void
test_suspend_wait(void **state)
{
	struct step {
		uint64_t ms;
		uint32_t flags;
		int acked;
		enum hv_xen_susp want;
	};
	static const struct {
		const char *what;
		struct step s[6];
		int n;
	} t[] = {
		{ "acknowledges, then suspends", {
			{ 0, 0, 0, HV_XEN_SUSP_WAIT },
			{ 30, 0, 1, HV_XEN_SUSP_WAIT },
			{ 9000, 0, 0, HV_XEN_SUSP_WAIT },  /* acked sticks */
			{ 12000, SHUT(SHUTDOWN_suspend), 1,
			    HV_XEN_SUSP_DONE } }, 4 },
		{ "suspends before we see the ack", {
			{ 1, SHUT(SHUTDOWN_suspend), 0,
			    HV_XEN_SUSP_DONE } }, 1 },
		{ "never answers: cancel at the ack timeout", {
			{ 0, 0, 0, HV_XEN_SUSP_WAIT },
			{ 9999, 0, 0, HV_XEN_SUSP_WAIT },
			{ 10000, 0, 0, HV_XEN_SUSP_CANCEL } }, 3 },
		{ "acknowledges late but in time", {
			{ 9999, 0, 1, HV_XEN_SUSP_WAIT },
			{ 69998, 0, 1, HV_XEN_SUSP_WAIT },
			{ 69999, 0, 1, HV_XEN_SUSP_TIMEDOUT } }, 3 },
		{ "acknowledges, never suspends", {
			{ 5, 0, 1, HV_XEN_SUSP_WAIT },
			{ 60004, 0, 1, HV_XEN_SUSP_WAIT },
			{ 60005, 0, 1, HV_XEN_SUSP_TIMEDOUT } }, 3 },
		{ "powers off instead", {
			{ 5, 0, 1, HV_XEN_SUSP_WAIT },
			{ 50, SHUT(SHUTDOWN_poweroff), 1,
			    HV_XEN_SUSP_GONE } }, 2 },
		{ "crashes before answering", {
			{ 5, SHUT(SHUTDOWN_crash), 0, HV_XEN_SUSP_GONE } }, 1 },
		{ "destroyed meanwhile", {
			{ 5, XEN_DOMINF_dying, 0, HV_XEN_SUSP_GONE } }, 1 },
		{ "already paused by someone, answers anyway", {
			{ 5, XEN_DOMINF_paused, 1, HV_XEN_SUSP_WAIT },
			{ 7, XEN_DOMINF_paused | SHUT(SHUTDOWN_suspend), 1,
			    HV_XEN_SUSP_DONE } }, 2 },
	};
	const uint64_t t0 = 1000000;

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct hv_xen_susp_wait w;

		hv_xen_susp_init(&w, t0);
		for (int j = 0; j < t[i].n; j++) {
			const struct step *s = &t[i].s[j];
			enum hv_xen_susp got;

			got = hv_xen_susp_next(&w, t0 + s->ms, s->flags,
			    s->acked);
			if (got != s->want)
				fail_msg("%s, step %d: got %d, want %d",
				    t[i].what, j, got, s->want);
		}
	}
}

/* The cap of a throttle: (100 - P)% of the domain's own cap, or of 100%
 * per vCPU without one; never 0 (which would mean "no cap"). */
static void
test_throttle_cap(void **state)
{
	static const struct {
		uint16_t	own;
		uint32_t	vcpus;
		unsigned	pct;
		uint16_t	want;
	} t[] = {
		{ 0, 1, 20, 80 },
		{ 0, 4, 20, 320 },
		{ 0, 4, 99, 4 },
		{ 0, 1, 99, 1 },
		{ 50, 4, 20, 40 },	/* an existing cap is the base */
		{ 50, 4, 99, 1 },	/* 0.5 rounds down, but not to 0 */
		{ 1, 2, 50, 1 },
		{ 0, 0, 50, 50 },	/* unknown vCPU count: one */
		{ 0, 1000, 10, 58981 },	/* 100000% clamped to 65535 first */
		{ 0, 1, 150, 1 },	/* past 99 is 99 */
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (hv_xen_throttle_cap(t[i].own, t[i].vcpus, t[i].pct) !=
		    t[i].want)
			fail_msg("case %zu: got %u, want %u", i,
			    hv_xen_throttle_cap(t[i].own, t[i].vcpus,
			    t[i].pct), t[i].want);
}

/* The saved record round-trips every cap, 0 ("none") included, and a
 * record that is not one is refused. */
static void
test_throttle_saved(void **state)
{
	static const uint16_t caps[] = { 0, 1, 100, 400, 65535 };
	uint16_t cap;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		uint64_t s = hv_xen_throttle_save(caps[i]);

		assert_true(s != 0);
		assert_int_equal(hv_xen_throttle_saved_cap(s, &cap), 0);
		assert_int_equal(cap, caps[i]);
	}
	cap = 7;
	assert_int_equal(hv_xen_throttle_saved_cap(0, &cap), -EINVAL);
	assert_int_equal(hv_xen_throttle_saved_cap(100, &cap), -EINVAL);
	assert_int_equal(hv_xen_throttle_saved_cap(hv_xen_throttle_save(5) |
	    (1ull << 40), &cap), -EINVAL);
	assert_int_equal(cap, 7);
	assert_true(hv_xen_sched_capped(XEN_SCHEDULER_CREDIT));
	assert_true(hv_xen_sched_capped(XEN_SCHEDULER_CREDIT2));
	assert_false(hv_xen_sched_capped(XEN_SCHEDULER_RTDS));
	assert_false(hv_xen_sched_capped(XEN_SCHEDULER_ARINC653));
	assert_false(hv_xen_sched_capped(XEN_SCHEDULER_NULL));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ops_complete),
		cmocka_unit_test(test_open_without_xen),
		cmocka_unit_test(test_null_arguments),
		cmocka_unit_test(test_bitmap_import),
		cmocka_unit_test(test_ctx_roundtrip),
		cmocka_unit_test(test_ctx_layout),
		cmocka_unit_test(test_ctx_decode_rejects),
		cmocka_unit_test(test_ctx_encode_rejects),
		cmocka_unit_test(test_params_allowed),
		cmocka_unit_test(test_parse_domid),
		cmocka_unit_test(test_incoming_name),
		cmocka_unit_test(test_shutdown_reason),
		cmocka_unit_test(test_dom_flags),
		cmocka_unit_test(test_want_suspend),
		cmocka_unit_test(test_suspend_acked),
		cmocka_unit_test(test_suspend_wait),
		cmocka_unit_test(test_throttle_cap),
		cmocka_unit_test(test_throttle_saved),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
