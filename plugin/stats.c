/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Counters, and the one thread that writes them to RCMOE_STATS_FILE. Callers (NCCL's proxy
 * thread, the thread destroying a communicator) copy the counters into a record and queue it;
 * the writer thread expands the path, then appends JSON lines or rewrites the Prometheus
 * snapshot. Only the writer opens files, so a slow or hung file system stalls the writer, never
 * NCCL.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
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

/* key = 1 + (dir << 40 | (peer + 1) << 8 | dtype slot), peer in [-1, 2^31) */
static uint64_t dedup_key(int dir, int peer, int dtype)
{
	return 1 + ((uint64_t)dir << 40 | (uint64_t)(uint32_t)(peer + 1) << 8 | (uint64_t)dtype);
}

static struct rcmoe_dedup_cell *dedup_cell(struct rcmoe_stats *st, int dir, int peer, int dtype)
{
	const uint64_t n = RCMOE_STATS_DEDUP_SLOTS - 1; /* the last slot: every other peer */
	uint64_t key = dedup_key(dir, peer, dtype), s = (key * 0x9e3779b97f4a7c15ull >> 32) % n;
	for (uint64_t probe = 0; probe < n; probe++, s = (s + 1) % n) {
		struct rcmoe_dedup_cell *c = &st->dedup[s];
		uint64_t k = atomic_load_explicit(&c->key, memory_order_acquire);
		if (k == 0 && atomic_compare_exchange_strong(&c->key, &k, key))
			return c;
		if (k == key) /* found, or claimed by another thread for the same key */
			return c;
	}
	struct rcmoe_dedup_cell *other = &st->dedup[n];
	uint64_t zero = 0;
	atomic_compare_exchange_strong(&other->key, &zero, dedup_key(dir, -1, RCMOE_NDTYPE));
	return other;
}

void rcmoe_stats_add_dedup(struct rcmoe_stats *st, int dir, const struct rcmoe_msg_info *info,
			   uint64_t blocks, uint64_t duplicates, uint64_t saved_bytes)
{
	int d = info->known ? dtype_slot(info->dtype) : RCMOE_NDTYPE;
	int peer = info->known && info->peer >= 0 ? info->peer : -1;
	struct rcmoe_dedup_cell *c = dedup_cell(st, dir, peer, d);
	atomic_fetch_add_explicit(&c->blocks, blocks, memory_order_relaxed);
	atomic_fetch_add_explicit(&c->duplicates, duplicates, memory_order_relaxed);
	atomic_fetch_add_explicit(&c->saved_bytes, saved_bytes, memory_order_relaxed);
}

static const char *dir_name(int dir)
{
	return dir == RCMOE_DIR_SEND ? "send" : "recv";
}

/* One dedup cell, read once. The shared last slot is named by the direction of its first
 * user, peer -1 and datatype unknown. */
struct dedup_snap {
	int dir, peer, dtype;
	uint64_t blocks, duplicates, saved;
};

static double dedup_fraction(const struct dedup_snap *d)
{
	return d->blocks ? (double)d->duplicates / (double)d->blocks : 0.0;
}

static size_t snapshot_dedup(const struct rcmoe_stats *st, struct dedup_snap *out, size_t max)
{
	size_t n = 0;
	for (int i = 0; i < RCMOE_STATS_DEDUP_SLOTS; i++) {
		const struct rcmoe_dedup_cell *c = &st->dedup[i];
		uint64_t key = atomic_load(&c->key), blocks = atomic_load(&c->blocks);
		if (!key || !blocks)
			continue;
		if (out && n < max) {
			uint64_t k = key - 1;
			out[n] = (struct dedup_snap){
				.dir = (int)(k >> 40),
				.peer = (int)(uint32_t)(k >> 8) - 1,
				.dtype = (int)(k & 0xff),
				.blocks = blocks,
				.duplicates = atomic_load(&c->duplicates),
				.saved = atomic_load(&c->saved_bytes),
			};
		}
		n++;
	}
	return n;
}

/* One non-empty cell, read once: what a record keeps and what every output prints. */
struct cell_snap {
	int dir, func, dtype;
	uint64_t messages, logical, wire, codec_ns;
};

static double cell_ratio(const struct cell_snap *c)
{
	return c->wire ? (double)c->logical / (double)c->wire : 1.0;
}

/* Fills up to `max` snapshots of the non-empty cells, in a fixed order; returns how many there
 * are (out may be NULL to count). */
static size_t snapshot_cells(const struct rcmoe_stats *st, struct cell_snap *out, size_t max)
{
	size_t n = 0;
	for (int dir = 0; dir < 2; dir++)
		for (int f = 0; f <= RCMOE_NFUNC; f++)
			for (int d = 0; d <= RCMOE_NDTYPE; d++) {
				const struct rcmoe_stat_cell *c = &st->cell[dir][f][d];
				uint64_t messages = atomic_load(&c->messages);
				if (!messages)
					continue;
				if (out && n < max)
					out[n] = (struct cell_snap){
						.dir = dir,
						.func = f,
						.dtype = d,
						.messages = messages,
						.logical = atomic_load(&c->logical_bytes),
						.wire = atomic_load(&c->wire_bytes),
						.codec_ns = atomic_load(&c->codec_ns),
					};
				n++;
			}
	return n;
}

/* The comm as records name it: 0x<id>, or 0x<id>:<kind> for a kind of counters of its own. */
static void comm_name(uint64_t comm_id, const char *kind, char *out, size_t size)
{
	if (kind && *kind)
		snprintf(out, size, "0x%lx:%s", (unsigned long)comm_id, kind);
	else
		snprintf(out, size, "0x%lx", (unsigned long)comm_id);
}

void rcmoe_stats_log(const struct rcmoe_stats *st, uint64_t comm_id)
{
	rcmoe_stats_log_kind(st, comm_id, NULL);
}

void rcmoe_stats_log_kind(const struct rcmoe_stats *st, uint64_t comm_id, const char *kind)
{
	struct cell_snap cells[2 * (RCMOE_NFUNC + 1) * (RCMOE_NDTYPE + 1)];
	size_t n = snapshot_cells(st, cells, sizeof(cells) / sizeof(cells[0]));
	char comm[64];
	comm_name(comm_id, kind, comm, sizeof(comm));
	for (size_t i = 0; i < n; i++) {
		const struct cell_snap *c = &cells[i];
		RCMOE_INFO(NCCL_NET,
			   "stats comm %s %s func=%s dtype=%s messages=%lu logical_bytes=%lu "
			   "wire_bytes=%lu ratio=%.3f codec_us=%.1f",
			   comm, dir_name(c->dir), rcmoe_func_name(c->func),
			   rcmoe_dtype_name(c->dtype), (unsigned long)c->messages,
			   (unsigned long)c->logical, (unsigned long)c->wire, cell_ratio(c),
			   c->codec_ns / 1e3);
	}
	struct dedup_snap dd[RCMOE_STATS_DEDUP_SLOTS];
	n = snapshot_dedup(st, dd, RCMOE_STATS_DEDUP_SLOTS);
	for (size_t i = 0; i < n; i++)
		RCMOE_INFO(
			NCCL_NET,
			"stats comm %s %s dedup peer=%d dtype=%s blocks=%lu duplicate_blocks=%lu "
			"saved_bytes=%lu duplicate_fraction=%.4f",
			comm, dir_name(dd[i].dir), dd[i].peer, rcmoe_dtype_name(dd[i].dtype),
			(unsigned long)dd[i].blocks, (unsigned long)dd[i].duplicates,
			(unsigned long)dd[i].saved, dedup_fraction(&dd[i]));
}

/* ---- paths ---------------------------------------------------------------------------------- */

static void host_name(char *host, size_t size)
{
	const char *hostid = getenv("NCCL_HOSTID");
	if (hostid && *hostid)
		snprintf(host, size, "%s", hostid);
	else if (gethostname(host, size) != 0)
		snprintf(host, size, "unknown");
	host[size - 1] = '\0';
}

/* The host, read once: by the init thread in rcmoe_stats_setup (getenv must not race the
 * setenv of NCCL defaults there), else by the first record. */
static char cached_host[128];
static pthread_once_t host_once = PTHREAD_ONCE_INIT;

static void cache_host(void)
{
	host_name(cached_host, sizeof(cached_host));
}

static void expand(const char *tmpl, const char *host, char *out, size_t out_size)
{
	size_t o = 0;
	for (const char *p = tmpl; *p && o + 1 < out_size; p++) {
		char piece[32];
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

void rcmoe_stats_expand_path(const char *tmpl, char *out, size_t out_size)
{
	char host[128];
	host_name(host, sizeof(host));
	expand(tmpl, host, out, out_size);
}

/* ---- records and the queue ------------------------------------------------------------------ */

struct stats_record {
	struct stats_record *next;
	uint64_t comm_id;
	char kind[24]; /* "" or the kind of counters (comm_name) */
	int finalize;  /* else periodic */
	int format;
	double ts; /* when the counters were read (Unix time) */
	char tmpl[256];
	size_t ndedup;
	struct dedup_snap *dedup; /* in the same allocation, after the cells */
	size_t ncells;
	struct cell_snap cells[];
};

typedef void (*io_hook_fn)(const char *path);

static struct {
	pthread_mutex_t lock;
	pthread_cond_t wake; /* the writer: records queued, or stop */
	pthread_cond_t done; /* flushers: `written` moved, or the writer exited */
	struct stats_record *head, *tail;
	uint64_t queued;  /* records ever queued */
	uint64_t written; /* records ever handled (written or failed) */
	int running;      /* a writer was started and not joined */
	int stop;         /* the writer drains the queue, then exits */
	int exited;       /* the writer returned (join it) */
	int closed;       /* process exit: records are dropped */
	int start_failed; /* warned that the writer could not start */
	pthread_t tid;
} w = { .lock = PTHREAD_MUTEX_INITIALIZER };

static _Atomic int stats_format = RCMOE_STATS_FORMAT_JSON;
static _Atomic(io_hook_fn) io_hook;
static pthread_condattr_t cond_attr;
static pthread_once_t sync_once = PTHREAD_ONCE_INIT;

static void atfork_prepare(void);
static void atfork_parent(void);
static void atfork_child(void);

/* Condition variables on CLOCK_MONOTONIC, for the bounded waits. */
static void init_sync(void)
{
	pthread_condattr_init(&cond_attr);
	pthread_condattr_setclock(&cond_attr, CLOCK_MONOTONIC);
	pthread_cond_init(&w.wake, &cond_attr);
	pthread_cond_init(&w.done, &cond_attr);
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

static void free_list(struct stats_record *r)
{
	while (r) {
		struct stats_record *next = r->next;
		free(r);
		r = next;
	}
}

/* A forked child has no writer thread: it starts from an empty queue (the records queued were
 * the parent's, and the parent writes them). */
static void atfork_prepare(void)
{
	pthread_mutex_lock(&w.lock);
}

static void atfork_parent(void)
{
	pthread_mutex_unlock(&w.lock);
}

static struct prom_entry *prom_table;

static void atfork_child(void)
{
	free_list(w.head);
	w.head = w.tail = NULL;
	w.written = w.queued;
	w.running = w.stop = w.exited = 0;
	/* The parent's writer may have been changing the table: leave it, start a new one. */
	prom_table = NULL;
	pthread_cond_init(&w.wake, &cond_attr);
	pthread_cond_init(&w.done, &cond_attr);
	pthread_mutex_unlock(&w.lock);
}

void rcmoe_stats_set_io_hook(void (*hook)(const char *path))
{
	atomic_store(&io_hook, hook);
}

/* Deadline `ms` from now on CLOCK_MONOTONIC. */
static struct timespec deadline_in(int ms)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	t.tv_sec += ms / 1000;
	t.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (t.tv_nsec >= 1000000000L) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000L;
	}
	return t;
}

/* ---- output: a growable buffer -------------------------------------------------------------- */

struct buf {
	char *p;
	size_t len, cap;
	int oom;
};

static void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	for (int pass = 0; pass < 2 && !b->oom; pass++) {
		size_t room = b->cap - b->len;
		va_start(ap, fmt);
		int n = vsnprintf(b->p ? b->p + b->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = 1;
			return;
		}
		if ((size_t)n < room) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + (size_t)n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->oom = 1;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
}

/* `s` with \ and " escaped, and control characters dropped: valid in a JSON string and in a
 * Prometheus label value alike. */
static void escape(const char *s, char *out, size_t size)
{
	size_t o = 0;
	for (; *s && o + 2 < size; s++) {
		if ((unsigned char)*s < 0x20)
			continue;
		if (*s == '\\' || *s == '"')
			out[o++] = '\\';
		out[o++] = *s;
	}
	out[o] = '\0';
}

/* Write all of `len` bytes (the writer blocks signals, so no EINTR). */
static int write_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int open_for_writer(const char *path, int flags)
{
	io_hook_fn hook = atomic_load(&io_hook);
	if (hook)
		hook(path);
	return open(path, flags | O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
}

/* ---- JSON lines ----------------------------------------------------------------------------- */

/* One write per line: O_APPEND keeps the lines of ranks sharing a file whole. */
static int write_json(const struct stats_record *r, const char *path, const char *host)
{
	int fd = open_for_writer(path, O_APPEND);
	if (fd < 0)
		return -1;
	int err = 0;
	for (size_t i = 0; i < r->ncells && !err; i++) {
		const struct cell_snap *c = &r->cells[i];
		char line[768], comm[64];
		comm_name(r->comm_id, r->kind, comm, sizeof(comm));
		int n = snprintf(line, sizeof(line),
				 "{\"ts\":%.3f,\"event\":\"%s\",\"pid\":%d,\"host\":\"%s\","
				 "\"comm\":\"%s\","
				 "\"dir\":\"%s\",\"func\":\"%s\",\"dtype\":\"%s\",\"messages\":%lu,"
				 "\"logical_bytes\":%lu,\"wire_bytes\":%lu,\"ratio\":%.4f,\"codec_"
				 "us\":%.1f}\n",
				 r->ts, r->finalize ? "finalize" : "periodic", (int)getpid(), host,
				 comm, dir_name(c->dir), rcmoe_func_name(c->func),
				 rcmoe_dtype_name(c->dtype), (unsigned long)c->messages,
				 (unsigned long)c->logical, (unsigned long)c->wire, cell_ratio(c),
				 c->codec_ns / 1e3);
		if (n <= 0 || n >= (int)sizeof(line) || write(fd, line, (size_t)n) != n)
			err = -1;
	}
	/* dedup cells: lines of their own, marked "record":"dedup" (docs/counters.md) */
	for (size_t i = 0; i < r->ndedup && !err; i++) {
		const struct dedup_snap *d = &r->dedup[i];
		char line[768], comm[64];
		comm_name(r->comm_id, r->kind, comm, sizeof(comm));
		int n = snprintf(line, sizeof(line),
				 "{\"ts\":%.3f,\"event\":\"%s\",\"pid\":%d,\"host\":\"%s\","
				 "\"comm\":\"%s\",\"record\":\"dedup\",\"dir\":\"%s\",\"peer\":%d,"
				 "\"dtype\":\"%s\",\"blocks\":%lu,\"duplicate_blocks\":%lu,"
				 "\"saved_bytes\":%lu,\"duplicate_fraction\":%.4f}\n",
				 r->ts, r->finalize ? "finalize" : "periodic", (int)getpid(), host,
				 comm, dir_name(d->dir), d->peer, rcmoe_dtype_name(d->dtype),
				 (unsigned long)d->blocks, (unsigned long)d->duplicates,
				 (unsigned long)d->saved, dedup_fraction(d));
		if (n <= 0 || n >= (int)sizeof(line) || write(fd, line, (size_t)n) != n)
			err = -1;
	}
	int saved = errno;
	close(fd);
	errno = saved;
	return err;
}

/* ---- Prometheus ----------------------------------------------------------------------------- */

/* The latest record of each communicator per file: the file is rewritten whole from these.
 * Only the writer thread touches the table (and rcmoe_stats_shutdown after joining it). */
struct prom_entry {
	struct prom_entry *next;
	char path[512];
	struct stats_record *rec;
	int dirty;
};

static void prom_free(void)
{
	while (prom_table) {
		struct prom_entry *e = prom_table;
		prom_table = e->next;
		free(e->rec);
		free(e);
	}
}

/* Takes `r`: it replaces the comm's earlier record for `path`. */
static int prom_update(struct stats_record *r, const char *path)
{
	struct prom_entry **pp = &prom_table;
	for (; *pp; pp = &(*pp)->next)
		if ((*pp)->rec->comm_id == r->comm_id && !strcmp((*pp)->rec->kind, r->kind) &&
		    !strcmp((*pp)->path, path))
			break;
	if (!*pp) {
		*pp = calloc(1, sizeof(**pp));
		if (!*pp) {
			free(r);
			return -1;
		}
		snprintf((*pp)->path, sizeof((*pp)->path), "%s", path);
	}
	free((*pp)->rec);
	(*pp)->rec = r;
	(*pp)->dirty = 1;
	return 0;
}

struct prom_family {
	const char *name, *type, *help;
};

static const struct prom_family cell_families[] = {
	{ "rcmoe_messages_total", "counter", "Messages through the rcmoe net plugin." },
	{ "rcmoe_logical_bytes_total", "counter", "Bytes NCCL asked to move (before the codec)." },
	{ "rcmoe_wire_bytes_total", "counter",
	  "Bytes that crossed the transport (after the codec)." },
	{ "rcmoe_codec_seconds_total", "counter",
	  "Time spent encoding (send) or decoding (recv)." },
	{ "rcmoe_compression_ratio", "gauge", "Logical bytes over wire bytes (1: sent as is)." },
};

static void prom_cell_sample(struct buf *b, int family, const struct cell_snap *c,
			     const char *labels)
{
	buf_printf(b, "%s{dir=\"%s\",func=\"%s\",dtype=\"%s\",%s} ", cell_families[family].name,
		   dir_name(c->dir), rcmoe_func_name(c->func), rcmoe_dtype_name(c->dtype), labels);
	switch (family) {
	case 0: buf_printf(b, "%lu\n", (unsigned long)c->messages); break;
	case 1: buf_printf(b, "%lu\n", (unsigned long)c->logical); break;
	case 2: buf_printf(b, "%lu\n", (unsigned long)c->wire); break;
	case 3: buf_printf(b, "%.9g\n", c->codec_ns / 1e9); break;
	default: buf_printf(b, "%.6g\n", cell_ratio(c)); break;
	}
}

static void prom_comm_labels(const struct stats_record *r, const char *host, char *out, size_t size)
{
	char comm[64];
	comm_name(r->comm_id, r->kind, comm, sizeof(comm));
	snprintf(out, size, "comm=\"%s\",host=\"%s\",pid=\"%d\"", comm, host, (int)getpid());
}

static const struct prom_family dedup_families[] = {
	{ "rcmoe_dedup_blocks_total", "counter",
	  "Blocks coded against a dedup window (RCMOE_A2A_DEDUP)." },
	{ "rcmoe_dedup_duplicate_blocks_total", "counter",
	  "Of those, duplicates sent as references to an earlier copy." },
	{ "rcmoe_dedup_saved_bytes_total", "counter", "Bytes of the duplicates not sent again." },
	{ "rcmoe_dedup_duplicate_fraction", "gauge",
	  "Duplicate blocks over blocks: the transport's measure of intra-collaboration." },
};

static void prom_dedup_sample(struct buf *b, size_t family, const struct dedup_snap *d,
			      const char *labels)
{
	buf_printf(b, "%s{dir=\"%s\",peer=\"%d\",dtype=\"%s\",%s} ", dedup_families[family].name,
		   dir_name(d->dir), d->peer, rcmoe_dtype_name(d->dtype), labels);
	switch (family) {
	case 0: buf_printf(b, "%lu\n", (unsigned long)d->blocks); break;
	case 1: buf_printf(b, "%lu\n", (unsigned long)d->duplicates); break;
	case 2: buf_printf(b, "%lu\n", (unsigned long)d->saved); break;
	default: buf_printf(b, "%.6g\n", dedup_fraction(d)); break;
	}
}

/* The dedup families, only when some communicator of the file has dedup cells. */
static void prom_render_dedup(struct buf *b, const char *path, const char *host)
{
	char labels[512];
	int any = 0;
	for (struct prom_entry *e = prom_table; e; e = e->next)
		any |= !strcmp(e->path, path) && e->rec->ndedup > 0;
	for (size_t f = 0; any && f < sizeof(dedup_families) / sizeof(dedup_families[0]); f++) {
		buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", dedup_families[f].name,
			   dedup_families[f].help, dedup_families[f].name, dedup_families[f].type);
		for (struct prom_entry *e = prom_table; e; e = e->next) {
			if (strcmp(e->path, path))
				continue;
			prom_comm_labels(e->rec, host, labels, sizeof(labels));
			for (size_t i = 0; i < e->rec->ndedup; i++)
				prom_dedup_sample(b, f, &e->rec->dedup[i], labels);
		}
	}
}

/* Every sample of a family is contiguous, after its HELP and TYPE (the exposition format). No
 * timestamps on samples: node_exporter's textfile collector refuses them. */
static void prom_render(struct buf *b, const char *path, const char *host)
{
	char labels[512];
	for (size_t f = 0; f < sizeof(cell_families) / sizeof(cell_families[0]); f++) {
		buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", cell_families[f].name,
			   cell_families[f].help, cell_families[f].name, cell_families[f].type);
		for (struct prom_entry *e = prom_table; e; e = e->next) {
			if (strcmp(e->path, path))
				continue;
			prom_comm_labels(e->rec, host, labels, sizeof(labels));
			for (size_t i = 0; i < e->rec->ncells; i++)
				prom_cell_sample(b, (int)f, &e->rec->cells[i], labels);
		}
	}
	prom_render_dedup(b, path, host);
	buf_printf(b, "# HELP rcmoe_comm_finalized 1 once the communicator was finalized (its "
		      "counters are final).\n# TYPE rcmoe_comm_finalized gauge\n");
	for (struct prom_entry *e = prom_table; e; e = e->next)
		if (!strcmp(e->path, path)) {
			prom_comm_labels(e->rec, host, labels, sizeof(labels));
			buf_printf(b, "rcmoe_comm_finalized{%s} %d\n", labels, e->rec->finalize);
		}
	buf_printf(b, "# HELP rcmoe_stats_timestamp_seconds When the communicator's counters "
		      "were read (Unix time).\n# TYPE rcmoe_stats_timestamp_seconds gauge\n");
	for (struct prom_entry *e = prom_table; e; e = e->next)
		if (!strcmp(e->path, path)) {
			prom_comm_labels(e->rec, host, labels, sizeof(labels));
			buf_printf(b, "rcmoe_stats_timestamp_seconds{%s} %.3f\n", labels,
				   e->rec->ts);
		}
}

/* The whole snapshot into a temporary file beside `path`, then rename: a reader (node_exporter)
 * sees the old file or the new one, never half of one. */
static int write_prom(const char *path, const char *host)
{
	struct buf b = { 0 };
	char tmp[600];
	int err = -1;
	prom_render(&b, path, host);
	if (b.oom) {
		errno = ENOMEM;
		goto out_free;
	}
	snprintf(tmp, sizeof(tmp), "%s.%d.tmp", path, (int)getpid());
	int fd = open_for_writer(tmp, O_TRUNC);
	if (fd < 0)
		goto out_free;
	err = write_all(fd, b.p, b.len);
	int saved = errno;
	if (close(fd) != 0 && !err) {
		err = -1;
		saved = errno;
	}
	if (!err && rename(tmp, path) != 0) {
		err = -1;
		saved = errno;
	}
	if (err)
		unlink(tmp);
	errno = saved;
out_free:
	free(b.p);
	return err;
}

/* ---- the writer thread ---------------------------------------------------------------------- */

/* A failed finalize record is always a WARN; failed periodic ones warn once until one works. */
static int periodic_warned;

static void report(int failed, int finalize, const char *path)
{
	if (!failed) {
		periodic_warned = 0;
		return;
	}
	if (!finalize && periodic_warned)
		return;
	RCMOE_WARN("cannot write RCMOE_STATS_FILE %s: %s%s", path, strerror(errno),
		   finalize ? "" : " (further periodic failures are not reported)");
	periodic_warned |= !finalize;
}

static void write_batch(struct stats_record *r)
{
	char path[512], host[2 * sizeof(cached_host)];
	pthread_once(&host_once, cache_host);
	escape(cached_host, host, sizeof(host));
	while (r) {
		struct stats_record *next = r->next;
		expand(r->tmpl, cached_host, path, sizeof(path));
		if (r->format == RCMOE_STATS_FORMAT_PROMETHEUS) {
			if (prom_update(r, path) != 0) {
				errno = ENOMEM;
				report(1, 1, path);
			}
		} else {
			report(write_json(r, path, host) != 0, r->finalize, path);
			free(r);
		}
		r = next;
	}
	for (struct prom_entry *e = prom_table; e; e = e->next) {
		if (!e->dirty)
			continue;
		int finalize = 0;
		for (struct prom_entry *o = e; o; o = o->next)
			if (o->dirty && !strcmp(o->path, e->path)) {
				finalize |= o->rec->finalize;
				o->dirty = 0;
			}
		report(write_prom(e->path, host) != 0, finalize, e->path);
	}
}

static void *writer_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&w.lock);
	for (;;) {
		while (!w.head && !w.stop)
			pthread_cond_wait(&w.wake, &w.lock);
		if (!w.head)
			break; /* stop, and nothing left */
		struct stats_record *batch = w.head;
		uint64_t upto = w.queued;
		w.head = w.tail = NULL;
		pthread_mutex_unlock(&w.lock);
		write_batch(batch);
		pthread_mutex_lock(&w.lock);
		w.written = upto;
		pthread_cond_broadcast(&w.done);
	}
	w.exited = 1;
	pthread_cond_broadcast(&w.done);
	pthread_mutex_unlock(&w.lock);
	return NULL;
}

/*
 * NCCL dlcloses the plugin after its last communicator; the writer's code must stay mapped as
 * long as the thread may run. Marking the object RTLD_NODELETE keeps it (and its destructor then
 * runs at exit, where it stops the writer). In a test executable this finds the executable
 * itself, which is never unloaded anyway.
 */
static void pin_self(void)
{
	Dl_info info;
	if (!dladdr((void *)pin_self, &info) || !info.dli_fname)
		return;
	if (!dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD | RTLD_NODELETE))
		RCMOE_INFO(NCCL_NET, "stats writer: cannot pin %s in memory", info.dli_fname);
}

static pthread_once_t pin_once = PTHREAD_ONCE_INIT;

/* With w.lock held. Signals stay with the application's threads. */
static int start_writer(void)
{
	sigset_t all, old;
	pthread_once(&pin_once, pin_self);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int err = pthread_create(&w.tid, NULL, writer_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err) {
		if (!w.start_failed)
			RCMOE_WARN("cannot start the stats writer thread (error %d): counters are "
				   "not written to RCMOE_STATS_FILE",
				   err);
		w.start_failed = 1;
		return -1;
	}
	pthread_setname_np(w.tid, "rcmoe-stats");
	w.running = 1;
	w.stop = w.exited = 0;
	return 0;
}

rcmoe_status_t rcmoe_stats_setup(const char *path_template, int format)
{
	pthread_once(&host_once, cache_host);
	if (format == RCMOE_STATS_FORMAT_PROMETHEUS && path_template && path_template[0] &&
	    !strstr(path_template, "%p")) {
		RCMOE_WARN("RCMOE_STATS_FORMAT=prometheus rewrites RCMOE_STATS_FILE whole at every "
			   "record, so processes sharing \"%s\" would erase each other's counters: "
			   "put %%p (the pid) in it, e.g. "
			   "/var/lib/node_exporter/textfile/rcmoe-%%h-%%p.prom",
			   path_template);
		return RCMOE_ERR_USAGE;
	}
	atomic_store(&stats_format, format);
	return RCMOE_OK;
}

static struct stats_record *snapshot(const struct rcmoe_stats *st, uint64_t comm_id,
				     const char *kind, const char *tmpl, int finalize)
{
	size_t n = snapshot_cells(st, NULL, 0), nd = snapshot_dedup(st, NULL, 0);
	struct stats_record *r =
		malloc(sizeof(*r) + n * sizeof(r->cells[0]) + nd * sizeof(struct dedup_snap));
	if (!r)
		return NULL;
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	r->next = NULL;
	r->comm_id = comm_id;
	snprintf(r->kind, sizeof(r->kind), "%s", kind ? kind : "");
	r->finalize = finalize;
	r->format = atomic_load(&stats_format);
	r->ts = now.tv_sec + now.tv_nsec / 1e9;
	snprintf(r->tmpl, sizeof(r->tmpl), "%s", tmpl);
	/* A cell that became non-empty since the count is left for the next record. */
	r->ncells = snapshot_cells(st, r->cells, n);
	if (r->ncells > n)
		r->ncells = n;
	/* Likewise for dedup cells; they follow the cells in the record's allocation. */
	r->dedup = (struct dedup_snap *)&r->cells[n];
	r->ndedup = snapshot_dedup(st, r->dedup, nd);
	if (r->ndedup > nd)
		r->ndedup = nd;
	return r;
}

/* With w.lock held: replace a queued periodic record of the same comm and file, else append. */
static void enqueue(struct stats_record *r)
{
	if (!r->finalize)
		for (struct stats_record **pp = &w.head; *pp; pp = &(*pp)->next) {
			struct stats_record *old = *pp;
			if (old->finalize || old->comm_id != r->comm_id ||
			    strcmp(old->kind, r->kind) || strcmp(old->tmpl, r->tmpl))
				continue;
			r->next = old->next;
			*pp = r;
			if (w.tail == old)
				w.tail = r;
			free(old);
			return;
		}
	if (w.tail)
		w.tail->next = r;
	else
		w.head = r;
	w.tail = r;
}

rcmoe_status_t rcmoe_stats_write(const struct rcmoe_stats *st, uint64_t comm_id,
				 const char *path_template, const char *event)
{
	return rcmoe_stats_write_kind(st, comm_id, NULL, path_template, event);
}

rcmoe_status_t rcmoe_stats_write_kind(const struct rcmoe_stats *st, uint64_t comm_id,
				      const char *kind, const char *path_template,
				      const char *event)
{
	pthread_once(&sync_once, init_sync);
	pthread_once(&host_once, cache_host);
	struct stats_record *r =
		snapshot(st, comm_id, kind, path_template, event && !strcmp(event, "finalize"));
	if (!r) {
		RCMOE_WARN("stats: no memory for a %s record of comm 0x%lx", event ? event : "?",
			   (unsigned long)comm_id);
		return RCMOE_ERR_NOMEM;
	}
	pthread_mutex_lock(&w.lock);
	if (w.closed || (!w.running && start_writer() != 0)) {
		pthread_mutex_unlock(&w.lock);
		free(r);
		return RCMOE_ERR_SYSTEM;
	}
	enqueue(r);
	w.queued++;
	pthread_cond_signal(&w.wake);
	pthread_mutex_unlock(&w.lock);
	return RCMOE_OK;
}

/* With w.lock held: wait for `ready` (or the writer's exit) until `deadline`. */
static void wait_done(int (*ready)(uint64_t), uint64_t arg, const struct timespec *deadline)
{
	while (!ready(arg) && !w.exited)
		if (pthread_cond_timedwait(&w.done, &w.lock, deadline) == ETIMEDOUT)
			break;
}

static int written_reaches(uint64_t target)
{
	return w.written >= target;
}

static int writer_exited(uint64_t unused)
{
	(void)unused;
	return w.exited;
}

/* Neither waits nor touches the condition variables unless a writer runs (and so set them up):
 * the destructor of a plugin that never wrote stays a no-op. */
rcmoe_status_t rcmoe_stats_flush(int timeout_ms)
{
	struct timespec deadline = deadline_in(timeout_ms);
	pthread_mutex_lock(&w.lock);
	uint64_t target = w.queued;
	if (w.running)
		wait_done(written_reaches, target, &deadline);
	uint64_t behind = target - w.written;
	pthread_mutex_unlock(&w.lock);
	if (!behind)
		return RCMOE_OK;
	RCMOE_WARN("stats writer: %lu record(s) not yet written to RCMOE_STATS_FILE after %d ms "
		   "(slow or hung file system?)",
		   (unsigned long)behind, timeout_ms);
	return RCMOE_ERR_SYSTEM;
}

static void shutdown_writer(int timeout_ms, int closing)
{
	struct timespec deadline = deadline_in(timeout_ms);
	pthread_mutex_lock(&w.lock);
	w.closed |= closing;
	if (!w.running) {
		pthread_mutex_unlock(&w.lock);
		return;
	}
	w.stop = 1;
	pthread_cond_signal(&w.wake);
	wait_done(writer_exited, 0, &deadline);
	int exited = w.exited;
	uint64_t behind = w.queued - w.written;
	pthread_t tid = w.tid;
	pthread_mutex_unlock(&w.lock);
	if (!exited) {
		/* Left running: its code stays mapped (pin_self), the process ends it. */
		RCMOE_WARN(
			"stats writer: %lu record(s) not written to RCMOE_STATS_FILE after %d ms; "
			"giving up on them",
			(unsigned long)behind, timeout_ms);
		return;
	}
	/* `running` stays set until the join: meanwhile records are queued, not given a second
	 * writer that would share the Prometheus table. */
	pthread_join(tid, NULL);
	prom_free();
	pthread_mutex_lock(&w.lock);
	w.running = w.stop = w.exited = 0;
	if (w.head && (w.closed || start_writer() != 0)) {
		/* queued after the writer drained: at exit, too late */
		free_list(w.head);
		w.head = w.tail = NULL;
		w.written = w.queued;
	}
	pthread_mutex_unlock(&w.lock);
}

void rcmoe_stats_shutdown(int timeout_ms)
{
	shutdown_writer(timeout_ms, 0);
}

/* Process exit (or unload, if pinning failed): what is queued reaches the file, within bounds. */
__attribute__((destructor)) static void stats_at_exit(void)
{
	shutdown_writer(RCMOE_STATS_FLUSH_MS, 1);
}
