/* SPDX-License-Identifier: Apache-2.0 */
/* Small socket helpers: address text, socket options, randomness, non-blocking I/O. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "rcmoe/log.h"
#include "transport/socket/socket.h"

socklen_t sock_addr_len(const union sock_addr *a)
{
	return a->sa.sa_family == AF_INET6 ? sizeof(a->in6) : sizeof(a->in);
}

void sock_addr_str(const union sock_addr *a, char *buf, size_t size)
{
	char host[INET6_ADDRSTRLEN] = "?";
	if (a->sa.sa_family == AF_INET6) {
		inet_ntop(AF_INET6, &a->in6.sin6_addr, host, sizeof(host));
		if (a->in6.sin6_scope_id)
			snprintf(buf, size, "[%s%%%u]:%u", host, a->in6.sin6_scope_id,
				 ntohs(a->in6.sin6_port));
		else
			snprintf(buf, size, "[%s]:%u", host, ntohs(a->in6.sin6_port));
	} else if (a->sa.sa_family == AF_INET) {
		inet_ntop(AF_INET, &a->in.sin_addr, host, sizeof(host));
		snprintf(buf, size, "%s:%u", host, ntohs(a->in.sin_port));
	} else {
		snprintf(buf, size, "(family %d)", a->sa.sa_family);
	}
}

static rcmoe_status_t set_int_opt(int fd, int level, int name, int value, const char *what,
				  const char *peer)
{
	if (setsockopt(fd, level, name, &value, sizeof(value)) != 0) {
		int err = errno;
		RCMOE_WARN("setsockopt(%s=%d) on the socket to %s failed: %s", what, value, peer,
			   strerror(err));
		return rcmoe_status_from_errno(err);
	}
	return RCMOE_OK;
}

rcmoe_status_t sock_set_options(int fd, int timeout_s, const char *peer)
{
	/* Headers and small messages must not wait for Nagle's algorithm. */
	RCMOE_CHECK(set_int_opt(fd, IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY", peer));
	/* Keepalive probes find a peer machine that died while the connection is idle (idle
	 * timeout_s / 2, then 3 probes timeout_s / 6 apart): a socket error within about
	 * timeout_s. No TCP_USER_TIMEOUT: Linux applies it to a closed receive window too, so
	 * it would kill the connection of a live receiver that is merely late to read (its rank
	 * not at the collective yet). While somebody waits, the heartbeats judge the peer
	 * instead (data.c), which also catches a peer host that is gone with our data unacked
	 * (TCP alone would retransmit for about 15 minutes). */
	int idle = timeout_s / 2 > 0 ? timeout_s / 2 : 1;
	int intvl = timeout_s / 6 > 0 ? timeout_s / 6 : 1;
	RCMOE_CHECK(set_int_opt(fd, SOL_SOCKET, SO_KEEPALIVE, 1, "SO_KEEPALIVE", peer));
	RCMOE_CHECK(set_int_opt(fd, IPPROTO_TCP, TCP_KEEPIDLE, idle, "TCP_KEEPIDLE", peer));
	RCMOE_CHECK(set_int_opt(fd, IPPROTO_TCP, TCP_KEEPINTVL, intvl, "TCP_KEEPINTVL", peer));
	RCMOE_CHECK(set_int_opt(fd, IPPROTO_TCP, TCP_KEEPCNT, 3, "TCP_KEEPCNT", peer));
	return RCMOE_OK;
}

rcmoe_status_t sock_random64(uint64_t *out)
{
	uint8_t *p = (uint8_t *)out;
	size_t got = 0;
	while (got < sizeof(*out)) {
		ssize_t n = getrandom(p + got, sizeof(*out) - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			int err = errno;
			RCMOE_WARN("getrandom failed: %s", strerror(err));
			return RCMOE_ERR_SYSTEM;
		}
		got += (size_t)n;
	}
	return RCMOE_OK;
}

uint64_t sock_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

enum sock_io_result sock_io(int fd, bool send_dir, void *buf, size_t len, size_t *off)
{
	uint8_t *p = buf;
	while (*off < len) {
		ssize_t n;
		if (send_dir)
			n = send(fd, p + *off, len - *off, MSG_DONTWAIT | MSG_NOSIGNAL);
		else
			n = recv(fd, p + *off, len - *off, MSG_DONTWAIT);
		if (n > 0) {
			*off += (size_t)n;
			continue;
		}
		if (n == 0 && !send_dir)
			return SOCK_IO_EOF;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return SOCK_IO_AGAIN;
		if (n == 0)
			errno = EIO; /* a zero-byte send of a non-empty buffer: should not happen */
		return SOCK_IO_ERROR;
	}
	return SOCK_IO_DONE;
}

enum sock_io_result sock_send2(int fd, const void *a, size_t alen, const void *b, size_t blen,
			       size_t *off)
{
	while (*off < alen + blen) {
		struct iovec iov[2];
		int n = 0;
		if (*off < alen) {
			iov[n++] = (struct iovec){ (uint8_t *)(uintptr_t)a + *off, alen - *off };
			if (blen)
				iov[n++] = (struct iovec){ (void *)(uintptr_t)b, blen };
		} else {
			iov[n++] = (struct iovec){ (uint8_t *)(uintptr_t)b + (*off - alen),
						   blen - (*off - alen) };
		}
		struct msghdr msg = { .msg_iov = iov, .msg_iovlen = (size_t)n };
		ssize_t r = sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (r > 0) {
			*off += (size_t)r;
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return SOCK_IO_AGAIN;
		if (r == 0)
			errno = EIO;
		return SOCK_IO_ERROR;
	}
	return SOCK_IO_DONE;
}
