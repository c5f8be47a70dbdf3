/* SPDX-License-Identifier: Apache-2.0 */
/* Test helpers shared by all suites. */
#ifndef RCMOE_TEST_LOG_H
#define RCMOE_TEST_LOG_H

/* Route rcmoe's log to stderr (honouring NCCL_DEBUG). Call from a test's .init. */
void test_log_init(void);

/* Count of WARN lines logged since test_log_init, for tests that expect a refusal to be loud. */
int test_log_warn_count(void);

#endif
