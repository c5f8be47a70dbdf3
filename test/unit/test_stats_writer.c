/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The stats writer thread: callers only queue records (a FIFO with no reader would block a caller
 * that opened the file itself), every record reaches the file, the JSON lines keep their format,
 * the Prometheus snapshot parses and is replaced whole, and records queued just before exit()
 * are written by the destructor.
 */
#include <criterion/criterion.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rcmoe/nccl_abi.h"
#include "rcmoe/params.h"
#include "stats.h"
#include "test_log.h"
#include "test_msg.h"

static char dir[64];

static void setup(void)
{
	test_log_init();
	setenv("NCCL_HOSTID", "h7", 1);
	snprintf(dir, sizeof(dir), "/tmp/rcmoe-statsw-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[128];
	rcmoe_stats_shutdown(5000);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

TestSuite(stats_writer, .init = setup, .fini = teardown, .timeout = 60);

static void path_in_dir(char *out, size_t size, const char *name)
{
	snprintf(out, size, "%s/%s", dir, name);
}

/* Lines of `path` containing `a` and `b` (b may be NULL). */
static int count_lines(const char *path, const char *a, const char *b)
{
	FILE *f = fopen(path, "r");
	char line[2048];
	int n = 0;
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, a) && (!b || strstr(line, b)))
			n++;
	fclose(f);
	return n;
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	size_t cap = 1 << 16, len = 0;
	char *p = malloc(cap);
	size_t n;
	while (p && (n = fread(p + len, 1, cap - len - 1, f)) > 0) {
		len += n;
		if (len + 1 == cap)
			p = realloc(p, cap *= 2);
	}
	fclose(f);
	if (p)
		p[len] = '\0';
	return p;
}

/* ---- a small checker of the Prometheus text exposition format ---------------------------------
 */

#define PROM_MAX 512

struct prom_sample {
	char name[96];
	char labels[512]; /* as written, between the braces */
	double value;
};

struct prom_doc {
	int n;
	struct prom_sample s[PROM_MAX];
	char error[256];
};

static int is_name_start(int c)
{
	return isalpha(c) || c == '_' || c == ':';
}

/* Parses {k="v",...}; returns the character after '}' or NULL. */
static const char *parse_labels(const char *p, char *out, size_t size)
{
	const char *start = ++p;
	while (*p != '}') {
		if (!is_name_start((unsigned char)*p))
			return NULL;
		while (isalnum((unsigned char)*p) || *p == '_')
			p++;
		if (*p++ != '=' || *p++ != '"')
			return NULL;
		while (*p != '"') {
			if (!*p || *p == '\n')
				return NULL;
			if (*p == '\\') {
				p++;
				if (*p != '\\' && *p != '"' && *p != 'n')
					return NULL;
			}
			p++;
		}
		p++;
		if (*p == ',')
			p++;
		else if (*p != '}')
			return NULL;
	}
	snprintf(out, size, "%.*s", (int)(p - start), start);
	return p + 1;
}

/* 0 if `text` is valid exposition text (HELP and TYPE before a family's samples, families
 * contiguous, counters named *_total, no duplicate series), else -1 with doc->error set. */
static int prom_parse(const char *text, struct prom_doc *doc)
{
	char typed[32][96], current[96] = "";
	int ntyped = 0, lineno = 0;
	doc->n = 0;
	for (const char *line = text; *line;) {
		const char *end = strchr(line, '\n');
		lineno++;
		if (!end) {
			snprintf(doc->error, sizeof(doc->error), "line %d: no newline at the end",
				 lineno);
			return -1;
		}
		char buf[1024];
		snprintf(buf, sizeof(buf), "%.*s", (int)(end - line), line);
		line = end + 1;
		if (!strncmp(buf, "# HELP ", 7))
			continue;
		if (!strncmp(buf, "# TYPE ", 7)) {
			char name[96], type[32];
			if (sscanf(buf + 7, "%95s %31s", name, type) != 2 ||
			    (strcmp(type, "counter") && strcmp(type, "gauge"))) {
				snprintf(doc->error, sizeof(doc->error), "line %d: bad TYPE",
					 lineno);
				return -1;
			}
			for (int i = 0; i < ntyped; i++)
				if (!strcmp(typed[i], name)) {
					snprintf(doc->error, sizeof(doc->error),
						 "line %d: family %s appears twice", lineno, name);
					return -1;
				}
			if (!strcmp(type, "counter") &&
			    (strlen(name) < 6 || strcmp(name + strlen(name) - 6, "_total"))) {
				snprintf(doc->error, sizeof(doc->error),
					 "line %d: counter %s not named *_total", lineno, name);
				return -1;
			}
			if (ntyped < 32)
				snprintf(typed[ntyped++], sizeof(typed[0]), "%s", name);
			snprintf(current, sizeof(current), "%s", name);
			continue;
		}
		if (buf[0] == '#' || !buf[0]) {
			snprintf(doc->error, sizeof(doc->error), "line %d: unexpected \"%.160s\"",
				 lineno, buf);
			return -1;
		}
		struct prom_sample *s = &doc->s[doc->n];
		const char *p = buf;
		size_t k = 0;
		if (!is_name_start((unsigned char)*p))
			goto bad;
		while ((isalnum((unsigned char)*p) || *p == '_' || *p == ':') &&
		       k + 1 < sizeof(s->name))
			s->name[k++] = *p++;
		s->name[k] = '\0';
		s->labels[0] = '\0';
		if (*p == '{' && !(p = parse_labels(p, s->labels, sizeof(s->labels))))
			goto bad;
		if (*p++ != ' ')
			goto bad;
		char *vend;
		s->value = strtod(p, &vend);
		if (vend == p || *vend)
			goto bad; /* a timestamp would be left over: the textfile collector refuses
				     it */
		if (strcmp(s->name, current)) {
			snprintf(doc->error, sizeof(doc->error),
				 "line %d: sample of %s outside its family (after TYPE %s)", lineno,
				 s->name, current);
			return -1;
		}
		for (int i = 0; i < doc->n; i++)
			if (!strcmp(doc->s[i].name, s->name) &&
			    !strcmp(doc->s[i].labels, s->labels)) {
				snprintf(doc->error, sizeof(doc->error),
					 "line %d: duplicate series", lineno);
				return -1;
			}
		if (++doc->n == PROM_MAX) {
			snprintf(doc->error, sizeof(doc->error), "too many samples");
			return -1;
		}
		continue;
	bad:
		snprintf(doc->error, sizeof(doc->error), "line %d: malformed sample \"%.160s\"",
			 lineno, buf);
		return -1;
	}
	return 0;
}

/* Value of the sample of `name` whose labels contain every one of `want` ("k=\"v\"", ...). */
static int prom_value(const struct prom_doc *doc, const char *name, const char *const *want,
		      int nwant, double *value)
{
	int found = 0;
	for (int i = 0; i < doc->n; i++) {
		if (strcmp(doc->s[i].name, name))
			continue;
		int all = 1;
		for (int j = 0; j < nwant && all; j++)
			all = strstr(doc->s[i].labels, want[j]) != NULL;
		if (all) {
			*value = doc->s[i].value;
			found++;
		}
	}
	return found;
}

/* The checker itself can fail. */
Test(stats_writer, prometheus_checker_rejects_bad_text)
{
	static struct prom_doc doc;
	static const char *bad[] = {
		"# TYPE a_total counter\na_total{x=\"1\"} 1 1700000000\n", /* timestamp */
		"# TYPE a counter\na 1\n",                        /* counter without _total */
		"# TYPE a_total counter\nb_total 1\n",            /* outside its family */
		"# TYPE a_total counter\na_total{x=1} 1\n",       /* unquoted label */
		"# TYPE a_total counter\na_total 1\na_total 2\n", /* duplicate */
		"# TYPE a_total counter\na_total 1",              /* cut short */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(prom_parse(bad[i], &doc), -1, "accepted: %s", bad[i]);
	cr_expect_eq(prom_parse("# HELP a_total x\n# TYPE a_total counter\na_total{x=\"\\\"\"} 3\n",
				&doc),
		     0, "%s", doc.error);
}

/* ---- JSON lines ----------------------------------------------------------------------------- */

/* The line is byte for byte what the plugin wrote before the writer thread existed. */
Test(stats_writer, json_line_format_unchanged)
{
	static struct rcmoe_stats st;
	char path[128];
	path_in_dir(path, sizeof(path), "s.jsonl");
	struct rcmoe_msg_info bf = test_msg_info(ncclFuncSend, ncclBfloat16);
	for (int i = 0; i < 1536; i++)
		rcmoe_stats_add(&st, RCMOE_DIR_SEND, &bf, 131072, 65536, 8);
	cr_assert_eq(rcmoe_stats_write(&st, 0x5a1f, path, "finalize"), RCMOE_OK);
	cr_assert_eq(rcmoe_stats_flush(5000), RCMOE_OK);
	char *text = slurp(path);
	cr_assert_not_null(text);
	double ts;
	cr_assert_eq(sscanf(text, "{\"ts\":%lf,", &ts), 1, "%s", text);
	char want[512];
	snprintf(want, sizeof(want),
		 "{\"ts\":%.3f,\"event\":\"finalize\",\"pid\":%d,\"host\":\"h7\",\"comm\":"
		 "\"0x5a1f\","
		 "\"dir\":\"send\",\"func\":\"Send\",\"dtype\":\"ncclBfloat16\",\"messages\":1536,"
		 "\"logical_bytes\":201326592,\"wire_bytes\":100663296,\"ratio\":2.0000,"
		 "\"codec_us\":12.3}\n",
		 ts, (int)getpid());
	cr_expect_str_eq(text, want);
	free(text);
}

struct burst {
	const char *path;
	int first_comm, ncomms;
};

static void *write_burst(void *arg)
{
	const struct burst *b = arg;
	struct rcmoe_msg_info bf = test_msg_info(ncclFuncAlltoAll, ncclBfloat16);
	struct rcmoe_msg_info i64 = test_msg_info(ncclFuncRecv, ncclInt64);
	for (int c = b->first_comm; c < b->first_comm + b->ncomms; c++) {
		struct rcmoe_stats *st = calloc(1, sizeof(*st));
		rcmoe_stats_add(st, RCMOE_DIR_SEND, &bf, 1000, 500, 1);
		rcmoe_stats_write(st, (uint64_t)c, b->path, "periodic");
		rcmoe_stats_add(st, RCMOE_DIR_RECV, &i64, 64, 64, 0);
		rcmoe_stats_write(st, (uint64_t)c, b->path, "finalize");
		free(st); /* the record is a copy: the comm may go away at once */
	}
	return NULL;
}

/* Threads finalizing many comms at once: every finalize line reaches the file, once. */
Test(stats_writer, every_record_reaches_the_file)
{
	enum { THREADS = 8, COMMS = 25 };
	char path[128];
	path_in_dir(path, sizeof(path), "all.jsonl");
	pthread_t t[THREADS];
	struct burst b[THREADS];
	for (int i = 0; i < THREADS; i++) {
		b[i] = (struct burst){ .path = path,
				       .first_comm = 0x1000 + i * COMMS,
				       .ncomms = COMMS };
		cr_assert_eq(pthread_create(&t[i], NULL, write_burst, &b[i]), 0);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	cr_assert_eq(rcmoe_stats_flush(5000), RCMOE_OK);
	cr_expect_eq(count_lines(path, "\"event\":\"finalize\"", NULL), THREADS * COMMS * 2);
	cr_expect_eq(count_lines(path, "\"event\":\"periodic\"", NULL), THREADS * COMMS);
	for (int c = 0x1000; c < 0x1000 + THREADS * COMMS; c++) {
		char comm[48];
		snprintf(comm, sizeof(comm), "\"comm\":\"0x%x\"", c);
		cr_expect_eq(count_lines(path, comm, "\"event\":\"finalize\""), 2, "comm 0x%x", c);
	}
}

/*
 * A FIFO without a reader blocks whoever opens it for writing. If the caller wrote the file
 * itself, rcmoe_stats_write would never return and the test would time out; it returns, and
 * the lines arrive once a reader opens the FIFO.
 */
Test(stats_writer, caller_returns_before_the_file_is_opened, .timeout = 20)
{
	static struct rcmoe_stats st;
	char path[128];
	path_in_dir(path, sizeof(path), "fifo");
	cr_assert_eq(mkfifo(path, 0600), 0);
	struct rcmoe_msg_info bf = test_msg_info(ncclFuncSend, ncclBfloat16);
	struct rcmoe_msg_info f32 = test_msg_info(ncclFuncAllReduce, ncclFloat32);
	rcmoe_stats_add(&st, RCMOE_DIR_SEND, &bf, 10, 5, 0);
	rcmoe_stats_add(&st, RCMOE_DIR_SEND, &f32, 10, 10, 0);
	cr_assert_eq(rcmoe_stats_write(&st, 0x77, path, "periodic"), RCMOE_OK);
	cr_assert_eq(rcmoe_stats_write(&st, 0x77, path, "finalize"), RCMOE_OK);
	/* Nothing can have been written: nobody reads the FIFO yet. */
	cr_expect_neq(rcmoe_stats_flush(200), RCMOE_OK, "a record was written without a reader");
	int fd = open(path, O_RDONLY);
	cr_assert_geq(fd, 0);
	char text[4096];
	size_t len = 0;
	int lines = 0;
	while (lines < 4 && len < sizeof(text) - 1) {
		ssize_t n = read(fd, text + len, sizeof(text) - 1 - len);
		if (n <= 0) {
			/* the writer closes between records: open again for the next one */
			close(fd);
			fd = open(path, O_RDONLY);
			cr_assert_geq(fd, 0);
			continue;
		}
		for (ssize_t i = 0; i < n; i++)
			lines += text[len + (size_t)i] == '\n';
		len += (size_t)n;
	}
	close(fd);
	text[len] = '\0';
	cr_expect_eq(lines, 4, "%s", text);
	cr_expect_not_null(strstr(text, "\"event\":\"finalize\""));
	cr_expect_eq(rcmoe_stats_flush(5000), RCMOE_OK);
}

static pthread_t caller;
static atomic_int hook_calls, hook_on_caller;

static void record_thread(const char *path)
{
	(void)path;
	atomic_fetch_add(&hook_calls, 1);
	if (pthread_equal(pthread_self(), caller))
		atomic_fetch_add(&hook_on_caller, 1);
}

/* Every open (JSON append, Prometheus temporary file) happens on another thread. */
Test(stats_writer, files_are_opened_on_the_writer_thread)
{
	static struct rcmoe_stats st;
	char json[128], prom[128];
	path_in_dir(json, sizeof(json), "t.jsonl");
	path_in_dir(prom, sizeof(prom), "t-%p.prom");
	struct rcmoe_msg_info bf = test_msg_info(ncclFuncSend, ncclBfloat16);
	rcmoe_stats_add(&st, RCMOE_DIR_SEND, &bf, 10, 5, 0);
	caller = pthread_self();
	rcmoe_stats_set_io_hook(record_thread);
	cr_assert_eq(rcmoe_stats_write(&st, 1, json, "periodic"), RCMOE_OK);
	cr_assert_eq(rcmoe_stats_setup(prom, RCMOE_STATS_FORMAT_PROMETHEUS), RCMOE_OK);
	cr_assert_eq(rcmoe_stats_write(&st, 1, prom, "finalize"), RCMOE_OK);
	cr_assert_eq(rcmoe_stats_flush(5000), RCMOE_OK);
	rcmoe_stats_set_io_hook(NULL);
	cr_expect_eq(atomic_load(&hook_calls), 2);
	cr_expect_eq(atomic_load(&hook_on_caller), 0, "a file was opened on the calling thread");
}

/* While the writer is stuck, a comm's periodic records replace each other in the queue (memory
 * stays bounded); finalize records are all kept. */
Test(stats_writer, queued_periodic_records_coalesce, .timeout = 20)
{
	static struct rcmoe_stats st;
	char fifo[128], path[128];
	path_in_dir(fifo, sizeof(fifo), "stuck");
	path_in_dir(path, sizeof(path), "c.jsonl");
	cr_assert_eq(mkfifo(fifo, 0600), 0);
	struct rcmoe_msg_info bf = test_msg_info(ncclFuncSend, ncclBfloat16);
	rcmoe_stats_add(&st, RCMOE_DIR_SEND, &bf, 10, 5, 0);
	cr_assert_eq(rcmoe_stats_write(&st, 9, fifo, "finalize"), RCMOE_OK);
	cr_expect_neq(rcmoe_stats_flush(100), RCMOE_OK); /* the writer waits for a reader */
	for (int i = 0; i < 100; i++) {
		rcmoe_stats_add(&st, RCMOE_DIR_SEND, &bf, 10, 5, 0);
		cr_assert_eq(rcmoe_stats_write(&st, 2, path, "periodic"), RCMOE_OK);
	}
	cr_assert_eq(rcmoe_stats_write(&st, 2, path, "finalize"), RCMOE_OK);
	int fd = open(fifo, O_RDONLY);
	char sink[1024];
	while (read(fd, sink, sizeof(sink)) > 0)
		;
	close(fd);
	cr_assert_eq(rcmoe_stats_flush(5000), RCMOE_OK);
	cr_expect_eq(count_lines(path, "\"event\":\"periodic\"", NULL), 1);
	cr_expect_eq(count_lines(path, "\"event\":\"periodic\"", "\"messages\":101,"), 1,
		     "the queued periodic record is not the latest");
	cr_expect_eq(count_lines(path, "\"event\":\"finalize\"", "\"messages\":101,"), 1);
}

/* Under LeakSanitizer the child below ends with exit() (what it tests), and Criterion's own
 * allocations, reachable only from threads that fork did not copy, then look leaked. Leaks in
 * our code stay reported: only stacks through Criterion's library are suppressed. */
__attribute__((visibility("default"))) const char *__lsan_default_suppressions(void);
__attribute__((visibility("default"))) const char *__lsan_default_suppressions(void)
{
	return "leak:libcriterion.so\n";
}

/* Records queued right before exit() reach the file: the destructor drains the queue. */
Test(stats_writer, exit_writes_what_is_queued)
{
	enum { RECORDS = 200 };
	char path[128];
	path_in_dir(path, sizeof(path), "exit.jsonl");
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		static struct rcmoe_stats st;
		struct rcmoe_msg_info bf = test_msg_info(ncclFuncSend, ncclBfloat16);
		rcmoe_stats_add(&st, RCMOE_DIR_SEND, &bf, 10, 5, 0);
		for (int i = 0; i < RECORDS; i++)
			rcmoe_stats_write(&st, (uint64_t)i, path, "finalize");
		exit(0);
	}
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status 0x%x", status);
	cr_expect_eq(count_lines(path, "\"event\":\"finalize\"", NULL), RECORDS);
}

/* ---- Prometheus ----------------------------------------------------------------------------- */

Test(stats_writer, prometheus_without_pid_is_refused)
{
	int warns = test_log_warn_count();
	cr_expect_eq(rcmoe_stats_setup("/tmp/rcmoe.prom", RCMOE_STATS_FORMAT_PROMETHEUS),
		     RCMOE_ERR_USAGE);
	cr_expect_gt(test_log_warn_count(), warns, "refused silently");
	cr_expect_eq(rcmoe_stats_setup("/tmp/rcmoe-%h-%p.prom", RCMOE_STATS_FORMAT_PROMETHEUS),
		     RCMOE_OK);
	cr_expect_eq(rcmoe_stats_setup("", RCMOE_STATS_FORMAT_PROMETHEUS), RCMOE_OK,
		     "no file, nothing to refuse");
	cr_expect_eq(rcmoe_stats_setup("/tmp/shared.jsonl", RCMOE_STATS_FORMAT_JSON), RCMOE_OK);
}

static const char *fake_format;

static const char *fake_get(const char *name)
{
	return strcmp(name, "RCMOE_STATS_FORMAT") ? NULL : fake_format;
}

Test(stats_writer, stats_format_values)
{
	struct rcmoe_params p;
	fake_format = NULL;
	cr_assert_eq(rcmoe_params_parse(&p, fake_get, 0), RCMOE_OK);
	cr_expect_eq(p.stats_format, RCMOE_STATS_FORMAT_JSON, "json is the default");
	fake_format = "prometheus";
	cr_assert_eq(rcmoe_params_parse(&p, fake_get, 0), RCMOE_OK);
	cr_expect_eq(p.stats_format, RCMOE_STATS_FORMAT_PROMETHEUS);
	int warns = test_log_warn_count();
	fake_format = "openmetrics";
	cr_expect_eq(rcmoe_params_parse(&p, fake_get, 0), RCMOE_ERR_USAGE);
	cr_expect_gt(test_log_warn_count(), warns,
		     "RCMOE_STATS_FORMAT=openmetrics refused silently");
}

static void expand(char *out, size_t size, const char *tmpl)
{
	rcmoe_stats_expand_path(tmpl, out, size);
}

/* Two comms in one snapshot; a finalize replaces its comm's samples; %h and %p expanded. */
Test(stats_writer, prometheus_snapshot_parses)
{
	static struct rcmoe_stats a, b;
	static struct prom_doc doc;
	char tmpl[128], path[256];
	path_in_dir(tmpl, sizeof(tmpl), "rcmoe-%h-%p.prom");
	expand(path, sizeof(path), tmpl);
	cr_assert_eq(rcmoe_stats_setup(tmpl, RCMOE_STATS_FORMAT_PROMETHEUS), RCMOE_OK);
	struct rcmoe_msg_info bf = test_msg_info(ncclFuncAlltoAll, ncclBfloat16);
	struct rcmoe_msg_info unknown;
	rcmoe_msg_info_reset(&unknown);
	rcmoe_stats_add(&a, RCMOE_DIR_SEND, &bf, 4000, 1000, 2000000);
	rcmoe_stats_add(&a, RCMOE_DIR_RECV, &unknown, 7, 7, 0);
	rcmoe_stats_add(&b, RCMOE_DIR_SEND, &bf, 10, 10, 0);
	cr_assert_eq(rcmoe_stats_write(&a, 0xa, tmpl, "periodic"), RCMOE_OK);
	cr_assert_eq(rcmoe_stats_write(&b, 0xb, tmpl, "periodic"), RCMOE_OK);
	cr_assert_eq(rcmoe_stats_flush(5000), RCMOE_OK);
	char *text = slurp(path);
	cr_assert_not_null(text, "no file %s", path);
	cr_assert_eq(prom_parse(text, &doc), 0, "%s\n%s", doc.error, text);
	/* 5 cell families x 3 cells, 2 per-comm gauges x 2 comms */
	cr_expect_eq(doc.n, 5 * 3 + 2 * 2, "%s", text);
	char pid[32];
	snprintf(pid, sizeof(pid), "pid=\"%d\"", (int)getpid());
	const char *a_send[] = { "dir=\"send\"", "func=\"AlltoAll\"", "dtype=\"ncclBfloat16\"",
				 "comm=\"0xa\"", "host=\"h7\"",       pid };
	double v = 0;
	cr_expect_eq(prom_value(&doc, "rcmoe_logical_bytes_total", a_send, 6, &v), 1);
	cr_expect_eq(v, 4000);
	cr_expect_eq(prom_value(&doc, "rcmoe_wire_bytes_total", a_send, 6, &v), 1);
	cr_expect_eq(v, 1000);
	cr_expect_eq(prom_value(&doc, "rcmoe_compression_ratio", a_send, 6, &v), 1);
	cr_expect_eq(v, 4);
	cr_expect_eq(prom_value(&doc, "rcmoe_codec_seconds_total", a_send, 6, &v), 1);
	cr_expect(fabs(v - 0.002) < 1e-12, "codec seconds %g", v);
	const char *a_recv[] = { "dir=\"recv\"", "func=\"unknown\"", "dtype=\"unknown\"",
				 "comm=\"0xa\"" };
	cr_expect_eq(prom_value(&doc, "rcmoe_messages_total", a_recv, 4, &v), 1);
	cr_expect_eq(v, 1);
	const char *comm_a[] = { "comm=\"0xa\"" }, *comm_b[] = { "comm=\"0xb\"" };
	cr_expect_eq(prom_value(&doc, "rcmoe_comm_finalized", comm_a, 1, &v), 1);
	cr_expect_eq(v, 0);
	free(text);

	rcmoe_stats_add(&a, RCMOE_DIR_SEND, &bf, 4000, 1000, 0);
	cr_assert_eq(rcmoe_stats_write(&a, 0xa, tmpl, "finalize"), RCMOE_OK);
	cr_assert_eq(rcmoe_stats_flush(5000), RCMOE_OK);
	text = slurp(path);
	cr_assert_not_null(text);
	cr_assert_eq(prom_parse(text, &doc), 0, "%s\n%s", doc.error, text);
	cr_expect_eq(doc.n, 5 * 3 + 2 * 2, "%s", text);
	cr_expect_eq(prom_value(&doc, "rcmoe_messages_total", a_send, 6, &v), 1);
	cr_expect_eq(v, 2);
	cr_expect_eq(prom_value(&doc, "rcmoe_comm_finalized", comm_a, 1, &v), 1);
	cr_expect_eq(v, 1);
	cr_expect_eq(prom_value(&doc, "rcmoe_comm_finalized", comm_b, 1, &v), 1);
	cr_expect_eq(v, 0, "comm b was not finalized");
	free(text);
	rcmoe_stats_shutdown(5000);
	/* Only the snapshot is left in the directory: no temporary file. */
	char cmd[700];
	snprintf(cmd, sizeof(cmd), "test \"$(ls -A '%s')\" = \"$(basename '%s')\"", dir, path);
	cr_expect_eq(system(cmd), 0, "files other than the snapshot left in %s", dir);
}

struct reader {
	const char *path;
	atomic_int stop;
	int reads, bad;
	char error[256];
};

static void *read_snapshots(void *arg)
{
	struct reader *r = arg;
	static struct prom_doc doc;
	while (!atomic_load(&r->stop)) {
		char *text = slurp(r->path);
		if (!text)
			continue; /* not created yet */
		r->reads++;
		if (prom_parse(text, &doc) != 0 || doc.n != 5 + 2) {
			if (!r->bad++)
				snprintf(r->error, sizeof(r->error), "%d samples: %.200s", doc.n,
					 doc.error);
		}
		free(text);
	}
	return NULL;
}

/* A reader (node_exporter) sees a whole snapshot at any moment, never half of one. */
Test(stats_writer, prometheus_file_is_replaced_whole)
{
	static struct rcmoe_stats st;
	char tmpl[128], path[256];
	path_in_dir(tmpl, sizeof(tmpl), "live-%p.prom");
	expand(path, sizeof(path), tmpl);
	cr_assert_eq(rcmoe_stats_setup(tmpl, RCMOE_STATS_FORMAT_PROMETHEUS), RCMOE_OK);
	struct rcmoe_msg_info bf = test_msg_info(ncclFuncSend, ncclBfloat16);
	struct reader r = { .path = path };
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, read_snapshots, &r), 0);
	for (int i = 0; i < 300; i++) {
		rcmoe_stats_add(&st, RCMOE_DIR_SEND, &bf, 1u << (i % 20), 100, 0);
		cr_assert_eq(rcmoe_stats_write(&st, 0x5, tmpl, "periodic"), RCMOE_OK);
		if (i % 3 == 0)
			cr_assert_eq(rcmoe_stats_flush(5000), RCMOE_OK);
	}
	cr_assert_eq(rcmoe_stats_flush(5000), RCMOE_OK);
	atomic_store(&r.stop, 1);
	pthread_join(t, NULL);
	cr_expect_gt(r.reads, 0);
	cr_expect_eq(r.bad, 0, "%d of %d reads saw a partial file (%s)", r.bad, r.reads, r.error);
}
