/*
 * fuzz_ctl.c - libFuzzer target for the control-socket server
 * (src/common/ctl.c): framing, JSON parsing, the reply path, deferred
 * replies and the half-close/close rules of docs/CONTROL.md, in process.
 *
 * The server has no socket (ctl_server_new_unbound()); each input gets
 * a libevent bufferevent pair, one end handed to the server with
 * ctl_server_attach() (the call the accept path makes), the other end
 * driven here as the client.  No syscall per byte, no accept: fast
 * enough for 10^7 executions, where the socket-level fuzz_ctl_sock.c
 * manages ~100 exec/s.  Pairs always defer their callbacks to the event
 * loop, as socket bufferevents do.
 *
 * The client writes the input (in chunks whose sizes come from the
 * input, one chunk per loop turn, so framing across reads is exercised),
 * half-closes once all of it has reached the server
 * (bufferevent_flush(BEV_FINISHED): the server sees EOF, as after
 * shutdown(SHUT_WR)), and runs the loop until the server lets go of the
 * connection.  A "gone" client (input byte 0 = 0xff) instead resets the
 * connection (an error event on the server's end, as ECONNRESET) once
 * the server has seen part of the input, and goes away.
 *
 * The harness holds a reference on the server's end, so it can tell
 * when the server has freed it (bufferevent_free() clears the callbacks)
 * without touching freed memory; that is "the server closed".
 * Input layout, handler and oracle: ctl_oracle.h.
 *
 * Built with clang -fsanitize=fuzzer (fuzz/meson.build), or without
 * libFuzzer together with replay_main.c to replay a corpus.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "ctl.h"
#include "ctl_oracle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct event_base	*base;
static struct ctl_server	*srv;

static void
cleanup(void)
{
	ctl_server_free(srv);
	event_base_free(base);
}

static void
setup(void)
{
	CHECK((base = event_base_new()) != NULL);
	CHECK(ctl_server_new_unbound(base, oracle_handler, base, &srv) == 0);
	atexit(cleanup);
}

/* 1 once the server has freed its end b (we hold a reference). */
static int
released(struct bufferevent *b)
{
	bufferevent_data_cb rcb, wcb;
	bufferevent_event_cb ecb;
	void *arg;

	bufferevent_getcb(b, &rcb, &wcb, &ecb, &arg);
	return rcb == NULL && ecb == NULL;
}

static void
hang_check(time_t t0, size_t off, size_t size, int shut)
{
	if (oracle_now_s() - t0 <= HANG_S)
		return;
	fprintf(stderr, "fuzz_ctl: server hangs: sent %zu of %zu bytes, "
	    "shut %d, %d deferred\n", off, size, shut, oracle_ndeferred);
	abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bufferevent *pair[2], *sbev, *cli;
	struct evbuffer *cin, *cout;
	char *out = NULL;
	size_t chunk, off = 0, olen = 0, want, nrep;
	time_t t0 = oracle_now_s();
	int shut = 0, gone;

	if (base == NULL)
		setup();
	if ((gone = oracle_decode(&data, &size, &chunk, &want)) < 0)
		return 0;

	CHECK(bufferevent_pair_new(base, 0, pair) == 0);
	sbev = pair[0];
	cli = pair[1];
	bufferevent_incref(sbev);	/* see released() */
	CHECK(ctl_server_attach(srv, sbev, (unsigned)geteuid()) == 0);
	CHECK(bufferevent_enable(cli, EV_READ | EV_WRITE) == 0);
	cin = bufferevent_get_input(cli);
	cout = bufferevent_get_output(cli);

	while (!released(sbev)) {
		hang_check(t0, off, size, shut);
		if (off < size) {
			size_t m = size - off < chunk ? size - off : chunk;

			CHECK(bufferevent_write(cli, data + off, m) == 0);
			off += m;
		}
		/* Half-close once every byte has reached the server. */
		if (off == size && !shut && evbuffer_get_length(cout) == 0) {
			bufferevent_flush(cli, EV_WRITE, BEV_FINISHED);
			shut = 1;
		}
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		if (gone && (shut || off > 0)) {
			/* The server saw (part of) it: reset, go away. */
			if (!released(sbev))
				bufferevent_trigger_event(sbev,
				    BEV_EVENT_ERROR | BEV_EVENT_READING, 0);
			break;
		}
	}
	if (!gone) {
		olen = evbuffer_get_length(cin);
		CHECK((out = malloc(olen + 1)) != NULL);
		CHECK(evbuffer_remove(cin, out, olen) == (int)olen);
	}
	bufferevent_free(cli);
	/* The server must let go of a reset connection too. */
	while (!released(sbev)) {
		hang_check(t0, off, size, shut);
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	}
	bufferevent_decref(sbev);
	/* Let deferred replies for a gone client run: dropped, not leaked. */
	while (oracle_ndeferred > 0) {
		hang_check(t0, off, size, shut);
		event_base_loop(base, EVLOOP_ONCE);
	}
	event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);

	if (!gone) {
		nrep = oracle_check_replies(out, olen);
		CHECK(nrep == want);
	}
	free(out);
	return 0;
}
