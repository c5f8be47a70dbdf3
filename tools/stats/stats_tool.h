/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rcmoe-stats: reads the files the plugin writes with RCMOE_STATS_FILE (JSON lines or a
 * Prometheus snapshot, detected from the content) and summarises them per function, datatype
 * and direction. parse.c reads, summary.c selects, adds up and draws, main.c is the command line.
 */
#ifndef RCMOE_STATS_TOOL_H
#define RCMOE_STATS_TOOL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define ST_NAME_MAX 64  /* func, dtype */
#define ST_HOST_MAX 128 /* host, comm id */

/* One counter cell of one record: what one JSON line holds. */
struct st_cell {
	size_t comm;  /* index in st_input.comms */
	size_t snap;  /* which of the comm's records (snapshots) it belongs to, in file order */
	int finalize; /* else periodic */
	double ts;
	int send; /* dir: 1 send, 0 recv */
	char func[ST_NAME_MAX], dtype[ST_NAME_MAX];
	uint64_t messages, logical, wire;
	double codec_us;
};

/* A communicator: host, pid and comm id together (comm ids repeat across processes). */
struct st_comm {
	char host[ST_HOST_MAX], id[ST_HOST_MAX];
	long pid;
	size_t nsnap;      /* snapshots seen so far */
	size_t last_final; /* last finalize snapshot + 1, 0 if none */
	size_t last;       /* last snapshot + 1 */
	int cur_finalize;  /* the current snapshot's event and time */
	double cur_ts;
	uint64_t *cur_keys; /* cells already in the current snapshot (a repeat starts a new one) */
	size_t ncur, capcur;
};

enum { ST_FORMAT_JSON = 1, ST_FORMAT_PROMETHEUS = 2 };

struct st_input {
	struct st_cell *cells;
	size_t ncells, capcells;
	struct st_comm *comms;
	size_t ncomms, capcomms;
	size_t *hash; /* open addressing over comms: index + 1, 0 empty */
	size_t hashcap;
	int nfiles, njson, nprom;
	char error[512]; /* why the last read failed: "FILE:LINE: ..." */
};

/* Read one file ("-": standard input) and add its records. 0, or -1 with in->error set. */
int st_read_path(struct st_input *in, const char *path);
int st_read_stream(struct st_input *in, FILE *f, const char *name);
void st_input_free(struct st_input *in);

/* One line of the summary: the chosen records' cells added up per direction, function and
 * datatype (and communicator with per_comm). */
struct st_row {
	int send;
	char func[ST_NAME_MAX], dtype[ST_NAME_MAX];
	char comm[2 * ST_HOST_MAX + 32]; /* "host:pid:comm" with per_comm, else "" */
	uint64_t messages, logical, wire;
	double codec_us;
	int total; /* the per-direction total */
};

struct st_summary {
	struct st_row *rows;
	size_t nrows;
	int per_comm;
	size_t ncomms, nfinal, nperiodic, nprocs, nhosts;
	int nfiles, njson, nprom;
	double ts_min, ts_max;
};

/* For each communicator its last finalize record, else its last periodic record. 0, or -1
 * (out of memory). */
int st_summarize(const struct st_input *in, int per_comm, struct st_summary *out);
void st_summary_free(struct st_summary *s);

void st_print_table(const struct st_summary *s, FILE *out);
/* Logical vs wire bytes per row, `width` characters for the largest. */
void st_print_bars(const struct st_summary *s, int width, FILE *out);
/* The same as an SVG bar chart. 0, or -1 with errno set. */
int st_write_svg(const struct st_summary *s, const char *path);

/* "192.0 MiB" */
void st_format_bytes(char *out, size_t size, double bytes);

#endif
