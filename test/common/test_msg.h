/* SPDX-License-Identifier: Apache-2.0 */
/* A resolved transfer description (what the profiler chain would attribute), for tests. */
#ifndef RCMOE_TEST_MSG_H
#define RCMOE_TEST_MSG_H

#include "msginfo.h"

static inline struct rcmoe_msg_info test_msg_info(int func, int dtype)
{
	struct rcmoe_msg_info m;
	rcmoe_msg_info_reset(&m);
	m.known = 1;
	m.func = func;
	m.dtype = dtype;
	return m;
}

#endif
