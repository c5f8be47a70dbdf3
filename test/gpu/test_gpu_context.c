/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Can a second CUDA context of the same process do the plugin's GPU work while the application's
 * synchronous copy waits? In the primary context every enqueueing call then blocks (test_gpu_net's
 * deadlock_model_check), which is why GPU buffers are opt-in. A context the plugin creates for
 * itself might not share that lock, and NCCL's buffers, allocated with the VMM API (cuMemCreate,
 * cuMemMap: mappings of the process, access granted per device), might be reachable from it.
 * This probe measures both on the machine it runs on, and what happens with a cudaMalloc buffer
 * (tied to the context that allocated it):
 *  - asserted: the model takes hold, and when the second context's copy of a VMM buffer
 *    completes, it carried the right bytes;
 *  - reported ("CONTEXT PROBE" lines on stderr): whether the launch and the event record in the
 *    second context blocked behind the copy, whether the copy completed while the application's
 *    copy still waited, and whether cudaMalloc memory is reachable from the second context.
 * Driver entry points come through cudart (cudaGetDriverEntryPointByVersion), as the plugin would
 * get them: nothing links libcuda directly. Skips, saying why, when no GPU is visible.
 */
#include <criterion/criterion.h>
#include <cuda.h>
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_spin.h"
#include "rcmoe/kernels.h"
#include "sync_copy_model.h"
#include "test_log.h"

#define PROBE_BYTES  (1u << 20)
#define PROBE_SPIN_S 5.0

static void setup(void)
{
	int count = 0;
	test_log_init();
	cudaError_t e = cudaGetDeviceCount(&count);
	if (e != cudaSuccess || count == 0)
		cr_skip_test("no CUDA device visible (cudaGetDeviceCount: %s, %d devices): the "
			     "probe needs one",
			     cudaGetErrorString(e), count);
}

TestSuite(gpu_context, .init = setup, .timeout = 300);

/* The driver calls used, with the signatures of the versions asked for. */
struct drv {
	CUresult (*ctx_create)(CUcontext *, unsigned int, CUdevice);
	CUresult (*ctx_destroy)(CUcontext);
	CUresult (*ctx_push)(CUcontext);
	CUresult (*ctx_pop)(CUcontext *);
	CUresult (*granularity)(size_t *, const CUmemAllocationProp *,
				CUmemAllocationGranularity_flags);
	CUresult (*mem_create)(CUmemGenericAllocationHandle *, size_t, const CUmemAllocationProp *,
			       unsigned long long);
	CUresult (*addr_reserve)(CUdeviceptr *, size_t, size_t, CUdeviceptr, unsigned long long);
	CUresult (*mem_map)(CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle,
			    unsigned long long);
	CUresult (*set_access)(CUdeviceptr, size_t, const CUmemAccessDesc *, size_t);
	CUresult (*mem_unmap)(CUdeviceptr, size_t);
	CUresult (*addr_free)(CUdeviceptr, size_t);
	CUresult (*mem_release)(CUmemGenericAllocationHandle);
	/* green contexts: an SM partition of the primary context */
	CUresult (*dev_resource)(CUdevice, CUdevResource *, CUdevResourceType);
	CUresult (*sm_split)(CUdevResource *, unsigned int *, const CUdevResource *,
			     CUdevResource *, unsigned int, unsigned int);
	CUresult (*resource_desc)(CUdevResourceDesc *, CUdevResource *, unsigned int);
	CUresult (*green_create)(CUgreenCtx *, CUdevResourceDesc, CUdevice, unsigned int);
	CUresult (*green_to_ctx)(CUcontext *, CUgreenCtx);
};

static void *entry(const char *name, int version)
{
	void *fn = NULL;
	enum cudaDriverEntryPointQueryResult q;
	cudaError_t e = cudaGetDriverEntryPointByVersion(name, &fn, (unsigned)version,
							 cudaEnableDefault, &q);
	cr_assert(e == cudaSuccess && q == cudaDriverEntryPointSuccess && fn,
		  "driver entry point %s@%d: %s (query result %d)", name, version,
		  cudaGetErrorString(e), (int)q);
	return fn;
}

static void load_driver(struct drv *d)
{
	d->ctx_create = entry("cuCtxCreate", 3020);
	d->ctx_destroy = entry("cuCtxDestroy", 4000);
	d->ctx_push = entry("cuCtxPushCurrent", 4000);
	d->ctx_pop = entry("cuCtxPopCurrent", 4000);
	d->granularity = entry("cuMemGetAllocationGranularity", 10020);
	d->mem_create = entry("cuMemCreate", 10020);
	d->addr_reserve = entry("cuMemAddressReserve", 10020);
	d->mem_map = entry("cuMemMap", 10020);
	d->set_access = entry("cuMemSetAccess", 10020);
	d->mem_unmap = entry("cuMemUnmap", 10020);
	d->addr_free = entry("cuMemAddressFree", 10020);
	d->mem_release = entry("cuMemRelease", 10020);
	/* the versions of this toolkit's header, whose resource structs we pass */
	d->dev_resource = entry("cuDeviceGetDevResource", CUDA_VERSION);
	d->sm_split = entry("cuDevSmResourceSplitByCount", CUDA_VERSION);
	d->resource_desc = entry("cuDevResourceGenerateDesc", CUDA_VERSION);
	d->green_create = entry("cuGreenCtxCreate", CUDA_VERSION);
	d->green_to_ctx = entry("cuCtxFromGreenCtx", CUDA_VERSION);
}

#define DK(call)                                                                                   \
	do {                                                                                       \
		CUresult r_ = (call);                                                              \
		cr_assert_eq(r_, CUDA_SUCCESS, "%s: CUresult %d", #call, (int)r_);                 \
	} while (0)

/* A buffer allocated the way NCCL allocates its own (cuMem*, device 0, read-write access). */
struct vmm_buf {
	CUmemGenericAllocationHandle handle;
	CUdeviceptr ptr;
	size_t size;
};

static void vmm_alloc(const struct drv *d, struct vmm_buf *b, size_t bytes)
{
	CUmemAllocationProp prop;
	memset(&prop, 0, sizeof(prop));
	prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
	prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	prop.location.id = 0;
	size_t gran = 0;
	DK(d->granularity(&gran, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM));
	b->size = (bytes + gran - 1) / gran * gran;
	DK(d->mem_create(&b->handle, b->size, &prop, 0));
	DK(d->addr_reserve(&b->ptr, b->size, 0, 0, 0));
	DK(d->mem_map(b->ptr, b->size, 0, b->handle, 0));
	CUmemAccessDesc acc;
	memset(&acc, 0, sizeof(acc));
	acc.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	acc.location.id = 0;
	acc.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
	DK(d->set_access(b->ptr, b->size, &acc, 1));
}

static size_t first_mismatch(const uint8_t *a, const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (a[i] != b[i])
			return i;
	return (size_t)-1;
}

/* What the second context owns: its stream, event and pinned destination. */
struct side {
	const char *kind; /* "second context" or "green context" */
	CUcontext ctx;
	cudaStream_t stream;
	cudaEvent_t done;
	uint8_t *pinned;
};

static void side_enter(const struct drv *d, const struct side *s)
{
	DK(d->ctx_push(s->ctx));
}

static void side_leave(const struct drv *d)
{
	CUcontext c;
	DK(d->ctx_pop(&c));
}

#define GREEN_SMS 16

/* A context of its own (cuCtxCreate), or a green context: GREEN_SMS SMs of the primary one.
 * Left current. */
static void side_create(const struct drv *d, struct side *s, int green)
{
	s->kind = green ? "green context" : "second context";
	if (!green) {
		DK(d->ctx_create(&s->ctx, 0, 0));
		return;
	}
	CUdevResource all, part, rest;
	CUdevResourceDesc desc;
	CUgreenCtx g;
	unsigned int groups = 1;
	memset(&all, 0, sizeof(all));
	memset(&part, 0, sizeof(part));
	memset(&rest, 0, sizeof(rest));
	DK(d->dev_resource(0, &all, CU_DEV_RESOURCE_TYPE_SM));
	DK(d->sm_split(&part, &groups, &all, &rest, 0, GREEN_SMS));
	cr_assert_eq(groups, 1u);
	DK(d->resource_desc(&desc, &part, 1));
	DK(d->green_create(&g, desc, 0, CU_GREEN_CTX_DEFAULT_STREAM));
	DK(d->green_to_ctx(&s->ctx, g));
	DK(d->ctx_push(s->ctx));
}

#define LAT_ROUNDS 200

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Median time from launching a 4 KiB staging copy in the side context to seeing its event
 * done: a context time-sliced against the primary one waits for its turn (milliseconds). */
static double side_round_trip_us(const struct drv *d, const struct side *s, const void *src)
{
	double t[LAT_ROUNDS];
	side_enter(d, s);
	for (int i = 0; i < LAT_ROUNDS; i++) {
		double t0 = model_clock_s();
		cr_assert_eq(rcmoe_gpu_stage_copy(s->pinned, src, 4096, s->stream), RCMOE_OK);
		CK(cudaEventRecord(s->done, s->stream));
		cudaError_t q;
		while ((q = cudaEventQuery(s->done)) == cudaErrorNotReady)
			;
		CK(q);
		t[i] = (model_clock_s() - t0) * 1e6;
	}
	side_leave(d);
	qsort(t, LAT_ROUNDS, sizeof(t[0]), cmp_double);
	return t[LAT_ROUNDS / 2];
}

/* Round trips with the primary context idle, then while a kernel of it spins (as NCCL's does
 * for the whole collective): reported, not asserted. */
static void latency_probe(const struct drv *d, const struct side *s, const void *src)
{
	uint32_t *ctl = NULL, *out = NULL;
	cudaStream_t ps;
	double idle = side_round_trip_us(d, s, src);
	CK(cudaHostAlloc((void **)&ctl, GPU_SPIN_CTL_WORDS * sizeof(uint32_t),
			 cudaHostAllocMapped | cudaHostAllocPortable));
	memset(ctl, 0, GPU_SPIN_CTL_WORDS * sizeof(uint32_t));
	CK(cudaMalloc((void **)&out, 256 * sizeof(uint32_t)));
	CK(cudaStreamCreateWithFlags(&ps, cudaStreamNonBlocking));
	CK(gpu_spin_launch(ctl, out, 256, 30.0, ps));
	while (((volatile uint32_t *)ctl)[GPU_SPIN_STATE] != GPU_SPIN_RUNNING)
		;
	double busy = side_round_trip_us(d, s, src);
	((volatile uint32_t *)ctl)[GPU_SPIN_RELEASE] = 1;
	CK(cudaStreamSynchronize(ps));
	fprintf(stderr,
		"CONTEXT PROBE: %s: kernel round trip %.1f us (median of %d) with the primary "
		"context idle, %.1f us beside a running kernel of it%s\n",
		s->kind, idle, LAT_ROUNDS, busy,
		busy > 10 * idle + 100 ? ": TIME-SLICED against the primary context" : "");
	CK(cudaStreamDestroy(ps));
	CK(cudaFree(out));
	CK(cudaFreeHost(ctl));
}

static void context_probe(int green)
{
	struct drv d;
	struct vmm_buf vb;
	struct side s;
	struct model m;
	uint8_t *pattern = malloc(PROBE_BYTES);
	void *legacy = NULL;
	cr_assert_not_null(pattern);
	for (size_t i = 0; i < PROBE_BYTES; i++)
		pattern[i] = (uint8_t)(i * 131u + 7u);

	load_driver(&d);
	CK(cudaSetDevice(0));
	CK(cudaFree(NULL)); /* the primary context exists and is current */
	vmm_alloc(&d, &vb, PROBE_BYTES);
	CK(cudaMemcpy((void *)vb.ptr, pattern, PROBE_BYTES, cudaMemcpyHostToDevice));
	CK(cudaMalloc(&legacy, PROBE_BYTES));
	CK(cudaMemcpy(legacy, pattern, PROBE_BYTES, cudaMemcpyHostToDevice));

	/* The second context: created current, set up, warmed up (kernels load lazily), left. */
	side_create(&d, &s, green);
	CK(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking));
	CK(cudaEventCreateWithFlags(&s.done, cudaEventDisableTiming));
	CK(cudaHostAlloc((void **)&s.pinned, PROBE_BYTES,
			 cudaHostAllocMapped | cudaHostAllocPortable));
	memset(s.pinned, 0, PROBE_BYTES);
	cr_assert_eq(rcmoe_gpu_stage_copy(s.pinned, (const void *)vb.ptr, PROBE_BYTES, s.stream),
		     RCMOE_OK);
	cudaError_t warm = cudaStreamSynchronize(s.stream);
	cr_assert_eq(warm, cudaSuccess,
		     "a kernel of a second context could not read a VMM buffer of the primary "
		     "one: %s",
		     cudaGetErrorString(warm));
	size_t bad = first_mismatch(s.pinned, pattern, PROBE_BYTES);
	cr_assert_eq(bad, (size_t)-1, "second context, VMM buffer: byte %zu differs", bad);
	side_leave(&d);

	/* The same copy while the application's synchronous copy waits for a kernel. */
	memset(s.pinned, 0, PROBE_BYTES);
	model_start(&m, PROBE_SPIN_S);
	double t0 = model_clock_s();
	side_enter(&d, &s);
	rcmoe_status_t st =
		rcmoe_gpu_stage_copy(s.pinned, (const void *)vb.ptr, PROBE_BYTES, s.stream);
	double launch = model_clock_s() - t0;
	cudaError_t e = st == RCMOE_OK ? cudaEventRecord(s.done, s.stream) : cudaErrorLaunchFailure;
	side_leave(&d);
	double call = model_clock_s() - t0;
	int returned_in_call = atomic_load(&m.app.returned);
	cudaError_t q = cudaErrorNotReady;
	while (e == cudaSuccess && model_clock_s() - t0 < PROBE_SPIN_S + 5) {
		side_enter(&d, &s);
		q = cudaEventQuery(s.done);
		side_leave(&d);
		if (q != cudaErrorNotReady)
			break;
		sleep_ms(1);
	}
	double done = model_clock_s() - t0;
	int returned_at_done = atomic_load(&m.app.returned);
	uint32_t state = model_finish(&m);
	cr_assert_eq(e, cudaSuccess, "second context: launch or record failed: %s",
		     cudaGetErrorString(e));
	cr_assert_eq(q, cudaSuccess, "second context: the copy did not complete: %s",
		     cudaGetErrorString(q));
	bad = first_mismatch(s.pinned, pattern, PROBE_BYTES);
	cr_assert_eq(bad, (size_t)-1, "second context beside the copy: byte %zu differs", bad);
	fprintf(stderr,
		"CONTEXT PROBE: %s beside the waiting copy: launch %.3f s, launch + "
		"record %.3f s, done after %.3f s (spin kernel %s): %s\n",
		s.kind, launch, call, done, state == GPU_SPIN_TIMED_OUT ? "timed out" : "released",
		returned_in_call ? "the CALLS BLOCKED until the copy returned"
		: returned_at_done
			? "calls returned at once, the work completed only after the copy"
			: "calls returned at once and the work completed beside the copy");

	latency_probe(&d, &s, (const void *)vb.ptr);

	/* Last, as a fault here is sticky for the second context: cudaMalloc memory. */
	side_enter(&d, &s);
	memset(s.pinned, 0, PROBE_BYTES);
	st = rcmoe_gpu_stage_copy(s.pinned, legacy, PROBE_BYTES, s.stream);
	e = st == RCMOE_OK ? cudaStreamSynchronize(s.stream) : cudaErrorLaunchFailure;
	bad = e == cudaSuccess ? first_mismatch(s.pinned, pattern, PROBE_BYTES) : 0;
	fprintf(stderr,
		"CONTEXT PROBE: cudaMalloc memory of the primary context from the %s: %s%s\n",
		s.kind,
		e != cudaSuccess    ? "not reachable: "
		: bad == (size_t)-1 ? "reachable"
				    : "wrong bytes",
		e != cudaSuccess ? cudaGetErrorString(e) : "");
	side_leave(&d);
	/* Cleanup may report the fault above, which is no failure of the probe; the process (one
	 * per test) ends here anyway. */
	if (!green)
		(void)d.ctx_destroy(s.ctx); /* a green one lives until the process ends */
	(void)cudaGetLastError();
	(void)cudaFree(legacy);
	(void)d.mem_unmap(vb.ptr, vb.size);
	(void)d.addr_free(vb.ptr, vb.size);
	(void)d.mem_release(vb.handle);
	free(pattern);
}

Test(gpu_context, second_context_probe)
{
	context_probe(0);
}

Test(gpu_context, green_context_probe)
{
	context_probe(1);
}
