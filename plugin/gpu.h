/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The CUDA the core needs, behind plain C types so that the core builds without CUDA too.
 * Only non-blocking calls on the plugin's own streams are used on the data path: anything that
 * waits for the device (or the legacy default stream) could wait for NCCL's running kernels,
 * which wait for the proxy thread that is calling us.
 */
#ifndef RCMOE_GPU_H
#define RCMOE_GPU_H

#include <stddef.h>
#include "rcmoe/status.h"

struct rcmoe_gpu_stream {
	void *handle; /* cudaStream_t, NULL if none */
};

struct rcmoe_gpu_event {
	void *handle; /* cudaEvent_t, NULL if none */
};

/* 1 when this build has CUDA and a device is visible. */
int rcmoe_gpu_available(void);
/* 1 when the current device's contexts are shared through MPS (their kernels then run beside
 * each other instead of taking turns). */
int rcmoe_gpu_mps_enabled(void);

rcmoe_status_t rcmoe_gpu_stream_create(struct rcmoe_gpu_stream *s);
void rcmoe_gpu_stream_destroy(struct rcmoe_gpu_stream *s);
rcmoe_status_t rcmoe_gpu_event_create(struct rcmoe_gpu_event *e);
void rcmoe_gpu_event_destroy(struct rcmoe_gpu_event *e);

rcmoe_status_t rcmoe_gpu_host_alloc(void **ptr, size_t size);
void rcmoe_gpu_host_free(void *ptr);
/* Device scratch for the codecs, allocated with the comm (never on the data path). */
rcmoe_status_t rcmoe_gpu_dev_alloc(void **ptr, size_t size);
void rcmoe_gpu_dev_free(void *ptr);

/* Data path: asynchronous on `s`, then record `e`; rcmoe_gpu_poll never blocks. */
rcmoe_status_t rcmoe_gpu_copy_d2h(void *dst, const void *src, size_t n, struct rcmoe_gpu_stream *s);
rcmoe_status_t rcmoe_gpu_copy_h2d(void *dst, const void *src, size_t n, struct rcmoe_gpu_stream *s);
rcmoe_status_t rcmoe_gpu_record(struct rcmoe_gpu_event *e, struct rcmoe_gpu_stream *s);
rcmoe_status_t rcmoe_gpu_poll(struct rcmoe_gpu_event *e, int *done);

/* The plugin's own CUDA context (gpu_context.c): all of its CUDA work runs there, never in the
 * primary context the application's synchronous copies can hold (see that file). */
struct rcmoe_gpu_scope {
	int pushed;  /* our context is pushed on this thread */
	int capture; /* the thread's capture mode before, or -1 */
};
/* Note the calling thread's current device in *dev and make sure it has the plugin's context
 * (created and warmed up on first use: connect time, never the data path). */
rcmoe_status_t rcmoe_gpu_context_bind(int *dev);
/* Make the plugin's context of `dev` current on this thread, and the thread's stream capture
 * mode relaxed (a job capturing a CUDA graph in global mode on another thread must not get our
 * stream work refused), until rcmoe_gpu_leave. Every CUDA call of the plugin runs between the
 * two. After a failed enter, leave is still called and does nothing. */
rcmoe_status_t rcmoe_gpu_enter(int dev, struct rcmoe_gpu_scope *s);
void rcmoe_gpu_leave(struct rcmoe_gpu_scope *s);

/* For the warning on a GPU this build has no kernel code for (made when the plugin's context is
 * warmed up): `archs` is meson's gpu_arch list ("80,90": machine code for each, PTX of the
 * first). Writes what the build carries to `built` ("sm_80, sm_90 and PTX compute_80") and a
 * gpu_arch list that adds the device's compute capability major.minor to `fix` ("70,80,90";
 * an older device goes first, so that it gets the PTX). Both are always terminated. */
void rcmoe_gpu_arch_advice(const char *archs, int major, int minor, char *built, size_t built_len,
			   char *fix, size_t fix_len);

#endif
