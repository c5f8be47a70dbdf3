/* SPDX-License-Identifier: Apache-2.0 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codec_math.h"
#include "coll_data.h"

size_t dt_size(ncclDataType_t dt)
{
	return dt == ncclFloat32 ? 4 : 2;
}

const char *dt_name(ncclDataType_t dt)
{
	return dt == ncclFloat32 ? "fp32" : dt == ncclBfloat16 ? "bf16" : "fp16";
}

static void put(ncclDataType_t dt, void *buf, size_t i, float v)
{
	uint32_t bits = rcmoe_from_f32((int)dt, v);
	if (dt == ncclFloat32)
		memcpy((char *)buf + 4 * i, &bits, 4);
	else {
		uint16_t h = (uint16_t)bits;
		memcpy((char *)buf + 2 * i, &h, 2);
	}
}

static uint32_t raw(ncclDataType_t dt, const void *buf, size_t i)
{
	if (dt == ncclFloat32) {
		uint32_t v;
		memcpy(&v, (const char *)buf + 4 * i, 4);
		return v;
	}
	uint16_t h;
	memcpy(&h, (const char *)buf + 2 * i, 2);
	return h;
}

float elem_f32(ncclDataType_t dt, const void *buf, size_t i)
{
	return rcmoe_to_f32((int)dt, raw(dt, buf, i));
}

int contrib_make(struct contrib *c, int nranks, ncclDataType_t dt, size_t n, unsigned seed)
{
	memset(c, 0, sizeof(*c));
	c->nranks = nranks;
	c->dt = dt;
	c->n = n;
	for (int r = 0; r < nranks; r++) {
		c->in[r] = malloc(n ? n * dt_size(dt) : 1);
		if (!c->in[r])
			return -1;
		uint64_t x = 0x9e3779b97f4a7c15ull * (seed * 16 + (unsigned)r + 1);
		for (size_t i = 0; i < n; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			double u = (double)(x >> 11) / 9007199254740992.0 - 0.5;
			double scale = ldexp(1.0, (int)((i / 64 + (unsigned)r) % 10) - 6);
			put(dt, c->in[r], i, (float)(u * scale));
		}
	}
	return 0;
}

void contrib_free(struct contrib *c)
{
	for (int r = 0; r < c->nranks; r++)
		free(c->in[r]);
	memset(c, 0, sizeof(*c));
}

void contrib_poison(struct contrib *c, int rank, size_t i, float v)
{
	put(c->dt, c->in[rank], i, v);
}

size_t ref_compare(const struct contrib *c, const void *dst, int exact)
{
	(void)exact;
	for (size_t i = 0; i < c->n; i++) {
		uint32_t acc = raw(c->dt, c->in[0], i);
		for (int r = 1; r < c->nranks; r++) {
			float s = rcmoe_to_f32((int)c->dt, acc) +
				  rcmoe_to_f32((int)c->dt, raw(c->dt, c->in[r], i));
			acc = rcmoe_from_f32((int)c->dt, s);
		}
		uint32_t got = raw(c->dt, dst, i);
		float fa = rcmoe_to_f32((int)c->dt, acc), fg = rcmoe_to_f32((int)c->dt, got);
		if (isnan(fa) && isnan(fg))
			continue;
		if (acc != got)
			return i;
	}
	return (size_t)-1;
}

double exact_sum(const struct contrib *c, size_t i)
{
	double s = 0;
	for (int r = 0; r < c->nranks; r++)
		s += elem_f32(c->dt, c->in[r], i);
	return s;
}

double block_maxabs(const struct contrib *c, int rank, size_t b, size_t block)
{
	double m = 0;
	for (size_t i = b * block; i < (b + 1) * block && i < c->n; i++) {
		double v = fabs(elem_f32(c->dt, c->in[rank], i));
		m = v > m ? v : m;
	}
	return m;
}
