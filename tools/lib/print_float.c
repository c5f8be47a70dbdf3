/* SPDX-License-Identifier: Apache-2.0 */
#include "print_float.h"

#include <math.h>
#include <string.h>

void rcmoe_print_float(FILE *out, double v, int width, int maxchars)
{
	char buf[64];
	if (!isfinite(v)) {
		fprintf(out, "%*s", width, isnan(v) ? "N/A" : v > 0 ? "inf" : "-inf");
		return;
	}
	/* Fewer decimals before a wider column: rows keep their alignment (nccl-tests does so). */
	for (int prec = 2; prec >= 0; prec--) {
		snprintf(buf, sizeof(buf), "%.*f", prec, v);
		if ((int)strlen(buf) <= maxchars || prec == 0)
			break;
	}
	fprintf(out, "%*s", width, buf);
}
