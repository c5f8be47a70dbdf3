/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The transport registry: every transport built into the plugin, and the one function that
 * chooses among them (rcmoe_transport_select, called once by the core's setup, ctx.c).
 *
 * Adding a transport: its ops table (include/rcmoe/transport.h) in plugin/transport/<name>/, a
 * line below, and its value in RCMOE_TRANSPORT's list (include/rcmoe/params.def, with the
 * matching RCMOE_TRANSPORT_* index in include/rcmoe/params.h). `auto` tries the lines marked
 * in_auto in order, so the preferred transport goes first.
 */
#include <stddef.h>

#include "rcmoe/log.h"
#include "rcmoe/transport.h"

static const struct {
	int param; /* RCMOE_TRANSPORT_* */
	const struct rcmoe_transport_ops *ops;
	/* Tried by `auto`. The IB transport is not, yet: it has run only against the test verbs
	 * provider (test/ib/fakeverbs/), never on a real HCA, the net side's traffic and the
	 * collective side's (compressed all-reduce) alike, so on a cluster with verbs ports
	 * `auto` would swap a proven path for an untried one (docs/ib-transport.md). */
	int in_auto;
} registry[] = {
	{ RCMOE_TRANSPORT_SOCKET, &rcmoe_socket_ops, 1 },
	{ RCMOE_TRANSPORT_IB, &rcmoe_ib_ops, 0 },
};

rcmoe_status_t rcmoe_transport_select(const struct rcmoe_params *params,
				      const struct rcmoe_transport_ops **out)
{
	const size_t n = sizeof(registry) / sizeof(registry[0]);
	rcmoe_status_t st = RCMOE_ERR_USAGE; /* no transport matches the setting */
	int any = params->transport == RCMOE_TRANSPORT_AUTO;
	*out = NULL;
	for (size_t i = 0; i < n; i++) {
		const struct rcmoe_transport_ops *t = registry[i].ops;
		if (any ? !registry[i].in_auto : params->transport != registry[i].param)
			continue;
		*out = t;
		st = t->init(params);
		if (st == RCMOE_OK) {
			RCMOE_INFO(
				NCCL_INIT | NCCL_NET, "transport %s (RCMOE_TRANSPORT=%s)%s",
				t->name, any ? "auto" : t->name,
				any ? "; RCMOE_TRANSPORT=ib would use InfiniBand/RoCE verbs, which "
				      "auto does not pick until that transport has run on real HCAs"
				    : "");
			return RCMOE_OK;
		}
		if (!any)
			return st;
		/* The transport said why at INFO; the next one `auto` may use, if any. */
		RCMOE_INFO(NCCL_INIT | NCCL_NET,
			   "transport %s did not start (%s): RCMOE_TRANSPORT=auto tries the next",
			   t->name, rcmoe_status_str(st));
	}
	return st;
}
