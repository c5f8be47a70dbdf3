/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Readers of the two formats of RCMOE_STATS_FILE. Input is untrusted: every line is checked, and
 * anything that does not parse is an error naming the file and line, never a crash.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "stats_tool.h"

static int fail(struct st_input *in, const char *name, long line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail(struct st_input *in, const char *name, long line, const char *fmt, ...)
{
	char what[384];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (line > 0)
		snprintf(in->error, sizeof(in->error), "%.100s:%ld: %s", name, line, what);
	else
		snprintf(in->error, sizeof(in->error), "%.100s: %s", name, what);
	return -1;
}

/* ---- communicators and cells ---------------------------------------------------------------- */

static uint64_t hash_str(uint64_t h, const char *s)
{
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
	return (h ^ 0xff) * 0x100000001b3ull; /* separator: "ab","c" differs from "a","bc" */
}

static uint64_t comm_hash(const char *host, long pid, const char *id)
{
	uint64_t h = hash_str(0xcbf29ce484222325ull, host);
	h = hash_str(h, id);
	return (h ^ (uint64_t)pid) * 0x100000001b3ull;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	size_t cap2 = *cap ? *cap * 2 : 64;
	while (cap2 < need)
		cap2 *= 2;
	void *q = realloc(*p, cap2 * elem);
	if (!q)
		return -1;
	*p = q;
	*cap = cap2;
	return 0;
}

static int rehash(struct st_input *in)
{
	size_t cap = in->hashcap ? in->hashcap * 2 : 256;
	size_t *h = calloc(cap, sizeof(*h));
	if (!h)
		return -1;
	for (size_t i = 0; i < in->ncomms; i++) {
		const struct st_comm *c = &in->comms[i];
		size_t j = comm_hash(c->host, c->pid, c->id) & (cap - 1);
		while (h[j])
			j = (j + 1) & (cap - 1);
		h[j] = i + 1;
	}
	free(in->hash);
	in->hash = h;
	in->hashcap = cap;
	return 0;
}

/* Index of the communicator, created if new; (size_t)-1 when out of memory. */
static size_t comm_find(struct st_input *in, const char *host, long pid, const char *id)
{
	if (in->ncomms * 2 >= in->hashcap && rehash(in) != 0)
		return (size_t)-1;
	size_t j = comm_hash(host, pid, id) & (in->hashcap - 1);
	for (; in->hash[j]; j = (j + 1) & (in->hashcap - 1)) {
		const struct st_comm *c = &in->comms[in->hash[j] - 1];
		if (c->pid == pid && !strcmp(c->host, host) && !strcmp(c->id, id))
			return in->hash[j] - 1;
	}
	if (grow((void **)&in->comms, &in->capcomms, in->ncomms + 1, sizeof(*in->comms)) != 0)
		return (size_t)-1;
	struct st_comm *c = &in->comms[in->ncomms];
	memset(c, 0, sizeof(*c));
	snprintf(c->host, sizeof(c->host), "%s", host);
	snprintf(c->id, sizeof(c->id), "%s", id);
	c->pid = pid;
	in->hash[j] = ++in->ncomms;
	return in->ncomms - 1;
}

/*
 * Which snapshot of its communicator a cell belongs to. A snapshot's cells share the event and
 * the time and name each cell once; a change of either, or a cell seen again, starts the next.
 */
static int assign_snapshot(struct st_input *in, struct st_cell *cell)
{
	struct st_comm *c = &in->comms[cell->comm];
	uint64_t key = hash_str(hash_str((uint64_t)cell->send + 1, cell->func), cell->dtype);
	int same = c->nsnap && c->cur_finalize == cell->finalize && c->cur_ts == cell->ts;
	for (size_t i = 0; same && i < c->ncur; i++)
		if (c->cur_keys[i] == key)
			same = 0;
	if (!same) {
		c->nsnap++;
		c->ncur = 0;
		c->cur_finalize = cell->finalize;
		c->cur_ts = cell->ts;
	}
	if (grow((void **)&c->cur_keys, &c->capcur, c->ncur + 1, sizeof(*c->cur_keys)) != 0)
		return -1;
	c->cur_keys[c->ncur++] = key;
	cell->snap = c->nsnap - 1;
	c->last = c->nsnap;
	if (cell->finalize)
		c->last_final = c->nsnap;
	return 0;
}

static struct st_cell *cell_new(struct st_input *in)
{
	if (grow((void **)&in->cells, &in->capcells, in->ncells + 1, sizeof(*in->cells)) != 0)
		return NULL;
	struct st_cell *cell = &in->cells[in->ncells++];
	memset(cell, 0, sizeof(*cell));
	return cell;
}

/* ---- values --------------------------------------------------------------------------------- */

/* A non-negative integer counter: digits only, or an integral number in exponent form (as a
 * Prometheus writer may print it), below 2^64. */
static int parse_count(const char *s, uint64_t *out)
{
	if (!*s)
		return -1;
	if (strspn(s, "0123456789") == strlen(s)) {
		errno = 0;
		unsigned long long v = strtoull(s, NULL, 10);
		if (errno == ERANGE)
			return -1;
		*out = v;
		return 0;
	}
	char *end;
	double d = strtod(s, &end);
	if (*end || !isfinite(d) || d < 0 || d >= 18446744073709551616.0 || d != floor(d))
		return -1;
	*out = (uint64_t)d;
	return 0;
}

static int parse_real(const char *s, double *out)
{
	char *end;
	if (!*s)
		return -1;
	*out = strtod(s, &end);
	return *end || !isfinite(*out) ? -1 : 0;
}

/* ---- JSON lines ----------------------------------------------------------------------------- */

#define JSON_MAX_FIELDS 32

struct json_field {
	char key[32];
	int is_str;
	char val[ST_HOST_MAX]; /* the string, or the number's text */
};

static const char *skip_ws(const char *p)
{
	while (*p == ' ' || *p == '\t' || *p == '\r')
		p++;
	return p;
}

/* A JSON string at p (at its quote) into out; returns the character after it, NULL if bad. */
static const char *json_string(const char *p, char *out, size_t size, const char **why)
{
	size_t o = 0;
	if (*p++ != '"') {
		*why = "expected a string";
		return NULL;
	}
	for (;; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '"')
			break;
		if (c < 0x20) {
			*why = c ? "control character in a string" : "unterminated string";
			return NULL;
		}
		if (c == '\\') {
			static const char esc_in[] = "\"\\/bfnrt", esc_out[] = "\"\\/\b\f\n\r\t";
			const char *e = *++p ? strchr(esc_in, *p) : NULL;
			if (e) {
				c = (unsigned char)esc_out[e - esc_in];
			} else if (*p == 'u') {
				for (int i = 1; i <= 4; i++)
					if (!isxdigit((unsigned char)p[i])) {
						*why = "bad \\u escape";
						return NULL;
					}
				c = '?'; /* names here are ASCII; anything else shows as ? */
				p += 4;
			} else {
				*why = "bad escape in a string";
				return NULL;
			}
		}
		if (o + 1 >= size) {
			*why = "string too long";
			return NULL;
		}
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return p + 1;
}

/* A JSON number's text, checked against the grammar. */
static const char *json_number(const char *p, char *out, size_t size)
{
	const char *s = p;
	if (*p == '-')
		p++;
	if (!isdigit((unsigned char)*p))
		return NULL;
	if (*p == '0')
		p++;
	else
		while (isdigit((unsigned char)*p))
			p++;
	if (*p == '.') {
		if (!isdigit((unsigned char)*++p))
			return NULL;
		while (isdigit((unsigned char)*p))
			p++;
	}
	if (*p == 'e' || *p == 'E') {
		p++;
		if (*p == '+' || *p == '-')
			p++;
		if (!isdigit((unsigned char)*p))
			return NULL;
		while (isdigit((unsigned char)*p))
			p++;
	}
	if ((size_t)(p - s) >= size)
		return NULL;
	memcpy(out, s, (size_t)(p - s));
	out[p - s] = '\0';
	return p;
}

/* One flat JSON object per line: string keys, string or number (or true/false/null) values. */
static int json_object(const char *p, struct json_field *f, int *n, const char **why)
{
	*n = 0;
	p = skip_ws(p);
	if (*p++ != '{') {
		*why = "not a JSON object";
		return -1;
	}
	p = skip_ws(p);
	if (*p == '}')
		goto close;
	for (;;) {
		if (*n == JSON_MAX_FIELDS) {
			*why = "too many fields";
			return -1;
		}
		struct json_field *x = &f[(*n)++];
		if (!(p = json_string(skip_ws(p), x->key, sizeof(x->key), why)))
			return -1;
		p = skip_ws(p);
		if (*p++ != ':') {
			*why = "expected ':'";
			return -1;
		}
		p = skip_ws(p);
		x->is_str = *p == '"';
		if (x->is_str) {
			if (!(p = json_string(p, x->val, sizeof(x->val), why)))
				return -1;
		} else if (*p == '{' || *p == '[') {
			*why = "nested objects and arrays are not expected";
			return -1;
		} else if (!strncmp(p, "true", 4) || !strncmp(p, "null", 4)) {
			snprintf(x->val, sizeof(x->val), "%.4s", p);
			p += 4;
		} else if (!strncmp(p, "false", 5)) {
			snprintf(x->val, sizeof(x->val), "false");
			p += 5;
		} else if (!(p = json_number(p, x->val, sizeof(x->val)))) {
			*why = "bad value";
			return -1;
		}
		p = skip_ws(p);
		if (*p == ',') {
			p++;
			continue;
		}
		if (*p == '}')
			break;
		*why = "expected ',' or '}'";
		return -1;
	}
close:
	p = skip_ws(p + 1);
	if (*p && *p != '\n') {
		*why = "text after the object";
		return -1;
	}
	return 0;
}

static const struct json_field *field(const struct json_field *f, int n, const char *key)
{
	for (int i = n - 1; i >= 0; i--) /* the last of duplicate keys wins */
		if (!strcmp(f[i].key, key))
			return &f[i];
	return NULL;
}

static int json_line(struct st_input *in, const char *name, long ln, const char *line)
{
	struct json_field f[JSON_MAX_FIELDS];
	const struct json_field *x;
	const char *why = NULL;
	int n;
	if (json_object(line, f, &n, &why) != 0)
		return fail(in, name, ln, "%s", why);
	/* The plugin's dedup lines ("record":"dedup", per peer) are not message counters. */
	if ((x = field(f, n, "record")) != NULL && x->is_str && !strcmp(x->val, "dedup"))
		return 0;

	static const char *const strs[] = { "event", "comm", "dir", "func", "dtype" };
	static const char *const counts[] = { "messages", "logical_bytes", "wire_bytes" };
	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
		if (!(x = field(f, n, strs[i])) || !x->is_str || !x->val[0])
			return fail(in, name, ln, "\"%s\" is missing or not a non-empty string",
				    strs[i]);
	const char *event = field(f, n, "event")->val, *dir = field(f, n, "dir")->val;
	if (strcmp(event, "finalize") && strcmp(event, "periodic"))
		return fail(in, name, ln, "\"event\" is \"%.40s\", not finalize or periodic",
			    event);
	if (strcmp(dir, "send") && strcmp(dir, "recv"))
		return fail(in, name, ln, "\"dir\" is \"%.40s\", not send or recv", dir);
	if (strlen(field(f, n, "func")->val) >= ST_NAME_MAX ||
	    strlen(field(f, n, "dtype")->val) >= ST_NAME_MAX)
		return fail(in, name, ln, "\"func\" or \"dtype\" is too long");

	const char *host = "?";
	long pid = 0;
	double ts = 0, codec_us = 0;
	if ((x = field(f, n, "host")) != NULL) {
		if (!x->is_str)
			return fail(in, name, ln, "\"host\" is not a string");
		host = x->val;
	}
	if ((x = field(f, n, "pid")) != NULL) {
		uint64_t v;
		if (x->is_str || parse_count(x->val, &v) != 0 || v > 0x7fffffff)
			return fail(in, name, ln, "\"pid\" is not a process id");
		pid = (long)v;
	}
	if ((x = field(f, n, "ts")) != NULL && (x->is_str || parse_real(x->val, &ts) != 0))
		return fail(in, name, ln, "\"ts\" is not a number");
	if ((x = field(f, n, "codec_us")) != NULL &&
	    (x->is_str || parse_real(x->val, &codec_us) != 0 || codec_us < 0))
		return fail(in, name, ln, "\"codec_us\" is not a non-negative number");

	uint64_t v[3];
	for (int i = 0; i < 3; i++)
		if (!(x = field(f, n, counts[i])) || x->is_str || parse_count(x->val, &v[i]) != 0)
			return fail(in, name, ln, "\"%s\" is missing or not a count", counts[i]);

	size_t comm = comm_find(in, host, pid, field(f, n, "comm")->val);
	struct st_cell *cell = comm == (size_t)-1 ? NULL : cell_new(in);
	if (!cell)
		return fail(in, name, ln, "out of memory");
	cell->comm = comm;
	cell->finalize = !strcmp(event, "finalize");
	cell->ts = ts;
	cell->send = !strcmp(dir, "send");
	/* lengths checked above */
	snprintf(cell->func, sizeof(cell->func), "%.*s", ST_NAME_MAX - 1, field(f, n, "func")->val);
	snprintf(cell->dtype, sizeof(cell->dtype), "%.*s", ST_NAME_MAX - 1,
		 field(f, n, "dtype")->val);
	cell->messages = v[0];
	cell->logical = v[1];
	cell->wire = v[2];
	cell->codec_us = codec_us;
	return assign_snapshot(in, cell) ? fail(in, name, ln, "out of memory") : 0;
}

/* ---- Prometheus text ------------------------------------------------------------------------ */

#define PROM_MAX_LABELS 16

struct prom_label {
	char name[32];
	char val[ST_HOST_MAX];
};

struct prom_sample {
	char name[96];
	struct prom_label l[PROM_MAX_LABELS];
	int nl;
	char value[64];
};

static int is_name_char(int c, int first)
{
	return isalpha(c) || c == '_' || c == ':' || (!first && isdigit(c));
}

static const char *prom_label_value(const char *p, char *out, size_t size, const char **why)
{
	size_t o = 0;
	if (*p++ != '"') {
		*why = "label value not quoted";
		return NULL;
	}
	for (; *p != '"'; p++) {
		char c = *p;
		if (!c || c == '\n') {
			*why = "unterminated label value";
			return NULL;
		}
		if (c == '\\') {
			c = *++p;
			if (c == 'n')
				c = '\n';
			else if (c != '\\' && c != '"') {
				*why = "bad escape in a label value";
				return NULL;
			}
		}
		if (o + 1 >= size) {
			*why = "label value too long";
			return NULL;
		}
		out[o++] = c;
	}
	out[o] = '\0';
	return p + 1;
}

static int prom_sample(const char *p, struct prom_sample *s, const char **why)
{
	size_t k = 0;
	s->nl = 0;
	if (!is_name_char((unsigned char)*p, 1)) {
		*why = "expected a metric name";
		return -1;
	}
	while (is_name_char((unsigned char)*p, 0)) {
		if (k + 1 >= sizeof(s->name)) {
			*why = "metric name too long";
			return -1;
		}
		s->name[k++] = *p++;
	}
	s->name[k] = '\0';
	if (*p == '{') {
		p++;
		while (*p != '}') {
			if (s->nl == PROM_MAX_LABELS) {
				*why = "too many labels";
				return -1;
			}
			struct prom_label *l = &s->l[s->nl++];
			k = 0;
			if (!is_name_char((unsigned char)*p, 1) || *p == ':') {
				*why = "expected a label name";
				return -1;
			}
			while (is_name_char((unsigned char)*p, 0) && *p != ':') {
				if (k + 1 >= sizeof(l->name)) {
					*why = "label name too long";
					return -1;
				}
				l->name[k++] = *p++;
			}
			l->name[k] = '\0';
			if (*p++ != '=') {
				*why = "expected '=' after a label name";
				return -1;
			}
			if (!(p = prom_label_value(p, l->val, sizeof(l->val), why)))
				return -1;
			if (*p == ',')
				p++;
			else if (*p != '}') {
				*why = "expected ',' or '}' in the labels";
				return -1;
			}
		}
		p++;
	}
	if (*p != ' ' && *p != '\t') {
		*why = "expected a space before the value";
		return -1;
	}
	p = skip_ws(p);
	k = strcspn(p, " \t\r\n");
	if (!k || k >= sizeof(s->value)) {
		*why = "missing or overlong value";
		return -1;
	}
	memcpy(s->value, p, k);
	s->value[k] = '\0';
	p = skip_ws(p + k);
	if (*p && *p != '\n') { /* an optional timestamp, in milliseconds */
		char *end;
		strtoll(p, &end, 10);
		if (end == p || *skip_ws(end)) {
			*why = "text after the value";
			return -1;
		}
	}
	return 0;
}

static const char *label(const struct prom_sample *s, const char *name)
{
	for (int i = 0; i < s->nl; i++)
		if (!strcmp(s->l[i].name, name))
			return s->l[i].val;
	return NULL;
}

enum { P_MESSAGES = 1, P_LOGICAL = 2, P_WIRE = 4, P_CODEC = 8 };

/* Per file: the cells read so far (looked up by their labels) and each comm's gauges. */
struct prom_state {
	size_t first; /* this file's first cell */
	int *have;    /* P_* seen, per cell of this file */
	size_t nhave, caphave;
	struct prom_comm {
		size_t comm;
		int finalized; /* -1 unknown */
		double ts;
	} * comms;
	size_t ncomms, capcomms;
};

static struct prom_comm *prom_comm_of(struct prom_state *ps, size_t comm)
{
	for (size_t i = 0; i < ps->ncomms; i++)
		if (ps->comms[i].comm == comm)
			return &ps->comms[i];
	if (grow((void **)&ps->comms, &ps->capcomms, ps->ncomms + 1, sizeof(*ps->comms)) != 0)
		return NULL;
	ps->comms[ps->ncomms] = (struct prom_comm){ .comm = comm, .finalized = -1 };
	return &ps->comms[ps->ncomms++];
}

static int prom_line(struct st_input *in, struct prom_state *ps, const char *name, long ln,
		     const char *line)
{
	struct prom_sample s;
	const char *why = NULL;
	if (prom_sample(line, &s, &why) != 0)
		return fail(in, name, ln, "%s", why);
	if (strncmp(s.name, "rcmoe_", 6))
		return 0; /* somebody else's metric (a concatenation of textfiles): not ours */
	static const struct {
		const char *name;
		int bit;
	} metrics[] = {
		{ "rcmoe_messages_total", P_MESSAGES }, { "rcmoe_logical_bytes_total", P_LOGICAL },
		{ "rcmoe_wire_bytes_total", P_WIRE },   { "rcmoe_codec_seconds_total", P_CODEC },
		{ "rcmoe_comm_finalized", 0 },          { "rcmoe_stats_timestamp_seconds", 0 }
	};
	size_t m = 0;
	while (m < sizeof(metrics) / sizeof(metrics[0]) && strcmp(metrics[m].name, s.name))
		m++;
	if (m == sizeof(metrics) / sizeof(metrics[0]))
		return 0; /* the ratio gauge (derived), or a metric of a newer plugin */

	const char *host = label(&s, "host"), *pid_s = label(&s, "pid"), *id = label(&s, "comm");
	uint64_t pid;
	if (!host || !pid_s || !id)
		return fail(in, name, ln, "%s has no host, pid or comm label", s.name);
	if (parse_count(pid_s, &pid) != 0 || pid > 0x7fffffff)
		return fail(in, name, ln, "pid=\"%.40s\" is not a process id", pid_s);
	size_t comm = comm_find(in, host, (long)pid, id);
	if (comm == (size_t)-1)
		return fail(in, name, ln, "out of memory");

	if (!metrics[m].bit) {
		struct prom_comm *pc = prom_comm_of(ps, comm);
		double v;
		if (!pc)
			return fail(in, name, ln, "out of memory");
		if (parse_real(s.value, &v) != 0)
			return fail(in, name, ln, "%s: value \"%s\" is not a number", s.name,
				    s.value);
		if (m == 4) {
			if (v != 0 && v != 1)
				return fail(in, name, ln, "rcmoe_comm_finalized is %s, not 0 or 1",
					    s.value);
			pc->finalized = v == 1;
		} else {
			pc->ts = v;
		}
		return 0;
	}

	const char *dir = label(&s, "dir"), *func = label(&s, "func"), *dtype = label(&s, "dtype");
	if (!dir || !func || !dtype)
		return fail(in, name, ln, "%s has no dir, func or dtype label", s.name);
	if (strcmp(dir, "send") && strcmp(dir, "recv"))
		return fail(in, name, ln, "dir=\"%.40s\", not send or recv", dir);
	if (!func[0] || !dtype[0] || strlen(func) >= ST_NAME_MAX || strlen(dtype) >= ST_NAME_MAX)
		return fail(in, name, ln, "func or dtype label empty or too long");
	size_t i = ps->first;
	for (; i < in->ncells; i++) {
		const struct st_cell *c = &in->cells[i];
		if (c->comm == comm && c->send == !strcmp(dir, "send") && !strcmp(c->func, func) &&
		    !strcmp(c->dtype, dtype))
			break;
	}
	if (i == in->ncells) {
		struct st_cell *c = cell_new(in);
		if (!c || grow((void **)&ps->have, &ps->caphave, i - ps->first + 1,
			       sizeof(*ps->have)) != 0)
			return fail(in, name, ln, "out of memory");
		c->comm = comm;
		c->send = !strcmp(dir, "send");
		snprintf(c->func, sizeof(c->func), "%s", func);
		snprintf(c->dtype, sizeof(c->dtype), "%s", dtype);
		ps->have[i - ps->first] = 0;
	}
	struct st_cell *c = &in->cells[i];
	int *have = &ps->have[i - ps->first];
	if (*have & metrics[m].bit)
		return fail(in, name, ln, "%s appears twice for the same labels", s.name);
	*have |= metrics[m].bit;
	double v = 0;
	int bad = 0;
	switch (metrics[m].bit) {
	case P_MESSAGES: bad = parse_count(s.value, &c->messages); break;
	case P_LOGICAL: bad = parse_count(s.value, &c->logical); break;
	case P_WIRE: bad = parse_count(s.value, &c->wire); break;
	default: bad = parse_real(s.value, &v) != 0 || v < 0; c->codec_us = v * 1e6;
	}
	if (bad)
		return fail(in, name, ln, "%s: value \"%s\" is not a valid count", s.name, s.value);
	return 0;
}

/* After the file: every cell has its three counters; it takes its comm's event and time. */
static int prom_finish(struct st_input *in, struct prom_state *ps, const char *name)
{
	for (size_t i = ps->first; i < in->ncells; i++) {
		struct st_cell *c = &in->cells[i];
		int have = ps->have[i - ps->first];
		static const char *const need[] = { "rcmoe_messages_total",
						    "rcmoe_logical_bytes_total",
						    "rcmoe_wire_bytes_total" };
		for (int b = 0; b < 3; b++)
			if (!(have & (1 << b)))
				return fail(in, name, 0, "no %s sample for comm %s %s %s %s",
					    need[b], in->comms[c->comm].id,
					    c->send ? "send" : "recv", c->func, c->dtype);
		struct prom_comm *pc = prom_comm_of(ps, c->comm);
		if (!pc)
			return fail(in, name, 0, "out of memory");
		c->finalize = pc->finalized == 1;
		c->ts = pc->ts;
		if (assign_snapshot(in, c) != 0)
			return fail(in, name, 0, "out of memory");
	}
	return 0;
}

/* ---- files ---------------------------------------------------------------------------------- */

int st_read_stream(struct st_input *in, FILE *f, const char *name)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	long ln = 0, records = 0;
	int format = 0, rc = 0;
	struct prom_state ps = { .first = in->ncells };
	while ((len = getline(&line, &cap, f)) >= 0) {
		ln++;
		if ((size_t)len != strlen(line)) {
			rc = fail(in, name, ln, "NUL byte: not a text file");
			break;
		}
		const char *p = skip_ws(line);
		if (!*p || *p == '\n')
			continue;
		if (!format)
			format = *p == '{' ? ST_FORMAT_JSON : ST_FORMAT_PROMETHEUS;
		if (format == ST_FORMAT_JSON) {
			rc = json_line(in, name, ln, p);
			records++;
		} else if (*p != '#') {
			rc = prom_line(in, &ps, name, ln, p);
			records++;
		}
		if (rc)
			break;
	}
	if (!rc && ferror(f))
		rc = fail(in, name, 0, "read error: %s", strerror(errno));
	if (!rc && format == ST_FORMAT_PROMETHEUS)
		rc = prom_finish(in, &ps, name);
	if (!rc && !records)
		rc = fail(in, name, 0, "no counters in it (empty, or only comments)");
	if (!rc && in->ncells == ps.first)
		rc = fail(in, name, 0, "no rcmoe counters in it");
	free(ps.have);
	free(ps.comms);
	free(line);
	if (!rc) {
		in->nfiles++;
		in->njson += format == ST_FORMAT_JSON;
		in->nprom += format == ST_FORMAT_PROMETHEUS;
	}
	return rc;
}

int st_read_path(struct st_input *in, const char *path)
{
	if (!strcmp(path, "-"))
		return st_read_stream(in, stdin, "<stdin>");
	FILE *f = fopen(path, "r");
	if (!f)
		return fail(in, path, 0, "cannot open: %s", strerror(errno));
	int rc = st_read_stream(in, f, path);
	fclose(f);
	return rc;
}

void st_input_free(struct st_input *in)
{
	for (size_t i = 0; i < in->ncomms; i++)
		free(in->comms[i].cur_keys);
	free(in->comms);
	free(in->cells);
	free(in->hash);
	memset(in, 0, sizeof(*in));
}
