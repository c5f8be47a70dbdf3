/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Which descriptors are TCP sockets: only those are shaped; unix sockets, pipes, files and
 * everything else pass through untouched. Asking the kernel costs two getsockopt calls, so the
 * answer is cached per descriptor number, and forgotten whenever the number may start to mean
 * another file: close() (the number is free again), and the calls that hand out a new socket or
 * a copy of one (socket, accept, accept4, dup, dup2, dup3). The creation side matters too,
 * because libc closes some descriptors internally (fclose, closedir) without passing through
 * our close(): a number cached as "not TCP" must not hide a TCP socket that reuses it.
 *
 * Not covered: a TCP socket arriving through fcntl(F_DUPFD) or SCM_RIGHTS on a number that was
 * cached as "not TCP" and then closed inside libc. Descriptors above the cache are asked every
 * time.
 */
#include "shaper.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <sys/socket.h>

#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP 262 /* Linux 5.6; a TCP stream for our purpose */
#endif

#define FD_SLOTS 65536

enum { FD_UNKNOWN, FD_TCP, FD_OTHER };

/* Relaxed: each slot is a value of its own; a stale read only costs a new question. */
static atomic_uchar kinds[FD_SLOTS];

/* FD_TCP, FD_OTHER, or FD_UNKNOWN when the descriptor is not open (not worth caching). */
static int classify(int fd)
{
	int type = 0, proto = 0;
	socklen_t len = sizeof(type);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len))
		return errno == ENOTSOCK ? FD_OTHER : FD_UNKNOWN;
	if (type != SOCK_STREAM)
		return FD_OTHER;
	len = sizeof(proto);
	if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len))
		return FD_UNKNOWN;
	return proto == IPPROTO_TCP || proto == IPPROTO_MPTCP ? FD_TCP : FD_OTHER;
}

bool shaper_fd_is_tcp(int fd)
{
	if (fd < 0)
		return false;
	if (fd >= FD_SLOTS)
		return classify(fd) == FD_TCP;
	int k = atomic_load_explicit(&kinds[fd], memory_order_relaxed);
	if (k == FD_UNKNOWN) {
		k = classify(fd);
		if (k != FD_UNKNOWN)
			atomic_store_explicit(&kinds[fd], (unsigned char)k, memory_order_relaxed);
	}
	return k == FD_TCP;
}

void shaper_fd_forget(int fd)
{
	if (fd >= 0 && fd < FD_SLOTS)
		atomic_store_explicit(&kinds[fd], FD_UNKNOWN, memory_order_relaxed);
}

/* ---- the calls that change what a descriptor number means ---- */

/* A new descriptor from `r`: whatever the number meant before is forgotten. errno is left as
 * the real call set it. */
static int fresh(int r)
{
	if (r >= 0)
		shaper_fd_forget(r);
	return r;
}

SHAPER_EXPORT int close(int fd)
{
	REAL(close);
	int r = real(fd);
	shaper_fd_forget(fd); /* also on error: Linux frees the number even on EINTR */
	return r;
}

SHAPER_EXPORT int socket(int domain, int type, int protocol)
{
	REAL(socket);
	return fresh(real(domain, type, protocol));
}

SHAPER_EXPORT int accept(int fd, struct sockaddr *addr, socklen_t *len)
{
	REAL(accept);
	return fresh(real(fd, addr, len));
}

SHAPER_EXPORT int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
	REAL(accept4);
	return fresh(real(fd, addr, len, flags));
}

SHAPER_EXPORT int dup(int fd)
{
	REAL(dup);
	return fresh(real(fd));
}

SHAPER_EXPORT int dup2(int fd, int fd2)
{
	REAL(dup2);
	return fresh(real(fd, fd2));
}

SHAPER_EXPORT int dup3(int fd, int fd2, int flags)
{
	REAL(dup3);
	return fresh(real(fd, fd2, flags));
}
