/* SPDX-License-Identifier: Apache-2.0 */
/* The synchronous-copy deadlock model: see sync_copy_model.h. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gpu_spin.h"
#include "sync_copy_model.h"

void sleep_ms(int ms)
{
	struct timespec t = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
	nanosleep(&t, NULL);
}

double model_clock_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void *model_dev_alloc(size_t bytes)
{
	void *p = NULL;
	CK(cudaMalloc(&p, bytes));
	return p;
}

static void *app_thread(void *arg)
{
	struct app_copy *a = arg;
	cudaError_t e = cudaStreamWaitEvent(cudaStreamLegacy, a->after_spin, 0);
	atomic_store(&a->entered, 1);
	if (e == cudaSuccess)
		e = cudaMemcpy(a->host, a->d_out, a->nwords * sizeof(uint32_t),
			       cudaMemcpyDeviceToHost);
	a->err = e;
	atomic_store(&a->returned, 1);
	return NULL;
}

static uint32_t ctl_load(const struct model *m, int word)
{
	return __atomic_load_n(&m->ctl[word], __ATOMIC_SEQ_CST);
}

static void model_release(struct model *m)
{
	__atomic_store_n(&m->ctl[GPU_SPIN_RELEASE], 1u, __ATOMIC_SEQ_CST);
}

void model_start(struct model *m, double spin_timeout_s)
{
	memset(m, 0, sizeof(*m));
	CK(cudaHostAlloc((void **)&m->ctl, 64, cudaHostAllocMapped | cudaHostAllocPortable));
	void *dev_ctl = NULL;
	CK(cudaHostGetDevicePointer(&dev_ctl, m->ctl, 0));
	cr_assert_eq(dev_ctl, (void *)m->ctl, "mapped memory not at its host address (no UVA?)");
	m->ctl[GPU_SPIN_RELEASE] = 0;
	m->ctl[GPU_SPIN_STATE] = GPU_SPIN_IDLE;
	m->d_out = model_dev_alloc(MODEL_COPY_WORDS * sizeof(uint32_t));
	m->app.d_out = m->d_out;
	m->app.nwords = MODEL_COPY_WORDS;
	m->app.host = malloc(MODEL_COPY_WORDS * sizeof(uint32_t));
	cr_assert_not_null(m->app.host);
	memset(m->app.host, 0, MODEL_COPY_WORDS * sizeof(uint32_t));
	atomic_init(&m->app.entered, 0);
	atomic_init(&m->app.returned, 0);
	CK(cudaStreamCreateWithFlags(&m->nccl_stream, cudaStreamNonBlocking));
	CK(cudaEventCreateWithFlags(&m->app.after_spin, cudaEventDisableTiming));
	CK(cudaDeviceSynchronize());

	CK(gpu_spin_launch(m->ctl, m->d_out, MODEL_COPY_WORDS, spin_timeout_s, m->nccl_stream));
	CK(cudaEventRecord(m->app.after_spin, m->nccl_stream));
	double t0 = model_clock_s();
	while (ctl_load(m, GPU_SPIN_STATE) != GPU_SPIN_RUNNING) {
		if (model_clock_s() - t0 > 10.0) {
			model_release(m);
			cr_assert_fail("the spin kernel did not start within 10 s");
		}
		sleep_ms(1);
	}
	cr_assert_eq(pthread_create(&m->thread, NULL, app_thread, &m->app), 0);
	t0 = model_clock_s();
	while (!atomic_load(&m->app.entered)) {
		if (model_clock_s() - t0 > 10.0) {
			model_release(m);
			cr_assert_fail("the application thread did not reach its copy within 10 s");
		}
		sleep_ms(1);
	}
	sleep_ms(MODEL_SETTLE_MS);
	if (atomic_load(&m->app.returned)) {
		model_release(m);
		cr_assert_fail(
			"the application's copy returned while the spin kernel ran: it did not "
			"wait for the kernel, so nothing is modelled");
	}
}

uint32_t model_finish(struct model *m)
{
	model_release(m);
	double t0 = model_clock_s();
	while (!atomic_load(&m->app.returned)) {
		cr_assert_lt(model_clock_s() - t0, 30.0,
			     "the application's copy had not returned 30 s after the release");
		sleep_ms(1);
	}
	pthread_join(m->thread, NULL);
	cr_assert_eq(m->app.err, cudaSuccess, "the application's copy failed: %s",
		     cudaGetErrorString(m->app.err));
	uint32_t state = ctl_load(m, GPU_SPIN_STATE);
	cr_assert(state == GPU_SPIN_RELEASED || state == GPU_SPIN_TIMED_OUT,
		  "spin kernel state 0x%x after the copy", state);
	for (size_t i = 0; i < MODEL_COPY_WORDS; i++)
		if (m->app.host[i] != state)
			cr_assert_fail(
				"the copy carried 0x%x at word %zu, the kernel wrote 0x%x: it "
				"was not ordered after the kernel",
				m->app.host[i], i, state);
	CK(cudaStreamSynchronize(m->nccl_stream));
	CK(cudaEventDestroy(m->app.after_spin));
	CK(cudaStreamDestroy(m->nccl_stream));
	CK(cudaFree(m->d_out));
	CK(cudaFreeHost(m->ctl));
	free(m->app.host);
	return state;
}
