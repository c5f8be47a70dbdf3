/* SPDX-License-Identifier: Apache-2.0 */
#include <pthread.h>
#include <time.h>

#include "rcmoe/log.h"
#include "cpu_codec.h"

static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t queue_cond = PTHREAD_COND_INITIALIZER;
static struct rcmoe_cpu_job *queue_head, *queue_tail;
static int workers;

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void run_job(struct rcmoe_cpu_job *job)
{
	uint64_t t0 = now_ns();
	job->out_len = 0;
	if (job->kind == RCMOE_JOB_CALL)
		job->status = job->call(job);
	else if (job->kind == RCMOE_JOB_ENCODE)
		job->status = job->encode(&job->cfg, job->in, job->in_len, job->out, job->out_cap,
					  &job->out_len);
	else
		job->status = rcmoe_codec_decode(job->in, job->in_len, job->out, job->out_cap,
						 &job->out_len);
	job->ns = now_ns() - t0;
	/* release: the results above are visible to whoever sees state 2 */
	atomic_store_explicit(&job->state, 2, memory_order_release);
}

static void *worker_main(void *arg)
{
	(void)arg;
	for (;;) {
		pthread_mutex_lock(&queue_lock);
		while (!queue_head)
			pthread_cond_wait(&queue_cond, &queue_lock);
		struct rcmoe_cpu_job *job = queue_head;
		queue_head = job->next;
		if (!queue_head)
			queue_tail = NULL;
		pthread_mutex_unlock(&queue_lock);
		run_job(job);
	}
	return NULL;
}

static pthread_once_t start_once = PTHREAD_ONCE_INIT;
static int start_wanted;
static rcmoe_status_t start_status;

static void start_workers(void)
{
	for (int i = 0; i < start_wanted; i++) {
		pthread_t t;
		pthread_attr_t attr;
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		int err = pthread_create(&t, &attr, worker_main, NULL);
		pthread_attr_destroy(&attr);
		if (err) {
			RCMOE_WARN("cannot start CPU codec worker %d of %d: error %d", i + 1,
				   start_wanted, err);
			start_status = RCMOE_ERR_SYSTEM;
			break;
		}
		workers++;
	}
}

rcmoe_status_t rcmoe_cpu_codec_start(int nthreads)
{
	start_wanted = nthreads;
	pthread_once(&start_once, start_workers);
	return start_status;
}

void rcmoe_cpu_job_submit(struct rcmoe_cpu_job *job)
{
	atomic_store_explicit(&job->state, 1, memory_order_relaxed);
	if (!workers) {
		run_job(job);
		return;
	}
	job->next = NULL;
	pthread_mutex_lock(&queue_lock);
	if (queue_tail)
		queue_tail->next = job;
	else
		queue_head = job;
	queue_tail = job;
	pthread_cond_signal(&queue_cond);
	pthread_mutex_unlock(&queue_lock);
}

void rcmoe_cpu_job_run_here(struct rcmoe_cpu_job *job)
{
	atomic_store_explicit(&job->state, 1, memory_order_relaxed);
	run_job(job);
}

int rcmoe_cpu_job_done(struct rcmoe_cpu_job *job)
{
	return atomic_load_explicit(&job->state, memory_order_acquire) == 2;
}

int rcmoe_cpu_job_busy(struct rcmoe_cpu_job *job)
{
	return atomic_load_explicit(&job->state, memory_order_acquire) == 1;
}
