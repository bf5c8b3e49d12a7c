/*
 * tlsperf.c - the TLS 1.3 ceiling of a path: how fast one TLS stream,
 * memory to memory, moves bytes between two ends on this machine
 * (bench/run: the two sim hosts' network namespaces, over their veth).
 * iperf3 gives plain TCP's rate; the migration links are TLS 1.3 with
 * mutual certificates, so their streaming rate is bounded by this
 * figure, not iperf3's.  Comparing the daemons against it tells how far
 * they are from what TLS itself allows on the same path and CPUs.
 *
 * The contexts are set up as the daemons' (src/common/tls.c): TLS 1.3
 * only, no compression, renegotiation or tickets, read-ahead into a
 * 256 KiB buffer, the peer's certificate chain verified against a CA
 * (no name check).  The client writes 1 MiB per SSL_write (OpenSSL cuts
 * it into 16 KiB records); the server reads into 256 KiB and discards.
 * A benchmark tool, built and run by bench/run; not part of the daemons.
 *
 *	tlsperf [--ciphersuites LIST] server ADDR PORT CERT KEY CA
 *	tlsperf [--ciphersuites LIST] client ADDR PORT CERT KEY CA BYTES
 *
 * The server accepts one connection, reads until the client's
 * close_notify and prints one JSON object: bytes, seconds (first
 * application byte to close_notify), bps, cpu_s (its user + system CPU
 * over the same interval) and the negotiated cipher suite.  The client
 * prints the same from its side (first SSL_write to the end of the
 * two-way shutdown).  Exit 0, or 1 with the reason on stderr.
 */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define READ_BUF	(256u << 10)	/* the server's SSL_read size */
#define WRITE_BUF	(1u << 20)	/* the client's SSL_write size */
#define READ_AHEAD	(256u << 10)	/* as TLS_READ_AHEAD in tls.c */

struct tp_args {
	const char	*suites;	/* --ciphersuites, or NULL */
	int		 server;
	const char	*addr;
	const char	*port;
	const char	*cert;
	const char	*key;
	const char	*ca;
	uint64_t	 nbytes;	/* client only */
};

/* What one end measured over its interval. */
struct tp_result {
	uint64_t	 bytes;
	double		 seconds;
	double		 cpu_s;
	const char	*cipher;
};

static void usage(void) __attribute__((noreturn));

static void
usage(void)
{
	const char *opt = "[--ciphersuites LIST]";

	fprintf(stderr, "usage: tlsperf %s server ADDR PORT CERT KEY CA\n"
	    "       tlsperf %s client ADDR PORT CERT KEY CA BYTES\n", opt, opt);
	exit(1);
}

/* A failure: the message, then whatever OpenSSL queued on the way. */
static void
fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
fail(const char *fmt, ...)
{
	va_list ap;

	fputs("tlsperf: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	ERR_print_errors_fp(stderr);
}

static double
now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* User + system CPU seconds of this process so far. */
static double
cpu_now(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	    (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/*
 * The context for one end, configured as the daemons configure theirs
 * (tls.c ctx_new), so that the figure is the ceiling for the same
 * settings.  NULL after reporting why.
 */
static SSL_CTX *
ctx_new(const struct tp_args *a)
{
	SSL_CTX *ctx;

	if ((ctx = SSL_CTX_new(a->server ? TLS_server_method() :
	    TLS_client_method())) == NULL) {
		fail("SSL_CTX_new failed");
		return NULL;
	}
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION)) {
		fail("cannot require TLS 1.3");
		goto bad;
	}
	if (a->suites != NULL && !SSL_CTX_set_ciphersuites(ctx, a->suites)) {
		fail("--ciphersuites %s: not accepted", a->suites);
		goto bad;
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION |
	    SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET);
	/*
	 * Read-ahead as the daemons: one read(2) takes many records, where
	 * OpenSSL would otherwise read each record's header and body apart.
	 * Without it this tool would measure a slower receiver than theirs.
	 */
	SSL_CTX_set_read_ahead(ctx, 1);
	SSL_CTX_set_default_read_buffer_len(ctx, READ_AHEAD);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	if (a->server)
		SSL_CTX_set_num_tickets(ctx, 0);
	if (SSL_CTX_use_certificate_chain_file(ctx, a->cert) != 1) {
		fail("certificate %s: cannot load", a->cert);
		goto bad;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, a->key, SSL_FILETYPE_PEM) != 1) {
		fail("key %s: cannot load", a->key);
		goto bad;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		fail("key %s does not match certificate %s", a->key, a->cert);
		goto bad;
	}
	if (SSL_CTX_load_verify_locations(ctx, a->ca, NULL) != 1) {
		fail("CA %s: cannot load", a->ca);
		goto bad;
	}
	/* The chain only: the peer's name is not checked. */
	SSL_CTX_set_verify(ctx, a->server ?
	    SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_PEER,
	    NULL);
	SSL_CTX_set_verify_depth(ctx, 4);
	return ctx;
bad:
	SSL_CTX_free(ctx);
	return NULL;
}

/*
 * A connected TCP socket: the server's one accepted connection (the
 * listener is closed at once), or the client's connection.  -1 after
 * reporting why.
 */
static int
tcp_open(const struct tp_args *a)
{
	struct addrinfo hints, *res, *ai;
	int fd = -1, lfd, e, one = 1, saved = 0;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | (a->server ? AI_PASSIVE : 0);
	if ((e = getaddrinfo(a->addr, a->port, &hints, &res)) != 0) {
		fail("%s port %s: %s", a->addr, a->port, gai_strerror(e));
		return -1;
	}
	for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
		if ((fd = socket(ai->ai_family, ai->ai_socktype,
		    ai->ai_protocol)) < 0) {
			saved = errno;
			continue;
		}
		if (!a->server) {
			if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
				saved = errno;
				close(fd);
				fd = -1;
			}
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
		    listen(fd, 1) != 0) {
			saved = errno;
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	if (fd < 0) {
		fail("%s %s port %s: %s", a->server ? "listen on" :
		    "connect to", a->addr, a->port, strerror(saved));
		return -1;
	}
	if (!a->server)
		return fd;
	lfd = fd;
	while ((fd = accept(lfd, NULL, NULL)) < 0 && errno == EINTR)
		;
	if (fd < 0)
		fail("accept on %s port %s: %s", a->addr, a->port,
		    strerror(errno));
	close(lfd);
	return fd;
}

/* Why an SSL call that returned r failed, for fail(). */
static const char *
ssl_why(SSL *ssl, int r)
{
	switch (SSL_get_error(ssl, r)) {
	case SSL_ERROR_ZERO_RETURN:
		return "peer sent close_notify";
	case SSL_ERROR_SYSCALL:
		return errno != 0 ? strerror(errno) :
		    "peer closed the connection";
	case SSL_ERROR_SSL:
		return "TLS error";
	default:
		return "unexpected SSL_get_error";
	}
}

/*
 * Read and discard until the client's close_notify.  The interval starts
 * when the first application bytes are in hand, so the handshake and
 * the wait for the client are not in it.  0, or -1 after reporting why
 * (a connection that ends without close_notify is an error: the count
 * would be short).
 */
static int
serve(SSL *ssl, struct tp_result *res)
{
	unsigned char *buf;
	uint64_t n = 0;
	double t0 = 0, c0 = 0;
	int r, rc = -1;

	if ((buf = malloc(READ_BUF)) == NULL) {
		fail("%s", strerror(errno));
		return -1;
	}
	for (;;) {
		errno = 0;
		r = SSL_read(ssl, buf, READ_BUF);
		if (r > 0) {
			if (n == 0) {
				t0 = now();
				c0 = cpu_now();
			}
			n += (uint64_t)r;
			continue;
		}
		if (SSL_get_error(ssl, r) == SSL_ERROR_ZERO_RETURN)
			break;
		fail("read after %" PRIu64 " bytes: %s", n, ssl_why(ssl, r));
		goto out;
	}
	if (n == 0) {
		fail("the client sent no data");
		goto out;
	}
	res->seconds = now() - t0;
	res->cpu_s = cpu_now() - c0;
	res->bytes = n;
	/* Answer the close_notify; the count is taken, errors don't matter. */
	SSL_shutdown(ssl);
	rc = 0;
out:
	free(buf);
	return rc;
}

/*
 * Write a->nbytes from one 1 MiB buffer of non-zero pseudo-random bytes
 * (not compressible, not a page of zeros anywhere on the path), then
 * shut down both ways: the interval ends when the server has answered
 * the close_notify, i.e. has read everything.  0, or -1 after reporting
 * why.
 */
static int
send_all(SSL *ssl, const struct tp_args *a, struct tp_result *res)
{
	unsigned char *buf;
	uint64_t x = 0x9e3779b97f4a7c15ull, left = a->nbytes;
	double t0, c0;
	size_t i;
	int r, len, rc = -1;

	if ((buf = malloc(WRITE_BUF)) == NULL) {
		fail("%s", strerror(errno));
		return -1;
	}
	for (i = 0; i < WRITE_BUF; i++) {
		x ^= x << 13;	/* xorshift64 */
		x ^= x >> 7;
		x ^= x << 17;
		buf[i] = (unsigned char)(x >> 56) | 1;
	}
	t0 = now();
	c0 = cpu_now();
	while (left > 0) {
		len = left < WRITE_BUF ? (int)left : (int)WRITE_BUF;
		errno = 0;
		if ((r = SSL_write(ssl, buf, len)) <= 0) {
			fail("write after %" PRIu64 " bytes: %s",
			    a->nbytes - left, ssl_why(ssl, r));
			goto out;
		}
		left -= (uint64_t)r;
	}
	/* 0: our close_notify is sent; the second call waits for theirs. */
	errno = 0;
	if ((r = SSL_shutdown(ssl)) == 0) {
		errno = 0;
		r = SSL_shutdown(ssl);
	}
	if (r != 1) {
		fail("shutdown: %s", ssl_why(ssl, r));
		goto out;
	}
	res->seconds = now() - t0;
	res->cpu_s = cpu_now() - c0;
	res->bytes = a->nbytes;
	rc = 0;
out:
	free(buf);
	return rc;
}

static int
parse_args(int argc, char **argv, struct tp_args *a)
{
	char *end;
	int i = 1;

	memset(a, 0, sizeof(*a));
	if (i + 1 < argc && strcmp(argv[i], "--ciphersuites") == 0) {
		a->suites = argv[i + 1];
		i += 2;
	}
	if (i >= argc)
		return -1;
	if (strcmp(argv[i], "server") == 0 && argc - i == 6)
		a->server = 1;
	else if (strcmp(argv[i], "client") != 0 || argc - i != 7)
		return -1;
	a->addr = argv[i + 1];
	a->port = argv[i + 2];
	a->cert = argv[i + 3];
	a->key = argv[i + 4];
	a->ca = argv[i + 5];
	if (a->server)
		return 0;
	errno = 0;
	a->nbytes = strtoull(argv[i + 6], &end, 10);
	if (errno != 0 || end == argv[i + 6] || *end != '\0' ||
	    a->nbytes == 0 || argv[i + 6][0] == '-') {
		fprintf(stderr, "tlsperf: BYTES %s: not a positive integer\n",
		    argv[i + 6]);
		exit(1);
	}
	return 0;
}

int
main(int argc, char **argv)
{
	struct tp_args a;
	struct tp_result res;
	SSL_CTX *ctx = NULL;
	SSL *ssl = NULL;
	int fd = -1, r, rc = 1;

	if (parse_args(argc, argv, &a) < 0)
		usage();
	/* A peer that resets while we write is an error return, not a kill. */
	signal(SIGPIPE, SIG_IGN);
	memset(&res, 0, sizeof(res));

	if ((ctx = ctx_new(&a)) == NULL)
		goto out;
	if ((fd = tcp_open(&a)) < 0)
		goto out;
	if ((ssl = SSL_new(ctx)) == NULL || SSL_set_fd(ssl, fd) != 1) {
		fail("SSL_new failed");
		goto out;
	}
	errno = 0;
	if ((r = a.server ? SSL_accept(ssl) : SSL_connect(ssl)) != 1) {
		fail("handshake with %s port %s: %s (verify: %s)", a.addr,
		    a.port, ssl_why(ssl, r),
		    X509_verify_cert_error_string(SSL_get_verify_result(ssl)));
		goto out;
	}
	if ((a.server ? serve(ssl, &res) : send_all(ssl, &a, &res)) < 0)
		goto out;
	res.cipher = SSL_CIPHER_get_name(SSL_get_current_cipher(ssl));
	printf("{\"bytes\": %" PRIu64 ", \"seconds\": %.6f, \"bps\": %.0f, "
	    "\"cpu_s\": %.3f, \"cipher\": \"%s\"}\n", res.bytes, res.seconds,
	    res.seconds > 0 ? 8.0 * (double)res.bytes / res.seconds : 0.0,
	    res.cpu_s, res.cipher);
	if (fflush(stdout) != 0) {
		fail("stdout: %s", strerror(errno));
		goto out;
	}
	rc = 0;
out:
	SSL_free(ssl);
	if (fd >= 0)
		close(fd);
	SSL_CTX_free(ctx);
	return rc;
}
