/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Counters per communicator, per direction, function and datatype (unknown included): messages,
 * logical bytes (what NCCL asked to move), wire bytes (what crossed the transport), codec time.
 * Logged at INFO at finalize and written to RCMOE_STATS_FILE (formats: docs/counters.md).
 *
 * Threads. NCCL's threads (the proxy thread for the periodic records, the thread that destroys a
 * communicator for its finalize record) never touch the file: rcmoe_stats_write copies the
 * counters into a record and queues it. One writer thread, started by the first record, does
 * every open, write and rename. It is stopped at process exit (a destructor waits for it at most
 * RCMOE_STATS_FLUSH_MS); the shared object pins itself in memory when the writer starts, so a
 * dlclose by NCCL never unmaps code the writer runs.
 */
#ifndef RCMOE_STATS_H
#define RCMOE_STATS_H

#include <stdatomic.h>
#include <stdint.h>
#include <stddef.h>

#include "rcmoe/params.h" /* RCMOE_STATS_FORMAT_* */
#include "rcmoe/status.h"
#include "msginfo.h"

struct rcmoe_stat_cell {
	_Atomic uint64_t messages;
	_Atomic uint64_t logical_bytes;
	_Atomic uint64_t wire_bytes;
	_Atomic uint64_t codec_ns;
};

/* Dedup counters (RCMOE_A2A_DEDUP) of one direction, peer and datatype: blocks coded against
 * a window, the duplicates among them sent as references, and the bytes those would have taken.
 * Slots are claimed on first use; once all are taken, further peers share the last slot, which
 * reports peer -1. */
#define RCMOE_STATS_DEDUP_SLOTS 256
struct rcmoe_dedup_cell {
	_Atomic uint64_t key; /* 0: free; else dir, peer and datatype slot (stats.c) */
	_Atomic uint64_t blocks;
	_Atomic uint64_t duplicates;
	_Atomic uint64_t saved_bytes;
};

/* Index RCMOE_NFUNC / RCMOE_NDTYPE holds "unknown". */
struct rcmoe_stats {
	struct rcmoe_stat_cell cell[2][RCMOE_NFUNC + 1][RCMOE_NDTYPE + 1];
	struct rcmoe_dedup_cell dedup[RCMOE_STATS_DEDUP_SLOTS];
};

enum { RCMOE_DIR_SEND = 0, RCMOE_DIR_RECV = 1 };

/* Longest a flush waits for the writer: the last finalize, and the destructor at exit. */
#define RCMOE_STATS_FLUSH_MS 5000

void rcmoe_stats_add(struct rcmoe_stats *st, int dir, const struct rcmoe_msg_info *info,
		     size_t logical, size_t wire, uint64_t codec_ns);
/* One message coded against a dedup window, to or from info->peer. */
void rcmoe_stats_add_dedup(struct rcmoe_stats *st, int dir, const struct rcmoe_msg_info *info,
			   uint64_t blocks, uint64_t duplicates, uint64_t saved_bytes);
/* One INFO line per non-empty cell, and one per dedup cell. */
void rcmoe_stats_log(const struct rcmoe_stats *st, uint64_t comm_id);
/* The same for counters of one kind of a comm (the collective side's "collnet-PTS" and the
 * like): they are named comm 0x<id>:<kind> in the log and in the file, beside the comm's own. */
void rcmoe_stats_log_kind(const struct rcmoe_stats *st, uint64_t comm_id, const char *kind);

/*
 * Check and remember the output settings, once at plugin init (before any record). Prometheus
 * rewrites the whole file at every record, so a file shared by processes would lose all but one
 * of them: a `path_template` without %p is refused (WARN, RCMOE_ERR_USAGE). Without this call
 * records are JSON lines.
 */
rcmoe_status_t rcmoe_stats_setup(const char *path_template, int format); /* RCMOE_STATS_FORMAT_* */

/*
 * Queue a record of the counters (one line per non-empty cell in JSON; the comm's samples of
 * the snapshot in Prometheus) for the file named by `path_template` (%p, %h expanded by the
 * writer). `event` is "periodic" or "finalize". Never blocks on I/O: it returns before the file
 * is opened. A periodic record still queued for the same comm is replaced by the newer one, so
 * a slow file system costs periodic lines, never memory or finalize records. RCMOE_OK when
 * queued; errors to open or write the file are WARNs from the writer.
 */
rcmoe_status_t rcmoe_stats_write(const struct rcmoe_stats *st, uint64_t comm_id,
				 const char *path_template, const char *event);

/* rcmoe_stats_write for counters of one kind (rcmoe_stats_log_kind); NULL or "": the comm's
 * own. */
rcmoe_status_t rcmoe_stats_write_kind(const struct rcmoe_stats *st, uint64_t comm_id,
				      const char *kind, const char *path_template,
				      const char *event);

/* Wait until every record queued before the call has been written (or failed to be), at most
 * `timeout_ms`. RCMOE_OK, or RCMOE_ERR_SYSTEM on timeout (WARN). */
rcmoe_status_t rcmoe_stats_flush(int timeout_ms);

/* Flush (at most `timeout_ms`), stop and join the writer, and free what it holds. A later
 * record starts a new writer. Called by the destructor at exit; tests call it to end clean. */
void rcmoe_stats_shutdown(int timeout_ms);

/* Expand %p (pid) and %h (host: NCCL_HOSTID or the hostname) in a path template. */
void rcmoe_stats_expand_path(const char *tmpl, char *out, size_t out_size);

/* Tests: called on the writer thread with the path before each file is opened (NULL: none). */
void rcmoe_stats_set_io_hook(void (*hook)(const char *path));

#endif
