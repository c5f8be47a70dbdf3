/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A simulated rank for --selftest: the same process model, messages and checks as a real rank,
 * with the collective computed on the CPU from its definition instead of by NCCL. It lets the
 * launcher, the failure handling, the tables and the JSON be exercised on a machine without a
 * GPU. Times are synthetic. It also verifies the environment the parent gave it.
 *
 * With --rcmoe-env RCMOE_A2A_BITS=b and --check error, the RCMoE run quantizes what alltoall
 * and sendrecv deliver (block-wise, round to nearest, 128 elements per block), so the error
 * columns show figures of the right order.
 */
#include "bench.h"

#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Above this the simulation skips the check: the selftest is about plumbing, not speed. */
#define FAKE_CHECK_MAX (4u << 20)

static int env_error(const struct bench_cfg *cfg, const char *what)
{
	char msg[512];
	snprintf(msg, sizeof(msg), "environment: %s", what);
	bench_msg_send(cfg->child_out_fd, BENCH_MSG_ERROR, cfg->child_rank, msg, strlen(msg));
	return 1;
}

static int check_env(const struct bench_cfg *cfg, char *summary, size_t len)
{
	char want[64];
	const char *v;
	snprintf(want, sizeof(want), BENCH_HOSTID_FMT, cfg->child_rank);
	if (!(v = getenv("NCCL_HOSTID")) || strcmp(v, want))
		return env_error(cfg, "NCCL_HOSTID is not rcmoe-bench-h<rank>");
	bool rc = cfg->child_transport != BENCH_SOCKET;
	bool cn = cfg->child_transport == BENCH_COLLNET;
	if (!(v = getenv("NCCL_NET")) || strcmp(v, rc ? "RCMoE" : "Socket"))
		return env_error(cfg, "NCCL_NET does not name the transport");
	if (!(v = getenv("NCCL_NET_PLUGIN")) || strcmp(v, rc ? cfg->plugin : "none"))
		return env_error(cfg, "NCCL_NET_PLUGIN is not the plugin (or none)");
	if (!(v = getenv("NCCL_MNNVL_ENABLE")) || strcmp(v, "0"))
		return env_error(cfg, "NCCL_MNNVL_ENABLE is not 0");
	if (!getenv("NCCL_SOCKET_IFNAME"))
		return env_error(cfg, "NCCL_SOCKET_IFNAME is not set");
	if (rc && !cfg->gdr_level && !getenv("NCCL_NET_GDR_LEVEL"))
		return env_error(cfg, "NCCL_NET_GDR_LEVEL is not set for the rcmoe run");
	if (!rc)
		for (int i = 0; i < cfg->nrcmoe_env; i++) {
			size_t nl = (size_t)(strchr(cfg->rcmoe_env[i], '=') - cfg->rcmoe_env[i]);
			char name[128];
			snprintf(name, sizeof(name), "%.*s", (int)nl, cfg->rcmoe_env[i]);
			bool also_env = false;
			for (int j = 0; j < cfg->nenv; j++)
				also_env |= strncmp(cfg->env[j], cfg->rcmoe_env[i], nl + 1) == 0;
			if (getenv(name) && !also_env)
				return env_error(cfg,
						 "an --rcmoe-env variable reached the Socket run");
		}
	/* The collNet settings: the collnet run gets what its options say, the others stay off
	 * the collective side unless a list names NCCL_COLLNET_ENABLE. */
	bool listed = false;
	for (int i = 0; i < cfg->nenv; i++)
		listed |= strncmp(cfg->env[i], "NCCL_COLLNET_ENABLE=", 20) == 0;
	for (int i = 0; rc && i < cfg->nrcmoe_env; i++)
		listed |= strncmp(cfg->rcmoe_env[i], "NCCL_COLLNET_ENABLE=", 20) == 0;
	v = getenv("NCCL_COLLNET_ENABLE");
	if (cn && (!v || strcmp(v, "1")))
		return env_error(cfg, "NCCL_COLLNET_ENABLE is not 1 in the collnet run");
	if (!cn && cfg->transport_on[BENCH_COLLNET] && !listed && (!v || strcmp(v, "0")))
		return env_error(cfg, "NCCL_COLLNET_ENABLE is not 0 beside a collnet run");
	if (cn) {
		const char *d = getenv("RCMOE_AR_DENSITY"), *b = getenv("RCMOE_AR_BITS");
		const char *want_d = cfg->ar_density_arg ? cfg->ar_density_arg : "0";
		const char *want_b = cfg->ar_bits_arg ? cfg->ar_bits_arg : "0";
		if (!d || !b || strcmp(d, want_d) || strcmp(b, want_b))
			return env_error(cfg,
					 "RCMOE_AR_DENSITY/RCMOE_AR_BITS are not the options'");
		v = getenv("NCCL_ALGO");
		if (cfg->force_collnet != (v && !strcmp(v, "allreduce:CollNetChain")))
			return env_error(cfg, "NCCL_ALGO does not follow --force-collnet");
	} else if ((v = getenv("NCCL_ALGO")) && strstr(v, "CollNet")) {
		return env_error(cfg, "--force-collnet reached a run that is not collnet");
	}
	for (int i = 0; i < cfg->nenv; i++) {
		const char *eq = strchr(cfg->env[i], '=');
		char name[128];
		snprintf(name, sizeof(name), "%.*s", (int)(eq - cfg->env[i]), cfg->env[i]);
		v = getenv(name);
		/* what the bench sets after the lists in a collnet run */
		static const char *const cn_set[] = { "NCCL_COLLNET_ENABLE", "RCMOE_AR_CODEC",
						      "RCMOE_AR_DENSITY",    "RCMOE_AR_BITS",
						      "NCCL_ALGO",           "RCMOE_STATS_FILE",
						      "RCMOE_STATS_FORMAT" };
		bool overridden = false;
		for (size_t k = 0; cn && k < sizeof(cn_set) / sizeof(cn_set[0]); k++)
			overridden |= !strcmp(name, cn_set[k]);
		for (int j = 0; rc && j < cfg->nrcmoe_env; j++)
			overridden |= strncmp(cfg->rcmoe_env[j], cfg->env[i],
					      (size_t)(eq - cfg->env[i]) + 1) == 0;
		if (!overridden && (!v || strcmp(v, eq + 1)))
			return env_error(cfg, "an --env variable is missing");
	}
	const char *gdr = getenv("NCCL_NET_GDR_LEVEL"), *bits = getenv("RCMOE_A2A_BITS");
	snprintf(summary, len,
		 "pid %d NCCL_HOSTID=%s NCCL_NET=%s NCCL_NET_PLUGIN=%s NCCL_NET_GDR_LEVEL=%s "
		 "RCMOE_A2A_BITS=%s",
		 (int)getpid(), getenv("NCCL_HOSTID"), getenv("NCCL_NET"),
		 getenv("NCCL_NET_PLUGIN"), gdr ? gdr : "-", bits ? bits : "-");
	return 0;
}

/* Round-to-nearest block quantization with L = 2^(bits-1)-1 levels: a stand-in for LSQ. */
static void quantize(const struct bench_dtype *dt, void *buf, size_t count, int bits)
{
	const double L = (double)((1 << (bits - 1)) - 1);
	for (size_t b = 0; b < count; b += 128) {
		size_t e = b + 128 < count ? b + 128 : count;
		double mx = 0;
		for (size_t i = b; i < e; i++)
			mx = fmax(mx, fabs(bench_load_f(dt, buf, i)));
		if (mx == 0)
			continue;
		double s = mx / L;
		for (size_t i = b; i < e; i++)
			bench_store_f(dt, buf, i, nearbyint(bench_load_f(dt, buf, i) / s) * s);
	}
}

/* What rank `me` receives, from the definitions of the three collectives. */
static void simulate(const struct bench_cfg *cfg, int op, int me, void *recv, size_t count,
		     void *scratch)
{
	const struct bench_dtype *dt = cfg->dt;
	const int n = cfg->nranks;
	if (op == BENCH_SENDRECV) {
		bench_fill(cfg, op, (me + n - 1) % n, recv, count);
		return;
	}
	if (op == BENCH_ALLTOALL) {
		size_t pp = count / (size_t)n;
		for (int p = 0; p < n; p++) {
			/* peer p's whole buffer; its block for me starts at me*pp */
			bench_fill(cfg, op, p, scratch, count);
			memcpy((char *)recv + (size_t)p * pp * dt->size,
			       (char *)scratch + (size_t)me * pp * dt->size, pp * dt->size);
		}
		return;
	}
	for (int p = 0; p < n; p++) {
		bench_fill(cfg, op, p, p ? scratch : recv, count);
		if (!p)
			continue;
		for (size_t i = 0; i < count; i++) {
			if (dt->is_float)
				bench_store_f(dt, recv, i,
					      (double)(float)(bench_load_f(dt, recv, i) +
							      bench_load_f(dt, scratch, i)));
			else
				bench_store_u(dt, recv, i,
					      bench_load_u(dt, recv, i) +
						      bench_load_u(dt, scratch, i));
		}
	}
}

/* ---- the collNet run, simulated: the codecs' definitions (DESIGN.md section 3), NCCL's log
 * line, the plugin's counters ---- */

static double n_ranks(const struct bench_cfg *cfg)
{
	return (double)cfg->nranks;
}

/* Uniform in [0, 1) from (seed, stream, rank, element): the role of the plugin's hash RNG. */
static double fake_u(uint64_t seed, uint64_t stream, int rank, size_t i)
{
	uint64_t h = bench_hash64(seed ^ (stream << 40) ^ ((uint64_t)(rank + 1) << 20) ^
				  bench_hash64((uint64_t)i));
	return (double)(h >> 11) * 0x1p-53;
}

static double fake_round(const struct bench_dtype *dt, double v)
{
	char b[8];
	bench_store_f(dt, b, 0, v);
	return bench_load_f(dt, b, 0);
}

/* LSQ of one block in place: s = max|x| / L, floor(x/s + u), decoded and rounded to dt. */
static void fake_lsq(const struct bench_dtype *dt, double *x, size_t n, int bits, uint64_t seed,
		     uint64_t stream, int rank, size_t base)
{
	const double L = (double)((1 << (bits - 1)) - 1);
	double mx = 0;
	for (size_t i = 0; i < n; i++)
		mx = fmax(mx, fabs(x[i]));
	if (!(mx > 0))
		return;
	double sc = mx / L;
	for (size_t i = 0; i < n; i++) {
		double q = floor(x[i] / sc + fake_u(seed, stream, rank, base + i));
		q = q > L ? L : q < -L ? -L : q;
		x[i] = fake_round(dt, q * sc);
	}
}

/*
 * What every rank of a compressed collNet all-reduce holds, and the bound docs/compression.md
 * states for each element; returns the number of elements outside it (0 expected).
 * PTS: each contribution sparsified once (tau_r = ||g_r||_1 / (density n), kept with
 * probability min(1, |g|/tau_r), as g or sign(g) tau_r), accumulated in rank order in fp32,
 * rounded once; |error| <= sum_r tau_r (+ rounding).
 * LSQ: each contribution quantized per block, summed in rank order (one rounding per addition),
 * the sum quantized again; |error| <= sum_r s_r + s_sum (+ rounding).
 */
static size_t fake_compressed_allreduce(const struct bench_cfg *cfg, int mode, double density,
					int bits, void *recv, size_t count, void *scratch)
{
	const struct bench_dtype *dt = cfg->dt;
	const int n = cfg->nranks;
	const size_t B = 128;
	double *acc = calloc(count, sizeof(double)), *blk = malloc(B * sizeof(double));
	double *bound = calloc(count, sizeof(double)), *exact = calloc(count, sizeof(double));
	size_t bad = 0;
	if (!acc || !blk || !bound || !exact) {
		free(acc), free(blk), free(bound), free(exact);
		return count; /* fails the row loudly */
	}
	double tau_sum = 0;
	for (int p = 0; p < n; p++) {
		bench_fill(cfg, BENCH_ALLREDUCE, p, scratch, count);
		double l1 = 0;
		for (size_t i = 0; i < count; i++) {
			double g = bench_load_f(dt, scratch, i);
			l1 += fabs(g);
			exact[i] += g;
		}
		double tau = l1 / (density * (double)count);
		tau_sum += mode == BENCH_CN_PTS ? tau : 0;
		for (size_t b0 = 0; b0 < count; b0 += B) {
			size_t m = b0 + B < count ? B : count - b0;
			double mx = 0;
			for (size_t i = 0; i < m; i++) {
				blk[i] = bench_load_f(dt, scratch, b0 + i);
				mx = fmax(mx, fabs(blk[i]));
			}
			if (mode == BENCH_CN_LSQ) {
				fake_lsq(dt, blk, m, bits, cfg->seed, 1, p, b0);
				for (size_t i = 0; i < m; i++) {
					bound[b0 + i] += mx / ((1 << (bits - 1)) - 1);
					acc[b0 + i] =
						p ? fake_round(dt, (double)(float)(acc[b0 + i] +
										   blk[i]))
						  : blk[i];
				}
				continue;
			}
			for (size_t i = 0; i < m; i++) {
				double g = blk[i], a = fabs(g), v = g;
				if (a < tau)
					v = fake_u(cfg->seed, 2, p, b0 + i) * tau < a
						    ? copysign(tau, g)
						    : 0;
				acc[b0 + i] = (double)(float)(acc[b0 + i] + v);
			}
		}
	}
	for (size_t b0 = 0; b0 < count; b0 += B) {
		size_t m = b0 + B < count ? B : count - b0;
		if (mode == BENCH_CN_LSQ) {
			double mx = 0;
			for (size_t i = 0; i < m; i++)
				mx = fmax(mx, fabs(acc[b0 + i]));
			fake_lsq(dt, acc + b0, m, bits, cfg->seed, 3, 0, b0);
			for (size_t i = 0; i < m; i++)
				bound[b0 + i] += mx / ((1 << (bits - 1)) - 1);
		}
		for (size_t i = 0; i < m; i++) {
			size_t k = b0 + i;
			bench_store_f(dt, recv, k, acc[k]);
			double eps = dt->nccl == 7 ? 1.2e-7 : dt->nccl == 9 ? 7.9e-3 : 9.8e-4;
			double b = (bound[k] + tau_sum) * 1.01 +
				   (fabs(exact[k]) + bound[k] + tau_sum) * eps * (n + 3) + 1e-30;
			bad += !(fabs(bench_load_f(dt, recv, k) - exact[k]) <= b);
		}
	}
	free(acc), free(blk), free(bound), free(exact);
	return bad;
}

/* NCCL's log: what rank 0 of a communicator writes for each all-reduce it enqueues. */
static void fake_algo_log(FILE *log, const char *algo, size_t bytes, int times)
{
	for (int k = 0; log && k < times; k++)
		fprintf(log,
			"fake:%d:%d [0] NCCL INFO AllReduce: %zu Bytes -> Algo %s proto SIMPLE "
			"channel{Lo..Hi}={0..1}\n",
			(int)getpid(), (int)getpid(), bytes, algo);
}

/* The plugin's finalize records (docs/counters.md), one line per write as the plugin does. */
static void fake_stats(const char *path, int rank, const uint64_t *msg, const uint64_t *lg,
		       const uint64_t *wire, const char *dtype)
{
	FILE *f = fopen(path, "a");
	if (!f)
		return;
	/* the net side's own counters: not collNet's, must not count */
	fprintf(f,
		"{\"ts\":1.000,\"event\":\"finalize\",\"pid\":%d,\"host\":\"h%d\","
		"\"comm\":\"0x5eed\",\"dir\":\"send\",\"func\":\"Send\",\"dtype\":\"%s\","
		"\"messages\":7,\"logical_bytes\":700,\"wire_bytes\":700,\"ratio\":1.0000,"
		"\"codec_us\":0.0}\n",
		(int)getpid(), rank, dtype);
	for (int m = 0; m < BENCH_CN_NMODES; m++)
		if (msg[m])
			fprintf(f,
				"{\"ts\":1.000,\"event\":\"finalize\",\"pid\":%d,\"host\":"
				"\"h%d\",\"comm\":\"0x5eed:collnet-%s\",\"dir\":\"send\",\"func\":"
				"\"AllReduce\",\"dtype\":\"%s\",\"messages\":%llu,"
				"\"logical_bytes\":%llu,\"wire_bytes\":%llu,\"ratio\":%.4f,"
				"\"codec_us\":1.0}\n",
				(int)getpid(), rank, bench_cn_mode_name(m), dtype,
				(unsigned long long)msg[m], (unsigned long long)lg[m],
				(unsigned long long)wire[m],
				wire[m] ? (double)lg[m] / (double)wire[m] : 0.0);
	fclose(f);
}

int bench_fake_child_main(struct bench_cfg *cfg)
{
	const int me = cfg->child_rank, fd = cfg->child_out_fd;
	const bool rc = cfg->child_transport != BENCH_SOCKET;
	char id[BENCH_ID_BYTES];
	struct bench_hello h;
	memset(&h, 0, sizeof(h));
	if (check_env(cfg, h.text, sizeof(h.text)))
		return 1;

	if (me == 0) {
		uint64_t x = bench_hash64((uint64_t)getpid() ^ ((uint64_t)time(NULL) << 20));
		for (int i = 0; i < BENCH_ID_BYTES; i += 8) {
			x = bench_hash64(x);
			memcpy(id + i, &x, 8);
		}
		if (bench_msg_send(fd, BENCH_MSG_ID, me, id, sizeof(id)))
			return 1;
	} else if (bench_child_read_id(cfg->child_in_fd, id)) {
		return 1;
	}
	h.nccl_version = 0;
	h.a2a_native = cfg->a2a != BENCH_A2A_P2P;
	h.id_hash = bench_id_hash(id);
	if (bench_msg_send(fd, BENCH_MSG_HELLO, me, &h, sizeof(h)))
		return 1;

	const char *bits_env = rc ? getenv("RCMOE_A2A_BITS") : NULL;
	int bits = bits_env ? atoi(bits_env) : 0;
	/* collNet: what the environment asks for, as the parent reads it; nocollnet: NCCL kept
	 * all-reduce on its ring (the whole run, whichever rank was named) */
	extern char **environ;
	struct bench_run *cn = calloc(1, sizeof(*cn));
	if (!cn)
		return 1;
	bench_cn_expect(cfg, cn, environ);
	const bool nocn = cfg->fail_mode == BENCH_FAIL_NOCOLLNET;
	const bool via_cn = cn->cn_enabled && bench_cn_dtype_ok(cfg) && !nocn;
	const char *dens_env = getenv("RCMOE_AR_DENSITY"), *arb_env = getenv("RCMOE_AR_BITS");
	double density = dens_env ? atof(dens_env) : 0;
	int ar_bits = arb_env ? atoi(arb_env) : 0;
	uint64_t cn_msg[BENCH_CN_NMODES] = { 0 }, cn_lg[BENCH_CN_NMODES] = { 0 },
		 cn_wire[BENCH_CN_NMODES] = { 0 };
	const char *logpath = getenv("NCCL_DEBUG_FILE");
	FILE *log = logpath ? fopen(logpath, "w") : NULL;
	if (log)
		setvbuf(log, NULL, _IOLBF, 0); /* as NCCL does: whole lines reach the file */
	if (log && nocn && cn->cn_enabled && me == cfg->fail_rank)
		fprintf(log,
			"fake:%d:%d [0] NCCL WARN simulated (--selftest-fail nocollnet): "
			"CollNet not used\n",
			(int)getpid(), (int)getpid());
	const char *me_log = me == 0 ? "" : NULL; /* only rank 0 logs the algorithm */
	size_t maxbytes = FAKE_CHECK_MAX;
	char *recv = malloc(maxbytes), *scratch = malloc(maxbytes);
	if (!recv || !scratch)
		return 1;

	int row = 0;
	for (int o = 0; o < cfg->nops; o++) {
		int op = cfg->ops[o];
		for (int s = 0; s < cfg->nsizes; s++) {
			size_t count, pp;
			size_t bytes = bench_op_shape(cfg, op, cfg->sizes[s], &count, &pp);
			if (!bytes)
				continue;
			if (me == cfg->fail_rank && row == 1) {
				const char msg[] = "simulated failure (--selftest-fail)";
				switch (cfg->fail_mode) {
				case BENCH_FAIL_CRASH: raise(SIGSEGV); break;
				case BENCH_FAIL_HANG:
					for (;;)
						pause();
				case BENCH_FAIL_ERROR:
					bench_msg_send(fd, BENCH_MSG_ERROR, me, msg,
						       sizeof(msg) - 1);
					return 1;
				case BENCH_FAIL_EXIT: _exit(3);
				}
			}
			struct bench_row_msg m;
			memset(&m, 0, sizeof(m));
			m.op = o;
			m.size_idx = s;
			m.bytes = bytes;
			m.count = count;
			/* Socket ~1.5 GB/s busbw; RCMoE faster, by the compression when lossy. */
			double bw = rc ? 2.0 : 1.5;
			if (rc && bits && bench_lossy(cfg) && op != BENCH_ALLREDUCE)
				bw *= 8.0 * cfg->dt->size / bits * 0.9;
			/* collNet all-reduce: the mode of this size, its calls and bytes */
			int ar_mode = -1;
			if (op == BENCH_ALLREDUCE && via_cn) {
				ar_mode =
					bytes >= cn->cn_min_bytes ? cn->cn_mode : BENCH_CN_LOSSLESS;
				double ratio = ar_mode == BENCH_CN_PTS ? fmin(0.5 / density, 100)
					       : ar_mode == BENCH_CN_LSQ
						       ? 8.0 * cfg->dt->size / ar_bits
						       : 1.0;
				bw = 2.2 * fmin(ratio, 40) * (ratio > 1 ? 0.5 : 1);
				int ops =
					cfg->warmup + cfg->iters + (cfg->check != BENCH_CHECK_NONE);
				uint64_t calls = bytes / 262144 ? bytes / 262144 : 1;
				uint64_t lg = (uint64_t)((double)bytes * 2 * (n_ranks(cfg) - 1) /
							 n_ranks(cfg));
				cn_msg[ar_mode] += calls * (uint64_t)ops;
				cn_lg[ar_mode] += lg * (uint64_t)ops;
				cn_wire[ar_mode] += (uint64_t)((double)lg / ratio) * (uint64_t)ops;
			}
			if (op == BENCH_ALLREDUCE && me_log)
				fake_algo_log(log, via_cn ? "COLLNET_CHAIN" : "RING", bytes,
					      cfg->warmup + cfg->iters +
						      (cfg->check != BENCH_CHECK_NONE));
			double f = bench_busbw_factor(op, cfg->nranks);
			m.time_us = 20.0 + (double)bytes * f / (bw * 1e3) * (1.0 + 0.01 * me);
			if (cfg->check != BENCH_CHECK_NONE && bytes <= maxbytes) {
				simulate(cfg, op, me, recv, count, scratch);
				if (ar_mode > BENCH_CN_LOSSLESS && bench_lossy(cfg)) {
					size_t bad = fake_compressed_allreduce(
						cfg, ar_mode, density, ar_bits, recv, count,
						scratch);
					if (bad) {
						char msg[160];
						snprintf(msg, sizeof(msg),
							 "simulated %s all-reduce: %zu of %zu "
							 "elements outside the stated bound",
							 bench_cn_mode_name(ar_mode), bad, count);
						bench_msg_send(fd, BENCH_MSG_ERROR, me, msg,
							       strlen(msg));
						return 1;
					}
				}
				if (bits && bench_lossy(cfg) && op != BENCH_ALLREDUCE)
					quantize(cfg->dt, recv, count, bits);
				if (me == cfg->fail_rank && cfg->fail_mode == BENCH_FAIL_WRONG) {
					size_t k = count / 2;
					if (cfg->dt->is_float)
						bench_store_f(cfg->dt, recv, k,
							      bench_load_f(cfg->dt, recv, k) + 64);
					else
						bench_store_u(cfg->dt, recv, k,
							      bench_load_u(cfg->dt, recv, k) + 1);
				}
				bench_check(cfg, op, me, recv, count, &m.chk);
			}
			usleep(2000);
			if (bench_msg_send(fd, BENCH_MSG_ROW, me, &m, sizeof(m)))
				return 1;
			row++;
		}
	}
	free(recv);
	free(scratch);
	if (log)
		fclose(log);
	const char *stats = getenv("RCMOE_STATS_FILE");
	if (stats && rc)
		fake_stats(stats, me, cn_msg, cn_lg, cn_wire,
			   cfg->dt->nccl == 7   ? "ncclFloat32"
			   : cfg->dt->nccl == 9 ? "ncclBfloat16"
						: "ncclFloat16");
	free(cn);
	bench_msg_send(fd, BENCH_MSG_DONE, me, NULL, 0);
	return 0;
}
