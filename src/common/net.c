/*
 * net.c - small socket helpers (Redis anet style).  See net.h.
 *
 * Only <linux/tcp.h> is used for TCP options (it has tcpi_bytes_acked
 * and tcpi_bytes_received); <netinet/tcp.h> conflicts with it and must
 * not be included here.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <linux/tcp.h>

#include "net.h"

/* Parse a decimal port 0..65535 that makes up all of s. */
static int
parse_port(const char *s, uint16_t *out)
{
	unsigned long v = 0;

	if (*s == '\0')
		return -EINVAL;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		v = v * 10 + (unsigned long)(*s - '0');
		if (v > 65535)
			return -EINVAL;
	}
	*out = (uint16_t)v;
	return 0;
}

/*
 * Split s into host and port.  "[V6]:PORT", "[V6]", "HOST:PORT", "HOST",
 * and a bare IPv6 literal (more than one ':', no brackets) are accepted.
 * host must hold 256 bytes.
 */
static int
split_host_port(const char *s, uint16_t default_port, char *host,
    uint16_t *port)
{
	const char *h, *p = NULL, *colon;
	size_t hlen;

	if (s == NULL || *s == '\0')
		return -EINVAL;
	if (*s == '[') {
		const char *close = strchr(s, ']');

		if (close == NULL)
			return -EINVAL;
		h = s + 1;
		hlen = (size_t)(close - h);
		if (close[1] == ':')
			p = close + 2;
		else if (close[1] != '\0')
			return -EINVAL;
	} else {
		colon = strchr(s, ':');
		h = s;
		if (colon != NULL && strchr(colon + 1, ':') == NULL) {
			hlen = (size_t)(colon - s);
			p = colon + 1;
		} else
			hlen = strlen(s);	/* no port, or bare IPv6 */
	}
	if (hlen == 0 || hlen >= 256)
		return -EINVAL;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	if (p == NULL) {
		*port = default_port;
		return 0;
	}
	return parse_port(p, port);
}

int
net_parse_addr(const char *s, uint16_t default_port, struct net_addr *out)
{
	struct addrinfo hints, *res = NULL;
	struct net_addr a;
	int r;

	memset(&a, 0, sizeof(a));
	r = split_host_port(s, default_port, a.host, &a.port);
	if (r < 0)
		return r;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
	if (getaddrinfo(a.host, "0", &hints, &res) != 0) {
		/* Not a literal: a bracketed host must have been one. */
		if (*s == '[' || strchr(a.host, ':') != NULL)
			return -EINVAL;
		hints.ai_flags = AI_NUMERICSERV;
		if (getaddrinfo(a.host, "0", &hints, &res) != 0)
			return -EHOSTUNREACH;
	}
	if (res == NULL || res->ai_addrlen > sizeof(a.ss)) {
		if (res != NULL)
			freeaddrinfo(res);
		return -EHOSTUNREACH;
	}
	memcpy(&a.ss, res->ai_addr, res->ai_addrlen);
	a.len = res->ai_addrlen;
	freeaddrinfo(res);
	if (a.ss.ss_family == AF_INET)
		((struct sockaddr_in *)&a.ss)->sin_port = htons(a.port);
	else if (a.ss.ss_family == AF_INET6)
		((struct sockaddr_in6 *)&a.ss)->sin6_port = htons(a.port);
	else
		return -EAFNOSUPPORT;
	*out = a;
	return 0;
}

int
net_listen_tcp(const struct net_addr *a, int backlog)
{
	int fd, one = 1, r;

	fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0 ||
	    listen(fd, backlog) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

int
net_connect_tcp(const struct net_addr *a)
{
	int fd, r;

	fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)&a->ss, a->len) < 0 &&
	    errno != EINPROGRESS) {
		r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

int
net_link_opts(int fd, int keepidle_s, int keepintvl_s, int keepcnt,
    unsigned user_timeout_ms)
{
	int one = 1;

	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &keepidle_s,
	    sizeof(keepidle_s)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &keepintvl_s,
	    sizeof(keepintvl_s)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &keepcnt,
	    sizeof(keepcnt)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms,
	    sizeof(user_timeout_ms)) < 0)
		return -errno;
	return 0;
}

int
net_tcp_bytes(int fd, uint64_t *sent, uint64_t *received)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
		return -errno;
	/* Kernels older than 4.1 return a shorter struct. */
	if (len < offsetof(struct tcp_info, tcpi_bytes_received) +
	    sizeof(ti.tcpi_bytes_received))
		return -EOPNOTSUPP;
	*sent = ti.tcpi_bytes_acked;
	*received = ti.tcpi_bytes_received;
	return 0;
}

static int
unix_sockaddr(const char *path, struct sockaddr_un *sun)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (path == NULL || *path == '\0')
		return -EINVAL;
	if (strlen(path) >= sizeof(sun->sun_path))
		return -ENAMETOOLONG;
	strcpy(sun->sun_path, path);
	return 0;
}

/*
 * Make room for a new socket at path: nothing there is fine; a socket
 * nobody answers on (ECONNREFUSED) is removed; a live one is -EADDRINUSE;
 * anything that is not a socket is -EEXIST (never removed).
 */
static int
clear_stale_socket(const char *path)
{
	struct stat st;
	int fd;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	fd = net_connect_unix(path);
	if (fd >= 0) {
		close(fd);
		return -EADDRINUSE;
	}
	if (fd != -ECONNREFUSED)
		return fd;
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

int
net_listen_unix(const char *path, unsigned mode)
{
	struct sockaddr_un sun;
	mode_t old;
	int fd, r;

	if ((r = unix_sockaddr(path, &sun)) < 0)
		return r;
	if ((r = clear_stale_socket(path)) < 0)
		return r;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* The file is created 0600 at most, then opened up to mode. */
	old = umask(0177);
	r = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	if (r < 0) {
		r = -errno;
		goto fail;
	}
	if (chmod(path, mode & 07777) < 0 || listen(fd, SOMAXCONN) < 0) {
		r = -errno;
		unlink(path);
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return r;
}

int
net_connect_unix(const char *path)
{
	struct sockaddr_un sun;
	int fd, r;

	if ((r = unix_sockaddr(path, &sun)) < 0)
		return r;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

int
net_peer_cred(int fd, uint32_t *uid, uint32_t *gid, int32_t *pid)
{
	struct ucred uc;
	socklen_t len = sizeof(uc);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) < 0)
		return -errno;
	if (len != sizeof(uc))
		return -EIO;
	*uid = uc.uid;
	*gid = uc.gid;
	*pid = uc.pid;
	return 0;
}

void
net_peer_str(int fd, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char h[INET6_ADDRSTRLEN];

	if (len == 0)
		return;
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) < 0) {
		snprintf(buf, len, "?");
		return;
	}
	switch (ss.ss_family) {
	case AF_INET: {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		inet_ntop(AF_INET, &sin->sin_addr, h, sizeof(h));
		snprintf(buf, len, "%s:%u", h, ntohs(sin->sin_port));
		break;
	}
	case AF_INET6: {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

		inet_ntop(AF_INET6, &sin6->sin6_addr, h, sizeof(h));
		snprintf(buf, len, "[%s]:%u", h, ntohs(sin6->sin6_port));
		break;
	}
	case AF_UNIX:
		snprintf(buf, len, "unix");
		break;
	default:
		snprintf(buf, len, "af%d", ss.ss_family);
		break;
	}
}

void
net_peer_ip(int fd, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (len == 0)
		return;
	buf[0] = '\0';
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0)
		return;
	if (getnameinfo((struct sockaddr *)&ss, sl, buf, (socklen_t)len, NULL,
	    0, NI_NUMERICHOST) != 0)
		buf[0] = '\0';
}
