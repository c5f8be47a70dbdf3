/* SPDX-License-Identifier: Apache-2.0 */
/*
 * librcmoe-shaper: what the library exports besides the functions it interposes. A process finds
 * these with dlsym(RTLD_DEFAULT, ...) to learn whether the shaper is really loaded in it
 * (rcmoe-bench's ranks refuse to start without it) and at which rate it shapes.
 */
#ifndef RCMOE_SHAPER_API_H
#define RCMOE_SHAPER_API_H

#define RCMOE_SHAPER_ENV      "RCMOE_SHAPER_GBPS"
#define RCMOE_SHAPER_LIB      "librcmoe-shaper.so"
#define RCMOE_SHAPER_SYM_GBPS "rcmoe_shaper_gbps"

/* The rate every TCP send of this process is held to, in Gb/s (1e9 bits per second); 0 when
 * RCMOE_SHAPER_GBPS is missing or invalid (TCP sends then fail with EINVAL). */
typedef double (*rcmoe_shaper_gbps_fn)(void);
double rcmoe_shaper_gbps(void);

/* Bytes charged to the token bucket so far: what the TCP sends of this process really sent. */
unsigned long long rcmoe_shaper_bytes(void);

#endif
