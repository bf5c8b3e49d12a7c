/*
 * migratectl - the operator's CLI over sourced's (or destd's) control
 * socket.  Commands come from one table; --json on every command prints
 * the daemon's reply object (documented in docs/CONTROL.md).
 *
 * Exit codes: 0 success; 1 the migration failed or was cancelled (the
 * guest still runs on the source); 2 usage error; 3 ambiguous (handover
 * outcome unknown: the source copy is kept paused); 4 the daemon could
 * not be reached or refused the request.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "ctl.h"

#define EXIT_MIG_FAILED	1
#define EXIT_USAGE	2
#define EXIT_AMBIGUOUS	3
#define EXIT_DAEMON	4

#define DEFAULT_CONTROL	"/run/sharemig/sourced.sock"

struct ctx {
	const char	*control;
	int		 json;
};

static const char *prog = "migratectl";

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: migratectl [--control SOCKET] [--json] COMMAND [ARGS]\n"
	    "commands:\n"
	    "  list                          domains on this host\n"
	    "  migrate DOMAIN HOST:PORT [--dedup none|shared|all] [--paused]\n"
	    "          [--verify] [--wait] [--downtime-ms N] "
	    "[--max-iterations N]\n"
	    "  status [ID]                   one migration, or all\n"
	    "  wait ID                       wait for a migration to end\n"
	    "  cancel ID                     cancel (before the handover)\n"
	    "  index                         the host index (destd socket)\n"
	    "  index-sync                    wait for a fresh index pass "
	    "(destd socket)\n"
	    "options may also follow the command.\n");
}

/* Send req; on success *rep is an {"ok":true,...} object. */
static int
call(struct ctx *c, struct json_object *req, struct json_object **rep)
{
	struct json_object *v;
	int rc;

	rc = ctl_call(c->control, req, -1, rep);
	json_object_put(req);
	if (rc != 0) {
		fprintf(stderr, "%s: cannot talk to the daemon at %s: %s\n",
		    prog, c->control, strerror(-rc));
		return EXIT_DAEMON;
	}
	if (!json_object_object_get_ex(*rep, "ok", &v) ||
	    !json_object_get_boolean(v)) {
		if (c->json)
			printf("%s\n", json_object_to_json_string_ext(*rep,
			    JSON_C_TO_STRING_PLAIN));
		fprintf(stderr, "%s: %s\n", prog,
		    json_object_object_get_ex(*rep, "error", &v) ?
		    json_object_get_string(v) : "request failed");
		json_object_put(*rep);
		return EXIT_DAEMON;
	}
	return 0;
}

static struct json_object *
request(const char *cmd)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "cmd", json_object_new_string(cmd));
	return o;
}

static void
print_json(struct json_object *o)
{
	printf("%s\n", json_object_to_json_string_ext(o,
	    JSON_C_TO_STRING_PLAIN));
}

static const char *
jstr(struct json_object *o, const char *k)
{
	struct json_object *v;

	return json_object_object_get_ex(o, k, &v) ?
	    json_object_get_string(v) : "";
}

static int
parse_id(const char *s, int64_t *id)
{
	char *end;

	errno = 0;
	*id = strtoll(s, &end, 10);
	if (errno || *end || *s == '\0' || *id < 0) {
		fprintf(stderr, "%s: '%s' is not a migration id\n", prog, s);
		return -1;
	}
	return 0;
}

static int
mig_exit_code(struct json_object *m)
{
	const char *st = jstr(m, "status");

	if (strcmp(st, "completed") == 0)
		return 0;
	if (strcmp(st, "ambiguous") == 0)
		return EXIT_AMBIGUOUS;
	return EXIT_MIG_FAILED;
}

static void
print_mig(struct json_object *m)
{
	const char *err = jstr(m, "error");

	printf("migration %s: %s %s -> %s: %s\n", jstr(m, "id"),
	    jstr(m, "domain"), jstr(m, "dedup"), jstr(m, "destination"),
	    jstr(m, "status"));
	printf("  pages %s (data %s, ref %s, zero %s), %s bytes on the wire, "
	    "%s iterations\n", jstr(m, "pages_total"), jstr(m, "pages_data"),
	    jstr(m, "pages_ref"), jstr(m, "pages_zero"),
	    jstr(m, "bytes_wire"), jstr(m, "iterations"));
	printf("  total %s ms, downtime %s ms, cpu source %s s, dest %s s\n",
	    jstr(m, "total_ms"), jstr(m, "downtime_ms"),
	    jstr(m, "cpu_source_s"), jstr(m, "cpu_dest_s"));
	if (*err)
		printf("  error: %s\n", err);
}

static int
cmd_list(struct ctx *c, int argc, char **argv)
{
	struct json_object *rep, *doms, *d;
	size_t i;
	int rc;

	if (argc != 1)
		return EXIT_USAGE;
	if ((rc = call(c, request("list"), &rep)) != 0)
		return rc;
	if (c->json) {
		print_json(rep);
	} else if (json_object_object_get_ex(rep, "domains", &doms)) {
		printf("%-24s %6s %10s %s\n", "NAME", "DOMID", "PAGES",
		    "STATE");
		for (i = 0; i < json_object_array_length(doms); i++) {
			d = json_object_array_get_idx(doms, i);
			printf("%-24s %6s %10s %s\n", jstr(d, "name"),
			    jstr(d, "domid"), jstr(d, "pages"),
			    jstr(d, "state"));
		}
	}
	json_object_put(rep);
	return 0;
}

static int
wait_for(struct ctx *c, int64_t id)
{
	struct json_object *req = request("wait"), *rep, *m;
	int rc;

	json_object_object_add(req, "id", json_object_new_int64(id));
	if ((rc = call(c, req, &rep)) != 0)
		return rc;
	if (!json_object_object_get_ex(rep, "migration", &m)) {
		fprintf(stderr, "%s: bad reply from the daemon\n", prog);
		json_object_put(rep);
		return EXIT_DAEMON;
	}
	if (c->json)
		print_json(m);
	else
		print_mig(m);
	rc = mig_exit_code(m);
	json_object_put(rep);
	return rc;
}

/* "--name VALUE" or "--name=VALUE": the value, or NULL. */
static const char *
opt_value(int argc, char **argv, int *i, const char *name)
{
	size_t len = strlen(name);

	if (strncmp(argv[*i], name, len) != 0)
		return NULL;
	if (argv[*i][len] == '=')
		return argv[*i] + len + 1;
	if (argv[*i][len] == '\0' && *i + 1 < argc)
		return argv[++*i];
	return NULL;
}

/* migrate DOMAIN HOST:PORT [options]; options may come anywhere. */
static int
cmd_migrate(struct ctx *c, int argc, char **argv)
{
	struct json_object *req = request("migrate"), *rep, *v;
	const char *ops[2], *val;
	int i, k = 0, wait = 0, rc;
	int64_t n, id;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--paused") == 0 ||
		    strcmp(argv[i], "--verify") == 0) {
			json_object_object_add(req, argv[i] + 2,
			    json_object_new_boolean(1));
		} else if (strcmp(argv[i], "--wait") == 0) {
			wait = 1;
		} else if ((val = opt_value(argc, argv, &i, "--dedup"))) {
			if (strcmp(val, "none") && strcmp(val, "shared") &&
			    strcmp(val, "all")) {
				fprintf(stderr, "%s: --dedup must be none, "
				    "shared or all\n", prog);
				goto usage;
			}
			json_object_object_add(req, "dedup",
			    json_object_new_string(val));
		} else if ((val = opt_value(argc, argv, &i,
		    "--downtime-ms"))) {
			if (parse_id(val, &n) != 0)
				goto usage;
			json_object_object_add(req, "downtime_ms",
			    json_object_new_int64(n));
		} else if ((val = opt_value(argc, argv, &i,
		    "--max-iterations"))) {
			if (parse_id(val, &n) != 0)
				goto usage;
			json_object_object_add(req, "max_iterations",
			    json_object_new_int64(n));
		} else if (argv[i][0] == '-') {
			fprintf(stderr, "%s: migrate: unknown option '%s'\n",
			    prog, argv[i]);
			goto usage;
		} else if (k < 2) {
			ops[k++] = argv[i];
		} else {
			goto usage;
		}
	}
	if (k != 2)
		goto usage;
	json_object_object_add(req, "domain", json_object_new_string(ops[0]));
	json_object_object_add(req, "destination",
	    json_object_new_string(ops[1]));
	if ((rc = call(c, req, &rep)) != 0)
		return rc;
	json_object_object_get_ex(rep, "id", &v);
	id = json_object_get_int64(v);
	if (!wait) {
		if (c->json)
			print_json(rep);
		else
			printf("migration %lld started\n", (long long)id);
		json_object_put(rep);
		return 0;
	}
	json_object_put(rep);
	return wait_for(c, id);
usage:
	json_object_put(req);
	return EXIT_USAGE;
}

static int
cmd_status(struct ctx *c, int argc, char **argv)
{
	struct json_object *req = request("status"), *rep, *m, *arr;
	int64_t id;
	size_t i;
	int rc;

	if (argc > 2) {
		json_object_put(req);
		return EXIT_USAGE;
	}
	if (argc == 2) {
		if (parse_id(argv[1], &id) != 0) {
			json_object_put(req);
			return EXIT_USAGE;
		}
		json_object_object_add(req, "id", json_object_new_int64(id));
	}
	if ((rc = call(c, req, &rep)) != 0)
		return rc;
	if (json_object_object_get_ex(rep, "migration", &m)) {
		if (c->json)
			print_json(m);
		else
			print_mig(m);
	} else if (json_object_object_get_ex(rep, "migrations", &arr)) {
		if (c->json)
			print_json(arr);
		else
			for (i = 0; i < json_object_array_length(arr); i++)
				print_mig(json_object_array_get_idx(arr, i));
	} else if (c->json) {
		print_json(rep);
	}
	json_object_put(rep);
	return 0;
}

static int
cmd_wait(struct ctx *c, int argc, char **argv)
{
	int64_t id;

	if (argc != 2 || parse_id(argv[1], &id) != 0)
		return EXIT_USAGE;
	return wait_for(c, id);
}

static int
cmd_cancel(struct ctx *c, int argc, char **argv)
{
	struct json_object *req, *rep;
	int64_t id;
	int rc;

	if (argc != 2 || parse_id(argv[1], &id) != 0)
		return EXIT_USAGE;
	req = request("cancel");
	json_object_object_add(req, "id", json_object_new_int64(id));
	if ((rc = call(c, req, &rep)) != 0)
		return rc;
	if (c->json)
		print_json(rep);
	else
		printf("migration %lld cancelled\n", (long long)id);
	json_object_put(rep);
	return 0;
}

static int
cmd_index(struct ctx *c, int argc, char **argv)
{
	struct json_object *rep;
	int rc;

	if (argc != 1)
		return EXIT_USAGE;
	if ((rc = call(c, request("index"), &rep)) != 0)
		return rc;
	printf("%s\n", json_object_to_json_string_ext(rep, c->json ?
	    JSON_C_TO_STRING_PLAIN : JSON_C_TO_STRING_PRETTY));
	json_object_put(rep);
	return 0;
}

/* Wait until destd's scanner has indexed the host as it is now. */
static int
cmd_index_sync(struct ctx *c, int argc, char **argv)
{
	struct json_object *req, *rep;
	int rc;

	if (argc != 1)
		return EXIT_USAGE;
	req = request("scan-wait");
	json_object_object_add(req, "passes", json_object_new_int64(1));
	json_object_object_add(req, "timeout_ms",
	    json_object_new_int64(600000));
	if ((rc = call(c, req, &rep)) != 0)
		return rc;
	if (c->json)
		print_json(rep);
	else
		printf("index up to date\n");
	json_object_put(rep);
	return 0;
}

static const struct {
	const char	*name;
	int		(*fn)(struct ctx *, int, char **);
	int		 privileged;	/* changes state */
} commands[] = {
	{ "list",	cmd_list,	0 },
	{ "migrate",	cmd_migrate,	1 },
	{ "status",	cmd_status,	0 },
	{ "wait",	cmd_wait,	0 },
	{ "cancel",	cmd_cancel,	1 },
	{ "index",	cmd_index,	0 },
	{ "index-sync",	cmd_index_sync,	0 },
};

int
main(int argc, char **argv)
{
	struct ctx c = { .control = NULL, .json = 0 };
	const char *env;
	char *args[64];
	int i, n = 0, rc;
	size_t k;

	if ((env = getenv("SHAREMIG_CONTROL")) != NULL)
		c.control = env;
	/* Global options anywhere: --control S, --json, --help. */
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--control") == 0 && i + 1 < argc) {
			c.control = argv[++i];
		} else if (strncmp(argv[i], "--control=", 10) == 0) {
			c.control = argv[i] + 10;
		} else if (strcmp(argv[i], "--json") == 0) {
			c.json = 1;
		} else if (strcmp(argv[i], "--help") == 0 ||
		    strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		} else if (n < 63) {
			args[n++] = argv[i];
		} else {
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	args[n] = NULL;
	if (c.control == NULL)
		c.control = DEFAULT_CONTROL;
	if (n == 0) {
		usage(stderr);
		return EXIT_USAGE;
	}
	for (k = 0; k < sizeof(commands) / sizeof(commands[0]); k++) {
		if (strcmp(commands[k].name, args[0]) != 0)
			continue;
		/* cmd_migrate expects argv[0] to be the command. */
		rc = commands[k].fn(&c, n, args);
		if (rc == EXIT_USAGE)
			usage(stderr);
		return rc;
	}
	fprintf(stderr, "%s: unknown command '%s'\n", prog, args[0]);
	usage(stderr);
	return EXIT_USAGE;
}
