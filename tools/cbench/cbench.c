/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rcmoe-cbench: the CPU codecs (what the plugin runs on its codec workers for host
 * buffers) against memcpy of the same bytes in the same run. For each codec (LSQ at 8, 4 and
 * 2 bits; PTS at --density; window dedup, lossless and with 8-bit LSQ, on rows of which --dup
 * repeat, sent in messages of the size), dtype and size: encode and decode throughput in GB/s
 * of uncompressed bytes, each as a fraction of memcpy (bytes copied per second), the
 * compression ratio and the relative L2 error, medians of --reps repetitions.
 *
 *   rcmoe-cbench [-b MINBYTES] [-e MAXBYTES] [-f FACTOR] [--reps N] [--json FILE]
 *                [--isa auto|portable|avx2|avx512] [--codec lsq,pts,wdedup] [--density D] [--dup F]
 *                [--threads N]
 *
 * With --threads N > 1, each LSQ and PTS row is followed by one of N threads encoding and
 * decoding their own copies at once: the aggregate GB/s the CPU codec workers of one process
 * (RCMOE_CPU_CODEC_THREADS) can reach on this machine.
 */
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec_internal.h"
#include "codec_math.h"
#include "rcmoe/codec.h"
#include "rcmoe/log.h"
#include "rcmoe/wdedup.h"

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(double), cmp_double);
	return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static size_t parse_size(const char *s)
{
	char *end;
	double v = strtod(s, &end);
	switch (*end) {
	case 'K':
	case 'k': v *= 1024; break;
	case 'M':
	case 'm': v *= 1024 * 1024; break;
	case 'G':
	case 'g': v *= 1024.0 * 1024 * 1024; break;
	default: break;
	}
	return (size_t)v;
}

/* Gaussian rows (Box-Muller on a hash), rows of 1024 with magnitudes 1..7. */
static void fill(void *buf, size_t n, int dtype)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t h = rcmoe_mix64(i * 2 + 1);
		double u1 = ((h >> 11) + 1.0) / 9007199254740993.0;
		double u2 = (rcmoe_mix64(h) >> 11) / 9007199254740992.0;
		float v = (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
		v *= (float)(1 + (i / 1024) % 7);
		uint32_t raw = rcmoe_from_f32(dtype, v);
		if (dtype == RCMOE_DT_FP32)
			memcpy((char *)buf + 4 * i, &raw, 4);
		else {
			uint16_t r = (uint16_t)raw;
			memcpy((char *)buf + 2 * i, &r, 2);
		}
	}
}

static double rel_l2(const void *a, const void *b, size_t n, int dtype)
{
	double num = 0, den = 0;
	size_t es = rcmoe_dtype_size(dtype);
	for (size_t i = 0; i < n; i++) {
		uint32_t ra = 0, rb = 0;
		memcpy(&ra, (const char *)a + es * i, es);
		memcpy(&rb, (const char *)b + es * i, es);
		double x = rcmoe_to_f32(dtype, ra), y = rcmoe_to_f32(dtype, rb);
		num += (x - y) * (x - y);
		den += x * x;
	}
	return den > 0 ? sqrt(num / den) : 0;
}

struct bench {
	int reps;
	FILE *jf;
	int first;
	double dup;  /* window dedup: fraction of repeated rows */
	int threads; /* > 1: also encode and decode on this many threads at once */
};

/* One thread of a multi-thread row: its own copy of the input, reps encodes and decodes. */
struct mt_arg {
	const struct rcmoe_codec_cfg *cfg;
	const char *src;
	size_t n, bytes;
	int reps;
	pthread_barrier_t *start;
	double enc_s, dec_s; /* wall time of its encodes, of its decodes */
	int failed;
};

static void *mt_run(void *p)
{
	struct mt_arg *a = p;
	struct rcmoe_codec_cfg cfg = *a->cfg;
	size_t cap = rcmoe_codec_bound(&cfg, a->n), len = 0, got = 0;
	char *in = malloc(a->bytes), *enc = malloc(cap), *out = malloc(a->bytes);
	a->failed = !in || !enc || !out;
	if (!a->failed) {
		memcpy(in, a->src, a->bytes);
		memset(out, 0, a->bytes);
	}
	pthread_barrier_wait(a->start);
	for (int r = 0; r < a->reps && !a->failed; r++) {
		double t0 = now_s();
		a->failed |= rcmoe_codec_encode(&cfg, in, a->n, enc, cap, &len) != RCMOE_OK;
		double t1 = now_s();
		a->failed |= !a->failed &&
			     (rcmoe_codec_decode(enc, len, out, a->bytes, &got) != RCMOE_OK ||
			      got != a->bytes);
		a->enc_s += t1 - t0;
		a->dec_s += now_s() - t1;
	}
	free(in);
	free(enc);
	free(out);
	return NULL;
}

/* The aggregate rate of b->threads threads each encoding and decoding its own copy (the CPU
 * codec workers of one process, RCMOE_CPU_CODEC_THREADS): bytes of all threads over the slowest
 * thread's time. Returns 0, or 1 when a codec call failed. */
static int row_threads(struct bench *b, const struct rcmoe_codec_cfg *cfg, const char *setting,
		       const char *src, size_t n, int dtype)
{
	int T = b->threads, failed = 0;
	size_t bytes = n * rcmoe_dtype_size(dtype);
	pthread_t *tid = calloc((size_t)T, sizeof(*tid));
	struct mt_arg *a = calloc((size_t)T, sizeof(*a));
	pthread_barrier_t start;
	if (!tid || !a || pthread_barrier_init(&start, NULL, (unsigned)T) != 0) {
		free(tid);
		free(a);
		return 1;
	}
	for (int t = 0; t < T; t++) {
		a[t] = (struct mt_arg){ .cfg = cfg,
					.src = src,
					.n = n,
					.bytes = bytes,
					.reps = b->reps,
					.start = &start };
		if (pthread_create(&tid[t], NULL, mt_run, &a[t]) != 0) {
			fprintf(stderr, "rcmoe-cbench: cannot start thread %d of %d\n", t, T);
			exit(1); /* the barrier would wait for it forever */
		}
	}
	double enc = 0, dec = 0;
	for (int t = 0; t < T; t++) {
		pthread_join(tid[t], NULL);
		failed |= a[t].failed;
		enc = a[t].enc_s > enc ? a[t].enc_s : enc;
		dec = a[t].dec_s > dec ? a[t].dec_s : dec;
	}
	pthread_barrier_destroy(&start);
	if (!failed) {
		double e = (double)bytes * b->reps * T / enc / 1e9;
		double d = (double)bytes * b->reps * T / dec / 1e9;
		printf(" %11zu %5s %4s %6s %9s %9.2f %6s %9.2f %6s %7s %8s  (%d threads)\n", bytes,
		       dtype == RCMOE_DT_BF16 ? "bf16" : "fp32",
		       cfg->codec == RCMOE_CODEC_LSQ ? "lsq" : "pts", setting, "-", e, "-", d, "-",
		       "-", "-", T);
		if (b->jf)
			fprintf(b->jf,
				"%s{\"bytes\":%zu,\"dtype\":\"%s\",\"codec\":\"%s\","
				"\"setting\":\"%s\",\"threads\":%d,\"encode_gbs\":%.3f,"
				"\"decode_gbs\":%.3f}",
				b->first ? "" : ",", bytes,
				dtype == RCMOE_DT_BF16 ? "bf16" : "fp32",
				cfg->codec == RCMOE_CODEC_LSQ ? "lsq" : "pts", setting, T, e, d);
		b->first = 0;
	}
	free(tid);
	free(a);
	return failed;
}

/* One row: encode and decode of n elements of src with cfg, against memcpy of the same bytes;
 * `setting` names the bits or the density. Returns 0, or 1 when the codec failed. */
static int row(struct bench *b, struct rcmoe_codec_cfg *cfg, const char *setting, const char *src,
	       char *out, char *cp, size_t n, int dtype)
{
	size_t bytes = n * rcmoe_dtype_size(dtype);
	size_t cap = rcmoe_codec_bound(cfg, n), len = 0, got = 0;
	char *enc = malloc(cap);
	double tc[64], te[64], td[64];
	int k = b->reps < 64 ? b->reps : 64;
	if (!enc)
		return 1;
	for (int r = 0; r < k; r++) {
		double t0 = now_s();
		memcpy(cp, src, bytes);
		double t1 = now_s();
		if (cfg->codec == RCMOE_CODEC_LSQ)
			cfg->u.lsq.op_id = (uint64_t)r;
		else
			cfg->u.pts.op_id = (uint64_t)r;
		if (rcmoe_codec_encode(cfg, src, n, enc, cap, &len) != RCMOE_OK)
			goto fail;
		double t2 = now_s();
		if (rcmoe_codec_decode(enc, len, out, bytes, &got) != RCMOE_OK || got != bytes)
			goto fail;
		double t3 = now_s();
		tc[r] = t1 - t0;
		te[r] = t2 - t1;
		td[r] = t3 - t2;
	}
	double copy = bytes / median(tc, k) / 1e9;
	double e = bytes / median(te, k) / 1e9, d = bytes / median(td, k) / 1e9;
	double err = rel_l2(src, out, n, dtype);
	const char *codec = cfg->codec == RCMOE_CODEC_LSQ ? "lsq" : "pts";
	const char *type = dtype == RCMOE_DT_BF16 ? "bf16" : "fp32";
	printf(" %11zu %5s %4s %6s %9.2f %9.2f %6.2f %9.2f %6.2f %7.2f %8.4f\n", bytes, type, codec,
	       setting, copy, e, e / copy, d, d / copy, (double)bytes / len, err);
	if (b->jf)
		fprintf(b->jf,
			"%s{\"bytes\":%zu,\"dtype\":\"%s\",\"codec\":\"%s\",\"setting\":\"%s\","
			"\"memcpy_gbs\":%.3f,\"encode_gbs\":%.3f,\"decode_gbs\":%.3f,"
			"\"ratio\":%.4f,\"rel_l2\":%.6f}",
			b->first ? "" : ",", bytes, type, codec, setting, copy, e, d,
			(double)bytes / len, err);
	b->first = 0;
	free(enc);
	return 0;
fail:
	free(enc);
	return 1;
}

/* Window dedup as the all-to-all path runs it: `bytes` to one peer in messages of `msg` bytes
 * against an 8 MiB window (RCMOE_DEDUP_WINDOW's default), blocks of 128 elements, rows of 7168
 * elements of which a fraction `dup` repeat one of the previous 512 rows (within the window);
 * lossless (bits 0) or LSQ-composed. The first pass fills the windows and is not timed; each of
 * the --reps passes after it (a new operation each) is timed as the sum over its messages, so
 * the occasional rebuild of the sender's dictionary counts, and the medians are over passes. */
static int row_wdedup(struct bench *b, const char *src, size_t bytes, int dtype, int bits,
		      size_t msg)
{
	size_t es = rcmoe_dtype_size(dtype), rowb = 7168 * es, nrows = bytes / rowb;
	char *in = malloc(bytes), *out = malloc(bytes), *cp = malloc(msg);
	struct rcmoe_wdedup_tx tx;
	struct rcmoe_wdedup_rx rx;
	struct rcmoe_wdedup_cfg cfg = { .block_bytes = (uint32_t)(128 * es) };
	if (bits)
		cfg.lsq = (struct rcmoe_lsq_cfg){
			.dtype = dtype, .bits = bits, .block = 128, .seed = 1
		};
	size_t cap = rcmoe_wdedup_bound(msg, &cfg), nmsg = bytes / msg, wire = 0;
	char *enc = malloc(cap), *scratch = malloc(2 * msg);
	int reps = b->reps < 16 ? b->reps : 16, failed = 1;
	double *tc = malloc(sizeof(double) * nmsg * reps),
	       *te = malloc(sizeof(double) * nmsg * reps),
	       *td = malloc(sizeof(double) * nmsg * reps);
	if (!in || !out || !cp || !enc || !scratch ||
	    rcmoe_wdedup_tx_init(&tx, 8 << 20, (uint32_t)(128 * es)) != RCMOE_OK ||
	    rcmoe_wdedup_rx_init(&rx, 8 << 20, (uint32_t)(128 * es)) != RCMOE_OK)
		goto out;
	memcpy(in, src, bytes);
	uint64_t x = 0x9e3779b97f4a7c15ull;
	size_t dups = 0;
	for (size_t r = 1; r < nrows; r++) {
		x = rcmoe_mix64(x);
		if ((double)(x >> 11) / 9007199254740992.0 < b->dup) {
			size_t back = 1 + (rcmoe_mix64(x) % (r < 512 ? r : 512));
			memcpy(in + r * rowb, in + (r - back) * rowb, rowb);
			dups++;
		}
	}
	for (int pass = 0; pass <= reps; pass++) {
		cfg.op = cfg.op_id = (uint64_t)pass + 1;
		cfg.lsq.op_id = cfg.op;
		double c = 0, e = 0, d = 0;
		for (size_t m = 0; m < nmsg; m++) {
			size_t len = 0, got = 0;
			int committed = 0;
			const char *why = NULL;
			double t0 = now_s();
			memcpy(cp, in + m * msg, msg);
			double t1 = now_s();
			if (rcmoe_wdedup_encode(&tx, &cfg, in + m * msg, msg, enc, cap, &len,
						&committed) != RCMOE_OK)
				goto out;
			double t2 = now_s();
			if (!committed) { /* longer than the bytes: the plugin sends them raw */
				memcpy(out + m * msg, in + m * msg, msg);
				len = msg;
			} else if (rcmoe_wdedup_decode(&rx, enc, len, out + m * msg, msg, scratch,
						       2 * msg, &got, &why) != RCMOE_OK) {
				fprintf(stderr, "rcmoe-cbench: wdedup decode: %s\n",
					why ? why : "");
				goto out;
			}
			double t3 = now_s();
			c += t1 - t0;
			e += t2 - t1;
			d += t3 - t2;
			wire += pass > 0 ? len : 0;
		}
		if (pass > 0) {
			tc[pass - 1] = c;
			te[pass - 1] = e;
			td[pass - 1] = d;
		}
	}
	double copy = (double)(nmsg * msg) / median(tc, reps) / 1e9;
	double e = (double)(nmsg * msg) / median(te, reps) / 1e9;
	double d = (double)(nmsg * msg) / median(td, reps) / 1e9;
	double ratio = (double)(nmsg * reps * msg) / wire;
	double err = bits ? rel_l2(in, out, nmsg * msg / es, dtype) : 0;
	if (!bits && memcmp(in, out, nmsg * msg) != 0) {
		fprintf(stderr, "rcmoe-cbench: lossless window dedup did not round-trip\n");
		goto out;
	}
	char setting[32];
	snprintf(setting, sizeof(setting), "%.2f/%d", (double)dups / (nrows - 1), bits);
	const char *type = dtype == RCMOE_DT_BF16 ? "bf16" : "fp32";
	printf(" %11zu %5s %4s %6s %9.2f %9.2f %6.2f %9.2f %6.2f %7.2f %8.4f\n", msg, type, "wdd",
	       setting, copy, e, e / copy, d, d / copy, ratio, err);
	if (b->jf)
		fprintf(b->jf,
			"%s{\"bytes\":%zu,\"dtype\":\"%s\",\"codec\":\"wdedup\",\"dup\":%.4f,"
			"\"bits\":%d,\"memcpy_gbs\":%.3f,\"encode_gbs\":%.3f,\"decode_gbs\":%.3f,"
			"\"ratio\":%.4f,\"rel_l2\":%.6f}",
			b->first ? "" : ",", msg, type, (double)dups / (nrows - 1), bits, copy, e,
			d, ratio, err);
	b->first = 0;
	failed = 0;
out:
	rcmoe_wdedup_tx_free(&tx);
	rcmoe_wdedup_rx_free(&rx);
	free(in);
	free(out);
	free(cp);
	free(enc);
	free(scratch);
	return failed;
}

int main(int argc, char **argv)
{
	size_t minb = 64 << 10, maxb = 64 << 20;
	double factor = 4, density = 0.01;
	struct bench b = { .reps = 5, .first = 1, .dup = 0.25, .threads = 1 };
	const char *json = NULL, *isa = "auto", *codecs = "lsq";
	static const struct option opts[] = { { "reps", required_argument, NULL, 'r' },
					      { "isa", required_argument, NULL, 'i' },
					      { "json", required_argument, NULL, 'j' },
					      { "codec", required_argument, NULL, 'c' },
					      { "density", required_argument, NULL, 'd' },
					      { "dup", required_argument, NULL, 'u' },
					      { "threads", required_argument, NULL, 't' },
					      { "help", no_argument, NULL, 'h' },
					      { NULL, 0, NULL, 0 } };
	int c;
	while ((c = getopt_long(argc, argv, "b:e:f:h", opts, NULL)) != -1) {
		switch (c) {
		case 'b': minb = parse_size(optarg); break;
		case 'e': maxb = parse_size(optarg); break;
		case 'f': factor = atof(optarg); break;
		case 'r': b.reps = atoi(optarg); break;
		case 'j': json = optarg; break;
		case 'i': isa = optarg; break;
		case 'c': codecs = optarg; break;
		case 'd': density = atof(optarg); break;
		case 'u': b.dup = atof(optarg); break;
		case 't': b.threads = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: rcmoe-cbench [-b 64K] [-e 64M] [-f 4] [--reps 5] "
					"[--json FILE] [--isa auto|portable|avx2|avx512] "
					"[--codec lsq,pts,wdedup] [--density 0.01] [--dup 0.25] "
					"[--threads N]\n");
			return c == 'h' ? 0 : 2;
		}
	}
	int do_lsq = strstr(codecs, "lsq") != NULL, do_pts = strstr(codecs, "pts") != NULL;
	int do_wdd = strstr(codecs, "wdedup") != NULL;
	if (minb < 4096 || maxb < minb || factor <= 1 || b.reps < 1 ||
	    !(do_lsq || do_pts || do_wdd) || !(density > 0 && density <= 1) ||
	    !(b.dup >= 0 && b.dup <= 1) || b.threads < 1 || b.threads > 256) {
		fprintf(stderr,
			"rcmoe-cbench: bad sizes, repetitions, codec, density, dup or threads\n");
		return 2;
	}
	int want = !strcmp(isa, "portable") ? RCMOE_CPU_ISA_PORTABLE
		   : !strcmp(isa, "avx2")   ? RCMOE_CPU_ISA_AVX2
		   : !strcmp(isa, "avx512") ? RCMOE_CPU_ISA_AVX512
		   : !strcmp(isa, "auto")   ? RCMOE_CPU_ISA_AUTO
					    : -1;
	if (want < 0 || !rcmoe_cpu_set_isa(want)) {
		fprintf(stderr, "rcmoe-cbench: --isa %s: unknown, or this CPU lacks it\n", isa);
		return 2;
	}
	rcmoe_log_set(rcmoe_log_stderr);
	b.jf = json ? fopen(json, "w") : NULL;
	if (json && !b.jf) {
		perror(json);
		return 1;
	}
	if (b.jf)
		fprintf(b.jf, "{\"tool\":\"rcmoe-cbench\",\"isa\":\"%s\",\"rows\":[", isa);
	printf("# rcmoe-cbench: the CPU codecs (host buffers), one thread, isa %s, medians of %d; "
	       "fractions are of memcpy in the same run (bytes copied per second)\n",
	       isa, b.reps);
	if (b.threads > 1)
		printf("# rows marked (N threads): N threads coding their own copies at once, %d "
		       "times each; all their bytes over the slowest thread's time\n",
		       b.reps);
	printf("#%11s %5s %4s %6s %9s %9s %6s %9s %6s %7s %8s\n", "size(B)", "type", "code",
	       "bits/d", "memcpy", "encode", "xcopy", "decode", "xcopy", "ratio", "relL2");
	static const int bits_list[] = { 8, 4, 2 };
	static const int dtypes[] = { RCMOE_DT_BF16, RCMOE_DT_FP32 };
	int failed = 0;
	/* window dedup: one peer's 16 MiB slice of a 64 MiB all-to-all among 4 ranks, per dtype */
	const size_t slice = 16 << 20;
	char *slices[2] = { NULL, NULL };
	for (int di = 0; di < 2 && do_wdd; di++) {
		slices[di] = malloc(slice);
		if (!slices[di])
			return 1;
		fill(slices[di], slice / rcmoe_dtype_size(dtypes[di]), dtypes[di]);
	}
	for (size_t bytes = minb; bytes <= maxb && !failed; bytes = (size_t)(bytes * factor)) {
		for (int di = 0; di < 2 && !failed; di++) {
			int dtype = dtypes[di];
			size_t n = bytes / rcmoe_dtype_size(dtype);
			char *src = malloc(bytes), *out = malloc(bytes), *cp = malloc(bytes);
			if (!src || !out || !cp)
				return 1;
			fill(src, n, dtype);
			for (int bi = 0; bi < 3 && do_lsq && !failed; bi++) {
				struct rcmoe_codec_cfg cfg = { .codec = RCMOE_CODEC_LSQ };
				cfg.u.lsq = (struct rcmoe_lsq_cfg){ .dtype = dtype,
								    .bits = bits_list[bi],
								    .block = 128,
								    .seed = 1 };
				char setting[16];
				snprintf(setting, sizeof(setting), "%d", bits_list[bi]);
				failed = row(&b, &cfg, setting, src, out, cp, n, dtype);
				if (!failed && b.threads > 1)
					failed = row_threads(&b, &cfg, setting, src, n, dtype);
			}
			if (do_pts && !failed) {
				struct rcmoe_codec_cfg cfg = { .codec = RCMOE_CODEC_PTS };
				cfg.u.pts = (struct rcmoe_pts_cfg){ .dtype = dtype,
								    .density = density,
								    .seed = 1 };
				char setting[16];
				snprintf(setting, sizeof(setting), "%g", density);
				failed = row(&b, &cfg, setting, src, out, cp, n, dtype);
				if (!failed && b.threads > 1)
					failed = row_threads(&b, &cfg, setting, src, n, dtype);
			}
			for (int bits = 0; bits <= 8 && do_wdd && !failed && bytes <= slice;
			     bits += 8)
				failed = row_wdedup(&b, slices[di], slice, dtype, bits, bytes);
			free(src);
			free(out);
			free(cp);
		}
	}
	free(slices[0]);
	free(slices[1]);
	if (b.jf) {
		fprintf(b.jf, "]}\n");
		fclose(b.jf);
	}
	if (failed)
		fprintf(stderr, "rcmoe-cbench: a codec call failed\n");
	return failed;
}
