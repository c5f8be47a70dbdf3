/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Which interface and address the socket transport listens on:
 *  1. RCMOE_SOCKET_IFNAME if set: that interface (an exact name, else the first one whose name
 *     starts with it);
 *  2. else NCCL_SOCKET_IFNAME's first entry, with NCCL's syntax: "=name" exact, "name" prefix,
 *     "^a,b" meaning "any interface except these prefixes" (then rule 3 with exclusions);
 *  3. else the first interface that is up, not loopback and has an IPv4 address (docker and
 *     libvirt bridges skipped, as NCCL does);
 *  4. else lo, 127.0.0.1.
 * On a named interface IPv4 is preferred, then a global IPv6 address, then a link-local one.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rcmoe/log.h"
#include "transport/socket/socket.h"

struct if_filter {
	const char *name; /* wanted name, or NULL for automatic selection */
	bool exact;
	char exclude[256]; /* "a,b": prefixes excluded in automatic selection */
};

static bool has_prefix_in_list(const char *name, const char *list)
{
	const char *p = list;
	while (*p) {
		const char *comma = strchr(p, ',');
		size_t n = comma ? (size_t)(comma - p) : strlen(p);
		if (n > 0 && strncmp(name, p, n) == 0)
			return true;
		if (!comma)
			break;
		p = comma + 1;
	}
	return false;
}

/* Rank of an address for a named interface: lower is better, -1 unusable. */
static int addr_rank(const struct sockaddr *sa)
{
	if (!sa)
		return -1;
	if (sa->sa_family == AF_INET)
		return 0;
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		return IN6_IS_ADDR_LINKLOCAL(a) ? 2 : 1;
	}
	return -1;
}

static void copy_addr(union sock_addr *out, const struct ifaddrs *ifa)
{
	memset(out, 0, sizeof(*out));
	if (ifa->ifa_addr->sa_family == AF_INET6) {
		out->in6 = *(const struct sockaddr_in6 *)ifa->ifa_addr;
		if (IN6_IS_ADDR_LINKLOCAL(&out->in6.sin6_addr) && !out->in6.sin6_scope_id)
			out->in6.sin6_scope_id = if_nametoindex(ifa->ifa_name);
		out->in6.sin6_port = 0;
	} else {
		out->in = *(const struct sockaddr_in *)ifa->ifa_addr;
		out->in.sin_port = 0;
	}
}

/* Best address of the interface matching f->name (exact match beats a prefix match). */
static const struct ifaddrs *find_named(const struct ifaddrs *list, const struct if_filter *f)
{
	const struct ifaddrs *best = NULL;
	int best_score = 1 << 30;
	size_t n = strlen(f->name);
	for (const struct ifaddrs *ifa = list; ifa; ifa = ifa->ifa_next) {
		int rank = addr_rank(ifa->ifa_addr);
		if (rank < 0 || !(ifa->ifa_flags & IFF_UP))
			continue;
		bool exact = strcmp(ifa->ifa_name, f->name) == 0;
		if (!exact && (f->exact || strncmp(ifa->ifa_name, f->name, n) != 0))
			continue;
		int score = (exact ? 0 : 10) + rank;
		if (score < best_score) {
			best = ifa;
			best_score = score;
		}
	}
	return best;
}

static const struct ifaddrs *find_auto(const struct ifaddrs *list, const struct if_filter *f)
{
	for (const struct ifaddrs *ifa = list; ifa; ifa = ifa->ifa_next) {
		if (!ifa->ifa_addr || ifa->ifa_addr->sa_family != AF_INET)
			continue;
		if (!(ifa->ifa_flags & IFF_UP) || (ifa->ifa_flags & IFF_LOOPBACK))
			continue;
		if (has_prefix_in_list(ifa->ifa_name, "docker,virbr"))
			continue;
		if (f->exclude[0] && has_prefix_in_list(ifa->ifa_name, f->exclude))
			continue;
		return ifa;
	}
	return NULL;
}

/* Turn RCMOE_SOCKET_IFNAME / NCCL_SOCKET_IFNAME into a filter; `buf` holds the name. */
static void make_filter(const struct rcmoe_params *params, char *buf, size_t size,
			struct if_filter *f)
{
	memset(f, 0, sizeof(*f));
	if (params->socket_ifname[0]) {
		snprintf(buf, size, "%s", params->socket_ifname);
		f->name = buf;
		return;
	}
	const char *env = getenv("NCCL_SOCKET_IFNAME");
	if (!env || !*env)
		return;
	if (env[0] == '^') {
		snprintf(f->exclude, sizeof(f->exclude), "%s", env + 1);
		return;
	}
	if (env[0] == '=') {
		f->exact = true;
		env++;
	}
	size_t n = strcspn(env, ",");
	if (n == 0)
		return;
	snprintf(buf, size, "%.*s", (int)n, env);
	f->name = buf;
}

rcmoe_status_t sock_pick_interface(const struct rcmoe_params *params, char *ifname, size_t ifsize,
				   union sock_addr *addr)
{
	char wanted[256];
	struct if_filter f;
	struct ifaddrs *list;
	make_filter(params, wanted, sizeof(wanted), &f);

	if (getifaddrs(&list) != 0) {
		int err = errno;
		RCMOE_WARN("getifaddrs failed: %s", strerror(err));
		return RCMOE_ERR_SYSTEM;
	}
	const struct ifaddrs *ifa = f.name ? find_named(list, &f) : find_auto(list, &f);
	if (!ifa && f.name) {
		RCMOE_WARN("socket transport: no interface named %s%s is up with an IP address "
			   "(from %s)",
			   f.name, f.exact ? "" : "*",
			   params->socket_ifname[0] ? "RCMOE_SOCKET_IFNAME" : "NCCL_SOCKET_IFNAME");
		freeifaddrs(list);
		return RCMOE_ERR_USAGE;
	}
	if (ifa) {
		snprintf(ifname, ifsize, "%s", ifa->ifa_name);
		copy_addr(addr, ifa);
	} else {
		/* Rule 4: nothing else is up; loopback still lets processes of one host talk. */
		snprintf(ifname, ifsize, "lo");
		memset(addr, 0, sizeof(*addr));
		addr->in.sin_family = AF_INET;
		addr->in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	}
	freeifaddrs(list);
	return RCMOE_OK;
}
