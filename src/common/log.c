/*
 * log.c - daemon logging to stderr.  See log.h.
 *
 * When stderr is the journal (systemd sets JOURNAL_STREAM to stderr's
 * "device:inode"), every line starts with "<N>", the syslog priority, and
 * carries no timestamp (the journal adds its own).  Otherwise a line is
 * "YYYY-MM-DDTHH:MM:SS.mmm progname[pid]: level: message".  Each line is
 * one write(2), so lines from different threads never interleave.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define LOG_LINE_MAX	4096

/* Log settings: written by log_init()/log_set_level(), read by any thread. */
static char	 log_prog[64] = "sharemig";
static int	 log_max = LOG_LVL_INFO;
static int	 log_journal = -1;	/* -1: not checked yet */

/* Whether stderr is the stream JOURNAL_STREAM names. */
static int
stderr_is_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (e == NULL || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
		return 0;
	if (fstat(STDERR_FILENO, &st) < 0)
		return 0;
	return (unsigned long long)st.st_dev == dev &&
	    (unsigned long long)st.st_ino == ino;
}

void
log_init(const char *progname, enum log_level max)
{
	const char *slash;

	if (progname != NULL) {
		slash = strrchr(progname, '/');
		snprintf(log_prog, sizeof(log_prog), "%s",
		    slash != NULL ? slash + 1 : progname);
	}
	__atomic_store_n(&log_max, (int)max, __ATOMIC_RELAXED);
	__atomic_store_n(&log_journal, stderr_is_journal(), __ATOMIC_RELAXED);
}

void
log_set_level(enum log_level max)
{
	__atomic_store_n(&log_max, (int)max, __ATOMIC_RELAXED);
}

static const char *
level_name(int lvl)
{
	switch (lvl) {
	case LOG_LVL_ERR:	return "error";
	case LOG_LVL_WARN:	return "warning";
	case LOG_LVL_NOTICE:	return "notice";
	case LOG_LVL_INFO:	return "info";
	default:		return "debug";
	}
}

/* Format one line and write it with a single write(2).  Keeps errno. */
static void
log_vmsg(int lvl, const char *fmt, va_list ap)
{
	char line[LOG_LINE_MAX];
	struct timespec ts;
	struct tm tm;
	size_t n = 0, i, start;
	int saved = errno, journal, k;
	ssize_t w;

	if (lvl > __atomic_load_n(&log_max, __ATOMIC_RELAXED))
		return;
	journal = __atomic_load_n(&log_journal, __ATOMIC_RELAXED);
	if (journal < 0) {
		journal = stderr_is_journal();
		__atomic_store_n(&log_journal, journal, __ATOMIC_RELAXED);
	}

	if (journal)
		k = snprintf(line, sizeof(line), "<%d>", lvl);
	else {
		clock_gettime(CLOCK_REALTIME, &ts);
		localtime_r(&ts.tv_sec, &tm);
		n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
		k = snprintf(line + n, sizeof(line) - n,
		    ".%03ld %s[%ld]: %s: ", ts.tv_nsec / 1000000L, log_prog,
		    (long)getpid(), level_name(lvl));
	}
	if (k > 0)
		n += (size_t)k;
	if (n >= sizeof(line) - 1)
		n = sizeof(line) - 2;
	start = n;

	errno = saved;		/* for %m */
	k = vsnprintf(line + n, sizeof(line) - 1 - n, fmt, ap);
	if (k > 0)
		n += (size_t)k;
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;	/* truncated */
	/* One message is one line: no embedded newlines. */
	while (n > start && line[n - 1] == '\n')
		n--;
	for (i = start; i < n; i++)
		if (line[i] == '\n' || line[i] == '\r')
			line[i] = ' ';
	line[n++] = '\n';

	do
		w = write(STDERR_FILENO, line, n);
	while (w < 0 && errno == EINTR);
	errno = saved;
}

void
log_msg(enum log_level lvl, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg((int)lvl, fmt, ap);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(LOG_LVL_ERR, fmt, ap);
	va_end(ap);
	exit(1);
}
