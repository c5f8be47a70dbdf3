/* SPDX-License-Identifier: Apache-2.0 */
/* Socket transport: which interface it listens on, IPv6, and the open-files limit it raises. */
#include <criterion/criterion.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sock_test.h"
#include "test_log.h"
#include "transport/socket/socket.h"

TestSuite(socket_iface, .init = test_log_init, .timeout = 60);

/* RCMOE_SOCKET_IFNAME unset (an empty value counts as unset), so NCCL_SOCKET_IFNAME decides. */
static const char *const no_rcmoe_ifname[] = { "RCMOE_SOCKET_IFNAME=", NULL };

static void expect_device(const char *name)
{
	struct rcmoe_device_info info;
	cr_assert_eq(OPS->device_info(0, &info), RCMOE_OK);
	cr_assert_str_eq(info.name, name, "listening on %s, expected %s", info.name, name);
}

Test(socket_iface, nccl_ifname_exact)
{
	setenv("NCCL_SOCKET_IFNAME", "=lo", 1);
	st_init(no_rcmoe_ifname);
	expect_device("lo");
}

Test(socket_iface, nccl_ifname_prefix_first_entry)
{
	setenv("NCCL_SOCKET_IFNAME", "l,eth", 1);
	st_init(no_rcmoe_ifname);
	expect_device("lo");
}

Test(socket_iface, nccl_ifname_exclusions_leave_loopback)
{
	/* Exclude every interface but lo: automatic selection falls back to lo. */
	char list[1024] = "^";
	struct ifaddrs *ifs, *ifa;
	cr_assert_eq(getifaddrs(&ifs), 0);
	for (ifa = ifs; ifa; ifa = ifa->ifa_next) {
		if (strcmp(ifa->ifa_name, "lo") == 0 || strstr(list, ifa->ifa_name))
			continue;
		size_t n = strlen(list);
		snprintf(list + n, sizeof(list) - n, "%s%s", n > 1 ? "," : "", ifa->ifa_name);
	}
	freeifaddrs(ifs);
	if (strlen(list) == 1)
		snprintf(list, sizeof(list), "^nothing");
	setenv("NCCL_SOCKET_IFNAME", list, 1);
	st_init(no_rcmoe_ifname);
	expect_device("lo");
}

Test(socket_iface, nccl_ifname_unknown_is_a_usage_error)
{
	setenv("NCCL_SOCKET_IFNAME", "=nosuch0", 1);
	cr_assert_eq(st_try_init(no_rcmoe_ifname), RCMOE_ERR_USAGE);
	cr_assert_geq(test_log_warn_count(), 1);
}

Test(socket_iface, ipv6_loopback)
{
	st_init(NULL);
	struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	int probe = socket(AF_INET6, SOCK_STREAM, 0);
	if (probe < 0 || bind(probe, (struct sockaddr *)&a, sizeof(a)) != 0)
		cr_skip_test("no IPv6 loopback on this machine");
	close(probe);
	/* Listen on ::1 instead of the address init picked on lo. */
	memset(&sock_global.addr, 0, sizeof(sock_global.addr));
	sock_global.addr.in6 = a;
	struct st_pair p;
	st_pair_open(&p);
	struct sock_handle h;
	cr_assert_eq(sock_handle_decode(p.handle, &h), RCMOE_OK);
	cr_assert_eq(h.addr.sa.sa_family, AF_INET6);
	st_exchange(&p, 100, 100, 1);
	st_exchange(&p, 3 << 20, 3 << 20, 2);
	st_pair_close(&p);
	cr_assert_eq(test_log_warn_count(), 0);
}

/* ---- the open-files limit (init.c, raise_nofile) ---- */

/* Lower the soft limit to 256 (the hard one stays): returns the hard limit, or skips when it is
 * no higher, where nothing can be shown. */
static rlim_t low_soft_limit(void)
{
	struct rlimit r;
	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &r), 0);
	if (r.rlim_max <= 512)
		cr_skip_test("the hard limit on open files is %llu: no room to raise 256 into",
			     (unsigned long long)r.rlim_max);
	r.rlim_cur = 256;
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &r), 0, "setrlimit: %s", strerror(errno));
	return r.rlim_max;
}

/* A rank with many peers holds 9 sockets per connection by default; at a soft limit of 256, 24
 * connections (with both ends in this process: 432 descriptors) only open because init raised
 * it to the hard limit. */
Test(socket_iface, init_raises_the_open_files_limit)
{
	rlim_t hard = low_soft_limit();
	st_init(NULL);
	struct rlimit r;
	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &r), 0);
	cr_assert_eq(r.rlim_cur, hard, "soft limit %llu after init, hard %llu",
		     (unsigned long long)r.rlim_cur, (unsigned long long)hard);
	struct st_pair p;
	st_pair_open(&p);
	struct rcmoe_tsend *s[24];
	struct rcmoe_trecv *rc[24];
	for (int i = 0; i < 24; i++)
		st_connect_accept(&p, &s[i], &rc[i]);
	for (int i = 0; i < 24; i++) {
		cr_assert_eq(OPS->close_send(s[i]), RCMOE_OK);
		cr_assert_eq(OPS->close_recv(rc[i]), RCMOE_OK);
	}
	st_pair_close(&p);
}

Test(socket_iface, raise_nofile_off_leaves_the_limit)
{
	static const char *const env[] = { "RCMOE_RAISE_NOFILE=off", NULL };
	low_soft_limit();
	st_init(env);
	struct rlimit r;
	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &r), 0);
	cr_assert_eq(r.rlim_cur, 256, "soft limit %llu with RCMOE_RAISE_NOFILE=off",
		     (unsigned long long)r.rlim_cur);
}
