/* SPDX-License-Identifier: Apache-2.0 */
/* Counters: accumulation per function and datatype, the JSON lines file, path templates. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rcmoe/nccl_abi.h"
#include "stats.h"
#include "test_log.h"
#include "test_msg.h"

TestSuite(stats, .init = test_log_init);

Test(stats, cells_accumulate_and_unknown_is_separate)
{
	static struct rcmoe_stats st;
	struct rcmoe_msg_info bf = test_msg_info(ncclFuncSend, ncclBfloat16);
	struct rcmoe_msg_info unknown;
	rcmoe_msg_info_reset(&unknown);
	rcmoe_stats_add(&st, RCMOE_DIR_SEND, &bf, 100, 60, 5);
	rcmoe_stats_add(&st, RCMOE_DIR_SEND, &bf, 50, 30, 5);
	rcmoe_stats_add(&st, RCMOE_DIR_RECV, &unknown, 7, 7, 0);
	struct rcmoe_stat_cell *c = &st.cell[RCMOE_DIR_SEND][ncclFuncSend][ncclBfloat16];
	cr_expect_eq(c->messages, 2);
	cr_expect_eq(c->logical_bytes, 150);
	cr_expect_eq(c->wire_bytes, 90);
	cr_expect_eq(c->codec_ns, 10);
	cr_expect_eq(st.cell[RCMOE_DIR_RECV][RCMOE_NFUNC][RCMOE_NDTYPE].messages, 1);
}

Test(stats, json_lines_file)
{
	static struct rcmoe_stats st;
	char tmpl[] = "/tmp/rcmoe-stats-test-XXXXXX";
	int fd = mkstemp(tmpl);
	cr_assert_geq(fd, 0);
	close(fd);
	struct rcmoe_msg_info bf = test_msg_info(ncclFuncSend, ncclBfloat16);
	struct rcmoe_msg_info i64 = test_msg_info(ncclFuncRecv, ncclInt64);
	rcmoe_stats_add(&st, RCMOE_DIR_SEND, &bf, 4096, 4096, 0);
	rcmoe_stats_add(&st, RCMOE_DIR_RECV, &i64, 32, 32, 0);
	cr_assert_eq(rcmoe_stats_write(&st, 0xabc, tmpl, "finalize"), RCMOE_OK);
	cr_assert_eq(rcmoe_stats_flush(5000), RCMOE_OK); /* the writer thread writes it */
	FILE *f = fopen(tmpl, "r");
	char line[1024];
	int lines = 0, saw_bf = 0, saw_i64 = 0;
	while (fgets(line, sizeof(line), f)) {
		lines++;
		cr_expect_eq(line[0], '{');
		cr_expect_not_null(strstr(line, "\"comm\":\"0xabc\""));
		if (strstr(line, "\"func\":\"Send\",\"dtype\":\"ncclBfloat16\"") &&
		    strstr(line, "\"logical_bytes\":4096"))
			saw_bf = 1;
		if (strstr(line, "\"dir\":\"recv\",\"func\":\"Recv\",\"dtype\":\"ncclInt64\""))
			saw_i64 = 1;
	}
	fclose(f);
	unlink(tmpl);
	cr_expect_eq(lines, 2);
	cr_expect(saw_bf && saw_i64);
}

/* The caller only queues the record; the writer thread finds the file unwritable and WARNs. */
Test(stats, unwritable_file_is_a_warning_from_the_writer)
{
	static struct rcmoe_stats st;
	struct rcmoe_msg_info bf = test_msg_info(ncclFuncSend, ncclBfloat16);
	rcmoe_stats_add(&st, RCMOE_DIR_SEND, &bf, 1, 1, 0);
	int warns = test_log_warn_count();
	cr_expect_eq(rcmoe_stats_write(&st, 1, "/nonexistent-dir/x", "finalize"), RCMOE_OK);
	cr_expect_eq(rcmoe_stats_flush(5000), RCMOE_OK);
	cr_expect_gt(test_log_warn_count(), warns);
}

Test(stats, path_template)
{
	char out[256], want[64];
	setenv("NCCL_HOSTID", "h3", 1);
	rcmoe_stats_expand_path("/tmp/s.%h.%p.jsonl", out, sizeof(out));
	snprintf(want, sizeof(want), "/tmp/s.h3.%d.jsonl", (int)getpid());
	cr_expect_str_eq(out, want);
}

/* Dedup cells: per direction, peer and datatype, in the JSON file as "record":"dedup" lines
 * with the duplicate fraction; more peers than slots share the last one (peer -1). */
Test(stats, dedup_cells_per_peer)
{
	static struct rcmoe_stats st;
	char tmpl[] = "/tmp/rcmoe-stats-dedup-XXXXXX";
	int fd = mkstemp(tmpl);
	cr_assert_geq(fd, 0);
	close(fd);
	struct rcmoe_msg_info m = test_msg_info(ncclFuncSend, ncclBfloat16);
	m.peer = 3;
	rcmoe_stats_add(&st, RCMOE_DIR_SEND, &m, 4096, 3072, 0);
	rcmoe_stats_add_dedup(&st, RCMOE_DIR_SEND, &m, 16, 4, 1024);
	rcmoe_stats_add_dedup(&st, RCMOE_DIR_SEND, &m, 16, 0, 0);
	m.peer = 5;
	rcmoe_stats_add_dedup(&st, RCMOE_DIR_SEND, &m, 10, 5, 1280);
	rcmoe_stats_add_dedup(&st, RCMOE_DIR_RECV, &m, 10, 5, 1280);
	cr_assert_eq(rcmoe_stats_write(&st, 0xd, tmpl, "finalize"), RCMOE_OK);
	cr_assert_eq(rcmoe_stats_flush(5000), RCMOE_OK);
	FILE *f = fopen(tmpl, "r");
	char line[1024];
	int counters = 0, peer3 = 0, peer5 = 0, recv5 = 0;
	while (fgets(line, sizeof(line), f)) {
		if (!strstr(line, "\"record\":\"dedup\"")) {
			counters++;
			continue;
		}
		if (strstr(line, "\"dir\":\"send\",\"peer\":3,\"dtype\":\"ncclBfloat16\","
				 "\"blocks\":32,\"duplicate_blocks\":4,\"saved_bytes\":1024,"
				 "\"duplicate_fraction\":0.1250}"))
			peer3++;
		if (strstr(line, "\"dir\":\"send\",\"peer\":5,") &&
		    strstr(line, "\"duplicate_fraction\":0.5000}"))
			peer5++;
		if (strstr(line, "\"dir\":\"recv\",\"peer\":5,"))
			recv5++;
	}
	fclose(f);
	unlink(tmpl);
	cr_expect_eq(counters, 1);
	cr_expect_eq(peer3, 1, "peer 3's dedup line missing or wrong");
	cr_expect_eq(peer5, 1);
	cr_expect_eq(recv5, 1);

	/* every slot taken: the rest lands in the shared one */
	static struct rcmoe_stats full;
	for (int p = 0; p < RCMOE_STATS_DEDUP_SLOTS + 10; p++) {
		m.peer = p;
		rcmoe_stats_add_dedup(&full, RCMOE_DIR_SEND, &m, 1, 1, 256);
	}
	uint64_t total = 0;
	for (int i = 0; i < RCMOE_STATS_DEDUP_SLOTS; i++)
		total += full.dedup[i].blocks;
	cr_expect_eq(total, RCMOE_STATS_DEDUP_SLOTS + 10u, "blocks lost when the table is full");
	cr_expect_eq(full.dedup[RCMOE_STATS_DEDUP_SLOTS - 1].blocks, 11u);
}
