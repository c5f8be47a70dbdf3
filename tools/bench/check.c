/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Data generation and result checking, on the host.
 *
 * Every element is a pure function of (seed, sender rank, element index), so a receiver can
 * recompute what any peer sent without exchanging anything, and sizes that are prefixes of the
 * largest one reuse one fill of the send buffer.
 *
 * Exact mode:
 *  - alltoall / sendrecv: hash-derived values exactly representable in the type (integers in
 *    [-127, 127] for floating types, all bits for integer types), so a misplaced block or a
 *    byte from the wrong peer shows up;
 *  - allreduce: ((rank*7 + i) % 17) - 8, whose partial sums stay small integers, exact in
 *    bf16/fp16 whatever order NCCL adds them in; integer types wrap like NCCL's own sum.
 * Error mode (lossy compression): Gaussian values (Box-Muller over the hash), rounded to the
 * type; the figures are relative L2 error and max abs error against the exact expected result.
 */
#include "bench.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* nccl: the ncclDataType_t value, a fact of NCCL's ABI. */
static const struct bench_dtype dtypes[] = {
	{ .name = "int8", .nccl = 0, .size = 1, .is_float = false, .is_signed = true },
	{ .name = "uint8", .nccl = 1, .size = 1, .is_float = false, .is_signed = false },
	{ .name = "int32", .nccl = 2, .size = 4, .is_float = false, .is_signed = true },
	{ .name = "uint32", .nccl = 3, .size = 4, .is_float = false, .is_signed = false },
	{ .name = "int64", .nccl = 4, .size = 8, .is_float = false, .is_signed = true },
	{ .name = "uint64", .nccl = 5, .size = 8, .is_float = false, .is_signed = false },
	{ .name = "half", .nccl = 6, .size = 2, .is_float = true, .is_signed = true },
	{ .name = "float", .nccl = 7, .size = 4, .is_float = true, .is_signed = true },
	{ .name = "double", .nccl = 8, .size = 8, .is_float = true, .is_signed = true },
	{ .name = "bfloat16", .nccl = 9, .size = 2, .is_float = true, .is_signed = true },
};

static const struct {
	const char *alias, *name;
} dtype_aliases[] = {
	{ "float16", "half" },   { "fp16", "half" },   { "float32", "float" }, { "fp32", "float" },
	{ "float64", "double" }, { "fp64", "double" }, { "bf16", "bfloat16" }, { "char", "int8" },
	{ "int", "int32" },      { "uint", "uint32" },
};

const struct bench_dtype *bench_dtype_find(const char *name)
{
	for (size_t a = 0; a < sizeof(dtype_aliases) / sizeof(dtype_aliases[0]); a++)
		if (strcmp(name, dtype_aliases[a].alias) == 0)
			name = dtype_aliases[a].name;
	for (size_t d = 0; d < sizeof(dtypes) / sizeof(dtypes[0]); d++)
		if (strcmp(name, dtypes[d].name) == 0)
			return &dtypes[d];
	return NULL;
}

/* The nccl-tests names; the aliases (fp16, bf16, ...) are accepted too. */
const char *bench_dtype_list(void)
{
	return "int8 uint8 int32 uint32 int64 uint64 half float double bfloat16";
}

/* ---- IEEE conversions (round to nearest even; written out so the host needs no CUDA) ---- */

static uint32_t f32_bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, sizeof(u));
	return u;
}

static float bits_f32(uint32_t u)
{
	float f;
	memcpy(&f, &u, sizeof(f));
	return f;
}

uint16_t bench_f32_to_bf16(float f)
{
	uint32_t u = f32_bits(f);
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((u >> 16) | 0x40); /* keep NaN a quiet NaN */
	u += 0x7fffu + ((u >> 16) & 1u);
	return (uint16_t)(u >> 16);
}

float bench_bf16_to_f32(uint16_t h)
{
	return bits_f32((uint32_t)h << 16);
}

uint16_t bench_f32_to_f16(float f)
{
	uint32_t x = f32_bits(f);
	uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
	uint32_t ax = x & 0x7fffffffu;

	if (ax >= 0x7f800000u)
		return sign | (ax > 0x7f800000u ? 0x7e00 : 0x7c00);
	if (ax >= 0x477ff000u) /* >= 65520 rounds to infinity */
		return sign | 0x7c00;
	if (ax <= 0x33000000u) /* <= 2^-25: zero (2^-25 itself ties to even zero) */
		return sign;
	uint32_t e = ax >> 23;
	uint32_t res, rem, half;
	if (e < 113) {
		/* half subnormal: value / 2^-24 = M * 2^(e-126), M with its implicit bit */
		uint32_t m = (ax & 0x7fffffu) | 0x800000u;
		uint32_t shift = 126 - e; /* 14..24 here */
		res = m >> shift;
		rem = m & ((1u << shift) - 1);
		half = 1u << (shift - 1);
	} else {
		res = ((e - 112) << 10) | ((ax & 0x7fffffu) >> 13);
		rem = ax & 0x1fffu;
		half = 0x1000u;
	}
	if (rem > half || (rem == half && (res & 1u)))
		res++; /* a carry into the exponent is the correct next value */
	return sign | (uint16_t)res;
}

float bench_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
	if (e == 0) {
		float v = (float)m * 0x1p-24f; /* exact: m has 10 bits */
		return (h & 0x8000u) ? -v : v;
	}
	if (e == 31)
		return bits_f32(sign | 0x7f800000u | (m << 13));
	return bits_f32(sign | ((e + 112) << 23) | (m << 13));
}

/* ---- element access ---- */

double bench_load_f(const struct bench_dtype *dt, const void *buf, size_t i)
{
	switch (dt->nccl) {
	case 6: return bench_f16_to_f32(((const uint16_t *)buf)[i]);
	case 7: return ((const float *)buf)[i];
	case 8: return ((const double *)buf)[i];
	case 9: return bench_bf16_to_f32(((const uint16_t *)buf)[i]);
	}
	return NAN;
}

void bench_store_f(const struct bench_dtype *dt, void *buf, size_t i, double v)
{
	switch (dt->nccl) {
	case 6: ((uint16_t *)buf)[i] = bench_f32_to_f16((float)v); break;
	case 7: ((float *)buf)[i] = (float)v; break;
	case 8: ((double *)buf)[i] = v; break;
	case 9: ((uint16_t *)buf)[i] = bench_f32_to_bf16((float)v); break;
	}
}

/* Integers as uint64 bits: signed types sign-extended, compare after masking to the width. */
uint64_t bench_load_u(const struct bench_dtype *dt, const void *buf, size_t i)
{
	switch (dt->size) {
	case 1:
		return dt->is_signed ? (uint64_t)(int64_t)((const int8_t *)buf)[i]
				     : ((const uint8_t *)buf)[i];
	case 4:
		return dt->is_signed ? (uint64_t)(int64_t)((const int32_t *)buf)[i]
				     : ((const uint32_t *)buf)[i];
	case 8: return ((const uint64_t *)buf)[i];
	}
	return 0;
}

void bench_store_u(const struct bench_dtype *dt, void *buf, size_t i, uint64_t v)
{
	switch (dt->size) {
	case 1: ((uint8_t *)buf)[i] = (uint8_t)v; break;
	case 4: ((uint32_t *)buf)[i] = (uint32_t)v; break;
	case 8: ((uint64_t *)buf)[i] = v; break;
	}
}

static uint64_t width_mask(const struct bench_dtype *dt)
{
	return dt->size >= 8 ? ~0ull : (1ull << (8 * dt->size)) - 1;
}

/* ---- generators ---- */

uint64_t bench_hash64(uint64_t x)
{
	/* splitmix64 finaliser: cheap, and every input bit reaches every output bit */
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static uint64_t rank_key(const struct bench_cfg *cfg, int rank)
{
	return bench_hash64(cfg->seed ^ ((uint64_t)(rank + 1) << 48));
}

static uint64_t elem_hash(uint64_t key, uint64_t i)
{
	return bench_hash64(key ^ (i * 0xd1342543de82ef95ull));
}

bool bench_lossy(const struct bench_cfg *cfg)
{
	return cfg->check == BENCH_CHECK_ERROR && cfg->dt->is_float;
}

static double round_to(const struct bench_dtype *dt, double v)
{
	switch (dt->nccl) {
	case 6: return bench_f16_to_f32(bench_f32_to_f16((float)v));
	case 7: return (float)v;
	case 9: return bench_bf16_to_f32(bench_f32_to_bf16((float)v));
	}
	return v;
}

/* Standard normal from one hash per pair of elements: both halves of Box-Muller. */
static double gauss(uint64_t key, uint64_t i)
{
	uint64_t h = elem_hash(key, i >> 1);
	double u1 = ((double)(h >> 32) + 0.5) * 0x1p-32; /* (0,1): log never sees 0 */
	double u2 = (double)(h & 0xffffffffu) * 0x1p-32;
	double r = sqrt(-2.0 * log(u1));
	double a = 6.283185307179586 * u2;
	return (i & 1) ? r * sin(a) : r * cos(a);
}

static int64_t ar_pattern(int rank, uint64_t i, bool is_signed)
{
	int64_t v = (int64_t)(((uint64_t)rank * 7 % 17 + i % 17) % 17);
	return is_signed ? v - 8 : v;
}

double bench_value_f(const struct bench_cfg *cfg, int op, int rank, size_t i)
{
	const struct bench_dtype *dt = cfg->dt;
	if (bench_lossy(cfg))
		return round_to(dt, gauss(rank_key(cfg, rank), i));
	if (op == BENCH_ALLREDUCE)
		return (double)ar_pattern(rank, i, true);
	return (double)((int)(elem_hash(rank_key(cfg, rank), i) % 255) - 127);
}

uint64_t bench_value_u(const struct bench_cfg *cfg, int op, int rank, size_t i)
{
	const struct bench_dtype *dt = cfg->dt;
	if (op == BENCH_ALLREDUCE)
		return (uint64_t)ar_pattern(rank, i, dt->is_signed);
	uint64_t h = elem_hash(rank_key(cfg, rank), i) & width_mask(dt);
	if (dt->is_signed && dt->size < 8 && (h >> (8 * dt->size - 1)))
		h |= ~width_mask(dt); /* sign-extend, as bench_load_u does */
	return h;
}

/* --dup-fraction: the element of the same buffer whose value element i repeats. Row r of a
 * peer's slice (alltoall only; a short last row never) repeats row hash % r of that slice with
 * probability dup_fraction, followed back to a row that repeats none: fill and check agree, and
 * every repeated row is byte-identical to an earlier row sent to the same peer. */
static size_t dup_index(const struct bench_cfg *cfg, int op, int rank, size_t count, size_t i)
{
	size_t row_len = cfg->dup_row, cpp = count / (size_t)(cfg->nranks > 0 ? cfg->nranks : 1);
	if (op != BENCH_ALLTOALL || cfg->dup_fraction <= 0 || !row_len || !cpp)
		return i;
	size_t slice = i / cpp, off = i % cpp, row = off / row_len;
	if (row >= cpp / row_len)
		return i;
	uint64_t key = rank_key(cfg, rank) ^ 0xd0b1e5ull;
	while (row > 0) {
		uint64_t h = bench_hash64(key ^ bench_hash64((uint64_t)slice << 40 ^ row));
		if ((double)(h >> 11) * 0x1p-53 >= cfg->dup_fraction)
			break;
		row = (size_t)(bench_hash64(h) % row);
	}
	return slice * cpp + row * row_len + off % row_len;
}

/* ---- threaded loops ---- */

struct job {
	const struct bench_cfg *cfg;
	int op, rank;
	void *wbuf;
	const void *rbuf;
	size_t count; /* whole buffer */
	size_t begin, end;
	struct bench_check_res res;
};

int bench_check_threads(const struct bench_cfg *cfg)
{
	if (cfg->check_threads > 0)
		return cfg->check_threads;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int per = (int)(ncpu > 0 ? ncpu : 1) / (cfg->nranks > 0 ? cfg->nranks : 1);
	return per < 1 ? 1 : per > 8 ? 8 : per;
}

static void run_jobs(const struct bench_cfg *cfg, void *(*fn)(void *), struct job *proto,
		     struct bench_check_res *sum)
{
	enum { MAXT = 64 };
	struct job jobs[MAXT];
	pthread_t tid[MAXT];
	bool started[MAXT] = { false };
	int nt = bench_check_threads(cfg);
	if (nt > MAXT)
		nt = MAXT;
	/* Small buffers are not worth a thread. */
	if (proto->count < (size_t)nt * 65536)
		nt = 1;
	for (int t = 0; t < nt; t++) {
		jobs[t] = *proto;
		jobs[t].begin = proto->count * (size_t)t / (size_t)nt;
		jobs[t].end = proto->count * (size_t)(t + 1) / (size_t)nt;
		memset(&jobs[t].res, 0, sizeof(jobs[t].res));
	}
	for (int t = 1; t < nt; t++)
		started[t] = pthread_create(&tid[t], NULL, fn, &jobs[t]) == 0;
	fn(&jobs[0]);
	for (int t = 1; t < nt; t++) {
		if (started[t])
			pthread_join(tid[t], NULL);
		else
			fn(&jobs[t]); /* no thread to be had: do it here */
	}
	if (!sum)
		return;
	memset(sum, 0, sizeof(*sum));
	for (int t = 0; t < nt; t++) {
		sum->wrong += jobs[t].res.wrong;
		sum->checked += jobs[t].res.checked;
		sum->err_sq += jobs[t].res.err_sq;
		sum->ref_sq += jobs[t].res.ref_sq;
		double m = jobs[t].res.maxabs;
		if (isnan(m) || isnan(sum->maxabs))
			sum->maxabs = NAN; /* a NaN anywhere is the headline */
		else if (m > sum->maxabs)
			sum->maxabs = m;
	}
}

static void *fill_job(void *arg)
{
	struct job *j = arg;
	const struct bench_dtype *dt = j->cfg->dt;
	for (size_t i = j->begin; i < j->end; i++) {
		size_t v = dup_index(j->cfg, j->op, j->rank, j->count, i);
		if (dt->is_float)
			bench_store_f(dt, j->wbuf, i, bench_value_f(j->cfg, j->op, j->rank, v));
		else
			bench_store_u(dt, j->wbuf, i, bench_value_u(j->cfg, j->op, j->rank, v));
	}
	return NULL;
}

void bench_fill(const struct bench_cfg *cfg, int op, int rank, void *buf, size_t count)
{
	struct job j = { .cfg = cfg, .op = op, .rank = rank, .wbuf = buf, .count = count };
	run_jobs(cfg, fill_job, &j, NULL);
}

/* Sender and index of the element that lands at recv[k] on `rank`. */
static void source_of(const struct bench_cfg *cfg, int op, int rank, size_t count, size_t k,
		      int *src, size_t *idx)
{
	int n = cfg->nranks;
	if (op == BENCH_ALLTOALL) {
		size_t cpp = count / (size_t)n;
		*src = (int)(k / cpp);
		*idx = (size_t)rank * cpp + k % cpp;
	} else { /* sendrecv ring: rank r receives rank r-1's buffer */
		*src = (rank + n - 1) % n;
		*idx = k;
	}
}

static void *check_job(void *arg)
{
	struct job *j = arg;
	const struct bench_cfg *cfg = j->cfg;
	const struct bench_dtype *dt = cfg->dt;
	const bool lossy = bench_lossy(cfg);
	const uint64_t mask = width_mask(dt);
	struct bench_check_res *r = &j->res;

	for (size_t k = j->begin; k < j->end; k++) {
		int src;
		size_t idx;
		if (dt->is_float) {
			double exp = 0;
			if (j->op == BENCH_ALLREDUCE) {
				for (int p = 0; p < cfg->nranks; p++)
					exp += bench_value_f(cfg, j->op, p, k);
			} else {
				source_of(cfg, j->op, j->rank, j->count, k, &src, &idx);
				idx = dup_index(cfg, j->op, src, j->count, idx);
				exp = bench_value_f(cfg, j->op, src, idx);
			}
			double got = bench_load_f(dt, j->rbuf, k);
			if (lossy) {
				double d = fabs(got - exp);
				r->err_sq += d * d;
				r->ref_sq += exp * exp;
				if (!(d <= r->maxabs) && !isnan(r->maxabs))
					r->maxabs = d; /* a NaN sticks */
			} else if (!(got == exp)) {
				r->wrong++;
			}
		} else {
			uint64_t exp = 0;
			if (j->op == BENCH_ALLREDUCE) {
				for (int p = 0; p < cfg->nranks; p++)
					exp += bench_value_u(cfg, j->op, p, k);
			} else {
				source_of(cfg, j->op, j->rank, j->count, k, &src, &idx);
				idx = dup_index(cfg, j->op, src, j->count, idx);
				exp = bench_value_u(cfg, j->op, src, idx);
			}
			if ((bench_load_u(dt, j->rbuf, k) & mask) != (exp & mask))
				r->wrong++;
		}
		r->checked++;
	}
	return NULL;
}

void bench_check(const struct bench_cfg *cfg, int op, int rank, const void *recv, size_t count,
		 struct bench_check_res *res)
{
	struct job j = { .cfg = cfg, .op = op, .rank = rank, .rbuf = recv, .count = count };
	run_jobs(cfg, check_job, &j, res);
}

/* ---- self-test: simulate the three collectives on the CPU and check the checker ---- */

static int fails;

#define ST_EXPECT(cond, ...)                                                                       \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fails++;                                                                   \
			fprintf(out, "# selftest FAILED %s:%d: ", __FILE__, __LINE__);             \
			fprintf(out, __VA_ARGS__);                                                 \
			fputc('\n', out);                                                          \
		}                                                                                  \
	} while (0)

static void st_conversions(FILE *out)
{
	/* Every finite half and bfloat16 survives a round trip through float. */
	for (uint32_t h = 0; h < 65536; h++) {
		if (((h >> 10) & 0x1f) != 0x1f) {
			uint16_t b = bench_f32_to_f16(bench_f16_to_f32((uint16_t)h));
			ST_EXPECT(b == h, "half 0x%04x -> 0x%04x", h, b);
		}
		if (((h >> 7) & 0xff) != 0xff) {
			uint16_t b = bench_f32_to_bf16(bench_bf16_to_f32((uint16_t)h));
			ST_EXPECT(b == h, "bf16 0x%04x -> 0x%04x", h, b);
		}
	}
	static const struct {
		float f;
		uint16_t half, bf16;
	} known[] = {
		{ 1.0f, 0x3c00, 0x3f80 },
		{ -2.0f, 0xc000, 0xc000 },
		{ 65504.0f, 0x7bff, 0x4780 },
		{ 65520.0f, 0x7c00, 0x4780 },
		{ 0x1p-24f, 0x0001, 0x3380 },
		{ 0x1p-25f, 0x0000, 0x3300 },
		{ 1.0f + 0x1p-11f, 0x3c00, 0x3f80 },          /* tie -> even */
		{ 1.0f + 3 * 0x1p-11f, 0x3c02, 0x3f80 },      /* tie -> even (up) */
		{ 1.0f + 0x1p-8f + 0x1p-9f, 0x3c06, 0x3f81 }, /* bf16: above the tie */
		{ 1.0f + 0x1p-8f, 0x3c04, 0x3f80 },           /* bf16: tie -> even (down) */
		{ 1.0f + 0x1p-7f + 0x1p-8f, 0x3c0c, 0x3f82 }, /* bf16: tie -> even (up) */
	};
	for (size_t k = 0; k < sizeof(known) / sizeof(known[0]); k++) {
		ST_EXPECT(bench_f32_to_f16(known[k].f) == known[k].half, "half(%a) = 0x%04x",
			  (double)known[k].f, bench_f32_to_f16(known[k].f));
		ST_EXPECT(bench_f32_to_bf16(known[k].f) == known[k].bf16, "bf16(%a) = 0x%04x",
			  (double)known[k].f, bench_f32_to_bf16(known[k].f));
	}
}

/* One rank's input as the type's own accumulation would see it. */
static void st_reduce(const struct bench_dtype *dt, void *acc, const void *in, size_t count,
		      bool first)
{
	for (size_t i = 0; i < count; i++) {
		if (first) {
			memcpy((char *)acc + i * dt->size, (const char *)in + i * dt->size,
			       dt->size);
		} else if (dt->is_float) {
			/* NCCL adds low-precision types in float and rounds the partial sum. */
			double s = bench_load_f(dt, acc, i) + bench_load_f(dt, in, i);
			bench_store_f(dt, acc, i, dt->nccl == 8 ? s : (double)(float)s);
		} else {
			bench_store_u(dt, acc, i,
				      bench_load_u(dt, acc, i) + bench_load_u(dt, in, i));
		}
	}
}

static void st_collectives(FILE *out, const struct bench_dtype *dt, int mode, int n)
{
	struct bench_cfg cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.nranks = n;
	cfg.dt = dt;
	cfg.check = mode;
	cfg.seed = 0x5eed;
	cfg.check_threads = 1;
	const size_t cpp = 37, count = cpp * (size_t)n;
	const size_t es = dt->size;
	char *send = calloc((size_t)n, count * es), *recv = calloc((size_t)n, count * es);
	if (!send || !recv) {
		ST_EXPECT(0, "out of memory");
		free(send);
		free(recv);
		return;
	}
	for (int op = 0; op < BENCH_NUM_OPS; op++) {
		for (int r = 0; r < n; r++)
			bench_fill(&cfg, op, r, send + (size_t)r * count * es, count);
		/* What each rank receives, straight from the definitions. */
		for (int r = 0; r < n; r++) {
			char *rv = recv + (size_t)r * count * es;
			if (op == BENCH_ALLTOALL) {
				for (int p = 0; p < n; p++)
					memcpy(rv + (size_t)p * cpp * es,
					       send + ((size_t)p * count + (size_t)r * cpp) * es,
					       cpp * es);
			} else if (op == BENCH_SENDRECV) {
				memcpy(rv, send + (size_t)((r + n - 1) % n) * count * es,
				       count * es);
			} else {
				for (int p = 0; p < n; p++)
					st_reduce(dt, rv, send + (size_t)p * count * es, count,
						  p == 0);
			}
		}
		const char *what = bench_op_name(op);
		bool lossy = bench_lossy(&cfg);
		for (int r = 0; r < n; r++) {
			char *rv = recv + (size_t)r * count * es;
			struct bench_check_res res;
			bench_check(&cfg, op, r, rv, count, &res);
			ST_EXPECT(res.checked == count, "%s %s n=%d: checked %llu", what, dt->name,
				  n, (unsigned long long)res.checked);
			if (!lossy) {
				ST_EXPECT(res.wrong == 0, "%s %s n=%d rank %d: %llu wrong", what,
					  dt->name, n, r, (unsigned long long)res.wrong);
			} else {
				double rel = sqrt(res.err_sq / res.ref_sq);
				/* Copies are exact; a low-precision sum is off by its rounding. */
				double lim = op != BENCH_ALLREDUCE ? 0
					     : dt->nccl == 9       ? 1e-2
					     : dt->nccl == 6       ? 2e-3
					     : dt->nccl == 7       ? 1e-6
								   : 1e-14;
				ST_EXPECT(rel <= lim && res.ref_sq > 0, "%s %s n=%d: relL2 %g",
					  what, dt->name, n, rel);
			}
			/* One corrupted element must be seen, and exactly once. */
			size_t k = (size_t)(r * 13 + 5) % count;
			if (dt->is_float)
				bench_store_f(dt, rv, k, bench_load_f(dt, rv, k) + 64.0);
			else
				bench_store_u(dt, rv, k, bench_load_u(dt, rv, k) + 1);
			struct bench_check_res bad;
			bench_check(&cfg, op, r, rv, count, &bad);
			if (!lossy)
				ST_EXPECT(bad.wrong == 1,
					  "%s %s n=%d: corrupted element: %llu wrong", what,
					  dt->name, n, (unsigned long long)bad.wrong);
			else
				ST_EXPECT(bad.maxabs > 30 && bad.err_sq > res.err_sq,
					  "%s %s n=%d: corrupted element: maxabs %g", what,
					  dt->name, n, bad.maxabs);
			/* The poison the GPU path writes before the checked iteration. */
			memset(rv, 0xff, count * es);
			bench_check(&cfg, op, r, rv, count, &bad);
			if (!lossy && dt->is_float)
				ST_EXPECT(bad.wrong == count, "%s %s: poison: %llu wrong", what,
					  dt->name, (unsigned long long)bad.wrong);
			else if (!lossy)
				ST_EXPECT(bad.wrong * 2 > count, "%s %s: poison: %llu wrong", what,
					  dt->name, (unsigned long long)bad.wrong);
			else
				ST_EXPECT(isnan(bad.maxabs), "%s %s: poison: maxabs %g", what,
					  dt->name, bad.maxabs);
		}
	}
	free(send);
	free(recv);
}

static void st_gauss(FILE *out)
{
	struct bench_cfg cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.nranks = 2;
	cfg.dt = bench_dtype_find("double");
	cfg.check = BENCH_CHECK_ERROR;
	cfg.seed = 1;
	double s = 0, s2 = 0, mx = 0;
	const size_t n = 200000;
	for (size_t i = 0; i < n; i++) {
		double v = bench_value_f(&cfg, BENCH_ALLTOALL, 1, i);
		s += v;
		s2 += v * v;
		mx = fmax(mx, fabs(v));
	}
	double mean = s / (double)n, var = s2 / (double)n - mean * mean;
	ST_EXPECT(fabs(mean) < 0.01 && fabs(var - 1) < 0.02 && mx > 3.5,
		  "gaussian: mean %g var %g max %g", mean, var, mx);
	/* Different ranks draw different streams. */
	ST_EXPECT(bench_value_f(&cfg, BENCH_ALLTOALL, 0, 7) !=
			  bench_value_f(&cfg, BENCH_ALLTOALL, 1, 7),
		  "gaussian: ranks 0 and 1 agree");
}

/* The threaded split must give the same figures as one thread. */
static void st_threads(FILE *out)
{
	struct bench_cfg cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.nranks = 3;
	cfg.dt = bench_dtype_find("bfloat16");
	cfg.check = BENCH_CHECK_ERROR;
	cfg.seed = 7;
	const size_t count = 3 * 100003;
	uint16_t *buf = malloc(count * 2);
	if (!buf) {
		ST_EXPECT(0, "out of memory");
		return;
	}
	cfg.check_threads = 4;
	bench_fill(&cfg, BENCH_SENDRECV, 2, buf, count); /* rank 0 receives rank 2's data */
	buf[count - 1] ^= 0x40;                          /* one element off */
	struct bench_check_res r1, r4;
	bench_check(&cfg, BENCH_SENDRECV, 0, buf, count, &r4);
	cfg.check_threads = 1;
	bench_check(&cfg, BENCH_SENDRECV, 0, buf, count, &r1);
	ST_EXPECT(r1.checked == count && r4.checked == count && r1.maxabs == r4.maxabs &&
			  r1.maxabs > 0 && fabs(r1.err_sq - r4.err_sq) <= 1e-9 * r1.err_sq,
		  "threads: 1: %g %g, 4: %g %g", r1.err_sq, r1.maxabs, r4.err_sq, r4.maxabs);
	cfg.check = BENCH_CHECK_EXACT;
	cfg.check_threads = 4;
	bench_fill(&cfg, BENCH_ALLTOALL, 1, buf, count);
	uint16_t *other = malloc(count * 2);
	if (other) {
		/* rank 1's buffer is not what rank 1 receives: nearly everything is wrong */
		memcpy(other, buf, count * 2);
		bench_check(&cfg, BENCH_ALLTOALL, 1, other, count, &r4);
		ST_EXPECT(r4.wrong > count / 2 && r4.wrong < count, "threads: a2a %llu wrong",
			  (unsigned long long)r4.wrong);
		free(other);
	}
	free(buf);
}

/* --dup-fraction: about that fraction of each slice's rows repeat an earlier row of the same
 * slice byte for byte, none with 0, every row after the first with 1; and the check follows
 * the copies (a simulated transfer is exact, a changed copy is counted wrong). */
static void st_dup_rows(FILE *out)
{
	(void)out;
	struct bench_cfg cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.nranks = 4;
	cfg.dt = bench_dtype_find("bfloat16");
	cfg.check = BENCH_CHECK_EXACT;
	cfg.seed = 11;
	cfg.check_threads = 2;
	cfg.dup_row = 64;
	const size_t rows = 500, cpp = rows * 64 + 17, count = cpp * 4;
	uint16_t *buf = malloc(count * 2), *recv = malloc(count * 2);
	if (!buf || !recv) {
		ST_EXPECT(0, "out of memory");
		free(buf);
		free(recv);
		return;
	}
	static const double fracs[] = { 0, 0.25, 1 };
	for (int f = 0; f < 3; f++) {
		cfg.dup_fraction = fracs[f];
		bench_fill(&cfg, BENCH_ALLTOALL, 2, buf, count);
		size_t copies = 0;
		for (size_t r = 1; r < rows; r++) {
			const uint16_t *row = buf + cpp + r * 64; /* the slice for rank 1 */
			for (size_t q = 0; q < r; q++)
				if (!memcmp(row, buf + cpp + q * 64, 128)) {
					copies++;
					break;
				}
		}
		double got = (double)copies / (rows - 1);
		ST_EXPECT(fabs(got - fracs[f]) < 0.07, "dup rows: %.3f of rows repeat, asked %.2f",
			  got, fracs[f]);
		/* rank 1 receives rank 2's slice 1 at offset 2 * cpp */
		for (int p = 0; p < 4; p++) {
			bench_fill(&cfg, BENCH_ALLTOALL, p, buf, count);
			memcpy(recv + (size_t)p * cpp, buf + cpp, cpp * 2);
		}
		struct bench_check_res res;
		bench_check(&cfg, BENCH_ALLTOALL, 1, recv, count, &res);
		ST_EXPECT(res.wrong == 0 && res.checked == count, "dup rows: %llu wrong",
			  (unsigned long long)res.wrong);
		recv[2 * cpp + 5 * 64 + 3] ^= 1;
		bench_check(&cfg, BENCH_ALLTOALL, 1, recv, count, &res);
		ST_EXPECT(res.wrong == 1, "dup rows: a changed element counted %llu times",
			  (unsigned long long)res.wrong);
	}
	free(buf);
	free(recv);
}

int bench_check_selftest(FILE *out)
{
	fails = 0;
	st_conversions(out);
	st_gauss(out);
	st_threads(out);
	st_dup_rows(out);
	static const char *names[] = { "int8",   "uint8", "int32", "uint32", "int64",
				       "uint64", "half",  "float", "double", "bfloat16" };
	for (size_t d = 0; d < sizeof(names) / sizeof(names[0]); d++) {
		const struct bench_dtype *dt = bench_dtype_find(names[d]);
		ST_EXPECT(dt != NULL, "dtype %s missing", names[d]);
		if (!dt)
			continue;
		for (int n = 2; n <= 5; n++) {
			st_collectives(out, dt, BENCH_CHECK_EXACT, n);
			st_collectives(out, dt, BENCH_CHECK_ERROR, n);
		}
	}
	return fails;
}
