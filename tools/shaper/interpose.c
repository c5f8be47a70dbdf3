/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The shaped calls: send, sendto, sendmsg, write and writev. On a TCP socket each takes a grant
 * from the bucket (sleeping for it when the socket blocks), passes at most the granted length
 * to libc (a short write: the caller's loop sends the rest, as it must for any TCP socket),
 * and settles what libc really sent. Anything else goes straight to libc. errno is what the
 * real call left, or EINVAL (no usable RCMOE_SHAPER_GBPS) or EAGAIN (a non-blocking socket
 * that did not get its turn within SHAPER_NB_WAIT_NS).
 */
#include "shaper.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#ifndef IOV_MAX
#define IOV_MAX 1024
#endif

/*
 * Before a send of `want` bytes on a TCP socket: -1 with errno set when it must fail, else 0
 * with the grant in *g. `dontwait` is MSG_DONTWAIT; otherwise the socket's own O_NONBLOCK
 * decides (asked each time: fcntl may change it at any moment).
 */
static int gate(int fd, size_t want, bool dontwait, struct shaper_grant *g)
{
	const struct shaper_config *c = shaper_config();
	if (!c->valid) {
		shaper_complain(c);
		errno = EINVAL;
		return -1;
	}
	bool nonblocking = dontwait;
	if (!nonblocking && want > SHAPER_TINY_BYTES) {
		int fl = fcntl(fd, F_GETFL);
		nonblocking = fl >= 0 && (fl & O_NONBLOCK);
	}
	int e = shaper_acquire(c, want, nonblocking, g);
	if (e) {
		errno = e;
		return -1;
	}
	return 0;
}

static ssize_t settle(const struct shaper_grant *g, ssize_t sent)
{
	int e = errno;
	shaper_settle(shaper_config(), g, sent);
	errno = e;
	return sent;
}

/* Bytes described by an iovec array, saturated: an oversized total fails in libc anyway. */
static size_t iov_total(const struct iovec *iov, size_t cnt)
{
	size_t t = 0;
	for (size_t i = 0; i < cnt; i++)
		t = iov[i].iov_len > SIZE_MAX - t ? SIZE_MAX : t + iov[i].iov_len;
	return t;
}

/* The first `len` bytes of iov as a new array in out[IOV_MAX]; returns its count. */
static size_t iov_clip(const struct iovec *iov, size_t cnt, size_t len, struct iovec *out)
{
	size_t n = 0;
	for (size_t i = 0; i < cnt && len; i++) {
		out[n] = iov[i];
		if (out[n].iov_len > len)
			out[n].iov_len = len;
		len -= out[n].iov_len;
		n++;
	}
	return n;
}

SHAPER_EXPORT ssize_t send(int fd, const void *buf, size_t len, int flags)
{
	REAL(send);
	int saved = errno;
	if (!shaper_fd_is_tcp(fd)) {
		errno = saved;
		return real(fd, buf, len, flags);
	}
	struct shaper_grant g;
	if (gate(fd, len, flags & MSG_DONTWAIT, &g))
		return -1;
	errno = saved;
	return settle(&g, real(fd, buf, g.len, flags));
}

SHAPER_EXPORT ssize_t sendto(int fd, const void *buf, size_t len, int flags,
			     const struct sockaddr *addr, socklen_t alen)
{
	REAL(sendto);
	int saved = errno;
	if (!shaper_fd_is_tcp(fd)) {
		errno = saved;
		return real(fd, buf, len, flags, addr, alen);
	}
	struct shaper_grant g;
	if (gate(fd, len, flags & MSG_DONTWAIT, &g))
		return -1;
	errno = saved;
	return settle(&g, real(fd, buf, g.len, flags, addr, alen));
}

SHAPER_EXPORT ssize_t write(int fd, const void *buf, size_t len)
{
	REAL(write);
	int saved = errno;
	if (!shaper_fd_is_tcp(fd)) {
		errno = saved;
		return real(fd, buf, len);
	}
	struct shaper_grant g;
	if (gate(fd, len, false, &g))
		return -1;
	errno = saved;
	return settle(&g, real(fd, buf, g.len));
}

SHAPER_EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
	REAL(sendmsg);
	int saved = errno;
	/* A malformed header is libc's to refuse, with its own errno. */
	if (!msg || (msg->msg_iovlen && !msg->msg_iov) || msg->msg_iovlen > IOV_MAX ||
	    !shaper_fd_is_tcp(fd)) {
		errno = saved;
		return real(fd, msg, flags);
	}
	struct shaper_grant g;
	size_t want = iov_total(msg->msg_iov, msg->msg_iovlen);
	if (gate(fd, want, flags & MSG_DONTWAIT, &g))
		return -1;
	errno = saved;
	if (g.len == want)
		return settle(&g, real(fd, msg, flags));
	struct iovec clip[IOV_MAX];
	struct msghdr m = *msg;
	m.msg_iov = clip;
	m.msg_iovlen = iov_clip(msg->msg_iov, msg->msg_iovlen, g.len, clip);
	return settle(&g, real(fd, &m, flags));
}

SHAPER_EXPORT ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
	REAL(writev);
	int saved = errno;
	if (cnt < 0 || cnt > IOV_MAX || (cnt && !iov) || !shaper_fd_is_tcp(fd)) {
		errno = saved;
		return real(fd, iov, cnt);
	}
	struct shaper_grant g;
	size_t want = iov_total(iov, (size_t)cnt);
	if (gate(fd, want, false, &g))
		return -1;
	errno = saved;
	if (g.len == want)
		return settle(&g, real(fd, iov, cnt));
	struct iovec clip[IOV_MAX];
	return settle(&g, real(fd, clip, (int)iov_clip(iov, (size_t)cnt, g.len, clip)));
}
