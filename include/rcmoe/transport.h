/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The transport interface: what the version-neutral core (plugin/core*.c) needs from a way of
 * moving bytes between two processes. Transports see host memory only; the core stages GPU
 * buffers and runs the codecs. Each transport fills one `struct rcmoe_transport_ops`; the core
 * picks one in one place (plugin/transport_select.c) from RCMOE_TRANSPORT.
 *
 * Contracts (NCCL's, passed through):
 *  - listen/connect/accept never block: connect and accept return RCMOE_OK with *out == NULL to
 *    be called again later.
 *  - Messages on one send comm arrive in order at the matching recv comm (FIFO matching).
 *  - At most RCMOE_TRANSPORT_MAX_REQUESTS requests are in flight per comm; isend/irecv return
 *    RCMOE_OK with *req == NULL when all are taken (the caller retries).
 *  - test never blocks. A request that reported done (or an error) is released by that test call.
 *  - A peer that presents a wrong secret or protocol version, or sends a malformed or oversized
 *    header, gets its connection closed with a WARN and nothing is written to a posted buffer.
 *  - A peer that dies, or whose process stops responding, makes test return an error within
 *    about RCMOE_SOCKET_TIMEOUT seconds while a transfer waits on it, naming the peer and what
 *    happened; a peer that is merely slow to send or late to receive is never failed.
 */
#ifndef RCMOE_TRANSPORT_H
#define RCMOE_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>
#include "rcmoe/status.h"
#include "rcmoe/params.h"

#define RCMOE_TRANSPORT_MAX_REQUESTS 32
/* Bytes of the NCCL handle a transport may use (NCCL_NET_HANDLE_MAXSIZE is 128). */
#define RCMOE_TRANSPORT_HANDLE_SIZE 120

/* Per-message flags carried next to the payload (the receiver learns them before placing it). */
#define RCMOE_MSG_ENCODED 0x1u /* the payload is a codec stream (rcmoe/codec.h), not raw bytes */

struct rcmoe_device_info {
	char name[64];      /* e.g. "eth0" */
	char pci_path[256]; /* empty: a virtual NIC */
	int speed_mbps;
	float latency_us;
	uint64_t guid;
};

struct rcmoe_tlisten; /* opaque per transport */
struct rcmoe_tsend;
struct rcmoe_trecv;
struct rcmoe_treq;

/*
 * Where a received message goes. Called by the transport, from test, once it knows the wire
 * length and flags of the next message, before any payload byte is written. Returns the host
 * destination (at least `wire_len` bytes) in *dest, or an error: then the request fails and
 * nothing is written.
 */
typedef rcmoe_status_t (*rcmoe_place_fn)(void *arg, size_t wire_len, uint32_t flags, void **dest);

struct rcmoe_transport_ops {
	const char *name;
	/* Process-wide setup, called once (thread-safe, idempotent). */
	rcmoe_status_t (*init)(const struct rcmoe_params *params);
	rcmoe_status_t (*device_count)(int *ndev);
	rcmoe_status_t (*device_info)(int dev, struct rcmoe_device_info *info);

	/* Writes at most RCMOE_TRANSPORT_HANDLE_SIZE bytes to `handle`. */
	rcmoe_status_t (*listen)(int dev, void *handle, struct rcmoe_tlisten **out);
	rcmoe_status_t (*connect)(int dev, const void *handle, struct rcmoe_tsend **out);
	rcmoe_status_t (*accept)(struct rcmoe_tlisten *listen, struct rcmoe_trecv **out);

	/* Send `len` bytes (0 allowed) from host memory `buf` with `tag` and `flags`. The buffer
	 * must stay untouched until test reports done. */
	rcmoe_status_t (*isend)(struct rcmoe_tsend *comm, const void *buf, size_t len, int tag,
				uint32_t flags, struct rcmoe_treq **req);
	/* Receive the next message, at most `max_len` bytes, with `tag`. Where it goes is asked of
	 * `place` when its header arrives. A longer message or another tag is an error. */
	rcmoe_status_t (*irecv)(struct rcmoe_trecv *comm, size_t max_len, int tag,
				rcmoe_place_fn place, void *place_arg, struct rcmoe_treq **req);
	/* *len and *flags are set when done (the received wire length and flags; for sends the
	 * sent length). */
	rcmoe_status_t (*test)(struct rcmoe_treq *req, int *done, size_t *len, uint32_t *flags);

	/* Stop a healthy comm because the caller failed it (a message it cannot accept): no more
	 * bytes move, the peer sees the connection close, and test reports every request that
	 * was in flight as failed with `why` once no transport thread can touch its buffer any
	 * more (until then test says not done); `why` is logged once, naming the peer. Never
	 * blocks; harmless on a failed comm. */
	void (*abort_send)(struct rcmoe_tsend *comm, rcmoe_status_t st, const char *why);
	void (*abort_recv)(struct rcmoe_trecv *comm, rcmoe_status_t st, const char *why);
	/* Close calls are safe on comms with requests still in flight (they are abandoned). */
	rcmoe_status_t (*close_send)(struct rcmoe_tsend *comm);
	rcmoe_status_t (*close_recv)(struct rcmoe_trecv *comm);
	rcmoe_status_t (*close_listen)(struct rcmoe_tlisten *listen);
};

extern const struct rcmoe_transport_ops rcmoe_socket_ops;

#endif
