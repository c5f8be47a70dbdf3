/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Process-wide setup of the socket transport: the interface to listen on and the one device it
 * makes. The first init's parameters win; later calls return the first call's result.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "rcmoe/log.h"
#include "transport/socket/socket.h"

#define SOCK_DEFAULT_SPEED_MBPS 10000

struct sock_global sock_global;

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
/* pthread_once takes no argument: the routine runs in the calling thread, so that thread's
 * parameters are handed over through a thread-local. */
static _Thread_local const struct rcmoe_params *init_params;
static _Atomic int init_status = -1; /* -1: never initialized */

/* Link speed of `ifname` from sysfs; virtual interfaces (lo) have none. */
static int read_speed(const char *ifname)
{
	char path[128];
	int speed = -1;
	snprintf(path, sizeof(path), "/sys/class/net/%s/speed", ifname);
	FILE *f = fopen(path, "r");
	if (f) {
		if (fscanf(f, "%d", &speed) != 1)
			speed = -1;
		fclose(f);
	}
	return speed > 0 ? speed : SOCK_DEFAULT_SPEED_MBPS;
}

/* FNV-1a over the address bytes: a stable identifier for NCCL to tell NICs apart. */
static uint64_t addr_hash(const union sock_addr *a)
{
	uint64_t h = 0xcbf29ce484222325ull;
	const uint8_t *p;
	size_t n;
	if (a->sa.sa_family == AF_INET6) {
		p = (const uint8_t *)&a->in6.sin6_addr;
		n = sizeof(a->in6.sin6_addr);
	} else {
		p = (const uint8_t *)&a->in.sin_addr;
		n = sizeof(a->in.sin_addr);
	}
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

/* Each connection holds RCMOE_SOCKET_NSTREAMS + 1 sockets, so a rank with P peers needs about
 * 2 (NSTREAMS + 1) P descriptors (a send and a receive connection per peer): with 63 peers more
 * than the soft limit of 1024 that many systems set, while the hard limit is usually far higher.
 * So the soft limit goes up to the hard one, as MPI libraries do at startup, unless
 * RCMOE_RAISE_NOFILE=off. It only lets the process open more; nothing else changes. */
static void raise_nofile(const struct rcmoe_params *p)
{
	struct rlimit r;
	if (p->raise_nofile != RCMOE_RAISE_NOFILE_ON || getrlimit(RLIMIT_NOFILE, &r) != 0 ||
	    r.rlim_cur >= r.rlim_max)
		return;
	rlim_t before = r.rlim_cur;
	r.rlim_cur = r.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &r) != 0) {
		RCMOE_INFO(NCCL_INIT | NCCL_NET,
			   "could not raise the open-files limit from %llu to %llu: %s (each "
			   "connection holds %lld sockets)",
			   (unsigned long long)before, (unsigned long long)r.rlim_max,
			   strerror(errno), (long long)p->socket_nstreams + 1);
		return;
	}
	RCMOE_INFO(NCCL_INIT | NCCL_NET,
		   "raised the soft limit on open files from %llu to the hard limit %llu: each "
		   "connection holds %lld sockets (RCMOE_RAISE_NOFILE=off leaves it)",
		   (unsigned long long)before, (unsigned long long)r.rlim_max,
		   (long long)p->socket_nstreams + 1);
}

static void do_init(void)
{
	struct sock_global *g = &sock_global;
	rcmoe_status_t st;
	g->params = *init_params;
	st = sock_pick_interface(&g->params, g->ifname, sizeof(g->ifname), &g->addr);
	if (st == RCMOE_OK) {
		char addr[SOCK_ADDR_STRLEN];
		g->speed_mbps = read_speed(g->ifname);
		g->guid = addr_hash(&g->addr);
		sock_addr_str(&g->addr, addr, sizeof(addr));
		RCMOE_INFO(
			NCCL_INIT | NCCL_NET,
			"socket transport on %s (%s), %lld streams and %lld lanes per connection, "
			"at most %lld worker threads per process",
			g->ifname, addr, (long long)g->params.socket_nstreams,
			(long long)g->params.socket_nthreads, (long long)g->params.socket_workers);
		raise_nofile(&g->params);
		st = sock_pool_init(&g->params);
	}
	atomic_store_explicit(&init_status, (int)st, memory_order_release);
}

rcmoe_status_t sock_init(const struct rcmoe_params *params)
{
	if (!params)
		return RCMOE_ERR_INVALID;
	init_params = params;
	pthread_once(&init_once, do_init);
	init_params = NULL;
	return (rcmoe_status_t)atomic_load_explicit(&init_status, memory_order_acquire);
}

rcmoe_status_t sock_check_init(void)
{
	int st = atomic_load_explicit(&init_status, memory_order_acquire);
	if (st < 0) {
		RCMOE_WARN("socket transport used before init");
		return RCMOE_ERR_INVALID;
	}
	return (rcmoe_status_t)st;
}

rcmoe_status_t sock_device_count(int *ndev)
{
	RCMOE_CHECK(sock_check_init());
	*ndev = 1;
	return RCMOE_OK;
}

rcmoe_status_t sock_device_info(int dev, struct rcmoe_device_info *info)
{
	RCMOE_CHECK(sock_check_init());
	if (dev != 0 || !info)
		return RCMOE_ERR_INVALID;
	memset(info, 0, sizeof(*info));
	snprintf(info->name, sizeof(info->name), "%s", sock_global.ifname);
	info->pci_path[0] = '\0'; /* a virtual NIC: NCCL then does not attempt GPU Direct */
	info->speed_mbps = sock_global.speed_mbps;
	info->latency_us = 0;
	info->guid = sock_global.guid;
	return RCMOE_OK;
}
