/*
 * tls.c - TLS contexts for the migration link (OpenSSL 3).  See tls.h.
 *
 * Both sides: TLS 1.3 only, a certificate chain and key of their own, a
 * CA bundle that must have signed the peer's certificate, or a pin: the
 * SHA-256 of the peer's public key (SPKI) or certificate, checked by a
 * verification callback that replaces the chain check.  No
 * renegotiation (TLS 1.3 has none), no compression, no session
 * resumption: every migration link is one full handshake.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "pagehash.h"
#include "tls.h"

void
tls_err_string(char *buf, size_t len)
{
	const char *file, *func, *data;
	unsigned long e;
	size_t n = 0;
	int line, flags, k;
	char one[256];

	if (len == 0)
		return;
	buf[0] = '\0';
	while ((e = ERR_get_error_all(&file, &line, &func, &data,
	    &flags)) != 0) {
		const char *lib = ERR_lib_error_string(e);
		const char *reason = ERR_reason_error_string(e);

		if (reason != NULL)
			snprintf(one, sizeof(one), "%s%s%s", reason,
			    (flags & ERR_TXT_STRING) && data != NULL &&
			    *data != '\0' ? ": " : "",
			    (flags & ERR_TXT_STRING) && data != NULL ? data : "");
		else
			snprintf(one, sizeof(one), "error %lx", e);
		if (n >= len - 1)
			continue;	/* keep draining */
		k = snprintf(buf + n, len - n, "%s%s%s%s", n > 0 ? "; " : "",
		    lib != NULL ? lib : "", lib != NULL ? ": " : "", one);
		if (k > 0)
			n += (size_t)k;
		if (n > len - 1)
			n = len - 1;
	}
	if (n == 0)
		snprintf(buf, len, "unknown TLS error");
}

/*
 * Our own OpenSSL error library, so that a pin mismatch reads as such in
 * the daemons' logs (link.c logs the first error of the queue).
 */
#define PIN_R_MISMATCH	1

static pthread_once_t	 pin_once = PTHREAD_ONCE_INIT;
static int		 pin_lib;	/* ERR library number */
static int		 pin_idx = -1;	/* SSL_CTX ex_data: the pin */

static void
pin_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
    void *argp)
{
	free(ptr);
}

static void
pin_init(void)
{
	static ERR_STRING_DATA strs[] = {
		{ 0, "sharemig" },
		{ 0, "peer certificate is not the pinned one" },
		{ 0, NULL },
	};

	pin_lib = ERR_get_next_error_library();
	strs[0].error = ERR_PACK(pin_lib, 0, 0);
	strs[1].error = ERR_PACK(pin_lib, 0, PIN_R_MISMATCH);
	ERR_load_strings(pin_lib, strs);
	pin_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, pin_free);
}

static int
unhex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
tls_pin_parse(const char *s, unsigned char out[32])
{
	unsigned char b[32];
	size_t i, plen = strlen(TLS_PIN_PREFIX);
	int hi, lo;

	if (s == NULL || strncasecmp(s, TLS_PIN_PREFIX, plen) != 0 ||
	    strlen(s) != TLS_PIN_STRLEN)
		return -EINVAL;
	s += plen;
	for (i = 0; i < sizeof(b); i++) {
		if ((hi = unhex(s[2 * i])) < 0 || (lo = unhex(s[2 * i + 1])) < 0)
			return -EINVAL;
		b[i] = (unsigned char)(hi << 4 | lo);
	}
	memcpy(out, b, sizeof(b));
	return 0;
}

/*
 * SHA-256 of x's SubjectPublicKeyInfo in DER (what "openssl x509 -pubkey
 * | openssl pkey -pubin -outform der | sha256sum" hashes; not
 * X509_pubkey_digest(), which hashes only the key bits).  0 or -EPROTO.
 */
static int
spki_sha256(X509 *x, unsigned char md[32])
{
	unsigned char *der = NULL;
	int n;

	n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &der);
	if (n <= 0)
		return -EPROTO;
	n = SHA256(der, (size_t)n, md) != NULL ? 0 : -EPROTO;
	OPENSSL_free(der);
	return n;
}

int
tls_ctx_own_pin(SSL_CTX *ctx, char *buf, size_t len)
{
	unsigned char md[32];
	X509 *x = SSL_CTX_get0_certificate(ctx);

	if (x == NULL)
		return -ENOENT;
	if (len < TLS_PIN_STRLEN + 1)
		return -ENOSPC;
	if (spki_sha256(x, md) < 0)
		return -EPROTO;
	memcpy(buf, TLS_PIN_PREFIX, strlen(TLS_PIN_PREFIX));
	ph_hex(md, buf + strlen(TLS_PIN_PREFIX));
	return 0;
}

/*
 * The whole peer verification in pinned mode (replaces X509_verify_cert):
 * the leaf's SPKI or certificate SHA-256 must equal the pin.  Chain,
 * expiry and names do not count: the pin alone identifies the peer.
 */
static int
pin_verify(X509_STORE_CTX *x, void *arg)
{
	const unsigned char *pin = arg;
	unsigned char spki[32], cert[32];
	unsigned int n = 0;
	char shex[65];
	X509 *leaf = X509_STORE_CTX_get0_cert(x);

	if (leaf != NULL && spki_sha256(leaf, spki) == 0 &&
	    X509_digest(leaf, EVP_sha256(), cert, &n) == 1 && n == 32) {
		if (CRYPTO_memcmp(spki, pin, 32) == 0 ||
		    CRYPTO_memcmp(cert, pin, 32) == 0) {
			X509_STORE_CTX_set_error(x, X509_V_OK);
			return 1;
		}
		ph_hex(spki, shex);
	} else
		snprintf(shex, sizeof(shex), "none");
	X509_STORE_CTX_set_error(x, X509_V_ERR_CERT_REJECTED);
	ERR_raise_data(pin_lib, PIN_R_MISMATCH, "peer SPKI sha256:%s", shex);
	return 0;
}

/* Pinned mode on ctx.  0, or -EINVAL/-ENOMEM with err filled. */
static int
ctx_pin(SSL_CTX *ctx, const char *pin, char *err, size_t errlen)
{
	unsigned char *p;

	pthread_once(&pin_once, pin_init);
	if (pin_idx < 0 || (p = malloc(32)) == NULL) {
		snprintf(err, errlen, "pin: out of memory");
		return -ENOMEM;
	}
	if (tls_pin_parse(pin, p) < 0) {
		free(p);
		snprintf(err, errlen, "pin '%s': expected sha256: and 64 hex "
		    "digits", pin);
		return -EINVAL;
	}
	if (SSL_CTX_set_ex_data(ctx, pin_idx, p) != 1) {
		free(p);
		snprintf(err, errlen, "pin: out of memory");
		return -ENOMEM;
	}
	SSL_CTX_set_cert_verify_callback(ctx, pin_verify, p);
	return 0;
}

/* Write "what path: reason" into err, the reason from OpenSSL. */
static void
file_error(char *err, size_t errlen, const char *what, const char *path)
{
	char why[512];

	tls_err_string(why, sizeof(why));
	snprintf(err, errlen, "%s %s: %s", what, path, why);
}

/*
 * Check that path is readable before OpenSSL tries: its own message for
 * a missing file is obscure.  0, or -errno with err filled.
 */
static int
check_file(const char *what, const char *path, char *err, size_t errlen)
{
	int e;

	if (path == NULL || *path == '\0') {
		snprintf(err, errlen, "%s: no file configured", what);
		return -EINVAL;
	}
	if (access(path, R_OK) < 0) {
		e = errno;
		snprintf(err, errlen, "%s %s: %s", what, path, strerror(e));
		return -e;
	}
	return 0;
}

/* Bytes one read(2) of a TLS link may take (OpenSSL's read-ahead buffer). */
#define TLS_READ_AHEAD	(256u << 10)

/*
 * The common part of both contexts.  NULL on error with err filled and
 * errno set (ENOENT, EACCES... for files, EPROTO for bad contents).
 */
static SSL_CTX *
ctx_new(const SSL_METHOD *m, const struct tls_files *f, int server,
    char *err, size_t errlen)
{
	SSL_CTX *ctx = NULL;
	int r;

	ERR_clear_error();
	if ((r = check_file("certificate", f->cert, err, errlen)) < 0 ||
	    (r = check_file("key", f->key, err, errlen)) < 0 ||
	    (f->pin == NULL &&
	    (r = check_file("CA", f->ca, err, errlen)) < 0)) {
		errno = -r;
		return NULL;
	}
	if ((ctx = SSL_CTX_new(m)) == NULL) {
		char why[256];

		tls_err_string(why, sizeof(why));
		snprintf(err, errlen, "SSL_CTX_new: %s", why);
		errno = ENOMEM;
		return NULL;
	}
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION)) {
		char why[256];

		tls_err_string(why, sizeof(why));
		snprintf(err, errlen, "TLS 1.3: %s", why);
		goto fail;
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION |
	    SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET);
	/*
	 * Links stream megabytes.  Read ahead: one read(2) takes up to
	 * TLS_READ_AHEAD bytes, many records, where OpenSSL would otherwise
	 * make two reads of each record (header, then body); link.c moves
	 * what OpenSSL holds into the input (link_tls_pull), as libevent's
	 * bufferevent_openssl takes only two records per readiness of the
	 * socket.  The buffers are kept: SSL_MODE_RELEASE_BUFFERS would free
	 * and allocate them again for every record.
	 */
	SSL_CTX_set_read_ahead(ctx, 1);
	SSL_CTX_set_default_read_buffer_len(ctx, TLS_READ_AHEAD);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	if (server)
		SSL_CTX_set_num_tickets(ctx, 0);

	if (SSL_CTX_use_certificate_chain_file(ctx, f->cert) != 1) {
		file_error(err, errlen, "certificate", f->cert);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, f->key, SSL_FILETYPE_PEM) != 1) {
		file_error(err, errlen, "key", f->key);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		char why[256];

		tls_err_string(why, sizeof(why));
		snprintf(err, errlen, "key %s does not match certificate %s: %s",
		    f->key, f->cert, why);
		goto fail;
	}
	if (f->pin != NULL) {
		if ((r = ctx_pin(ctx, f->pin, err, errlen)) < 0) {
			SSL_CTX_free(ctx);
			errno = -r;
			return NULL;
		}
	} else if (SSL_CTX_load_verify_locations(ctx, f->ca, NULL) != 1) {
		file_error(err, errlen, "CA", f->ca);
		goto fail;
	}
	SSL_CTX_set_verify(ctx, server ?
	    SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_PEER,
	    NULL);
	SSL_CTX_set_verify_depth(ctx, 4);
	return ctx;
fail:
	SSL_CTX_free(ctx);
	errno = EPROTO;
	return NULL;
}

SSL_CTX *
tls_ctx_server(const struct tls_files *f, char *err, size_t errlen)
{
	return ctx_new(TLS_server_method(), f, 1, err, errlen);
}

SSL_CTX *
tls_ctx_client(const struct tls_files *f, char *err, size_t errlen)
{
	return ctx_new(TLS_client_method(), f, 0, err, errlen);
}

SSL *
tls_client_ssl(SSL_CTX *ctx, const char *host)
{
	unsigned char ip[sizeof(struct in6_addr)];
	SSL *ssl;

	if (host == NULL || *host == '\0')
		return NULL;
	if ((ssl = SSL_new(ctx)) == NULL)
		return NULL;
	if (inet_pton(AF_INET, host, ip) == 1 ||
	    inet_pton(AF_INET6, host, ip) == 1) {
		/* IP SANs only; no SNI for literals (RFC 6066). */
		if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl),
		    host) != 1)
			goto fail;
	} else {
		SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		if (SSL_set1_host(ssl, host) != 1 ||
		    SSL_set_tlsext_host_name(ssl, host) != 1)
			goto fail;
	}
	return ssl;
fail:
	SSL_free(ssl);
	return NULL;
}

void
tls_peer_name(SSL *ssl, char *buf, size_t len)
{
	X509 *cert;

	if (len == 0)
		return;
	buf[0] = '\0';
	cert = SSL_get0_peer_certificate(ssl);
	if (cert == NULL)
		return;
	if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert),
	    NID_commonName, buf, (int)len) < 0)
		buf[0] = '\0';
}
