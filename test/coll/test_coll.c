/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The collective side through its exported collNet tables, 2 to 4 ranks in one process over
 * 127.0.0.1: lossless sums bit-exact against a rank-order reference, sizes from 0 to 8 MiB,
 * in-place calls, many calls in flight, declined (type, op) pairs, NaN and Inf, ranks whose
 * settings disagree, a message longer than its receive, and a peer that goes away in the middle
 * of a call. meson runs it over sockets and over the IB transport (test/coll/meson.build).
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "coll_data.h"
#include "coll_mesh.h"
#include "rcmoe/log.h"
#include "test_log.h"
#include "coll/coll.h"

extern const ncclCollNet_v11_t ncclCollNetPlugin_v11;
extern const ncclCollNet_v10_t ncclCollNetPlugin_v10;

static void setup(void)
{
	test_log_init();
	setenv("RCMOE_SOCKET_IFNAME", "lo", 1);
	/* Light connections: 4 ranks make 24 of them per rank in this one process. */
	setenv("RCMOE_SOCKET_NSTREAMS", "2", 1);
	setenv("RCMOE_SOCKET_NTHREADS", "1", 1);
	signal(SIGPIPE, SIG_IGN);
}

TestSuite(coll, .init = setup, .timeout = 300);

static const ncclDataType_t dtypes[] = { ncclFloat32, ncclBfloat16, ncclFloat16 };

/* ---- lossless: every size, every datatype, out of place and in place ---- */

static void lossless_body(struct mesh_rank *r)
{
	static const size_t counts[] = { 0, 1, 5, 17, 1001, 65536 + 3, 4096 * 3 + 1 };
	for (size_t d = 0; d < 3; d++) {
		ncclDataType_t dt = dtypes[d];
		size_t es = dt_size(dt);
		size_t ncounts = sizeof(counts) / sizeof(counts[0]);
		for (size_t ci = 0; ci <= ncounts; ci++) {
			/* the last: 8 MiB */
			size_t n = ci < ncounts ? counts[ci] : (8u << 20) / es;
			for (int inplace = 0; inplace < 2; inplace++) {
				unsigned seed = (unsigned)(ci * 7 + d * 131 + inplace);
				struct contrib c;
				RCHECK(r, contrib_make(&c, r->m->nranks, dt, n, seed) == 0,
				       "out of memory");
				char *send = malloc(n * es + 1), *recv = malloc(n * es + 1);
				RCHECK(r, send && recv, "out of memory");
				memcpy(send, c.in[r->rank], n * es);
				memset(recv, 0x5a, n * es + 1);
				char *dst = inplace ? send : recv;
				void *smh, *rmh;
				RCHECK(r, coll_reg(r, send, n * es + 1, &smh) == ncclSuccess,
				       "regMr");
				RCHECK(r, coll_reg(r, recv, n * es + 1, &rmh) == ncclSuccess,
				       "regMr");
				void *req =
					coll_post(r, send, dst, n, dt, smh, inplace ? smh : rmh);
				if (!req || coll_wait(r, req, n * es, 60.0))
					return;
				size_t bad = ref_compare(&c, dst, 1);
				RCHECK(r, bad == (size_t)-1,
				       "%s n=%zu %s: element %zu differs from the rank-order sum",
				       dt_name(dt), n, inplace ? "in place" : "out of place", bad);
				if (!inplace)
					RCHECK(r, (uint8_t)recv[n * es] == 0x5a,
					       "wrote past the receive");
				RCHECK(r, coll_dereg(r, smh) == ncclSuccess, "deregMr");
				RCHECK(r, coll_dereg(r, rmh) == ncclSuccess, "deregMr");
				free(send);
				free(recv);
				contrib_free(&c);
			}
		}
	}
}

static void lossless_ranks(int nranks)
{
	struct mesh m;
	mesh_open(&m, 11, nranks, 1);
	mesh_run(&m, lossless_body);
	mesh_close(&m);
}

Test(coll, lossless_2_ranks)
{
	lossless_ranks(2);
}

Test(coll, lossless_3_ranks)
{
	lossless_ranks(3);
}

Test(coll, lossless_4_ranks)
{
	lossless_ranks(4);
}

/* The v10 table once, the same way. */
static void v10_body(struct mesh_rank *r)
{
	size_t n = 100003;
	struct contrib c;
	RCHECK(r, contrib_make(&c, r->m->nranks, ncclFloat32, n, 99) == 0, "out of memory");
	float *recv = malloc(n * 4);
	void *smh, *rmh;
	RCHECK(r, recv != NULL, "out of memory");
	if (coll_reg_pair(r, c.in[r->rank], recv, n * 4, &smh, &rmh))
		return;
	void *req = coll_post(r, c.in[r->rank], recv, n, ncclFloat32, smh, rmh);
	if (!req || coll_wait(r, req, n * 4, 60.0))
		return;
	size_t bad = ref_compare(&c, recv, 1);
	RCHECK(r, bad == (size_t)-1, "v10: element %zu differs", bad);
	if (coll_dereg_pair(r, smh, rmh))
		return;
	free(recv);
	contrib_free(&c);
}

Test(coll, v10_table_lossless)
{
	struct mesh m;
	mesh_open(&m, 10, 2, 1);
	mesh_run(&m, v10_body);
	mesh_close(&m);
}

/* ---- many calls in flight ---- */

enum { INFLIGHT = 40, INFLIGHT_N = 30011 };

static void inflight_body(struct mesh_rank *r)
{
	struct contrib c[INFLIGHT];
	float *recv[INFLIGHT];
	void *req[INFLIGHT], *smh[INFLIGHT], *rmh[INFLIGHT];
	int posted = 0, done_count = 0;
	char done[INFLIGHT] = { 0 };
	for (int i = 0; i < INFLIGHT; i++) {
		RCHECK(r,
		       contrib_make(&c[i], r->m->nranks, ncclFloat32, INFLIGHT_N + i, 500 + i) == 0,
		       "out of memory");
		recv[i] = malloc((INFLIGHT_N + i) * 4);
		RCHECK(r, recv[i] != NULL, "out of memory");
		if (coll_reg_pair(r, c[i].in[r->rank], recv[i], (INFLIGHT_N + i) * 4, &smh[i],
				  &rmh[i]))
			return;
	}
	/* Post as many as the plugin takes before testing any, as NCCL's proxy does; it must
	 * take at least 8 (NCCL_STEPS) and refuse the rest with a NULL request, never an error. */
	double t0 = mesh_now();
	while (done_count < INFLIGHT) {
		while (posted < INFLIGHT) {
			void *q = NULL;
			ncclResult_t res = coll_iallreduce(r, c[posted].in[r->rank], recv[posted],
							   INFLIGHT_N + posted, ncclFloat32,
							   smh[posted], rmh[posted], &q);
			RCHECK(r, res == ncclSuccess, "iallreduce %d failed", posted);
			if (!q)
				break;
			req[posted++] = q;
		}
		RCHECK(r, posted >= 8, "only %d calls taken at once", posted);
		/* Test the newest first: completion order must not matter. */
		for (int i = posted - 1; i >= 0; i--) {
			int d = 0, size = 0;
			if (done[i])
				continue;
			RCHECK(r, coll_test(r, req[i], &d, &size) == ncclSuccess, "test %d", i);
			if (d) {
				RCHECK(r, size == (INFLIGHT_N + i) * 4, "call %d: size %d", i,
				       size);
				done[i] = 1;
				done_count++;
			}
		}
		RCHECK(r, mesh_now() - t0 < 120, "%d of %d calls done", done_count, INFLIGHT);
	}
	for (int i = 0; i < INFLIGHT; i++) {
		size_t bad = ref_compare(&c[i], recv[i], 1);
		RCHECK(r, bad == (size_t)-1, "call %d: element %zu differs", i, bad);
		if (coll_dereg_pair(r, smh[i], rmh[i]))
			return;
		free(recv[i]);
		contrib_free(&c[i]);
	}
}

Test(coll, many_calls_in_flight)
{
	struct mesh m;
	mesh_open(&m, 11, 3, 1);
	mesh_run(&m, inflight_body);
	mesh_close(&m);
}

/* ---- what is declined ---- */

Test(coll, unsupported_declined)
{
	struct mesh m;
	for (int dt = 0; dt <= ncclFloat8e5m2; dt++)
		for (int op = 0; op <= ncclAvg; op++) {
			int sup = -1;
			cr_assert_eq(ncclCollNetPlugin_v11.reduceSupport(dt, op, &sup),
				     ncclSuccess);
			int want = op == ncclSum &&
				   (dt == ncclFloat32 || dt == ncclFloat16 || dt == ncclBfloat16);
			cr_expect_eq(sup, want, "reduceSupport(%d, %d) = %d", dt, op, sup);
			sup = -1;
			cr_assert_eq(ncclCollNetPlugin_v10.reduceSupport(dt, op, &sup),
				     ncclSuccess);
			cr_expect_eq(sup, want, "v10 reduceSupport(%d, %d) = %d", dt, op, sup);
		}
	/* NULL: NCCL's cost model then never picks an algorithm that needs them. */
	cr_expect_null(ncclCollNetPlugin_v11.iallgather);
	cr_expect_null(ncclCollNetPlugin_v11.ireducescatter);
	cr_expect_null(ncclCollNetPlugin_v10.iallgather);
	cr_expect_null(ncclCollNetPlugin_v10.ireducescatter);

	mesh_open(&m, 11, 2, 1);
	int32_t a[16] = { 0 }, b[16];
	void *req = (void *)1;
	int before = test_log_warn_count();
	cr_expect_neq(ncclCollNetPlugin_v11.iallreduce(m.r[0].comm, a, b, 16, ncclInt32, ncclSum,
						       NULL, NULL, &req),
		      ncclSuccess, "int32 sum accepted");
	cr_expect_neq(ncclCollNetPlugin_v11.iallreduce(m.r[0].comm, a, b, 4, ncclFloat32, ncclMax,
						       NULL, NULL, &req),
		      ncclSuccess, "fp32 max accepted");
	cr_expect_gt(test_log_warn_count(), before, "refused silently");
	/* A declined call consumed nothing: the comm still works. */
	mesh_run(&m, v10_body);
	mesh_close(&m);
}

/* Device pointers are refused (host buffers only so far). */
Test(coll, device_registration_refused_at_iallreduce)
{
	struct mesh m;
	mesh_open(&m, 11, 2, 1);
	float a[64] = { 0 }, b[64];
	void *mh = NULL, *req = (void *)1;
	cr_assert_eq(ncclCollNetPlugin_v11.regMr(m.r[0].comm, a, sizeof(a), NCCL_PTR_CUDA, &mh),
		     ncclSuccess);
	cr_expect_neq(ncclCollNetPlugin_v11.iallreduce(m.r[0].comm, a, b, 64, ncclFloat32, ncclSum,
						       mh, NULL, &req),
		      ncclSuccess, "a device buffer was accepted");
	cr_expect_eq(ncclCollNetPlugin_v11.deregMr(m.r[0].comm, mh), ncclSuccess);
	mesh_close(&m);
}

/* ---- NaN and Inf ---- */

static void nonfinite_body(struct mesh_rank *r)
{
	size_t n = 70001;
	struct contrib c;
	for (size_t d = 0; d < 3; d++) {
		ncclDataType_t dt = dtypes[d];
		size_t es = dt_size(dt);
		RCHECK(r, contrib_make(&c, r->m->nranks, dt, n, 77 + (unsigned)d) == 0, "memory");
		contrib_poison(&c, 1, 1000, NAN);
		contrib_poison(&c, 0, 5000, INFINITY);
		contrib_poison(&c, r->m->nranks - 1, 60000, -INFINITY);
		char *recv = malloc(n * es);
		void *smh, *rmh;
		RCHECK(r, recv != NULL, "memory");
		if (coll_reg_pair(r, c.in[r->rank], recv, n * es, &smh, &rmh))
			return;
		void *req = coll_post(r, c.in[r->rank], recv, n, dt, smh, rmh);
		if (!req || coll_wait(r, req, n * es, 60.0))
			return;
		RCHECK(r, coll_dereg_pair(r, smh, rmh) == 0, "deregMr");
		RCHECK(r, isnan(elem_f32(dt, recv, 1000)), "%s: NaN lost", dt_name(dt));
		RCHECK(r, isinf(elem_f32(dt, recv, 5000)) && elem_f32(dt, recv, 5000) > 0,
		       "%s: +Inf lost (%g)", dt_name(dt), elem_f32(dt, recv, 5000));
		RCHECK(r, isinf(elem_f32(dt, recv, 60000)) && elem_f32(dt, recv, 60000) < 0,
		       "%s: -Inf lost (%g)", dt_name(dt), elem_f32(dt, recv, 60000));
		size_t bad = ref_compare(&c, recv, 1);
		RCHECK(r, bad == (size_t)-1, "%s: element %zu differs", dt_name(dt), bad);
		free(recv);
		contrib_free(&c);
	}
}

Test(coll, lossless_nan_inf_propagate)
{
	struct mesh m;
	mesh_open(&m, 11, 3, 1);
	mesh_run(&m, nonfinite_body);
	mesh_close(&m);
}

/* ---- ranks that disagree ---- */

static void density_of_rank_1(int rank, struct rcmoe_ar_settings *s)
{
	if (rank == 1) {
		s->codec = RCMOE_AR_PTS;
		s->density = 0.5;
	}
}

Test(coll, mismatched_settings_fail_connect_everywhere)
{
	struct mesh m;
	int before = test_log_warn_count();
	rcmoe_coll_set_settings_hook(density_of_rank_1);
	mesh_open(&m, 11, 3, 0);
	rcmoe_coll_set_settings_hook(NULL);
	for (int i = 0; i < 3; i++) {
		cr_expect_neq(m.r[i].connect_result, ncclSuccess, "rank %d connected", i);
		cr_expect_null(m.r[i].comm, "rank %d has a comm", i);
	}
	/* Ranks 0 and 2 name rank 1, and rank 1 names both. */
	cr_expect_geq(test_log_warn_count() - before, 4, "the disagreement was not loud");
	mesh_close(&m);
}

/* ---- a peer that goes away ---- */

/* Test req until the call fails. The rank fails (returns nonzero) if the call completes
 * (`completed`) or no error came within bound_s (`late`). */
static int wait_for_error(struct mesh_rank *r, void *req, double bound_s, const char *completed,
			  const char *late)
{
	double t0 = mesh_now();
	for (;;) {
		int done = 0, size;
		ncclResult_t res = coll_test(r, req, &done, &size);
		if (rank_check(r, !done, "%s", completed))
			return 1;
		if (res != ncclSuccess)
			return 0;
		if (rank_check(r, mesh_now() - t0 < bound_s, "%s", late))
			return 1;
	}
}

static void dying_body(struct mesh_rank *r)
{
	size_t n = 1 << 20;
	float *a = calloc(n, 4), *b = calloc(n, 4);
	void *amh, *bmh;
	RCHECK(r, a && b, "memory");
	if (r->rank == 2) {
		/* Gone before its part of the call: its comm closes (all its connections). */
		pthread_barrier_wait(&r->m->barrier);
		RCHECK(r, coll_close(r) == ncclSuccess, "closeColl");
		r->comm = NULL;
		free(a);
		free(b);
		return;
	}
	/* Every rank reaches the barrier, even one that failed before. */
	void *req = coll_reg_pair(r, a, b, n * 4, &amh, &bmh)
			    ? NULL
			    : coll_post(r, a, b, n, ncclFloat32, amh, bmh);
	pthread_barrier_wait(&r->m->barrier);
	if (!req)
		return;
	if (wait_for_error(r, req, 4.0, "the call completed without rank 2",
			   "no error 4 s after rank 2 left (timeout 2 s)"))
		return;
	if (coll_dereg_pair(r, amh, bmh))
		return;
	free(a);
	free(b);
}

Test(coll, peer_gone_mid_call_fails_the_others)
{
	setenv("RCMOE_SOCKET_TIMEOUT", "2", 1);
	struct mesh m;
	mesh_open(&m, 11, 3, 1);
	mesh_run(&m, dying_body);
	mesh_close(&m);
}

/* ---- a message longer than its receive ---- */

enum { LONG_N = 4096, LONG_EXTRA = 1024, LONG_TAIL = 4096 };

/* Rank 1 sums more elements than rank 0 (a peer that went wrong), so its reduce-scatter
 * message is longer than the receive rank 0 posted, and rank 0's is shorter than rank 1's. Both
 * are refused, with a warning, and both calls fail: over sockets when the header arrives, over
 * IB by the sending transport (the receive's size is in its clear-to-send) and by the receiver
 * once a short one landed. Nothing is written past rank 0's buffers. */
static void longer_body(struct mesh_rank *r)
{
	size_t n = LONG_N + (r->rank == 1 ? LONG_EXTRA : 0), bytes = n * 4;
	size_t cap = (LONG_N + LONG_EXTRA) * 4 + LONG_TAIL;
	float *send = calloc(cap, 1);
	unsigned char *recv = malloc(cap);
	void *smh, *rmh;
	RCHECK(r, send && recv, "memory");
	memset(recv, 0x5a, cap);
	for (size_t i = 0; i < n; i++)
		send[i] = (float)(i % 13);
	if (coll_reg_pair(r, send, recv, cap, &smh, &rmh))
		return;
	void *req = coll_post(r, send, recv, n, ncclFloat32, smh, rmh);
	if (!req)
		return;
	if (wait_for_error(r, req, 10.0, "a call with a refused message completed",
			   "no error after 10 s"))
		return;
	for (size_t i = bytes; i < cap; i++)
		RCHECK(r, recv[i] == 0x5a, "byte %zu past the %zu-byte result was written", i,
		       bytes);
	if (coll_dereg_pair(r, smh, rmh))
		return;
	free(send);
	free(recv);
}

Test(coll, longer_message_refused_nothing_past_the_buffer)
{
	struct mesh m;
	int before = test_log_warn_count();
	mesh_open(&m, 11, 2, 1);
	mesh_run(&m, longer_body);
	mesh_close(&m);
	cr_expect_gt(test_log_warn_count(), before, "refused silently");
}

/* ---- a job that does not enable collNet pays nothing ---- */

static int count_dir(const char *path)
{
	int n = 0;
	DIR *d = opendir(path);
	if (!d)
		return -1;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* NCCL calls collNet init and devices for every communicator (and getProperties while it builds
 * the topology) whether NCCL_COLLNET_ENABLE is set or not; listen and connect only with it. */
Test(coll, init_and_devices_start_no_thread_and_open_nothing)
{
	extern const ncclNet_v11_t ncclNetPlugin_v11;
	ncclNetCommConfig_v11_t cfg = { .trafficClass = NCCL_NET_TRAFFIC_CLASS_UNDEF };
	void *net_ctx = NULL, *coll_ctx = NULL;
	ncclNetProperties_v11_t net_props, coll_props;
	int ndev = 0, cdev = 0, sup;
	cr_assert_eq(ncclNetPlugin_v11.init(&net_ctx, 7, &cfg, rcmoe_log_get(), NULL), ncclSuccess);
	cr_assert_eq(ncclNetPlugin_v11.devices(&ndev), ncclSuccess);
	cr_assert_eq(ncclNetPlugin_v11.getProperties(0, &net_props), ncclSuccess);
	int threads = count_dir("/proc/self/task"), fds = count_dir("/proc/self/fd");
	cr_assert_eq(ncclCollNetPlugin_v11.init(&coll_ctx, 7, rcmoe_log_get()), ncclSuccess);
	cr_assert_eq(ncclCollNetPlugin_v11.devices(&cdev), ncclSuccess);
	cr_expect_eq(cdev, ndev, "collNet reports %d devices, net %d", cdev, ndev);
	for (int d = 0; d < cdev; d++) {
		cr_assert_eq(ncclNetPlugin_v11.getProperties(d, &net_props), ncclSuccess);
		cr_assert_eq(ncclCollNetPlugin_v11.getProperties(d, &coll_props), ncclSuccess);
		/* NCCL merges the two by name; the first one imported (collNet) sets the rest. */
		cr_expect_str_eq(coll_props.name, net_props.name);
		cr_expect_eq(coll_props.ptrSupport, net_props.ptrSupport);
		cr_expect_eq(coll_props.speed, net_props.speed);
		cr_expect_eq(coll_props.latency, net_props.latency);
		cr_expect_eq(coll_props.guid, net_props.guid);
		cr_expect_eq(coll_props.pciPath, net_props.pciPath);
		cr_expect_gt(coll_props.maxCollBytes, 0);
		cr_expect_leq(coll_props.maxCollBytes, NCCL_MAX_NET_SIZE_BYTES);
	}
	cr_assert_eq(ncclCollNetPlugin_v11.reduceSupport(ncclFloat32, ncclSum, &sup), ncclSuccess);
	cr_expect_eq(count_dir("/proc/self/task"), threads, "collNet init started a thread");
	cr_expect_eq(count_dir("/proc/self/fd"), fds, "collNet init opened a file or socket");
	cr_expect_eq(ncclCollNetPlugin_v11.finalize(coll_ctx), ncclSuccess);
	cr_expect_eq(ncclNetPlugin_v11.finalize(net_ctx), ncclSuccess);
}
