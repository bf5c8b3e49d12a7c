/*
 * simhv - the simulated hypervisor's command-line tool and guest.
 *
 *   simhv create  --state-dir DIR --name NAME --pages N
 *                 --profile idle|micro|writer [--share F] [--rate N] [--seed S]
 *                 [--compressible F]
 *   simhv start   --state-dir DIR NAME
 *   simhv run     --state-dir DIR NAME
 *   simhv digest  --state-dir DIR NAME
 *   simhv list    --state-dir DIR [--json]
 *   simhv check   --state-dir DIR NAME [--json]
 *   simhv status  --state-dir DIR NAME [--json]
 *   simhv poke    --state-dir DIR NAME PFN
 *   simhv destroy --state-dir DIR NAME
 *
 * Exit status: 0 success, 1 failure (check: memory is bad), 2 usage.
 */
#include <sys/random.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "pagehash.h"
#include "simdom.h"
#include "simguest.h"

#define EXIT_USAGE	2
#define START_TIMEOUT_MS	60000

struct opts {
	const char	*dir;
	const char	*name;
	const char	*profile;
	const char	*share;
	const char	*rate;
	const char	*seed;
	const char	*compressible;
	const char	*pages;
	const char	*from;		/* poke --from FILE */
	int		 json;
	int		 release;	/* heap --release */
	int		 argc;		/* positional arguments */
	char	       **argv;
};

struct cmd {
	const char	*name;
	int		 npos;		/* positional arguments */
	int		 json;		/* --json allowed */
	int		(*fn)(struct opts *);
	const char	*usage;
};

static const char *progname = "simhv";

static int
usage_err(const char *cmd, const char *usage, const char *what)
{
	fprintf(stderr, "%s %s: %s\nusage: %s %s %s\n", progname, cmd, what,
	    progname, cmd, usage);
	return EXIT_USAGE;
}

static int
fail(const char *cmd, const char *name, const char *what, int err)
{
	if (err)
		fprintf(stderr, "%s %s: %s: %s: %s\n", progname, cmd, name, what,
		    strerror(err < 0 ? -err : err));
	else
		fprintf(stderr, "%s %s: %s: %s\n", progname, cmd, name, what);
	return 1;
}

static int
open_dom(const char *cmd, struct opts *o, unsigned flags, struct simdom **sd)
{
	int r = sd_open_any(o->dir, o->argv[0], flags, sd);

	if (r == -ENOENT)
		fprintf(stderr, "%s %s: no domain %s in %s\n", progname, cmd,
		    o->argv[0], o->dir);
	else if (r < 0)
		fprintf(stderr, "%s %s: %s: cannot open: %s\n", progname, cmd,
		    o->argv[0], strerror(-r));
	return r;
}

static int
parse_num(const char *s, uint64_t *v)
{
	char *end;

	if (s == NULL || *s == '\0' || *s == '-')
		return -1;
	errno = 0;
	*v = strtoull(s, &end, 0);
	return errno || *end ? -1 : 0;
}

/* --pages: a domain's page count, SD_PAGES_MIN..SD_PAGES_MAX. */
static int
parse_pages(const char *s, uint64_t *v)
{
	return parse_num(s, v) < 0 || *v < SD_PAGES_MIN || *v > SD_PAGES_MAX ?
	    -1 : 0;
}

static const char *
state_name(struct simdom *sd)
{
	if (!sd_guest_alive(sd))
		return "stopped";
	return sd_paused(sd) ? "paused" : "running";
}

static const char *
check_name(uint32_t r)
{
	return r == SD_CHECK_OK ? "ok" : r == SD_CHECK_FAILED ? "failed" :
	    "none";
}

static int
cmd_create(struct opts *o)
{
	const char *u = "--state-dir DIR --name NAME --pages N "
	    "--profile idle|micro|writer [--share F] [--rate N] [--seed S] "
	    "[--compressible F]";
	struct sd_config cfg;
	struct simdom *sd = NULL;
	char text[SD_CONFIG_TEXT_MAX];
	uint8_t uuid[16];
	uint64_t pages, uid = 0;
	int n, r;

	if (o->name == NULL || o->pages == NULL || o->profile == NULL)
		return usage_err("create", u, "--name, --pages and --profile "
		    "are required");
	if (!sd_name_valid(o->name))
		return usage_err("create", u, "bad domain name (letters, "
		    "digits, _ . -; not all digits)");
	if (parse_pages(o->pages, &pages) < 0)
		return usage_err("create", u, "--pages must be 16..2^26");
	while (uid == 0)
		if (getrandom(&uid, sizeof(uid), 0) != sizeof(uid))
			return fail("create", o->name, "getrandom", errno);
	if (getrandom(uuid, sizeof(uuid), 0) != sizeof(uuid))
		return fail("create", o->name, "getrandom", errno);
	uuid[6] = (uuid[6] & 0x0f) | 0x40;
	uuid[8] = (uuid[8] & 0x3f) | 0x80;
	n = snprintf(text, sizeof(text), "profile=%s share=%s rate=%s seed=%s "
	    "uid=%" PRIu64 " compressible=%s", o->profile,
	    o->share ? o->share : "0.5", o->rate ? o->rate : "1000",
	    o->seed ? o->seed : "1", uid,
	    o->compressible ? o->compressible : "0");
	if (n < 0 || (size_t)n >= sizeof(text) ||
	    sd_config_parse(text, (size_t)n, &cfg) < 0)
		return usage_err("create", u, "bad --profile, --share (0..1), "
		    "--rate, --seed or --compressible (0..1)");
	if ((r = sd_create(o->dir, o->name, pages, 1, uuid, &cfg, &sd)) < 0)
		return fail("create", o->name, r == -EEXIST ?
		    "domain exists" : "cannot create", r == -EEXIST ? 0 : r);
	if ((r = sg_init_memory(sd)) < 0 || (r = sd_commit(sd)) < 0) {
		fail("create", o->name, "cannot initialise", r);
		sd_destroy(sd);
		return 1;
	}
	sd_close(sd);
	return 0;
}

static int
cmd_start(struct opts *o)
{
	struct simdom *sd;
	int r;

	if (open_dom("start", o, 0, &sd) < 0)
		return 1;
	r = sd_unpause(sd, NULL, START_TIMEOUT_MS);
	if (r < 0)
		fail("start", sd->name, r == -EIO ? "guest failed to start "
		    "(see its .log)" : "cannot start guest", r == -EIO ? 0 : r);
	sd_close(sd);
	return r < 0;
}

static int
cmd_run(struct opts *o)
{
	return sg_run(o->dir, o->argv[0]);
}

static int
cmd_digest(struct opts *o)
{
	struct simdom *sd;
	struct ph_ctx *ctx;
	uint8_t d[PH_DIGEST_LEN];
	char hex[2 * PH_DIGEST_LEN + 1];

	if (open_dom("digest", o, 0, &sd) < 0)
		return 1;
	if ((ctx = ph_ctx_new()) == NULL) {
		sd_close(sd);
		return fail("digest", o->argv[0], "out of memory", 0);
	}
	ph_ctx_update(ctx, sd->mem, sd->mem_len);
	ph_ctx_final(ctx, d);
	ph_hex(d, hex);
	printf("%s\n", hex);
	sd_close(sd);
	return 0;
}

static json_object *
dom_json(struct simdom *sd)
{
	struct sd_ctrl *c = sd->ctrl;
	json_object *j = json_object_new_object();
	int32_t pid = __atomic_load_n(&c->guest_pid, __ATOMIC_SEQ_CST);
	int alive = sd_guest_alive(sd);

	json_object_object_add(j, "name", json_object_new_string(sd->name));
	json_object_object_add(j, "domid", json_object_new_int64(c->domid));
	json_object_object_add(j, "pages", json_object_new_int64(
	    (int64_t)c->pages));
	json_object_object_add(j, "profile", json_object_new_string(
	    sd_profile_name(c->cfg.profile)));
	json_object_object_add(j, "state", json_object_new_string(
	    state_name(sd)));
	json_object_object_add(j, "running", json_object_new_boolean(alive));
	json_object_object_add(j, "paused", json_object_new_boolean(
	    sd_paused(sd)));
	json_object_object_add(j, "logdirty", json_object_new_boolean(
	    __atomic_load_n(&c->logdirty, __ATOMIC_SEQ_CST) != 0));
	json_object_object_add(j, "pid", alive && pid > 0 ?
	    json_object_new_int(pid) : NULL);
	json_object_object_add(j, "writes", json_object_new_int64((int64_t)
	    __atomic_load_n(&c->writes, __ATOMIC_SEQ_CST)));
	json_object_object_add(j, "throttle_pct", json_object_new_int(
	    (int32_t)sd_throttle_get(sd)));
	return j;
}

static int
cmd_list(struct opts *o)
{
	struct simdom *sd;
	json_object *arr = NULL;
	char **names;
	size_t i, n;
	int r;

	if ((r = sd_list(o->dir, &names, &n)) < 0)
		return fail("list", o->dir, "cannot list", r);
	if (o->json)
		arr = json_object_new_array();
	else
		printf("%-24s %6s %10s %-7s %-8s %s\n", "NAME", "DOMID",
		    "PAGES", "PROFILE", "STATE", "WRITES");
	for (i = 0; i < n; i++) {
		if (sd_open(o->dir, names[i], 0, &sd) < 0)
			continue;
		if (o->json)
			json_object_array_add(arr, dom_json(sd));
		else
			printf("%-24s %6u %10" PRIu64 " %-7s %-8s %" PRIu64 "\n",
			    sd->name, sd->ctrl->domid, sd->ctrl->pages,
			    sd_profile_name(sd->ctrl->cfg.profile),
			    state_name(sd), (uint64_t)__atomic_load_n(
			    &sd->ctrl->writes, __ATOMIC_SEQ_CST));
		sd_close(sd);
	}
	if (o->json) {
		printf("%s\n", json_object_to_json_string_ext(arr,
		    JSON_C_TO_STRING_PLAIN));
		json_object_put(arr);
	}
	sd_list_free(names, n);
	return 0;
}

static int
cmd_status(struct opts *o)
{
	struct simdom *sd;
	struct sd_ctrl *c;
	json_object *j;
	uint32_t cr;
	char cfg[SD_CONFIG_TEXT_MAX];

	if (open_dom("status", o, 0, &sd) < 0)
		return 1;
	c = sd->ctrl;
	cr = __atomic_load_n(&c->check_result, __ATOMIC_ACQUIRE);
	j = dom_json(sd);
	json_object_object_add(j, "resume_check", json_object_new_string(
	    check_name(cr)));
	json_object_object_add(j, "resume_bad_pages", json_object_new_int64(
	    (int64_t)c->check_bad_count));
	json_object_object_add(j, "resume_first_bad_pfn",
	    cr == SD_CHECK_FAILED && c->check_bad_pfn != UINT64_MAX ?
	    json_object_new_int64((int64_t)c->check_bad_pfn) : NULL);
	if (sd_config_format(&c->cfg, cfg, sizeof(cfg)) > 0)
		json_object_object_add(j, "config",
		    json_object_new_string(cfg));
	if (o->json)
		printf("%s\n", json_object_to_json_string_ext(j,
		    JSON_C_TO_STRING_PLAIN));
	else {
		json_object_object_foreach(j, key, val)
			printf("%s: %s\n", key, val ? json_object_get_string(val) :
			    "-");
	}
	json_object_put(j);
	sd_close(sd);
	return 0;
}

static int
cmd_check(struct opts *o)
{
	struct simdom *sd;
	struct sg_layout l;
	struct sg_state st;
	struct sg_check res;
	int r, paused_here = 0;

	if (open_dom("check", o, 0, &sd) < 0)
		return 1;
	/* Pause a running guest, unless somebody else already has. */
	if (!__atomic_load_n(&sd->ctrl->pause_req, __ATOMIC_SEQ_CST) &&
	    sd_guest_alive(sd)) {
		if ((r = sd_pause(sd, 5000)) < 0) {
			sd_unpause(sd, NULL, 0);
			sd_close(sd);
			return fail("check", o->argv[0], "cannot pause", r);
		}
		paused_here = 1;
	}
	if ((r = sg_layout_init(&l, &sd->ctrl->cfg, sd->ctrl->pages)) < 0 ||
	    (r = sg_state_load(sd, &st)) < 0) {
		if (paused_here)
			sd_unpause(sd, NULL, 0);
		sd_close(sd);
		return fail("check", o->argv[0], "no usable guest state", r);
	}
	sg_self_check(sd, &l, &st, &res);
	if (paused_here)
		sd_unpause(sd, NULL, START_TIMEOUT_MS);
	if (o->json) {
		json_object *j = json_object_new_object();

		json_object_object_add(j, "name",
		    json_object_new_string(sd->name));
		json_object_object_add(j, "ok",
		    json_object_new_boolean(res.bad == 0));
		json_object_object_add(j, "pages",
		    json_object_new_int64((int64_t)l.pages));
		json_object_object_add(j, "bad_pages",
		    json_object_new_int64((int64_t)res.bad));
		json_object_object_add(j, "first_bad_pfn", res.bad ?
		    json_object_new_int64((int64_t)res.first_bad) : NULL);
		printf("%s\n", json_object_to_json_string_ext(j,
		    JSON_C_TO_STRING_PLAIN));
		json_object_put(j);
	} else if (res.bad == 0)
		printf("ok %" PRIu64 " pages\n", l.pages);
	else
		printf("FAILED %" PRIu64 " bad pages, first bad pfn %" PRIu64
		    "\n", res.bad, res.first_bad);
	sd_close(sd);
	return res.bad != 0;
}

static int
cmd_poke(struct opts *o)
{
	struct simdom *sd;
	uint64_t pfn;
	uint8_t *p;
	size_t i;

	if (parse_num(o->argv[1], &pfn) < 0)
		return usage_err("poke", "--state-dir DIR NAME PFN",
		    "bad PFN");
	if (open_dom("poke", o, SD_OPEN_MEM_RW, &sd) < 0)
		return 1;
	if (pfn >= sd->ctrl->pages) {
		sd_close(sd);
		return fail("poke", o->argv[0], "PFN out of range", 0);
	}
	/* Behind the guest's back: no dirty bit, no table update. */
	p = sd->mem + pfn * HV_PAGE_SIZE;
	if (o->from != NULL) {
		/* Exactly one page of the file's bytes (tests plant content). */
		FILE *f = fopen(o->from, "rb");
		uint8_t buf[HV_PAGE_SIZE];

		if (f == NULL || fread(buf, 1, sizeof(buf), f) != sizeof(buf)) {
			if (f != NULL)
				fclose(f);
			sd_close(sd);
			return fail("poke", o->from, "cannot read 4096 bytes",
			    0);
		}
		fclose(f);
		memcpy(p, buf, sizeof(buf));
	} else {
		for (i = 0; i < 64; i++)
			p[i * 64] ^= 0xa5;
	}
	sd_close(sd);
	return 0;
}

static int
cmd_destroy(struct opts *o)
{
	struct simdom *sd;
	int r;

	if (open_dom("destroy", o, 0, &sd) < 0)
		return 1;
	if ((r = sd_destroy(sd)) < 0)
		return fail("destroy", o->argv[0], "cannot destroy", r);
	return 0;
}

#define HEAP_USAGE "--state-dir DIR [--pages N | --release] [--json]"

/* The host's heap (docs/SIM.md): add a chunk for a domain of --pages
 * pages, or give all chunks back, then print what it holds. */
static int
cmd_heap(struct opts *o)
{
	uint64_t pages, chunks, bytes;
	json_object *j;
	int r;

	if (o->release && o->pages != NULL)
		return usage_err("heap", HEAP_USAGE,
		    "--pages and --release exclude each other");
	if (o->pages != NULL) {
		if (parse_pages(o->pages, &pages) < 0)
			return usage_err("heap", HEAP_USAGE,
			    "--pages must be 16..2^26");
		if ((r = sd_heap_add(o->dir, pages)) < 0)
			return fail("heap", o->dir, "cannot add a chunk", r);
	}
	if (o->release && (r = sd_heap_release(o->dir)) < 0)
		return fail("heap", o->dir, "cannot release", r);
	if ((r = sd_heap_stat(o->dir, &chunks, &bytes)) < 0)
		return fail("heap", o->dir, "cannot read", r);
	if (o->json) {
		j = json_object_new_object();
		json_object_object_add(j, "chunks",
		    json_object_new_int64((int64_t)chunks));
		json_object_object_add(j, "bytes",
		    json_object_new_int64((int64_t)bytes));
		printf("%s\n", json_object_to_json_string_ext(j,
		    JSON_C_TO_STRING_PLAIN));
		json_object_put(j);
	} else
		printf("%" PRIu64 " chunks, %.1f MiB\n", chunks,
		    (double)bytes / (1 << 20));
	return 0;
}

static const struct cmd cmds[] = {
	{ "create", 0, 0, cmd_create, "--state-dir DIR --name NAME --pages N "
	    "--profile idle|micro|writer [--share F] [--rate N] [--seed S] "
	    "[--compressible F]" },
	{ "start", 1, 0, cmd_start, "--state-dir DIR NAME" },
	{ "run", 1, 0, cmd_run, "--state-dir DIR NAME" },
	{ "digest", 1, 0, cmd_digest, "--state-dir DIR NAME" },
	{ "list", 0, 1, cmd_list, "--state-dir DIR [--json]" },
	{ "check", 1, 1, cmd_check, "--state-dir DIR NAME [--json]" },
	{ "status", 1, 1, cmd_status, "--state-dir DIR NAME [--json]" },
	{ "poke", 2, 0, cmd_poke, "--state-dir DIR NAME PFN [--from FILE]" },
	{ "destroy", 1, 0, cmd_destroy, "--state-dir DIR NAME" },
	{ "heap", 0, 1, cmd_heap, HEAP_USAGE },
};

static void
usage(FILE *f)
{
	size_t i;

	fprintf(f, "usage:\n");
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		fprintf(f, "  %s %s %s\n", progname, cmds[i].name,
		    cmds[i].usage);
}

int
main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "state-dir", required_argument, NULL, 'd' },
		{ "name", required_argument, NULL, 'n' },
		{ "pages", required_argument, NULL, 'p' },
		{ "profile", required_argument, NULL, 'P' },
		{ "share", required_argument, NULL, 's' },
		{ "rate", required_argument, NULL, 'r' },
		{ "seed", required_argument, NULL, 'S' },
		{ "compressible", required_argument, NULL, 'C' },
		{ "json", no_argument, NULL, 'j' },
		{ "from", required_argument, NULL, 'F' },
		{ "release", no_argument, NULL, 'R' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const struct cmd *cmd = NULL;
	struct opts o;
	size_t i;
	int c;

	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		usage(stdout);
		return 0;
	}
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strcmp(argv[1], cmds[i].name) == 0)
			cmd = &cmds[i];
	if (cmd == NULL) {
		fprintf(stderr, "%s: unknown command '%s'\n", progname,
		    argv[1]);
		usage(stderr);
		return EXIT_USAGE;
	}
	memset(&o, 0, sizeof(o));
	argc--;
	argv++;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
		const char **slot = NULL;

		switch (c) {
		case 'd': slot = &o.dir; break;
		case 'F': slot = &o.from; break;
		case 'n': slot = &o.name; break;
		case 'p': slot = &o.pages; break;
		case 'P': slot = &o.profile; break;
		case 's': slot = &o.share; break;
		case 'r': slot = &o.rate; break;
		case 'S': slot = &o.seed; break;
		case 'C': slot = &o.compressible; break;
		case 'R':
			if (cmd->fn != cmd_heap)
				return usage_err(cmd->name, cmd->usage,
				    "option not valid for this command");
			o.release = 1;
			break;
		case 'j':
			if (!cmd->json)
				return usage_err(cmd->name, cmd->usage,
				    "--json is not an option of this command");
			o.json = 1;
			break;
		case 'h':
			printf("usage: %s %s %s\n", progname, cmd->name,
			    cmd->usage);
			return 0;
		default:
			return usage_err(cmd->name, cmd->usage,
			    "unknown option or missing argument");
		}
		if (slot != NULL) {
			if (cmd->fn != cmd_create && c != 'd' &&
			    !(cmd->fn == cmd_poke && c == 'F') &&
			    !(cmd->fn == cmd_heap && c == 'p'))
				return usage_err(cmd->name, cmd->usage,
				    "option not valid for this command");
			*slot = optarg;
		}
	}
	o.argc = argc - optind;
	o.argv = argv + optind;
	if (o.dir == NULL)
		return usage_err(cmd->name, cmd->usage,
		    "--state-dir is required");
	if (o.argc != cmd->npos)
		return usage_err(cmd->name, cmd->usage,
		    "wrong number of arguments");
	return cmd->fn(&o);
}
