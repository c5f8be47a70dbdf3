/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rcmoe-kbench: throughput of the codec kernels against the device-to-device copy bandwidth
 * measured in the same program, and their compression ratio and error on realistic data.
 *
 * Throughput is uncompressed bytes per second on both sides: a codec that encodes (or decodes
 * to) S bytes of elements in t seconds runs at S/t; a copy of S bytes in t seconds runs at S/t
 * (it moves 2S bytes through memory). "x copy" is the ratio of the two at the same size, timed
 * the same way (median of per-iteration CUDA events around the launcher, launch included).
 *
 *   rcmoe-kbench [-b 64K] [-e 1G] [-f 4] [-n 20] [-w 3] [-c lsq,pts,dedup] [-d bf16,fp16,fp32]
 *                [-B 128] [-r 0.01] [-C 16384] [--row 8192] [--dup 0.25] [-E 16M] [-J out.json]
 */
#include <cuda_runtime_api.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rcmoe/codec.h"
#include "rcmoe/kernels.h"
#include "rcmoe/log.h"
#include "kbench_data.h"

#define MAX_ITERS 1000

enum { C_LSQ = 1, C_PTS = 2, C_DEDUP = 4 };

struct opts {
	size_t min, max, err_elems;
	int factor, iters, warmup, codecs, dtypes[3], ndtypes;
	uint32_t block, chunk, row;
	double density, dup;
	const char *json;
};

struct bufs {
	uint8_t *in, *stream, *out, *work, *tmp;
	size_t stream_cap, work_cap;
	cudaStream_t s;
	cudaEvent_t ev[2 * MAX_ITERS];
};

#define CUDA_OR_DIE(call)                                                                          \
	do {                                                                                       \
		cudaError_t e_ = (call);                                                           \
		if (e_ != cudaSuccess) {                                                           \
			fprintf(stderr, "rcmoe-kbench: %s: %s\n", #call, cudaGetErrorString(e_));  \
			exit(1);                                                                   \
		}                                                                                  \
	} while (0)

#define RC_OR_DIE(call)                                                                            \
	do {                                                                                       \
		rcmoe_status_t s_ = (call);                                                        \
		if (s_ != RCMOE_OK) {                                                              \
			fprintf(stderr, "rcmoe-kbench: %s: %s\n", #call, rcmoe_status_str(s_));    \
			exit(1);                                                                   \
		}                                                                                  \
	} while (0)

static FILE *json;
static int json_first = 1;

static size_t parse_size(const char *s)
{
	char *end;
	double v = strtod(s, &end);
	switch (*end) {
	case 'k':
	case 'K': v *= 1024; break;
	case 'm':
	case 'M': v *= 1024 * 1024; break;
	case 'g':
	case 'G': v *= 1024.0 * 1024 * 1024; break;
	default: break;
	}
	return (size_t)v;
}

static const char *dt_name(int dt)
{
	return dt == RCMOE_DT_BF16 ? "bf16" : dt == RCMOE_DT_FP16 ? "fp16" : "fp32";
}

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return (x > y) - (x < y);
}

/* Median seconds of `iters` runs of fn, each between two events. */
typedef void (*run_fn)(void *ctx);
static double time_median(struct bufs *b, const struct opts *o, run_fn fn, void *ctx)
{
	float ms[MAX_ITERS];
	for (int i = 0; i < o->warmup; i++)
		fn(ctx);
	for (int i = 0; i < o->iters; i++) {
		CUDA_OR_DIE(cudaEventRecord(b->ev[2 * i], b->s));
		fn(ctx);
		CUDA_OR_DIE(cudaEventRecord(b->ev[2 * i + 1], b->s));
	}
	CUDA_OR_DIE(cudaStreamSynchronize(b->s));
	for (int i = 0; i < o->iters; i++)
		CUDA_OR_DIE(cudaEventElapsedTime(&ms[i], b->ev[2 * i], b->ev[2 * i + 1]));
	qsort(ms, (size_t)o->iters, sizeof(float), cmp_float);
	return ms[o->iters / 2] * 1e-3;
}

struct ctx {
	struct bufs *b;
	size_t n, bytes;
	int dtype, npay;
	struct rcmoe_lsq_cfg lsq;
	struct rcmoe_pts_cfg pts;
	struct rcmoe_wire_header hdr[4];
	uint32_t row;
};

static void run_copy(void *p)
{
	struct ctx *c = p;
	CUDA_OR_DIE(
		cudaMemcpyAsync(c->b->out, c->b->in, c->bytes, cudaMemcpyDeviceToDevice, c->b->s));
}

static void run_lsq_enc(void *p)
{
	struct ctx *c = p;
	RC_OR_DIE(rcmoe_gpu_lsq_encode(c->b->in, c->n, &c->lsq, c->b->stream, c->b->stream_cap,
				       c->b->work, c->b->work_cap, c->b->s));
}

static void run_pts_enc(void *p)
{
	struct ctx *c = p;
	RC_OR_DIE(rcmoe_gpu_pts_encode(c->b->in, c->n, &c->pts, c->b->stream, c->b->stream_cap,
				       c->b->work, c->b->work_cap, c->b->s));
}

static void run_dedup_enc(void *p)
{
	struct ctx *c = p;
	RC_OR_DIE(rcmoe_gpu_dedup_encode(c->b->in, c->bytes, c->row, c->b->stream, c->b->stream_cap,
					 c->b->work, c->b->work_cap, c->b->s));
}

static void run_decode(void *p)
{
	struct ctx *c = p;
	RC_OR_DIE(rcmoe_gpu_decode(c->b->stream, &c->hdr[0], c->b->out, c->bytes, c->b->work,
				   c->b->work_cap, c->b->s));
}

static void run_accumulate(void *p)
{
	struct ctx *c = p;
	const void *ps[4] = { c->b->stream, c->b->stream, c->b->stream, c->b->stream };
	RC_OR_DIE(rcmoe_gpu_pts_accumulate(ps, c->hdr, c->npay, c->dtype, c->b->out, c->n,
					   c->b->work, c->b->work_cap, c->b->s));
}

/* Header of the stream just encoded; payloads up to 256 MiB are also fully validated on the
 * host (the full check costs a device-to-host copy of the stream). */
static uint64_t read_header(struct bufs *b, size_t dst_bytes, struct rcmoe_wire_header *h)
{
	uint8_t hb[RCMOE_WIRE_HEADER_BYTES];
	CUDA_OR_DIE(cudaStreamSynchronize(b->s));
	CUDA_OR_DIE(cudaMemcpy(hb, b->stream, sizeof(hb), cudaMemcpyDeviceToHost));
	RC_OR_DIE(rcmoe_wire_parse(hb, SIZE_MAX, h));
	uint64_t len = RCMOE_WIRE_HEADER_BYTES + h->payload_len;
	if (len <= (256u << 20)) {
		uint8_t *host = malloc(len);
		CUDA_OR_DIE(cudaMemcpy(host, b->stream, len, cudaMemcpyDeviceToHost));
		RC_OR_DIE(rcmoe_codec_validate(host, len, dst_bytes, h));
		free(host);
	}
	return len;
}

static void json_row(const char *section, const char *codec, int dtype, const char *param,
		     size_t bytes, double copy, double enc, double dec, double dec4, double ratio,
		     double rel_l2, double max_abs, const char *data)
{
	if (!json)
		return;
	fprintf(json,
		"%s\n  {\"section\": \"%s\", \"codec\": \"%s\", \"dtype\": \"%s\", \"param\": "
		"\"%s\", "
		"\"bytes\": %zu, \"copy_gbs\": %.3f, \"enc_gbs\": %.3f, \"dec_gbs\": %.3f, "
		"\"dec4_gbs\": %.3f, \"ratio\": %.4f, \"rel_l2\": %.6g, \"max_abs\": %.6g, "
		"\"data\": \"%s\"}",
		json_first ? "" : ",", section, codec, dtype ? dt_name(dtype) : "bytes", param,
		bytes, copy, enc, dec, dec4, ratio, rel_l2, max_abs, data);
	json_first = 0;
}

static void print_row(const char *codec, const char *dt, const char *param, size_t bytes,
		      double copy, double enc, double dec, double dec4, double ratio)
{
	char d4[32] = "     -";
	if (dec4 > 0)
		snprintf(d4, sizeof(d4), "%6.3f", dec4 / copy);
	printf("%-6s %-5s %-8s %11zu %9.1f %9.1f %6.3f %9.1f %6.3f %7s %7.3f\n", codec, dt, param,
	       bytes, copy, enc, enc / copy, dec, dec / copy, d4, ratio);
	fflush(stdout);
}

static void bench_size(struct bufs *b, const struct opts *o, size_t bytes)
{
	struct ctx c = { .b = b, .bytes = bytes };
	char param[32];
	double copy = bytes / time_median(b, o, run_copy, &c) / 1e9;

	for (int di = 0; di < o->ndtypes; di++) {
		int dt = o->dtypes[di];
		size_t es = rcmoe_dtype_size(dt);
		c.n = bytes / es;
		c.dtype = dt;
		c.bytes = c.n * es;
		CUDA_OR_DIE(kb_fill(b->in, c.n, dt, KB_GAUSS, 1234 + bytes, b->s));
		if (o->codecs & C_LSQ) {
			for (int bits = 8; bits >= 2; bits /= 2) {
				c.lsq = (struct rcmoe_lsq_cfg){
					.dtype = dt, .bits = bits, .block = o->block, .seed = 7
				};
				double te = time_median(b, o, run_lsq_enc, &c);
				uint64_t len = read_header(b, c.bytes, &c.hdr[0]);
				double td = time_median(b, o, run_decode, &c);
				snprintf(param, sizeof(param), "b%d/B%u", bits, o->block);
				double enc = c.bytes / te / 1e9, dec = c.bytes / td / 1e9;
				print_row("lsq", dt_name(dt), param, c.bytes, copy, enc, dec, 0,
					  (double)c.bytes / len);
				json_row("speed", "lsq", dt, param, c.bytes, copy, enc, dec, 0,
					 (double)c.bytes / len, 0, 0, "gauss");
			}
		}
		if (o->codecs & C_PTS) {
			c.pts = (struct rcmoe_pts_cfg){
				.dtype = dt, .density = o->density, .seed = 7, .chunk = o->chunk
			};
			double te = time_median(b, o, run_pts_enc, &c);
			uint64_t len = read_header(b, c.bytes, &c.hdr[0]);
			for (int k = 1; k < 4; k++)
				c.hdr[k] = c.hdr[0];
			c.npay = 1;
			double td = time_median(b, o, run_accumulate, &c);
			c.npay = 4;
			double td4 = time_median(b, o, run_accumulate, &c);
			snprintf(param, sizeof(param), "r%g", o->density);
			double enc = c.bytes / te / 1e9, dec = c.bytes / td / 1e9;
			double dec4 = 4.0 * c.bytes / td4 / 1e9;
			print_row("pts", dt_name(dt), param, c.bytes, copy, enc, dec, dec4,
				  (double)c.bytes / len);
			json_row("speed", "pts", dt, param, c.bytes, copy, enc, dec, dec4,
				 (double)c.bytes / len, 0, 0, "gauss");
		}
	}
	if ((o->codecs & C_DEDUP) && bytes >= o->row) {
		c.bytes = bytes / o->row * o->row;
		c.row = o->row;
		CUDA_OR_DIE(kb_fill_rows(b->in, c.bytes, o->row, o->dup, 99 + bytes, b->s));
		double te = time_median(b, o, run_dedup_enc, &c);
		uint64_t len = read_header(b, c.bytes, &c.hdr[0]);
		double td = time_median(b, o, run_decode, &c);
		snprintf(param, sizeof(param), "row%u", o->row);
		double enc = c.bytes / te / 1e9, dec = c.bytes / td / 1e9;
		print_row("dedup", "bytes", param, c.bytes, copy, enc, dec, 0,
			  (double)c.bytes / len);
		json_row("speed", "dedup", 0, param, c.bytes, copy, enc, dec, 0,
			 (double)c.bytes / len, 0, 0, "rows");
	}
}

/* Ratio and error on Gaussian and heavy-tailed rows: encode, decode, compare. */
static void bench_error(struct bufs *b, const struct opts *o)
{
	static const char *names[] = { "gauss", "heavy" };
	struct ctx c = { .b = b };
	char param[32];
	printf("\n# compression ratio and error, %zu elements per run (decode vs input; PTS: one "
	       "payload)\n",
	       o->err_elems);
	printf("%-6s %-5s %-8s %-6s %8s %12s %12s\n", "codec", "dtype", "param", "data", "ratio",
	       "rel_l2", "max_abs");
	for (int di = 0; di < o->ndtypes; di++) {
		int dt = o->dtypes[di];
		size_t es = rcmoe_dtype_size(dt);
		c.n = o->err_elems;
		c.bytes = c.n * es;
		c.dtype = dt;
		for (int kind = 0; kind < 2; kind++) {
			CUDA_OR_DIE(kb_fill(b->in, c.n, dt, (enum kb_data)kind, 4321, b->s));
			for (int v = 0; v < 4; v++) {
				if (v < 3 && !(o->codecs & C_LSQ))
					continue;
				if (v == 3 && !(o->codecs & C_PTS))
					continue;
				if (v < 3) {
					c.lsq = (struct rcmoe_lsq_cfg){ .dtype = dt,
									.bits = 8 >> v,
									.block = o->block,
									.seed = 3 };
					run_lsq_enc(&c);
					snprintf(param, sizeof(param), "b%d/B%u", 8 >> v, o->block);
				} else {
					c.pts = (struct rcmoe_pts_cfg){ .dtype = dt,
									.density = o->density,
									.seed = 3,
									.chunk = o->chunk };
					run_pts_enc(&c);
					snprintf(param, sizeof(param), "r%g", o->density);
				}
				uint64_t len = read_header(b, c.bytes, &c.hdr[0]);
				run_decode(&c);
				struct kb_err e;
				CUDA_OR_DIE(kb_error(b->in, b->out, c.n, dt, b->tmp, b->s, &e));
				const char *codec = v < 3 ? "lsq" : "pts";
				printf("%-6s %-5s %-8s %-6s %8.3f %12.4e %12.4e\n", codec,
				       dt_name(dt), param, names[kind], (double)c.bytes / len,
				       e.rel_l2, e.max_abs);
				json_row("error", codec, dt, param, c.bytes, 0, 0, 0, 0,
					 (double)c.bytes / len, e.rel_l2, e.max_abs, names[kind]);
			}
		}
	}
}

static void usage(void)
{
	fprintf(stderr, "usage: rcmoe-kbench [options]\n"
			"  -b SIZE    smallest size in bytes (K/M/G suffixes)          [64K]\n"
			"  -e SIZE    largest size                                     [1G]\n"
			"  -f N       size factor between rows                         [4]\n"
			"  -n N       timed iterations per measurement (median)        [20]\n"
			"  -w N       warm-up iterations                               [3]\n"
			"  -c LIST    codecs: lsq,pts,dedup                            [all]\n"
			"  -d LIST    dtypes: bf16,fp16,fp32                           [all]\n"
			"  -B N       LSQ block (elements)                             [128]\n"
			"  -r X       PTS density                                      [0.01]\n"
			"  -C N       PTS chunk (elements)                             [16384]\n"
			"  --row N    dedup row bytes                                  [8192]\n"
			"  --dup X    dedup: fraction of rows that repeat an earlier one [0.25]\n"
			"  -E N       elements for the ratio/error table (0: skip)     [16M]\n"
			"  -J FILE    also write every row as JSON\n");
}

static void parse(int argc, char **argv, struct opts *o)
{
	static const struct option longs[] = { { "row", required_argument, 0, 1 },
					       { "dup", required_argument, 0, 2 },
					       { "help", no_argument, 0, 'h' },
					       { 0, 0, 0, 0 } };
	int ch;
	*o = (struct opts){ .min = 64 << 10,
			    .max = 1u << 30,
			    .err_elems = 16u << 20,
			    .factor = 4,
			    .iters = 20,
			    .warmup = 3,
			    .codecs = C_LSQ | C_PTS | C_DEDUP,
			    .dtypes = { RCMOE_DT_BF16, RCMOE_DT_FP16, RCMOE_DT_FP32 },
			    .ndtypes = 3,
			    .block = 128,
			    .chunk = 16384,
			    .row = 8192,
			    .density = 0.01,
			    .dup = 0.25 };
	while ((ch = getopt_long(argc, argv, "b:e:f:n:w:c:d:B:r:C:E:J:h", longs, NULL)) != -1) {
		switch (ch) {
		case 'b': o->min = parse_size(optarg); break;
		case 'e': o->max = parse_size(optarg); break;
		case 'f': o->factor = atoi(optarg); break;
		case 'n': o->iters = atoi(optarg); break;
		case 'w': o->warmup = atoi(optarg); break;
		case 'c':
			o->codecs = (strstr(optarg, "lsq") ? C_LSQ : 0) |
				    (strstr(optarg, "pts") ? C_PTS : 0) |
				    (strstr(optarg, "dedup") ? C_DEDUP : 0);
			break;
		case 'd':
			o->ndtypes = 0;
			if (strstr(optarg, "bf16"))
				o->dtypes[o->ndtypes++] = RCMOE_DT_BF16;
			if (strstr(optarg, "fp16"))
				o->dtypes[o->ndtypes++] = RCMOE_DT_FP16;
			if (strstr(optarg, "fp32"))
				o->dtypes[o->ndtypes++] = RCMOE_DT_FP32;
			break;
		case 'B': o->block = (uint32_t)atoi(optarg); break;
		case 'r': o->density = atof(optarg); break;
		case 'C': o->chunk = (uint32_t)atoi(optarg); break;
		case 'E': o->err_elems = parse_size(optarg); break;
		case 'J': o->json = optarg; break;
		case 1: o->row = (uint32_t)parse_size(optarg); break;
		case 2: o->dup = atof(optarg); break;
		default: usage(); exit(ch == 'h' ? 0 : 2);
		}
	}
	if (o->factor < 2 || o->iters < 1 || o->iters > MAX_ITERS || o->min < 1024 ||
	    o->max < o->min || !o->codecs || !o->ndtypes) {
		usage();
		exit(2);
	}
}

int main(int argc, char **argv)
{
	struct opts o;
	struct bufs b = { 0 };
	struct cudaDeviceProp prop;
	int ndev = 0;

	rcmoe_log_set(rcmoe_log_stderr);
	parse(argc, argv, &o);
	if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
		fprintf(stderr, "rcmoe-kbench: no CUDA device\n");
		return 1;
	}
	CUDA_OR_DIE(cudaGetDeviceProperties(&prop, 0));
	size_t inb = o.max > o.err_elems * 4 ? o.max : o.err_elems * 4;
	/* the largest stream: PTS's bound (2 + esize bytes per element, plus a little) */
	b.stream_cap = inb / 2 * 4 + (64u << 20);
	b.work_cap = (size_t)256 << 20;
	CUDA_OR_DIE(cudaStreamCreateWithFlags(&b.s, cudaStreamNonBlocking));
	CUDA_OR_DIE(cudaMalloc((void **)&b.in, inb));
	CUDA_OR_DIE(cudaMalloc((void **)&b.stream, b.stream_cap));
	CUDA_OR_DIE(cudaMalloc((void **)&b.out, inb));
	CUDA_OR_DIE(cudaMalloc((void **)&b.work, b.work_cap));
	CUDA_OR_DIE(cudaMalloc((void **)&b.tmp, 64));
	for (int i = 0; i < 2 * MAX_ITERS; i++)
		CUDA_OR_DIE(cudaEventCreate(&b.ev[i]));
	if (o.json && !(json = fopen(o.json, "w"))) {
		perror(o.json);
		return 1;
	}
	if (json)
		fprintf(json, "[");

	printf("# rcmoe-kbench on %s (%d SMs)\n", prop.name, prop.multiProcessorCount);
	printf("# GB/s = uncompressed bytes per second (copy: bytes copied per second); median of "
	       "%d runs after %d warm-ups\n",
	       o.iters, o.warmup);
	printf("# x copy = codec GB/s / copy GB/s at the same size; dec4 = PTS decode-and-sum of 4 "
	       "payloads (4x the bytes); data: Gaussian rows\n");
	printf("%-6s %-5s %-8s %11s %9s %9s %6s %9s %6s %7s %7s\n", "codec", "dtype", "param",
	       "bytes", "copyGB/s", "encGB/s", "xcopy", "decGB/s", "xcopy", "dec4x", "ratio");
	for (size_t s = o.min; s <= o.max; s *= (size_t)o.factor)
		bench_size(&b, &o, s);
	if (o.err_elems)
		bench_error(&b, &o);
	if (json) {
		fprintf(json, "\n]\n");
		fclose(json);
	}
	return 0;
}
