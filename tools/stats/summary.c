/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Which records count, their cells added up per direction, function and datatype, and three
 * ways to show the result: an nccl-tests style table, ASCII bars, an SVG bar chart.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "print_float.h"
#include "stats_tool.h"

static int row_cmp(const void *pa, const void *pb)
{
	const struct st_row *a = pa, *b = pb;
	int c = strcmp(a->comm, b->comm); /* with --per-comm; "" otherwise */
	if (c)
		return c;
	if (a->send != b->send)
		return b->send - a->send; /* send first */
	if (a->total != b->total)
		return a->total - b->total; /* the total closes its direction */
	if (a->logical != b->logical)
		return a->logical < b->logical ? 1 : -1; /* biggest first */
	c = strcmp(a->func, b->func);
	return c ? c : strcmp(a->dtype, b->dtype);
}

static struct st_row *row_for(struct st_summary *s, size_t *cap, int send, const char *func,
			      const char *dtype, const char *comm, int total)
{
	for (size_t i = 0; i < s->nrows; i++) {
		struct st_row *r = &s->rows[i];
		if (r->send == send && r->total == total && !strcmp(r->func, func) &&
		    !strcmp(r->dtype, dtype) && !strcmp(r->comm, comm))
			return r;
	}
	if (s->nrows == *cap) {
		size_t cap2 = *cap ? *cap * 2 : 32;
		struct st_row *rows = realloc(s->rows, cap2 * sizeof(*rows));
		if (!rows)
			return NULL;
		s->rows = rows;
		*cap = cap2;
	}
	struct st_row *r = &s->rows[s->nrows++];
	memset(r, 0, sizeof(*r));
	r->send = send;
	r->total = total;
	snprintf(r->func, sizeof(r->func), "%s", func);
	snprintf(r->dtype, sizeof(r->dtype), "%s", dtype);
	snprintf(r->comm, sizeof(r->comm), "%s", comm);
	return r;
}

static void add(struct st_row *r, const struct st_cell *c)
{
	r->messages += c->messages;
	r->logical += c->logical;
	r->wire += c->wire;
	r->codec_us += c->codec_us;
}

static int count_distinct(const struct st_input *in, int hosts_only)
{
	int n = 0;
	for (size_t i = 0; i < in->ncomms; i++) {
		const struct st_comm *a = &in->comms[i];
		size_t j = 0;
		for (; j < i; j++) {
			const struct st_comm *b = &in->comms[j];
			if (!strcmp(a->host, b->host) && (hosts_only || a->pid == b->pid))
				break;
		}
		n += j == i;
	}
	return n;
}

int st_summarize(const struct st_input *in, int per_comm, struct st_summary *s)
{
	size_t cap = 0;
	memset(s, 0, sizeof(*s));
	s->per_comm = per_comm;
	s->nfiles = in->nfiles;
	s->njson = in->njson;
	s->nprom = in->nprom;
	s->ncomms = in->ncomms;
	for (size_t i = 0; i < in->ncomms; i++)
		if (in->comms[i].last_final)
			s->nfinal++;
		else
			s->nperiodic++;
	s->nprocs = (size_t)count_distinct(in, 0);
	s->nhosts = (size_t)count_distinct(in, 1);
	s->ts_min = INFINITY;
	s->ts_max = -INFINITY;
	for (size_t i = 0; i < in->ncells; i++) {
		const struct st_cell *c = &in->cells[i];
		const struct st_comm *cm = &in->comms[c->comm];
		/* Counters are totals since the comm started: one record per comm, never a sum. */
		size_t chosen = (cm->last_final ? cm->last_final : cm->last) - 1;
		if (c->snap != chosen)
			continue;
		char comm[sizeof(s->rows[0].comm)] = "";
		if (per_comm)
			snprintf(comm, sizeof(comm), "%s:%ld:%s", cm->host, cm->pid, cm->id);
		struct st_row *r = row_for(s, &cap, c->send, c->func, c->dtype, comm, 0);
		struct st_row *t = r ? row_for(s, &cap, c->send, "total", "", comm, 1) : NULL;
		if (!t)
			return -1;
		r = row_for(s, &cap, c->send, c->func, c->dtype, comm, 0); /* moved by realloc */
		add(r, c);
		add(t, c);
		if (c->ts > 0) {
			s->ts_min = fmin(s->ts_min, c->ts);
			s->ts_max = fmax(s->ts_max, c->ts);
		}
	}
	qsort(s->rows, s->nrows, sizeof(*s->rows), row_cmp);
	return 0;
}

void st_summary_free(struct st_summary *s)
{
	free(s->rows);
	memset(s, 0, sizeof(*s));
}

void st_format_bytes(char *out, size_t size, double bytes)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	int u = 0;
	while (bytes >= 1024 && u < 5) {
		bytes /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(out, size, "%.0f B", bytes);
	else
		snprintf(out, size, "%.1f %s", bytes, unit[u]);
}

static double ratio(const struct st_row *r)
{
	return r->wire ? (double)r->logical / (double)r->wire : r->logical ? INFINITY : 1.0;
}

/* Fewer decimals before a wider column (as nccl-tests does): rows keep their alignment. */
static void row_label(const struct st_row *r, char *out, size_t size)
{
	if (r->total)
		snprintf(out, size, "%s total", r->send ? "send" : "recv");
	else
		snprintf(out, size, "%s %s %s", r->send ? "send" : "recv", r->func, r->dtype);
}

void st_print_table(const struct st_summary *s, FILE *out)
{
	fprintf(out,
		"# rcmoe-stats: %d file%s (%d JSON lines, %d Prometheus), %zu communicator%s "
		"in %zu process%s on %zu host%s\n",
		s->nfiles, s->nfiles == 1 ? "" : "s", s->njson, s->nprom, s->ncomms,
		s->ncomms == 1 ? "" : "s", s->nprocs, s->nprocs == 1 ? "" : "es", s->nhosts,
		s->nhosts == 1 ? "" : "s");
	fprintf(out,
		"#   records: finalize of %zu communicator%s, latest periodic of %zu (not "
		"finalized)\n",
		s->nfinal, s->nfinal == 1 ? "" : "s", s->nperiodic);
	fprintf(out, "#   ratio = logical / wire bytes; codec = encode (send) or decode (recv) "
		     "time, summed over communicators\n");
	/* Same widths as the rows, '#' in place of their leading space. */
	static const char cols[] = "%4s %14s %15s %13s %17s %17s%10s%10s\n";
	fprintf(out, "#\n#%-*s", s->per_comm ? 35 : 0, s->per_comm ? "communicator" : "");
	fprintf(out, cols, "dir", "func", "dtype", "messages", "logical_bytes", "wire_bytes",
		"ratio", "codec");
	fprintf(out, "#%-*s", s->per_comm ? 35 : 0, s->per_comm ? "(host:pid:comm)" : "");
	fprintf(out, cols, "", "", "", "", "(B)", "(B)", "", "(ms)");
	for (size_t i = 0; i < s->nrows; i++) {
		const struct st_row *r = &s->rows[i];
		if (s->per_comm)
			fprintf(out, " %-35.35s", r->comm);
		else
			fprintf(out, " ");
		fprintf(out, "%4s %14.14s %15.15s %13llu %17llu %17llu", r->send ? "send" : "recv",
			r->func, r->dtype, (unsigned long long)r->messages,
			(unsigned long long)r->logical, (unsigned long long)r->wire);
		rcmoe_print_float(out, ratio(r), 10, 7);
		rcmoe_print_float(out, r->codec_us / 1e3, 10, 8);
		fprintf(out, "\n");
	}
}

static void bar(FILE *out, double frac, int width, char fill)
{
	int n = (int)lround(frac * width);
	if (frac > 0 && n == 0)
		n = 1; /* a non-zero count is never drawn as nothing */
	fputc('|', out);
	for (int i = 0; i < width; i++)
		fputc(i < n ? fill : ' ', out);
	fputc('|', out);
}

static uint64_t max_logical(const struct st_summary *s)
{
	uint64_t m = 0;
	for (size_t i = 0; i < s->nrows; i++)
		if (!s->rows[i].total) {
			if (s->rows[i].logical > m)
				m = s->rows[i].logical;
			if (s->rows[i].wire > m)
				m = s->rows[i].wire;
		}
	return m;
}

void st_print_bars(const struct st_summary *s, int width, FILE *out)
{
	char size[32], label[200];
	double max = (double)max_logical(s);
	st_format_bytes(size, sizeof(size), max);
	fprintf(out, "\n# logical (=) and wire (#) bytes per row, %d characters = %s\n", width,
		size);
	for (size_t i = 0; i < s->nrows; i++) {
		const struct st_row *r = &s->rows[i];
		if (r->total)
			continue;
		row_label(r, label, sizeof(label));
		if (s->per_comm && (!i || strcmp(r->comm, s->rows[i - 1].comm)))
			fprintf(out, "# %s\n", r->comm);
		fprintf(out, " %-36.36s L ", label);
		bar(out, max > 0 ? r->logical / max : 0, width, '=');
		st_format_bytes(size, sizeof(size), (double)r->logical);
		fprintf(out, " %11s\n", size);
		fprintf(out, " %-36s W ", "");
		bar(out, max > 0 ? r->wire / max : 0, width, '#');
		st_format_bytes(size, sizeof(size), (double)r->wire);
		fprintf(out, " %11s  x", size);
		rcmoe_print_float(out, ratio(r), 0, 7);
		fprintf(out, "\n");
	}
}

static void svg_text(FILE *f, const char *s)
{
	for (; *s; s++)
		switch (*s) {
		case '&': fputs("&amp;", f); break;
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '"': fputs("&quot;", f); break;
		default:
			if ((unsigned char)*s >= 0x20)
				fputc(*s, f);
		}
}

/* One group of two horizontal bars per row (logical above wire), scaled to the largest. */
int st_write_svg(const struct st_summary *s, const char *path)
{
	const int label_w = s->per_comm ? 420 : 260, bar_w = 520, value_w = 170;
	const int top = 70, group_h = 46, bar_h = 16;
	int rows = 0;
	for (size_t i = 0; i < s->nrows; i++)
		rows += !s->rows[i].total;
	int width = label_w + bar_w + value_w, height = top + rows * group_h + 20;
	double max = (double)max_logical(s);
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	fprintf(f,
		"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
		"viewBox=\"0 0 %d %d\" font-family=\"monospace\" font-size=\"12\">\n"
		"<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
		width, height, width, height);
	fprintf(f, "<text x=\"10\" y=\"22\" font-size=\"15\" font-weight=\"bold\">rcmoe-stats: "
		   "logical vs wire bytes</text>\n");
	fprintf(f, "<rect x=\"10\" y=\"36\" width=\"14\" height=\"12\" fill=\"#4e79a7\"/>"
		   "<text x=\"30\" y=\"46\">logical (what NCCL asked to move)</text>\n"
		   "<rect x=\"300\" y=\"36\" width=\"14\" height=\"12\" fill=\"#f28e2b\"/>"
		   "<text x=\"320\" y=\"46\">wire (what crossed the transport)</text>\n");
	int y = top;
	char size[32], label[200];
	for (size_t i = 0; i < s->nrows; i++) {
		const struct st_row *r = &s->rows[i];
		if (r->total)
			continue;
		row_label(r, label, sizeof(label));
		fprintf(f, "<text x=\"10\" y=\"%d\">", y + bar_h);
		svg_text(f, label);
		fprintf(f, "</text>\n");
		if (s->per_comm) {
			fprintf(f, "<text x=\"10\" y=\"%d\" fill=\"#666\">", y + 2 * bar_h + 4);
			svg_text(f, r->comm);
			fprintf(f, "</text>\n");
		}
		const uint64_t v[2] = { r->logical, r->wire };
		const char *color[2] = { "#4e79a7", "#f28e2b" };
		for (int k = 0; k < 2; k++) {
			double w = max > 0 ? bar_w * (double)v[k] / max : 0;
			if (v[k] && w < 1)
				w = 1;
			int by = y + k * (bar_h + 2);
			fprintf(f,
				"<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"%s\">"
				"<title>%s %llu B</title></rect>\n",
				label_w, by, w, bar_h, color[k], k ? "wire" : "logical",
				(unsigned long long)v[k]);
			st_format_bytes(size, sizeof(size), (double)v[k]);
			fprintf(f, "<text x=\"%d\" y=\"%d\">%s", label_w + bar_w + 8,
				by + bar_h - 3, size);
			if (k)
				fprintf(f, " (x%.2f)", ratio(r));
			fprintf(f, "</text>\n");
		}
		y += group_h;
	}
	fprintf(f, "</svg>\n");
	int err = ferror(f);
	if (fclose(f) != 0 || err) {
		if (!errno)
			errno = EIO;
		return -1;
	}
	return 0;
}
