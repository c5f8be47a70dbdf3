/* SPDX-License-Identifier: Apache-2.0 */
/*
 * --link-gbps: an emulated per-rank link. librcmoe-shaper.so (tools/shaper/) is preloaded into
 * every rank of both transports alike, with RCMOE_SHAPER_GBPS, and holds each rank's TCP sends
 * to that rate. A rank checks that the shaper really is loaded in it, at the rate asked for,
 * before it does anything: a table labelled with a link speed must never come from an
 * unshaped run. The loopback mode, one process, re-executes itself with the shaper preloaded.
 */
#include "bench.h"

#include <dlfcn.h>
#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rcmoe_shaper.h"

#ifndef RCMOE_BENCH_PLUGIN_DIR
#define RCMOE_BENCH_PLUGIN_DIR "../lib" /* set by tools/meson.build */
#endif

extern char **environ;

int bench_link_parse(struct bench_cfg *cfg, const char *arg)
{
	char *end;
	errno = 0;
	double g = strtod(arg, &end);
	/* the shaper's own range (tools/shaper/shaper.h) */
	if (end == arg || *end || errno || !isfinite(g) || g < 0.001 || g > 100000)
		return -1;
	cfg->link_gbps = g;
	cfg->link_arg = arg; /* the ranks parse this same text: they must agree exactly */
	return 0;
}

const char *bench_link_label(const struct bench_cfg *cfg)
{
	static char label[64];
	if (!(cfg->link_gbps > 0))
		return NULL;
	snprintf(label, sizeof(label), "emulated link %g Gb/s per rank", cfg->link_gbps);
	return label;
}

/* 0, and its absolute path in cfg->shaper, when `path` is a regular file. */
static int shaper_at(struct bench_cfg *cfg, const char *path)
{
	struct stat sb;
	if (stat(path, &sb) || !S_ISREG(sb.st_mode))
		return -1;
	return realpath(path, cfg->shaper) ? 0 : -1;
}

/*
 * The shaper, looked for as the plugin is (main.c): --shaper, else the installed one (<libdir>
 * seen from the <bindir> holding this binary), else the build tree's (tools/shaper/ beside
 * tools/bench/), else the first in $LD_LIBRARY_PATH. On failure cfg->shaper names the build
 * tree's, for the message (cut to PATH_MAX, which no real path exceeds).
 */
int bench_link_resolve(struct bench_cfg *cfg)
{
	char exe[PATH_MAX], cand[PATH_MAX + 64];
	if (cfg->shaper_arg) {
		if (!shaper_at(cfg, cfg->shaper_arg))
			return 0;
		snprintf(cfg->shaper, sizeof(cfg->shaper), "%s", cfg->shaper_arg);
		return -1;
	}
	snprintf(exe, sizeof(exe), "%s", cfg->exe);
	const char *dir = dirname(exe);
	if (RCMOE_BENCH_PLUGIN_DIR[0] == '/')
		snprintf(cand, sizeof(cand), "%s/%s", RCMOE_BENCH_PLUGIN_DIR, RCMOE_SHAPER_LIB);
	else
		snprintf(cand, sizeof(cand), "%s/%s/%s", dir, RCMOE_BENCH_PLUGIN_DIR,
			 RCMOE_SHAPER_LIB);
	if (!shaper_at(cfg, cand))
		return 0;
	snprintf(cand, sizeof(cand), "%s/../shaper/%s", dir, RCMOE_SHAPER_LIB);
	if (!shaper_at(cfg, cand))
		return 0;
	for (const char *s = getenv("LD_LIBRARY_PATH"); s && *s;) {
		size_t n = strcspn(s, ":");
		snprintf(cand, sizeof(cand), "%.*s/%s", n ? (int)n : 1, n ? s : ".",
			 RCMOE_SHAPER_LIB);
		if (!shaper_at(cfg, cand))
			return 0;
		s += n + (s[n] == ':');
	}
	snprintf(cand, sizeof(cand), "%s/../shaper/%s", dir, RCMOE_SHAPER_LIB);
	snprintf(cfg->shaper, sizeof(cfg->shaper), "%.*s", PATH_MAX - 1, cand);
	return -1;
}

/* LD_PRELOAD for a rank: the shaper first (so that its send() is the one every library
 * reaches), then whatever was preloaded already. */
int bench_link_preload(const struct bench_cfg *cfg, const char *current, char *out, size_t len)
{
	/* ld.so splits LD_PRELOAD at spaces and colons: such a path cannot be preloaded. */
	if (strpbrk(cfg->shaper, " :"))
		return -1;
	int k = current && *current ? snprintf(out, len, "%s:%s", cfg->shaper, current)
				    : snprintf(out, len, "%s", cfg->shaper);
	return k > 0 && (size_t)k < len ? 0 : -1;
}

int bench_link_check(const struct bench_cfg *cfg, char *err, size_t len)
{
	rcmoe_shaper_gbps_fn f = (rcmoe_shaper_gbps_fn)dlsym(RTLD_DEFAULT, RCMOE_SHAPER_SYM_GBPS);
	const char *pre = getenv("LD_PRELOAD"), *env = getenv(RCMOE_SHAPER_ENV);
	if (!f) {
		snprintf(err, len,
			 "--link-gbps %s: the link shaper is not loaded in this process "
			 "(LD_PRELOAD=%.300s): refusing to run unshaped",
			 cfg->link_arg, pre ? pre : "(unset)");
		return -1;
	}
	double g = f();
	if (g != cfg->link_gbps) {
		snprintf(err, len,
			 "--link-gbps %s: the link shaper in this process runs at %g Gb/s "
			 "(%s=%.40s): refusing to run",
			 cfg->link_arg, g, RCMOE_SHAPER_ENV, env ? env : "(unset)");
		return -1;
	}
	return 0;
}

int bench_link_loopback_enter(struct bench_cfg *cfg)
{
	char err[512];
	if (!bench_link_check(cfg, err, sizeof(err)))
		return 0;
	if (cfg->shaper_reexec) {
		/* We are the re-executed process and still not shaped: say why, never loop. */
		fprintf(stderr, "rcmoe-bench: %s\n", err);
		return 2;
	}
	char preload[2 * PATH_MAX];
	if (bench_link_preload(cfg, getenv("LD_PRELOAD"), preload, sizeof(preload))) {
		fprintf(stderr, "rcmoe-bench: --link-gbps: %s cannot go into LD_PRELOAD\n",
			cfg->shaper);
		return 2;
	}
	char **argv = calloc((size_t)bench_orig_argc + 2, sizeof(*argv));
	if (!argv || setenv("LD_PRELOAD", preload, 1) ||
	    setenv(RCMOE_SHAPER_ENV, cfg->link_arg, 1)) {
		fprintf(stderr, "rcmoe-bench: out of memory\n");
		return 2;
	}
	argv[0] = cfg->exe;
	argv[1] = "--shaper-loaded";
	for (int i = 1; i < bench_orig_argc; i++)
		argv[i + 1] = bench_orig_argv[i];
	fflush(stdout);
	execve(cfg->exe, argv, environ);
	fprintf(stderr, "rcmoe-bench: exec %s: %s\n", cfg->exe, strerror(errno));
	return 2;
}
