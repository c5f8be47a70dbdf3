/* SPDX-License-Identifier: Apache-2.0 */
/* Socket transport protocol formats: round trips, byte order, refusals, and the piece plan. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <string.h>

#include "sock_test.h"
#include "test_log.h"

TestSuite(socket_proto, .init = test_log_init, .timeout = 60);

Test(socket_proto, handle_fits_and_round_trips_ipv4)
{
	cr_assert_leq(SOCK_HANDLE_SIZE, RCMOE_TRANSPORT_HANDLE_SIZE);
	struct sock_handle h = { .version = SOCK_PROTO_VERSION, .secret = 0x0123456789abcdefull },
			   d;
	h.addr.in.sin_family = AF_INET;
	h.addr.in.sin_port = htons(40001);
	h.addr.in.sin_addr.s_addr = htonl(0x0a000102);
	uint8_t buf[RCMOE_TRANSPORT_HANDLE_SIZE];
	sock_handle_encode(&h, buf);
	cr_assert_eq(sock_handle_decode(buf, &d), RCMOE_OK);
	cr_assert_eq(d.version, SOCK_PROTO_VERSION);
	cr_assert_eq(d.secret, h.secret);
	cr_assert_eq(d.addr.in.sin_family, AF_INET);
	cr_assert_eq(ntohs(d.addr.in.sin_port), 40001);
	cr_assert_eq(ntohl(d.addr.in.sin_addr.s_addr), 0x0a000102u);
	/* Big-endian on the wire: the magic reads as text. */
	cr_assert_eq(memcmp(buf, "rcmoeskh", 8), 0);
}

Test(socket_proto, handle_round_trips_ipv6_with_scope)
{
	struct sock_handle h = { .version = SOCK_PROTO_VERSION, .secret = 7 }, d;
	h.addr.in6.sin6_family = AF_INET6;
	h.addr.in6.sin6_port = htons(5);
	inet_pton(AF_INET6, "fe80::1:2", &h.addr.in6.sin6_addr);
	h.addr.in6.sin6_scope_id = 3;
	uint8_t buf[RCMOE_TRANSPORT_HANDLE_SIZE];
	sock_handle_encode(&h, buf);
	cr_assert_eq(sock_handle_decode(buf, &d), RCMOE_OK);
	cr_assert_eq(d.addr.in6.sin6_family, AF_INET6);
	cr_assert_eq(ntohs(d.addr.in6.sin6_port), 5);
	cr_assert_eq(d.addr.in6.sin6_scope_id, 3);
	cr_assert_eq(memcmp(&d.addr.in6.sin6_addr, &h.addr.in6.sin6_addr, 16), 0);
}

Test(socket_proto, handle_decode_refuses_foreign_bytes)
{
	struct sock_handle h = { .version = SOCK_PROTO_VERSION }, d;
	h.addr.in.sin_family = AF_INET;
	uint8_t buf[RCMOE_TRANSPORT_HANDLE_SIZE];
	sock_handle_encode(&h, buf);
	buf[0] ^= 1;
	cr_assert_eq(sock_handle_decode(buf, &d), RCMOE_ERR_MALFORMED);
	sock_handle_encode(&h, buf);
	buf[12] = 0x12; /* address family */
	cr_assert_eq(sock_handle_decode(buf, &d), RCMOE_ERR_MALFORMED);
}

Test(socket_proto, hello_and_header_round_trip)
{
	struct sock_hello h = { .magic = SOCK_HELLO_MAGIC,
				.version = 9,
				.index = 63,
				.count = 64,
				.secret = ~0ull,
				.nonce = 0x8000000000000001ull,
				.min_chunk = 1u << 30 },
			  hd;
	uint8_t hw[SOCK_HELLO_SIZE];
	sock_hello_encode(&h, hw);
	sock_hello_decode(hw, &hd);
	cr_assert_eq(hd.magic, h.magic);
	cr_assert_eq(hd.version, 9);
	cr_assert_eq(hd.index, 63);
	cr_assert_eq(hd.count, 64);
	cr_assert_eq(hd.secret, h.secret);
	cr_assert_eq(hd.nonce, h.nonce);
	cr_assert_eq(hd.min_chunk, h.min_chunk);

	struct sock_msg_hdr m = { .magic = SOCK_MSG_MAGIC,
				  .seq = 0xfffffffe,
				  .tag = -3,
				  .flags = RCMOE_MSG_ENCODED,
				  .len = (1ull << 40) + 5,
				  .wire_flags = SOCK_WIRE_INLINE },
			    md;
	uint8_t mw[SOCK_HDR_SIZE];
	sock_hdr_encode(&m, mw);
	sock_hdr_decode(mw, &md);
	cr_assert_eq(memcmp(mw, "RMSG", 4), 0);
	cr_assert_eq(md.magic, m.magic);
	cr_assert_eq(md.seq, m.seq);
	cr_assert_eq(md.tag, -3);
	cr_assert_eq(md.flags, RCMOE_MSG_ENCODED);
	cr_assert_eq(md.len, m.len);
	cr_assert_eq(md.wire_flags, SOCK_WIRE_INLINE);
}

/* Both sides cut messages with this: every byte in exactly one piece, at most one piece per
 * stream, pieces aligned and never below min_chunk. */
Test(socket_proto, piece_plan_covers_each_byte_once)
{
	static const size_t lens[] = {
		1,     2,       4095,    4096,          4097,      65535,    65536,
		65537, 1000000, 1 << 20, (1 << 20) + 1, 123456789, 1u << 28, (1ull << 33) + 3
	};
	static const unsigned streams[] = { 1, 2, 3, 7, 8, 16, 64 };
	static const size_t chunks[] = { 4096, 65536, 100000, 1u << 30 };
	size_t piece;
	unsigned n;
	sock_plan_pieces(0, 8, 65536, &piece, &n);
	cr_assert_eq(n, 0);
	for (size_t a = 0; a < sizeof(lens) / sizeof(lens[0]); a++)
		for (size_t b = 0; b < sizeof(streams) / sizeof(streams[0]); b++)
			for (size_t k = 0; k < sizeof(chunks) / sizeof(chunks[0]); k++) {
				size_t len = lens[a];
				sock_plan_pieces(len, streams[b], chunks[k], &piece, &n);
				cr_assert_geq(n, 1);
				cr_assert_leq(n, streams[b], "%u pieces for %u streams", n,
					      streams[b]);
				cr_assert_eq(piece % SOCK_PIECE_ALIGN, 0);
				cr_assert_geq(piece, chunks[k]);
				cr_assert_lt((size_t)(n - 1) * piece, len);
				cr_assert_geq((size_t)n * piece, len);
			}
}
