/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One rank (the hidden --child mode): CUDA and NCCL set-up, the op loops, timing and the check.
 * Its environment (NCCL_HOSTID, NCCL_NET_PLUGIN, ...) was chosen by the parent; this process
 * only reports what it measured, over its pipe, and leaves every decision to the parent.
 *
 * Timing: warmup, then `iters` ops between two CUDA events on the rank's stream; the rank's
 * time per op is the mean over the loop, and the parent reports the maximum over ranks. The
 * check runs one more op after timing, into a poisoned receive buffer, outside the timed region.
 */
#if RCMOE_BENCH_NCCL
#include <nccl.h> /* before anything that could declare NCCL's types itself */
#include <cuda_runtime.h>
#include <dlfcn.h>
#endif
#include "bench.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- messages to the parent (also used by the simulated ranks) ---- */

int bench_msg_send(int fd, int type, int rank, const void *payload, size_t len)
{
	char buf[sizeof(struct bench_msg_hdr) + BENCH_MSG_MAX];
	struct bench_msg_hdr h = { BENCH_MSG_MAGIC, (uint16_t)type, (uint16_t)rank, 0 };
	if (len > BENCH_MSG_MAX)
		len = BENCH_MSG_MAX;
	h.len = (uint32_t)len;
	memcpy(buf, &h, sizeof(h));
	if (len)
		memcpy(buf + sizeof(h), payload, len);
	/* One write per message: under PIPE_BUF it is atomic, so no partial header can be seen
	 * alone when the process dies right after. */
	size_t total = sizeof(h) + len, off = 0;
	while (off < total) {
		ssize_t k = write(fd, buf + off, total - off);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		off += (size_t)k;
	}
	return 0;
}

int bench_child_read_id(int fd, void *id)
{
	size_t off = 0;
	while (off < BENCH_ID_BYTES) {
		ssize_t k = read(fd, (char *)id + off, BENCH_ID_BYTES - off);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1; /* the parent went away */
		off += (size_t)k;
	}
	return 0;
}

uint64_t bench_id_hash(const void *id)
{
	uint64_t h = 0;
	const unsigned char *p = id;
	for (int i = 0; i < BENCH_ID_BYTES; i++)
		h = bench_hash64(h ^ p[i]);
	return h;
}

#if !RCMOE_BENCH_NCCL

bool bench_have_nccl(void)
{
	return false;
}

int bench_child_main(struct bench_cfg *cfg)
{
	const char msg[] = "this rcmoe-bench was built without CUDA/NCCL";
	bench_msg_send(cfg->child_out_fd, BENCH_MSG_ERROR, cfg->child_rank, msg, sizeof(msg) - 1);
	return 1;
}

#else

bool bench_have_nccl(void)
{
	return true;
}

typedef ncclResult_t (*alltoall_fn)(const void *, void *, size_t, ncclDataType_t, ncclComm_t,
				    cudaStream_t);

struct rank {
	struct bench_cfg *cfg;
	int rank, n, fd;
	ncclComm_t comm;
	cudaStream_t stream;
	cudaEvent_t ev0, ev1;
	char *sendbuf, *recvbuf, *host;
	bool host_pinned;
	alltoall_fn a2a; /* NULL: grouped send/recv */
	ncclDataType_t dt;
	size_t es;
};

static void fail(struct rank *R, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct rank *R, const char *fmt, ...)
{
	char msg[700];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	bench_msg_send(R->fd, BENCH_MSG_ERROR, R->rank, msg, strlen(msg));
}

static void info(struct rank *R, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void info(struct rank *R, const char *fmt, ...)
{
	char msg[700];
	va_list ap;
	if (!R->cfg->verbose)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	bench_msg_send(R->fd, BENCH_MSG_INFO, R->rank, msg, strlen(msg));
}

#define CUDA_TRY(call)                                                                             \
	do {                                                                                       \
		cudaError_t e_ = (call);                                                           \
		if (e_ != cudaSuccess) {                                                           \
			fail(R, "%s: %s (%s:%d)", #call, cudaGetErrorString(e_), __FILE__,         \
			     __LINE__);                                                            \
			return -1;                                                                 \
		}                                                                                  \
	} while (0)

/* The last-error text says which peer or which plugin call; keep it with the code. */
#define NCCL_TRY(call)                                                                             \
	do {                                                                                       \
		ncclResult_t r_ = (call);                                                          \
		if (r_ != ncclSuccess && r_ != ncclInProgress) {                                   \
			fail(R, "%s: %s (%s)", #call, ncclGetErrorString(r_),                      \
			     ncclGetLastError(R->comm));                                           \
			return -1;                                                                 \
		}                                                                                  \
	} while (0)

/*
 * Wait for the stream without blocking inside CUDA: a peer that died leaves NCCL's kernel
 * spinning forever, and only the communicator's async error says so.
 */
static int wait_stream(struct rank *R)
{
	struct timespec pause = { 0, 50000 };
	for (;;) {
		cudaError_t e = cudaStreamQuery(R->stream);
		if (e == cudaSuccess)
			return 0;
		if (e != cudaErrorNotReady) {
			fail(R, "cudaStreamQuery: %s", cudaGetErrorString(e));
			return -1;
		}
		ncclResult_t ar = ncclSuccess;
		if (R->comm && ncclCommGetAsyncError(R->comm, &ar) == ncclSuccess &&
		    ar != ncclSuccess && ar != ncclInProgress) {
			fail(R, "NCCL async error: %s (%s)", ncclGetErrorString(ar),
			     ncclGetLastError(R->comm));
			return -1;
		}
		/* Sleep, not spin: the proxy and plugin threads of all ranks need the CPUs. */
		nanosleep(&pause, NULL);
	}
}

static int launch(struct rank *R, int op, size_t count, size_t per_peer)
{
	const int n = R->n, me = R->rank;
	switch (op) {
	case BENCH_ALLTOALL:
		if (R->a2a) {
			NCCL_TRY(R->a2a(R->sendbuf, R->recvbuf, per_peer, R->dt, R->comm,
					R->stream));
			break;
		}
		/* What PyTorch's all_to_all_single does: one group of n sends and n receives. */
		NCCL_TRY(ncclGroupStart());
		for (int p = 0; p < n; p++) {
			size_t off = (size_t)p * per_peer * R->es;
			NCCL_TRY(
				ncclSend(R->sendbuf + off, per_peer, R->dt, p, R->comm, R->stream));
			NCCL_TRY(
				ncclRecv(R->recvbuf + off, per_peer, R->dt, p, R->comm, R->stream));
		}
		NCCL_TRY(ncclGroupEnd());
		break;
	case BENCH_ALLREDUCE:
		NCCL_TRY(ncclAllReduce(R->sendbuf, R->recvbuf, count, R->dt, ncclSum, R->comm,
				       R->stream));
		break;
	case BENCH_SENDRECV:
		NCCL_TRY(ncclGroupStart());
		NCCL_TRY(ncclSend(R->sendbuf, count, R->dt, (me + 1) % n, R->comm, R->stream));
		NCCL_TRY(ncclRecv(R->recvbuf, count, R->dt, (me + n - 1) % n, R->comm, R->stream));
		NCCL_TRY(ncclGroupEnd());
		break;
	}
	return 0;
}

static int one_size(struct rank *R, int opi, int si)
{
	struct bench_cfg *cfg = R->cfg;
	int op = cfg->ops[opi];
	size_t count, per_peer;
	size_t bytes = bench_op_shape(cfg, op, cfg->sizes[si], &count, &per_peer);
	if (!bytes)
		return 0; /* the parent skips this row too */

	for (int w = 0; w < cfg->warmup; w++)
		if (launch(R, op, count, per_peer))
			return -1;
	CUDA_TRY(cudaEventRecord(R->ev0, R->stream));
	for (int it = 0; it < cfg->iters; it++)
		if (launch(R, op, count, per_peer))
			return -1;
	CUDA_TRY(cudaEventRecord(R->ev1, R->stream));
	if (wait_stream(R))
		return -1;
	float ms = 0;
	CUDA_TRY(cudaEventElapsedTime(&ms, R->ev0, R->ev1));

	struct bench_row_msg m;
	memset(&m, 0, sizeof(m));
	m.op = opi;
	m.size_idx = si;
	m.bytes = bytes;
	m.count = count;
	m.time_us = (double)ms * 1000.0 / cfg->iters;
	if (cfg->check != BENCH_CHECK_NONE) {
		/* Poison first: an element the op did not write this time cannot pass. */
		CUDA_TRY(cudaMemsetAsync(R->recvbuf, 0xff, bytes, R->stream));
		if (launch(R, op, count, per_peer))
			return -1;
		CUDA_TRY(cudaMemcpyAsync(R->host, R->recvbuf, bytes, cudaMemcpyDeviceToHost,
					 R->stream));
		if (wait_stream(R))
			return -1;
		bench_check(cfg, op, R->rank, R->host, count, &m.chk);
	}
	return bench_msg_send(R->fd, BENCH_MSG_ROW, R->rank, &m, sizeof(m));
}

/* The send buffer holds the largest size of this op; smaller sizes use a prefix of it. */
static int fill_send(struct rank *R, int op, size_t maxcount)
{
	bench_fill(R->cfg, op, R->rank, R->host, maxcount);
	CUDA_TRY(cudaMemcpyAsync(R->sendbuf, R->host, maxcount * R->es, cudaMemcpyHostToDevice,
				 R->stream));
	return wait_stream(R);
}

static int run_rank(struct rank *R)
{
	struct bench_cfg *cfg = R->cfg;
	int version = 0;
	NCCL_TRY(ncclGetVersion(&version));

	if (cfg->a2a != BENCH_A2A_P2P) {
		/* Looked up at run time: the NCCL found through LD_LIBRARY_PATH may be older than
		 * the header this was built with. */
		alltoall_fn f = (alltoall_fn)dlsym(RTLD_DEFAULT, "ncclAlltoAll");
		if (f && version >= 22800)
			R->a2a = f;
		else if (cfg->a2a == BENCH_A2A_NATIVE) {
			fail(R, "--a2a native: ncclAlltoAll is not in NCCL %d (needs >= 2.28)",
			     version);
			return -1;
		}
	}

	CUDA_TRY(cudaSetDevice(cfg->device));
	CUDA_TRY(cudaStreamCreateWithFlags(&R->stream, cudaStreamNonBlocking));
	CUDA_TRY(cudaEventCreate(&R->ev0));
	CUDA_TRY(cudaEventCreate(&R->ev1));

	ncclUniqueId id;
	if (R->rank == 0) {
		NCCL_TRY(ncclGetUniqueId(&id));
		if (bench_msg_send(R->fd, BENCH_MSG_ID, 0, &id, sizeof(id)))
			return -1;
	} else if (bench_child_read_id(cfg->child_in_fd, &id)) {
		fail(R, "no unique id from the parent");
		return -1;
	}

	struct bench_hello h;
	memset(&h, 0, sizeof(h));
	h.nccl_version = version;
	h.a2a_native = R->a2a != NULL;
	h.id_hash = bench_id_hash(&id);
	const char *gdr = getenv("NCCL_NET_GDR_LEVEL");
	const char *plug = getenv("NCCL_NET_PLUGIN");
	snprintf(h.text, sizeof(h.text),
		 "pid %d NCCL %d NCCL_HOSTID=%s NCCL_NET=%s NCCL_NET_GDR_LEVEL=%s "
		 "NCCL_NET_PLUGIN=%.120s",
		 (int)getpid(), version, getenv("NCCL_HOSTID") ? getenv("NCCL_HOSTID") : "",
		 getenv("NCCL_NET") ? getenv("NCCL_NET") : "", gdr ? gdr : "(default)",
		 plug ? plug : "(unset)");
	if (bench_msg_send(R->fd, BENCH_MSG_HELLO, R->rank, &h, sizeof(h)))
		return -1;

	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	NCCL_TRY(ncclCommInitRank(&R->comm, R->n, id, R->rank));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	info(R, "communicator ready in %.2f s",
	     (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9);

	size_t maxbytes = 0;
	for (int o = 0; o < cfg->nops; o++)
		for (int s = 0; s < cfg->nsizes; s++) {
			size_t count, pp;
			size_t b = bench_op_shape(cfg, cfg->ops[o], cfg->sizes[s], &count, &pp);
			if (b > maxbytes)
				maxbytes = b;
		}
	if (!maxbytes) {
		fail(R, "no size holds one element of %s per rank", cfg->dt->name);
		return -1;
	}
	CUDA_TRY(cudaMalloc((void **)&R->sendbuf, maxbytes));
	CUDA_TRY(cudaMalloc((void **)&R->recvbuf, maxbytes));
	/* Pinned for fast copies; plain memory still works when pinning is refused. */
	if (cudaMallocHost((void **)&R->host, maxbytes) == cudaSuccess) {
		R->host_pinned = true;
	} else {
		(void)cudaGetLastError();
		R->host = malloc(maxbytes);
		if (!R->host) {
			fail(R, "out of host memory (%zu bytes)", maxbytes);
			return -1;
		}
	}

	for (int o = 0; o < cfg->nops; o++) {
		int op = cfg->ops[o];
		size_t maxcount = 0;
		for (int s = 0; s < cfg->nsizes; s++) {
			size_t count, pp;
			bench_op_shape(cfg, op, cfg->sizes[s], &count, &pp);
			if (count > maxcount)
				maxcount = count;
		}
		if (!maxcount)
			continue;
		if (fill_send(R, op, maxcount))
			return -1;
		for (int s = 0; s < cfg->nsizes; s++)
			if (one_size(R, o, s))
				return -1;
	}

	NCCL_TRY(ncclCommFinalize(R->comm));
	if (wait_stream(R))
		return -1;
	NCCL_TRY(ncclCommDestroy(R->comm));
	R->comm = NULL;
	return 0;
}

int bench_child_main(struct bench_cfg *cfg)
{
	struct rank R;
	memset(&R, 0, sizeof(R));
	R.cfg = cfg;
	R.rank = cfg->child_rank;
	R.n = cfg->nranks;
	R.fd = cfg->child_out_fd;
	R.dt = (ncclDataType_t)cfg->dt->nccl;
	R.es = cfg->dt->size;

	int rc = run_rank(&R);
	if (rc == 0) {
		cudaFree(R.sendbuf);
		cudaFree(R.recvbuf);
		if (R.host_pinned)
			cudaFreeHost(R.host);
		else
			free(R.host);
		bench_msg_send(R.fd, BENCH_MSG_DONE, R.rank, NULL, 0);
		return 0;
	}
	/* The error is with the parent already. ncclCommAbort or exit handlers could wait on a
	 * dead peer or a spinning kernel: leave without them. */
	_exit(1);
}

#endif
