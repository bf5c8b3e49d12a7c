/*
 * net.h - small socket helpers (Redis anet style): address parsing,
 * listening and connecting TCP sockets, link options, byte counters.
 * No logging; negative errno returns.
 */
#ifndef SHAREMIG_NET_H
#define SHAREMIG_NET_H

#include <stdint.h>
#include <sys/socket.h>

struct net_addr {
	struct sockaddr_storage	ss;
	socklen_t		len;
	char			host[256];	/* as given, brackets removed */
	uint16_t		port;
};

/*
 * Parse "HOST:PORT", "[V6]:PORT" or "HOST" (then default_port).  HOST may
 * be a literal address or a name (resolved with getaddrinfo, first
 * result).  0, -EINVAL (syntax), -EHOSTUNREACH (name does not resolve).
 */
int	net_parse_addr(const char *s, uint16_t default_port, struct net_addr *out);
/* A non-blocking, close-on-exec listening TCP socket (SO_REUSEADDR).  fd or -errno. */
int	net_listen_tcp(const struct net_addr *a, int backlog);
/* Start a non-blocking connect; fd or -errno (EINPROGRESS is success). */
int	net_connect_tcp(const struct net_addr *a);
/*
 * Options for a migration link: TCP_NODELAY on (records are batched in
 * the output buffer already; small control records such as HAVE, NEED,
 * READY and GO must not wait for Nagle), keepalive
 * (idle/intvl/cnt seconds), TCP_USER_TIMEOUT (ms).  0 or -errno.
 */
int	net_link_opts(int fd, int keepidle_s, int keepintvl_s, int keepcnt,
	    unsigned user_timeout_ms);
/* Bytes acknowledged by the peer (sent) and received on a TCP socket,
 * from TCP_INFO (tcpi_bytes_acked / tcpi_bytes_received). 0 or -errno. */
int	net_tcp_bytes(int fd, uint64_t *sent, uint64_t *received);
/* A non-blocking, close-on-exec listening UNIX socket at path, mode 0600
 * (an existing stale socket file is replaced).  fd or -errno. */
int	net_listen_unix(const char *path, unsigned mode);
/* A blocking connected UNIX socket.  fd or -errno. */
int	net_connect_unix(const char *path);
/* Peer credentials of a UNIX socket. 0 or -errno. */
int	net_peer_cred(int fd, uint32_t *uid, uint32_t *gid, int32_t *pid);
/* The peer's numeric address without the port ("" if unknown). */
void	net_peer_ip(int fd, char *buf, size_t len);
/* "addr:port" of a socket's peer, for logs. */
void	net_peer_str(int fd, char *buf, size_t len);

#endif
