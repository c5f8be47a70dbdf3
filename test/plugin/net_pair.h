/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Test harness: the plugin's exported net table (v11, or v10 through the same interface), with
 * a connected send/recv pair over 127.0.0.1 in one process, as NCCL would set it up.
 */
#ifndef RCMOE_TEST_NET_PAIR_H
#define RCMOE_TEST_NET_PAIR_H

#include <stddef.h>
#include <stdint.h>
#include "rcmoe/nccl_abi.h"
#include "rcmoe/transport.h"

struct net_pair {
	int version; /* 11 or 10 */
	void *ctx;   /* v11 per-comm context */
	void *listen;
	void *send;
	void *recv;
};

/* Which table the pair drives: set before net_pair_open. */
extern int net_version;

/* Init the plugin (with `prof` as the profiler callback, may be NULL) and connect a pair.
 * Fails the current test if anything goes wrong or takes longer than 10 s. */
void net_pair_open(struct net_pair *p, ncclProfilerCallback_t prof);
void net_pair_close(struct net_pair *p);

ncclResult_t net_reg(void *comm, void *data, size_t size, int type, void **mh);
ncclResult_t net_dereg(void *comm, void *mh);
ncclResult_t net_isend(void *comm, void *data, size_t size, void *mh, void *ph, void **req);
ncclResult_t net_irecv(void *comm, void *data, size_t size, void *mh, void *ph, void **req);
ncclResult_t net_test(void *req, int *done, int *size);
ncclResult_t net_close_send(void *comm);
ncclResult_t net_close_recv(void *comm);
ncclResult_t net_props(int dev, ncclNetProperties_v11_t *props);

/* Post until a request is given (NCCL's retry contract), failing the test after 10 s. */
void *net_isend_retry(void *comm, void *data, size_t size, void *mh, void *ph);
void *net_irecv_retry(void *comm, void *data, size_t size, void *mh, void *ph);
/* Poll until done; returns the size; fails the test on error or after `timeout_s`. */
int net_wait(void *req, double timeout_s);
/* Poll until test returns an error; returns it (fails the test if done or after timeout_s). */
ncclResult_t net_wait_error(void *req, double timeout_s);
/* Poll n requests together until all are done (a receive progresses only when tested, as a
 * send of a GPU buffer does, so waiting on one at a time can stall); sizes[i] (may be NULL) gets
 * request i's size. Fails the test on an error or after timeout_s. */
void net_wait_all(void *const *reqs, int n, int *sizes, double timeout_s);

/* Move one message of `send_size` bytes into a receive posted as `recv_size`, host memory. */
void net_exchange(struct net_pair *p, size_t send_size, size_t recv_size, unsigned seed);

void fill_pattern(void *buf, size_t n, unsigned seed);
/* Index of the first byte that differs from the pattern, or (size_t)-1 if none. */
size_t check_pattern(const void *buf, size_t n, unsigned seed);
double now_s(void);

/* The transport the suite runs over: the IB transport over the test verbs provider when the
 * environment says RCMOE_TRANSPORT=ib (meson runs each suite both ways), else sockets. */
int net_over_ib(void);
const struct rcmoe_transport_ops *net_transport_ops(void);

/* The plugin's receive comm (v11) fed by a bare sender of the same transport, so that a test
 * chooses what goes on the wire. While a link is open, net_wait, net_wait_error and
 * net_wait_all also move its sends along (an IB sender writes only when tested, as NCCL's
 * proxy tests every request it holds). */
#define RAW_LINK_MAX_SENDS 8
struct raw_link {
	void *ctx, *listen, *recv;
	struct rcmoe_tsend *ts;
	int nsends;
	struct rcmoe_treq *treq[RAW_LINK_MAX_SENDS];
	struct rcmoe_tmr *mr[RAW_LINK_MAX_SENDS];
};
void raw_link_open(struct raw_link *l);
/* Send len bytes at buf with flags; the buffer is registered with the transport until close. */
void raw_link_send(struct raw_link *l, const void *buf, size_t len, uint32_t flags);
void raw_link_close(struct raw_link *l);

/* The send counters for func/dtype in a stats file (RCMOE_STATS_FILE, written at finalize; the
 * last matching line wins): 1 if found, else 0. */
int stats_send_cell(const char *path, const char *func, const char *dtype, unsigned long *messages,
		    unsigned long *logical, unsigned long *wire);

#endif
