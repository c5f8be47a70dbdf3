/* SPDX-License-Identifier: Apache-2.0 */
/* The socket transport's operations table (contracts in rcmoe/transport.h). */
#include "transport/socket/socket.h"

static rcmoe_status_t close_send(struct rcmoe_tsend *comm)
{
	sock_comm_destroy(sock_send_comm(comm));
	return RCMOE_OK;
}

static rcmoe_status_t close_recv(struct rcmoe_trecv *comm)
{
	sock_comm_destroy(sock_recv_comm(comm));
	return RCMOE_OK;
}

/* TCP reads and writes any host memory: registration is a no-op, and every handle is this one
 * (never dereferenced; it only has to be non-NULL). */
struct rcmoe_tmr {
	char unused;
};
static struct rcmoe_tmr no_registration;

static rcmoe_status_t reg_mr(struct rcmoe_tsend *send, struct rcmoe_trecv *recv, void *buf,
			     size_t len, struct rcmoe_tmr **out)
{
	if (!out || (!send == !recv))
		return RCMOE_ERR_INVALID;
	*out = &no_registration;
	return RCMOE_OK;
}

static rcmoe_status_t dereg_mr(struct rcmoe_tsend *send, struct rcmoe_trecv *recv,
			       struct rcmoe_tmr *mr)
{
	return RCMOE_OK;
}

static void abort_send(struct rcmoe_tsend *comm, rcmoe_status_t st, const char *why)
{
	sock_comm_fail(sock_send_comm(comm), st, "stopped: %s", why);
}

static void abort_recv(struct rcmoe_trecv *comm, rcmoe_status_t st, const char *why)
{
	sock_comm_fail(sock_recv_comm(comm), st, "stopped: %s", why);
}

const struct rcmoe_transport_ops rcmoe_socket_ops = {
	.name = "socket",
	.needs_posted_dest = 0, /* reads each message's header, then asks where it goes */
	.init = sock_init,
	.device_count = sock_device_count,
	.device_info = sock_device_info,
	.listen = sock_listen,
	.connect = sock_connect,
	.accept = sock_accept,
	.reg_mr = reg_mr,
	.dereg_mr = dereg_mr,
	.isend = sock_isend,
	.irecv = sock_irecv,
	.test = sock_test,
	.abort_send = abort_send,
	.abort_recv = abort_recv,
	.close_send = close_send,
	.close_recv = close_recv,
	.close_listen = sock_close_listen,
};
