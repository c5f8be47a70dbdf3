/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The socket transport's protocol, byte by byte: the listen handle, the hello every socket sends
 * first, and the per-message header on the control socket. Integers are big-endian on the wire, so
 * two builds on different hosts agree; each format starts with a magic and carries a version so a
 * stray or foreign peer is refused instead of misread.
 *
 *   handle (44 bytes, inside NCCL's 128-byte handle):
 *     magic u64 | version u32 | family u16 | port u16 | addr 16 B | scope_id u32 | secret u64
 *   hello (40 bytes, first bytes on every socket of a connection):
 *     magic u64 | version u32 | index u16 | count u16 | secret u64 | nonce u64 | min_chunk u32 |
 *     reserved u32
 *     index 0 is the control socket, 1..count the data streams; nonce groups the sockets of one
 *     connect; min_chunk lets the receiver cut messages into the same pieces as the sender.
 *   message header (32 bytes, control socket, one per message):
 *     magic u32 | seq u32 | tag i32 | flags u32 | len u64 | wire_flags u32 | reserved u32
 *     flags are the caller's (RCMOE_MSG_*); wire_flags the transport's own. A message that
 *     would be a single piece (at most the sender's min_chunk, and SOCK_INLINE_MAX) follows its
 *     header on the control socket (SOCK_WIRE_INLINE) instead of going to a data stream: it
 *     loses no parallelism and costs no worker wakeup on either side.
 *   heartbeats (32 bytes, a message header with tag, flags and len 0, seq = the heartbeat's own
 *     number, wire_flags exactly one of the kinds below; they consume no message sequence
 *     number). A stopped process's kernel still acknowledges TCP data and keepalive probes, so
 *     only the peer's own code can show that it runs. Each kind has one direction, and a frame
 *     of a kind in the wrong direction is refused as malformed:
 *     - SOCK_WIRE_PING, receiver -> sender (the control socket's otherwise unused reverse
 *       direction): a receiver that waits for a message and heard nothing for
 *       RCMOE_SOCKET_TIMEOUT / 4 asks, numbered 0, 1, 2, ...
 *     - SOCK_WIRE_PONG, sender -> receiver: the sender's lane 0 answers at once,
 *       whatever its caller does, between two messages (never inside a header or inline
 *       payload), with the newest number it read. An answer only counts for a question asked
 *       in the current wait; a receiver that heard nothing at all for RCMOE_SOCKET_TIMEOUT
 *       while a receive waits fails the connection.
 *     - SOCK_WIRE_BEAT, receiver -> sender, numbered 0, 1, 2, ... on their own: the receiver's
 *       lane 0 says "I run, and bytes of yours wait unread here" every
 *       RCMOE_SOCKET_TIMEOUT / 4 while any socket of the connection holds unread bytes,
 *       whether or not NCCL's proxy posts receives. A sender whose outstanding send made no
 *       progress (bytes taken by its kernel) and heard nothing from its receiver (beat or
 *       ping) for RCMOE_SOCKET_TIMEOUT fails the connection; a receiver that is merely late
 *       keeps beating, and the send waits as long as it takes. The sender does not ask: its
 *       question would queue behind the very bytes that the receiver is not reading.
 *     The sender's lane 0 reads the reverse direction at all times, so what the
 *     receiver sends never piles up; nothing goes the other way unasked, so an idle
 *     connection whose receiver reads nothing accumulates nothing unread. (Version 1 had no
 *     heartbeats, version 2 pings and answers of one kind and no beats.)
 */
#ifndef RCMOE_SOCKET_PROTO_H
#define RCMOE_SOCKET_PROTO_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "rcmoe/status.h"

#define SOCK_PROTO_VERSION 3u
#define SOCK_HANDLE_MAGIC  0x72636d6f65736b68ull /* "rcmoeskh" */
#define SOCK_HELLO_MAGIC   0x72636d6f6568656cull /* "rcmoehel" */
#define SOCK_MSG_MAGIC     0x524d5347u           /* "RMSG" */

#define SOCK_HANDLE_SIZE 44
#define SOCK_HELLO_SIZE  40
#define SOCK_HDR_SIZE    32

#define SOCK_WIRE_INLINE     0x1u
#define SOCK_WIRE_PING       0x2u /* heartbeats, see above */
#define SOCK_WIRE_PONG       0x4u
#define SOCK_WIRE_BEAT       0x8u
#define SOCK_WIRE_HEARTBEATS (SOCK_WIRE_PING | SOCK_WIRE_PONG | SOCK_WIRE_BEAT)
#define SOCK_INLINE_MAX      65536u

/* Data streams per connection: params.def allows 1..64. */
#define SOCK_MAX_STREAMS 64
/* Pieces are multiples of this, so both sides cut a message identically and copies stay aligned. */
#define SOCK_PIECE_ALIGN 4096u

union sock_addr {
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
};

struct sock_handle {
	uint32_t version;
	union sock_addr addr; /* with the port */
	uint64_t secret;
};

struct sock_hello {
	uint64_t magic;
	uint32_t version;
	uint16_t index;
	uint16_t count;
	uint64_t secret;
	uint64_t nonce;
	uint32_t min_chunk;
};

struct sock_msg_hdr {
	uint32_t magic;
	uint32_t seq;
	int32_t tag;
	uint32_t flags;
	uint64_t len;
	uint32_t wire_flags;
};

void sock_handle_encode(const struct sock_handle *h, void *buf);
/* RCMOE_ERR_MALFORMED for a wrong magic or an unknown address family; the version is returned
 * as found (the caller decides what to accept). */
rcmoe_status_t sock_handle_decode(const void *buf, struct sock_handle *h);

void sock_hello_encode(const struct sock_hello *h, uint8_t out[SOCK_HELLO_SIZE]);
void sock_hello_decode(const uint8_t in[SOCK_HELLO_SIZE], struct sock_hello *h);

void sock_hdr_encode(const struct sock_msg_hdr *h, uint8_t out[SOCK_HDR_SIZE]);
void sock_hdr_decode(const uint8_t in[SOCK_HDR_SIZE], struct sock_msg_hdr *h);

/* A heartbeat of kind `kind` (SOCK_WIRE_PING, _PONG or _BEAT) numbered `id`. */
void sock_heartbeat_encode(uint32_t kind, uint32_t id, uint8_t out[SOCK_HDR_SIZE]);
/* Whether `h` claims to be a heartbeat (has any SOCK_WIRE_HEARTBEATS flag), and whether it is
 * a well-formed one of a kind in `kinds`: one kind flag and nothing else set but its number. */
bool sock_hdr_is_heartbeat(const struct sock_msg_hdr *h);
bool sock_heartbeat_ok(const struct sock_msg_hdr *h, uint32_t kinds);

/*
 * How a message of `len` bytes is cut: *npieces pieces of *piece bytes (the last one shorter),
 * piece i on data stream (first + i) % nstreams, where `first` continues round-robin from the
 * previous message of the connection. Part of the protocol: both sides must compute the same.
 */
void sock_plan_pieces(size_t len, unsigned nstreams, size_t min_chunk, size_t *piece,
		      unsigned *npieces);

#endif
