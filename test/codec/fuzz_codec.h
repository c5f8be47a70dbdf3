/* SPDX-License-Identifier: Apache-2.0 */
/* One fuzz input through validation and every decoder (shared by the libFuzzer target and the
 * random-mutation Criterion test). */
#ifndef RCMOE_FUZZ_CODEC_H
#define RCMOE_FUZZ_CODEC_H

#include <stddef.h>
#include <stdint.h>
#include "rcmoe/status.h"

/* data[0] bit 0: re-seal the header check word first (so mutations reach the payload checks);
 * the rest is a stream. Decodes into exactly-sized buffers; returns the validation status. */
rcmoe_status_t rcmoe_fuzz_one(const uint8_t *data, size_t size);

/* Recompute the header check word of a stream in place (len >= 64). */
void rcmoe_fuzz_reseal(uint8_t *stream);

#endif
