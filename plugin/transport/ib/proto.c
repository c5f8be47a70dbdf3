/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The IB transport's side-channel formats (ib.h), big-endian. The handle has the socket
 * transport's layout (docs/socket-protocol.md: address, port, secret) under a magic of its own,
 * so it is encoded by the socket transport's code with the magic swapped: a socket handle can
 * never be taken for an IB one, nor the other way round.
 */
#include <endian.h>
#include <string.h>

#include "transport/ib/ib.h"

static void put64(uint8_t *p, uint64_t v)
{
	v = htobe64(v);
	memcpy(p, &v, sizeof(v));
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof(v));
	return be64toh(v);
}

static void put32(uint8_t *p, uint32_t v)
{
	v = htobe32(v);
	memcpy(p, &v, sizeof(v));
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof(v));
	return be32toh(v);
}

_Static_assert(IB_HANDLE_SIZE == SOCK_HANDLE_SIZE, "the IB handle reuses the socket layout");
_Static_assert(IB_HANDLE_SIZE <= RCMOE_TRANSPORT_HANDLE_SIZE, "the IB handle fits NCCL's");

void ib_handle_encode(const struct ib_handle *h, void *buf)
{
	struct sock_handle s = { .version = h->version, .addr = h->addr, .secret = h->secret };
	sock_handle_encode(&s, buf);
	put64(buf, IB_HANDLE_MAGIC);
}

rcmoe_status_t ib_handle_decode(const void *buf, struct ib_handle *h)
{
	uint8_t copy[IB_HANDLE_SIZE];
	struct sock_handle s;
	memset(h, 0, sizeof(*h));
	if (get64(buf) != IB_HANDLE_MAGIC)
		return RCMOE_ERR_MALFORMED;
	memcpy(copy, buf, sizeof(copy));
	put64(copy, SOCK_HANDLE_MAGIC);
	RCMOE_CHECK(sock_handle_decode(copy, &s));
	h->version = s.version;
	h->addr = s.addr;
	h->secret = s.secret;
	return RCMOE_OK;
}

void ib_hello_encode(const struct ib_hello *h, uint8_t out[IB_HELLO_SIZE])
{
	memset(out, 0, IB_HELLO_SIZE);
	put64(out, h->magic);
	put32(out + 8, h->version);
	put32(out + 12, h->nqps);
	put64(out + 16, h->secret);
	memcpy(out + 24, h->gid.raw, 16);
	out[40] = (uint8_t)(h->lid >> 8);
	out[41] = (uint8_t)h->lid;
	out[42] = h->mtu;
	put32(out + 44, h->fifo_rkey);
	put64(out + 48, h->fifo_addr);
	for (int i = 0; i < IB_MAX_QPS; i++)
		put32(out + 56 + 4 * i, h->qpn[i]);
}

void ib_hello_decode(const uint8_t in[IB_HELLO_SIZE], struct ib_hello *h)
{
	memset(h, 0, sizeof(*h));
	h->magic = get64(in);
	h->version = get32(in + 8);
	h->nqps = get32(in + 12);
	h->secret = get64(in + 16);
	memcpy(h->gid.raw, in + 24, 16);
	h->lid = (uint16_t)((in[40] << 8) | in[41]);
	h->mtu = in[42];
	h->fifo_rkey = get32(in + 44);
	h->fifo_addr = get64(in + 48);
	for (int i = 0; i < IB_MAX_QPS; i++)
		h->qpn[i] = get32(in + 56 + 4 * i);
}
