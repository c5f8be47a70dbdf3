/* SPDX-License-Identifier: Apache-2.0 */
/* Load the built plugin the way NCCL does (dlopen RTLD_NOW|RTLD_LOCAL) and look at what it
 * exports: every table NCCL looks for, and nothing of the internals. */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rcmoe/nccl_abi.h"

static void *lib;

static void load(void)
{
	const char *path = getenv("RCMOE_PLUGIN_PATH");
	cr_assert_not_null(path, "RCMOE_PLUGIN_PATH not set by the test harness");
	lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	cr_assert_not_null(lib, "dlopen(%s): %s", path, dlerror());
}

static void unload(void)
{
	if (lib)
		dlclose(lib);
}

TestSuite(smoke, .init = load, .fini = unload);

Test(smoke, net_v11_table)
{
	const ncclNet_v11_t *t = dlsym(lib, "ncclNetPlugin_v11");
	cr_assert_not_null(t);
	cr_expect_str_eq(t->name, "RCMoE");
	cr_expect(t->init && t->devices && t->getProperties && t->listen && t->connect &&
		  t->accept && t->regMr && t->regMrDmaBuf && t->deregMr && t->isend && t->irecv &&
		  t->iflush && t->test && t->closeSend && t->closeRecv && t->closeListen &&
		  t->finalize && t->setNetAttr);
}

Test(smoke, net_v10_table)
{
	const ncclNet_v10_t *t = dlsym(lib, "ncclNetPlugin_v10");
	cr_assert_not_null(t);
	cr_expect_str_eq(t->name, "RCMoE");
	cr_expect(t->init && t->devices && t->getProperties && t->listen && t->connect &&
		  t->accept && t->regMr && t->isend && t->irecv && t->test && t->closeSend &&
		  t->closeRecv && t->closeListen);
}

Test(smoke, collnet_tables)
{
	const ncclCollNet_v11_t *t = dlsym(lib, "ncclCollNetPlugin_v11");
	cr_assert_not_null(t);
	cr_expect_str_eq(t->name, "RCMoE");
	cr_expect(t->init && t->devices && t->getProperties && t->listen && t->connect &&
		  t->reduceSupport && t->regMr && t->regMrDmaBuf && t->deregMr && t->iallreduce &&
		  t->iflush && t->test && t->closeColl && t->closeListen && t->finalize);
	cr_expect(!t->iallgather && !t->ireducescatter, "all-gather/reduce-scatter not declined");
	const ncclCollNet_v10_t *t10 = dlsym(lib, "ncclCollNetPlugin_v10");
	cr_assert_not_null(t10);
	cr_expect(t10->init && t10->connect && t10->iallreduce && t10->test && t10->closeColl);
}

Test(smoke, profiler_v5_table)
{
	const ncclProfiler_v5_t *t = dlsym(lib, "ncclProfiler_v5");
	cr_assert_not_null(t);
	cr_expect(t->init && t->startEvent && t->stopEvent && t->recordEventState && t->finalize);
}

Test(smoke, tuner_v5_table)
{
	const ncclTuner_v5_t *t = dlsym(lib, "ncclTunerPlugin_v5");
	cr_assert_not_null(t);
	cr_expect_str_eq(t->name, "RCMoE");
	cr_expect(t->init && t->getCollInfo && t->finalize);
}

Test(smoke, internals_are_hidden)
{
	static const char *internal[] = { "rcmoe_core_init",  "rcmoe_params_load",
					  "rcmoe_socket_ops", "rcmoe_log_set",
					  "rcmoe_prof_start", "rcmoe_stats_write",
					  "rcmoe_tuner_apply" };
	for (size_t i = 0; i < sizeof(internal) / sizeof(internal[0]); i++)
		cr_expect_null(dlsym(lib, internal[i]), "%s is exported", internal[i]);
}

/* The dynamic symbol table holds only the tables (nm lists what a linker could see). */
Test(smoke, only_tables_exported)
{
	char cmd[1200];
	snprintf(cmd, sizeof(cmd), "nm -D --defined-only '%s' | awk '{print $3}'",
		 getenv("RCMOE_PLUGIN_PATH"));
	FILE *p = popen(cmd, "r");
	cr_assert_not_null(p);
	char sym[256];
	int n = 0;
	while (fgets(sym, sizeof(sym), p)) {
		sym[strcspn(sym, "\n")] = '\0';
		if (!*sym)
			continue;
		n++;
		cr_expect(!strcmp(sym, "ncclNetPlugin_v11") || !strcmp(sym, "ncclNetPlugin_v10") ||
				  !strcmp(sym, "ncclProfiler_v5") ||
				  !strncmp(sym, "ncclCollNetPlugin_", 18) ||
				  !strncmp(sym, "ncclTunerPlugin_", 16),
			  "unexpected export %s", sym);
	}
	cr_expect_eq(pclose(p), 0);
	cr_expect_geq(n, 3);
}

/* Every line the plugin logs, concatenated, to look for what it said. */
static char logged[16384];

static void keep_log(ncclDebugLogLevel level, unsigned long flags, const char *file, int line,
		     const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	(void)level;
	(void)flags;
	(void)file;
	(void)line;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (strlen(logged) + strlen(buf) + 2 < sizeof(logged)) {
		strcat(logged, buf);
		strcat(logged, "\n");
	}
}

/* Init the loaded plugin's net v11 table with RCMOE_TRANSPORT=`transport` and the verbs
 * library `ib_library`; returns its device count. */
static int init_with(const char *transport, const char *ib_library, void **ctx)
{
	const ncclNet_v11_t *t = dlsym(lib, "ncclNetPlugin_v11");
	ncclNetCommConfig_v11_t cfg = { .trafficClass = NCCL_NET_TRAFFIC_CLASS_UNDEF };
	int ndev = 0;
	cr_assert_not_null(t);
	setenv("RCMOE_TRANSPORT", transport, 1);
	setenv("RCMOE_SOCKET_IFNAME", "lo", 1);
	setenv("RCMOE_IB_LIBRARY", ib_library, 1);
	cr_assert_eq(t->init(ctx, 1, &cfg, keep_log, NULL), ncclSuccess, "init failed:\n%s",
		     logged);
	cr_assert_eq(t->devices(&ndev), ncclSuccess);
	return ndev;
}

/* Where libibverbs cannot be loaded, the plugin still loads (it links nothing of rdma-core),
 * starts over sockets, and says so: `auto` uses sockets, and names the IB transport it does not
 * pick yet. */
Test(smoke, runs_over_sockets_without_libibverbs)
{
	void *ctx = NULL;
	const ncclNet_v11_t *t = dlsym(lib, "ncclNetPlugin_v11");
	cr_assert_gt(init_with("auto", "/nonexistent/libibverbs.so.1", &ctx), 0);
	cr_expect(strstr(logged, "transport socket (RCMOE_TRANSPORT=auto); RCMOE_TRANSPORT=ib"),
		  "the choice is not said:\n%s", logged);
	cr_expect(strstr(logged, "; transport socket;"), "the init line names no socket:\n%s",
		  logged);
	t->finalize(ctx);
}

/* Named, the IB transport runs where a verbs port is active (the test provider's); the
 * collective side runs over it too, so collNet reports the same device. */
Test(smoke, ib_by_name_where_a_port_is_active)
{
	void *ctx = NULL;
	const char *fv = getenv("FAKEVERBS_PATH");
	const ncclNet_v11_t *t = dlsym(lib, "ncclNetPlugin_v11");
	const ncclCollNet_v11_t *coll = dlsym(lib, "ncclCollNetPlugin_v11");
	cr_assert_not_null(fv, "FAKEVERBS_PATH not set by the test harness");
	cr_assert_eq(init_with("ib", fv, &ctx), 1);
	cr_expect(strstr(logged, "transport ib (RCMOE_TRANSPORT=ib)"), "%s", logged);
	cr_expect(strstr(logged, "; transport ib;"), "the init line names no ib:\n%s", logged);
	ncclNetProperties_v11_t props;
	cr_assert_eq(t->getProperties(0, &props), ncclSuccess);
	cr_expect_str_eq(props.name, "fake0:1");
	int ndev = -1;
	ncclNetProperties_v11_t coll_props;
	cr_assert_eq(coll->devices(&ndev), ncclSuccess);
	cr_expect_eq(ndev, 1, "collNet reports %d devices over the IB transport", ndev);
	cr_assert_eq(coll->getProperties(0, &coll_props), ncclSuccess);
	cr_expect_str_eq(coll_props.name, "fake0:1");
	t->finalize(ctx);
}
