/* SPDX-License-Identifier: Apache-2.0 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>

#include "rcmoe/log.h"
#include "test_log.h"

static atomic_int warn_count;

static void counting_logger(ncclDebugLogLevel level, unsigned long flags, const char *file,
			    int line, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	if (level == NCCL_LOG_WARN)
		atomic_fetch_add(&warn_count, 1);
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	rcmoe_log_stderr(level, flags, file, line, "%s", buf);
}

void test_log_init(void)
{
	atomic_store(&warn_count, 0);
	rcmoe_log_set(counting_logger);
}

int test_log_warn_count(void)
{
	return atomic_load(&warn_count);
}
