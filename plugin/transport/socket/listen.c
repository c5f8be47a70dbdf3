/* SPDX-License-Identifier: Apache-2.0 */
/* Listening socket and handle: listen and close_listen (accept is in accept.c). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rcmoe/log.h"
#include "transport/socket/socket.h"

rcmoe_status_t sock_listen(int dev, void *handle, struct rcmoe_tlisten **out)
{
	rcmoe_status_t st;
	struct rcmoe_tlisten *l;
	socklen_t alen;
	int err;

	RCMOE_CHECK(sock_check_init());
	if (dev != 0 || !handle || !out)
		return RCMOE_ERR_INVALID;
	*out = NULL;

	l = calloc(1, sizeof(*l));
	if (!l)
		return RCMOE_ERR_NOMEM;
	RCMOE_CHECK_GOTO(sock_random64(&l->secret), st, free_listen);

	l->addr = sock_global.addr;
	l->fd = socket(l->addr.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (l->fd < 0) {
		err = errno;
		RCMOE_WARN("socket() for listening on %s failed: %s", sock_global.ifname,
			   strerror(err));
		st = rcmoe_status_from_errno(err);
		goto free_listen;
	}
	if (bind(l->fd, &l->addr.sa, sock_addr_len(&l->addr)) != 0 || listen(l->fd, 256) != 0) {
		err = errno;
		sock_addr_str(&l->addr, l->addr_str, sizeof(l->addr_str));
		RCMOE_WARN("cannot listen on %s (%s): %s", l->addr_str, sock_global.ifname,
			   strerror(err));
		st = rcmoe_status_from_errno(err);
		goto close_socket;
	}
	/* The kernel picked the port: read it back for the handle. */
	alen = sizeof(l->addr);
	if (getsockname(l->fd, &l->addr.sa, &alen) != 0) {
		err = errno;
		RCMOE_WARN("getsockname on the listening socket failed: %s", strerror(err));
		st = rcmoe_status_from_errno(err);
		goto close_socket;
	}
	sock_addr_str(&l->addr, l->addr_str, sizeof(l->addr_str));
	/* Held in reserve: when the process runs out of descriptors, giving this one up lets
	 * accept take a waiting connection (and close it) instead of failing. Without it the
	 * listener still works; accept.c tries again to open it. */
	l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

	struct sock_handle h = { .version = SOCK_PROTO_VERSION,
				 .addr = l->addr,
				 .secret = l->secret };
	memset(handle, 0, RCMOE_TRANSPORT_HANDLE_SIZE);
	sock_handle_encode(&h, handle);
	RCMOE_INFO(NCCL_NET, "listening on %s", l->addr_str);
	*out = l;
	return RCMOE_OK;

close_socket:
	close(l->fd);
free_listen:
	free(l);
	return st;
}

rcmoe_status_t sock_close_listen(struct rcmoe_tlisten *l)
{
	if (!l)
		return RCMOE_OK;
	sock_listen_drop_all(l);
	if (l->spare_fd >= 0)
		close(l->spare_fd);
	close(l->fd);
	free(l);
	return RCMOE_OK;
}
