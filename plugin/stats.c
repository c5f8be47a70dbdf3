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

/* One non-empty cell, read once, for the log line and the JSON line alike. */
struct cell_view {
	const char *dir, *func, *dtype;
	uint64_t messages, logical, wire;
	double ratio, codec_us;
};

/* Calls fn for each non-empty cell, in a fixed order; stops at the first non-zero return. */
static int for_each_cell(const struct rcmoe_stats *st, int (*fn)(const struct cell_view *, void *),
			 void *arg)
{
	for (int dir = 0; dir < 2; dir++)
		for (int f = 0; f <= RCMOE_NFUNC; f++)
			for (int d = 0; d <= RCMOE_NDTYPE; d++) {
				const struct rcmoe_stat_cell *c = &st->cell[dir][f][d];
				struct cell_view v = { .dir = dir_name(dir),
						       .func = rcmoe_func_name(f),
						       .dtype = rcmoe_dtype_name(d),
						       .messages = atomic_load(&c->messages) };
				if (!v.messages)
					continue;
				v.logical = atomic_load(&c->logical_bytes);
				v.wire = atomic_load(&c->wire_bytes);
				v.ratio = v.wire ? (double)v.logical / (double)v.wire : 1.0;
				v.codec_us = atomic_load(&c->codec_ns) / 1e3;
				int r = fn(&v, arg);
				if (r)
					return r;
			}
	return 0;
}

static int log_cell(const struct cell_view *v, void *arg)
{
	RCMOE_INFO(NCCL_NET,
		   "stats comm 0x%lx %s func=%s dtype=%s messages=%lu logical_bytes=%lu "
		   "wire_bytes=%lu ratio=%.3f codec_us=%.1f",
		   *(const unsigned long *)arg, v->dir, v->func, v->dtype,
		   (unsigned long)v->messages, (unsigned long)v->logical, (unsigned long)v->wire,
		   v->ratio, v->codec_us);
	return 0;
}

void rcmoe_stats_log(const struct rcmoe_stats *st, uint64_t comm_id)
{
	unsigned long id = (unsigned long)comm_id;
	for_each_cell(st, log_cell, &id);
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

struct json_out {
	int fd;
	const char *event, *host;
	unsigned long comm;
	double ts;
};

static int write_cell(const struct cell_view *v, void *arg)
{
	const struct json_out *o = arg;
	char line[768];
	/* One write per line: O_APPEND keeps the lines of ranks sharing a file whole. */
	int n = snprintf(
		line, sizeof(line),
		"{\"ts\":%.3f,\"event\":\"%s\",\"pid\":%d,\"host\":\"%s\",\"comm\":\"0x%lx\","
		"\"dir\":\"%s\",\"func\":\"%s\",\"dtype\":\"%s\",\"messages\":%lu,"
		"\"logical_bytes\":%lu,\"wire_bytes\":%lu,\"ratio\":%.4f,\"codec_us\":%.1f}\n",
		o->ts, o->event, (int)getpid(), o->host, o->comm, v->dir, v->func, v->dtype,
		(unsigned long)v->messages, (unsigned long)v->logical, (unsigned long)v->wire,
		v->ratio, v->codec_us);
	return (n <= 0 || write(o->fd, line, (size_t)n) != n) ? -1 : 0;
}

rcmoe_status_t rcmoe_stats_write(const struct rcmoe_stats *st, uint64_t comm_id,
				 const char *path_template, const char *event)
{
	char path[512], host[128];
	struct timespec now;
	rcmoe_stats_expand_path(path_template, path, sizeof(path));
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0) {
		RCMOE_WARN("cannot open RCMOE_STATS_FILE %s: %s", path, strerror(errno));
		return RCMOE_ERR_SYSTEM;
	}
	rcmoe_stats_expand_path("%h", host, sizeof(host));
	clock_gettime(CLOCK_REALTIME, &now);
	struct json_out o = { .fd = fd,
			      .event = event,
			      .host = host,
			      .comm = (unsigned long)comm_id,
			      .ts = now.tv_sec + now.tv_nsec / 1e9 };
	rcmoe_status_t status = RCMOE_OK;
	if (for_each_cell(st, write_cell, &o) != 0) {
		RCMOE_WARN("cannot write RCMOE_STATS_FILE %s: %s", path, strerror(errno));
		status = RCMOE_ERR_SYSTEM;
	}
	close(fd);
	return status;
}
