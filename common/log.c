/* SPDX-License-Identifier: Apache-2.0 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "rcmoe/log.h"

static _Atomic(ncclDebugLogger_t) current_logger;

void rcmoe_log_set(ncclDebugLogger_t logger)
{
	if (logger)
		atomic_store(&current_logger, logger);
}

ncclDebugLogger_t rcmoe_log_get(void)
{
	ncclDebugLogger_t l = atomic_load(&current_logger);
	return l ? l : rcmoe_log_stderr;
}

/* NCCL_DEBUG as NCCL reads it: VERSION, WARN (our default), INFO, TRACE. */
static int stderr_level(void)
{
	static _Atomic int level = -1;
	int l = atomic_load(&level);
	if (l >= 0)
		return l;
	const char *e = getenv("NCCL_DEBUG");
	l = NCCL_LOG_WARN;
	if (e) {
		if (!strcasecmp(e, "VERSION"))
			l = NCCL_LOG_VERSION;
		else if (!strcasecmp(e, "INFO"))
			l = NCCL_LOG_INFO;
		else if (!strcasecmp(e, "TRACE"))
			l = NCCL_LOG_TRACE;
	}
	atomic_store(&level, l);
	return l;
}

void rcmoe_log_stderr(ncclDebugLogLevel level, unsigned long flags, const char *file, int line,
		      const char *fmt, ...)
{
	(void)flags;
	if ((int)level > stderr_level() || level == NCCL_LOG_NONE)
		return;
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	const char *tag = level == NCCL_LOG_WARN   ? "WARN"
			  : level == NCCL_LOG_INFO ? "INFO"
						   : "TRACE";
	if (level == NCCL_LOG_WARN)
		fprintf(stderr, "[%d] %s %s:%d %s\n", (int)getpid(), tag, file, line, buf);
	else
		fprintf(stderr, "[%d] %s %s\n", (int)getpid(), tag, buf);
}
