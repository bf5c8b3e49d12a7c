/*
 * ctl_oracle.h - shared by the control-socket fuzz targets
 * (fuzz_ctl.c: in-process bufferevent pair; fuzz_ctl_sock.c: a real
 * UNIX socket).  Both take the same input layout and check the server
 * with the same oracle, so one corpus (fuzz/corpus/ctl) serves both.
 *
 * Input layout: byte 0 selects the chunk size of the client's writes
 * (0 = all at once, 0xff = all at once and the client goes away without
 * reading a reply: pending and deferred replies are then dropped, else
 * 1 + b*17 bytes); the rest is the byte stream.
 *
 * The handler validates requests the way the daemons' command tables do
 * (src/sourced/sourced.c, src/destd/destd.c): a "cmd" string, then typed
 * fields per command, errors through ctl_reply_error().  Two commands
 * reply later: "wait" from a zero timer, "defer" after the client may be
 * gone (the reply is then dropped, no leak).  "echo" replies with the
 * request object itself, so the serialiser sees every parsed value.
 *
 * Oracle, any failure aborts:
 *   - every reply line is a JSON object with a boolean "ok", and an
 *     "error" string when ok is false;
 *   - the number of replies is exactly what docs/CONTROL.md promises for
 *     this byte stream (one per non-empty line up to the first line over
 *     CTL_LINE_MAX, one for an overlong or unterminated tail);
 *   - the server closes the connection after the input's EOF;
 *   - nothing is leaked (LeakSanitizer) and no deferred request is left.
 */
#ifndef SHAREMIG_FUZZ_CTL_ORACLE_H
#define SHAREMIG_FUZZ_CTL_ORACLE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct ctl_req;
struct json_object;

#define CHECK(x)	do { if (!(x)) abort(); } while (0)
#define HANG_S		20	/* seconds before "the server hangs" */

/* Deferred requests not yet replied to. */
extern int	oracle_ndeferred;

/* Seconds on CLOCK_MONOTONIC, for the hang checks. */
time_t	oracle_now_s(void);
/* The ctl_handler; arg is the server's struct event_base. */
void	oracle_handler(struct ctl_req *r, struct json_object *req, void *arg);
/*
 * Split off byte 0 of the input (see above): advances *data, shrinks
 * *size, sets *chunk and the number of replies *want the rest must get.
 * Returns 1 for "client gone", 0 otherwise, -1 for an empty input.
 */
int	oracle_decode(const uint8_t **data, size_t *size, size_t *chunk,
	    size_t *want);
/* Replies docs/CONTROL.md promises for the byte stream s[0..n). */
size_t	oracle_expected_replies(const uint8_t *s, size_t n);
/*
 * Check the reply bytes out[0..olen) (out[olen] must be writable): each
 * line one well-formed reply.  Returns the number of replies.
 */
size_t	oracle_check_replies(char *out, size_t olen);

#endif
