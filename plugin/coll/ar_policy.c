/* SPDX-License-Identifier: Apache-2.0 */
/* The RCMOE_AR_* settings and the mode of each all-reduce call (ar_policy.h). */
#include <stdio.h>

#include "rcmoe/codec.h"
#include "rcmoe/log.h"
#include "ar_policy.h"

rcmoe_status_t rcmoe_ar_settings_from_params(const struct rcmoe_params *p,
					     struct rcmoe_ar_settings *out)
{
	int pts = p->ar_density > 0.0, lsq = p->ar_bits > 0;
	*out = (struct rcmoe_ar_settings){
		.codec = RCMOE_AR_LOSSLESS,
		.density = p->ar_density,
		.bits = (int)p->ar_bits,
		.block = (uint32_t)p->lsq_block,
		.min_bytes = (uint64_t)p->ar_min_bytes,
		.seed = (uint64_t)p->seed,
	};
	switch (p->ar_codec) {
	case RCMOE_AR_CODEC_PTS:
		if (!pts) {
			RCMOE_WARN("RCMOE_AR_CODEC=pts needs RCMOE_AR_DENSITY in (0, 1]");
			return RCMOE_ERR_USAGE;
		}
		out->codec = RCMOE_AR_PTS;
		break;
	case RCMOE_AR_CODEC_LSQ:
		if (!lsq) {
			RCMOE_WARN("RCMOE_AR_CODEC=lsq needs RCMOE_AR_BITS=8, 4 or 2");
			return RCMOE_ERR_USAGE;
		}
		out->codec = RCMOE_AR_LSQ;
		break;
	default:
		if (pts && lsq) {
			RCMOE_WARN(
				"RCMOE_AR_DENSITY=%g and RCMOE_AR_BITS=%d are both set: choose one "
				"(or name it with RCMOE_AR_CODEC=pts|lsq)",
				p->ar_density, (int)p->ar_bits);
			return RCMOE_ERR_USAGE;
		}
		out->codec = pts ? RCMOE_AR_PTS : lsq ? RCMOE_AR_LSQ : RCMOE_AR_LOSSLESS;
	}
	return RCMOE_OK;
}

int rcmoe_ar_steer(const struct rcmoe_ar_settings *s, size_t bytes)
{
	return s->codec != RCMOE_AR_LOSSLESS && (uint64_t)bytes >= s->min_bytes;
}

int rcmoe_ar_choose(const struct rcmoe_ar_settings *s, int dtype, size_t count)
{
	size_t esize = rcmoe_dtype_size(dtype);
	if (s->codec == RCMOE_AR_LOSSLESS || esize == 0 || count == 0)
		return RCMOE_AR_LOSSLESS;
	/* The size test of whole all-reduces is the tuner's (rcmoe_ar_steer); a call only has to
	 * be long enough for a stream to pay, and the chunks of a steered all-reduce all are. */
	uint64_t floor = s->min_bytes < RCMOE_AR_CALL_FLOOR ? s->min_bytes : RCMOE_AR_CALL_FLOOR;
	if (count * esize < floor)
		return RCMOE_AR_LOSSLESS;
	return s->codec;
}

const char *rcmoe_ar_mode_name(int mode)
{
	switch (mode) {
	case RCMOE_AR_PTS: return "PTS";
	case RCMOE_AR_LSQ: return "LSQ";
	default: return "lossless";
	}
}

void rcmoe_ar_describe(const struct rcmoe_ar_settings *s, char *out, size_t size)
{
	switch (s->codec) {
	case RCMOE_AR_PTS:
		snprintf(out, size, "all-reduce PTS density %g from %llu bytes", s->density,
			 (unsigned long long)s->min_bytes);
		break;
	case RCMOE_AR_LSQ:
		snprintf(out, size, "all-reduce LSQ %d-bit two-step (block %u) from %llu bytes",
			 s->bits, s->block, (unsigned long long)s->min_bytes);
		break;
	default: snprintf(out, size, "all-reduce lossless");
	}
}
