/* SPDX-License-Identifier: Apache-2.0 */
/* Encoding and decoding of the socket transport's protocol: its byte layouts (proto.h). */
#include <endian.h>
#include <string.h>

#include "transport/socket/proto.h"

static void put16(uint8_t *p, uint16_t v)
{
	v = htobe16(v);
	memcpy(p, &v, sizeof(v));
}

static void put32(uint8_t *p, uint32_t v)
{
	v = htobe32(v);
	memcpy(p, &v, sizeof(v));
}

static void put64(uint8_t *p, uint64_t v)
{
	v = htobe64(v);
	memcpy(p, &v, sizeof(v));
}

static uint16_t get16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, sizeof(v));
	return be16toh(v);
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof(v));
	return be32toh(v);
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof(v));
	return be64toh(v);
}

void sock_handle_encode(const struct sock_handle *h, void *buf)
{
	uint8_t *p = buf;
	memset(p, 0, SOCK_HANDLE_SIZE);
	put64(p, SOCK_HANDLE_MAGIC);
	put32(p + 8, h->version);
	put16(p + 12, (uint16_t)h->addr.sa.sa_family);
	if (h->addr.sa.sa_family == AF_INET6) {
		/* sin6_port is already in network order: keep its bytes as they are. */
		memcpy(p + 14, &h->addr.in6.sin6_port, 2);
		memcpy(p + 16, &h->addr.in6.sin6_addr, 16);
		put32(p + 32, h->addr.in6.sin6_scope_id);
	} else {
		memcpy(p + 14, &h->addr.in.sin_port, 2);
		memcpy(p + 16, &h->addr.in.sin_addr, 4);
	}
	put64(p + 36, h->secret);
}

rcmoe_status_t sock_handle_decode(const void *buf, struct sock_handle *h)
{
	const uint8_t *p = buf;
	memset(h, 0, sizeof(*h));
	if (get64(p) != SOCK_HANDLE_MAGIC)
		return RCMOE_ERR_MALFORMED;
	h->version = get32(p + 8);
	uint16_t family = get16(p + 12);
	if (family == AF_INET6) {
		h->addr.in6.sin6_family = AF_INET6;
		memcpy(&h->addr.in6.sin6_port, p + 14, 2);
		memcpy(&h->addr.in6.sin6_addr, p + 16, 16);
		h->addr.in6.sin6_scope_id = get32(p + 32);
	} else if (family == AF_INET) {
		h->addr.in.sin_family = AF_INET;
		memcpy(&h->addr.in.sin_port, p + 14, 2);
		memcpy(&h->addr.in.sin_addr, p + 16, 4);
	} else {
		return RCMOE_ERR_MALFORMED;
	}
	h->secret = get64(p + 36);
	return RCMOE_OK;
}

void sock_hello_encode(const struct sock_hello *h, uint8_t out[SOCK_HELLO_SIZE])
{
	memset(out, 0, SOCK_HELLO_SIZE);
	put64(out, h->magic);
	put32(out + 8, h->version);
	put16(out + 12, h->index);
	put16(out + 14, h->count);
	put64(out + 16, h->secret);
	put64(out + 24, h->nonce);
	put32(out + 32, h->min_chunk);
}

void sock_hello_decode(const uint8_t in[SOCK_HELLO_SIZE], struct sock_hello *h)
{
	h->magic = get64(in);
	h->version = get32(in + 8);
	h->index = get16(in + 12);
	h->count = get16(in + 14);
	h->secret = get64(in + 16);
	h->nonce = get64(in + 24);
	h->min_chunk = get32(in + 32);
}

void sock_hdr_encode(const struct sock_msg_hdr *h, uint8_t out[SOCK_HDR_SIZE])
{
	put32(out, h->magic);
	put32(out + 4, h->seq);
	put32(out + 8, (uint32_t)h->tag);
	put32(out + 12, h->flags);
	put64(out + 16, h->len);
	put32(out + 24, h->wire_flags);
	put32(out + 28, 0);
}

void sock_hdr_decode(const uint8_t in[SOCK_HDR_SIZE], struct sock_msg_hdr *h)
{
	h->magic = get32(in);
	h->seq = get32(in + 4);
	h->tag = (int32_t)get32(in + 8);
	h->flags = get32(in + 12);
	h->len = get64(in + 16);
	h->wire_flags = get32(in + 24);
}

void sock_heartbeat_encode(uint32_t kind, uint32_t id, uint8_t out[SOCK_HDR_SIZE])
{
	struct sock_msg_hdr h = { .magic = SOCK_MSG_MAGIC, .seq = id, .wire_flags = kind };
	sock_hdr_encode(&h, out);
}

bool sock_hdr_is_heartbeat(const struct sock_msg_hdr *h)
{
	return (h->wire_flags & SOCK_WIRE_HEARTBEATS) != 0;
}

bool sock_heartbeat_ok(const struct sock_msg_hdr *h, uint32_t kinds)
{
	uint32_t k = h->wire_flags;
	/* exactly one flag, and one of `kinds` */
	return h->magic == SOCK_MSG_MAGIC && k && (k & (k - 1)) == 0 &&
	       (k & kinds & SOCK_WIRE_HEARTBEATS) && h->tag == 0 && h->flags == 0 && h->len == 0;
}

void sock_plan_pieces(size_t len, unsigned nstreams, size_t min_chunk, size_t *piece,
		      unsigned *npieces)
{
	if (len == 0) {
		*piece = 0;
		*npieces = 0;
		return;
	}
	/* One piece per stream for large messages (so every stream works on it), never smaller
	 * than min_chunk (so small messages do not pay one wakeup per stream). */
	size_t p = len / nstreams + (len % nstreams != 0);
	if (p < min_chunk)
		p = min_chunk;
	p = (p + SOCK_PIECE_ALIGN - 1) / SOCK_PIECE_ALIGN * SOCK_PIECE_ALIGN;
	*piece = p;
	*npieces = (unsigned)(len / p + (len % p != 0));
}
