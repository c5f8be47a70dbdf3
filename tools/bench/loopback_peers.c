/* SPDX-License-Identifier: Apache-2.0 */
/*
 * --loopback-peers P1,P2,...: how the net side scales with the number of peers, on one machine
 * and without a GPU. For each P, P send comms connect to one listen comm of the plugin in this
 * process and P receive comms accept them, as a rank with P peers has them; then --loopback-bytes
 * move in messages of -b bytes, the same number on every connection, up to --inflight per
 * connection, all connections at once, completed by polling test as NCCL's proxy does. Reported
 * per P: the aggregate GB/s, its ratio to the smallest P, and the threads and open files of the
 * process (the socket transport's workers are a pool bounded by RCMOE_SOCKET_WORKERS, whatever
 * the number of connections). Loopback is bound by the CPU, not a link: the figures say whether
 * the transport's overhead grows with the peers, not what a network would carry.
 */
#include "rcmoe/nccl_abi.h"
#include "bench.h"

#include <dirent.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LP_TAG 0x5052

static double lp_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Entries of a /proc/self directory: the process's threads (task) or open files (fd). */
static int proc_count(const char *dir)
{
	DIR *d = opendir(dir);
	int n = 0;
	if (!d)
		return -1;
	for (struct dirent *e; (e = readdir(d));)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

struct lp_pair {
	void *scomm, *rcomm, *smh, *rmh;
	char *rbuf; /* inflight receive slots of S bytes */
	void *sreq[8], *rreq[8];
	long sposted, rposted; /* messages posted on this connection each way */
};

struct lp {
	const struct bench_cfg *cfg;
	ncclNet_v11_t *net;
	void *ctx, *lcomm;
	char handle[NCCL_NET_HANDLE_MAXSIZE];
	char *sbuf;
	size_t S;
	struct lp_pair *pairs;
	int npairs;
	char err[512];
};

#define LP_CHECK(call) BENCH_NET_CHECK(L->err, call)

static int lp_load(struct lp *L)
{
	if (bench_net_open(L->cfg->plugin, &L->net, &L->ctx, L->err, sizeof(L->err)))
		return -1;
	memset(L->handle, 0, sizeof(L->handle));
	LP_CHECK(L->net->listen(L->ctx, 0, L->handle, &L->lcomm));
	return 0;
}

/* P connections: connect and accept are non-blocking (NULL: call again). */
static int lp_connect(struct lp *L, int P)
{
	L->pairs = calloc((size_t)P, sizeof(*L->pairs));
	if (!L->pairs) {
		snprintf(L->err, sizeof(L->err), "out of memory");
		return -1;
	}
	L->npairs = P;
	int nsend = 0, nrecv = 0, inflight = L->cfg->inflight;
	double until = lp_now() + 120;
	while (nsend < P || nrecv < P) {
		ncclNetDeviceHandle_v11_t *dev = NULL;
		if (nsend < P) {
			LP_CHECK(L->net->connect(L->ctx, 0, L->handle, &L->pairs[nsend].scomm,
						 &dev));
			nsend += L->pairs[nsend].scomm != NULL;
		}
		if (nrecv < P) {
			LP_CHECK(L->net->accept(L->lcomm, &L->pairs[nrecv].rcomm, &dev));
			nrecv += L->pairs[nrecv].rcomm != NULL;
		}
		if (lp_now() > until) {
			snprintf(L->err, sizeof(L->err), "%d of %d connects and %d accepts done",
				 nsend, P, nrecv);
			return -1;
		}
		sched_yield();
	}
	for (int i = 0; i < P; i++) {
		struct lp_pair *q = &L->pairs[i];
		q->rbuf = malloc((size_t)inflight * L->S);
		if (!q->rbuf) {
			snprintf(L->err, sizeof(L->err), "out of memory");
			return -1;
		}
		memset(q->rbuf, 0, (size_t)inflight * L->S);
		LP_CHECK(L->net->regMr(q->scomm, L->sbuf, L->S, NCCL_PTR_HOST, &q->smh));
		LP_CHECK(L->net->regMr(q->rcomm, q->rbuf, (size_t)inflight * L->S, NCCL_PTR_HOST,
				       &q->rmh));
	}
	return 0;
}

static void lp_disconnect(struct lp *L)
{
	for (int i = 0; i < L->npairs; i++) {
		struct lp_pair *q = &L->pairs[i];
		if (q->smh)
			L->net->deregMr(q->scomm, q->smh);
		if (q->rmh)
			L->net->deregMr(q->rcomm, q->rmh);
		if (q->scomm)
			L->net->closeSend(q->scomm);
		if (q->rcomm)
			L->net->closeRecv(q->rcomm);
		free(q->rbuf);
	}
	free(L->pairs);
	L->pairs = NULL;
	L->npairs = 0;
}

/* Every pair moves nmsg messages; a received message must carry the sender's first and last
 * 8 bytes (the whole pattern is the transport tests' job). */
static int lp_move(struct lp *L, long nmsg, double *secs)
{
	ncclNet_v11_t *net = L->net;
	int inflight = L->cfg->inflight;
	size_t S = L->S;
	long left = (long)L->npairs * nmsg * 2;
	double t0 = lp_now(), last = t0;
	while (left > 0) {
		int progress = 0;
		for (int i = 0; i < L->npairs; i++) {
			struct lp_pair *q = &L->pairs[i];
			for (int k = 0; k < inflight; k++) {
				if (!q->rreq[k] && q->rposted < nmsg) {
					void *data = q->rbuf + (size_t)k * S, *mh = q->rmh,
					     *ph = NULL;
					size_t sz = S;
					int tag = LP_TAG;
					LP_CHECK(net->irecv(q->rcomm, 1, &data, &sz, &tag, &mh, &ph,
							    &q->rreq[k]));
					q->rposted += q->rreq[k] != NULL;
				}
				if (!q->sreq[k] && q->sposted < nmsg) {
					LP_CHECK(net->isend(q->scomm, L->sbuf, S, LP_TAG, q->smh,
							    NULL, &q->sreq[k]));
					q->sposted += q->sreq[k] != NULL;
				}
				int done = 0, sz = 0;
				if (q->sreq[k]) {
					LP_CHECK(net->test(q->sreq[k], &done, &sz));
					if (done) {
						q->sreq[k] = NULL;
						left--;
						progress = 1;
					}
				}
				if (q->rreq[k]) {
					done = 0;
					LP_CHECK(net->test(q->rreq[k], &done, &sz));
					if (done) {
						const char *got = q->rbuf + (size_t)k * S;
						if ((size_t)sz != S || memcmp(got, L->sbuf, 8) ||
						    memcmp(got + S - 8, L->sbuf + S - 8, 8)) {
							snprintf(L->err, sizeof(L->err),
								 "connection %d: a %d-byte message "
								 "arrived wrong",
								 i, sz);
							return -1;
						}
						memset(q->rbuf + (size_t)k * S, 0, 8);
						q->rreq[k] = NULL;
						left--;
						progress = 1;
					}
				}
			}
		}
		double t = lp_now();
		if (progress) {
			last = t;
		} else if (t - last > L->cfg->timeout) {
			snprintf(L->err, sizeof(L->err), "no progress for %.0f s", L->cfg->timeout);
			return -1;
		} else {
			sched_yield();
		}
	}
	*secs = lp_now() - t0;
	return 0;
}

int bench_loopback_peers_main(struct bench_cfg *cfg)
{
	struct lp L0 = { .cfg = cfg }, *L = &L0;
	L->S = cfg->min_bytes;
	if (!getenv("RCMOE_SOCKET_IFNAME"))
		setenv("NCCL_SOCKET_IFNAME", "lo", 0);
	L->sbuf = malloc(L->S);
	if (!L->sbuf)
		return 2;
	for (size_t i = 0; i < L->S; i++)
		L->sbuf[i] = (char)bench_hash64(i);
	if (lp_load(L)) {
		fprintf(stderr, "rcmoe-bench: --loopback-peers: %s: %s\n", cfg->plugin, L->err);
		return 1;
	}
	printf("# rcmoe-bench %s --loopback-peers: one process, no GPU, NCCL_SOCKET_IFNAME=%s; "
	       "plugin %s\n",
	       BENCH_VERSION, getenv("NCCL_SOCKET_IFNAME") ? getenv("NCCL_SOCKET_IFNAME") : "",
	       cfg->plugin);
	printf("# P connections (send + receive comms in this process), %zu-byte messages, %d in "
	       "flight per connection, %llu bytes per P in all; loopback is CPU-bound: this shows "
	       "how the transport's cost grows with the peers, not a network's speed\n",
	       L->S, cfg->inflight, (unsigned long long)cfg->loopback_bytes);
	printf("#  peers   msgs/peer      GB/s   vs first   threads   open files\n");
	fflush(stdout);
	int rc = 0;
	double first = 0;
	for (int i = 0; i < cfg->npeers_list && !rc; i++) {
		int P = cfg->peers_list[i];
		long nmsg = (long)(cfg->loopback_bytes / ((unsigned long long)L->S * (unsigned)P));
		if (nmsg < 2 * cfg->inflight)
			nmsg = 2 * cfg->inflight;
		double secs = 0;
		if (lp_connect(L, P) || lp_move(L, nmsg, &secs)) {
			fprintf(stderr, "rcmoe-bench: --loopback-peers %d: %s\n", P, L->err);
			rc = 1;
		} else {
			double gbs = (double)L->S * (double)nmsg * P / secs / 1e9;
			if (i == 0)
				first = gbs;
			printf(" %7d %11ld %9.2f %10.2f %9d %12d\n", P, nmsg, gbs, gbs / first,
			       proc_count("/proc/self/task"), proc_count("/proc/self/fd"));
			fflush(stdout);
		}
		lp_disconnect(L);
	}
	if (L->lcomm)
		L->net->closeListen(L->lcomm);
	if (L->ctx && L->net->finalize)
		L->net->finalize(L->ctx);
	free(L->sbuf);
	return rc;
}
