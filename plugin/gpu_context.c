/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The plugin's own CUDA context, one per device, inside which all of its CUDA work runs.
 *
 * Why not the primary context NCCL and the application use: while any thread of the process is
 * in a synchronous pageable copy waiting for a kernel (tensor.cpu(), .item()), the driver makes
 * every enqueueing call in that context wait until the copy returns. The copy waits for NCCL's
 * kernel, which waits for the proxy thread calling us: a deadlock if we enqueue there
 * (test_gpu_net's deadlock_model_check). Measured on the H100 (test_gpu_context): a context of
 * our own is not held by that copy, and its kernels reach NCCL's buffers (cuMem-mapped, and
 * cudaMalloc'd ones too) on the same device through the process's unified address space.
 *
 * Driver calls come through cudart (cudaGetDriverEntryPointByVersion), so the plugin links no
 * libcuda of its own. A context lives until the process ends, like the primary context.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rcmoe/codec.h"
#include "rcmoe/log.h"
#include "core.h"

/* Append to buf (len bytes, *used of them taken), truncating and always terminated. */
static void __attribute__((format(printf, 4, 5)))
append(char *buf, size_t len, size_t *used, const char *fmt, ...)
{
	va_list ap;
	if (*used + 1 >= len)
		return;
	va_start(ap, fmt);
	int k = vsnprintf(buf + *used, len - *used, fmt, ap);
	va_end(ap);
	if (k > 0)
		*used = *used + (size_t)k < len ? *used + (size_t)k : len - 1;
}

void rcmoe_gpu_arch_advice(const char *archs, int major, int minor, char *built, size_t built_len,
			   char *fix, size_t fix_len)
{
	int dev_arch = major * 10 + minor, first = -1;
	size_t b = 0, f = 0;
	char first_name[16] = "";

	built[0] = 0;
	fix[0] = 0;
	for (const char *s = archs; *s;) {
		size_t n = strcspn(s, ",");
		char name[16];
		int k = snprintf(name, sizeof(name), "%.*s", (int)n, s);
		s += n + (s[n] == ',');
		if (k <= 0 || (size_t)k >= sizeof(name))
			continue;
		if (first < 0) {
			first = atoi(name);
			snprintf(first_name, sizeof(first_name), "%s", name);
			/* A device older than the first one goes first: it gets the PTX. */
			if (dev_arch < first)
				append(fix, fix_len, &f, "%d,", dev_arch);
		}
		append(built, built_len, &b, "%ssm_%s", b ? ", " : "", name);
		append(fix, fix_len, &f, "%s,", name);
	}
	if (first < 0) {
		snprintf(built, built_len, "no GPU architecture");
		snprintf(fix, fix_len, "%d", dev_arch);
		return;
	}
	append(built, built_len, &b, " and PTX compute_%s", first_name);
	if (dev_arch >= first)
		append(fix, fix_len, &f, "%d", dev_arch);
	else if (f > 0 && fix[f - 1] == ',')
		fix[f - 1] = 0;
}

#ifdef RCMOE_HAVE_CUDA
#include <cuda.h>
#include <cuda_runtime_api.h>

#include "rcmoe/kernels.h"

#define MAX_DEVICES 64

struct driver {
	CUresult (*ctx_create)(CUcontext *, unsigned int, CUdevice);
	CUresult (*ctx_destroy)(CUcontext);
	CUresult (*ctx_push)(CUcontext);
	CUresult (*ctx_pop)(CUcontext *);
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct driver drv;
static int drv_loaded;
static CUcontext contexts[MAX_DEVICES];

/* A job may be capturing a CUDA graph in global mode on another thread; our own stream work
 * must not be refused for that, so the thread switches to relaxed mode and back. */
static int capture_relax(void)
{
	enum cudaStreamCaptureMode m = cudaStreamCaptureModeRelaxed;
	if (cudaThreadExchangeStreamCaptureMode(&m) != cudaSuccess) {
		(void)cudaGetLastError();
		return -1;
	}
	return (int)m;
}

static void capture_restore(int saved)
{
	if (saved < 0)
		return;
	enum cudaStreamCaptureMode m = (enum cudaStreamCaptureMode)saved;
	cudaThreadExchangeStreamCaptureMode(&m);
}

static rcmoe_status_t entry(const char *name, int version, void **fn)
{
	enum cudaDriverEntryPointQueryResult q;
	cudaError_t e = cudaGetDriverEntryPointByVersion(name, fn, (unsigned)version,
							 cudaEnableDefault, &q);
	if (e != cudaSuccess || q != cudaDriverEntryPointSuccess || !*fn) {
		(void)cudaGetLastError();
		RCMOE_WARN("CUDA driver entry point %s (version %d) unavailable: %s, query %d",
			   name, version, cudaGetErrorString(e), (int)q);
		return RCMOE_ERR_CUDA;
	}
	return RCMOE_OK;
}

static rcmoe_status_t load_driver(void)
{
	if (drv_loaded)
		return RCMOE_OK;
	RCMOE_CHECK(entry("cuCtxCreate", 3020, (void **)&drv.ctx_create));
	RCMOE_CHECK(entry("cuCtxDestroy", 4000, (void **)&drv.ctx_destroy));
	RCMOE_CHECK(entry("cuCtxPushCurrent", 4000, (void **)&drv.ctx_push));
	RCMOE_CHECK(entry("cuCtxPopCurrent", 4000, (void **)&drv.ctx_pop));
	drv_loaded = 1;
	return RCMOE_OK;
}

#ifndef RCMOE_GPU_ARCHS
#define RCMOE_GPU_ARCHS "" /* meson passes gpu_arch (meson.build) */
#endif

/*
 * After a failed warm-up: when its error means that this build has no kernel code the device
 * can run (the kernels were built for other architectures, or only as PTX newer than the
 * driver), say so, which device, which architectures the build has and how to fix it, and
 * return 1; 0 for any other error.
 */
static int explain_no_kernel_image(int dev, cudaError_t e)
{
	if (e != cudaErrorNoKernelImageForDevice && e != cudaErrorInvalidDeviceFunction &&
	    e != cudaErrorUnsupportedPtxVersion)
		return 0;
	int major = 0, minor = 0;
	struct cudaDeviceProp prop;
	const char *name = "?";
	if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
	    cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess)
		(void)cudaGetLastError();
	if (cudaGetDeviceProperties(&prop, dev) == cudaSuccess)
		name = prop.name;
	else
		(void)cudaGetLastError();
	char built[256], fix[128];
	rcmoe_gpu_arch_advice(RCMOE_GPU_ARCHS, major, minor, built, sizeof(built), fix,
			      sizeof(fix));
	RCMOE_WARN("this build of the plugin has no GPU code for device %d (%s, compute capability "
		   "%d.%d): it was built for %s (%s%s). Rebuild it for this GPU (meson setup "
		   "-Dgpu_arch=%s), or set RCMOE_CUDA_BUFFERS=off to keep the plugin on host "
		   "buffers and the CPU codec",
		   dev, name, major, minor, built, cudaGetErrorName(e),
		   e == cudaErrorUnsupportedPtxVersion ? ": the driver is older than the PTX" : "",
		   fix);
	return 1;
}

/* CUDA loads kernels into a context on their first launch. Launch each of ours once here, at
 * connect time and synchronised on our own stream, so that no module load happens on the
 * data path; the decode of each encoded stream also shows the context works end to end. The
 * first launch (the staging copy, whose launcher leaves its error to be read) is also where a
 * build without code for this GPU shows: that is refused with a warning that says so. */
static rcmoe_status_t warm_up(int device)
{
	static const int dtypes[] = { RCMOE_DT_BF16, RCMOE_DT_FP16, RCMOE_DT_FP32 };
	static const int bits[] = { 2, 4, 8 };
	enum { N = 1000 }; /* several blocks and a partial one, for any block size */
	rcmoe_status_t st = RCMOE_OK;
	cudaStream_t stream = NULL;
	void *dev = NULL, *work = NULL;
	uint8_t *host = NULL;
	/* room for any stream of N elements: raw fp32 blocks plus headers */
	size_t cap = 8 * N + 4096, work_bytes = 1u << 20;

	if (cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) != cudaSuccess ||
	    cudaMalloc(&dev, 4 * N) != cudaSuccess ||
	    cudaMalloc(&work, work_bytes) != cudaSuccess ||
	    cudaHostAlloc((void **)&host, cap, cudaHostAllocMapped | cudaHostAllocPortable) !=
		    cudaSuccess) {
		/* peek: the error is read (and classified) again below */
		RCMOE_WARN("warm-up of the plugin's CUDA context: allocation failed: %s",
			   cudaGetErrorString(cudaPeekAtLastError()));
		st = RCMOE_ERR_CUDA;
		goto free_all;
	}
	for (size_t i = 0; i < 4 * N; i++)
		host[i] = (uint8_t)(i * 37u + 11u); /* finite in every float type */
	RCMOE_CHECK_GOTO(rcmoe_gpu_stage_copy(dev, host, 4 * N, stream), st, free_all);
	for (size_t d = 0; d < sizeof(dtypes) / sizeof(dtypes[0]); d++) {
		for (size_t b = 0; b < sizeof(bits) / sizeof(bits[0]); b++) {
			struct rcmoe_lsq_cfg cfg = { .dtype = dtypes[d], .bits = bits[b] };
			struct rcmoe_wire_header hdr;
			cfg.block = (uint32_t)rcmoe_core_params()->lsq_block;
			if (rcmoe_lsq_bound(N, &cfg) > cap ||
			    rcmoe_gpu_lsq_work_bytes(N, &cfg) > work_bytes) {
				st = RCMOE_ERR_INTERNAL;
				goto free_all;
			}
			RCMOE_CHECK_GOTO(rcmoe_gpu_lsq_encode(dev, N, &cfg, host, cap, work,
							      work_bytes, stream),
					 st, free_all);
			if (cudaStreamSynchronize(stream) != cudaSuccess) {
				st = RCMOE_ERR_CUDA;
				goto free_all;
			}
			RCMOE_CHECK_GOTO(rcmoe_codec_validate(
						 host, cap, N * rcmoe_dtype_size(cfg.dtype), &hdr),
					 st, free_all);
			RCMOE_CHECK_GOTO(
				rcmoe_gpu_decode(host, &hdr, dev, 4 * N, work, work_bytes, stream),
				st, free_all);
		}
	}
	/* The collective side's kernels (plugin/coll/ar_gpu.c): PTS encode and accumulation, the
	 * rank-order sum, the fill that clears NCCL's staging. */
	for (size_t d = 0; d < sizeof(dtypes) / sizeof(dtypes[0]); d++) {
		struct rcmoe_pts_cfg cfg = { .dtype = dtypes[d], .density = 0.1 };
		struct rcmoe_wire_header hdr;
		const void *srcs[2] = { dev, dev };
		const void *payload = host;
		if (rcmoe_pts_bound(N, &cfg) > cap ||
		    rcmoe_gpu_pts_work_bytes(N, &cfg) > work_bytes) {
			st = RCMOE_ERR_INTERNAL;
			goto free_all;
		}
		RCMOE_CHECK_GOTO(
			rcmoe_gpu_pts_encode(dev, N, &cfg, host, cap, work, work_bytes, stream), st,
			free_all);
		if (cudaStreamSynchronize(stream) != cudaSuccess) {
			st = RCMOE_ERR_CUDA;
			goto free_all;
		}
		RCMOE_CHECK_GOTO(
			rcmoe_codec_validate(host, cap, N * rcmoe_dtype_size(cfg.dtype), &hdr), st,
			free_all);
		if (rcmoe_gpu_pts_accumulate_work_bytes(&hdr, 1) > work_bytes) {
			st = RCMOE_ERR_INTERNAL;
			goto free_all;
		}
		RCMOE_CHECK_GOTO(rcmoe_gpu_pts_accumulate(&payload, &hdr, 1, cfg.dtype, dev, N,
							  work, work_bytes, stream),
				 st, free_all);
		RCMOE_CHECK_GOTO(rcmoe_gpu_rank_sum(cfg.dtype, srcs, 2, dev, N, stream), st,
				 free_all);
		if (cudaStreamSynchronize(stream) != cudaSuccess) {
			st = RCMOE_ERR_CUDA;
			goto free_all;
		}
	}
	RCMOE_CHECK_GOTO(rcmoe_gpu_fill(dev, 0, 4 * N, stream), st, free_all);
	if (cudaStreamSynchronize(stream) != cudaSuccess)
		st = RCMOE_ERR_CUDA;
free_all:
	if (st != RCMOE_OK) {
		cudaError_t e = cudaGetLastError();
		if (explain_no_kernel_image(device, e))
			st = RCMOE_ERR_UNSUPPORTED;
		else
			RCMOE_WARN("warm-up of the plugin's CUDA context failed (%s): %s",
				   rcmoe_status_str(st), cudaGetErrorString(e));
	}
	if (host)
		cudaFreeHost(host);
	if (work)
		cudaFree(work);
	if (dev)
		cudaFree(dev);
	if (stream)
		cudaStreamDestroy(stream);
	return st;
}

static rcmoe_status_t create(int dev)
{
	CUcontext ctx = NULL, popped;
	CUresult r = drv.ctx_create(&ctx, CU_CTX_SCHED_AUTO, (CUdevice)dev);
	if (r != CUDA_SUCCESS) {
		RCMOE_WARN("cannot create the plugin's CUDA context on device %d (CUresult %d); "
			   "GPU buffers need it: set RCMOE_CUDA_BUFFERS=off to use host buffers",
			   dev, (int)r);
		return RCMOE_ERR_CUDA;
	}
	/* cuCtxCreate made it current: warm it up there, then give the thread its context back. */
	int saved = capture_relax();
	rcmoe_status_t st = warm_up(dev);
	capture_restore(saved);
	drv.ctx_pop(&popped);
	if (st != RCMOE_OK) {
		drv.ctx_destroy(ctx); /* a later bind tries again with a new one */
		return st;
	}
	contexts[dev] = ctx;
	RCMOE_INFO(NCCL_INIT | NCCL_NET, "created the plugin's CUDA context on device %d", dev);
	return RCMOE_OK;
}

rcmoe_status_t rcmoe_gpu_context_bind(int *dev)
{
	rcmoe_status_t st = RCMOE_OK;
	int d = -1;
	if (cudaGetDevice(&d) != cudaSuccess || d < 0 || d >= MAX_DEVICES) {
		(void)cudaGetLastError();
		RCMOE_WARN("no usable current CUDA device (%d) on the thread connecting", d);
		return RCMOE_ERR_CUDA;
	}
	pthread_mutex_lock(&lock);
	st = load_driver();
	if (st == RCMOE_OK && !contexts[d])
		st = create(d);
	pthread_mutex_unlock(&lock);
	*dev = d;
	return st;
}

rcmoe_status_t rcmoe_gpu_enter(int dev, struct rcmoe_gpu_scope *s)
{
	s->pushed = 0;
	s->capture = -1;
	if (dev < 0 || dev >= MAX_DEVICES || !contexts[dev]) {
		RCMOE_WARN("GPU work for device %d, which has no plugin context", dev);
		return RCMOE_ERR_INTERNAL;
	}
	CUresult r = drv.ctx_push(contexts[dev]);
	if (r != CUDA_SUCCESS) {
		RCMOE_WARN("cannot make the plugin's CUDA context current (CUresult %d)", (int)r);
		return RCMOE_ERR_CUDA;
	}
	s->pushed = 1;
	s->capture = capture_relax();
	return RCMOE_OK;
}

void rcmoe_gpu_leave(struct rcmoe_gpu_scope *s)
{
	CUcontext popped;
	capture_restore(s->capture);
	s->capture = -1;
	if (s->pushed)
		drv.ctx_pop(&popped);
	s->pushed = 0;
}

#else /* no CUDA in this build */

rcmoe_status_t rcmoe_gpu_context_bind(int *dev)
{
	*dev = -1;
	return RCMOE_ERR_UNSUPPORTED;
}

rcmoe_status_t rcmoe_gpu_enter(int dev, struct rcmoe_gpu_scope *s)
{
	(void)dev;
	s->pushed = 0;
	s->capture = -1;
	return RCMOE_ERR_UNSUPPORTED;
}

void rcmoe_gpu_leave(struct rcmoe_gpu_scope *s)
{
	s->pushed = 0;
}

#endif
