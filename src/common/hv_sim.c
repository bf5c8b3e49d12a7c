/*
 * hv_sim.c - the "sim" backend of struct hv_ops: a simulated host whose
 * domains are files in a state directory (simdom.c), whose vCPUs are a
 * "simhv run" guest process per domain.  Contracts: include/hv.h.
 * Layout, locks and the guest protocol: simdom.h, docs/SIM.md.
 */
#include <sys/stat.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hv.h"
#include "simdom.h"

#define SIM_PAUSE_TIMEOUT_MS	5000
#define SIM_START_TIMEOUT_MS	60000

/* Read-only after open(). */
struct hv {
	char		*dir;
	char		*simhv;		/* NULL: sd_find_simhv() searches */
};

/* Owned by the thread that opened it. */
struct hv_dom {
	struct hv	*hv;
	struct simdom	*sd;
	size_t		 nmaps;		/* live hv_maps */
	int		 created;	/* by sim_create: HV_DOM_ZEROED */
};

struct hv_map {
	size_t		 n;
};

static int
sim_open(const struct hv_params *p, struct hv **out)
{
	struct hv *hv;
	struct stat st;

	if (p == NULL || p->state_dir == NULL)
		return -EINVAL;
	if (stat(p->state_dir, &st) == -1)
		return -errno;
	if (!S_ISDIR(st.st_mode))
		return -ENOTDIR;
	if ((hv = calloc(1, sizeof(*hv))) == NULL)
		return -ENOMEM;
	if ((hv->dir = strdup(p->state_dir)) == NULL ||
	    (p->simhv_path != NULL &&
	    (hv->simhv = strdup(p->simhv_path)) == NULL)) {
		free(hv->dir);
		free(hv);
		return -ENOMEM;
	}
	*out = hv;
	return 0;
}

static void
sim_close(struct hv *hv)
{
	if (hv == NULL)
		return;
	free(hv->dir);
	free(hv->simhv);
	free(hv);
}

static void
fill_info(struct simdom *sd, struct hv_dom_info *out)
{
	struct sd_ctrl *c = sd->ctrl;
	uint32_t flags = __atomic_load_n(&c->flags, __ATOMIC_SEQ_CST);

	memset(out, 0, sizeof(*out));
	out->domid = c->domid;
	out->vcpus = c->vcpus;
	out->pages = c->pages;
	memcpy(out->uuid, c->uuid, sizeof(out->uuid));
	snprintf(out->name, sizeof(out->name), "%s", sd->name);
	if (sd_guest_alive(sd))
		out->flags |= HV_DOM_RUNNING;
	if (sd_paused(sd) || __atomic_load_n(&c->pause_req, __ATOMIC_SEQ_CST))
		out->flags |= HV_DOM_PAUSED;
	if (sd->incoming || (flags & SD_F_INCOMING))
		out->flags |= HV_DOM_INCOMING;
	if (flags & SD_F_DYING)
		out->flags |= HV_DOM_DYING;
}

static int
sim_list(struct hv *hv, struct hv_dom_info **out, size_t *n)
{
	struct hv_dom_info *v;
	struct simdom *sd;
	char **names;
	size_t i, cnt = 0, nn;
	int r;

	if ((r = sd_list(hv->dir, &names, &nn)) < 0)
		return r;
	if ((v = calloc(nn ? nn : 1, sizeof(*v))) == NULL) {
		sd_list_free(names, nn);
		return -ENOMEM;
	}
	for (i = 0; i < nn; i++) {
		/* A domain destroyed meanwhile is simply not listed. */
		if (sd_open(hv->dir, names[i], 0, &sd) < 0)
			continue;
		fill_info(sd, &v[cnt]);
		if (!(v[cnt].flags & HV_DOM_INCOMING))
			cnt++;
		sd_close(sd);
	}
	sd_list_free(names, nn);
	*out = v;
	*n = cnt;
	return 0;
}

static int
sim_dom_open(struct hv *hv, const char *name, struct hv_dom **out)
{
	struct hv_dom *d;
	int r;

	if ((d = calloc(1, sizeof(*d))) == NULL)
		return -ENOMEM;
	if ((r = sd_open_any(hv->dir, name, 0, &d->sd)) < 0) {
		free(d);
		return r;
	}
	d->hv = hv;
	*out = d;
	return 0;
}

static void
sim_dom_close(struct hv_dom *d)
{
	if (d == NULL)
		return;
	sd_close(d->sd);
	free(d);
}

static int
sim_dom_info(struct hv_dom *d, struct hv_dom_info *out)
{
	fill_info(d->sd, out);
	/* sd_create() grew the file from nothing: its pages are holes. */
	if (d->created && (out->flags & HV_DOM_INCOMING))
		out->flags |= HV_DOM_ZEROED;
	return 0;
}

/* Pages of a sim domain are never holes: pointers straight into the
 * shared mapping, which lives as long as the handle. */
static int
sim_map(struct hv_dom *d, const uint64_t *pfns, size_t n, int writable,
    void **pages, struct hv_map **out)
{
	struct simdom *sd = d->sd;
	struct hv_map *m;
	size_t i;

	if (n > HV_MAP_BATCH_MAX)
		return -EINVAL;
	for (i = 0; i < n; i++)
		if (pfns[i] >= sd->ctrl->pages)
			return -EINVAL;
	if (writable && (!sd->incoming || !sd->mem_writable))
		return -EPERM;
	if ((m = malloc(sizeof(*m))) == NULL)
		return -ENOMEM;
	m->n = n;
	for (i = 0; i < n; i++)
		pages[i] = sd->mem + pfns[i] * HV_PAGE_SIZE;
	d->nmaps++;
	*out = m;
	return 0;
}

static void
sim_unmap(struct hv_dom *d, struct hv_map *m)
{
	if (m == NULL)
		return;
	d->nmaps--;
	free(m);
}

static int
sim_logdirty_enable(struct hv_dom *d)
{
	sd_logdirty_enable(d->sd);
	return 0;
}

static int
sim_logdirty_disable(struct hv_dom *d)
{
	sd_logdirty_disable(d->sd);
	return 0;
}

static int
sim_dirty_fetch(struct hv_dom *d, uint64_t *bitmap, int final)
{
	(void)final;
	return sd_dirty_fetch(d->sd, bitmap);
}

static int
sim_pause(struct hv_dom *d)
{
	return sd_pause(d->sd, SIM_PAUSE_TIMEOUT_MS);
}

static int
sim_unpause(struct hv_dom *d)
{
	if (d->sd->incoming)
		return -EINVAL;
	return sd_unpause(d->sd, d->hv->simhv, SIM_START_TIMEOUT_MS);
}

/* The throttle lives in the domain file; nothing to save. */
static int
sim_throttle(struct hv_dom *d, unsigned percent, uint64_t *saved)
{
	(void)saved;
	return sd_throttle_set(d->sd, percent);
}

static int
sim_context_get(struct hv_dom *d, void **buf, size_t *len)
{
	struct sd_ctrl *c = d->sd->ctrl;
	uint32_t n;
	void *p;

	if (!sd_paused(d->sd))
		return -EBUSY;
	n = __atomic_load_n(&c->ctx_len, __ATOMIC_ACQUIRE);
	if (n == 0)
		return -ENODATA;
	if (n > SD_CONTEXT_MAX)
		return -EIO;
	if ((p = malloc(n)) == NULL)
		return -ENOMEM;
	memcpy(p, c->context, n);
	*buf = p;
	*len = n;
	return 0;
}

/* Only while no guest process runs: a live guest keeps its own state. */
static int
sim_context_set(struct hv_dom *d, const void *buf, size_t len)
{
	struct sd_ctrl *c = d->sd->ctrl;

	if (len == 0 || len > SD_CONTEXT_MAX)
		return -EINVAL;
	if (sd_guest_alive(d->sd))
		return -EBUSY;
	__atomic_store_n(&c->ctx_len, 0, __ATOMIC_SEQ_CST);
	memcpy(c->context, buf, len);
	__atomic_store_n(&c->ctx_len, (uint32_t)len, __ATOMIC_RELEASE);
	return 0;
}

static int
sim_config_get(struct hv_dom *d, void **buf, size_t *len)
{
	char text[SD_CONFIG_TEXT_MAX];
	int n;

	if ((n = sd_config_format(&d->sd->ctrl->cfg, text, sizeof(text))) < 0)
		return n;
	if ((*buf = strdup(text)) == NULL)
		return -ENOMEM;
	*len = (size_t)n;
	return 0;
}

static int
sim_create(struct hv *hv, const struct hv_dom_info *shape,
    const void *config, size_t config_len, struct hv_dom **out)
{
	struct sd_config cfg;
	struct hv_dom *d;
	char name[HV_NAME_MAX];
	int r;

	if (shape == NULL || config == NULL ||
	    memchr(shape->name, '\0', sizeof(shape->name)) == NULL)
		return -EINVAL;
	memcpy(name, shape->name, sizeof(name));
	if (!sd_name_valid(name) || shape->pages < SD_PAGES_MIN ||
	    shape->pages > SD_PAGES_MAX)
		return -EINVAL;
	if ((r = sd_config_parse(config, config_len, &cfg)) < 0)
		return r;
	if ((d = calloc(1, sizeof(*d))) == NULL)
		return -ENOMEM;
	if ((r = sd_create(hv->dir, name, shape->pages, shape->vcpus,
	    shape->uuid, &cfg, &d->sd)) < 0) {
		free(d);
		return r;
	}
	d->hv = hv;
	d->created = 1;
	*out = d;
	return 0;
}

static int
sim_commit(struct hv_dom *d)
{
	return sd_commit(d->sd);
}

static int
sim_destroy(struct hv_dom *d)
{
	int r = sd_destroy(d->sd);

	free(d);
	return r;
}

static int
sim_reap_incoming(struct hv *hv, char ***names, size_t *n)
{
	if (hv == NULL || names == NULL || n == NULL)
		return -EINVAL;
	return sd_reap_incoming(hv->dir, names, n);
}

/* Nothing but the guest process writes a sim guest's memory. */
static size_t
sim_outside_pfns(struct hv_dom *d, const uint64_t *cand, size_t n,
    uint64_t *out, size_t max)
{
	(void)d;
	(void)cand;
	(void)n;
	(void)out;
	(void)max;
	return 0;
}

const struct hv_ops hv_sim_ops = {
	.name = "sim",
	.open = sim_open,
	.close = sim_close,
	.list = sim_list,
	.dom_open = sim_dom_open,
	.dom_close = sim_dom_close,
	.dom_info = sim_dom_info,
	.map = sim_map,
	.unmap = sim_unmap,
	.logdirty_enable = sim_logdirty_enable,
	.logdirty_disable = sim_logdirty_disable,
	.dirty_fetch = sim_dirty_fetch,
	.pause = sim_pause,
	.unpause = sim_unpause,
	.throttle = sim_throttle,
	.context_get = sim_context_get,
	.context_set = sim_context_set,
	.config_get = sim_config_get,
	.create = sim_create,
	.commit = sim_commit,
	.destroy = sim_destroy,
	.reap_incoming = sim_reap_incoming,
	.outside_pfns = sim_outside_pfns,
};
