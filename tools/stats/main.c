/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rcmoe-stats: summarise the counters the plugin writes with RCMOE_STATS_FILE.
 *
 *   rcmoe-stats [--per-comm] [--bars] [--width N] [--svg FILE] FILE...
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stats_tool.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: rcmoe-stats [options] FILE...\n"
		"Summarise the counters the rcmoe plugin writes with RCMOE_STATS_FILE: messages,\n"
		"logical bytes, wire bytes, ratio and codec time per direction, NCCL function and\n"
		"datatype, added up over communicators, processes and files.\n"
		"\n"
		"  FILE             JSON lines (RCMOE_STATS_FORMAT=json) or a Prometheus snapshot\n"
		"                   (prometheus), told apart by their content; - reads stdin\n"
		"  -c, --per-comm   a row per communicator (host:pid:comm) as well\n"
		"  -b, --bars       draw logical and wire bytes of each row as ASCII bars\n"
		"  -w, --width N    width of the longest bar in characters (default 40)\n"
		"  -s, --svg FILE   draw the same bars as an SVG chart into FILE\n"
		"  -h, --help       this text\n"
		"\n"
		"Which records count: counters are totals since a communicator started, so each\n"
		"communicator (host, pid and comm id) contributes one record, never a sum of\n"
		"several: its finalize record; if it has none (the job was killed, or is still\n"
		"running), its latest periodic record (RCMOE_STATS_INTERVAL), the last in the "
		"file.\n"
		"\n"
		"Exit status: 0; 1 when a file cannot be read, is malformed or holds no counters\n"
		"(the message names the file and line), or the SVG cannot be written; 2 on bad "
		"usage.\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "per-comm", no_argument, NULL, 'c' },    { "bars", no_argument, NULL, 'b' },
		{ "width", required_argument, NULL, 'w' }, { "svg", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },        { NULL, 0, NULL, 0 }
	};
	int per_comm = 0, bars = 0, width = 40, c;
	const char *svg = NULL;
	while ((c = getopt_long(argc, argv, "cbw:s:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': per_comm = 1; break;
		case 'b': bars = 1; break;
		case 'w': {
			char *end;
			long v = strtol(optarg, &end, 10);
			if (*end || v < 4 || v > 400) {
				fprintf(stderr, "rcmoe-stats: --width %s: expected 4..400\n",
					optarg);
				return 2;
			}
			width = (int)v;
			bars = 1;
			break;
		}
		case 's': svg = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind == argc) {
		fprintf(stderr, "rcmoe-stats: no file given\n");
		usage(stderr);
		return 2;
	}

	struct st_input in = { 0 };
	for (int i = optind; i < argc; i++)
		if (st_read_path(&in, argv[i]) != 0) {
			fprintf(stderr, "rcmoe-stats: %s\n", in.error);
			st_input_free(&in);
			return 1;
		}
	struct st_summary s;
	if (st_summarize(&in, per_comm, &s) != 0) {
		fprintf(stderr, "rcmoe-stats: out of memory\n");
		st_input_free(&in);
		return 1;
	}
	st_print_table(&s, stdout);
	if (bars)
		st_print_bars(&s, width, stdout);
	int rc = 0;
	if (svg) {
		if (st_write_svg(&s, svg) != 0) {
			fprintf(stderr, "rcmoe-stats: cannot write %s: %s\n", svg, strerror(errno));
			rc = 1;
		} else {
			printf("# chart written to %s\n", svg);
		}
	}
	st_summary_free(&s);
	st_input_free(&in);
	if (fflush(stdout) != 0)
		rc = 1;
	return rc;
}
