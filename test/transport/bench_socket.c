/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Loopback throughput of the socket transport, a manual measurement (not a test):
 *   RCMOE_SOCKET_NSTREAMS=8 RCMOE_SOCKET_NTHREADS=4 bench_socket [size [iters [window]]]
 * size in bytes, with an optional K or M suffix (default 64M).
 * One send comm and one receive comm in this process over 127.0.0.1 (RCMOE_SOCKET_IFNAME
 * defaults to lo here); `window` messages in flight at once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rcmoe/log.h"
#include "rcmoe/transport.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const char *bench_getenv(const char *name)
{
	const char *v = getenv(name);
	if (!v && !strcmp(name, "RCMOE_SOCKET_IFNAME"))
		return "lo";
	return v;
}

static rcmoe_status_t place(void *arg, size_t len, uint32_t flags, void **dest,
			    struct rcmoe_tmr **mr)
{
	*dest = arg;
	return RCMOE_OK;
}

#define TRY(call)                                                                                  \
	do {                                                                                       \
		rcmoe_status_t st_ = (call);                                                       \
		if (st_ != RCMOE_OK) {                                                             \
			fprintf(stderr, "%s: %s\n", #call, rcmoe_status_str(st_));                 \
			return 1;                                                                  \
		}                                                                                  \
	} while (0)

int main(int argc, char **argv)
{
	const struct rcmoe_transport_ops *ops = &rcmoe_socket_ops;
	char *end = NULL;
	size_t size = argc > 1 ? strtoull(argv[1], &end, 0) : 64ull << 20;
	if (end && (*end == 'K' || *end == 'k'))
		size <<= 10;
	else if (end && (*end == 'M' || *end == 'm'))
		size <<= 20;
	int iters = argc > 2 ? atoi(argv[2]) : 20;
	int window = argc > 3 ? atoi(argv[3]) : 2;
	struct rcmoe_params params;
	uint8_t handle[128];
	struct rcmoe_tlisten *l;
	struct rcmoe_tsend *s = NULL;
	struct rcmoe_trecv *r = NULL;

	rcmoe_log_set(rcmoe_log_stderr);
	TRY(rcmoe_params_parse(&params, bench_getenv, 0));
	TRY(ops->init(&params));
	TRY(ops->listen(0, handle, &l));
	while (!s || !r) {
		if (!s)
			TRY(ops->connect(0, handle, &s));
		if (!r)
			TRY(ops->accept(l, &r));
	}
	uint8_t *src = malloc(size + 1), *dst = malloc(size * (size_t)window + 1);
	if (!src || !dst)
		return 1;
	memset(src, 1, size);
	memset(dst, 0, size * (size_t)window);

	struct rcmoe_treq *sr[64], *rr[64];
	double t0 = 0;
	int total = iters + 2; /* two warm-up messages */
	int posted = 0, finished = 0;
	while (finished < total) {
		while (posted < total && posted - finished < window) {
			int slot = posted % window;
			sr[slot] = rr[slot] = NULL;
			while (!rr[slot])
				TRY(ops->irecv(r, size, 0, place, dst + (size_t)slot * size,
					       &rr[slot]));
			while (!sr[slot])
				TRY(ops->isend(s, src, size, NULL, 0, 0, &sr[slot]));
			posted++;
		}
		int slot = finished % window, sd = 0, rd = 0;
		while (!sd || !rd) {
			if (!sd)
				TRY(ops->test(sr[slot], &sd, NULL, NULL));
			if (!rd)
				TRY(ops->test(rr[slot], &rd, NULL, NULL));
		}
		if (++finished == 2)
			t0 = now();
	}
	double dt = now() - t0;
	printf("socket loopback: %zu bytes x %d, %lld streams, %lld threads, window %d: "
	       "%.2f GB/s, %.1f us per message\n",
	       size, iters, (long long)params.socket_nstreams, (long long)params.socket_nthreads,
	       window, (double)size * iters / dt / 1e9, dt / iters * 1e6);
	ops->close_send(s);
	ops->close_recv(r);
	ops->close_listen(l);
	free(src);
	free(dst);
	return 0;
}
