/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Test harness for the collective side: N collNet communicators in one process, one thread per
 * rank, driving the plugin's exported collNet table (v11, or v10) over 127.0.0.1 as NCCL does:
 * init, listen, connect (all ranks at once: it blocks until the mesh is up), then each rank's
 * thread runs the same script of calls. Rank threads never call Criterion's asserts: they
 * record the first failure, and the main thread reports it.
 */
#ifndef RCMOE_TEST_COLL_MESH_H
#define RCMOE_TEST_COLL_MESH_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "rcmoe/nccl_abi.h"

#define MESH_MAX_RANKS 8

struct mesh;

struct mesh_rank {
	struct mesh *m;
	int rank;
	void *ctx;
	void *listen;
	void *comm;
	char handle[NCCL_NET_HANDLE_MAXSIZE];
	ncclResult_t connect_result;
	/* NCCL's staging stand-in (coll_reg_user), registered before any user buffer */
	void *stage;
	void *stage_mh;
	/* first failure in the rank's thread */
	int failed;
	char why[512];
	void *user;
};

struct mesh {
	int version; /* 11 or 10 */
	int nranks;
	struct mesh_rank r[MESH_MAX_RANKS];
	pthread_barrier_t barrier;
};

/* Init, listen and connect `nranks` comms with the given collNet table version. With
 * `expect_ok` every connect must succeed (the test fails otherwise); without, results are left
 * in r[i].connect_result. */
void mesh_open(struct mesh *m, int version, int nranks, int expect_ok);
/* Close every comm (that connected), listen and ctx. */
void mesh_close(struct mesh *m);
/* Run body(rank) in one thread per rank and wait; fails the test with the first rank's failure.
 */
void mesh_run(struct mesh *m, void (*body)(struct mesh_rank *r));

/* From a rank thread: record a failure (first one wins) and return 1 when cond is false. */
int rank_check(struct mesh_rank *r, int cond, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
#define RCHECK(r, cond, ...)                                                                       \
	do {                                                                                       \
		if (rank_check((r), (cond), __VA_ARGS__))                                          \
			return;                                                                    \
	} while (0)

/* The table entries, by version. */
ncclResult_t coll_reg(struct mesh_rank *r, void *data, size_t size, void **mh);
/* regMr with a memory type: NCCL_PTR_HOST or NCCL_PTR_CUDA (device memory). */
ncclResult_t coll_reg_type(struct mesh_rank *r, void *data, size_t size, int type, void **mh);
ncclResult_t coll_dereg(struct mesh_rank *r, void *mh);
/* Register a user buffer as NCCL does before it hands it to iallreduce, which a transport that
 * writes by RDMA needs (IB). NCCL registers its collNet staging buffer first, at setup, and the
 * plugin takes a comm's first registration for it (and clears what lossy calls encoded from it):
 * so the rank's first call registers a small stand-in for it first (deregistered by
 * mesh_close). 0, or 1 and a recorded failure. */
int coll_reg_user(struct mesh_rank *r, void *data, size_t size, void **mh);
/* The same for the host buffers of a call (`bytes` each; in place, send == recv, once, in both
 * handles). */
int coll_reg_pair(struct mesh_rank *r, void *send, void *recv, size_t bytes, void **smh,
		  void **rmh);
/* Deregister them, before the memory is freed. 0, or 1 and a recorded failure. */
int coll_dereg_pair(struct mesh_rank *r, void *smh, void *rmh);
ncclResult_t coll_iallreduce(struct mesh_rank *r, void *send, void *recv, size_t count,
			     ncclDataType_t dt, void *smh, void *rmh, void **req);
ncclResult_t coll_test(struct mesh_rank *r, void *req, int *done, int *size);
ncclResult_t coll_close(struct mesh_rank *r);

/* Post an all-reduce, retrying while the plugin returns no request (NCCL's contract); NULL and
 * a recorded failure after 10 s or on an error. */
void *coll_post(struct mesh_rank *r, void *send, void *recv, size_t count, ncclDataType_t dt,
		void *smh, void *rmh);
/* Test until done: 0 when done with the expected size, else a recorded failure. */
int coll_wait(struct mesh_rank *r, void *req, size_t bytes, double timeout_s);

double mesh_now(void);

#endif
