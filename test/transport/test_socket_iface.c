/* SPDX-License-Identifier: Apache-2.0 */
/* Socket transport: which interface it listens on, and IPv6. */
#include <criterion/criterion.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
