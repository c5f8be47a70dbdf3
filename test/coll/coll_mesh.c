/* SPDX-License-Identifier: Apache-2.0 */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coll_mesh.h"
#include "rcmoe/log.h"

extern const ncclCollNet_v11_t ncclCollNetPlugin_v11;
extern const ncclCollNet_v10_t ncclCollNetPlugin_v10;

double mesh_now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int rank_check(struct mesh_rank *r, int cond, const char *fmt, ...)
{
	if (cond)
		return 0;
	if (!r->failed) {
		va_list ap;
		va_start(ap, fmt);
		int n = snprintf(r->why, sizeof(r->why), "rank %d: ", r->rank);
		vsnprintf(r->why + n, sizeof(r->why) - (size_t)n, fmt, ap);
		va_end(ap);
		r->failed = 1;
	}
	return 1;
}

static void *connect_main(void *arg)
{
	struct mesh_rank *r = arg;
	struct mesh *m = r->m;
	void *handles[MESH_MAX_RANKS];
	for (int i = 0; i < m->nranks; i++)
		handles[i] = m->r[i].handle;
	r->connect_result = m->version == 11
				    ? ncclCollNetPlugin_v11.connect(handles, m->nranks, r->rank,
								    r->listen, &r->comm)
				    : ncclCollNetPlugin_v10.connect(handles, m->nranks, r->rank,
								    r->listen, &r->comm);
	return NULL;
}

void mesh_open(struct mesh *m, int version, int nranks, int expect_ok)
{
	pthread_t t[MESH_MAX_RANKS];
	int ndev = 0;
	cr_assert_leq(nranks, MESH_MAX_RANKS);
	memset(m, 0, sizeof(*m));
	m->version = version;
	m->nranks = nranks;
	pthread_barrier_init(&m->barrier, NULL, (unsigned)nranks);
	for (int i = 0; i < nranks; i++) {
		struct mesh_rank *r = &m->r[i];
		r->m = m;
		r->rank = i;
		if (version == 11) {
			cr_assert_eq(ncclCollNetPlugin_v11.init(&r->ctx, 0x100 + (uint64_t)i,
								rcmoe_log_get()),
				     ncclSuccess);
			cr_assert_eq(ncclCollNetPlugin_v11.devices(&ndev), ncclSuccess);
			cr_assert_gt(ndev, 0);
			cr_assert_eq(ncclCollNetPlugin_v11.listen(r->ctx, 0, r->handle, &r->listen),
				     ncclSuccess);
		} else {
			cr_assert_eq(ncclCollNetPlugin_v10.init(rcmoe_log_get()), ncclSuccess);
			cr_assert_eq(ncclCollNetPlugin_v10.devices(&ndev), ncclSuccess);
			cr_assert_gt(ndev, 0);
			cr_assert_eq(ncclCollNetPlugin_v10.listen(0, r->handle, &r->listen),
				     ncclSuccess);
		}
	}
	for (int i = 0; i < nranks; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, connect_main, &m->r[i]), 0);
	for (int i = 0; i < nranks; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < nranks; i++) {
		struct mesh_rank *r = &m->r[i];
		if (expect_ok) {
			cr_assert_eq(r->connect_result, ncclSuccess, "rank %d: connect failed", i);
			cr_assert_not_null(r->comm, "rank %d: connect gave no comm", i);
		}
		/* NCCL closes the listen comm once connect returned. */
		cr_expect_eq(version == 11 ? ncclCollNetPlugin_v11.closeListen(r->listen)
					   : ncclCollNetPlugin_v10.closeListen(r->listen),
			     ncclSuccess);
		r->listen = NULL;
	}
}

void mesh_close(struct mesh *m)
{
	for (int i = 0; i < m->nranks; i++) {
		struct mesh_rank *r = &m->r[i];
		if (r->comm && r->stage_mh)
			cr_expect_eq(coll_dereg(r, r->stage_mh), ncclSuccess, "rank %d: deregMr",
				     i);
		free(r->stage);
		r->stage = r->stage_mh = NULL;
		if (r->comm)
			cr_expect_eq(coll_close(r), ncclSuccess, "rank %d: closeColl", i);
		r->comm = NULL;
		if (m->version == 11)
			cr_expect_eq(ncclCollNetPlugin_v11.finalize(r->ctx), ncclSuccess);
	}
	pthread_barrier_destroy(&m->barrier);
}

struct run_arg {
	struct mesh_rank *r;
	void (*body)(struct mesh_rank *r);
};

static void *run_main(void *arg)
{
	struct run_arg *a = arg;
	a->body(a->r);
	return NULL;
}

void mesh_run(struct mesh *m, void (*body)(struct mesh_rank *r))
{
	pthread_t t[MESH_MAX_RANKS];
	struct run_arg a[MESH_MAX_RANKS];
	for (int i = 0; i < m->nranks; i++) {
		m->r[i].failed = 0;
		a[i] = (struct run_arg){ &m->r[i], body };
		cr_assert_eq(pthread_create(&t[i], NULL, run_main, &a[i]), 0);
	}
	for (int i = 0; i < m->nranks; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < m->nranks; i++)
		cr_assert(!m->r[i].failed, "%s", m->r[i].why);
}

ncclResult_t coll_reg_type(struct mesh_rank *r, void *data, size_t size, int type, void **mh)
{
	return r->m->version == 11 ? ncclCollNetPlugin_v11.regMr(r->comm, data, size, type, mh)
				   : ncclCollNetPlugin_v10.regMr(r->comm, data, size, type, mh);
}

ncclResult_t coll_reg(struct mesh_rank *r, void *data, size_t size, void **mh)
{
	return coll_reg_type(r, data, size, NCCL_PTR_HOST, mh);
}

ncclResult_t coll_dereg(struct mesh_rank *r, void *mh)
{
	return r->m->version == 11 ? ncclCollNetPlugin_v11.deregMr(r->comm, mh)
				   : ncclCollNetPlugin_v10.deregMr(r->comm, mh);
}

enum { STAGE_BYTES = 4096 };

int coll_reg_user(struct mesh_rank *r, void *data, size_t size, void **mh)
{
	*mh = NULL;
	if (!r->stage_mh) {
		r->stage = malloc(STAGE_BYTES);
		if (rank_check(r, r->stage != NULL, "memory") ||
		    rank_check(r, coll_reg(r, r->stage, STAGE_BYTES, &r->stage_mh) == ncclSuccess,
			       "regMr of the staging stand-in"))
			return 1;
	}
	return rank_check(r, coll_reg(r, data, size, mh) == ncclSuccess, "regMr of %zu bytes",
			  size);
}

int coll_reg_pair(struct mesh_rank *r, void *send, void *recv, size_t bytes, void **smh, void **rmh)
{
	*smh = *rmh = NULL;
	if (coll_reg_user(r, send, bytes, smh))
		return 1;
	if (recv == send) {
		*rmh = *smh;
		return 0;
	}
	return coll_reg_user(r, recv, bytes, rmh);
}

int coll_dereg_pair(struct mesh_rank *r, void *smh, void *rmh)
{
	if (rank_check(r, coll_dereg(r, smh) == ncclSuccess, "deregMr of the send buffer"))
		return 1;
	return rmh != smh &&
	       rank_check(r, coll_dereg(r, rmh) == ncclSuccess, "deregMr of the receive buffer");
}

ncclResult_t coll_iallreduce(struct mesh_rank *r, void *send, void *recv, size_t count,
			     ncclDataType_t dt, void *smh, void *rmh, void **req)
{
	return r->m->version == 11 ? ncclCollNetPlugin_v11.iallreduce(r->comm, send, recv, count,
								      dt, ncclSum, smh, rmh, req)
				   : ncclCollNetPlugin_v10.iallreduce(r->comm, send, recv, count,
								      dt, ncclSum, smh, rmh, req);
}

ncclResult_t coll_test(struct mesh_rank *r, void *req, int *done, int *size)
{
	return r->m->version == 11 ? ncclCollNetPlugin_v11.test(req, done, size)
				   : ncclCollNetPlugin_v10.test(req, done, size);
}

ncclResult_t coll_close(struct mesh_rank *r)
{
	return r->m->version == 11 ? ncclCollNetPlugin_v11.closeColl(r->comm)
				   : ncclCollNetPlugin_v10.closeColl(r->comm);
}

void *coll_post(struct mesh_rank *r, void *send, void *recv, size_t count, ncclDataType_t dt,
		void *smh, void *rmh)
{
	void *req = NULL;
	double t0 = mesh_now();
	while (!req) {
		ncclResult_t res = coll_iallreduce(r, send, recv, count, dt, smh, rmh, &req);
		if (rank_check(r, res == ncclSuccess, "iallreduce of %zu elements failed: %d",
			       count, res))
			return NULL;
		if (rank_check(r, mesh_now() - t0 < 10.0, "iallreduce never accepted"))
			return NULL;
	}
	return req;
}

int coll_wait(struct mesh_rank *r, void *req, size_t bytes, double timeout_s)
{
	int done = 0, size = -1;
	double t0 = mesh_now();
	while (!done) {
		ncclResult_t res = coll_test(r, req, &done, &size);
		if (rank_check(r, res == ncclSuccess, "test failed: %d", res))
			return 1;
		if (rank_check(r, mesh_now() - t0 < timeout_s, "all-reduce not done after %.0f s",
			       timeout_s))
			return 1;
	}
	return rank_check(r, (size_t)size == bytes, "test reported %d bytes, expected %zu", size,
			  bytes);
}
