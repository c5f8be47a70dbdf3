/* SPDX-License-Identifier: Apache-2.0 */
/* rcmoe-place's output: the before/after table on stdout and the placement as JSON. */
#include <errno.h>
#include <stdio.h>

#include "place.h"

static double frac(uint64_t a, uint64_t b)
{
	return b ? (double)a / (double)b : 0.0;
}

static void print_row(FILE *out, const char *name, uint64_t rows, uint64_t intra,
		      const struct pl_result *res)
{
	fprintf(out, "  %-10s %12.4f ", name, frac(rows, res->info.tokens));
	if (res->pairs)
		fprintf(out, "%14.4f", frac(intra, res->pairs));
	else
		fprintf(out, "%14s", "-");
	fprintf(out, " %14llu\n", (unsigned long long)rows);
}

void pl_print_table(FILE *out, const char *path, const struct pl_result *res)
{
	fprintf(out, "# rcmoe-place: %s (%s), %llu tokens, k %u, %u experts on %u devices x %u\n",
		path, res->info.format == PL_FORMAT_BINARY ? "binary" : "text",
		(unsigned long long)res->info.tokens, res->info.k, res->info.experts, res->devices,
		res->per_device);
	fprintf(out, "  %-10s %12s %14s %14s\n", "placement", "rows/token", "intra-collab",
		"a2a rows");
	print_row(out, "identity", res->rows_id, res->intra_id, res);
	print_row(out, "placed", res->rows, res->intra, res);
	double change = res->rows_id ? 100.0 * ((double)res->rows / (double)res->rows_id - 1.0) : 0;
	fprintf(out, "  %-10s %11.1f%% %14s %13.1f%%\n", "change", change, "", change);
	if (!res->improved)
		fprintf(out, "# no placement found beats the identity: the identity is kept\n");
	fprintf(out,
		"# time: read + graph %.3f s, search %.3f s (%u restarts), exact evaluation "
		"%.3f s, total %.3f s\n",
		res->t_read, res->t_search, res->restarts, res->t_eval,
		res->t_read + res->t_search + res->t_eval);
}

static void json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static void json_side(FILE *f, const char *name, uint64_t rows, uint64_t intra,
		      const struct pl_result *res)
{
	fprintf(f,
		"  \"%s\": {\"a2a_rows\": %llu, \"rows_per_token\": %.6f, \"intra_fraction\": "
		"%.6f},\n",
		name, (unsigned long long)rows, frac(rows, res->info.tokens),
		frac(intra, res->pairs));
}

int pl_write_json(const char *path, const char *trace, const struct pl_result *res)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	uint32_t e = res->info.experts;
	fprintf(f, "{\n  \"format\": \"rcmoe-placement\",\n  \"version\": 1,\n  \"trace\": ");
	json_string(f, trace);
	fprintf(f, ",\n");
	fprintf(f,
		"  \"devices\": %u,\n  \"experts_per_device\": %u,\n  \"experts\": %u,\n  \"k\": "
		"%u,\n  \"tokens\": %llu,\n  \"seed\": %llu,\n  \"restarts\": %u,\n",
		res->devices, res->per_device, e, res->info.k, (unsigned long long)res->info.tokens,
		(unsigned long long)res->seed, res->restarts);
	fprintf(f, "  \"improved\": %s,\n", res->improved ? "true" : "false");
	json_side(f, "identity", res->rows_id, res->intra_id, res);
	json_side(f, "placed", res->rows, res->intra, res);
	fprintf(f, "  \"expert_to_device\": [");
	for (uint32_t x = 0; x < e; x++)
		fprintf(f, "%s%u", x ? ", " : "", res->dev[x]);
	fprintf(f, "],\n  \"device_experts\": [");
	for (uint32_t d = 0; d < res->devices; d++) {
		fprintf(f, "%s[", d ? ", " : "");
		int first = 1;
		for (uint32_t x = 0; x < e; x++)
			if (res->dev[x] == d) {
				fprintf(f, "%s%u", first ? "" : ", ", x);
				first = 0;
			}
		fputc(']', f);
	}
	fprintf(f, "]\n}\n");
	int bad = ferror(f);
	if (fclose(f) != 0 || bad) {
		if (!errno)
			errno = EIO;
		return -1;
	}
	return 0;
}
