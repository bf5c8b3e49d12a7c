/*
 * test_tls.c - tls.c: contexts from certificates made by gen_certs.sh,
 * real handshakes over a socketpair (blocking SSL_accept/SSL_connect in
 * two threads), and the failures that must happen.
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>
#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "tls.h"

static char certdir[PATH_MAX];

static const char *
cpath(const char *name)
{
	static char buf[8][PATH_MAX + 64];
	static int i;

	i = (i + 1) % 8;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", certdir, name);
	return buf[i];
}

/* gen_certs.sh: $SHAREMIG_SOURCE/tests, else beside this file. */
static int
find_script(char *out, size_t len)
{
	const char *src = getenv("SHAREMIG_SOURCE");
	char self[PATH_MAX], file[PATH_MAX];
	ssize_t n;

	if (src != NULL) {
		snprintf(out, len, "%s/tests/gen_certs.sh", src);
		return access(out, R_OK);
	}
	snprintf(file, sizeof(file), "%s", __FILE__);
	snprintf(out, len, "%s/gen_certs.sh", dirname(file));
	if (access(out, R_OK) == 0 || out[0] == '/')
		return access(out, R_OK);
	/* __FILE__ is relative to the build dir: .../build/tests/test_tls. */
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n < 0)
		return -1;
	self[n] = '\0';
	snprintf(file, sizeof(file), "%s", __FILE__);
	snprintf(out, len, "%s/../%s/gen_certs.sh", dirname(dirname(self)),
	    dirname(file));
	return access(out, R_OK);
}

static int
setup(void **state)
{
	char script[PATH_MAX], cmd[3 * PATH_MAX];

	snprintf(certdir, sizeof(certdir), "/tmp/test_tls.XXXXXX");
	if (mkdtemp(certdir) == NULL)
		return -1;
	if (find_script(script, sizeof(script)) != 0) {
		fprintf(stderr, "gen_certs.sh not found\n");
		return -1;
	}
	snprintf(cmd, sizeof(cmd), "sh '%s' '%s'", script, certdir);
	if (system(cmd) != 0) {
		fprintf(stderr, "%s failed\n", cmd);
		return -1;
	}
	return 0;
}

static int
teardown(void **state)
{
	char cmd[PATH_MAX + 16];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", certdir);
	return system(cmd) == 0 ? 0 : -1;
}

static SSL_CTX *
server_ctx(const char *name)
{
	char cert[64], key[64], err[512];
	struct tls_files f = { 0 };
	SSL_CTX *ctx;

	snprintf(cert, sizeof(cert), "%s.pem", name);
	snprintf(key, sizeof(key), "%s.key", name);
	f.cert = cpath(cert);
	f.key = cpath(key);
	f.ca = cpath("ca.pem");
	ctx = tls_ctx_server(&f, err, sizeof(err));
	if (ctx == NULL)
		fail_msg("server ctx %s: %s", name, err);
	return ctx;
}

static SSL_CTX *
client_ctx(const char *name)
{
	char cert[64], key[64], err[512];
	struct tls_files f = { 0 };
	SSL_CTX *ctx;

	snprintf(cert, sizeof(cert), "%s.pem", name);
	snprintf(key, sizeof(key), "%s.key", name);
	f.cert = cpath(cert);
	f.key = cpath(key);
	f.ca = cpath("ca.pem");
	ctx = tls_ctx_client(&f, err, sizeof(err));
	if (ctx == NULL)
		fail_msg("client ctx %s: %s", name, err);
	return ctx;
}

struct side {
	SSL_CTX		*ctx;
	const char	*host;		/* client: expected server name */
	int		 manual;	/* client: plain SSL_new, no tls_client_ssl */
	int		 fd;
	int		 handshake;	/* SSL_accept/SSL_connect succeeded */
	int		 ok;		/* and one byte each way */
	int		 version;
	char		 peer[256];
	char		 err[512];
};

/* Server: accept, send 'S', expect 'C'. */
static void *
server_run(void *arg)
{
	struct side *s = arg;
	SSL *ssl = SSL_new(s->ctx);
	char c = 0;

	SSL_set_fd(ssl, s->fd);
	if (SSL_accept(ssl) == 1) {
		s->handshake = 1;
		s->version = SSL_version(ssl);
		tls_peer_name(ssl, s->peer, sizeof(s->peer));
		if (SSL_write(ssl, "S", 1) == 1 && SSL_read(ssl, &c, 1) == 1 &&
		    c == 'C')
			s->ok = 1;
	}
	tls_err_string(s->err, sizeof(s->err));
	shutdown(s->fd, SHUT_RDWR);	/* never leave the peer waiting */
	SSL_free(ssl);
	ERR_clear_error();
	return NULL;
}

/* Client: connect, expect 'S' (the server may still refuse us), send 'C'. */
static void
client_run(struct side *s)
{
	SSL *ssl = s->manual ? SSL_new(s->ctx) : tls_client_ssl(s->ctx, s->host);
	char c = 0;

	assert_non_null(ssl);
	SSL_set_fd(ssl, s->fd);
	if (SSL_connect(ssl) == 1) {
		s->handshake = 1;
		s->version = SSL_version(ssl);
		tls_peer_name(ssl, s->peer, sizeof(s->peer));
		if (SSL_read(ssl, &c, 1) == 1 && c == 'S' &&
		    SSL_write(ssl, "C", 1) == 1)
			s->ok = 1;
	}
	tls_err_string(s->err, sizeof(s->err));
	shutdown(s->fd, SHUT_RDWR);
	SSL_free(ssl);
	ERR_clear_error();
}

static void
handshake(struct side *srv, struct side *cli)
{
	struct timeval tv = { .tv_sec = 10 };
	pthread_t t;
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0,
	    sv), 0);
	setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(sv[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	srv->fd = sv[0];
	cli->fd = sv[1];
	assert_int_equal(pthread_create(&t, NULL, server_run, srv), 0);
	client_run(cli);
	pthread_join(t, NULL);
	close(sv[0]);
	close(sv[1]);
}

static void
test_good(void **state)
{
	static const char *hosts[] = { "127.0.0.1", "::1", "localhost" };
	size_t i;

	for (i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
		struct side srv = { .ctx = server_ctx("a") };
		struct side cli = { .ctx = client_ctx("b"), .host = hosts[i] };

		handshake(&srv, &cli);
		if (!srv.ok || !cli.ok)
			fail_msg("%s: server %d (%s) client %d (%s)", hosts[i],
			    srv.ok, srv.err, cli.ok, cli.err);
		assert_int_equal(srv.version, TLS1_3_VERSION);
		assert_int_equal(cli.version, TLS1_3_VERSION);
		assert_string_equal(srv.peer, "host-b");
		assert_string_equal(cli.peer, "host-a");
		SSL_CTX_free(srv.ctx);
		SSL_CTX_free(cli.ctx);
	}
}

/* A client whose certificate another CA signed is refused by the server. */
static void
test_client_evil(void **state)
{
	struct side srv = { .ctx = server_ctx("a") };
	struct side cli = { .ctx = client_ctx("evil"), .host = "127.0.0.1" };

	handshake(&srv, &cli);
	assert_false(srv.handshake);
	assert_false(cli.ok);
	assert_non_null(strstr(srv.err, "certificate"));
	SSL_CTX_free(srv.ctx);
	SSL_CTX_free(cli.ctx);
}

/* A server whose certificate another CA signed is refused by the client. */
static void
test_server_evil(void **state)
{
	struct side srv = { .ctx = server_ctx("evil") };
	struct side cli = { .ctx = client_ctx("a"), .host = "127.0.0.1" };

	handshake(&srv, &cli);
	assert_false(cli.handshake);
	assert_false(srv.ok);
	assert_non_null(strstr(cli.err, "certificate verify failed"));
	SSL_CTX_free(srv.ctx);
	SSL_CTX_free(cli.ctx);
}

/* A client that presents no certificate at all. */
static void
test_client_no_cert(void **state)
{
	struct side srv = { .ctx = server_ctx("a") };
	struct side cli = { .manual = 1 };

	cli.ctx = SSL_CTX_new(TLS_client_method());
	assert_non_null(cli.ctx);
	assert_int_equal(SSL_CTX_load_verify_locations(cli.ctx,
	    cpath("ca.pem"), NULL), 1);
	SSL_CTX_set_verify(cli.ctx, SSL_VERIFY_PEER, NULL);
	handshake(&srv, &cli);
	assert_false(srv.handshake);
	assert_false(cli.ok);
	assert_non_null(strstr(srv.err, "certificate"));
	SSL_CTX_free(srv.ctx);
	SSL_CTX_free(cli.ctx);
}

/* A client that wants TLS 1.2 at most. */
static void
test_client_tls12(void **state)
{
	struct side srv = { .ctx = server_ctx("a") };
	struct side cli = { .ctx = client_ctx("b"), .host = "127.0.0.1" };

	assert_int_equal(SSL_CTX_set_min_proto_version(cli.ctx,
	    TLS1_2_VERSION), 1);
	assert_int_equal(SSL_CTX_set_max_proto_version(cli.ctx,
	    TLS1_2_VERSION), 1);
	handshake(&srv, &cli);
	assert_false(srv.handshake);
	assert_false(cli.handshake);
	SSL_CTX_free(srv.ctx);
	SSL_CTX_free(cli.ctx);
}

/* A certificate from the right CA but for another name. */
static void
test_wrong_name(void **state)
{
	static const char *hosts[] = { "127.0.0.1", "::1", "localhost",
	    "example.invalid" };
	size_t i;

	for (i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
		struct side srv = { .ctx = server_ctx("wrongname") };
		struct side cli = { .ctx = client_ctx("b"), .host = hosts[i] };
		int want = strcmp(hosts[i], "example.invalid") == 0;

		handshake(&srv, &cli);
		if (cli.ok != want || srv.ok != want)
			fail_msg("%s: want %d: server %d (%s) client %d (%s)",
			    hosts[i], want, srv.ok, srv.err, cli.ok, cli.err);
		if (!want)
			assert_non_null(strstr(cli.err,
			    "certificate verify failed"));
		SSL_CTX_free(srv.ctx);
		SSL_CTX_free(cli.ctx);
	}
	/* Nor does a good certificate pass for another name. */
	{
		struct side srv = { .ctx = server_ctx("a") };
		struct side cli = { .ctx = client_ctx("b"),
		    .host = "example.invalid" };

		handshake(&srv, &cli);
		assert_false(cli.ok);
		SSL_CTX_free(srv.ctx);
		SSL_CTX_free(cli.ctx);
	}
	assert_null(tls_client_ssl(NULL, ""));
}

static void
test_bad_files(void **state)
{
	struct {
		const char	*cert, *key, *ca;
		int		 err;
		const char	*want1, *want2;
	} cases[] = {
		{ "/nonexistent/x.pem", "a.key", "ca.pem", ENOENT,
		    "/nonexistent/x.pem", "No such file" },
		{ "a.pem", "/nonexistent/x.key", "ca.pem", ENOENT,
		    "/nonexistent/x.key", "No such file" },
		{ "a.pem", "a.key", "/nonexistent/ca.pem", ENOENT,
		    "/nonexistent/ca.pem", "No such file" },
		{ "a.key", "a.key", "ca.pem", EPROTO, "certificate ", "a.key" },
		{ "a.pem", "ca.pem", "ca.pem", EPROTO, "key ", "ca.pem" },
		{ "a.pem", "b.key", "ca.pem", EPROTO, "mismatch", "b.key" },
		{ "a.pem", "a.key", "a.key", EPROTO, "CA ", "a.key" },
	};
	size_t i;
	int server;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		for (server = 0; server < 2; server++) {
			struct tls_files f = { 0 };
			char err[512];
			SSL_CTX *ctx;

			f.cert = cases[i].cert[0] == '/' ? cases[i].cert :
			    cpath(cases[i].cert);
			f.key = cases[i].key[0] == '/' ? cases[i].key :
			    cpath(cases[i].key);
			f.ca = cases[i].ca[0] == '/' ? cases[i].ca :
			    cpath(cases[i].ca);
			err[0] = '\0';
			errno = 0;
			ctx = server ? tls_ctx_server(&f, err, sizeof(err)) :
			    tls_ctx_client(&f, err, sizeof(err));
			if (ctx != NULL)
				fail_msg("case %zu: no error", i);
			assert_int_equal(errno, cases[i].err);
			if (strstr(err, cases[i].want1) == NULL ||
			    strstr(err, cases[i].want2) == NULL ||
			    strchr(err, '\n') != NULL)
				fail_msg("case %zu: \"%s\"", i, err);
			assert_int_equal(ERR_peek_error(), 0);
		}
}

/* A context of host name pinned to pin (no CA). */
static SSL_CTX *
pinned_ctx(const char *name, const char *pin, int server, char *err,
    size_t errlen)
{
	char cert[64], key[64];
	struct tls_files f = { 0 };

	snprintf(cert, sizeof(cert), "%s.pem", name);
	snprintf(key, sizeof(key), "%s.key", name);
	f.cert = cpath(cert);
	f.key = cpath(key);
	f.ca = "/nonexistent/ca.pem";	/* not used with a pin */
	f.pin = pin;
	return server ? tls_ctx_server(&f, err, errlen) :
	    tls_ctx_client(&f, err, errlen);
}

/* The SPKI pin of host name, through tls_ctx_own_pin(). */
static void
spki_pin(const char *name, char *buf, size_t len)
{
	SSL_CTX *ctx = server_ctx(name);

	assert_int_equal(tls_ctx_own_pin(ctx, buf, len), 0);
	SSL_CTX_free(ctx);
}

/* The certificate pin of host name, computed here with OpenSSL. */
static void
cert_pin(const char *name, char *buf, size_t len)
{
	char file[64];
	unsigned char md[32];
	unsigned int n = 0, i;
	FILE *f;
	X509 *x;

	snprintf(file, sizeof(file), "%s.pem", name);
	assert_non_null(f = fopen(cpath(file), "r"));
	assert_non_null(x = PEM_read_X509(f, NULL, NULL, NULL));
	fclose(f);
	assert_int_equal(X509_digest(x, EVP_sha256(), md, &n), 1);
	X509_free(x);
	assert_true(len > 7 + 64);
	strcpy(buf, "sha256:");
	for (i = 0; i < n; i++)
		sprintf(buf + 7 + 2 * i, "%02X", md[i]);	/* case-blind */
}

static void
test_pin_parse(void **state)
{
	static const char *bad[] = { "", "sha256:", "sha1:00",
	    "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde",
	    "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0",
	    "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeg",
	    "sha256 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" };
	unsigned char out[32], keep[32];
	size_t i;

	assert_int_equal(tls_pin_parse("SHA256:00112233445566778899aabbccddeeff"
	    "00112233445566778899AABBCCDDEEFF", out), 0);
	assert_int_equal(out[0], 0x00);
	assert_int_equal(out[1], 0x11);
	assert_int_equal(out[31], 0xff);
	memcpy(keep, out, sizeof(out));
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (tls_pin_parse(bad[i], out) != -EINVAL)
			fail_msg("accepted '%s'", bad[i]);
		assert_memory_equal(out, keep, sizeof(out));	/* untouched */
	}
	assert_int_equal(tls_pin_parse(NULL, out), -EINVAL);
}

/*
 * Pinned mode: both sides accept exactly the pinned peer, SPKI or
 * certificate form, whatever CA signed it and whatever names it has;
 * any other peer is refused with a message that says so.
 */
static void
test_pinned(void **state)
{
	char pa[80], pb[80], pevil[80], cwrong[80], err[512];
	struct side srv, cli;

	spki_pin("b", pb, sizeof(pb));
	spki_pin("evil", pevil, sizeof(pevil));
	cert_pin("wrongname", cwrong, sizeof(cwrong));
	spki_pin("a", pa, sizeof(pa));
	assert_int_equal(strncmp(pa, "sha256:", 7), 0);
	assert_int_equal(strlen(pa), TLS_PIN_STRLEN);
	assert_string_not_equal(pa, pb);

	/* Server "wrongname" (no matching name) pinned by its certificate,
	 * client "evil" (another CA) pinned by its key: accepted. */
	memset(&srv, 0, sizeof(srv));
	memset(&cli, 0, sizeof(cli));
	srv.ctx = pinned_ctx("wrongname", pevil, 1, err, sizeof(err));
	if (srv.ctx == NULL)
		fail_msg("server: %s", err);
	cli.ctx = pinned_ctx("evil", cwrong, 0, err, sizeof(err));
	if (cli.ctx == NULL)
		fail_msg("client: %s", err);
	cli.host = "127.0.0.1";
	handshake(&srv, &cli);
	if (!srv.ok || !cli.ok)
		fail_msg("right pins: server %d (%s) client %d (%s)", srv.ok,
		    srv.err, cli.ok, cli.err);
	assert_int_equal(srv.version, TLS1_3_VERSION);
	SSL_CTX_free(cli.ctx);

	/* Client "a" is not the pinned "evil": the server refuses it. */
	memset(&cli, 0, sizeof(cli));
	srv.ok = srv.handshake = 0;
	cli.ctx = pinned_ctx("a", cwrong, 0, err, sizeof(err));
	assert_non_null(cli.ctx);
	cli.host = "127.0.0.1";
	handshake(&srv, &cli);
	assert_false(srv.handshake);
	assert_false(cli.ok);
	if (strstr(srv.err, "peer certificate is not the pinned one") == NULL ||
	    strstr(srv.err, pa + 7) == NULL)
		fail_msg("unclear server error: %s", srv.err);
	SSL_CTX_free(srv.ctx);
	SSL_CTX_free(cli.ctx);

	/* A CA-signed server the client did not pin: the client refuses. */
	memset(&srv, 0, sizeof(srv));
	memset(&cli, 0, sizeof(cli));
	srv.ctx = server_ctx("a");
	cli.ctx = pinned_ctx("b", pb, 0, err, sizeof(err));
	assert_non_null(cli.ctx);
	cli.host = "127.0.0.1";
	handshake(&srv, &cli);
	assert_false(cli.handshake);
	assert_non_null(strstr(cli.err, "not the pinned one"));
	SSL_CTX_free(srv.ctx);
	SSL_CTX_free(cli.ctx);

	/* A malformed pin: no context, a clear reason. */
	err[0] = '\0';
	assert_null(pinned_ctx("a", "sha256:zz", 1, err, sizeof(err)));
	assert_int_equal(errno, EINVAL);
	assert_non_null(strstr(err, "expected sha256: and 64 hex digits"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_client_evil),
		cmocka_unit_test(test_server_evil),
		cmocka_unit_test(test_client_no_cert),
		cmocka_unit_test(test_client_tls12),
		cmocka_unit_test(test_wrong_name),
		cmocka_unit_test(test_bad_files),
		cmocka_unit_test(test_pin_parse),
		cmocka_unit_test(test_pinned),
	};

	/* A refused peer may be gone before our alert is written. */
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, setup, teardown);
}
