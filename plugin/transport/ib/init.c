/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Process-wide setup of the IB transport: load libibverbs, find every active port of every HCA
 * that RCMOE_IB_HCA selects (each one device), pick each port's GID (RCMOE_IB_GID_INDEX) and
 * the side channel's address (the socket transport's interface rules). The first init's
 * parameters win; later calls return the first call's result.
 */
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rcmoe/log.h"
#include "transport/ib/ib.h"

#define IB_MAX_PORTS 16 /* ports probed per HCA: query_port fails past the last one */

struct ib_global ib_global;

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static _Thread_local const struct rcmoe_params *init_params;
static _Atomic int init_status = -1; /* -1: never initialized */

/* One entry of an NCCL_IB_HCA-style list: `name[:port]`, matched as a prefix unless `exact`. */
static bool entry_matches(const char *entry, size_t len, bool exact, const char *name, int port)
{
	const char *colon = memchr(entry, ':', len);
	size_t nlen = colon ? (size_t)(colon - entry) : len;
	if (exact ? (strlen(name) != nlen || strncmp(name, entry, nlen) != 0)
		  : strncmp(name, entry, nlen) != 0)
		return false;
	return !colon || atoi(colon + 1) == port;
}

bool ib_hca_selected(const char *filter, const char *name, int port)
{
	bool exclude = false, exact = false;
	if (!filter || !*filter)
		return true;
	if (*filter == '^') {
		exclude = true;
		filter++;
	}
	if (*filter == '=') {
		exact = true;
		filter++;
	}
	for (const char *p = filter; *p;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		if (len && entry_matches(p, len, exact, name, port))
			return !exclude;
		if (!comma)
			break;
		p = comma + 1;
	}
	return exclude;
}

/* Link speed from the port's width and speed codes (IB spec encodings), in Mb/s per lane
 * times lanes; unknown codes count as one lane of EDR. */
static int port_speed_mbps(const struct rcmoe_ibv_port_attr *a)
{
	int lanes = a->active_width == 1    ? 1
		    : a->active_width == 2  ? 4
		    : a->active_width == 4  ? 8
		    : a->active_width == 8  ? 12
		    : a->active_width == 16 ? 2
					    : 1;
	int lane = a->active_speed == 1                           ? 2500
		   : a->active_speed == 2                         ? 5000
		   : a->active_speed == 4 || a->active_speed == 8 ? 10000
		   : a->active_speed == 16                        ? 14000
		   : a->active_speed == 32                        ? 25000
		   : a->active_speed == 64                        ? 50000
		   : a->active_speed == 128                       ? 100000
								  : 25000;
	return lanes * lane;
}

/* An IPv4-mapped GID (::ffff:a.b.c.d) is the RoCE v2 GID of an IPv4 address. */
static bool gid_is_v4_mapped(const union rcmoe_ibv_gid *g)
{
	static const uint8_t prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	return memcmp(g->raw, prefix, sizeof(prefix)) == 0;
}

static bool gid_is_zero(const union rcmoe_ibv_gid *g)
{
	static const uint8_t zero[16];
	return memcmp(g->raw, zero, sizeof(zero)) == 0;
}

/* The GID of a port: RCMOE_IB_GID_INDEX when set; else, on Ethernet (RoCE), the first
 * IPv4-mapped one, else index 0; on InfiniBand index 0. */
static rcmoe_status_t pick_gid(struct ib_dev *d, const struct rcmoe_ibv_port_attr *a)
{
	int want = (int)ib_global.params.ib_gid_index;
	if (want >= 0 || d->link_layer != RCMOE_IBV_LINK_LAYER_ETHERNET) {
		d->gid_index = want >= 0 ? want : 0;
		if (ib_verbs.query_gid(d->hca->ctx, d->port, d->gid_index, &d->gid) != 0) {
			RCMOE_WARN("IB transport: %s port %d has no GID %d (RCMOE_IB_GID_INDEX)",
				   d->hca->name, d->port, d->gid_index);
			return RCMOE_ERR_USAGE;
		}
		return RCMOE_OK;
	}
	d->gid_index = -1;
	for (int i = 0; i < a->gid_tbl_len && i < 256; i++) {
		union rcmoe_ibv_gid g;
		if (ib_verbs.query_gid(d->hca->ctx, d->port, i, &g) != 0 || gid_is_zero(&g))
			continue;
		if (d->gid_index < 0 || (gid_is_v4_mapped(&g) && !gid_is_v4_mapped(&d->gid))) {
			d->gid_index = i;
			d->gid = g;
		}
		if (gid_is_v4_mapped(&g))
			break;
	}
	if (d->gid_index < 0) {
		RCMOE_INFO(NCCL_INIT | NCCL_NET, "IB transport: %s port %d has no usable GID",
			   d->hca->name, d->port);
		return RCMOE_ERR_UNSUPPORTED;
	}
	return RCMOE_OK;
}

static void pci_path_of(const char *hca, char *out, size_t size)
{
	char link[256];
	char real[PATH_MAX];
	out[0] = '\0';
	snprintf(link, sizeof(link), "/sys/class/infiniband/%s/device", hca);
	if (realpath(link, real) && strlen(real) < size)
		snprintf(out, size, "%s", real);
}

/* Open one HCA and add its active, selected ports. */
static rcmoe_status_t add_hca(struct rcmoe_ibv_device *device)
{
	struct ib_global *g = &ib_global;
	const char *name = ib_verbs.get_device_name(device);
	struct ib_hca *h = &g->hca[g->nhca];
	int before = g->ndev;
	if (!name || g->nhca == IB_MAX_DEVS)
		return RCMOE_OK;
	snprintf(h->name, sizeof(h->name), "%s", name);
	h->ctx = ib_verbs.open_device(device);
	if (!h->ctx) {
		RCMOE_INFO(NCCL_INIT | NCCL_NET, "IB transport: cannot open %s", name);
		return RCMOE_OK;
	}
	for (int port = 1; port <= IB_MAX_PORTS && g->ndev < IB_MAX_DEVS; port++) {
		struct rcmoe_ibv_port_attr a;
		memset(&a, 0, sizeof(a));
		if (ib_verbs.query_port(h->ctx, (uint8_t)port, &a) != 0)
			break;
		if (a.state != RCMOE_IBV_PORT_ACTIVE ||
		    !ib_hca_selected(g->params.ib_hca, name, port))
			continue;
		struct ib_dev *d = &g->dev[g->ndev];
		memset(d, 0, sizeof(*d));
		d->hca = h;
		d->port = (uint8_t)port;
		d->lid = a.lid;
		d->link_layer = a.link_layer;
		d->mtu = a.active_mtu;
		d->speed_mbps = port_speed_mbps(&a);
		pci_path_of(name, d->pci_path, sizeof(d->pci_path));
		rcmoe_status_t st = pick_gid(d, &a);
		if (st == RCMOE_ERR_UNSUPPORTED)
			continue;
		RCMOE_CHECK(st);
		g->ndev++;
	}
	if (g->ndev == before) {
		ib_verbs.close_device(h->ctx);
		return RCMOE_OK;
	}
	h->pd = ib_verbs.alloc_pd(h->ctx);
	if (!h->pd) {
		RCMOE_WARN("IB transport: cannot allocate a protection domain on %s", name);
		g->ndev = before;
		ib_verbs.close_device(h->ctx);
		return RCMOE_ERR_SYSTEM;
	}
	rcmoe_status_t st = ib_mr_cache_init(h);
	if (st != RCMOE_OK) {
		g->ndev = before;
		ib_verbs.dealloc_pd(h->pd);
		ib_verbs.close_device(h->ctx);
		return st;
	}
	g->nhca++;
	return RCMOE_OK;
}

static rcmoe_status_t find_ports(void)
{
	struct ib_global *g = &ib_global;
	rcmoe_status_t st = RCMOE_OK;
	int n = 0;
	struct rcmoe_ibv_device **list = ib_verbs.get_device_list(&n);
	if (!list) {
		RCMOE_INFO(NCCL_INIT | NCCL_NET, "IB transport: no verbs devices");
		return RCMOE_ERR_UNSUPPORTED;
	}
	for (int i = 0; i < n && st == RCMOE_OK; i++)
		st = add_hca(list[i]);
	ib_verbs.free_device_list(list);
	RCMOE_CHECK(st);
	if (g->ndev == 0) {
		RCMOE_INFO(NCCL_INIT | NCCL_NET, "IB transport: no active port%s%s",
			   *g->params.ib_hca ? " in RCMOE_IB_HCA=" : "", g->params.ib_hca);
		return RCMOE_ERR_UNSUPPORTED;
	}
	return RCMOE_OK;
}

static void do_init(void)
{
	struct ib_global *g = &ib_global;
	char ifname[64];
	char addr[SOCK_ADDR_STRLEN];
	rcmoe_status_t st;
	g->params = *init_params;
	st = ib_verbs_load(g->params.ib_library);
	if (st == RCMOE_OK)
		st = find_ports();
	if (st == RCMOE_OK)
		st = sock_pick_interface(&g->params, ifname, sizeof(ifname), &g->side_addr);
	if (st == RCMOE_OK) {
		sock_addr_str(&g->side_addr, addr, sizeof(addr));
		for (int i = 0; i < g->ndev; i++) {
			const struct ib_dev *d = &g->dev[i];
			RCMOE_INFO(NCCL_INIT | NCCL_NET,
				   "IB transport device %d: %s port %d (%s, GID index %d, %d "
				   "Mb/s%s%s)",
				   i, d->hca->name, d->port,
				   d->link_layer == RCMOE_IBV_LINK_LAYER_ETHERNET ? "RoCE" : "IB",
				   d->gid_index, d->speed_mbps, *d->pci_path ? ", " : "",
				   d->pci_path);
		}
		RCMOE_INFO(NCCL_INIT | NCCL_NET,
			   "IB transport: %d port(s) from %s, %lld QPs per connection, side "
			   "channel on %s (%s)",
			   g->ndev, g->params.ib_library, (long long)g->params.ib_qps_per_conn,
			   ifname, addr);
	}
	atomic_store_explicit(&init_status, (int)st, memory_order_release);
}

rcmoe_status_t ib_init(const struct rcmoe_params *params)
{
	if (!params)
		return RCMOE_ERR_INVALID;
	init_params = params;
	pthread_once(&init_once, do_init);
	init_params = NULL;
	return (rcmoe_status_t)atomic_load_explicit(&init_status, memory_order_acquire);
}

rcmoe_status_t ib_check_init(void)
{
	int st = atomic_load_explicit(&init_status, memory_order_acquire);
	if (st < 0) {
		RCMOE_WARN("IB transport used before init");
		return RCMOE_ERR_INVALID;
	}
	return (rcmoe_status_t)st;
}

rcmoe_status_t ib_device_count(int *ndev)
{
	RCMOE_CHECK(ib_check_init());
	if (!ndev)
		return RCMOE_ERR_INVALID;
	*ndev = ib_global.ndev;
	return RCMOE_OK;
}

rcmoe_status_t ib_device_info(int dev, struct rcmoe_device_info *info)
{
	RCMOE_CHECK(ib_check_init());
	if (dev < 0 || dev >= ib_global.ndev || !info)
		return RCMOE_ERR_INVALID;
	const struct ib_dev *d = &ib_global.dev[dev];
	uint64_t guid;
	memset(info, 0, sizeof(*info));
	snprintf(info->name, sizeof(info->name), "%.56s:%d", d->hca->name, d->port);
	snprintf(info->pci_path, sizeof(info->pci_path), "%s", d->pci_path);
	info->speed_mbps = d->speed_mbps;
	info->latency_us = 0;
	/* The GID's interface id (the port's GUID on InfiniBand) tells NICs apart. */
	memcpy(&guid, d->gid.raw + 8, sizeof(guid));
	info->guid = guid ^ (uint64_t)d->port;
	return RCMOE_OK;
}
