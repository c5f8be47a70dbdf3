/* SPDX-License-Identifier: Apache-2.0 */
/* Typed view of the RCMOE_* variables (table in params.def), read once per process. */
#ifndef RCMOE_PARAMS_H
#define RCMOE_PARAMS_H

#include <stdint.h>
#include "rcmoe/status.h"

struct rcmoe_params {
#define RCMOE_PARAM_INT(field, env, def, lo, hi, doc)    int64_t field;
#define RCMOE_PARAM_ENUM(field, env, def, values, doc)   int field;
#define RCMOE_PARAM_STR(field, env, def, doc)            char field[256];
#define RCMOE_PARAM_CHOICE(field, env, def, values, doc) int64_t field;
#define RCMOE_PARAM_REAL(field, env, def, lo, hi, doc)   double field;
#include "rcmoe/params.def"
#undef RCMOE_PARAM_INT
#undef RCMOE_PARAM_ENUM
#undef RCMOE_PARAM_STR
#undef RCMOE_PARAM_CHOICE
#undef RCMOE_PARAM_REAL
};

/* Enum indexes, in the order of the values string in params.def. */
enum { RCMOE_TRANSPORT_AUTO = 0, RCMOE_TRANSPORT_SOCKET = 1, RCMOE_TRANSPORT_IB = 2 };
enum { RCMOE_CUDA_BUFFERS_AUTO = 0, RCMOE_CUDA_BUFFERS_ON = 1, RCMOE_CUDA_BUFFERS_OFF = 2 };
enum { RCMOE_A2A_SCOPE_ALLTOALL = 0, RCMOE_A2A_SCOPE_P2P = 1 };
enum { RCMOE_A2A_DEDUP_OFF = 0, RCMOE_A2A_DEDUP_ON = 1 };
enum { RCMOE_RAISE_NOFILE_ON = 0, RCMOE_RAISE_NOFILE_OFF = 1 };
enum { RCMOE_STATS_FORMAT_JSON = 0, RCMOE_STATS_FORMAT_PROMETHEUS = 1 };
enum { RCMOE_AR_CODEC_AUTO = 0, RCMOE_AR_CODEC_PTS = 1, RCMOE_AR_CODEC_LSQ = 2 };

typedef const char *(*rcmoe_getenv_fn)(const char *name);

/* Parse every variable through `get` into `out`. Each invalid value is a WARN naming the
 * variable, the value and what is allowed; the result is then RCMOE_ERR_USAGE. Values that are
 * set are logged at INFO when `log_set` is non-zero. */
rcmoe_status_t rcmoe_params_parse(struct rcmoe_params *out, rcmoe_getenv_fn get, int log_set);

/* The process-wide parameters, parsed from the environment on first call (thread-safe). */
rcmoe_status_t rcmoe_params_load(const struct rcmoe_params **out);

/* Number of entries and their names, for the documentation test (test_params.c). */
int rcmoe_params_count(void);
const char *rcmoe_params_name(int i);

#endif
