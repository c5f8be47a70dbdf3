/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Routing traces: the binary format (a 32-byte little-endian header, then uint16 ids) and the text
 * format (one token per line), streamed in batches so that a trace of 10^7 tokens never sits in
 * memory. Every check names the file and the token or line.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "place.h"

#define BATCH 65536 /* tokens per callback */

static int fail(char *err, size_t errlen, const char *path, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(err, errlen, "%s: ", path);
	if (n < 0 || (size_t)n >= errlen)
		return -1;
	va_start(ap, fmt);
	vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return -1;
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

/* 0 when the token's ids are in range and distinct, else the message in err. */
static int check_token(const uint16_t *ids, uint32_t k, uint32_t experts, char *err, size_t errlen,
		       const char *path, const char *where, uint64_t at)
{
	for (uint32_t i = 0; i < k; i++) {
		if (ids[i] >= experts)
			return fail(err, errlen, path,
				    "%s %llu: expert id %u out of range (%u experts)", where,
				    (unsigned long long)at, ids[i], experts);
		for (uint32_t j = 0; j < i; j++)
			if (ids[j] == ids[i])
				return fail(
					err, errlen, path,
					"%s %llu: expert id %u repeated (a token's top-k ids are "
					"distinct)",
					where, (unsigned long long)at, ids[i]);
	}
	return 0;
}

static int scan_binary(FILE *f, const char *path, uint32_t experts, uint32_t want_k,
		       struct pl_trace_info *info, pl_token_fn fn, void *ctx, char *err,
		       size_t errlen)
{
	unsigned char h[PL_HEADER_SIZE];
	size_t got = fread(h, 1, sizeof(h), f);
	if (got < 8 || memcmp(h, PL_MAGIC, 8) != 0)
		return fail(err, errlen, path, "bad magic (a binary trace starts with \"%s\")",
			    PL_MAGIC);
	if (got < sizeof(h))
		return fail(err, errlen, path, "truncated header (%zu of %u bytes)", got,
			    PL_HEADER_SIZE);
	uint32_t version = get32(h + 8), k = get32(h + 12), e = get32(h + 16), rsv = get32(h + 20);
	uint64_t tokens = (uint64_t)get32(h + 24) | (uint64_t)get32(h + 28) << 32;
	if (version != PL_VERSION)
		return fail(err, errlen, path, "version %u, this tool reads version %u", version,
			    PL_VERSION);
	if (rsv != 0)
		return fail(err, errlen, path, "reserved header field is %u, not 0", rsv);
	if (k == 0 || k > PL_MAX_K)
		return fail(err, errlen, path, "k = %u, expected 1..%u", k, PL_MAX_K);
	if (e != experts)
		return fail(err, errlen, path,
			    "the header says %u experts, the placement has %u (devices x "
			    "experts per device)",
			    e, experts);
	if (want_k && k != want_k)
		return fail(err, errlen, path, "k mismatch: the trace has k = %u, --k says %u", k,
			    want_k);
	if (k > experts)
		return fail(err, errlen, path, "k = %u is more than the %u experts", k, experts);
	info->format = PL_FORMAT_BINARY;
	info->k = k;
	info->experts = e;
	info->tokens = tokens;

	unsigned char *raw = malloc((size_t)BATCH * k * 2);
	uint16_t *ids = malloc((size_t)BATCH * k * sizeof(*ids));
	int rc = 0;
	if (!raw || !ids) {
		rc = fail(err, errlen, path, "out of memory");
		goto out;
	}
	for (uint64_t done = 0; done < tokens && rc == 0;) {
		size_t n = tokens - done < BATCH ? (size_t)(tokens - done) : BATCH;
		size_t r = fread(raw, (size_t)k * 2, n, f);
		if (r < n) {
			rc = fail(err, errlen, path,
				  "truncated: the header says %llu tokens, the file ends in token "
				  "%llu",
				  (unsigned long long)tokens, (unsigned long long)(done + r));
			break;
		}
		for (size_t i = 0; i < n * k; i++)
			ids[i] = (uint16_t)(raw[2 * i] | raw[2 * i + 1] << 8);
		for (size_t t = 0; t < n && rc == 0; t++)
			rc = check_token(ids + t * k, k, experts, err, errlen, path, "token",
					 done + t);
		if (rc == 0)
			rc = fn(ctx, ids, n, k);
		done += n;
	}
	if (rc == 0 && fgetc(f) != EOF)
		rc = fail(err, errlen, path,
			  "trailing bytes after the %llu tokens the header names",
			  (unsigned long long)tokens);
out:
	free(raw);
	free(ids);
	return rc;
}

static int scan_text(FILE *f, const char *path, uint32_t experts, uint32_t want_k,
		     struct pl_trace_info *info, pl_token_fn fn, void *ctx, char *err,
		     size_t errlen)
{
	char *line = NULL;
	size_t cap = 0, n = 0;
	uint32_t k = want_k;
	uint16_t *ids = malloc((size_t)BATCH * PL_MAX_K * sizeof(*ids));
	uint64_t lineno = 0, tokens = 0;
	int rc = 0;
	if (!ids)
		return fail(err, errlen, path, "out of memory");
	info->format = PL_FORMAT_TEXT;
	info->experts = experts;
	while (rc == 0 && getline(&line, &cap, f) != -1) {
		lineno++;
		char *p = line;
		while (isspace((unsigned char)*p))
			p++;
		if (*p == '\0' || *p == '#')
			continue;
		uint16_t tok[PL_MAX_K + 1];
		uint32_t cnt = 0;
		while (*p && rc == 0) {
			if (!isdigit((unsigned char)*p)) {
				rc = fail(err, errlen, path,
					  "line %llu: expected an expert id at \"%.16s\"",
					  (unsigned long long)lineno, p);
				break;
			}
			char *start = p;
			errno = 0;
			unsigned long v = strtoul(p, &p, 10);
			if (errno || v >= experts) {
				rc = fail(err, errlen, path,
					  "line %llu: expert id %.*s out of range (%u experts)",
					  (unsigned long long)lineno, (int)(p - start), start,
					  experts);
				break;
			}
			if (cnt > PL_MAX_K) {
				rc = fail(err, errlen, path, "line %llu: more than %u ids",
					  (unsigned long long)lineno, PL_MAX_K);
				break;
			}
			tok[cnt++] = (uint16_t)v;
			while (isspace((unsigned char)*p) || *p == ',')
				p++;
		}
		if (rc)
			break;
		if (k == 0) {
			if (cnt > PL_MAX_K) {
				rc = fail(err, errlen, path, "line %llu: k = %u, expected 1..%u",
					  (unsigned long long)lineno, cnt, PL_MAX_K);
				break;
			}
			k = cnt;
		}
		if (cnt != k) {
			rc = fail(err, errlen, path,
				  "line %llu: k mismatch: %u expert ids, %s has %u",
				  (unsigned long long)lineno, cnt,
				  want_k ? "--k" : "the first token", k);
			break;
		}
		rc = check_token(tok, k, experts, err, errlen, path, "line", lineno);
		if (rc)
			break;
		memcpy(ids + n * k, tok, k * sizeof(*tok));
		tokens++;
		if (++n == BATCH) {
			rc = fn(ctx, ids, n, k);
			n = 0;
		}
	}
	if (rc == 0 && ferror(f))
		rc = fail(err, errlen, path, "read error: %s", strerror(errno));
	if (rc == 0 && n)
		rc = fn(ctx, ids, n, k);
	info->k = k;
	info->tokens = tokens;
	free(line);
	free(ids);
	return rc;
}

int pl_trace_scan(const char *path, int format, uint32_t experts, uint32_t want_k,
		  struct pl_trace_info *info, pl_token_fn fn, void *ctx, char *err, size_t errlen)
{
	memset(info, 0, sizeof(*info));
	if (experts == 0 || experts > PL_MAX_EXPERTS)
		return fail(err, errlen, path, "%u experts, expected 1..%u", experts,
			    PL_MAX_EXPERTS);
	FILE *f = fopen(path, "rb");
	if (!f)
		return fail(err, errlen, path, "%s", strerror(errno));
	if (format == PL_FORMAT_AUTO) {
		/* The magic, else text. A file that starts like the magic, or holds control
		 * bytes no text trace has, is a binary trace with a bad magic. */
		unsigned char head[PL_HEADER_SIZE];
		size_t got = fread(head, 1, sizeof(head), f);
		format = PL_FORMAT_TEXT;
		if (got >= 5 && memcmp(head, PL_MAGIC, 5) == 0)
			format = PL_FORMAT_BINARY;
		for (size_t i = 0; i < got; i++)
			if ((head[i] < 0x20 && !isspace(head[i])) || head[i] == 0x7f)
				format = PL_FORMAT_BINARY;
		rewind(f);
	}
	int rc = format == PL_FORMAT_BINARY
			 ? scan_binary(f, path, experts, want_k, info, fn, ctx, err, errlen)
			 : scan_text(f, path, experts, want_k, info, fn, ctx, err, errlen);
	fclose(f);
	return rc;
}

struct pl_writer {
	FILE *f;
	int format;
	uint32_t k, experts;
	uint64_t tokens;
};

static int write_header(struct pl_writer *w)
{
	unsigned char h[PL_HEADER_SIZE] = { 0 };
	memcpy(h, PL_MAGIC, 8);
	put32(h + 8, PL_VERSION);
	put32(h + 12, w->k);
	put32(h + 16, w->experts);
	put32(h + 24, (uint32_t)w->tokens);
	put32(h + 28, (uint32_t)(w->tokens >> 32));
	return fwrite(h, sizeof(h), 1, w->f) == 1 ? 0 : -1;
}

struct pl_writer *pl_writer_open(const char *path, int format, uint32_t k, uint32_t experts)
{
	struct pl_writer *w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->format = format == PL_FORMAT_TEXT ? PL_FORMAT_TEXT : PL_FORMAT_BINARY;
	w->k = k;
	w->experts = experts;
	w->f = fopen(path, w->format == PL_FORMAT_TEXT ? "w" : "wb");
	if (!w->f || (w->format == PL_FORMAT_BINARY && write_header(w) != 0)) {
		int e = errno;
		if (w->f)
			fclose(w->f);
		free(w);
		errno = e;
		return NULL;
	}
	return w;
}

int pl_writer_add(struct pl_writer *w, const uint16_t *ids, size_t ntokens)
{
	if (w->format == PL_FORMAT_TEXT) {
		for (size_t t = 0; t < ntokens; t++)
			for (uint32_t i = 0; i < w->k; i++)
				if (fprintf(w->f, "%u%c", ids[t * w->k + i],
					    i + 1 == w->k ? '\n' : ' ') < 0)
					return -1;
	} else {
		unsigned char buf[2 * PL_MAX_K];
		for (size_t t = 0; t < ntokens; t++) {
			for (uint32_t i = 0; i < w->k; i++) {
				buf[2 * i] = (unsigned char)ids[t * w->k + i];
				buf[2 * i + 1] = (unsigned char)(ids[t * w->k + i] >> 8);
			}
			if (fwrite(buf, 2 * w->k, 1, w->f) != 1)
				return -1;
		}
	}
	w->tokens += ntokens;
	return 0;
}

int pl_writer_close(struct pl_writer *w)
{
	int rc = 0;
	if (w->format == PL_FORMAT_BINARY && (fseek(w->f, 0, SEEK_SET) != 0 || write_header(w)))
		rc = -1;
	if (fclose(w->f) != 0)
		rc = -1;
	free(w);
	return rc;
}
