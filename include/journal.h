/*
 * journal.h - small on-disk records of in-flight migrations, one JSON
 * object per file DIR/NAME.json, so a daemon that restarts after a crash
 * finds what it left (sourced: sourced-journal/, destd: destd-journal/).
 *
 * A record is replaced atomically (written to NAME.json.tmp, fsync'd,
 * renamed), so a crash leaves the old record or the new one, never a
 * torn one.  Any thread; no global state.
 */
#ifndef SHAREMIG_JOURNAL_H
#define SHAREMIG_JOURNAL_H

struct json_object;

/* Create dir (mode 0700) if missing; 0 or -errno. */
int	journal_init(const char *dir);
/* Write o as DIR/NAME.json; 0 or -errno (nothing half-written left). */
int	journal_put(const char *dir, const char *name, struct json_object *o);
/* Remove DIR/NAME.json; 0 (also when absent) or -errno. */
int	journal_del(const char *dir, const char *name);
/*
 * Call fn for each DIR/NAME.json, with NAME (without ".json") and the
 * parsed object, or NULL when the file is not a JSON object (fn decides:
 * such a file is normally left for the operator).  A leftover .tmp file
 * (a crash during journal_put) is removed.  Returns the number of
 * records seen, or -errno if dir cannot be read (0 if it does not exist).
 * Read a record's fields with ctl_get_str() and friends (ctl.h); they
 * take NULL as an object without the field.
 */
int	journal_each(const char *dir, void (*fn)(const char *name,
	    struct json_object *o, void *arg), void *arg);

#endif
