/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rcmoe/log.h"
#include "stats.h"

static int func_slot(int f)
{
	return (f >= 0 && f < RCMOE_NFUNC) ? f : RCMOE_NFUNC;
}

static int dtype_slot(int d)
{
	return (d >= 0 && d < RCMOE_NDTYPE) ? d : RCMOE_NDTYPE;
}

void rcmoe_stats_add(struct rcmoe_stats *st, int dir, const struct rcmoe_msg_info *info,
		     size_t logical, size_t wire, uint64_t codec_ns)
{
	int f = info->known ? func_slot(info->func) : RCMOE_NFUNC;
	int d = info->known ? dtype_slot(info->dtype) : RCMOE_NDTYPE;
	struct rcmoe_stat_cell *c = &st->cell[dir][f][d];
	atomic_fetch_add_explicit(&c->messages, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&c->logical_bytes, logical, memory_order_relaxed);
	atomic_fetch_add_explicit(&c->wire_bytes, wire, memory_order_relaxed);
	atomic_fetch_add_explicit(&c->codec_ns, codec_ns, memory_order_relaxed);
}

static const char *dir_name(int dir)
{
	return dir == RCMOE_DIR_SEND ? "send" : "recv";
}

void rcmoe_stats_log(const struct rcmoe_stats *st, uint64_t comm_id)
{
	for (int dir = 0; dir < 2; dir++)
		for (int f = 0; f <= RCMOE_NFUNC; f++)
			for (int d = 0; d <= RCMOE_NDTYPE; d++) {
				const struct rcmoe_stat_cell *c = &st->cell[dir][f][d];
				uint64_t msgs = atomic_load(&c->messages);
				if (!msgs)
					continue;
				uint64_t lb = atomic_load(&c->logical_bytes);
				uint64_t wb = atomic_load(&c->wire_bytes);
				RCMOE_INFO(NCCL_NET,
					   "stats comm 0x%lx %s func=%s dtype=%s messages=%lu "
					   "logical_bytes=%lu wire_bytes=%lu ratio=%.3f codec_us=%.1f",
					   (unsigned long)comm_id, dir_name(dir), rcmoe_func_name(f),
					   rcmoe_dtype_name(d), (unsigned long)msgs, (unsigned long)lb,
					   (unsigned long)wb, wb ? (double)lb / (double)wb : 1.0,
					   atomic_load(&c->codec_ns) / 1e3);
			}
}

void rcmoe_stats_expand_path(const char *tmpl, char *out, size_t out_size)
{
	char host[128];
	const char *hostid = getenv("NCCL_HOSTID");
	if (hostid && *hostid)
		snprintf(host, sizeof(host), "%s", hostid);
	else if (gethostname(host, sizeof(host)) != 0)
		snprintf(host, sizeof(host), "unknown");
	host[sizeof(host) - 1] = '\0';

	size_t o = 0;
	for (const char *p = tmpl; *p && o + 1 < out_size; p++) {
		char piece[160];
		const char *add = NULL;
		if (p[0] == '%' && p[1] == 'p') {
			snprintf(piece, sizeof(piece), "%d", (int)getpid());
			add = piece;
			p++;
		} else if (p[0] == '%' && p[1] == 'h') {
			add = host;
			p++;
		}
		if (add) {
			size_t n = strlen(add);
			if (o + n >= out_size)
				n = out_size - 1 - o;
			memcpy(out + o, add, n);
			o += n;
		} else {
			out[o++] = *p;
		}
	}
	out[o] = '\0';
}

rcmoe_status_t rcmoe_stats_write(const struct rcmoe_stats *st, uint64_t comm_id,
				 const char *path_template, const char *event)
{
	char path[512];
	rcmoe_stats_expand_path(path_template, path, sizeof(path));
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0) {
		RCMOE_WARN("cannot open RCMOE_STATS_FILE %s: %s", path, strerror(errno));
		return RCMOE_ERR_SYSTEM;
	}
	char host[128];
	rcmoe_stats_expand_path("%h", host, sizeof(host));
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	rcmoe_status_t status = RCMOE_OK;
	for (int dir = 0; dir < 2; dir++)
		for (int f = 0; f <= RCMOE_NFUNC; f++)
			for (int d = 0; d <= RCMOE_NDTYPE; d++) {
				const struct rcmoe_stat_cell *c = &st->cell[dir][f][d];
				uint64_t msgs = atomic_load(&c->messages);
				if (!msgs)
					continue;
				uint64_t lb = atomic_load(&c->logical_bytes);
				uint64_t wb = atomic_load(&c->wire_bytes);
				char line[768];
				/* One write per line: O_APPEND keeps lines of ranks sharing a file whole. */
				int n = snprintf(
					line, sizeof(line),
					"{\"ts\":%.3f,\"event\":\"%s\",\"pid\":%d,\"host\":\"%s\","
					"\"comm\":\"0x%lx\",\"dir\":\"%s\",\"func\":\"%s\",\"dtype\":\"%s\","
					"\"messages\":%lu,\"logical_bytes\":%lu,\"wire_bytes\":%lu,"
					"\"ratio\":%.4f,\"codec_us\":%.1f}\n",
					now.tv_sec + now.tv_nsec / 1e9, event, (int)getpid(), host,
					(unsigned long)comm_id, dir_name(dir), rcmoe_func_name(f),
					rcmoe_dtype_name(d), (unsigned long)msgs, (unsigned long)lb,
					(unsigned long)wb, wb ? (double)lb / (double)wb : 1.0,
					atomic_load(&c->codec_ns) / 1e3);
				if (n <= 0 || write(fd, line, (size_t)n) != n) {
					RCMOE_WARN("cannot write RCMOE_STATS_FILE %s: %s", path,
						   strerror(errno));
					status = RCMOE_ERR_SYSTEM;
					goto close_file;
				}
			}
close_file:
	close(fd);
	return status;
}
