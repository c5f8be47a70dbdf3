/* SPDX-License-Identifier: Apache-2.0 */
/* Number formatting shared by the tools' nccl-tests-style tables (rcmoe-bench, rcmoe-stats). */
#ifndef RCMOE_TOOLS_PRINT_FLOAT_H
#define RCMOE_TOOLS_PRINT_FLOAT_H

#include <stdio.h>

/* Print v right-aligned in `width` columns with 2, 1 or 0 decimals, the most that fit in
 * `maxchars` characters; NaN prints as N/A, infinities as inf / -inf. */
void rcmoe_print_float(FILE *out, double v, int width, int maxchars);

#endif
