/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target for the wire format. Built two ways: into the codec test (random mutations of
 * valid streams, always run in CI) and, with clang, as a libFuzzer binary:
 *   ninja -C build test/codec/rcmoe-fuzz-codec && build/test/codec/rcmoe-fuzz-codec -max_len=8192
 * Invariants: nothing reads or writes out of bounds (ASan), and every stream that validates
 * also decodes.
 */
#include <stdlib.h>
#include <string.h>

#include "rcmoe/codec.h"
#include "rcmoe/wdedup.h"
#include "codec_math.h"
#include "fuzz_codec.h"

#define FUZZ_MAX_OUT (8u << 20)

void rcmoe_fuzz_reseal(uint8_t *stream)
{
	uint32_t w[RCMOE_HW_WORDS];
	memcpy(w, stream, sizeof(w));
	w[RCMOE_HW_CHECK] = rcmoe_wire_check(w);
	memcpy(stream, w, sizeof(w));
}

static void fuzz_abort_if(int cond)
{
	if (cond)
		abort(); /* the invariant broke: let the fuzzer (or the test's fork) see a crash */
}

rcmoe_status_t rcmoe_fuzz_one(const uint8_t *data, size_t size)
{
	struct rcmoe_wire_header h;
	rcmoe_status_t st;
	if (size < 1)
		return RCMOE_ERR_INVALID;
	size_t len = size - 1;
	uint8_t *s = malloc(len ? len : 1); /* exact size: ASan sees any over-read */
	memcpy(s, data + 1, len);
	if ((data[0] & 1) && len >= RCMOE_WIRE_HEADER_BYTES)
		rcmoe_fuzz_reseal(s);

	st = rcmoe_wire_parse(s, len, &h);
	if (st != RCMOE_OK)
		goto out;
	uint64_t need = rcmoe_wire_decoded_bytes(&h);
	if (need > FUZZ_MAX_OUT) {
		st = rcmoe_codec_validate(s, len, FUZZ_MAX_OUT, &h);
		fuzz_abort_if(st == RCMOE_OK);
		goto out;
	}
	/* one byte short must be refused as an overflow */
	if (need > 0)
		fuzz_abort_if(rcmoe_codec_validate(s, len, need - 1, &h) != RCMOE_ERR_OVERFLOW);
	st = rcmoe_codec_validate(s, len, need, &h);
	if (h.codec == RCMOE_CODEC_WDEDUP) {
		/* stateful: against a fresh receiver's window, whatever it says, within bounds */
		fuzz_abort_if(st != RCMOE_ERR_UNSUPPORTED);
		struct rcmoe_wdedup_rx rx;
		uint8_t *out = malloc(need ? need : 1);
		size_t outb = 0;
		fuzz_abort_if(rcmoe_wdedup_rx_init(&rx, 1u << 20, 16) != RCMOE_OK);
		st = rcmoe_wdedup_decode(&rx, s, len, out, need, NULL, 0, &outb, NULL);
		fuzz_abort_if(st == RCMOE_OK && outb != need);
		rcmoe_wdedup_rx_free(&rx);
		free(out);
		goto out;
	}
	if (st == RCMOE_OK) {
		uint8_t *out = malloc(need ? need : 1);
		size_t outb = 0;
		fuzz_abort_if(rcmoe_codec_decode(s, len, out, need, &outb) != RCMOE_OK);
		fuzz_abort_if(outb != need);
		if (h.codec == RCMOE_CODEC_PTS) {
			const void *ps[2] = { s, s };
			size_t lens[2] = { len, len };
			fuzz_abort_if(rcmoe_pts_accumulate(ps, lens, 2, h.dtype, out, h.count) !=
				      RCMOE_OK);
		}
		free(out);
	}
out:
	free(s);
	return st;
}

#ifdef RCMOE_LIBFUZZER
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	rcmoe_fuzz_one(data, size);
	return 0;
}
#endif
