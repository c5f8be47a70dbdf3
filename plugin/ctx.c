/* SPDX-License-Identifier: Apache-2.0 */
/* Plugin-wide setup: parameters, transport choice, per-communicator contexts, device properties. */
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "rcmoe/log.h"
#include "core.h"
#include "policy.h"
#include "coll/ar_policy.h"

#ifndef RCMOE_VERSION
#define RCMOE_VERSION "unknown"
#endif

static pthread_once_t setup_once = PTHREAD_ONCE_INIT;
static rcmoe_status_t setup_status;
static const struct rcmoe_params *params;
static const struct rcmoe_transport_ops *transport;
static int cuda_buffers;
static int compressing;
static struct rcmoe_ctx default_ctx;
static _Atomic int live_ctxs; /* per-communicator contexts (net v11) not yet finalized */

/* Set one NCCL variable the user has not set; a value of theirs is kept. */
static void set_nccl_default(const char *name, const char *value, const char *why)
{
	const char *user = getenv(name);
	if (user) {
		RCMOE_INFO(NCCL_INIT, "%s=%s set by the user: kept", name, user);
		return;
	}
	if (setenv(name, value, 0) != 0)
		RCMOE_WARN("cannot set %s=%s: %s", name, value, why);
	else
		RCMOE_INFO(NCCL_INIT, "set %s=%s (%s)", name, value, why);
}

/*
 * NCCL moves a send/recv over the network in steps of NCCL_P2P_NET_CHUNKSIZE (128 KiB), with 8
 * steps in flight per peer: every step is one isend, so each costs a proxy round trip and, when
 * compressing, one codec job. Larger steps keep more bytes in flight and amortise that per-step
 * cost. NCCL reads the variable after the net plugin is initialised, once per process; a value
 * the user set (environment or nccl.conf, which NCCL loads into the environment first) is kept.
 * setenv runs once, inside the first init (NCCL's communicator setup); another thread reading
 * the environment at that moment is setenv's usual caveat, accepted here as aws-ofi-nccl
 * accepts it when it sets NCCL defaults.
 */
/*
 * NCCL_NET_GDR_LEVEL: NCCL hands a net plugin device buffers only when the NIC is close enough
 * to the GPU on the PCI tree (PXB by default), a rule for NICs that DMA to GPU memory. Our
 * "NIC" is the GPU itself: the plugin's kernels stage and code the bytes in its own CUDA
 * context (gpu_context.c), whatever the socket's PCI distance, so when it claims GPU buffers
 * it asks NCCL for them at any distance. NCCL reads the level when it computes its paths,
 * after the plugin's init.
 */
static void set_nccl_defaults(void)
{
	if (params->nccl_p2p_chunk > 0) {
		char v[24];
		snprintf(v, sizeof(v), "%lld", (long long)params->nccl_p2p_chunk);
		set_nccl_default("NCCL_P2P_NET_CHUNKSIZE", v,
				 "RCMOE_NCCL_P2P_CHUNKSIZE; 0 leaves NCCL's 128 KiB");
	}
	if (cuda_buffers)
		set_nccl_default("NCCL_NET_GDR_LEVEL", "SYS",
				 "GPU buffers claimed: wanted at any PCI distance");
}

/*
 * NCCL_COLLNET_ENABLE: NCCL leaves collNet, and so the compressed all-reduce, off unless it is 1.
 * NCCL 2.28.9 reads it when a communicator is created (init.cc:1734-1741, from parseCommConfig
 * at :1998), before that communicator loads and initialises the net plugin (commAlloc, :421),
 * and reads it with getenv each time (env_v1.cc:31-33). So a value set here reaches
 * the communicators created after this first init (split ones, later process groups), never the
 * one being created: rcmoe-run sets it in the job's environment, which reaches them all.
 */
static void set_collnet_enable(const struct rcmoe_ar_settings *ar)
{
	if (ar->codec == RCMOE_AR_LOSSLESS)
		return;
	const char *user = getenv("NCCL_COLLNET_ENABLE");
	if (user) {
		/* NCCL's reading: strtol base 0, and anything but 0 or 1 counts as 0. */
		if (strtol(user, NULL, 0) == 1)
			RCMOE_INFO(NCCL_INIT, "NCCL_COLLNET_ENABLE=%s set by the user: kept", user);
		else
			RCMOE_WARN(
				"NCCL_COLLNET_ENABLE=%s keeps NCCL's collNet off: all-reduce will "
				"not be compressed although RCMOE_AR_* asks for it (unset it, or "
				"set it to 1)",
				user);
		return;
	}
	if (setenv("NCCL_COLLNET_ENABLE", "1", 0) != 0) {
		RCMOE_WARN("cannot set NCCL_COLLNET_ENABLE=1: all-reduce will not be compressed; "
			   "set it in the job's environment (or run it through rcmoe-run)");
		return;
	}
	RCMOE_INFO(NCCL_INIT, "set NCCL_COLLNET_ENABLE=1 (all-reduce compression requested)");
	RCMOE_WARN("NCCL_COLLNET_ENABLE was unset: the plugin set it to 1, which reaches only "
		   "communicators created from now on (NCCL read it for this one before loading "
		   "the plugin); run the job through rcmoe-run or set NCCL_COLLNET_ENABLE=1 in "
		   "its environment");
}

/*
 * GPU buffers, or host buffers? The plugin's GPU work runs in a CUDA context of its own
 * (gpu_context.c: the primary one can deadlock). Without MPS the GPU takes turns between
 * contexts while NCCL's kernel runs for the whole collective: measured on the H100, each
 * operation of the plugin then waits 2.4 ms for its turn (10 us with MPS), and a 4-rank
 * all-to-all ran at 0.3 GB/s. So `auto` claims GPU buffers only under MPS, and only when
 * compressing: lossless, host buffers cost nothing to stage (NCCL's kernels write into pinned
 * host memory the transport sends from) and measured faster (4 ranks, all-reduce 2.0-2.2x
 * Socket against 1.7x with GPU buffers).
 */
static rcmoe_status_t choose_buffers(void)
{
	int gpu = rcmoe_gpu_available();
	switch (params->cuda_buffers) {
	case RCMOE_CUDA_BUFFERS_ON:
		if (!gpu) {
			RCMOE_WARN(
				"RCMOE_CUDA_BUFFERS=on, but no CUDA device is visible (auto or off "
				"use host buffers)");
			return RCMOE_ERR_USAGE;
		}
		cuda_buffers = 1;
		if (rcmoe_policy_dedup())
			RCMOE_WARN(
				"RCMOE_A2A_DEDUP=on has no effect with RCMOE_CUDA_BUFFERS=on: "
				"dedup runs on host buffers only for now (RCMOE_CUDA_BUFFERS=auto "
				"keeps host buffers with dedup on)");
		if (!rcmoe_gpu_mps_enabled())
			RCMOE_INFO(NCCL_INIT | NCCL_NET,
				   "RCMOE_CUDA_BUFFERS=on without MPS: the plugin's CUDA context "
				   "takes turns with NCCL's kernels (milliseconds per operation)");
		break;
	case RCMOE_CUDA_BUFFERS_AUTO: {
		/* Compressing all-reduce (the collective side codes device buffers on the GPU,
		 * plugin/coll/ar_gpu.c) counts as much as compressing p2p sends. setup() checked
		 * the settings already: this reading cannot fail or warn. */
		struct rcmoe_ar_settings ar;
		int coding =
			compressing || (rcmoe_ar_settings_from_params(params, &ar) == RCMOE_OK &&
					ar.codec != RCMOE_AR_LOSSLESS);
		/* Dedup runs on host buffers only (plugin/a2a_dedup.h): asked for, it decides. */
		cuda_buffers = gpu && coding && rcmoe_gpu_mps_enabled() && !rcmoe_policy_dedup();
		if (gpu && coding && rcmoe_policy_dedup())
			RCMOE_INFO(
				NCCL_INIT | NCCL_NET,
				"host buffers (CPU codec): RCMOE_A2A_DEDUP=on runs on host buffers "
				"only for now");
		else if (gpu && coding && !cuda_buffers)
			RCMOE_INFO(
				NCCL_INIT | NCCL_NET,
				"host buffers (CPU codec): MPS is off, and without it the "
				"plugin's CUDA context would take turns with NCCL's kernels; start "
				"MPS, or set RCMOE_CUDA_BUFFERS=on, for the GPU codec");
		break;
	}
	default: cuda_buffers = 0;
	}
	return RCMOE_OK;
}

static void setup(void)
{
	/* The parameters, then the settings that only make sense together (the stats file's
	 * name and format): either one refused is the same usage error. */
	setup_status = rcmoe_params_load(&params);
	if (setup_status == RCMOE_OK)
		setup_status = rcmoe_stats_setup(params->stats_file, (int)params->stats_format);
	struct rcmoe_ar_settings
		ar; /* the collective side's, checked here so a bad one fails init */
	if (setup_status == RCMOE_OK)
		setup_status = rcmoe_ar_settings_from_params(params, &ar);
	if (setup_status != RCMOE_OK) {
		RCMOE_WARN("invalid RCMOE_* settings (see the warnings above); refusing to start");
		return;
	}
	setup_status = rcmoe_transport_select(params, &transport); /* plugin/transport/registry.c */
	if (setup_status != RCMOE_OK) {
		RCMOE_WARN("transport %s failed to start: %s", transport ? transport->name : "?",
			   rcmoe_status_str(setup_status));
		return;
	}
	compressing = rcmoe_policy_setup(params);
	setup_status = choose_buffers();
	if (setup_status != RCMOE_OK)
		return;
	set_nccl_defaults();
	set_collnet_enable(&ar);
	if (compressing) {
		setup_status = rcmoe_cpu_codec_start((int)params->cpu_codec_threads);
		if (setup_status != RCMOE_OK)
			return;
	}
	char codecs[256], ar_codec[128];
	rcmoe_policy_describe(params, codecs, sizeof(codecs));
	rcmoe_ar_describe(&ar, ar_codec, sizeof(ar_codec));
	RCMOE_INFO(NCCL_INIT | NCCL_NET,
		   "rcmoe %s: net ABI v11+v10, collNet v11+v10, profiler v5, tuner v5; "
		   "transport %s; GPU buffers %s; codecs %s; %s (with NCCL_COLLNET_ENABLE=1)",
		   RCMOE_VERSION, transport->name, cuda_buffers ? "claimed" : "not claimed", codecs,
		   ar_codec);
}

const struct rcmoe_transport_ops *rcmoe_core_transport(void)
{
	return transport;
}

const struct rcmoe_params *rcmoe_core_params(void)
{
	return params;
}

int rcmoe_core_props_cuda(void)
{
	return cuda_buffers;
}

int rcmoe_core_compressing(void)
{
	return compressing;
}

struct rcmoe_ctx *rcmoe_core_default_ctx(void)
{
	return &default_ctx;
}

rcmoe_status_t rcmoe_core_init(struct rcmoe_ctx **out, uint64_t comm_id, ncclDebugLogger_t logger,
			       ncclProfilerCallback_t prof)
{
	rcmoe_log_set(logger);
	pthread_once(&setup_once, setup);
	if (setup_status != RCMOE_OK)
		return setup_status;
	struct rcmoe_ctx *ctx = out ? calloc(1, sizeof(*ctx)) : &default_ctx;
	if (!ctx)
		return RCMOE_ERR_NOMEM;
	if (out)
		atomic_fetch_add(&live_ctxs, 1);
	ctx->comm_id = comm_id;
	ctx->prof = prof;
	clock_gettime(CLOCK_MONOTONIC, &ctx->last_dump);
	if (out)
		*out = ctx;
	return RCMOE_OK;
}

rcmoe_status_t rcmoe_core_finalize(struct rcmoe_ctx *ctx)
{
	if (!ctx) /* NCCL calls finalize after a failed init too */
		return RCMOE_OK;
	rcmoe_stats_log(&ctx->stats, ctx->comm_id);
	int last = ctx != &default_ctx && atomic_fetch_sub(&live_ctxs, 1) == 1;
	/* The record is queued for the stats writer thread; a file that cannot be written is a
	 * WARN from there, not a failure of the communicator's teardown. The last communicator
	 * waits (bounded) for the file: a process often exits right after destroying it, and an
	 * exit that skips destructors (_exit, a signal) would lose what is still queued. */
	if (params && params->stats_file[0]) {
		(void)rcmoe_stats_write(&ctx->stats, ctx->comm_id, params->stats_file, "finalize");
		if (last)
			(void)rcmoe_stats_flush(RCMOE_STATS_FLUSH_MS);
	}
	if (ctx != &default_ctx)
		free(ctx);
	return RCMOE_OK;
}

rcmoe_status_t rcmoe_core_devices(int *ndev)
{
	pthread_once(&setup_once, setup);
	if (setup_status != RCMOE_OK)
		return setup_status;
	return transport->device_count(ndev);
}

rcmoe_status_t rcmoe_core_properties(int dev, struct rcmoe_props *props)
{
	/* Names must outlive the call (NCCL keeps the pointers): one record per device, however
	 * many the transport has (its count is fixed once it started), filled once under a lock
	 * since several communicators may ask at the same time; kept until the process ends. */
	static struct rcmoe_device_info *infos;
	static int *filled;
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	struct rcmoe_device_info *info = NULL;
	rcmoe_status_t st = RCMOE_OK;
	int ndev;
	RCMOE_CHECK(rcmoe_core_devices(&ndev));
	if (dev < 0 || dev >= ndev)
		return RCMOE_ERR_INVALID;
	pthread_mutex_lock(&lock);
	if (!infos) {
		infos = calloc((size_t)ndev, sizeof(*infos));
		filled = calloc((size_t)ndev, sizeof(*filled));
		if (!infos || !filled) {
			free(infos);
			free(filled);
			infos = NULL;
			filled = NULL;
			st = RCMOE_ERR_NOMEM;
		}
	}
	if (st == RCMOE_OK) {
		info = &infos[dev];
		if (!filled[dev]) {
			st = transport->device_info(dev, info);
			filled[dev] = st == RCMOE_OK;
		}
	}
	pthread_mutex_unlock(&lock);
	RCMOE_CHECK(st);
	memset(props, 0, sizeof(*props));
	props->name = info->name;
	props->pci_path = info->pci_path[0] ? info->pci_path : NULL;
	props->guid = info->guid;
	props->ptr_support = NCCL_PTR_HOST | (cuda_buffers ? NCCL_PTR_CUDA : 0);
	props->speed = info->speed_mbps;
	props->latency = info->latency_us;
	props->max_p2p_bytes = RCMOE_MAX_P2P_BYTES;
	return RCMOE_OK;
}

void rcmoe_core_set_attr(struct rcmoe_ctx *ctx, const ncclNetAttr_v11_t *attr)
{
	if (ctx && attr)
		atomic_store_explicit(&ctx->attr_op, attr->op, memory_order_relaxed);
}
