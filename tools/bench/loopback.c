/* SPDX-License-Identifier: Apache-2.0 */
/*
 * --loopback: no GPU, no NCCL. The plugin's ncclNetPlugin_v11 table is driven directly in one
 * process over 127.0.0.1, the way NCCL's proxy would: init, listen, a non-blocking
 * connect/accept loop, regMr of host memory, then a stream of isend/irecv with up to 8 messages
 * in flight, completed by polling test. The reference is the same volume over ONE plain blocking
 * TCP stream between two threads, which is roughly NCCL's Socket transport with one stream.
 */
#include "rcmoe/nccl_abi.h"
#include "bench.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LB_TAG         0x5243         /* any tag: sender and receiver agree */
#define LB_RECV_BUDGET (512ull << 20) /* receive slots of one size share this much memory */

static bool lb_verbose;

static void lb_logger(ncclDebugLogLevel level, unsigned long flags, const char *file, int line,
		      const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void lb_logger(ncclDebugLogLevel level, unsigned long flags, const char *file, int line,
		      const char *fmt, ...)
{
	static const char *names[] = { "NONE", "VERSION", "WARN", "INFO", "ABORT", "TRACE" };
	/* Warnings always: they are why a run fails. INFO and TRACE with -v. */
	if (level != NCCL_LOG_WARN && level != NCCL_LOG_ABORT && !lb_verbose)
		return;
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "rcmoe-bench loopback: %s [0x%lx] %s:%d %s\n",
		(unsigned)level < 6 ? names[level] : "?", flags, file ? file : "?", line, msg);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct lb {
	const struct bench_cfg *cfg;
	ncclNet_v11_t *net;
	ncclNetProperties_v11_t props;
	void *ctx, *lcomm, *scomm, *rcomm;
	void *smh, *rmh;
	char *sbuf, *rbuf;
	size_t sbytes, rbytes;
	char err[512];
};

#define LB_CHECK(call) BENCH_NET_CHECK(L->err, call)

int bench_net_open(const char *path, ncclNet_v11_t **net, void **ctx, char *err, size_t errlen)
{
	void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL); /* as NCCL opens it */
	if (!dl) {
		snprintf(
			err, errlen,
			"cannot load the plugin: %s\n"
			"  build it (ninja -C <builddir> plugin/%s) or install it (meson install), "
			"put its directory on LD_LIBRARY_PATH, pass --plugin PATH or set "
			"RCMOE_PLUGIN; -T socket runs the TCP reference alone",
			dlerror(), BENCH_PLUGIN_SO);
		return -1;
	}
	*net = dlsym(dl, "ncclNetPlugin_v11");
	if (!*net) {
		snprintf(err, errlen, "%.400s exports no ncclNetPlugin_v11", path);
		return -1;
	}
	ncclNetCommConfig_v11_t conf = { NCCL_NET_TRAFFIC_CLASS_UNDEF };
	ncclResult_t r = (*net)->init(ctx, 0x726362656e6368ull, &conf, lb_logger, NULL);
	int ndev = 0;
	if (r == ncclSuccess)
		r = (*net)->devices(&ndev);
	ncclNetProperties_v11_t props;
	if (r == ncclSuccess && ndev > 0)
		r = (*net)->getProperties(0, &props);
	if (r != ncclSuccess) {
		snprintf(err, errlen, "init, devices or getProperties returned %d", (int)r);
		return -1;
	}
	if (ndev < 1 || !(props.ptrSupport & NCCL_PTR_HOST)) {
		snprintf(err, errlen, "the plugin reports %d devices (device 0's ptrSupport 0x%x)",
			 ndev, ndev > 0 ? props.ptrSupport : 0);
		return -1;
	}
	return 0;
}

static int lb_open(struct lb *L, const char *path)
{
	if (bench_net_open(path, &L->net, &L->ctx, L->err, sizeof(L->err)))
		return -1;
	LB_CHECK(L->net->getProperties(0, &L->props));
	char handle[NCCL_NET_HANDLE_MAXSIZE];
	memset(handle, 0, sizeof(handle));
	LB_CHECK(L->net->listen(L->ctx, 0, handle, &L->lcomm));
	/* connect and accept are non-blocking: NULL means "call again", on both sides. */
	ncclNetDeviceHandle_v11_t *sdev = NULL, *rdev = NULL;
	double until = now_s() + fmin(L->cfg->timeout, 60);
	while (!L->scomm || !L->rcomm) {
		if (!L->scomm)
			LB_CHECK(L->net->connect(L->ctx, 0, handle, &L->scomm, &sdev));
		if (!L->rcomm)
			LB_CHECK(L->net->accept(L->lcomm, &L->rcomm, &rdev));
		if (now_s() > until) {
			snprintf(L->err, sizeof(L->err), "connect/accept did not complete (%s%s)",
				 L->scomm ? "" : "no send comm ", L->rcomm ? "" : "no recv comm");
			return -1;
		}
		if (!L->scomm || !L->rcomm)
			sched_yield();
	}
	LB_CHECK(L->net->regMr(L->scomm, L->sbuf, L->sbytes, NCCL_PTR_HOST, &L->smh));
	LB_CHECK(L->net->regMr(L->rcomm, L->rbuf, L->rbytes, NCCL_PTR_HOST, &L->rmh));
	return 0;
}

static void lb_close(struct lb *L)
{
	if (!L->net)
		return;
	if (L->smh)
		L->net->deregMr(L->scomm, L->smh);
	if (L->rmh)
		L->net->deregMr(L->rcomm, L->rmh);
	if (L->scomm)
		L->net->closeSend(L->scomm);
	if (L->rcomm)
		L->net->closeRecv(L->rcomm);
	if (L->lcomm)
		L->net->closeListen(L->lcomm);
	if (L->ctx && L->net->finalize)
		L->net->finalize(L->ctx);
	/* The library stays loaded: its transport workers live as long as the process. */
}

static int recv_slots(const struct bench_cfg *cfg, size_t S)
{
	size_t k = LB_RECV_BUDGET / S;
	return k < 1 ? 1 : k > (size_t)cfg->inflight ? cfg->inflight : (int)k;
}

/* nmsg messages of S bytes; receives rotate over `slots` buffers. */
static int lb_transfer(struct lb *L, size_t S, long nmsg, int slots, double *secs, long *badsize)
{
	ncclNet_v11_t *net = L->net;
	void *sreq[8] = { NULL }, *rreq[8] = { NULL };
	long sposted = 0, sdone = 0, rposted = 0, rdone = 0;
	int inflight = L->cfg->inflight;
	double t0 = now_s(), last = t0;
	while (sdone < nmsg || rdone < nmsg) {
		bool progress = false;
		/* Receives first: NCCL posts them as soon as a buffer slot frees up. */
		for (int k = 0; k < slots && rposted < nmsg; k++) {
			if (rreq[k])
				continue;
			void *data = L->rbuf + (size_t)k * S, *mh = L->rmh, *ph = NULL;
			size_t sz = S;
			int tag = LB_TAG;
			LB_CHECK(net->irecv(L->rcomm, 1, &data, &sz, &tag, &mh, &ph, &rreq[k]));
			if (!rreq[k])
				break; /* the plugin asks to retry later */
			rposted++;
			progress = true;
		}
		for (int k = 0; k < inflight && sposted < nmsg; k++) {
			if (sreq[k])
				continue;
			LB_CHECK(net->isend(L->scomm, L->sbuf, S, LB_TAG, L->smh, NULL, &sreq[k]));
			if (!sreq[k])
				break;
			sposted++;
			progress = true;
		}
		for (int k = 0; k < inflight; k++) {
			int done = 0, sz = 0;
			if (!sreq[k])
				continue;
			LB_CHECK(net->test(sreq[k], &done, &sz));
			if (done) {
				sreq[k] = NULL;
				sdone++;
				progress = true;
			}
		}
		for (int k = 0; k < slots; k++) {
			int done = 0, sz = 0;
			if (!rreq[k])
				continue;
			LB_CHECK(net->test(rreq[k], &done, &sz));
			if (done) {
				if ((size_t)sz != S)
					(*badsize)++;
				rreq[k] = NULL;
				rdone++;
				progress = true;
			}
		}
		double t = now_s();
		if (progress) {
			last = t;
		} else if (t - last > L->cfg->timeout) {
			snprintf(L->err, sizeof(L->err),
				 "no progress for %.0f s: %ld/%ld sends and %ld/%ld receives done",
				 L->cfg->timeout, sdone, nmsg, rdone, nmsg);
			return -1;
		} else {
			sched_yield(); /* the plugin's own threads may need this core */
		}
	}
	*secs = now_s() - t0;
	return 0;
}

static void pattern(char *buf, size_t S, uint64_t salt)
{
	size_t words = S / 8;
	for (size_t i = 0; i < words; i++) {
		uint64_t w = bench_hash64(salt ^ i);
		memcpy(buf + i * 8, &w, 8);
	}
	for (size_t i = words * 8; i < S; i++)
		buf[i] = (char)bench_hash64(salt + i);
}

/* ---- the reference: one blocking TCP stream ---- */

struct tcp {
	int tx, rx;
	const char *buf;
	size_t S;
	long nmsg;
	int err;
};

static void *tcp_sender(void *arg)
{
	struct tcp *T = arg;
	for (long m = 0; m < T->nmsg && !T->err; m++) {
		size_t off = 0;
		while (off < T->S) {
			ssize_t k = send(T->tx, T->buf + off, T->S - off, MSG_NOSIGNAL);
			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0) {
				T->err = errno ? errno : EPIPE;
				return NULL;
			}
			off += (size_t)k;
		}
	}
	return NULL;
}

static int tcp_connect_pair(int *tx, int *rx)
{
	struct sockaddr_in a;
	socklen_t alen = sizeof(a);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (ls < 0)
		return -1;
	if (bind(ls, (struct sockaddr *)&a, sizeof(a)) || listen(ls, 1) ||
	    getsockname(ls, (struct sockaddr *)&a, &alen)) {
		close(ls);
		return -1;
	}
	*tx = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (*tx < 0 || connect(*tx, (struct sockaddr *)&a, sizeof(a))) {
		close(ls);
		return -1;
	}
	*rx = accept(ls, NULL, NULL);
	close(ls);
	return *rx < 0 ? -1 : 0;
}

static int tcp_transfer(struct tcp *T, char *rbuf, double *secs)
{
	pthread_t th;
	T->err = 0;
	double t0 = now_s();
	if (pthread_create(&th, NULL, tcp_sender, T))
		return -1;
	int rc = 0;
	for (long m = 0; m < T->nmsg && !rc; m++) {
		size_t off = 0;
		while (off < T->S) {
			ssize_t k = recv(T->rx, rbuf + off, T->S - off, 0);
			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0) {
				rc = -1;
				break;
			}
			off += (size_t)k;
		}
	}
	*secs = now_s() - t0;
	if (rc)
		shutdown(T->rx, SHUT_RDWR); /* unblocks the sender */
	pthread_join(th, NULL);
	return rc || T->err ? -1 : 0;
}

/* ---- the mode ---- */

struct lb_row {
	size_t size;
	long nmsg;
	double tcp, plug; /* GB/s, NAN if not run */
	int ok;           /* 1 ok, 0 bad, -1 not checked */
};

static void write_json(const struct bench_cfg *cfg, const struct lb *L, const struct lb_row *rows,
		       int n, bool ok)
{
	FILE *f = fopen(cfg->json, "w");
	if (!f) {
		fprintf(stderr, "rcmoe-bench: --json %s: %s\n", cfg->json, strerror(errno));
		return;
	}
	fprintf(f,
		"{\n  \"tool\": \"rcmoe-bench\",\n  \"version\": \"%s\",\n  \"mode\": "
		"\"loopback\",\n  \"plugin\": ",
		BENCH_VERSION);
	bench_json_str(f, cfg->transport_on[BENCH_RCMOE] ? cfg->plugin : NULL);
	fprintf(f, ",\n  \"net_name\": ");
	bench_json_str(f, L->net ? L->net->name : NULL);
	fprintf(f, ",\n  \"inflight\": %d,\n  \"reference\": \"one blocking TCP stream\",\n",
		cfg->inflight);
	fprintf(f, "  \"link_gbps\": ");
	bench_json_num(f, cfg->link_gbps > 0 ? cfg->link_gbps : NAN); /* null: no emulated link */
	fprintf(f, ",\n  \"link\": ");
	if (bench_link_label(cfg))
		bench_json_str(f, bench_link_label(cfg));
	else
		fputs("null", f);
	fprintf(f, ",\n");
	fprintf(f, "  \"rows\": [");
	for (int i = 0; i < n; i++) {
		fprintf(f, "%s\n    {\"size\": %zu, \"msgs\": %ld, \"tcp_gbps\": ", i ? "," : "",
			rows[i].size, rows[i].nmsg);
		bench_json_num(f, rows[i].tcp);
		fprintf(f, ", \"rcmoe_gbps\": ");
		bench_json_num(f, rows[i].plug);
		fprintf(f, ", \"ratio\": ");
		bench_json_num(f, rows[i].plug / rows[i].tcp);
		fprintf(f, ", \"check\": %s}",
			rows[i].ok < 0 ? "null"
			: rows[i].ok   ? "true"
				       : "false");
	}
	fprintf(f, "%s],\n  \"ok\": %s\n}\n", n ? "\n  " : "", ok ? "true" : "false");
	fclose(f);
}

int bench_loopback_main(struct bench_cfg *cfg)
{
	static struct lb Lst;
	struct lb *L = &Lst;
	L->cfg = cfg;
	lb_verbose = cfg->verbose;
	const bool do_plug = cfg->transport_on[BENCH_RCMOE];
	const bool do_tcp = cfg->transport_on[BENCH_SOCKET];
	size_t maxS = cfg->sizes[cfg->nsizes - 1];
	if (maxS > (1ull << 30)) {
		/* NCCL never hands a net more than 1 GiB at once, and test() reports an int. */
		fprintf(stderr, "rcmoe-bench: --loopback: messages are at most 1G\n");
		return 2;
	}

	L->sbytes = maxS;
	L->rbytes = 0;
	for (int s = 0; s < cfg->nsizes; s++) {
		size_t need = (size_t)recv_slots(cfg, cfg->sizes[s]) * cfg->sizes[s];
		if (need > L->rbytes)
			L->rbytes = need;
	}
	L->sbuf = malloc(L->sbytes);
	L->rbuf = malloc(L->rbytes);
	if (!L->sbuf || !L->rbuf) {
		fprintf(stderr, "rcmoe-bench: --loopback: cannot allocate %zu + %zu bytes\n",
			L->sbytes, L->rbytes);
		return 2;
	}
	/* Touch everything now so first-touch page faults stay out of the timings. */
	memset(L->sbuf, 0x5a, L->sbytes);
	memset(L->rbuf, 0, L->rbytes);

	/* The plugin picks its interface like NCCL does: make it the loopback one, as the TCP
	 * reference is, unless the user chose one. */
	if (!getenv("RCMOE_SOCKET_IFNAME"))
		setenv("NCCL_SOCKET_IFNAME", "lo", 0);
	if (do_plug && lb_open(L, cfg->plugin)) {
		fprintf(stderr, "rcmoe-bench: --loopback: %s: %s\n", cfg->plugin, L->err);
		lb_close(L);
		return 1;
	}
	struct tcp T = { .tx = -1, .rx = -1 };
	if (do_tcp && tcp_connect_pair(&T.tx, &T.rx)) {
		fprintf(stderr, "rcmoe-bench: --loopback: TCP over 127.0.0.1: %s\n",
			strerror(errno));
		lb_close(L);
		return 1;
	}

	printf("# rcmoe-bench %s --loopback: one process, no GPU, NCCL_SOCKET_IFNAME=%s\n",
	       BENCH_VERSION, getenv("NCCL_SOCKET_IFNAME") ? getenv("NCCL_SOCKET_IFNAME") : "");
	if (do_plug)
		printf("# plugin %s: net \"%s\" (ncclNetPlugin_v11), dev 0 \"%s\", speed %d Mb/s, "
		       "ptrSupport 0x%x, maxP2pBytes %zu; up to %d messages in flight\n",
		       cfg->plugin, L->net->name ? L->net->name : "?",
		       L->props.name ? L->props.name : "?", L->props.speed, L->props.ptrSupport,
		       L->props.maxP2pBytes, cfg->inflight);
	if (do_tcp)
		printf("# reference tcp-1: one blocking TCP stream between two threads (about "
		       "NCCL's "
		       "Socket transport with one stream)\n");
	if (bench_link_label(cfg))
		printf("# %s: %s preloaded, one token bucket for this process's TCP sends (both "
		       "columns)\n",
		       bench_link_label(cfg), cfg->shaper);
	printf("#       size      msgs     tcp-1     RCMoE     ratio  check\n");
	printf("#        (B)              (GB/s)    (GB/s)\n");
	fflush(stdout);

	struct lb_row rows[BENCH_MAX_SIZES];
	int nrows = 0, bad = 0;
	bool failed = false;
	for (int s = 0; s < cfg->nsizes && !failed; s++) {
		size_t S = cfg->sizes[s];
		int slots = recv_slots(cfg, S);
		long nmsg = (long)((cfg->loopback_bytes + S - 1) / S);
		if (nmsg < 2 * slots)
			nmsg = 2 * slots;
		struct lb_row *row = &rows[nrows++];
		row->size = S;
		row->nmsg = nmsg;
		row->tcp = row->plug = NAN;
		row->ok = -1;
		double secs;
		if (do_tcp) {
			T.buf = L->sbuf;
			T.S = S;
			T.nmsg = nmsg;
			if (tcp_transfer(&T, L->rbuf, &secs)) {
				fprintf(stderr, "rcmoe-bench: --loopback: TCP transfer failed\n");
				failed = true;
				break;
			}
			row->tcp = (double)S * (double)nmsg / secs / 1e9;
		}
		if (do_plug && S <= L->props.maxP2pBytes) {
			long badsize = 0;
			if (lb_transfer(L, S, nmsg, slots, &secs, &badsize)) {
				fprintf(stderr, "rcmoe-bench: --loopback: %zu-byte messages: %s\n",
					S, L->err);
				failed = true;
				break;
			}
			row->plug = (double)S * (double)nmsg / secs / 1e9;
			/* Content, outside the timing: one message with a pattern of its own. */
			pattern(L->sbuf, S, 0x6c6f6f70ull ^ S);
			memset(L->rbuf, 0, S);
			double vs;
			if (lb_transfer(L, S, 1, 1, &vs, &badsize)) {
				fprintf(stderr, "rcmoe-bench: --loopback: check message: %s\n",
					L->err);
				failed = true;
				break;
			}
			row->ok = badsize == 0 && memcmp(L->sbuf, L->rbuf, S) == 0;
			bad += !row->ok;
		}
		printf("%12zu%10ld", S, nmsg);
		rcmoe_print_float(stdout, row->tcp, 10, 7);
		rcmoe_print_float(stdout, row->plug, 10, 7);
		rcmoe_print_float(stdout, row->plug / row->tcp, 10, 7);
		printf("%7s\n", row->ok < 0 ? "N/A" : row->ok ? "ok" : "BAD");
		fflush(stdout);
	}
	printf("\n# Out of bounds values : %d %s\n", bad, bad || failed ? "FAILED" : "OK");
	if (cfg->json)
		write_json(cfg, L, rows, nrows, !bad && !failed);
	if (T.tx >= 0)
		close(T.tx);
	if (T.rx >= 0)
		close(T.rx);
	lb_close(L);
	free(L->sbuf);
	free(L->rbuf);
	return bad || failed ? 1 : 0;
}
