/*
 * fuzz_ctl_sock.c - libFuzzer target for the control-socket server
 * (src/common/ctl.c) over a real UNIX socket: what fuzz_ctl.c covers,
 * plus the accept path (peer credentials, ctl_server_attach() from
 * accept_cb) and the kernel's EOF/reset behaviour.  It is slow (a
 * connect, an accept and syscalls on every loop turn: ~100 exec/s), so
 * long runs go to fuzz_ctl.c; this one replays the shared corpus
 * (fuzz/corpus/ctl) and gets a short smoke run in CI.
 *
 * One ctl server listens on a UNIX socket in /dev/shm (made once per
 * process, on this thread's event base).  For each input a client
 * connects, writes the input as its bytes (in chunks whose sizes come
 * from the input, so framing across reads is exercised), shuts down its
 * sending side and reads until the server closes.  The event loop runs
 * in between, on this thread.  Input layout, handler and oracle:
 * ctl_oracle.h.
 *
 * Built with clang -fsanitize=fuzzer (fuzz/meson.build), or without
 * libFuzzer together with replay_main.c to replay a corpus.
 */
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>

#include "ctl.h"
#include "ctl_oracle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct event_base	*base;
static struct ctl_server	*srv;
static char			 dir[64], sock[128];

static void
cleanup(void)
{
	ctl_server_free(srv);	/* unlinks the socket */
	rmdir(dir);
}

static void
setup(void)
{
	const char *d = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";

	signal(SIGPIPE, SIG_IGN);	/* ctl.h: the process must */
	CHECK((base = event_base_new()) != NULL);
	snprintf(dir, sizeof(dir), "%s/fuzz_ctl.XXXXXX", d);
	CHECK(mkdtemp(dir) != NULL);
	snprintf(sock, sizeof(sock), "%s/ctl.sock", dir);
	CHECK(ctl_server_new(base, sock, -1, oracle_handler, base, &srv) == 0);
	atexit(cleanup);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sockaddr_un sa;
	char *out = NULL;
	size_t chunk, off = 0, olen = 0, ocap = 0, nrep, want;
	ssize_t k;
	time_t t0 = oracle_now_s();
	int fd, eof = 0, shut = 0, gone;

	if (base == NULL)
		setup();
	if ((gone = oracle_decode(&data, &size, &chunk, &want)) < 0)
		return 0;

	CHECK((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0)) >= 0);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	CHECK(strlen(sock) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, sock, strlen(sock) + 1);
	CHECK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);

	while (!eof) {
		if (oracle_now_s() - t0 > HANG_S) {
			fprintf(stderr, "fuzz_ctl_sock: server hangs: sent %zu "
			    "of %zu bytes, shut %d, %zu reply bytes, "
			    "%d deferred\n", off, size, shut, olen,
			    oracle_ndeferred);
			abort();
		}
		while (off < size) {
			size_t m = size - off < chunk ? size - off : chunk;

			k = send(fd, data + off, m, MSG_NOSIGNAL);
			if (k <= 0)
				break;	/* full, or the server closed */
			off += (size_t)k;
			if (chunk != SIZE_MAX)
				break;	/* one chunk per loop turn */
		}
		if (off == size && !shut) {
			(void)shutdown(fd, SHUT_WR);
			shut = 1;
		}
		if (gone && (shut || off > 0)) {
			/* The server saw (part of) it: go away now. */
			event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
			break;
		}
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		for (;;) {
			if (ocap - olen < 65536) {
				ocap = ocap ? ocap * 2 : 131072;
				CHECK((out = realloc(out, ocap)) != NULL);
			}
			k = recv(fd, out + olen, ocap - olen - 1, 0);
			if (k == 0) {
				eof = 1;
				break;
			}
			if (k < 0) {
				/* A reset after "request too long" loses
				 * nothing we count on: stop reading. */
				if (errno == ECONNRESET || errno == EPIPE)
					eof = 1;
				break;
			}
			olen += (size_t)k;
		}
	}
	close(fd);
	/* Let deferred replies for a gone client run: dropped, not leaked. */
	while (oracle_ndeferred > 0) {
		CHECK(oracle_now_s() - t0 <= HANG_S);
		event_base_loop(base, EVLOOP_ONCE);
	}
	event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);

	nrep = oracle_check_replies(out, olen);
	if (!gone)
		CHECK(nrep == want);
	free(out);
	return 0;
}
