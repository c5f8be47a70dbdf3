/* SPDX-License-Identifier: Apache-2.0 */
/* Parsing of the RCMOE_* table (rcmoe/params.def). */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "rcmoe/log.h"
#include "rcmoe/params.h"

static const char *const param_names[] = {
#define RCMOE_PARAM_INT(field, env, def, lo, hi, doc)    env,
#define RCMOE_PARAM_ENUM(field, env, def, values, doc)   env,
#define RCMOE_PARAM_STR(field, env, def, doc)            env,
#define RCMOE_PARAM_CHOICE(field, env, def, values, doc) env,
#define RCMOE_PARAM_REAL(field, env, def, lo, hi, doc)   env,
#include "rcmoe/params.def"
#undef RCMOE_PARAM_INT
#undef RCMOE_PARAM_ENUM
#undef RCMOE_PARAM_STR
#undef RCMOE_PARAM_CHOICE
#undef RCMOE_PARAM_REAL
};

int rcmoe_params_count(void)
{
	return (int)(sizeof(param_names) / sizeof(param_names[0]));
}

const char *rcmoe_params_name(int i)
{
	return (i >= 0 && i < rcmoe_params_count()) ? param_names[i] : NULL;
}

/* Integer with an optional K/M/G suffix (powers of 1024); the whole string must parse. */
static int parse_int(const char *s, int64_t *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s)
		return -1;
	int64_t mult = 1;
	switch (toupper((unsigned char)*end)) {
	case 'K':
		mult = 1ll << 10;
		end++;
		break;
	case 'M':
		mult = 1ll << 20;
		end++;
		break;
	case 'G':
		mult = 1ll << 30;
		end++;
		break;
	default: break;
	}
	if (*end != '\0')
		return -1;
	if (v > INT64_MAX / mult || v < INT64_MIN / mult)
		return -1;
	*out = (int64_t)v * mult;
	return 0;
}

/* A finite decimal real ("0.01", "1e-3", ".5"); the whole string must parse. Refuses what strtod
 * would also take but is no setting: nan, inf, hexadecimal, and leading or trailing spaces. */
static int parse_real(const char *s, double *out)
{
	for (const char *p = s; *p; p++)
		if (!strchr("0123456789.eE+-", *p))
			return -1;
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end != '\0' || !isfinite(v))
		return -1;
	*out = v;
	return 0;
}

/* Index of `s` in "a|b|c", or -1. */
static int enum_index(const char *values, const char *s)
{
	int idx = 0;
	size_t n = strlen(s);
	for (const char *p = values;; idx++) {
		const char *bar = strchr(p, '|');
		size_t len = bar ? (size_t)(bar - p) : strlen(p);
		if (len == n && strncmp(p, s, n) == 0)
			return idx;
		if (!bar)
			return -1;
		p = bar + 1;
	}
}

/* Is x one of the integers in "1|2|4"? */
static int int_in_list(const char *values, int64_t x)
{
	for (const char *p = values; *p;) {
		char *end;
		long long v = strtoll(p, &end, 10);
		if (end == p)
			return 0;
		if (v == x)
			return 1;
		p = *end == '|' ? end + 1 : end;
	}
	return 0;
}

rcmoe_status_t rcmoe_params_parse(struct rcmoe_params *out, rcmoe_getenv_fn get, int log_set)
{
	rcmoe_status_t st = RCMOE_OK;
	const char *v;
	memset(out, 0, sizeof(*out));

#define RCMOE_PARAM_INT(field, env, def, lo, hi, doc)                                              \
	out->field = (def);                                                                        \
	if ((v = get(env)) != NULL && *v) {                                                        \
		int64_t x;                                                                         \
		if (parse_int(v, &x) != 0 || x < (lo) || x > (hi)) {                               \
			RCMOE_WARN("%s=\"%s\" is invalid: expected an integer in [%lld, %lld]",    \
				   env, v, (long long)(lo), (long long)(hi));                      \
			st = RCMOE_ERR_USAGE;                                                      \
		} else {                                                                           \
			out->field = x;                                                            \
			if (log_set)                                                               \
				RCMOE_INFO(NCCL_INIT | NCCL_ENV, "%s set by environment to %lld",  \
					   env, (long long)x);                                     \
		}                                                                                  \
	}
#define RCMOE_PARAM_ENUM(field, env, def, values, doc)                                             \
	out->field = enum_index(values, def);                                                      \
	if ((v = get(env)) != NULL && *v) {                                                        \
		int x = enum_index(values, v);                                                     \
		if (x < 0) {                                                                       \
			RCMOE_WARN("%s=\"%s\" is invalid: expected one of %s", env, v, values);    \
			st = RCMOE_ERR_USAGE;                                                      \
		} else {                                                                           \
			out->field = x;                                                            \
			if (log_set)                                                               \
				RCMOE_INFO(NCCL_INIT | NCCL_ENV, "%s set by environment to %s",    \
					   env, v);                                                \
		}                                                                                  \
	}
#define RCMOE_PARAM_STR(field, env, def, doc)                                                      \
	snprintf(out->field, sizeof(out->field), "%s", def);                                       \
	if ((v = get(env)) != NULL && *v) {                                                        \
		if (strlen(v) >= sizeof(out->field)) {                                             \
			RCMOE_WARN("%s is too long (%zu bytes, at most %zu)", env, strlen(v),      \
				   sizeof(out->field) - 1);                                        \
			st = RCMOE_ERR_USAGE;                                                      \
		} else {                                                                           \
			snprintf(out->field, sizeof(out->field), "%s", v);                         \
			if (log_set)                                                               \
				RCMOE_INFO(NCCL_INIT | NCCL_ENV, "%s set by environment to %s",    \
					   env, v);                                                \
		}                                                                                  \
	}
#define RCMOE_PARAM_CHOICE(field, env, def, values, doc)                                           \
	out->field = (def);                                                                        \
	if ((v = get(env)) != NULL && *v) {                                                        \
		int64_t x;                                                                         \
		if (parse_int(v, &x) != 0 || !int_in_list(values, x)) {                            \
			RCMOE_WARN("%s=\"%s\" is invalid: expected one of %s", env, v, values);    \
			st = RCMOE_ERR_USAGE;                                                      \
		} else {                                                                           \
			out->field = x;                                                            \
			if (log_set)                                                               \
				RCMOE_INFO(NCCL_INIT | NCCL_ENV, "%s set by environment to %lld",  \
					   env, (long long)x);                                     \
		}                                                                                  \
	}
#define RCMOE_PARAM_REAL(field, env, def, lo, hi, doc)                                             \
	out->field = (def);                                                                        \
	if ((v = get(env)) != NULL && *v) {                                                        \
		double x;                                                                          \
		if (parse_real(v, &x) != 0 || x < (lo) || x > (hi)) {                              \
			RCMOE_WARN("%s=\"%s\" is invalid: expected a decimal number in [%g, %g]",  \
				   env, v, (double)(lo), (double)(hi));                            \
			st = RCMOE_ERR_USAGE;                                                      \
		} else {                                                                           \
			out->field = x;                                                            \
			if (log_set)                                                               \
				RCMOE_INFO(NCCL_INIT | NCCL_ENV, "%s set by environment to %g",    \
					   env, x);                                                \
		}                                                                                  \
	}
#include "rcmoe/params.def"
#undef RCMOE_PARAM_INT
#undef RCMOE_PARAM_ENUM
#undef RCMOE_PARAM_STR
#undef RCMOE_PARAM_CHOICE
#undef RCMOE_PARAM_REAL
	return st;
}

static const char *env_get(const char *name)
{
	return getenv(name);
}

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static struct rcmoe_params loaded;
static rcmoe_status_t load_status;

static void load_from_env(void)
{
	load_status = rcmoe_params_parse(&loaded, env_get, 1);
}

rcmoe_status_t rcmoe_params_load(const struct rcmoe_params **out)
{
	pthread_once(&load_once, load_from_env);
	*out = &loaded;
	return load_status;
}
