/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Logging. The plugin logs only through the logger NCCL hands to init, prefixed "NET/RCMoE".
 * Until init (and in tests and tools, which call rcmoe_log_use_stderr) a stderr logger stands in;
 * it honours NCCL_DEBUG (WARN by default, INFO, TRACE) like NCCL does. Nothing goes to stdout.
 */
#ifndef RCMOE_LOG_H
#define RCMOE_LOG_H

#include "rcmoe/nccl_abi.h"

void rcmoe_log_set(ncclDebugLogger_t logger);
ncclDebugLogger_t rcmoe_log_get(void);
/* A logger that writes to stderr, for tests and tools. */
void rcmoe_log_stderr(ncclDebugLogLevel level, unsigned long flags, const char *file, int line,
		      const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#define RCMOE_LOG_(level, flags, fmt, ...)                                                         \
	rcmoe_log_get()((level), (flags), __FILE__, __LINE__, "NET/RCMoE " fmt, ##__VA_ARGS__)

#define RCMOE_WARN(fmt, ...)        RCMOE_LOG_(NCCL_LOG_WARN, NCCL_NET, fmt, ##__VA_ARGS__)
#define RCMOE_INFO(flags, fmt, ...) RCMOE_LOG_(NCCL_LOG_INFO, (flags), fmt, ##__VA_ARGS__)
#ifdef RCMOE_ENABLE_TRACE
#define RCMOE_TRACE(fmt, ...) RCMOE_LOG_(NCCL_LOG_TRACE, NCCL_NET, fmt, ##__VA_ARGS__)
#else
#define RCMOE_TRACE(fmt, ...)                                                                      \
	do {                                                                                       \
	} while (0)
#endif

#endif
