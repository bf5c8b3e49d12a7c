/*
 * test_simdom.c - the sim domain file: layout, create/commit/open, stale
 * incoming files, domid allocation, config text, dirty-bitmap atomics.
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "bitmap.h"
#include "simdom.h"

static const uint8_t uuid0[16] = { 1, 2, 3, 4 };

static char *
mktmp(void)
{
	char *d = strdup("/tmp/test_simdom.XXXXXX");

	assert_non_null(mkdtemp(d));
	return d;
}

static void
rmtree(char *dir)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	free(dir);
}

static struct sd_config
cfg_micro(void)
{
	struct sd_config c = { .profile = SD_PROFILE_MICRO, .rate = 1000,
		.share = 0.5, .seed = 42, .uid = 0x1234 };

	return c;
}

static int
exists(const char *dir, const char *name)
{
	char p[512];
	struct stat st;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return stat(p, &st) == 0;
}

static void
test_layout(void **state)
{
	static const struct {
		uint64_t pages, blen, moff;
	} cases[] = {
		{ 16, 4096, 8192 },
		{ 64, 4096, 8192 },
		{ 32768, 4096, 8192 },		/* 4096 bytes of bitmap */
		{ 32769, 8192, 12288 },
		{ 65536, 8192, 12288 },
		{ 1u << 20, 131072, 4096 + 131072 },
	};
	uint64_t boff, blen, moff;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		sd_layout(cases[i].pages, &boff, &blen, &moff);
		assert_int_equal(boff, SD_CTRL_SIZE);
		assert_int_equal(blen, cases[i].blen);
		assert_int_equal(moff, cases[i].moff);
		assert_true(blen * 8 >= cases[i].pages);
	}
}

static void
test_names(void **state)
{
	static const struct {
		const char *name;
		int ok;
	} cases[] = {
		{ "vm1", 1 }, { "a.b-c_d", 1 }, { "", 0 }, { ".hidden", 0 },
		{ "12", 0 }, { "a/b", 0 }, { "a b", 0 }, { "x\n", 0 },
	};
	char longname[HV_NAME_MAX + 1];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_int_equal(sd_name_valid(cases[i].name), cases[i].ok);
	memset(longname, 'n', sizeof(longname));
	longname[HV_NAME_MAX - 1] = '\0';		/* 63 chars */
	assert_true(sd_name_valid(longname));
	longname[HV_NAME_MAX - 1] = 'n';
	longname[HV_NAME_MAX] = '\0';			/* 64 chars */
	assert_false(sd_name_valid(longname));
}

static void
test_config(void **state)
{
	static const struct {
		const char *text;
		int ok;
		uint32_t profile, rate;
		double share;
		uint64_t seed;
	} cases[] = {
		{ "profile=micro share=0.25 rate=10 seed=7 uid=0x5", 1,
		  SD_PROFILE_MICRO, 10, 0.25, 7 },
		{ "profile=idle uid=1", 1, SD_PROFILE_IDLE, 1000, 0.5, 1 },
		{ "profile=writer rate=0 uid=9\n", 1, SD_PROFILE_WRITER, 0,
		  0.5, 1 },
		{ "profile=micro", 0, 0, 0, 0, 0 },		/* no uid */
		{ "profile=micro uid=0", 0, 0, 0, 0, 0 },
		{ "profile=huge uid=1", 0, 0, 0, 0, 0 },
		{ "profile=micro share=1.5 uid=1", 0, 0, 0, 0, 0 },
		{ "profile=micro share=-0.1 uid=1", 0, 0, 0, 0, 0 },
		{ "profile=micro share=nan uid=1", 0, 0, 0, 0, 0 },
		{ "profile=micro rate=-1 uid=1", 0, 0, 0, 0, 0 },
		{ "profile=micro rate=12x uid=1", 0, 0, 0, 0, 0 },
		{ "profile=micro compressible=0.75 uid=1", 1,
		  SD_PROFILE_MICRO, 1000, 0.5, 1 },
		{ "profile=micro compressible=1.5 uid=1", 0, 0, 0, 0, 0 },
		{ "profile=micro compressible=x uid=1", 0, 0, 0, 0, 0 },
		{ "profile=micro color=red uid=1", 0, 0, 0, 0, 0 },
		{ "profile=micro garbage uid=1", 0, 0, 0, 0, 0 },
		{ "", 0, 0, 0, 0, 0 },
	};
	struct sd_config c, c2;
	char buf[SD_CONFIG_TEXT_MAX];
	size_t i;
	int n;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(&c, 0xee, sizeof(c));
		n = sd_config_parse(cases[i].text, strlen(cases[i].text), &c);
		if (!cases[i].ok) {
			assert_int_equal(n, -EINVAL);
			continue;
		}
		assert_int_equal(n, 0);
		assert_int_equal(c.profile, cases[i].profile);
		assert_int_equal(c.rate, cases[i].rate);
		assert_true(c.share == cases[i].share);
		assert_int_equal(c.seed, cases[i].seed);
		/* Round trip. */
		n = sd_config_format(&c, buf, sizeof(buf));
		assert_true(n > 0);
		assert_int_equal(sd_config_parse(buf, (size_t)n, &c2), 0);
		assert_memory_equal(&c, &c2, sizeof(c));
	}
	/* compressible: parsed, and in the text only when not 0, so the
	 * default config text is unchanged. */
	assert_int_equal(sd_config_parse("profile=micro compressible=0.75 "
	    "uid=1", 37, &c), 0);
	assert_true(c.compressible == 0.75);
	n = sd_config_format(&c, buf, sizeof(buf));
	assert_non_null(strstr(buf, " compressible=0.75"));
	c.compressible = 0;
	n = sd_config_format(&c, buf, sizeof(buf));
	assert_null(strstr(buf, "compressible"));
	/* An embedded NUL is not text. */
	assert_int_equal(sd_config_parse("profile=idle\0uid=1", 18, &c),
	    -EINVAL);
	assert_int_equal(sd_config_format(&c2, buf, 8), -ENOSPC);
}

static void
test_create_open(void **state)
{
	struct sd_config cfg = cfg_micro();
	struct simdom *sd, *ro, *byid;
	struct stat st;
	char path[512], **names;
	size_t n;
	uint32_t domid;

	(void)state;
	char *dir = mktmp();
	assert_int_equal(sd_create(dir, "vm", 100, 2, uuid0, &cfg, &sd), 0);
	assert_true(exists(dir, "vm.dom.incoming"));
	assert_false(exists(dir, "vm.dom"));
	assert_int_equal(sd->ctrl->magic, SD_MAGIC);
	assert_int_equal(sd->ctrl->pages, 100);
	assert_int_equal(sd->ctrl->vcpus, 2);
	assert_int_equal(sd->ctrl->flags, SD_F_INCOMING);
	assert_int_equal(sd->ctrl->pause_req, 1);
	assert_string_equal(sd->ctrl->name, "vm");
	assert_memory_equal(sd->ctrl->uuid, uuid0, 16);
	assert_int_equal(sd->ctrl->cfg.uid, 0x1234);
	assert_true(sd->mem_writable);
	assert_int_equal((uintptr_t)sd->mem % 4096, 0);
	/* Zeroed memory, file size = head + pages. */
	assert_int_equal(sd->mem[100 * 4096 - 1], 0);
	snprintf(path, sizeof(path), "%s/vm.dom.incoming", dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 8192 + 100 * 4096);
	domid = sd->ctrl->domid;

	/* Invisible until committed. */
	assert_int_equal(sd_open(dir, "vm", 0, &ro), -ENOENT);
	assert_int_equal(sd_list(dir, &names, &n), 0);
	assert_int_equal(n, 0);
	sd_list_free(names, n);
	sd->mem[4096 * 7] = 0x5a;

	assert_int_equal(sd_commit(sd), 0);
	assert_false(exists(dir, "vm.dom.incoming"));
	assert_true(exists(dir, "vm.dom"));
	assert_int_equal(sd->ctrl->flags, 0);
	assert_false(sd->mem_writable);
	assert_int_equal(sd_commit(sd), -EINVAL);

	assert_int_equal(sd_open(dir, "vm", 0, &ro), 0);
	assert_false(ro->mem_writable);
	assert_int_equal(ro->mem[4096 * 7], 0x5a);
	assert_int_equal(ro->ctrl->domid, domid);
	snprintf(path, sizeof(path), "%u", domid);
	assert_int_equal(sd_open_any(dir, path, 0, &byid), 0);
	assert_string_equal(byid->name, "vm");
	sd_close(byid);
	assert_int_equal(sd_open_any(dir, "999", 0, &byid), -ENOENT);
	assert_int_equal(sd_list(dir, &names, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(names[0], "vm");
	sd_list_free(names, n);

	/* The name is taken. */
	assert_int_equal(sd_create(dir, "vm", 100, 1, uuid0, &cfg, &byid),
	    -EEXIST);
	/* Bad shapes. */
	assert_int_equal(sd_create(dir, "x", 15, 1, uuid0, &cfg, &byid),
	    -EINVAL);
	assert_int_equal(sd_create(dir, "42", 100, 1, uuid0, &cfg, &byid),
	    -EINVAL);
	cfg.uid = 0;
	assert_int_equal(sd_create(dir, "x", 100, 1, uuid0, &cfg, &byid),
	    -EINVAL);

	assert_int_equal(sd_destroy(sd), 0);
	assert_false(exists(dir, "vm.dom"));
	/* The other handle still maps the (unlinked) file. */
	assert_int_equal(ro->mem[4096 * 7], 0x5a);
	sd_close(ro);
	sd_close(NULL);
	rmtree(dir);
}

/* The heap: chunks are taken smallest-fit, zeroed, cut to size; a
 * destroyed domain's memory does not go back; release empties it. */
static void
test_heap(void **state)
{
	struct sd_config cfg = cfg_micro();
	struct simdom *a, *b, *c;
	uint64_t chunks, bytes;
	struct stat st;
	char path[512];
	size_t i;
	int zero;

	(void)state;
	char *dir = mktmp();
	assert_int_equal(sd_heap_stat(dir, &chunks, &bytes), 0);
	assert_int_equal(chunks, 0);
	assert_int_equal(sd_heap_add(dir, 15), -EINVAL);
	assert_int_equal(sd_heap_add(dir, 1000), 0);
	assert_int_equal(sd_heap_add(dir, 100), 0);
	assert_int_equal(sd_heap_stat(dir, &chunks, &bytes), 0);
	assert_int_equal(chunks, 2);
	assert_int_equal(bytes, (8192 + 1000 * 4096) + (8192 + 100 * 4096));

	/* 64 pages: the 100-page chunk is the smallest that fits. */
	assert_int_equal(sd_create(dir, "a", 64, 1, uuid0, &cfg, &a), 0);
	assert_int_equal(sd_heap_stat(dir, &chunks, &bytes), 0);
	assert_int_equal(chunks, 1);
	assert_int_equal(bytes, 8192 + 1000 * 4096);
	snprintf(path, sizeof(path), "%s/a.dom.incoming", dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 8192 + 64 * 4096);
	assert_int_equal(a->ctrl->pages, 64);
	for (zero = 1, i = 0; i < 64 * 4096; i++)
		zero &= a->mem[i] == 0;
	assert_true(zero);

	/* 2000 pages: no chunk fits, so a file of its own. */
	assert_int_equal(sd_create(dir, "b", 2000, 1, uuid0, &cfg, &b), 0);
	assert_int_equal(sd_heap_stat(dir, &chunks, &bytes), 0);
	assert_int_equal(chunks, 1);
	/* 1000 pages: the last chunk. */
	assert_int_equal(sd_create(dir, "c", 1000, 1, uuid0, &cfg, &c), 0);
	assert_int_equal(sd_heap_stat(dir, &chunks, &bytes), 0);
	assert_int_equal(chunks, 0);
	c->mem[5] = 7;
	assert_int_equal(sd_commit(c), 0);
	assert_int_equal(sd_destroy(c), 0);
	assert_int_equal(sd_heap_stat(dir, &chunks, &bytes), 0);
	assert_int_equal(chunks, 0);
	assert_int_equal(sd_destroy(a), 0);
	assert_int_equal(sd_destroy(b), 0);

	assert_int_equal(sd_heap_add(dir, 16), 0);
	assert_true(exists(dir, "heap"));
	assert_int_equal(sd_heap_release(dir), 0);
	assert_false(exists(dir, "heap"));
	assert_int_equal(sd_heap_stat(dir, &chunks, &bytes), 0);
	assert_int_equal(chunks, 0);
	assert_int_equal(sd_heap_release(dir), 0);
	rmtree(dir);
}

static void
test_incoming_lock(void **state)
{
	struct sd_config cfg = cfg_micro();
	struct simdom *a, *b;

	(void)state;
	char *dir = mktmp();
	assert_int_equal(sd_create(dir, "in", 64, 1, uuid0, &cfg, &a), 0);
	/* A live creator holds the name. */
	assert_int_equal(sd_create(dir, "in", 64, 1, uuid0, &cfg, &b),
	    -EEXIST);
	a->mem[0] = 1;
	/* A creator that went away leaves a stale file, which is replaced. */
	sd_close(a);
	assert_true(exists(dir, "in.dom.incoming"));
	assert_int_equal(sd_create(dir, "in", 64, 1, uuid0, &cfg, &b), 0);
	assert_int_equal(b->mem[0], 0);
	assert_int_equal(sd_destroy(b), 0);
	assert_false(exists(dir, "in.dom.incoming"));
	rmtree(dir);
}

/* Start-up cleanup: stale incoming domains go, live ones and normal
 * domains stay. */
static void
test_reap_incoming(void **state)
{
	struct sd_config cfg = cfg_micro();
	struct simdom *dead, *live, *normal;
	char **names = NULL;
	size_t n = 99;

	(void)state;
	char *dir = mktmp();
	assert_int_equal(sd_create(dir, "dead", 64, 1, uuid0, &cfg, &dead), 0);
	assert_int_equal(sd_create(dir, "live", 64, 1, uuid0, &cfg, &live), 0);
	assert_int_equal(sd_create(dir, "ok", 64, 1, uuid0, &cfg, &normal), 0);
	assert_int_equal(sd_commit(normal), 0);
	sd_close(dead);		/* its builder died */
	assert_int_equal(sd_reap_incoming(dir, &names, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(names[0], "dead");
	sd_list_free(names, n);
	assert_false(exists(dir, "dead.dom.incoming"));
	assert_true(exists(dir, "live.dom.incoming"));
	assert_true(exists(dir, "ok.dom"));
	assert_int_equal(sd_destroy(live), 0);
	assert_int_equal(sd_destroy(normal), 0);
	assert_int_equal(sd_reap_incoming(dir, &names, &n), 0);
	assert_int_equal(n, 0);
	sd_list_free(names, n);
	rmtree(dir);
}

/* Domids from several processes at once: all distinct, never reused. */
static void
test_domids(void **state)
{
	enum { NPROC = 4, PER = 50 };
	uint32_t ids[NPROC * PER], id;
	int pfd[2], i, j, status;
	pid_t pids[NPROC];
	struct sd_config cfg = cfg_micro();
	struct simdom *sd;

	(void)state;
	char *dir = mktmp();
	assert_int_equal(pipe(pfd), 0);
	for (i = 0; i < NPROC; i++) {
		pids[i] = fork();
		assert_true(pids[i] >= 0);
		if (pids[i] == 0) {
			for (j = 0; j < PER; j++) {
				if (sd_alloc_domid(dir, &id) < 0)
					_exit(1);
				if (write(pfd[1], &id, sizeof(id)) != sizeof(id))
					_exit(1);
			}
			_exit(0);
		}
	}
	close(pfd[1]);
	for (i = 0; i < NPROC * PER; i++)
		assert_int_equal(read(pfd[0], &ids[i], sizeof(ids[i])),
		    sizeof(ids[i]));
	close(pfd[0]);
	for (i = 0; i < NPROC; i++) {
		assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	for (i = 0; i < NPROC * PER; i++) {
		assert_true(ids[i] >= 1 && ids[i] <= NPROC * PER);
		for (j = 0; j < i; j++)
			assert_int_not_equal(ids[i], ids[j]);
	}
	/* A destroyed domain's domid is not handed out again. */
	assert_int_equal(sd_create(dir, "d", 32, 1, uuid0, &cfg, &sd), 0);
	id = sd->ctrl->domid;
	assert_int_equal(id, NPROC * PER + 1);
	assert_int_equal(sd_destroy(sd), 0);
	assert_int_equal(sd_create(dir, "d", 32, 1, uuid0, &cfg, &sd), 0);
	assert_int_equal(sd->ctrl->domid, id + 1);
	assert_int_equal(sd_destroy(sd), 0);
	rmtree(dir);
}

struct marker {
	struct simdom	*sd;
	uint64_t	 pages;
	uint64_t	*marked;	/* what the writer set, bitmap */
	int		 done;
	int		 fetched;	/* fetches the reader has made */
};

static void *
marker_thread(void *arg)
{
	struct marker *m = arg;
	uint64_t i, pfn, x = 88172645463325252ull;

	/* Until the reader has fetched twice, too: on a loaded machine it
	 * may not run at all while 200,000 marks are made. */
	for (i = 0; i < 200000 ||
	    __atomic_load_n(&m->fetched, __ATOMIC_ACQUIRE) < 2; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		pfn = x % m->pages;
		/* The writer's own record first, then the shared bit, like
		 * the guest's page write then dirty bit. */
		__atomic_fetch_or(&m->marked[pfn / 64], 1ull << (pfn % 64),
		    __ATOMIC_RELAXED);
		sd_dirty_mark(m->sd, pfn);
	}
	__atomic_store_n(&m->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* Every bit set concurrently with fetches is reported exactly by the
 * union of the fetches: none lost, none invented. */
static void
test_dirty_atomics(void **state)
{
	struct sd_config cfg = cfg_micro();
	struct simdom *sd;
	struct marker m;
	pthread_t t;
	uint64_t *acc, *tmp, pages = 5000;
	size_t i, words = bm_words(pages);
	int rounds = 0;

	(void)state;
	char *dir = mktmp();
	assert_int_equal(sd_create(dir, "bm", pages, 1, uuid0, &cfg, &sd), 0);
	acc = bm_alloc(pages);
	tmp = bm_alloc(pages);
	assert_non_null(acc);
	assert_non_null(tmp);

	/* Off: -EINVAL.  Enable clears earlier bits. */
	assert_int_equal(sd_dirty_fetch(sd, tmp), -EINVAL);
	sd_dirty_mark(sd, 3);
	sd_dirty_mark(sd, 4999);
	sd_logdirty_enable(sd);
	assert_int_equal(sd_dirty_fetch(sd, tmp), 0);
	assert_int_equal(bm_count(tmp, pages), 0);
	sd_dirty_mark(sd, 4999);
	assert_int_equal(sd_dirty_fetch(sd, tmp), 0);
	assert_int_equal(bm_count(tmp, pages), 1);
	assert_true(bm_test(tmp, 4999));
	assert_int_equal(sd_dirty_fetch(sd, tmp), 0);
	assert_int_equal(bm_count(tmp, pages), 0);

	m.sd = sd;
	m.pages = pages;
	m.marked = bm_alloc(pages);
	m.done = 0;
	m.fetched = 0;
	assert_int_equal(pthread_create(&t, NULL, marker_thread, &m), 0);
	while (!__atomic_load_n(&m.done, __ATOMIC_ACQUIRE)) {
		assert_int_equal(sd_dirty_fetch(sd, tmp), 0);
		bm_or(acc, tmp, pages);
		rounds++;
		__atomic_store_n(&m.fetched, rounds, __ATOMIC_RELEASE);
	}
	pthread_join(t, NULL);
	assert_int_equal(sd_dirty_fetch(sd, tmp), 0);
	bm_or(acc, tmp, pages);
	for (i = 0; i < words; i++)
		assert_int_equal(acc[i], m.marked[i]);
	assert_true(rounds > 1);

	sd_logdirty_disable(sd);
	assert_int_equal(sd_dirty_fetch(sd, tmp), -EINVAL);
	free(m.marked);
	free(acc);
	free(tmp);
	assert_int_equal(sd_destroy(sd), 0);
	rmtree(dir);
}

/* Without a guest, pause returns at once and the domain is paused;
 * unpause of an incoming domain never spawns anything. */
static void
test_pause_no_guest(void **state)
{
	struct sd_config cfg = cfg_micro();
	struct simdom *sd;

	(void)state;
	char *dir = mktmp();
	assert_int_equal(sd_create(dir, "p", 32, 1, uuid0, &cfg, &sd), 0);
	assert_false(sd_guest_alive(sd));
	assert_true(sd_paused(sd));
	assert_int_equal(sd_pause(sd, 10), 0);
	assert_int_equal(sd_unpause(sd, "/bin/false", 10), -EINVAL);
	assert_int_equal(sd_kill_guest(sd), 0);
	/* The guest lock: one holder at a time. */
	assert_int_equal(sd_guest_lock(sd), 0);
	assert_int_equal(sd_destroy(sd), 0);
	rmtree(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layout),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_config),
		cmocka_unit_test(test_create_open),
		cmocka_unit_test(test_heap),
		cmocka_unit_test(test_incoming_lock),
		cmocka_unit_test(test_reap_incoming),
		cmocka_unit_test(test_domids),
		cmocka_unit_test(test_dirty_atomics),
		cmocka_unit_test(test_pause_no_guest),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
