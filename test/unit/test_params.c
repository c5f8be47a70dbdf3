/* SPDX-License-Identifier: Apache-2.0 */
/* The RCMOE_* table: defaults, valid and invalid values, and that docs/configuration.md documents
 * each one. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rcmoe/params.h"
#include "test_log.h"

static const char *fake_names[8];
static const char *fake_values[8];

static const char *fake_get(const char *name)
{
	for (int i = 0; i < 8 && fake_names[i]; i++)
		if (!strcmp(fake_names[i], name))
			return fake_values[i];
	return NULL;
}

static void set_env(int i, const char *name, const char *value)
{
	fake_names[i] = name;
	fake_values[i] = value;
	fake_names[i + 1] = NULL;
}

static void setup(void)
{
	test_log_init();
	fake_names[0] = NULL;
}

TestSuite(params, .init = setup);

Test(params, defaults_when_nothing_set)
{
	struct rcmoe_params p;
	cr_assert_eq(rcmoe_params_parse(&p, fake_get, 0), RCMOE_OK);
	cr_expect_eq(p.transport, RCMOE_TRANSPORT_AUTO);
	cr_expect_eq(p.socket_nstreams, 8);
	cr_expect_eq(p.socket_nthreads, 4);
	cr_expect_eq(p.socket_workers, 64);
	cr_expect_eq(p.socket_min_chunk, 65536);
	cr_expect_str_empty(p.stats_file);
	cr_expect_eq(p.a2a_bits, 0, "lossless unless asked");
	cr_expect_eq(p.cuda_buffers, RCMOE_CUDA_BUFFERS_AUTO, "GPU buffers where MPS is on");
	cr_expect_eq(p.lsq_block, 128);
	cr_expect_eq(p.a2a_scope, RCMOE_A2A_SCOPE_ALLTOALL);
	cr_expect_eq(test_log_warn_count(), 0);
}

Test(params, valid_values_and_size_suffixes)
{
	struct rcmoe_params p;
	set_env(0, "RCMOE_SOCKET_NSTREAMS", "3");
	set_env(1, "RCMOE_SOCKET_MIN_CHUNK", "128K");
	set_env(2, "RCMOE_TRANSPORT", "socket");
	set_env(3, "RCMOE_STATS_FILE", "/tmp/x.%p");
	set_env(4, "RCMOE_A2A_BITS", "4");
	set_env(5, "RCMOE_LSQ_BLOCK", "256");
	cr_assert_eq(rcmoe_params_parse(&p, fake_get, 1), RCMOE_OK);
	cr_expect_eq(p.a2a_bits, 4);
	cr_expect_eq(p.lsq_block, 256);
	cr_expect_eq(p.socket_nstreams, 3);
	cr_expect_eq(p.socket_min_chunk, 128 * 1024);
	cr_expect_eq(p.transport, RCMOE_TRANSPORT_SOCKET);
	cr_expect_str_eq(p.stats_file, "/tmp/x.%p");
}

Test(params, invalid_values_are_refused_loudly)
{
	static const char *bad[][2] = {
		{ "RCMOE_SOCKET_NSTREAMS", "0" },
		{ "RCMOE_SOCKET_NSTREAMS", "65" },
		{ "RCMOE_SOCKET_WORKERS", "0" },
		{ "RCMOE_SOCKET_WORKERS", "257" },
		{ "RCMOE_SOCKET_NSTREAMS", "four" },
		{ "RCMOE_SOCKET_NSTREAMS", "4x" },
		{ "RCMOE_TRANSPORT", "carrier-pigeon" },
		{ "RCMOE_SOCKET_MIN_CHUNK", "1K" },
		{ "RCMOE_CUDA_BUFFERS", "yes" },
		{ "RCMOE_STATS_INTERVAL", "-1" },
		{ "RCMOE_A2A_BITS", "3" },
		{ "RCMOE_A2A_BITS", "16" },
		{ "RCMOE_LSQ_BLOCK", "100" },
		{ "RCMOE_A2A_SCOPE", "pp" },
		{ "RCMOE_AR_DENSITY", "nan" },
		{ "RCMOE_AR_DENSITY", "NaN" },
		{ "RCMOE_AR_DENSITY", "inf" },
		{ "RCMOE_AR_DENSITY", "0x1p-3" },
		{ "RCMOE_AR_DENSITY", "1.5" },
		{ "RCMOE_AR_DENSITY", "-0.01" },
		{ "RCMOE_AR_DENSITY", "0.01x" },
		{ "RCMOE_AR_DENSITY", " 0.01" },
		{ "RCMOE_AR_DENSITY", "1e999" },
		{ "RCMOE_AR_DENSITY", "." },
		{ "RCMOE_AR_DENSITY", "ten percent" },
		{ "RCMOE_AR_BITS", "3" },
		{ "RCMOE_AR_CODEC", "topk" },
		{ "RCMOE_AR_MIN_BYTES", "-1" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct rcmoe_params p;
		int before = test_log_warn_count();
		set_env(0, bad[i][0], bad[i][1]);
		cr_expect_eq(rcmoe_params_parse(&p, fake_get, 0), RCMOE_ERR_USAGE, "%s=%s accepted",
			     bad[i][0], bad[i][1]);
		cr_expect_gt(test_log_warn_count(), before, "%s=%s refused silently", bad[i][0],
			     bad[i][1]);
	}
}

/* The real-valued setting: decimal forms in [0, 1], its default 0 (PTS off). */
Test(params, real_values)
{
	static const struct {
		const char *text;
		double want;
	} ok[] = { { "0.01", 0.01 }, { "1", 1.0 },    { "0", 0.0 },     { ".5", 0.5 },
		   { "1e-3", 1e-3 }, { "5E-1", 0.5 }, { "+0.25", 0.25 } };
	struct rcmoe_params p;
	cr_assert_eq(rcmoe_params_parse(&p, fake_get, 0), RCMOE_OK);
	cr_expect_eq(p.ar_density, 0.0, "PTS is off unless asked");
	cr_expect_eq(p.ar_bits, 0);
	cr_expect_eq(p.ar_codec, RCMOE_AR_CODEC_AUTO);
	cr_expect_eq(p.ar_min_bytes, 65536);
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		set_env(0, "RCMOE_AR_DENSITY", ok[i].text);
		cr_expect_eq(rcmoe_params_parse(&p, fake_get, 1), RCMOE_OK, "%s refused",
			     ok[i].text);
		cr_expect_eq(p.ar_density, ok[i].want, "%s parsed as %g", ok[i].text, p.ar_density);
	}
	cr_expect_eq(test_log_warn_count(), 0);
}

Test(params, too_long_string_is_refused)
{
	struct rcmoe_params p;
	char longv[400];
	memset(longv, 'a', sizeof(longv) - 1);
	longv[sizeof(longv) - 1] = '\0';
	set_env(0, "RCMOE_STATS_FILE", longv);
	cr_expect_eq(rcmoe_params_parse(&p, fake_get, 0), RCMOE_ERR_USAGE);
}

/* Every variable in the table has a row in docs/configuration.md. */
Test(params, every_variable_is_documented)
{
	const char *root = getenv("RCMOE_SOURCE_ROOT");
	cr_assert_not_null(root, "RCMOE_SOURCE_ROOT not set by the test harness");
	char path[1024];
	snprintf(path, sizeof(path), "%s/docs/configuration.md", root);
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f, "cannot open %s", path);
	static char text[1 << 20];
	size_t n = fread(text, 1, sizeof(text) - 1, f);
	text[n] = '\0';
	fclose(f);
	cr_assert_gt(rcmoe_params_count(), 5);
	for (int i = 0; i < rcmoe_params_count(); i++) {
		char row[128];
		snprintf(row, sizeof(row), "| `%s` |", rcmoe_params_name(i));
		cr_expect_not_null(strstr(text, row),
				   "docs/configuration.md has no table row for %s",
				   rcmoe_params_name(i));
	}
}
