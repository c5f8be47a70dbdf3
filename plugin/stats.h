/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Counters per communicator, per direction, function and datatype (unknown included): messages,
 * logical bytes (what NCCL asked to move), wire bytes (what crossed the transport), codec time.
 * Logged at INFO at finalize and appended as JSON lines to RCMOE_STATS_FILE (format: README).
 */
#ifndef RCMOE_STATS_H
#define RCMOE_STATS_H

#include <stdatomic.h>
#include <stdint.h>
#include <stddef.h>

#include "rcmoe/status.h"
#include "msginfo.h"

struct rcmoe_stat_cell {
	_Atomic uint64_t messages;
	_Atomic uint64_t logical_bytes;
	_Atomic uint64_t wire_bytes;
	_Atomic uint64_t codec_ns;
};

/* Index RCMOE_NFUNC / RCMOE_NDTYPE holds "unknown". */
struct rcmoe_stats {
	struct rcmoe_stat_cell cell[2][RCMOE_NFUNC + 1][RCMOE_NDTYPE + 1];
};

enum { RCMOE_DIR_SEND = 0, RCMOE_DIR_RECV = 1 };

void rcmoe_stats_add(struct rcmoe_stats *st, int dir, const struct rcmoe_msg_info *info,
		     size_t logical, size_t wire, uint64_t codec_ns);
/* One INFO line per non-empty cell. */
void rcmoe_stats_log(const struct rcmoe_stats *st, uint64_t comm_id);
/* Append one JSON line per non-empty cell to the file named by `path_template`. */
rcmoe_status_t rcmoe_stats_write(const struct rcmoe_stats *st, uint64_t comm_id,
				 const char *path_template, const char *event);
/* Expand %p (pid) and %h (host: NCCL_HOSTID or the hostname) in a path template. */
void rcmoe_stats_expand_path(const char *tmpl, char *out, size_t out_size);

#endif
