/*
 * test_net.c - net.c: address parsing, TCP listen/connect on loopback,
 * TCP byte counters, UNIX listening sockets.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <netinet/in.h>
#include <cmocka.h>

#include "net.h"

struct parse_case {
	const char	*in;
	int		 ret;
	const char	*host;
	uint16_t	 port;
	int		 family;	/* 0: any */
};

static const struct parse_case parse_cases[] = {
	{ "127.0.0.1:7000",	0, "127.0.0.1", 7000, AF_INET },
	{ "[::1]:7000",		0, "::1", 7000, AF_INET6 },
	{ "[::1]",		0, "::1", 8002, AF_INET6 },
	{ "::1",		0, "::1", 8002, AF_INET6 },
	{ "localhost:7000",	0, "localhost", 7000, 0 },
	{ "127.0.0.1",		0, "127.0.0.1", 8002, AF_INET },
	{ "0.0.0.0:0",		0, "0.0.0.0", 0, AF_INET },
	{ "localhost",		0, "localhost", 8002, 0 },
	{ ":",			-EINVAL, NULL, 0, 0 },
	{ ":7000",		-EINVAL, NULL, 0, 0 },
	{ "1.2.3.4:",		-EINVAL, NULL, 0, 0 },
	{ "1.2.3.4:99999",	-EINVAL, NULL, 0, 0 },
	{ "1.2.3.4:70a",	-EINVAL, NULL, 0, 0 },
	{ "[::1",		-EINVAL, NULL, 0, 0 },
	{ "[::1]x",		-EINVAL, NULL, 0, 0 },
	{ "[localhost]:1",	-EINVAL, NULL, 0, 0 },
	{ "[]:1",		-EINVAL, NULL, 0, 0 },
	{ "",			-EINVAL, NULL, 0, 0 },
	{ "no-such-host.invalid:1", -EHOSTUNREACH, NULL, 0, 0 },
};

static void
test_parse(void **state)
{
	size_t i;

	for (i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
		const struct parse_case *c = &parse_cases[i];
		struct net_addr a;
		int r;

		memset(&a, 0xa5, sizeof(a));
		r = net_parse_addr(c->in, 8002, &a);
		if (r != c->ret)
			fail_msg("\"%s\": got %d, want %d", c->in, r, c->ret);
		if (r < 0) {
			/* untouched on error */
			assert_int_equal(a.port, 0xa5a5);
			continue;
		}
		assert_string_equal(a.host, c->host);
		assert_int_equal(a.port, c->port);
		if (c->family != 0)
			assert_int_equal(a.ss.ss_family, c->family);
		if (a.ss.ss_family == AF_INET)
			assert_int_equal(ntohs(((struct sockaddr_in *)&a.ss)->
			    sin_port), c->port);
		else
			assert_int_equal(ntohs(((struct sockaddr_in6 *)&a.ss)->
			    sin6_port), c->port);
	}
	assert_int_equal(net_parse_addr(NULL, 1, &(struct net_addr){0}),
	    -EINVAL);
}

/* Listen on 127.0.0.1 with an ephemeral port; return the fd, set *a. */
static int
listen_loopback(struct net_addr *a)
{
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);
	int lfd;

	assert_int_equal(net_parse_addr("127.0.0.1:0", 0, a), 0);
	lfd = net_listen_tcp(a, 16);
	assert_true(lfd >= 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &sl), 0);
	((struct sockaddr_in *)&a->ss)->sin_port = sin.sin_port;
	a->port = ntohs(sin.sin_port);
	return lfd;
}

static int
wait_fd(int fd, short ev)
{
	struct pollfd p = { .fd = fd, .events = ev };

	return poll(&p, 1, 5000);
}

static void
test_tcp(void **state)
{
	struct net_addr a;
	char buf[65536], peer[128];
	uint64_t s0, r0, s1, r1;
	size_t got = 0;
	ssize_t n;
	int lfd, cfd, afd, err;
	socklen_t el = sizeof(err);

	lfd = listen_loopback(&a);
	assert_true(fcntl(lfd, F_GETFL) & O_NONBLOCK);
	assert_true(fcntl(lfd, F_GETFD) & FD_CLOEXEC);
	cfd = net_connect_tcp(&a);
	assert_true(cfd >= 0);
	assert_true(fcntl(cfd, F_GETFL) & O_NONBLOCK);
	assert_int_equal(wait_fd(cfd, POLLOUT), 1);
	assert_int_equal(getsockopt(cfd, SOL_SOCKET, SO_ERROR, &err, &el), 0);
	assert_int_equal(err, 0);
	assert_int_equal(wait_fd(lfd, POLLIN), 1);
	afd = accept(lfd, NULL, NULL);
	assert_true(afd >= 0);

	assert_int_equal(net_link_opts(cfd, 30, 5, 4, 20000), 0);
	net_peer_str(cfd, peer, sizeof(peer));
	assert_non_null(strstr(peer, "127.0.0.1:"));
	assert_int_equal(atoi(strchr(peer, ':') + 1), a.port);

	assert_int_equal(net_tcp_bytes(cfd, &s0, &r0), 0);
	assert_int_equal(net_tcp_bytes(afd, &s1, &r1), 0);
	assert_int_equal(r1, 0);
	memset(buf, 'x', sizeof(buf));
	for (size_t off = 0; off < sizeof(buf); ) {
		assert_int_equal(wait_fd(cfd, POLLOUT), 1);
		n = write(cfd, buf + off, sizeof(buf) - off);
		assert_true(n > 0);
		off += (size_t)n;
	}
	while (got < sizeof(buf)) {
		assert_int_equal(wait_fd(afd, POLLIN), 1);
		n = read(afd, buf, sizeof(buf));
		assert_true(n > 0);
		got += (size_t)n;
	}
	assert_int_equal(net_tcp_bytes(afd, &s1, &r1), 0);
	assert_true(r1 >= sizeof(buf));
	/* The sender's acked counter catches up once the ACKs arrive. */
	for (int i = 0; i < 500; i++) {
		assert_int_equal(net_tcp_bytes(cfd, &s1, &r1), 0);
		if (s1 >= s0 + sizeof(buf))
			break;
		usleep(10000);
	}
	assert_true(s1 >= s0 + sizeof(buf));

	/* Not a TCP socket. */
	{
		int sv[2];

		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
		assert_true(net_tcp_bytes(sv[0], &s1, &r1) < 0);
		close(sv[0]);
		close(sv[1]);
	}
	close(afd);
	close(cfd);
	close(lfd);
}

static void
test_tcp_v6(void **state)
{
	struct net_addr a;
	int lfd;

	assert_int_equal(net_parse_addr("[::1]:0", 0, &a), 0);
	lfd = net_listen_tcp(&a, 4);
	if (lfd == -EADDRNOTAVAIL || lfd == -EAFNOSUPPORT)
		skip();		/* no IPv6 loopback here */
	assert_true(lfd >= 0);
	close(lfd);
}

static void
test_unix(void **state)
{
	char dir[] = "/tmp/test_net.XXXXXX", path[256], longp[200];
	struct sockaddr_un sun;
	struct stat st;
	uint32_t uid, gid;
	int32_t pid;
	int fd, fd2, cfd, afd, s;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/s.sock", dir);

	fd = net_listen_unix(path, 0600);
	assert_true(fd >= 0);
	assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0600);

	/* A live socket is refused. */
	assert_int_equal(net_listen_unix(path, 0600), -EADDRINUSE);

	cfd = net_connect_unix(path);
	assert_true(cfd >= 0);
	assert_false(fcntl(cfd, F_GETFL) & O_NONBLOCK);
	assert_int_equal(wait_fd(fd, POLLIN), 1);
	/* The -EADDRINUSE probe connected too: drain it first. */
	afd = accept(fd, NULL, NULL);
	assert_true(afd >= 0);
	assert_int_equal(net_peer_cred(afd, &uid, &gid, &pid), 0);
	assert_int_equal(uid, geteuid());
	assert_int_equal(gid, getegid());
	assert_int_equal(pid, getpid());
	close(afd);
	close(cfd);
	close(fd);

	/* The file is left behind: stale, replaced, with the new mode. */
	assert_int_equal(lstat(path, &st), 0);
	fd = net_listen_unix(path, 0660);
	assert_true(fd >= 0);
	assert_int_equal(lstat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0660);
	close(fd);

	/* A stale socket made by someone else's bind(). */
	unlink(path);
	s = socket(AF_UNIX, SOCK_STREAM, 0);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	strcpy(sun.sun_path, path);
	assert_int_equal(bind(s, (struct sockaddr *)&sun, sizeof(sun)), 0);
	close(s);
	fd2 = net_listen_unix(path, 0600);
	assert_true(fd2 >= 0);
	close(fd2);

	/* A regular file is never removed. */
	unlink(path);
	s = open(path, O_CREAT | O_WRONLY, 0600);
	assert_true(s >= 0);
	close(s);
	assert_int_equal(net_listen_unix(path, 0600), -EEXIST);
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	unlink(path);

	/* Nobody listening; too long a path. */
	assert_int_equal(net_connect_unix(path), -ENOENT);
	memset(longp, 'a', sizeof(longp) - 1);
	longp[0] = '/';
	longp[sizeof(longp) - 1] = '\0';
	assert_int_equal(net_listen_unix(longp, 0600), -ENAMETOOLONG);
	assert_int_equal(net_connect_unix(longp), -ENAMETOOLONG);
	rmdir(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_tcp),
		cmocka_unit_test(test_tcp_v6),
		cmocka_unit_test(test_unix),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
