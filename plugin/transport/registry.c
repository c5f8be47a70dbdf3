/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The transport registry: every transport built into the plugin, and the one function that
 * chooses among them (rcmoe_transport_select, called once by the core's setup, ctx.c).
 *
 * Adding a transport: its ops table (include/rcmoe/transport.h) in plugin/transport/<name>/, a
 * line below, and its value in RCMOE_TRANSPORT's list (include/rcmoe/params.def, with the
 * matching RCMOE_TRANSPORT_* index in include/rcmoe/params.h). `auto` tries the lines in order,
 * so the preferred transport goes first.
 */
#include <stddef.h>

#include "rcmoe/log.h"
#include "rcmoe/transport.h"

static const struct {
	int param; /* RCMOE_TRANSPORT_* */
	const struct rcmoe_transport_ops *ops;
} registry[] = {
	{ RCMOE_TRANSPORT_SOCKET, &rcmoe_socket_ops },
	/* After sockets: `auto` never reaches it while sockets start, and it is refused below
	 * (needs_posted_dest) until the core posts receive destinations ahead. */
	{ RCMOE_TRANSPORT_IB, &rcmoe_ib_ops },
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
		if (!any && params->transport != registry[i].param)
			continue;
		*out = t;
		if (t->needs_posted_dest) {
			/* The core places each receive once its header arrived (data.c); it does
			 * not post destinations ahead yet. */
			RCMOE_WARN("transport %s needs receive destinations posted before the data "
				   "arrives, which this plugin's core does not do yet",
				   t->name);
			st = RCMOE_ERR_UNSUPPORTED;
		} else {
			st = t->init(params);
		}
		if (st == RCMOE_OK || !any || i + 1 == n)
			return st;
		RCMOE_INFO(NCCL_INIT | NCCL_NET, "transport %s did not start (%s): trying the next",
			   t->name, rcmoe_status_str(st));
	}
	return st;
}
