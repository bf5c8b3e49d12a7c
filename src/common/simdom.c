/*
 * simdom.c - one domain of the simulated host: the shared domain file,
 * domid allocation, dirty tracking and the guest-process protocol (pause,
 * spawn, kill).  Layout and locks are described in simdom.h and
 * docs/SIM.md.
 *
 * Dirty tracking, and why no update can be lost (DESIGN I1/I2):
 *
 *   guest (writer)                     migration (reader)
 *   1. write the page's bytes          a. atomic exchange of the bitmap
 *   2. atomic OR of the page's bit        word with 0 (seq_cst)
 *      (seq_cst, i.e. release)         b. read the page's bytes
 *
 * If the exchange in (a) returns the bit set by (2), the OR happened
 * before the exchange, and (1) happened before the OR (release), so (b)
 * sees the bytes of that write or of a later one.  If the exchange does
 * not see the bit, the OR comes after (a) in the word's modification
 * order, so the bit stays set and the page is fetched again in the next
 * round.  Either way the final round, taken while the guest is paused
 * (it pauses only between whole writes and has set every bit of the
 * writes it did), sends the last content of every written page.  A page
 * read while a write is half done may be torn, but then its bit is set
 * again by (2) and it is re-sent.  The guest sets the bit whether or not
 * log-dirty is on; enabling log-dirty clears the bitmap first, so only
 * writes after the enable are reported, and a write racing with the enable
 * is at worst reported once too often.
 */
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bitmap.h"
#include "simdom.h"

#define LOCK_INCOMING	0
#define LOCK_GUEST	1

static void
sleep_us(long us)
{
	struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static char *
path_join(const char *dir, const char *name, const char *suffix)
{
	char *p;

	if (asprintf(&p, "%s/%s%s", dir, name, suffix) == -1)
		return NULL;
	return p;
}

void
sd_layout(uint64_t pages, uint64_t *bitmap_off, uint64_t *bitmap_len,
    uint64_t *mem_off)
{
	uint64_t blen = (uint64_t)bm_words(pages) * 8;

	blen = (blen + HV_PAGE_SIZE - 1) & ~(uint64_t)(HV_PAGE_SIZE - 1);
	*bitmap_off = SD_CTRL_SIZE;
	*bitmap_len = blen;
	*mem_off = SD_CTRL_SIZE + blen;
}

int
sd_name_valid(const char *name)
{
	size_t i, len = strlen(name);
	int digits = 1;

	if (len == 0 || len >= HV_NAME_MAX || name[0] == '.')
		return 0;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];

		if (!isalnum(c) && c != '_' && c != '.' && c != '-')
			return 0;
		if (!isdigit(c))
			digits = 0;
	}
	return !digits;
}

/* Config text. */

static const char *const profile_names[] = {
	[SD_PROFILE_IDLE] = "idle",
	[SD_PROFILE_MICRO] = "micro",
	[SD_PROFILE_WRITER] = "writer",
};

const char *
sd_profile_name(uint32_t profile)
{
	if (profile < 1 || profile > SD_PROFILE_WRITER)
		return "?";
	return profile_names[profile];
}

static int
parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (*s == '\0' || *s == '-' || *s == '+' || isspace((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno != 0 || *end != '\0')
		return -EINVAL;
	*out = v;
	return 0;
}

/* A fraction 0..1. */
static int
parse_frac(const char *s, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !(v >= 0.0 && v <= 1.0))
		return -EINVAL;
	*out = v;
	return 0;
}

int
sd_config_parse(const char *text, size_t len, struct sd_config *out)
{
	struct sd_config c = { .rate = 1000, .share = 0.5, .seed = 1 };
	char buf[SD_CONFIG_TEXT_MAX], *tok, *save, *eq;
	int have_profile = 0, have_uid = 0;
	uint64_t v;
	size_t i;

	if (len >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, text, len);
	buf[len] = '\0';
	/* Embedded NULs are not text. */
	if (strlen(buf) != len && !(strlen(buf) == len - 1 && text[len - 1] == '\0'))
		return -EINVAL;
	for (tok = strtok_r(buf, " \t\n", &save); tok != NULL;
	    tok = strtok_r(NULL, " \t\n", &save)) {
		if ((eq = strchr(tok, '=')) == NULL)
			return -EINVAL;
		*eq++ = '\0';
		if (strcmp(tok, "profile") == 0) {
			for (i = SD_PROFILE_IDLE; i <= SD_PROFILE_WRITER; i++)
				if (strcmp(eq, profile_names[i]) == 0)
					break;
			if (i > SD_PROFILE_WRITER)
				return -EINVAL;
			c.profile = (uint32_t)i;
			have_profile = 1;
		} else if (strcmp(tok, "share") == 0) {
			if (parse_frac(eq, &c.share) < 0)
				return -EINVAL;
		} else if (strcmp(tok, "compressible") == 0) {
			if (parse_frac(eq, &c.compressible) < 0)
				return -EINVAL;
		} else if (strcmp(tok, "rate") == 0) {
			if (parse_u64(eq, &v) < 0 || v > 10000000)
				return -EINVAL;
			c.rate = (uint32_t)v;
		} else if (strcmp(tok, "seed") == 0) {
			if (parse_u64(eq, &c.seed) < 0)
				return -EINVAL;
		} else if (strcmp(tok, "uid") == 0) {
			if (parse_u64(eq, &c.uid) < 0 || c.uid == 0)
				return -EINVAL;
			have_uid = 1;
		} else
			return -EINVAL;
	}
	if (!have_profile || !have_uid)
		return -EINVAL;
	*out = c;
	return 0;
}

int
sd_config_format(const struct sd_config *cfg, char *buf, size_t size)
{
	int n, m;

	n = snprintf(buf, size, "profile=%s share=%.17g rate=%u seed=%llu "
	    "uid=0x%016llx", sd_profile_name(cfg->profile), cfg->share,
	    cfg->rate, (unsigned long long)cfg->seed,
	    (unsigned long long)cfg->uid);
	if (n < 0 || (size_t)n >= size)
		return -ENOSPC;
	/* Only when set, so the default images' config is unchanged. */
	if (cfg->compressible > 0) {
		m = snprintf(buf + n, size - (size_t)n, " compressible=%.17g",
		    cfg->compressible);
		if (m < 0 || (size_t)m >= size - (size_t)n)
			return -ENOSPC;
		n += m;
	}
	return n;
}

/* Locks. */

static int
ofd_lock(int fd, int byte, int type)
{
	struct flock fl = { .l_type = (short)type, .l_whence = SEEK_SET,
		.l_start = byte, .l_len = 1 };

	if (fcntl(fd, F_OFD_SETLK, &fl) == -1)
		return (errno == EAGAIN || errno == EACCES) ? -EBUSY : -errno;
	return 0;
}

/* 1 if some other open file description holds a lock on byte. */
static int
ofd_locked(int fd, int byte)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET,
		.l_start = byte, .l_len = 1 };

	if (fcntl(fd, F_OFD_GETLK, &fl) == -1)
		return 0;
	return fl.l_type != F_UNLCK;
}

int
sd_guest_lock(struct simdom *sd)
{
	return ofd_lock(sd->fd, LOCK_GUEST, F_WRLCK);
}

/* Domids. */

int
sd_alloc_domid(const char *dir, uint32_t *out)
{
	char *path, buf[32];
	unsigned long next = 1;
	ssize_t n;
	int fd, r = 0;

	if ((path = path_join(dir, "domid", "")) == NULL)
		return -ENOMEM;
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	free(path);
	if (fd == -1)
		return -errno;
	if (flock(fd, LOCK_EX) == -1) {
		r = -errno;
		goto out;
	}
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	if (n < 0) {
		r = -errno;
		goto out;
	}
	buf[n] = '\0';
	if (n > 0) {
		char *end;

		next = strtoul(buf, &end, 10);
		if (end == buf || next == 0 || next >= UINT32_MAX) {
			r = -EIO;
			goto out;
		}
	}
	n = snprintf(buf, sizeof(buf), "%lu\n", next + 1);
	if (ftruncate(fd, 0) == -1 || pwrite(fd, buf, (size_t)n, 0) != n ||
	    fsync(fd) == -1) {
		r = -EIO;
		goto out;
	}
	*out = (uint32_t)next;
out:
	close(fd);	/* releases the flock */
	return r;
}

/* Open / create / close. */

static int
map_domain(struct simdom *sd, int mem_rw)
{
	struct sd_ctrl c;
	uint64_t boff, blen, moff;
	struct stat st;
	void *p;

	if (pread(sd->fd, &c, sizeof(c), 0) != (ssize_t)sizeof(c))
		return -EINVAL;
	if (c.magic != SD_MAGIC || c.version != SD_LAYOUT_VERSION ||
	    c.ctrl_size != SD_CTRL_SIZE || c.pages < SD_PAGES_MIN ||
	    c.pages > SD_PAGES_MAX)
		return -EINVAL;
	sd_layout(c.pages, &boff, &blen, &moff);
	if (c.bitmap_off != boff || c.bitmap_len != blen || c.mem_off != moff)
		return -EINVAL;
	if (fstat(sd->fd, &st) == -1)
		return -errno;
	if ((uint64_t)st.st_size != moff + c.pages * HV_PAGE_SIZE)
		return -EINVAL;
	sd->head_len = (size_t)moff;
	sd->mem_len = (size_t)(c.pages * HV_PAGE_SIZE);
	p = mmap(NULL, sd->head_len, PROT_READ | PROT_WRITE, MAP_SHARED,
	    sd->fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	sd->ctrl = p;
	sd->bitmap = (uint64_t *)((uint8_t *)p + boff);
	p = mmap(NULL, sd->mem_len, PROT_READ | (mem_rw ? PROT_WRITE : 0),
	    MAP_SHARED, sd->fd, (off_t)moff);
	if (p == MAP_FAILED)
		return -errno;
	sd->mem = p;
	sd->mem_writable = mem_rw;
	return 0;
}

void
sd_close(struct simdom *sd)
{
	if (sd == NULL)
		return;
	if (sd->mem != NULL)
		munmap(sd->mem, sd->mem_len);
	if (sd->ctrl != NULL)
		munmap(sd->ctrl, sd->head_len);
	if (sd->fd >= 0)
		close(sd->fd);
	free(sd->dir);
	free(sd);
}

static struct simdom *
sd_alloc(const char *dir, const char *name)
{
	struct simdom *sd;

	if ((sd = calloc(1, sizeof(*sd))) == NULL)
		return NULL;
	sd->fd = -1;
	if ((sd->dir = strdup(dir)) == NULL) {
		free(sd);
		return NULL;
	}
	snprintf(sd->name, sizeof(sd->name), "%s", name);
	return sd;
}

int
sd_open(const char *dir, const char *name, unsigned flags,
    struct simdom **out)
{
	struct simdom *sd;
	char *path;
	int r;

	if (!sd_name_valid(name))
		return -ENOENT;
	if ((sd = sd_alloc(dir, name)) == NULL)
		return -ENOMEM;
	if ((path = path_join(dir, name, SD_SUFFIX)) == NULL) {
		r = -ENOMEM;
		goto fail;
	}
	sd->fd = open(path, O_RDWR | O_CLOEXEC);
	free(path);
	if (sd->fd == -1) {
		r = -errno;
		goto fail;
	}
	if ((r = map_domain(sd, (flags & SD_OPEN_MEM_RW) != 0)) < 0)
		goto fail;
	*out = sd;
	return 0;
fail:
	sd_close(sd);
	return r;
}

int
sd_read_ctrl(const char *dir, const char *name, struct sd_ctrl *out)
{
	char *path;
	int fd, r = 0;

	if (!sd_name_valid(name))
		return -ENOENT;
	if ((path = path_join(dir, name, SD_SUFFIX)) == NULL)
		return -ENOMEM;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	free(path);
	if (fd == -1)
		return -errno;
	if (pread(fd, out, sizeof(*out), 0) != (ssize_t)sizeof(*out) ||
	    out->magic != SD_MAGIC || out->version != SD_LAYOUT_VERSION)
		r = -EINVAL;
	close(fd);
	return r;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void
sd_list_free(char **names, size_t n)
{
	size_t i;

	if (names == NULL)
		return;
	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

int
sd_list(const char *dir, char ***names, size_t *n)
{
	DIR *d;
	struct dirent *e;
	char **v = NULL, **nv;
	size_t cnt = 0, cap = 0, len, slen = strlen(SD_SUFFIX);
	int r = 0;

	if ((d = opendir(dir)) == NULL)
		return -errno;
	while ((e = readdir(d)) != NULL) {
		len = strlen(e->d_name);
		if (len <= slen || strcmp(e->d_name + len - slen, SD_SUFFIX))
			continue;
		if (cnt == cap) {
			cap = cap ? cap * 2 : 16;
			if ((nv = realloc(v, cap * sizeof(*v))) == NULL) {
				r = -ENOMEM;
				goto out;
			}
			v = nv;
		}
		if ((v[cnt] = strndup(e->d_name, len - slen)) == NULL) {
			r = -ENOMEM;
			goto out;
		}
		if (!sd_name_valid(v[cnt])) {
			free(v[cnt]);
			continue;
		}
		cnt++;
	}
	if (cnt > 0)
		qsort(v, cnt, sizeof(*v), cmp_str);
out:
	closedir(d);
	if (r < 0) {
		sd_list_free(v, cnt);
		return r;
	}
	*names = v;
	*n = cnt;
	return 0;
}

int
sd_open_any(const char *dir, const char *name_or_id, unsigned flags,
    struct simdom **out)
{
	struct sd_ctrl c;
	char **names;
	size_t i, n;
	uint64_t id;
	int r;

	r = sd_open(dir, name_or_id, flags, out);
	if (r != -ENOENT || parse_u64(name_or_id, &id) < 0 ||
	    !isdigit((unsigned char)name_or_id[0]))
		return r;
	if ((r = sd_list(dir, &names, &n)) < 0)
		return r;
	r = -ENOENT;
	for (i = 0; i < n; i++) {
		if (sd_read_ctrl(dir, names[i], &c) == 0 && c.domid == id) {
			r = sd_open(dir, names[i], flags, out);
			break;
		}
	}
	sd_list_free(names, n);
	return r;
}

/* A leftover NAME.dom.incoming is stale when nobody holds its lock. */
static int
remove_stale_incoming(const char *path)
{
	int fd, r;

	if ((fd = open(path, O_RDWR | O_CLOEXEC)) == -1)
		return errno == ENOENT ? 0 : -errno;
	r = ofd_lock(fd, LOCK_INCOMING, F_WRLCK);
	if (r == 0 && unlink(path) == -1 && errno != ENOENT)
		r = -errno;
	close(fd);
	return r == -EBUSY ? -EEXIST : r;
}

int
sd_reap_incoming(const char *dir, char ***names, size_t *nout)
{
	size_t slen = strlen(SD_INCOMING_SUFFIX), len, n = 0, cap = 0;
	char **v = NULL, **nv, *path;
	struct dirent *de;
	DIR *dp;
	int r, first = 0;

	if ((dp = opendir(dir)) == NULL)
		return -errno;
	while ((de = readdir(dp)) != NULL) {
		len = strlen(de->d_name);
		if (de->d_name[0] == '.' && strstr(de->d_name, ".tmp.")) {
			/* A creation that died half-way (see sd_create). */
			if (asprintf(&path, "%s/%s", dir, de->d_name) != -1) {
				unlink(path);
				free(path);
			}
			continue;
		}
		if (len <= slen ||
		    strcmp(de->d_name + len - slen, SD_INCOMING_SUFFIX) != 0)
			continue;
		if (asprintf(&path, "%s/%s", dir, de->d_name) == -1) {
			r = -ENOMEM;
			goto fail;
		}
		r = remove_stale_incoming(path);
		free(path);
		if (r == -EEXIST)
			continue;		/* still being built */
		if (r < 0) {
			if (first == 0)
				first = r;
			continue;
		}
		if (n == cap) {
			cap = cap ? 2 * cap : 8;
			if ((nv = realloc(v, cap * sizeof(*v))) == NULL) {
				r = -ENOMEM;
				goto fail;
			}
			v = nv;
		}
		if ((v[n] = strndup(de->d_name, len - slen)) == NULL) {
			r = -ENOMEM;
			goto fail;
		}
		n++;
	}
	closedir(dp);
	*names = v;
	*nout = n;
	return first;
fail:
	closedir(dp);
	sd_list_free(v, n);
	return r;
}

/*
 * The host's heap (docs/SIM.md, "The heap").  Xen builds a domain from
 * its own heap: memory that is already there and was scrubbed when it was
 * freed, so populating a new domain costs dom0 next to nothing.  A sim
 * domain's memory is a tmpfs file, and the first write to each of its
 * pages makes the kernel find and clear a page, in whichever process
 * writes first: for an incoming domain, destd.  DIR/heap holds files of
 * memory allocated and cleared ahead (never written since), each big
 * enough for one domain; sd_create takes
 * the smallest that fits instead of growing a new file.  Memory of a
 * destroyed domain is never put back: a process that still maps it could
 * write into the domain that took it next.
 */

#define HEAP_DIR	"heap"
#define HEAP_TMP	".tmp."

/* 1 if entry de of DIR/heap is a chunk (a complete regular file), its
 * stat in *st. */
static int
heap_chunk(DIR *dp, const struct dirent *de, struct stat *st)
{
	return de->d_name[0] != '.' &&
	    fstatat(dirfd(dp), de->d_name, st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    S_ISREG(st->st_mode);
}

static uint64_t
file_size(uint64_t pages)
{
	uint64_t boff, blen, moff;

	sd_layout(pages, &boff, &blen, &moff);
	return moff + pages * HV_PAGE_SIZE;
}

/*
 * Take the smallest chunk of DIR/heap of at least size bytes: open it,
 * then rename it over tmp (the caller's fresh temporary of the same
 * file system).  A chunk another creator renamed first is skipped.
 * Returns the open descriptor, or -1 when no chunk fits (the caller then
 * grows its own file).
 */
static int
heap_take(const char *dir, uint64_t size, const char *tmp)
{
	char *hdir, *path, *best;
	uint64_t best_size;
	struct dirent *de;
	struct stat st;
	DIR *dp;
	int fd;

	if ((hdir = path_join(dir, HEAP_DIR, "")) == NULL)
		return -1;
	for (;;) {
		if ((dp = opendir(hdir)) == NULL)
			break;
		best = NULL;
		best_size = 0;
		while ((de = readdir(dp)) != NULL) {
			if (!heap_chunk(dp, de, &st) ||
			    (uint64_t)st.st_size < size ||
			    (best != NULL && (uint64_t)st.st_size >= best_size))
				continue;
			free(best);
			best = strdup(de->d_name);
			best_size = (uint64_t)st.st_size;
		}
		closedir(dp);
		if (best == NULL)
			break;
		path = path_join(hdir, best, "");
		free(best);
		if (path == NULL)
			break;
		fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
		if (fd >= 0 && rename(path, tmp) == 0) {
			free(path);
			free(hdir);
			return fd;
		}
		if (fd >= 0)
			close(fd);
		free(path);
		if (errno != ENOENT)
			break;		/* e.g. EXDEV: no heap for this dir */
		/* Another creator took it: look again. */
	}
	free(hdir);
	return -1;
}

/* Make the kernel clear every page of the chunk: a write fault on each
 * (MADV_POPULATE_WRITE, Linux 5.14; else a read-and-write of a byte of
 * each page, which leaves it zero). */
static int
heap_clear(int fd, uint64_t size)
{
	volatile uint8_t *p;
	uint64_t off;
	void *m;

	m = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
	    0);
	if (m == MAP_FAILED)
		return -errno;
#ifdef MADV_POPULATE_WRITE
	if (madvise(m, (size_t)size, MADV_POPULATE_WRITE) == 0) {
		munmap(m, (size_t)size);
		return 0;
	}
#endif
	p = m;
	for (off = 0; off < size; off += HV_PAGE_SIZE)
		p[off] = p[off];
	munmap(m, (size_t)size);
	return 0;
}

int
sd_heap_add(const char *dir, uint64_t pages)
{
	char *hdir = NULL, *tmp = NULL, *final = NULL;
	uint64_t size;
	int fd = -1, r;

	if (pages < SD_PAGES_MIN || pages > SD_PAGES_MAX)
		return -EINVAL;
	size = file_size(pages);
	if ((hdir = path_join(dir, HEAP_DIR, "")) == NULL ||
	    asprintf(&tmp, "%s/" HEAP_TMP "XXXXXX", hdir) == -1) {
		tmp = NULL;
		r = -ENOMEM;
		goto out;
	}
	if (mkdir(hdir, 0700) == -1 && errno != EEXIST) {
		r = -errno;
		goto out;
	}
	if ((fd = mkostemp(tmp, O_CLOEXEC)) == -1) {
		r = -errno;
		goto out;
	}
	/* Allocated now (ENOSPC if it is not there), then zeroed now:
	 * tmpfs leaves fallocated pages to be cleared by their first
	 * fault, which is the cost the heap is for.  The chunk is renamed
	 * from its temporary name (same random part, so unique) only once
	 * complete. */
	if ((r = -posix_fallocate(fd, 0, (off_t)size)) < 0 ||
	    (r = heap_clear(fd, size)) < 0)
		goto out;
	if (asprintf(&final, "%s/chunk.%s", hdir, tmp + strlen(tmp) - 6) ==
	    -1) {
		final = NULL;
		r = -ENOMEM;
		goto out;
	}
	r = rename(tmp, final) == -1 ? -errno : 0;
out:
	if (fd >= 0)
		close(fd);
	if (r < 0 && fd >= 0)
		unlink(tmp);
	free(final);
	free(tmp);
	free(hdir);
	return r;
}

int
sd_heap_stat(const char *dir, uint64_t *chunks, uint64_t *bytes)
{
	struct dirent *de;
	struct stat st;
	char *hdir;
	DIR *dp;

	*chunks = *bytes = 0;
	if ((hdir = path_join(dir, HEAP_DIR, "")) == NULL)
		return -ENOMEM;
	dp = opendir(hdir);
	free(hdir);
	if (dp == NULL)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(dp)) != NULL) {
		if (!heap_chunk(dp, de, &st))
			continue;
		(*chunks)++;
		*bytes += (uint64_t)st.st_size;
	}
	closedir(dp);
	return 0;
}

int
sd_heap_release(const char *dir)
{
	struct dirent *de;
	char *hdir;
	DIR *dp;
	int r = 0;

	if ((hdir = path_join(dir, HEAP_DIR, "")) == NULL)
		return -ENOMEM;
	if ((dp = opendir(hdir)) == NULL) {
		r = errno == ENOENT ? 0 : -errno;
		free(hdir);
		return r;
	}
	while ((de = readdir(dp)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (unlinkat(dirfd(dp), de->d_name, 0) == -1 &&
		    errno != ENOENT && r == 0)
			r = -errno;
	}
	closedir(dp);
	if (r == 0 && rmdir(hdir) == -1 && errno != ENOENT)
		r = -errno;
	free(hdir);
	return r;
}

int
sd_create(const char *dir, const char *name, uint64_t pages,
    uint32_t vcpus, const uint8_t uuid[16], const struct sd_config *cfg,
    struct simdom **out)
{
	struct simdom *sd = NULL;
	struct sd_ctrl *c;
	char *tmp = NULL, *final = NULL, *normal = NULL;
	uint64_t boff, blen, moff, size;
	uint32_t domid;
	struct stat st;
	int fd, r, tries;

	if (!sd_name_valid(name) || pages < SD_PAGES_MIN ||
	    pages > SD_PAGES_MAX || cfg->uid == 0 ||
	    cfg->profile < SD_PROFILE_IDLE || cfg->profile > SD_PROFILE_WRITER)
		return -EINVAL;
	if ((sd = sd_alloc(dir, name)) == NULL)
		return -ENOMEM;
	if ((normal = path_join(dir, name, SD_SUFFIX)) == NULL ||
	    (final = path_join(dir, name, SD_INCOMING_SUFFIX)) == NULL ||
	    asprintf(&tmp, "%s/.%s.tmp.XXXXXX", dir, name) == -1) {
		tmp = NULL;
		r = -ENOMEM;
		goto fail;
	}
	if (stat(normal, &st) == 0) {
		r = -EEXIST;
		goto fail;
	}
	if ((sd->fd = mkostemp(tmp, O_CLOEXEC)) == -1) {
		r = -errno;
		free(tmp);
		tmp = NULL;
		goto fail;
	}
	sd_layout(pages, &boff, &blen, &moff);
	size = moff + pages * HV_PAGE_SIZE;
	if ((fd = heap_take(dir, size, tmp)) >= 0) {
		close(sd->fd);
		sd->fd = fd;
	}
	/* The lock is taken before the file becomes visible, so a visible
	 * unlocked .incoming file is always stale. */
	if ((r = ofd_lock(sd->fd, LOCK_INCOMING, F_WRLCK)) < 0)
		goto fail;
	if (ftruncate(sd->fd, (off_t)size) == -1) {
		r = -errno;
		goto fail;
	}
	if ((r = sd_alloc_domid(dir, &domid)) < 0)
		goto fail;
	c = mmap(NULL, SD_CTRL_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
	    sd->fd, 0);
	if (c == MAP_FAILED) {
		r = -errno;
		goto fail;
	}
	c->version = SD_LAYOUT_VERSION;
	c->ctrl_size = SD_CTRL_SIZE;
	c->pages = pages;
	c->bitmap_off = boff;
	c->bitmap_len = blen;
	c->mem_off = moff;
	c->domid = domid;
	c->vcpus = vcpus ? vcpus : 1;
	memcpy(c->uuid, uuid, 16);
	snprintf(c->name, sizeof(c->name), "%s", name);
	c->cfg = *cfg;
	c->flags = SD_F_INCOMING;
	c->pause_req = 1;
	__atomic_store_n(&c->magic, SD_MAGIC, __ATOMIC_RELEASE);
	munmap(c, SD_CTRL_SIZE);
	if ((r = map_domain(sd, 1)) < 0)
		goto fail;
	for (tries = 0;; tries++) {
		if (link(tmp, final) == 0)
			break;
		if (errno != EEXIST || tries > 0) {
			r = errno == EEXIST ? -EEXIST : -errno;
			goto fail;
		}
		if ((r = remove_stale_incoming(final)) < 0)
			goto fail;
	}
	unlink(tmp);
	free(tmp);
	free(final);
	free(normal);
	sd->incoming = 1;
	*out = sd;
	return 0;
fail:
	if (tmp != NULL)
		unlink(tmp);
	free(tmp);
	free(final);
	free(normal);
	sd_close(sd);
	return r;
}

int
sd_commit(struct simdom *sd)
{
	char *from = NULL, *to = NULL;
	int r = 0;

	if (!sd->incoming)
		return -EINVAL;
	if ((from = path_join(sd->dir, sd->name, SD_INCOMING_SUFFIX)) == NULL ||
	    (to = path_join(sd->dir, sd->name, SD_SUFFIX)) == NULL) {
		r = -ENOMEM;
		goto out;
	}
	if (link(from, to) == -1) {
		r = -errno;
		goto out;
	}
	unlink(from);
	sd->incoming = 0;
	__atomic_and_fetch(&sd->ctrl->flags, ~SD_F_INCOMING, __ATOMIC_SEQ_CST);
	ofd_lock(sd->fd, LOCK_INCOMING, F_UNLCK);
	if (sd->mem_writable && mprotect(sd->mem, sd->mem_len, PROT_READ) == 0)
		sd->mem_writable = 0;
out:
	free(from);
	free(to);
	return r;
}

int
sd_destroy(struct simdom *sd)
{
	char *path;
	int r;

	__atomic_or_fetch(&sd->ctrl->flags, SD_F_DYING, __ATOMIC_SEQ_CST);
	r = sd_kill_guest(sd);
	path = path_join(sd->dir, sd->name,
	    sd->incoming ? SD_INCOMING_SUFFIX : SD_SUFFIX);
	if (path == NULL)
		r = -ENOMEM;
	else if (unlink(path) == -1 && errno != ENOENT && r == 0)
		r = -errno;
	free(path);
	sd_close(sd);
	return r;
}

/* Dirty tracking (ordering argument at the top of this file). */

void
sd_dirty_mark(struct simdom *sd, uint64_t pfn)
{
	__atomic_fetch_or(&sd->bitmap[pfn / 64], 1ull << (pfn % 64),
	    __ATOMIC_SEQ_CST);
}

void
sd_logdirty_enable(struct simdom *sd)
{
	size_t i, n = bm_words(sd->ctrl->pages);

	for (i = 0; i < n; i++)
		__atomic_exchange_n(&sd->bitmap[i], 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&sd->ctrl->logdirty, 1, __ATOMIC_SEQ_CST);
}

void
sd_logdirty_disable(struct simdom *sd)
{
	__atomic_store_n(&sd->ctrl->logdirty, 0, __ATOMIC_SEQ_CST);
}

int
sd_dirty_fetch(struct simdom *sd, uint64_t *out)
{
	size_t i, n = bm_words(sd->ctrl->pages);

	if (!__atomic_load_n(&sd->ctrl->logdirty, __ATOMIC_SEQ_CST))
		return -EINVAL;
	for (i = 0; i < n; i++)
		out[i] = __atomic_exchange_n(&sd->bitmap[i], 0,
		    __ATOMIC_SEQ_CST);
	return 0;
}

int
sd_throttle_set(struct simdom *sd, unsigned pct)
{
	if (pct > 99)
		return -EINVAL;
	__atomic_store_n(&sd->ctrl->throttle_pct, pct, __ATOMIC_SEQ_CST);
	return 0;
}

unsigned
sd_throttle_get(struct simdom *sd)
{
	return __atomic_load_n(&sd->ctrl->throttle_pct, __ATOMIC_SEQ_CST);
}

/* The guest process. */

int
sd_guest_alive(struct simdom *sd)
{
	return ofd_locked(sd->fd, LOCK_GUEST);
}

int
sd_paused(struct simdom *sd)
{
	struct sd_ctrl *c = sd->ctrl;

	if (!sd_guest_alive(sd))
		return 1;
	return __atomic_load_n(&c->pause_req, __ATOMIC_SEQ_CST) &&
	    __atomic_load_n(&c->paused_ack, __ATOMIC_SEQ_CST) ==
	    __atomic_load_n(&c->pause_gen, __ATOMIC_SEQ_CST);
}

/*
 * The guest acknowledges a pause by storing the pause_gen it read after
 * seeing pause_req set, and re-acknowledges while it waits, so a stale
 * acknowledgement of an earlier pause can never satisfy this one.
 */
int
sd_pause(struct simdom *sd, int timeout_ms)
{
	struct sd_ctrl *c = sd->ctrl;
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
	uint32_t gen;

	__atomic_store_n(&c->pause_req, 1, __ATOMIC_SEQ_CST);
	gen = __atomic_add_fetch(&c->pause_gen, 1, __ATOMIC_SEQ_CST);
	for (;;) {
		if (__atomic_load_n(&c->paused_ack, __ATOMIC_SEQ_CST) == gen)
			return 0;
		if (!sd_guest_alive(sd))
			return 0;
		if (now_ms() > deadline)
			return -ETIMEDOUT;
		sleep_us(200);
	}
}

int
sd_kill_guest(struct simdom *sd)
{
	uint64_t deadline = now_ms() + 5000;
	pid_t pid;

	while (sd_guest_alive(sd)) {
		pid = __atomic_load_n(&sd->ctrl->guest_pid, __ATOMIC_SEQ_CST);
		if (pid > 0)
			kill(pid, SIGKILL);
		if (now_ms() > deadline)
			return -ETIMEDOUT;
		sleep_us(1000);
	}
	return 0;
}

static int
executable(const char *p)
{
	struct stat st;

	return stat(p, &st) == 0 && S_ISREG(st.st_mode) &&
	    access(p, X_OK) == 0;
}

int
sd_find_simhv(const char *explicit_path, char *buf, size_t size)
{
	char exe[PATH_MAX], cand[PATH_MAX + 32], *slash, *path, *dir, *save;
	const char *env;
	ssize_t n;

	if (explicit_path != NULL && *explicit_path != '\0') {
		if (!executable(explicit_path))
			return -ENOENT;
		return snprintf(buf, size, "%s", explicit_path) <
		    (int)size ? 0 : -ENAMETOOLONG;
	}
	if ((env = getenv("SHAREMIG_SIMHV")) != NULL && *env != '\0' &&
	    executable(env))
		return snprintf(buf, size, "%s", env) < (int)size ? 0 :
		    -ENAMETOOLONG;
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = '\0';
		if ((slash = strrchr(exe, '/')) != NULL) {
			*slash = '\0';
			snprintf(cand, sizeof(cand), "%s/../simhv/simhv", exe);
			if (executable(cand))
				goto found;
			snprintf(cand, sizeof(cand), "%s/simhv", exe);
			if (executable(cand))
				goto found;
		}
	}
	if ((env = getenv("PATH")) == NULL || (path = strdup(env)) == NULL)
		return -ENOENT;
	for (dir = strtok_r(path, ":", &save); dir != NULL;
	    dir = strtok_r(NULL, ":", &save)) {
		snprintf(cand, sizeof(cand), "%s/simhv", *dir ? dir : ".");
		if (executable(cand)) {
			free(path);
			goto found;
		}
	}
	free(path);
	return -ENOENT;
found:
	return snprintf(buf, size, "%s", cand) < (int)size ? 0 :
	    -ENAMETOOLONG;
}

/*
 * Start "simhv run --state-dir DIR NAME" detached: double fork, new
 * session, stdin from /dev/null, stdout/stderr appended to DIR/NAME.log,
 * no inherited descriptors, default signal mask.  Only async-signal-safe
 * calls after fork().  Returns once exec succeeded (or its errno).
 */
static int
spawn_guest(struct simdom *sd, const char *simhv)
{
	char *logpath, *argv[6];
	int pfd[2], status, err = 0, r = 0;
	sigset_t all;
	pid_t pid;
	ssize_t n;

	if ((logpath = path_join(sd->dir, sd->name, ".log")) == NULL)
		return -ENOMEM;
	argv[0] = (char *)simhv;
	argv[1] = (char *)"run";
	argv[2] = (char *)"--state-dir";
	argv[3] = sd->dir;
	argv[4] = sd->name;
	argv[5] = NULL;
	if (pipe2(pfd, O_CLOEXEC) == -1) {
		free(logpath);
		return -errno;
	}
	sigemptyset(&all);
	pid = fork();
	if (pid == 0) {
		int fd;

		setsid();
		pid = fork();
		if (pid != 0)
			_exit(pid < 0 ? 1 : 0);
		if ((fd = open("/dev/null", O_RDONLY)) >= 0) {
			dup2(fd, 0);
			if (fd > 2)
				close(fd);
		}
		if ((fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND,
		    0644)) >= 0 || (fd = open("/dev/null", O_WRONLY)) >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			if (fd > 2)
				close(fd);
		}
		close_range(3, ~0u, CLOSE_RANGE_CLOEXEC);
		sigprocmask(SIG_SETMASK, &all, NULL);
		signal(SIGPIPE, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		execv(simhv, argv);
		err = errno;
		(void)!write(pfd[1], &err, sizeof(err));
		_exit(127);
	}
	close(pfd[1]);
	if (pid < 0) {
		r = -errno;
		goto out;
	}
	while (waitpid(pid, &status, 0) == -1 && errno == EINTR)
		;
	while ((n = read(pfd[0], &err, sizeof(err))) == -1 && errno == EINTR)
		;
	if (n == (ssize_t)sizeof(err))
		r = -err;
	else if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
		r = -ECHILD;
out:
	close(pfd[0]);
	free(logpath);
	return r;
}

int
sd_unpause(struct simdom *sd, const char *simhv, int timeout_ms)
{
	struct sd_ctrl *c = sd->ctrl;
	char path[PATH_MAX];
	uint64_t deadline;
	uint32_t st;
	int r;

	__atomic_store_n(&c->pause_req, 0, __ATOMIC_SEQ_CST);
	if (sd_guest_alive(sd))
		return 0;
	if (__atomic_load_n(&c->flags, __ATOMIC_SEQ_CST) &
	    (SD_F_INCOMING | SD_F_DYING))
		return -EINVAL;
	if ((r = sd_find_simhv(simhv, path, sizeof(path))) < 0)
		return r;
	__atomic_store_n(&c->guest_state, SD_GUEST_SPAWNING, __ATOMIC_SEQ_CST);
	if ((r = spawn_guest(sd, path)) < 0) {
		__atomic_store_n(&c->guest_state, SD_GUEST_NONE,
		    __ATOMIC_SEQ_CST);
		return r;
	}
	/*
	 * Return once the guest process runs (holds its lock), as a real
	 * unpause returns once the vCPUs are runnable: the guest's resume
	 * self-check is the guest's own first work, not part of the
	 * hypervisor operation (nor of the migration's downtime).
	 */
	deadline = now_ms() + (uint64_t)timeout_ms;
	for (;;) {
		st = __atomic_load_n(&c->guest_state, __ATOMIC_SEQ_CST);
		if ((st == SD_GUEST_RUNNING || st == SD_GUEST_STARTING) &&
		    sd_guest_alive(sd))
			return 0;
		if (st == SD_GUEST_FAILED || st == SD_GUEST_NONE ||
		    ((st == SD_GUEST_STARTING || st == SD_GUEST_RUNNING) &&
		    !sd_guest_alive(sd)))
			return -EIO;
		if (now_ms() > deadline)
			return -ETIMEDOUT;
		sleep_us(500);
	}
}
