/*
 * tls.h - TLS for the migration link (OpenSSL 3): TLS 1.3 only, mutual
 * certificate authentication against a CA, or (pinned mode, for clusters
 * without a CA) against the SHA-256 of the peer's key or certificate.  Only the event-loop thread
 * touches SSL objects.  No logging: errors come back as a negative errno
 * plus a message in the caller's buffer (the OpenSSL error queue, made
 * readable).
 */
#ifndef SHAREMIG_TLS_H
#define SHAREMIG_TLS_H

#include <stddef.h>
#include <openssl/ssl.h>

struct tls_files {
	const char	*cert;	/* PEM certificate chain of this host */
	const char	*key;	/* PEM private key */
	const char	*ca;	/* PEM CA bundle that signs the peers */
	/*
	 * NULL, or "sha256:HEX" (64 hex digits): pinned mode.  The peer's
	 * certificate is accepted if and only if the SHA-256 of its
	 * SubjectPublicKeyInfo (DER) or of the whole certificate (DER)
	 * equals HEX; ca is then not used, nor are the peer's names.
	 */
	const char	*pin;
};

#define TLS_PIN_PREFIX	"sha256:"
#define TLS_PIN_STRLEN	(sizeof(TLS_PIN_PREFIX) - 1 + 64)

/* Parse "sha256:HEX" into out[32].  0 or -EINVAL (out untouched). */
int	tls_pin_parse(const char *s, unsigned char out[32]);
/*
 * The pin of this host's own certificate (the SPKI form), for the
 * peer's --tls-pin: "sha256:HEX" into buf (>= TLS_PIN_STRLEN + 1).
 * 0 or -errno.
 */
int	tls_ctx_own_pin(SSL_CTX *ctx, char *buf, size_t len);

/*
 * An SSL_CTX for a server (destd: requires and verifies the client's
 * certificate) or a client (sourced: verifies the server's certificate
 * and presents its own).  TLS 1.3 minimum.  With f->pin the peer is
 * checked against the pin only; a mismatch fails the handshake with
 * "sharemig: peer certificate is not the pinned one" first in the
 * OpenSSL error queue.  NULL on error, with a one-line reason in err.
 */
SSL_CTX	*tls_ctx_server(const struct tls_files *f, char *err, size_t errlen);
SSL_CTX	*tls_ctx_client(const struct tls_files *f, char *err, size_t errlen);
/*
 * A new client SSL that checks the server certificate's name against
 * host (an IP literal is checked against the IP SANs, a name against the
 * DNS SANs / CN) and sends SNI for names.  NULL on error.
 */
SSL	*tls_client_ssl(SSL_CTX *ctx, const char *host);
/* The peer certificate's subject CN ("" if none), for logs. */
void	tls_peer_name(SSL *ssl, char *buf, size_t len);
/* Drain the OpenSSL error queue into one readable line. */
void	tls_err_string(char *buf, size_t len);

#endif
