/* SPDX-License-Identifier: Apache-2.0 */
/*
 * --loopback -O allreduce: no GPU, no NCCL. The plugin's collective side (ncclCollNetPlugin_v11)
 * driven directly over 127.0.0.1 with host buffers, the way NCCL's proxy drives it with
 * CollNetChain when the plugin gets host memory (no MPS, no GPUDirect: what most clusters run):
 * every all-reduce is cut into chunks (at most 256 KiB with CollNetChain, NCCL 2.28 enqueue.cc;
 * --chunk), posted with iallreduce with up to --inflight calls in flight, completed by test.
 *
 * One process per rank (forked: each has its own plugin, codec workers and transport, as ranks
 * do), one set of ranks per mode: the lossless collective all-reduce, which is the reference,
 * then PTS (--ar-density) and/or LSQ two-step (--ar-bits), each with its RCMOE_AR_* settings.
 * The parent passes the listen handles around (NCCL's bootstrap does that) and collects each
 * rank's time per all-reduce, its error against the exact sum and a hash of its result: every
 * rank must end with the same bits.
 *
 * The plugin takes the comm's first registered region for NCCL's staging buffer and clears what
 * it encoded there (plugin/coll/ar_engine.c). NCCL registers its staging first; this bench has
 * none, so it registers a small region first in its place, and its own buffers are then user
 * buffers, which the plugin never writes but for the receive side.
 */
#include "rcmoe/nccl_abi.h"
#include "bench.h"

#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LC_MAX_MODES         3
#define LC_PLACEHOLDER_BYTES 4096

/* What a rank tells the parent per size (and once with size_idx -1 for a failure). */
struct lc_result {
	int32_t size_idx;
	double secs_per_op;
	struct bench_check_res chk;
	uint64_t hash; /* of the result of the checked all-reduce */
	char err[440];
};

struct lc_mode {
	int mode; /* enum bench_cn_mode */
	char label[64];
	char env[2][64]; /* RCMOE_AR_* of the mode */
	/* per size: max time over ranks, summed error, hashes agree */
	double secs[BENCH_MAX_SIZES];
	struct bench_check_res chk[BENCH_MAX_SIZES];
	bool same_bits[BENCH_MAX_SIZES];
	bool have[BENCH_MAX_SIZES];
};

static bool lc_verbose;

static void lc_logger(ncclDebugLogLevel level, unsigned long flags, const char *file, int line,
		      const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void lc_logger(ncclDebugLogLevel level, unsigned long flags, const char *file, int line,
		      const char *fmt, ...)
{
	if (level != NCCL_LOG_WARN && level != NCCL_LOG_ABORT && !lc_verbose)
		return;
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "rcmoe-bench loopback rank: %s [0x%lx] %s:%d %s\n",
		level == NCCL_LOG_WARN ? "WARN" : "INFO", flags, file ? file : "?", line, msg);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int write_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n) {
		ssize_t k = write(fd, c, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		c += k;
		n -= (size_t)k;
	}
	return 0;
}

static int read_all(int fd, void *p, size_t n)
{
	char *c = p;
	while (n) {
		ssize_t k = read(fd, c, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		c += k;
		n -= (size_t)k;
	}
	return 0;
}

/* ---- one rank (a child process) ---- */

struct lc_rank {
	const struct bench_cfg *cfg;
	int rank, in_fd, out_fd;
	ncclCollNet_v11_t *cn;
	void *ctx, *lcomm, *comm;
	void *pmh, *smh, *rmh;
	char *placeholder, *sbuf, *rbuf;
	char err[400];
};

#define LC_CHECK(R, call)                                                                          \
	do {                                                                                       \
		ncclResult_t r_ = (call);                                                          \
		if (r_ != ncclSuccess) {                                                           \
			snprintf((R)->err, sizeof((R)->err), "%s returned %d", #call, (int)r_);    \
			return -1;                                                                 \
		}                                                                                  \
	} while (0)

static int lc_rank_open(struct lc_rank *R, size_t max_bytes)
{
	const struct bench_cfg *cfg = R->cfg;
	void *dl = dlopen(cfg->plugin, RTLD_NOW | RTLD_LOCAL);
	if (!dl) {
		snprintf(R->err, sizeof(R->err), "cannot load the plugin: %.300s", dlerror());
		return -1;
	}
	R->cn = dlsym(dl, "ncclCollNetPlugin_v11");
	if (!R->cn) {
		snprintf(R->err, sizeof(R->err), "the plugin exports no ncclCollNetPlugin_v11");
		return -1;
	}
	LC_CHECK(R, R->cn->init(&R->ctx, 0x6c636f6c6cull, lc_logger));
	int ndev = 0;
	LC_CHECK(R, R->cn->devices(&ndev));
	if (ndev < 1) {
		snprintf(R->err, sizeof(R->err), "the collective side reports %d devices", ndev);
		return -1;
	}
	char handle[NCCL_NET_HANDLE_MAXSIZE];
	memset(handle, 0, sizeof(handle));
	LC_CHECK(R, R->cn->listen(R->ctx, 0, handle, &R->lcomm));
	/* NCCL's bootstrap: every rank's handle to every rank. */
	const int n = cfg->nranks;
	char *all = malloc((size_t)n * NCCL_NET_HANDLE_MAXSIZE);
	void *handles[BENCH_MAX_RANKS];
	if (!all || write_all(R->out_fd, handle, sizeof(handle)) ||
	    read_all(R->in_fd, all, (size_t)n * NCCL_NET_HANDLE_MAXSIZE)) {
		free(all);
		snprintf(R->err, sizeof(R->err), "handle exchange with the parent failed");
		return -1;
	}
	for (int i = 0; i < n; i++)
		handles[i] = all + (size_t)i * NCCL_NET_HANDLE_MAXSIZE;
	ncclResult_t res = R->cn->connect(handles, n, R->rank, R->lcomm, &R->comm);
	free(all);
	LC_CHECK(R, res);
	LC_CHECK(R, R->cn->closeListen(R->lcomm));
	R->lcomm = NULL;

	R->placeholder = calloc(1, LC_PLACEHOLDER_BYTES);
	R->sbuf = malloc(max_bytes);
	R->rbuf = malloc(max_bytes);
	if (!R->placeholder || !R->sbuf || !R->rbuf) {
		snprintf(R->err, sizeof(R->err), "cannot allocate 2 x %zu bytes", max_bytes);
		return -1;
	}
	memset(R->rbuf, 0, max_bytes); /* first-touch faults out of the timings */
	LC_CHECK(R, R->cn->regMr(R->comm, R->placeholder, LC_PLACEHOLDER_BYTES, NCCL_PTR_HOST,
				 &R->pmh));
	LC_CHECK(R, R->cn->regMr(R->comm, R->sbuf, max_bytes, NCCL_PTR_HOST, &R->smh));
	LC_CHECK(R, R->cn->regMr(R->comm, R->rbuf, max_bytes, NCCL_PTR_HOST, &R->rmh));
	return 0;
}

static void lc_rank_close(struct lc_rank *R)
{
	if (!R->cn)
		return;
	if (R->comm) {
		if (R->pmh)
			R->cn->deregMr(R->comm, R->pmh);
		if (R->smh)
			R->cn->deregMr(R->comm, R->smh);
		if (R->rmh)
			R->cn->deregMr(R->comm, R->rmh);
		R->cn->closeColl(R->comm);
	}
	if (R->lcomm)
		R->cn->closeListen(R->lcomm);
	if (R->ctx)
		R->cn->finalize(R->ctx);
}

/* `iters` all-reduces of `count` elements, each cut into chunks of at most `chunk` elements
 * with up to cfg->inflight calls in flight, in order, as NCCL's proxy posts them. */
static int lc_allreduce(struct lc_rank *R, size_t count, size_t chunk, int iters)
{
	const struct bench_cfg *cfg = R->cfg;
	const size_t esize = cfg->dt->size;
	const size_t per = (count + chunk - 1) / chunk, total = per * (size_t)iters;
	void *req[8] = { NULL };
	size_t reqlen[8] = { 0 };
	size_t posted = 0, done = 0;
	double last = now_s();
	while (done < total) {
		bool progress = false;
		for (int k = 0; k < cfg->inflight && posted < total; k++) {
			if (req[k])
				continue;
			size_t off = posted % per * chunk;
			size_t len = count - off < chunk ? count - off : chunk;
			LC_CHECK(R, R->cn->iallreduce(R->comm, R->sbuf + off * esize,
						      R->rbuf + off * esize, len,
						      (ncclDataType_t)cfg->dt->nccl, ncclSum,
						      R->smh, R->rmh, &req[k]));
			if (!req[k])
				break; /* the plugin asks to retry later */
			reqlen[k] = len * esize;
			posted++;
			progress = true;
		}
		for (int k = 0; k < cfg->inflight; k++) {
			int fin = 0, size = 0;
			if (!req[k])
				continue;
			LC_CHECK(R, R->cn->test(req[k], &fin, &size));
			if (!fin)
				continue;
			if ((size_t)size != reqlen[k]) {
				snprintf(R->err, sizeof(R->err),
					 "a call of %zu bytes completed with size %d", reqlen[k],
					 size);
				return -1;
			}
			req[k] = NULL;
			done++;
			progress = true;
		}
		double t = now_s();
		if (progress) {
			last = t;
		} else if (t - last > cfg->timeout) {
			snprintf(R->err, sizeof(R->err),
				 "no progress for %.0f s: %zu of %zu calls done", cfg->timeout,
				 done, total);
			return -1;
		} else {
			sched_yield(); /* the plugin's own threads may need this core */
		}
	}
	return 0;
}

static uint64_t lc_hash(const void *p, size_t n)
{
	const unsigned char *c = p;
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ c[i]) * 0x100000001b3ull;
	return h;
}

static int lc_rank_main(struct lc_rank *R, size_t chunk_bytes)
{
	const struct bench_cfg *cfg = R->cfg;
	size_t maxS = cfg->sizes[cfg->nsizes - 1];
	if (lc_rank_open(R, maxS))
		return -1;
	const size_t chunk = chunk_bytes / cfg->dt->size;
	for (int s = 0; s < cfg->nsizes; s++) {
		size_t count = cfg->sizes[s] / cfg->dt->size;
		struct lc_result res = { .size_idx = s };
		if (!count)
			continue;
		bench_fill(cfg, BENCH_ALLREDUCE, R->rank, R->sbuf, count);
		if (lc_allreduce(R, count, chunk, cfg->warmup))
			return -1;
		double t0 = now_s();
		if (lc_allreduce(R, count, chunk, cfg->iters))
			return -1;
		res.secs_per_op = (now_s() - t0) / cfg->iters;
		/* The check: one more, on a cleared receive buffer. */
		memset(R->rbuf, 0, count * cfg->dt->size);
		if (lc_allreduce(R, count, chunk, 1))
			return -1;
		bench_check(cfg, BENCH_ALLREDUCE, R->rank, R->rbuf, count, &res.chk);
		res.hash = lc_hash(R->rbuf, count * cfg->dt->size);
		if (write_all(R->out_fd, &res, sizeof(res)))
			return -1;
	}
	return 0;
}

static void lc_rank_run(const struct bench_cfg *cfg, const struct lc_mode *m, int rank, int in_fd,
			int out_fd, size_t chunk_bytes)
{
	struct lc_rank R = { .cfg = cfg, .rank = rank, .in_fd = in_fd, .out_fd = out_fd };
	setenv("NCCL_COLLNET_ENABLE", "1",
	       1); /* as rcmoe-run sets it (the plugin warns otherwise) */
	setenv("RCMOE_AR_CODEC", "auto", 1);
	unsetenv("RCMOE_AR_DENSITY");
	unsetenv("RCMOE_AR_BITS");
	for (int i = 0; i < 2; i++) {
		char *eq = strchr(m->env[i], '=');
		if (!eq)
			continue;
		*eq = 0;
		setenv(m->env[i], eq + 1, 1);
	}
	for (int i = 0; i < cfg->nrcmoe_env; i++)
		putenv((char *)cfg->rcmoe_env[i]);
	int rc = lc_rank_main(&R, chunk_bytes);
	if (rc) {
		struct lc_result fail = { .size_idx = -1 };
		snprintf(fail.err, sizeof(fail.err), "rank %d: %s", rank, R.err);
		write_all(out_fd, &fail, sizeof(fail));
	}
	lc_rank_close(&R);
	_exit(rc ? 1 : 0);
}

/* ---- the parent ---- */

/* Run one mode's ranks; fills m. Returns 0, or -1 with a message on stderr. */
static int lc_run_mode(const struct bench_cfg *cfg, struct lc_mode *m, size_t chunk_bytes)
{
	const int n = cfg->nranks;
	pid_t pid[BENCH_MAX_RANKS];
	int to[BENCH_MAX_RANKS], from[BENCH_MAX_RANKS];
	int started = 0, rc = 0;
	fflush(NULL);
	for (int r = 0; r < n; r++) {
		int a[2], b[2];
		if (pipe(a) || pipe(b)) {
			fprintf(stderr, "rcmoe-bench: pipe: %s\n", strerror(errno));
			rc = -1;
			break;
		}
		pid[r] = fork();
		if (pid[r] == 0) {
			close(a[1]);
			close(b[0]);
			for (int q = 0; q < r; q++) {
				close(to[q]);
				close(from[q]);
			}
			lc_rank_run(cfg, m, r, a[0], b[1], chunk_bytes);
		}
		close(a[0]);
		close(b[1]);
		to[r] = a[1];
		from[r] = b[0];
		if (pid[r] < 0) {
			close(to[r]);
			close(from[r]);
			rc = -1;
			break;
		}
		started++;
	}
	char *all = rc ? NULL : malloc((size_t)n * NCCL_NET_HANDLE_MAXSIZE);
	if (!rc && !all)
		rc = -1;
	/* The handles, then each row's result from every rank, each read with a deadline. */
	for (int r = 0; r < n && !rc; r++) {
		struct pollfd p = { .fd = from[r], .events = POLLIN };
		if (poll(&p, 1, (int)(cfg->timeout * 1000)) != 1 ||
		    read_all(from[r], all + (size_t)r * NCCL_NET_HANDLE_MAXSIZE,
			     NCCL_NET_HANDLE_MAXSIZE)) {
			fprintf(stderr, "rcmoe-bench: %s ranks: rank %d sent no handle\n", m->label,
				r);
			rc = -1;
		}
	}
	for (int r = 0; r < n && !rc; r++)
		if (write_all(to[r], all, (size_t)n * NCCL_NET_HANDLE_MAXSIZE))
			rc = -1;
	free(all);
	for (int s = 0; s < cfg->nsizes && !rc; s++) {
		if (!(cfg->sizes[s] / cfg->dt->size))
			continue;
		uint64_t hash0 = 0;
		m->same_bits[s] = true;
		memset(&m->chk[s], 0, sizeof(m->chk[s]));
		m->secs[s] = 0;
		for (int r = 0; r < n && !rc; r++) {
			struct lc_result res;
			struct pollfd p = { .fd = from[r], .events = POLLIN };
			/* a row takes warmup + iters + 1 all-reduces; the timeout is per call */
			if (poll(&p, 1,
				 (int)(cfg->timeout * 1000) * (cfg->iters + cfg->warmup + 1)) !=
				    1 ||
			    read_all(from[r], &res, sizeof(res))) {
				fprintf(stderr,
					"rcmoe-bench: %s ranks: rank %d stopped reporting\n",
					m->label, r);
				rc = -1;
				break;
			}
			if (res.size_idx != s) {
				fprintf(stderr, "rcmoe-bench: %s ranks: %s\n", m->label,
					res.size_idx < 0 ? res.err : "rows out of order");
				rc = -1;
				break;
			}
			if (r == 0)
				hash0 = res.hash;
			m->same_bits[s] = m->same_bits[s] && res.hash == hash0;
			m->secs[s] = fmax(m->secs[s], res.secs_per_op);
			m->chk[s].wrong += res.chk.wrong;
			m->chk[s].checked += res.chk.checked;
			m->chk[s].err_sq += res.chk.err_sq;
			m->chk[s].ref_sq += res.chk.ref_sq;
			m->chk[s].maxabs = fmax(m->chk[s].maxabs, res.chk.maxabs);
			if (isnan(res.chk.maxabs))
				m->chk[s].maxabs = NAN;
		}
		m->have[s] = !rc;
	}
	for (int r = 0; r < started; r++) {
		close(to[r]);
		if (rc)
			kill(pid[r], SIGKILL);
	}
	for (int r = 0; r < started; r++) {
		int st = 0;
		waitpid(pid[r], &st, 0);
		if (!rc && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
			struct lc_result res;
			if (!read_all(from[r], &res, sizeof(res)) && res.size_idx < 0)
				fprintf(stderr, "rcmoe-bench: %s ranks: %s\n", m->label, res.err);
			else
				fprintf(stderr, "rcmoe-bench: %s ranks: rank %d exited badly\n",
					m->label, r);
			rc = -1;
		}
		close(from[r]);
	}
	return rc;
}

int bench_loopback_coll_main(struct bench_cfg *cfg, size_t chunk_bytes)
{
	struct lc_mode modes[LC_MAX_MODES];
	int nmodes = 0;
	lc_verbose = cfg->verbose;
	if (!bench_cn_dtype_ok(cfg)) {
		fprintf(stderr, "rcmoe-bench: --loopback -O allreduce: the collective side takes "
				"bfloat16, half and float\n");
		return 2;
	}
	if (cfg->nranks < 2 || cfg->inflight < 1 || cfg->inflight > 8 ||
	    chunk_bytes < cfg->dt->size) {
		fprintf(stderr, "rcmoe-bench: --loopback -O allreduce: needs -n >= 2, "
				"--inflight 1..8 and a chunk of at least one element\n");
		return 2;
	}
	memset(modes, 0, sizeof(modes));
	modes[nmodes].mode = BENCH_CN_LOSSLESS;
	snprintf(modes[nmodes++].label, sizeof(modes[0].label), "lossless");
	if (cfg->ar_density_arg) {
		modes[nmodes].mode = BENCH_CN_PTS;
		snprintf(modes[nmodes].label, sizeof(modes[0].label), "PTS %s",
			 cfg->ar_density_arg);
		snprintf(modes[nmodes++].env[0], sizeof(modes[0].env[0]), "RCMOE_AR_DENSITY=%s",
			 cfg->ar_density_arg);
	}
	if (cfg->ar_bits_arg) {
		modes[nmodes].mode = BENCH_CN_LSQ;
		snprintf(modes[nmodes].label, sizeof(modes[0].label), "LSQ %s-bit",
			 cfg->ar_bits_arg);
		snprintf(modes[nmodes++].env[0], sizeof(modes[0].env[0]), "RCMOE_AR_BITS=%s",
			 cfg->ar_bits_arg);
	}
	if (!getenv("RCMOE_SOCKET_IFNAME"))
		setenv("NCCL_SOCKET_IFNAME", "lo", 0);

	printf("# rcmoe-bench %s --loopback -O allreduce: %d rank processes, no GPU, "
	       "NCCL_SOCKET_IFNAME=%s\n",
	       BENCH_VERSION, cfg->nranks,
	       getenv("NCCL_SOCKET_IFNAME") ? getenv("NCCL_SOCKET_IFNAME") : "");
	printf("# plugin %s: collective side (ncclCollNetPlugin_v11) on host buffers; each "
	       "all-reduce in calls of at most %zu bytes, up to %d in flight (NCCL's "
	       "CollNetChain); %d warm-up and %d timed all-reduces per size\n",
	       cfg->plugin, chunk_bytes, cfg->inflight, cfg->warmup, cfg->iters);
	if (bench_link_label(cfg))
		printf("# %s: %s preloaded, one token bucket per rank process\n",
		       bench_link_label(cfg), cfg->shaper);
	printf("# reference: the lossless collective all-reduce (exact, rank-order sum); busbw "
	       "as nccl-tests, size x 2(n-1)/n / time; relL2 and maxabs against the exact sum; "
	       "'same' when every rank holds the same bits\n");

	bool failed = false;
	for (int i = 0; i < nmodes && !failed; i++) {
		struct bench_cfg mc = *cfg;
		/* lossless: integer-valued data, checked exactly; lossy: Gaussian data, error */
		mc.check =
			modes[i].mode == BENCH_CN_LOSSLESS ? BENCH_CHECK_EXACT : BENCH_CHECK_ERROR;
		failed = lc_run_mode(&mc, &modes[i], chunk_bytes) != 0;
	}

	printf("#%11s %12s %9s", "size", "count", "type");
	for (int i = 0; i < nmodes; i++)
		printf("  %-28s", modes[i].label);
	printf("\n#%11s %12s %9s", "(B)", "(elements)", "");
	for (int i = 0; i < nmodes; i++)
		printf("  %9s %6s %6s %5s", "busbw", "ratio", "relL2", "bits");
	printf("\n");
	int bad = 0;
	for (int s = 0; s < cfg->nsizes; s++) {
		size_t count = cfg->sizes[s] / cfg->dt->size;
		if (!count)
			continue;
		printf("%12zu %12zu %9s", count * cfg->dt->size, count, cfg->dt->name);
		double ref = NAN;
		for (int i = 0; i < nmodes; i++) {
			struct lc_mode *m = &modes[i];
			double bus = NAN, rel = NAN;
			if (m->have[s]) {
				bus = (double)(count * cfg->dt->size) / m->secs[s] / 1e9 * 2.0 *
				      (cfg->nranks - 1) / cfg->nranks;
				rel = m->chk[s].ref_sq > 0
					      ? sqrt(m->chk[s].err_sq / m->chk[s].ref_sq)
					      : NAN;
				if (i == 0)
					ref = bus;
				if (m->mode == BENCH_CN_LOSSLESS)
					bad += m->chk[s].wrong != 0;
				bad += !m->same_bits[s];
			}
			printf("  ");
			rcmoe_print_float(stdout, bus, 9, 7);
			printf(" ");
			rcmoe_print_float(stdout, bus / ref, 6, 5);
			printf(" ");
			if (m->mode == BENCH_CN_LOSSLESS)
				printf("%6s", !m->have[s]       ? "N/A"
					      : m->chk[s].wrong ? "WRONG"
								: "exact");
			else
				rcmoe_print_float(stdout, rel, 6, 6);
			printf(" %5s", !m->have[s] ? "N/A" : m->same_bits[s] ? "same" : "DIFF");
		}
		printf("\n");
	}
	printf("\n# Out of bounds values : %d %s\n", bad, bad || failed ? "FAILED" : "OK");
	return bad || failed ? 1 : 0;
}
