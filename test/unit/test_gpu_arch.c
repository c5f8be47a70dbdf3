/* SPDX-License-Identifier: Apache-2.0 */
/* The advice in the warning on a GPU the build has no kernel code for (gpu_context.c): what the
 * build carries, and a gpu_arch list that adds the device. No GPU needed. */
#include <criterion/criterion.h>
#include <string.h>

#include "gpu.h"

static char built[256], fix[128];

Test(gpu_arch, default_list_on_an_older_gpu)
{
	/* a V100 (7.0) against the default build */
	rcmoe_gpu_arch_advice("80,90", 7, 0, built, sizeof(built), fix, sizeof(fix));
	cr_expect_str_eq(built, "sm_80, sm_90 and PTX compute_80");
	cr_expect_str_eq(fix, "70,80,90", "an older GPU goes first (it gets the PTX): %s", fix);
}

Test(gpu_arch, newer_gpu_is_appended)
{
	rcmoe_gpu_arch_advice("90", 12, 0, built, sizeof(built), fix, sizeof(fix));
	cr_expect_str_eq(built, "sm_90 and PTX compute_90");
	cr_expect_str_eq(fix, "90,120");
	rcmoe_gpu_arch_advice("90", 8, 6, built, sizeof(built), fix, sizeof(fix));
	cr_expect_str_eq(fix, "86,90");
}

Test(gpu_arch, suffixed_and_single_entries)
{
	rcmoe_gpu_arch_advice("90a", 10, 0, built, sizeof(built), fix, sizeof(fix));
	cr_expect_str_eq(built, "sm_90a and PTX compute_90a");
	cr_expect_str_eq(fix, "90a,100");
}

Test(gpu_arch, empty_list)
{
	rcmoe_gpu_arch_advice("", 9, 0, built, sizeof(built), fix, sizeof(fix));
	cr_expect_str_eq(built, "no GPU architecture");
	cr_expect_str_eq(fix, "90");
}

Test(gpu_arch, small_buffers_truncate_and_terminate)
{
	char b[12], f[6];
	memset(b, 'x', sizeof(b));
	memset(f, 'x', sizeof(f));
	rcmoe_gpu_arch_advice("80,86,89,90,100,120", 7, 5, b, sizeof(b), f, sizeof(f));
	cr_expect_eq(strnlen(b, sizeof(b)), sizeof(b) - 1, "built: %.*s", (int)sizeof(b), b);
	cr_expect_eq(strnlen(f, sizeof(f)), sizeof(f) - 1, "fix: %.*s", (int)sizeof(f), f);
	cr_expect_eq(strncmp(b, "sm_80, sm_8", sizeof(b) - 1), 0, "built: %s", b);
	cr_expect_eq(strncmp(f, "75,80", sizeof(f) - 1), 0, "fix: %s", f);
}
