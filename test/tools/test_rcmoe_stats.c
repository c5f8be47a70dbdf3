/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rcmoe-stats: its readers and summary on the sample files in data/, the same counters written
 * by the plugin's writer in both formats and read back, malformed and truncated input (an error,
 * never a crash), and the binary's output and exit status.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rcmoe/nccl_abi.h"
#include "stats.h"
#include "stats_tool.h"
#include "test_log.h"

static char tmpdir[64];

static void setup(void)
{
	test_log_init();
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/rcmoe-stats-tool-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
}

static void teardown(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", tmpdir);
}

TestSuite(rcmoe_stats, .init = setup, .fini = teardown, .timeout = 60);

static const char *data(const char *name)
{
	static char path[4][512];
	static int next;
	const char *dir = getenv("RCMOE_STATS_TEST_DATA");
	cr_assert_not_null(dir, "RCMOE_STATS_TEST_DATA not set by the test harness");
	char *p = path[next++ % 4];
	snprintf(p, sizeof(path[0]), "%s/%s", dir, name);
	return p;
}

static const struct st_row *find_row(const struct st_summary *s, int send, const char *func,
				     const char *dtype)
{
	for (size_t i = 0; i < s->nrows; i++) {
		const struct st_row *r = &s->rows[i];
		if (r->send == send && !strcmp(r->func, func) && !strcmp(r->dtype, dtype))
			return r;
	}
	return NULL;
}

static void expect_row(const struct st_summary *s, int send, const char *func, const char *dtype,
		       uint64_t messages, uint64_t logical, uint64_t wire, double codec_us)
{
	const struct st_row *r = find_row(s, send, func, dtype);
	cr_assert_not_null(r, "no row %s %s %s", send ? "send" : "recv", func, dtype);
	cr_expect_eq(r->messages, messages, "%s %s messages %llu", func, dtype,
		     (unsigned long long)r->messages);
	cr_expect_eq(r->logical, logical, "%s %s logical %llu", func, dtype,
		     (unsigned long long)r->logical);
	cr_expect_eq(r->wire, wire, "%s %s wire %llu", func, dtype, (unsigned long long)r->wire);
	cr_expect(fabs(r->codec_us - codec_us) < 0.05, "%s %s codec %f us, want %f", func, dtype,
		  r->codec_us, codec_us);
}

/* A finalize record wins over the comm's periodic ones; a comm without one gives its latest
 * periodic record; the same comm id in another process or host is another comm. */
Test(rcmoe_stats, json_lines_summary)
{
	struct st_input in = { 0 };
	struct st_summary s;
	cr_assert_eq(st_read_path(&in, data("two-hosts.jsonl")), 0, "%s", in.error);
	cr_assert_eq(st_summarize(&in, 0, &s), 0);
	cr_expect_eq(s.ncomms, 3);
	cr_expect_eq(s.nfinal, 2);
	cr_expect_eq(s.nperiodic, 1);
	cr_expect_eq(s.nprocs, 3);
	cr_expect_eq(s.nhosts, 2);
	cr_expect_eq(s.njson, 1);
	expect_row(&s, 1, "AlltoAll", "ncclBfloat16", 100, 10000, 4000, 80);
	expect_row(&s, 1, "Send", "ncclInt64", 4, 128, 128, 0);
	expect_row(&s, 1, "total", "", 104, 10128, 4128, 80);
	expect_row(&s, 0, "AlltoAll", "ncclBfloat16", 20, 2000, 1000, 30);
	expect_row(&s, 0, "unknown", "unknown", 1, 7, 7, 0);
	expect_row(&s, 0, "total", "", 21, 2007, 1007, 30);
	cr_expect_eq(s.nrows, 6);
	/* send rows first, biggest first, each direction closed by its total */
	cr_expect(s.rows[0].send && !strcmp(s.rows[0].func, "AlltoAll"));
	cr_expect(s.rows[2].send && s.rows[2].total);
	cr_expect(!s.rows[5].send && s.rows[5].total);
	st_summary_free(&s);
	st_input_free(&in);
}

Test(rcmoe_stats, per_comm_rows)
{
	struct st_input in = { 0 };
	struct st_summary s;
	cr_assert_eq(st_read_path(&in, data("two-hosts.jsonl")), 0, "%s", in.error);
	cr_assert_eq(st_summarize(&in, 1, &s), 0);
	int found = 0;
	for (size_t i = 0; i < s.nrows; i++)
		if (!strcmp(s.rows[i].comm, "h1:100:0xa") && !s.rows[i].total) {
			found++;
			cr_expect_eq(s.rows[i].wire, 1000);
		}
	cr_expect_eq(found, 1);
	st_summary_free(&s);
	st_input_free(&in);
}

Test(rcmoe_stats, prometheus_summary)
{
	struct st_input in = { 0 };
	struct st_summary s;
	cr_assert_eq(st_read_path(&in, data("snapshot.prom")), 0, "%s", in.error);
	cr_assert_eq(st_summarize(&in, 0, &s), 0);
	cr_expect_eq(s.nprom, 1);
	cr_expect_eq(s.ncomms, 2);
	cr_expect_eq(s.nfinal, 1);
	cr_expect_eq(s.nperiodic, 1);
	expect_row(&s, 1, "AlltoAll", "ncclBfloat16", 48, 4800, 2200, 5000);
	expect_row(&s, 0, "AlltoAll", "ncclBfloat16", 40, 4000, 2000, 2000);
	st_summary_free(&s);
	st_input_free(&in);
}

/* Files of several ranks and both formats add up. */
Test(rcmoe_stats, several_files)
{
	struct st_input in = { 0 };
	struct st_summary s;
	cr_assert_eq(st_read_path(&in, data("two-hosts.jsonl")), 0, "%s", in.error);
	cr_assert_eq(st_read_path(&in, data("snapshot.prom")), 0, "%s", in.error);
	cr_assert_eq(st_summarize(&in, 0, &s), 0);
	cr_expect_eq(s.nfiles, 2);
	/* h0:100:0xa is in both: the finalize record read last (the snapshot's) counts */
	cr_expect_eq(s.ncomms, 4);
	expect_row(&s, 1, "AlltoAll", "ncclBfloat16", 40 + 8 + 20 + 40, 4000 + 800 + 2000 + 4000,
		   2000 + 200 + 1000 + 1000, 4000 + 1000 + 20 + 20);
	cr_expect_null(find_row(&s, 1, "Send", "ncclInt64"),
		       "a superseded record of h0:100:0xa was counted");
	st_summary_free(&s);
	st_input_free(&in);
}

static void write_counters(const char *tmpl, int format)
{
	static struct rcmoe_stats a, b;
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	struct rcmoe_msg_info bf, i64, unknown;
	rcmoe_msg_info_reset(&bf);
	rcmoe_msg_info_reset(&i64);
	rcmoe_msg_info_reset(&unknown);
	bf.known = i64.known = 1;
	bf.func = ncclFuncAlltoAll;
	bf.dtype = ncclBfloat16;
	i64.func = ncclFuncSend;
	i64.dtype = ncclInt64;
	cr_assert_eq(rcmoe_stats_setup(tmpl, format), RCMOE_OK);
	rcmoe_stats_add(&a, RCMOE_DIR_SEND, &bf, 1 << 20, 300000, 123456);
	rcmoe_stats_add(&b, RCMOE_DIR_RECV, &bf, 1 << 20, 300000, 654321);
	cr_assert_eq(rcmoe_stats_write(&a, 0xa, tmpl, "periodic"), RCMOE_OK);
	cr_assert_eq(rcmoe_stats_write(&b, 0xb, tmpl, "periodic"), RCMOE_OK);
	rcmoe_stats_add(&a, RCMOE_DIR_SEND, &bf, 1 << 20, 300000, 100000);
	rcmoe_stats_add(&a, RCMOE_DIR_SEND, &i64, 64, 64, 0);
	rcmoe_stats_add(&a, RCMOE_DIR_RECV, &unknown, 9, 9, 0);
	/* dedup lines and samples (per peer) are not message counters: the reader skips them */
	bf.peer = 2;
	rcmoe_stats_add_dedup(&a, RCMOE_DIR_SEND, &bf, 64, 16, 4096);
	cr_assert_eq(rcmoe_stats_write(&a, 0xa, tmpl, "finalize"), RCMOE_OK);
	cr_assert_eq(rcmoe_stats_flush(5000), RCMOE_OK);
}

/* What the plugin's writer produces, in either format, reads back to the same summary. */
Test(rcmoe_stats, plugin_files_read_back_alike)
{
	char json[128], prom_tmpl[128], prom[160];
	setenv("NCCL_HOSTID", "hx", 1);
	snprintf(json, sizeof(json), "%s/s.jsonl", tmpdir);
	snprintf(prom_tmpl, sizeof(prom_tmpl), "%s/s-%%p.prom", tmpdir);
	rcmoe_stats_expand_path(prom_tmpl, prom, sizeof(prom));
	write_counters(json, RCMOE_STATS_FORMAT_JSON);
	write_counters(prom_tmpl, RCMOE_STATS_FORMAT_PROMETHEUS);
	rcmoe_stats_shutdown(5000);

	struct st_summary s[2];
	const char *paths[2] = { json, prom };
	for (int k = 0; k < 2; k++) {
		struct st_input in = { 0 };
		cr_assert_eq(st_read_path(&in, paths[k]), 0, "%s", in.error);
		cr_assert_eq(st_summarize(&in, 0, &s[k]), 0);
		cr_expect_eq(s[k].ncomms, 2, "%s", paths[k]);
		cr_expect_eq(s[k].nfinal, 1, "%s", paths[k]);
		st_input_free(&in);
		expect_row(&s[k], 1, "AlltoAll", "ncclBfloat16", 2, 2 << 20, 600000, 223.456);
		expect_row(&s[k], 1, "Send", "ncclInt64", 1, 64, 64, 0);
		expect_row(&s[k], 0, "AlltoAll", "ncclBfloat16", 1, 1 << 20, 300000, 654.321);
		expect_row(&s[k], 0, "unknown", "unknown", 1, 9, 9, 0);
	}
	cr_expect_eq(s[0].nrows, s[1].nrows);
	for (size_t i = 0; i < s[0].nrows && i < s[1].nrows; i++) {
		cr_expect_str_eq(s[0].rows[i].func, s[1].rows[i].func);
		cr_expect_eq(s[0].rows[i].wire, s[1].rows[i].wire);
	}
	st_summary_free(&s[0]);
	st_summary_free(&s[1]);
}

/* Each bad file is refused with its name and, where one is to blame, the line. */
Test(rcmoe_stats, malformed_files_are_errors)
{
	static const struct {
		const char *file, *want;
	} bad[] = {
		{ "bad-truncated.jsonl", "bad-truncated.jsonl:3: unterminated string" },
		{ "bad-count.jsonl", "bad-count.jsonl:1: \"messages\" is missing or not a count" },
		{ "bad-event.jsonl", "bad-event.jsonl:2: \"event\" is \"start\"" },
		{ "bad-missing-wire.prom", "no rcmoe_wire_bytes_total sample" },
		{ "bad-label.prom", "bad-label.prom:5: label value not quoted" },
		{ "empty.jsonl", "no counters in it" },
		{ "does-not-exist.jsonl", "cannot open" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct st_input in = { 0 };
		cr_expect_eq(st_read_path(&in, data(bad[i].file)), -1, "%s accepted", bad[i].file);
		cr_expect_not_null(strstr(in.error, bad[i].want), "%s: error \"%s\", want \"%s\"",
				   bad[i].file, in.error, bad[i].want);
		st_input_free(&in);
	}
}

static int parse_text(const char *text, size_t len, char *error, size_t size)
{
	struct st_input in = { 0 };
	FILE *f = fmemopen((void *)text, len, "r");
	cr_assert_not_null(f);
	int rc = st_read_stream(&in, f, "mem");
	fclose(f);
	snprintf(error, size, "%s", in.error);
	if (!rc) {
		struct st_summary s;
		cr_assert_eq(st_summarize(&in, 1, &s), 0);
		st_summary_free(&s);
	}
	st_input_free(&in);
	return rc;
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f, "%s", path);
	char *p = malloc(1 << 16);
	*len = fread(p, 1, (1 << 16) - 1, f);
	fclose(f);
	p[*len] = '\0';
	return p;
}

/* Every prefix of the good files, and random bytes flipped in them: parsed or refused with a
 * message, never a crash (Criterion reports a crash as a failure). */
Test(rcmoe_stats, truncated_and_corrupted_input_never_crashes)
{
	const char *files[] = { "two-hosts.jsonl", "snapshot.prom" };
	char error[512];
	unsigned seed = 12345;
	for (int k = 0; k < 2; k++) {
		size_t len;
		char *text = slurp(data(files[k]), &len);
		for (size_t cut = 0; cut <= len; cut++)
			if (parse_text(text, cut, error, sizeof(error)) != 0)
				cr_expect_neq(error[0], '\0', "refused without a message");
		char *copy = malloc(len);
		for (int round = 0; round < 3000; round++) {
			memcpy(copy, text, len);
			for (int flips = 0; flips < 1 + round % 4; flips++) {
				seed = seed * 1103515245u + 12345u;
				size_t at = (seed >> 8) % len;
				seed = seed * 1103515245u + 12345u;
				copy[at] = (char)(seed >> 16);
			}
			if (parse_text(copy, len, error, sizeof(error)) != 0)
				cr_expect_neq(error[0], '\0', "refused without a message");
		}
		free(copy);
		free(text);
	}
}

/* Runs the binary; returns its exit status, with stdout and stderr in `out`. */
static int run_tool(const char *args, char *out, size_t size)
{
	const char *tool = getenv("RCMOE_STATS_TOOL");
	cr_assert_not_null(tool, "RCMOE_STATS_TOOL not set by the test harness");
	char cmd[2048];
	snprintf(cmd, sizeof(cmd), "'%s' %s 2>&1", tool, args);
	FILE *p = popen(cmd, "r");
	cr_assert_not_null(p);
	size_t n = fread(out, 1, size - 1, p);
	out[n] = '\0';
	int status = pclose(p);
	cr_assert(WIFEXITED(status), "%s did not exit", cmd);
	return WEXITSTATUS(status);
}

Test(rcmoe_stats, tool_prints_the_table_and_draws)
{
	static char out[65536];
	char args[1024], svg[128];
	snprintf(svg, sizeof(svg), "%s/chart.svg", tmpdir);
	snprintf(args, sizeof(args), "--bars --svg '%s' '%s' '%s'", svg, data("two-hosts.jsonl"),
		 data("snapshot.prom"));
	cr_assert_eq(run_tool(args, out, sizeof(out)), 0, "%s", out);
	cr_expect_not_null(strstr(out, "# rcmoe-stats: 2 files (1 JSON lines, 1 Prometheus)"), "%s",
			   out);
	cr_expect_not_null(strstr(out, " send       AlltoAll    ncclBfloat16           108"), "%s",
			   out);
	cr_expect_not_null(strstr(out, "|========================================|"),
			   "the largest row's bar is not full: %s", out);
	cr_expect_not_null(strstr(out, "# chart written to"), "%s", out);
	size_t len;
	char *text = slurp(svg, &len);
	cr_expect_eq(strncmp(text, "<?xml", 5), 0);
	cr_expect_not_null(strstr(text, "<svg "));
	cr_expect_not_null(strstr(text, "AlltoAll ncclBfloat16"));
	cr_expect(len > 7 && !strcmp(text + len - 7, "</svg>\n"), "SVG not closed");
	free(text);
}

Test(rcmoe_stats, tool_exit_status)
{
	static char out[65536];
	char args[1024];
	snprintf(args, sizeof(args), "'%s'", data("bad-count.jsonl"));
	cr_expect_eq(run_tool(args, out, sizeof(out)), 1);
	cr_expect_not_null(strstr(out, "rcmoe-stats: "), "%s", out);
	cr_expect_not_null(strstr(out, "bad-count.jsonl:1:"), "%s", out);
	cr_expect_eq(run_tool("", out, sizeof(out)), 2, "no file: %s", out);
	cr_expect_eq(run_tool("--width 1 x", out, sizeof(out)), 2, "%s", out);
	cr_expect_eq(run_tool("--help", out, sizeof(out)), 0);
	cr_expect_not_null(strstr(out, "finalize record"), "--help says which records count");
	snprintf(args, sizeof(args), "--svg /nonexistent-dir/x.svg '%s'", data("snapshot.prom"));
	cr_expect_eq(run_tool(args, out, sizeof(out)), 1, "%s", out);
	/* standard input */
	snprintf(args, sizeof(args), "- < '%s'", data("snapshot.prom"));
	cr_expect_eq(run_tool(args, out, sizeof(out)), 0, "%s", out);
}
