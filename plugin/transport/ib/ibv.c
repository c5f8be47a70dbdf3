/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libibverbs, loaded at run time: the plugin links nothing of rdma-core, so it loads and runs
 * over sockets on a machine without it. RCMOE_IB_LIBRARY names the library (default
 * libibverbs.so.1, the real one; the tests name the test provider, test/ib/fakeverbs/). Only
 * exported entry points are looked up here; the data-path verbs go through the context's ops
 * table (rcmoe/ibv_abi.h), as libibverbs' own inline wrappers do.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "rcmoe/log.h"
#include "transport/ib/ib.h"

struct ib_verbs ib_verbs;

/* Resolve one symbol into a function pointer of the table (dlsym returns void *). */
#define IB_SYM(field, name)                                                                        \
	do {                                                                                       \
		void *sym = dlsym(lib, name);                                                      \
		if (!sym) {                                                                        \
			RCMOE_INFO(NCCL_INIT | NCCL_NET, "IB transport: %s has no %s", path,       \
				   name);                                                          \
			goto close_lib;                                                            \
		}                                                                                  \
		memcpy(&ib_verbs.field, &sym, sizeof(sym));                                        \
	} while (0)

rcmoe_status_t ib_verbs_load(const char *path)
{
	/* RTLD_LOCAL: the library's symbols must not take the place of another copy the process
	 * (NCCL's own IB transport) may load. */
	void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		const char *why = dlerror();
		RCMOE_INFO(NCCL_INIT | NCCL_NET, "IB transport: cannot load %s: %s", path,
			   why ? why : "unknown error");
		return RCMOE_ERR_UNSUPPORTED;
	}
	IB_SYM(get_device_list, "ibv_get_device_list");
	IB_SYM(free_device_list, "ibv_free_device_list");
	IB_SYM(get_device_name, "ibv_get_device_name");
	IB_SYM(open_device, "ibv_open_device");
	IB_SYM(close_device, "ibv_close_device");
	IB_SYM(query_port, "ibv_query_port");
	IB_SYM(query_gid, "ibv_query_gid");
	IB_SYM(alloc_pd, "ibv_alloc_pd");
	IB_SYM(dealloc_pd, "ibv_dealloc_pd");
	IB_SYM(reg_mr, "ibv_reg_mr");
	IB_SYM(dereg_mr, "ibv_dereg_mr");
	IB_SYM(create_cq, "ibv_create_cq");
	IB_SYM(destroy_cq, "ibv_destroy_cq");
	IB_SYM(create_qp, "ibv_create_qp");
	IB_SYM(modify_qp, "ibv_modify_qp");
	IB_SYM(destroy_qp, "ibv_destroy_qp");
	IB_SYM(wc_status_str, "ibv_wc_status_str");
	{
		/* optional: without it, DMA-BUF registrations are unsupported, nothing else */
		void *sym = dlsym(lib, "ibv_reg_dmabuf_mr");
		memcpy(&ib_verbs.reg_dmabuf_mr, &sym, sizeof(sym));
		if (!sym)
			RCMOE_INFO(NCCL_INIT | NCCL_NET,
				   "IB transport: %s has no ibv_reg_dmabuf_mr (rdma-core before "
				   "34): no DMA-BUF registrations",
				   path);
	}
	ib_verbs.lib = lib;
	return RCMOE_OK;

close_lib:
	dlclose(lib);
	memset(&ib_verbs, 0, sizeof(ib_verbs));
	return RCMOE_ERR_UNSUPPORTED;
}

const char *ib_wc_status_str(int status)
{
	static const char *const names[] = {
		[RCMOE_IBV_WC_SUCCESS] = "IBV_WC_SUCCESS",
		[RCMOE_IBV_WC_LOC_LEN_ERR] = "IBV_WC_LOC_LEN_ERR",
		[RCMOE_IBV_WC_LOC_QP_OP_ERR] = "IBV_WC_LOC_QP_OP_ERR",
		[RCMOE_IBV_WC_LOC_PROT_ERR] = "IBV_WC_LOC_PROT_ERR",
		[RCMOE_IBV_WC_WR_FLUSH_ERR] = "IBV_WC_WR_FLUSH_ERR",
		[RCMOE_IBV_WC_LOC_ACCESS_ERR] = "IBV_WC_LOC_ACCESS_ERR",
		[RCMOE_IBV_WC_REM_INV_REQ_ERR] = "IBV_WC_REM_INV_REQ_ERR",
		[RCMOE_IBV_WC_REM_ACCESS_ERR] = "IBV_WC_REM_ACCESS_ERR",
		[RCMOE_IBV_WC_REM_OP_ERR] = "IBV_WC_REM_OP_ERR",
		[RCMOE_IBV_WC_RETRY_EXC_ERR] = "IBV_WC_RETRY_EXC_ERR",
		[RCMOE_IBV_WC_RNR_RETRY_EXC_ERR] = "IBV_WC_RNR_RETRY_EXC_ERR",
		[RCMOE_IBV_WC_GENERAL_ERR] = "IBV_WC_GENERAL_ERR",
	};
	if (status >= 0 && status < (int)(sizeof(names) / sizeof(names[0])) && names[status])
		return names[status];
	return "IBV_WC_(other)";
}
