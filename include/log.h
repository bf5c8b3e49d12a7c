/*
 * log.h - daemon logging to stderr (the journal under systemd), with
 * syslog priorities as "<N>" prefixes when stderr is the journal.  Only
 * daemons and tools log; library code in src/common does not.
 */
#ifndef SHAREMIG_LOG_H
#define SHAREMIG_LOG_H

#include <stdarg.h>
#include <stdnoreturn.h>

enum log_level { LOG_LVL_ERR = 3, LOG_LVL_WARN = 4, LOG_LVL_NOTICE = 5,
	LOG_LVL_INFO = 6, LOG_LVL_DEBUG = 7 };

/* Set once at start-up: program name, maximum level shown. */
void	log_init(const char *progname, enum log_level max);
void	log_set_level(enum log_level max);
void	log_msg(enum log_level lvl, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
#define log_err(...)	log_msg(LOG_LVL_ERR, __VA_ARGS__)
#define log_warn(...)	log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_notice(...)	log_msg(LOG_LVL_NOTICE, __VA_ARGS__)
#define log_info(...)	log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...)	log_msg(LOG_LVL_DEBUG, __VA_ARGS__)
/* Log at ERR and exit(1): start-up failures only. */
noreturn void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
