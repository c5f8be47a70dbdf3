/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rcmoe-place (tools/place): planted co-activation clusters found exactly, never worse than the
 * identity placement (volumes checked against a count done here, independently), the same result
 * for the same seed, the two formats read alike, malformed traces rejected with a message and
 * exit status 1, and the 256-expert / 64-device case within its time.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "place.h"

static char tmpdir[64];

static void setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/rcmoe-place-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
}

static void teardown(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", tmpdir);
}

TestSuite(rcmoe_place, .init = setup, .fini = teardown, .timeout = 120);

static const char *tmp(const char *name)
{
	static char path[16][128]; /* a path lives for the next 15 calls */
	static int next;
	char *p = path[next++ % 16];
	snprintf(p, sizeof(path[0]), "%s/%s", tmpdir, name);
	return p;
}

static void gen(const char *path, uint32_t experts, uint32_t k, uint64_t tokens, uint32_t cluster,
		double noise, uint64_t seed, int format)
{
	struct pl_gen g = { .experts = experts,
			    .k = k,
			    .tokens = tokens,
			    .cluster_size = cluster,
			    .noise = noise,
			    .seed = seed };
	char err[256];
	cr_assert_eq(pl_gen_write(&g, path, format, err, sizeof(err)), 0, "%s", err);
}

static void place(const char *path, uint32_t devices, uint32_t per_device, uint64_t seed,
		  struct pl_result *res)
{
	char err[256];
	cr_assert_eq(pl_place(path, PL_FORMAT_AUTO, devices, per_device, 0, seed, 8, res, err,
			      sizeof(err)),
		     0, "%s", err);
}

/* Every planted cluster on one device (clusters no larger than a device). */
static void expect_clusters_intact(const struct pl_result *res, uint32_t experts, uint32_t k,
				   uint32_t cluster, uint64_t seed)
{
	struct pl_gen g = { .experts = experts, .k = k, .cluster_size = cluster, .seed = seed };
	uint32_t cl[PL_MAX_EXPERTS];
	pl_gen_clusters(&g, cl);
	for (uint32_t a = 0; a < experts; a++)
		for (uint32_t b = a + 1; b < experts; b++)
			if (cl[a] == cl[b])
				cr_expect_eq(res->dev[a], res->dev[b],
					     "seed %llu: experts %u and %u (cluster %u) on devices "
					     "%u and %u",
					     (unsigned long long)seed, a, b, cl[a], res->dev[a],
					     res->dev[b]);
}

/* The done-when: 32 experts on 8 devices, planted pairs, rows per token down >= 20%. */
Test(rcmoe_place, planted_pairs_found_exactly)
{
	for (uint64_t seed = 1; seed <= 5; seed++) {
		const char *path = tmp("pairs.bin");
		gen(path, 32, 2, 50000, 2, 0.05, seed, PL_FORMAT_BINARY);
		struct pl_result res;
		place(path, 8, 4, 1, &res);
		expect_clusters_intact(&res, 32, 2, 2, seed);
		cr_expect(res.improved);
		double cut = 1.0 - (double)res.rows / (double)res.rows_id;
		cr_expect(cut >= 0.20, "seed %llu: rows per token %.3f -> %.3f, only %.1f%% fewer",
			  (unsigned long long)seed, (double)res.rows_id / 50000.0,
			  (double)res.rows / 50000.0, 100 * cut);
		pl_result_free(&res);
	}
}

/* The Kernighan-Lin refinement alone, from the identity placement, joins every planted pair. */
Test(rcmoe_place, refinement_alone_finds_pairs)
{
	const char *path = tmp("pairs.bin");
	gen(path, 64, 2, 50000, 2, 0.05, 8, PL_FORMAT_BINARY);
	struct pl_graph g;
	struct pl_trace_info info;
	char err[256];
	cr_assert_eq(pl_graph_init(&g, 64), 0);
	cr_assert_eq(pl_trace_scan(path, PL_FORMAT_AUTO, 64, 0, &info, pl_graph_add, &g, err,
				   sizeof(err)),
		     0, "%s", err);
	pl_graph_finish(&g);
	struct pl_problem pb = { .experts = 64, .devices = 16, .per_device = 4, .w = g.w };
	struct pl_result res = { .dev = malloc(64 * sizeof(uint16_t)) };
	for (uint32_t x = 0; x < 64; x++)
		res.dev[x] = (uint16_t)(x / 4);
	int64_t before = pl_intra_weight(&pb, res.dev);
	int64_t gain = pl_refine(&pb, res.dev);
	cr_expect_eq(pl_intra_weight(&pb, res.dev), before + gain);
	expect_clusters_intact(&res, 64, 2, 2, 8);
	unsigned per[16] = { 0 };
	for (uint32_t x = 0; x < 64; x++)
		per[res.dev[x]]++;
	for (int d = 0; d < 16; d++)
		cr_expect_eq(per[d], 4);
	pl_result_free(&res);
	pl_graph_free(&g);
}

/* Clusters as large as a device (k smaller, equal or larger than a cluster), and the large case's
 * shape with two clusters per token. */
Test(rcmoe_place, planted_clusters_found_exactly)
{
	static const struct {
		uint32_t experts, devices, k, cluster;
		double noise;
	} cases[] = {
		{ 64, 16, 2, 4, 0.05 },  { 64, 16, 4, 4, 0.10 }, { 64, 8, 8, 8, 0.10 },
		{ 64, 16, 8, 4, 0.10 },  { 48, 6, 3, 8, 0.02 },  { 128, 32, 6, 2, 0.10 },
		{ 256, 64, 8, 4, 0.10 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *path = tmp("clusters.bin");
		uint64_t seed = 100 + i;
		gen(path, cases[i].experts, cases[i].k, 100000, cases[i].cluster, cases[i].noise,
		    seed, PL_FORMAT_BINARY);
		struct pl_result res;
		place(path, cases[i].devices, cases[i].experts / cases[i].devices, 3, &res);
		expect_clusters_intact(&res, cases[i].experts, cases[i].k, cases[i].cluster, seed);
		cr_expect(res.rows < res.rows_id, "case %zu: %llu rows, identity %llu", i,
			  (unsigned long long)res.rows, (unsigned long long)res.rows_id);
		pl_result_free(&res);
	}
}

/* Rows of a placement, counted here token by token with no shortcut. */
struct ref_count {
	const uint16_t *dev;
	uint64_t rows;
};

static int ref_add(void *ctx, const uint16_t *ids, size_t ntokens, uint32_t k)
{
	struct ref_count *rc = ctx;
	for (size_t t = 0; t < ntokens; t++)
		for (uint32_t i = 0; i < k; i++) {
			int seen = 0;
			for (uint32_t j = 0; j < i; j++)
				seen |= rc->dev[ids[t * k + j]] == rc->dev[ids[t * k + i]];
			rc->rows += !seen;
		}
	return 0;
}

static uint64_t ref_rows(const char *path, uint32_t experts, const uint16_t *dev)
{
	struct ref_count rc = { .dev = dev };
	struct pl_trace_info info;
	char err[256];
	cr_assert_eq(pl_trace_scan(path, PL_FORMAT_AUTO, experts, 0, &info, ref_add, &rc, err,
				   sizeof(err)),
		     0, "%s", err);
	return rc.rows;
}

static int is_identity(const uint16_t *dev, uint32_t experts, uint32_t per_device)
{
	for (uint32_t x = 0; x < experts; x++)
		if (dev[x] != x / per_device)
			return 0;
	return 1;
}

/* Uniform traces, where there is little to find: the result never sends more rows than the
 * identity, the identity comes back unchanged unless strictly beaten, and both volumes are
 * what a plain count gives. */
Test(rcmoe_place, never_worse_than_identity)
{
	static const struct {
		uint32_t devices, per_device, k;
	} shapes[] = {
		{ 4, 4, 2 }, { 8, 4, 4 }, { 8, 8, 3 }, { 6, 4, 6 }, { 2, 3, 5 }, { 16, 1, 2 }
	};
	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
		for (uint64_t seed = 1; seed <= 4; seed++) {
			uint32_t e = shapes[i].devices * shapes[i].per_device;
			const char *path = tmp("uniform.bin");
			gen(path, e, shapes[i].k, 3000, 0, 0, seed * 31 + i, PL_FORMAT_BINARY);
			struct pl_result res;
			place(path, shapes[i].devices, shapes[i].per_device, seed, &res);
			uint16_t id[PL_MAX_EXPERTS];
			for (uint32_t x = 0; x < e; x++)
				id[x] = (uint16_t)(x / shapes[i].per_device);
			cr_expect_eq(res.rows_id, ref_rows(path, e, id));
			cr_expect_eq(res.rows, ref_rows(path, e, res.dev));
			cr_expect(res.rows <= res.rows_id, "shape %zu seed %llu: %llu > %llu", i,
				  (unsigned long long)seed, (unsigned long long)res.rows,
				  (unsigned long long)res.rows_id);
			cr_expect(res.improved ? res.rows < res.rows_id
					       : is_identity(res.dev, e, shapes[i].per_device),
				  "shape %zu seed %llu: not better, yet not the identity", i,
				  (unsigned long long)seed);
			pl_result_free(&res);
		}
}

/* A trace whose clusters are the identity's devices: nothing beats it (other partitions reach
 * the same volume at best, under other device names), so the identity itself is returned. */
Test(rcmoe_place, identity_kept_when_optimal)
{
	const char *path = tmp("aligned.bin");
	struct pl_writer *w = pl_writer_open(path, PL_FORMAT_BINARY, 2, 32);
	cr_assert_not_null(w);
	uint64_t rng = 5;
	for (int t = 0; t < 20000; t++) {
		uint32_t d = pl_rand_below(&rng, 8), a = pl_rand_below(&rng, 4);
		uint32_t b = (a + 1 + pl_rand_below(&rng, 3)) % 4;
		uint16_t tok[2] = { (uint16_t)(4 * d + a), (uint16_t)(4 * d + b) };
		cr_assert_eq(pl_writer_add(w, tok, 1), 0);
	}
	cr_assert_eq(pl_writer_close(w), 0);
	struct pl_result res;
	place(path, 8, 4, 9, &res);
	cr_expect_not(res.improved);
	cr_expect(is_identity(res.dev, 32, 4));
	cr_expect_eq(res.rows, 20000);
	cr_expect_eq(res.rows, res.rows_id);
	pl_result_free(&res);

	/* k = 1: every placement sends one row a token, so every restart ties with the identity
	 * under another partition; a tie keeps the identity. */
	path = tmp("single.bin");
	gen(path, 32, 1, 5000, 0, 0, 3, PL_FORMAT_BINARY);
	place(path, 8, 4, 9, &res);
	cr_expect_not(res.improved);
	cr_expect(is_identity(res.dev, 32, 4));
	cr_expect_eq(res.rows, 5000);
	pl_result_free(&res);
}

Test(rcmoe_place, deterministic_for_a_seed)
{
	const char *path = tmp("noisy.bin");
	gen(path, 64, 4, 20000, 4, 0.6, 11, PL_FORMAT_BINARY);
	struct pl_result a, b;
	for (uint64_t seed = 1; seed <= 3; seed++) {
		place(path, 8, 8, seed, &a);
		place(path, 8, 8, seed, &b);
		cr_expect_arr_eq(a.dev, b.dev, 64 * sizeof(*a.dev), "seed %llu",
				 (unsigned long long)seed);
		cr_expect_eq(a.rows, b.rows);
		pl_result_free(&a);
		pl_result_free(&b);
	}
}

/* Graph of a trace: the tests' view of what was read. */
static void read_graph(const char *path, uint32_t experts, struct pl_graph *g,
		       struct pl_trace_info *info)
{
	char err[256];
	cr_assert_eq(pl_graph_init(g, experts), 0);
	cr_assert_eq(pl_trace_scan(path, PL_FORMAT_AUTO, experts, 0, info, pl_graph_add, g, err,
				   sizeof(err)),
		     0, "%s", err);
	pl_graph_finish(g);
}

struct collect {
	uint16_t *ids;
	size_t n, cap;
};

static int collect_add(void *ctx, const uint16_t *ids, size_t ntokens, uint32_t k)
{
	struct collect *c = ctx;
	cr_assert_leq(c->n + ntokens * k, c->cap);
	memcpy(c->ids + c->n, ids, ntokens * k * sizeof(*ids));
	c->n += ntokens * k;
	return 0;
}

static void read_ids(const char *path, uint32_t experts, struct collect *c)
{
	struct pl_trace_info info;
	char err[256];
	cr_assert_eq(pl_trace_scan(path, PL_FORMAT_AUTO, experts, 0, &info, collect_add, c, err,
				   sizeof(err)),
		     0, "%s", err);
}

Test(rcmoe_place, formats_parse_identically)
{
	const char *bin = tmp("same.bin"), *txt = tmp("same.txt");
	gen(bin, 96, 6, 70000, 3, 0.2, 21, PL_FORMAT_BINARY); /* more than one read batch */
	gen(txt, 96, 6, 70000, 3, 0.2, 21, PL_FORMAT_TEXT);
	struct collect cb = { .cap = 70000 * 6 }, ct = { .cap = 70000 * 6 };
	cb.ids = malloc(cb.cap * sizeof(uint16_t));
	ct.ids = malloc(ct.cap * sizeof(uint16_t));
	read_ids(bin, 96, &cb);
	read_ids(txt, 96, &ct);
	cr_assert_eq(cb.n, 70000 * 6);
	cr_assert_eq(ct.n, cb.n);
	cr_expect_arr_eq(cb.ids, ct.ids, cb.n * sizeof(uint16_t));
	free(cb.ids);
	free(ct.ids);

	struct pl_graph gb, gt;
	struct pl_trace_info ib, it;
	read_graph(bin, 96, &gb, &ib);
	read_graph(txt, 96, &gt, &it);
	cr_expect_eq(ib.format, PL_FORMAT_BINARY);
	cr_expect_eq(it.format, PL_FORMAT_TEXT);
	cr_expect_eq(ib.k, 6);
	cr_expect_eq(it.k, 6);
	cr_expect_eq(ib.tokens, 70000);
	cr_expect_eq(it.tokens, 70000);
	cr_expect_arr_eq(gb.w, gt.w, 96 * 96 * sizeof(*gb.w));
	pl_graph_free(&gb);
	pl_graph_free(&gt);

	/* Comments, blank lines and commas are part of the text format. */
	const char *hand = tmp("hand.txt");
	FILE *f = fopen(hand, "w");
	fputs("# layer 3\n\n 1 2\n3,0\n  # done\n", f);
	fclose(f);
	struct collect ch = { .cap = 8 };
	uint16_t buf[8];
	ch.ids = buf;
	read_ids(hand, 4, &ch);
	cr_expect_eq(ch.n, 4);
	cr_expect(buf[0] == 1 && buf[1] == 2 && buf[2] == 3 && buf[3] == 0);
}

/* Run a command line through the shell; its exit status, stdout and stderr in files. */
static int run(const char *args, char *errbuf, size_t errlen)
{
	const char *tool = getenv("RCMOE_PLACE_TOOL");
	cr_assert_not_null(tool, "RCMOE_PLACE_TOOL not set by the test harness");
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "'%s' %s >'%s/out' 2>'%s/err'", tool, args, tmpdir, tmpdir);
	int st = system(cmd);
	cr_assert(WIFEXITED(st), "%s did not exit", cmd);
	if (errbuf) {
		FILE *f = fopen(tmp("err"), "r");
		cr_assert_not_null(f);
		size_t n = fread(errbuf, 1, errlen - 1, f);
		errbuf[n] = '\0';
		fclose(f);
	}
	return WEXITSTATUS(st);
}

static void write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	cr_assert_not_null(f);
	cr_assert_eq(fwrite(data, 1, len, f), len);
	fclose(f);
}

/* A binary trace: header fields, then ids as written (little-endian uint16). */
static size_t binary(unsigned char *buf, const char *magic, uint32_t version, uint32_t k,
		     uint32_t experts, uint64_t tokens, const uint16_t *ids, size_t nids)
{
	uint32_t f[6] = { version, k, experts, 0, (uint32_t)tokens, (uint32_t)(tokens >> 32) };
	memcpy(buf, magic, 8);
	for (int i = 0; i < 6; i++)
		for (int b = 0; b < 4; b++)
			buf[8 + 4 * i + b] = (unsigned char)(f[i] >> (8 * b));
	for (size_t i = 0; i < nids; i++) {
		buf[32 + 2 * i] = (unsigned char)ids[i];
		buf[33 + 2 * i] = (unsigned char)(ids[i] >> 8);
	}
	return 32 + 2 * nids;
}

Test(rcmoe_place, malformed_traces_rejected)
{
	static const uint16_t good[8] = { 0, 1, 2, 3, 4, 5, 6, 7 };
	static const uint16_t out_of_range[8] = { 0, 1, 2, 3, 4, 8, 6, 7 };
	static const uint16_t repeated[8] = { 0, 1, 2, 2, 4, 5, 6, 7 };
	unsigned char b[256];
	struct mcase {
		const char *name;
		size_t len;
		const char *text; /* else the bytes in b */
		const char *opts;
		const char *want; /* in the message; NULL: a good trace */
	} cases[16];
	size_t n = 0;
	unsigned char *bufs[16];
#define BIN(NAME, OPTS, WANT, CUT, ...)                                                            \
	do {                                                                                       \
		size_t len_ = binary(b, __VA_ARGS__);                                              \
		bufs[n] = malloc(len_);                                                            \
		memcpy(bufs[n], b, len_);                                                          \
		cases[n] = (struct mcase){ NAME, len_ - (CUT), NULL, OPTS, WANT };                 \
		n++;                                                                               \
	} while (0)
#define TXT(NAME, OPTS, WANT, TEXT)                                                                \
	do {                                                                                       \
		bufs[n] = NULL;                                                                    \
		cases[n] = (struct mcase){ NAME, 0, TEXT, OPTS, WANT };                            \
		n++;                                                                               \
	} while (0)
	BIN("ok.bin", "", NULL, 0, "RCMOETRC", 1, 2, 8, 4, good, 8);
	BIN("magic.bin", "", "bad magic", 0, "RCMOETRX", 1, 2, 8, 4, good, 8);
	BIN("nul.bin", "", "bad magic", 0,
	    "\x7f"
	    "ELF\0\0\0\0",
	    1, 2, 8, 4, good, 8);
	BIN("header.bin", "", "truncated header", 20, "RCMOETRC", 1, 2, 8, 4, good, 0);
	BIN("body.bin", "", "truncated", 3, "RCMOETRC", 1, 2, 8, 4, good, 8);
	BIN("trailing.bin", "", "trailing bytes", 0, "RCMOETRC", 1, 2, 8, 3, good, 8);
	BIN("version.bin", "", "version 2", 0, "RCMOETRC", 2, 2, 8, 4, good, 8);
	BIN("range.bin", "", "expert id 8 out of range", 0, "RCMOETRC", 1, 2, 8, 4, out_of_range,
	    8);
	BIN("repeat.bin", "", "repeated", 0, "RCMOETRC", 1, 2, 8, 4, repeated, 8);
	BIN("experts.bin", "", "header says 16 experts", 0, "RCMOETRC", 1, 2, 16, 4, good, 8);
	BIN("kopt.bin", "-k 4", "k mismatch", 0, "RCMOETRC", 1, 2, 8, 4, good, 8);
	TXT("ok.txt", "", NULL, "0 1\n2 3\n");
	TXT("k.txt", "", "line 3: k mismatch", "0 1\n2 3\n4 5 6\n");
	TXT("range.txt", "", "line 2: expert id 9 out of range", "0 1\n2 9\n");
	TXT("word.txt", "", "line 1: expected an expert id", "0 x\n");
	TXT("empty.txt", "", "no tokens", "# nothing\n\n");
	for (size_t i = 0; i < n; i++) {
		const char *path = tmp(cases[i].name);
		if (cases[i].text)
			write_file(path, cases[i].text, strlen(cases[i].text));
		else
			write_file(path, bufs[i], cases[i].len);
		free(bufs[i]);
		char args[512], err[1024];
		snprintf(args, sizeof(args), "-d 4 -m 2 %s '%s'", cases[i].opts, path);
		int rc = run(args, err, sizeof(err));
		if (!cases[i].want) {
			cr_expect_eq(rc, 0, "%s: exit %d: %s", cases[i].name, rc, err);
			continue;
		}
		cr_expect_eq(rc, 1, "%s: exit %d, want 1", cases[i].name, rc);
		cr_expect_not_null(strstr(err, cases[i].want), "%s: \"%s\" lacks \"%s\"",
				   cases[i].name, err, cases[i].want);
		cr_expect_not_null(strstr(err, path), "%s: \"%s\" does not name the file",
				   cases[i].name, err);
	}
	char err[1024];
	cr_expect_eq(run("-d 4 '/nonexistent/trace'", err, sizeof(err)), 2, "no -m: %s", err);
	cr_expect_eq(run("-d 4 -m 2 /nonexistent/trace", err, sizeof(err)), 1);
	cr_expect_not_null(strstr(err, "/nonexistent/trace"), "%s", err);
}

/* The binary end to end: the JSON placement equals the library's, has every expert once and
 * experts_per_device on each device, and the same seed writes the same file. */
Test(rcmoe_place, json_output)
{
	char path[128];
	snprintf(path, sizeof(path), "%s", tmp("pairs.txt"));
	gen(path, 32, 2, 20000, 2, 0.05, 4, PL_FORMAT_TEXT);
	char args[512], err[1024];
	snprintf(args, sizeof(args), "-d 8 -m 4 -s 5 -o '%s' '%s'", tmp("a.json"), path);
	cr_assert_eq(run(args, err, sizeof(err)), 0, "%s", err);
	snprintf(args, sizeof(args), "--devices 8 --experts-per-device 4 --seed 5 --out '%s' '%s'",
		 tmp("b.json"), path);
	cr_assert_eq(run(args, err, sizeof(err)), 0, "%s", err);
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "cmp -s '%s' '%s'", tmp("a.json"), tmp("b.json"));
	cr_expect_eq(system(cmd), 0, "same seed, different JSON");

	FILE *f = fopen(tmp("a.json"), "r");
	cr_assert_not_null(f);
	char text[8192];
	size_t len = fread(text, 1, sizeof(text) - 1, f);
	text[len] = '\0';
	fclose(f);
	const char *p = strstr(text, "\"expert_to_device\": [");
	cr_assert_not_null(p, "%s", text);
	p += strlen("\"expert_to_device\": [");
	struct pl_result res;
	place(path, 8, 4, 5, &res);
	unsigned per[8] = { 0 };
	for (uint32_t x = 0; x < 32; x++) {
		char *end;
		unsigned long d = strtoul(p, &end, 10);
		cr_assert(end != p && d < 8, "expert %u: %.20s", x, p);
		cr_expect_eq(d, res.dev[x], "expert %u", x);
		per[d]++;
		p = end + strspn(end, ", ");
	}
	cr_expect_eq(*p, ']');
	for (int d = 0; d < 8; d++)
		cr_expect_eq(per[d], 4, "device %d has %u experts", d, per[d]);
	cr_expect(strstr(text, "\"improved\": true"));
	pl_result_free(&res);
	/* The table. */
	f = fopen(tmp("out"), "r");
	len = fread(text, 1, sizeof(text) - 1, f);
	text[len] = '\0';
	fclose(f);
	cr_expect(strstr(text, "rows/token") && strstr(text, "intra-collab") &&
			  strstr(text, "identity") && strstr(text, "placed"),
		  "%s", text);
}

/* The large shape (256 experts, 64 devices, k 8) at 10^6 tokens, the whole tool. Measured on the
 * development machine: about 0.4 s (10^7 tokens: docs/placement.md); the bound leaves room for a
 * loaded CI machine. */
#define SCALE_SECONDS 15.0

Test(rcmoe_place, scale_256_experts_64_devices)
{
	const char *path = tmp("big.bin");
	gen(path, 256, 8, 1000000, 4, 0.1, 77, PL_FORMAT_BINARY);
	char args[512], err[1024];
	snprintf(args, sizeof(args), "-d 64 -m 4 -o '%s' '%s'", tmp("big.json"), path);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_assert_eq(run(args, err, sizeof(err)), 0, "%s", err);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
	cr_expect(s < SCALE_SECONDS, "%.2f s for 10^6 tokens, bound %.0f s", s, SCALE_SECONDS);
	FILE *f = fopen(tmp("big.json"), "r");
	cr_assert_not_null(f);
	char text[16384];
	size_t len = fread(text, 1, sizeof(text) - 1, f);
	text[len] = '\0';
	fclose(f);
	/* Two clusters of 4 a token (90%): about 2.57 rows a token when all clusters are found. */
	const char *p = strstr(text, "\"placed\": {\"a2a_rows\": ");
	cr_assert_not_null(p);
	double rows = strtod(p + strlen("\"placed\": {\"a2a_rows\": "), NULL);
	cr_expect(rows / 1e6 < 2.6, "%.3f rows per token", rows / 1e6);
}
