/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The transport interface: what the version-neutral core (plugin/ctx.c, conn.c, mr.c, data.c)
 * needs from a way of moving bytes between two processes. Transports see host memory only; the
 * core stages GPU buffers and runs the codecs. Each transport fills one
 * `struct rcmoe_transport_ops`; the core picks one in one place, the registry
 * (plugin/transport/registry.c, rcmoe_transport_select), from RCMOE_TRANSPORT.
 *
 * Shaped for TCP (plugin/transport/socket/) and for RDMA alike:
 *  - Memory is registered: the core registers every host buffer a transfer may use (NCCL's host
 *    buffers and the core's staging shadows) when NCCL registers the region (regMr), through
 *    reg_mr on the comm NCCL names, and passes the handle with each transfer. A transport that
 *    needs none (TCP) returns a dummy handle.
 *  - A transport says whether its receiver must post the destination before the data arrives
 *    (needs_posted_dest, as RDMA writes into a buffer the receiver advertised) or learns each
 *    message's length and flags first and then asks where it goes (TCP: the place callback).
 *  - A transport reports any number of devices (NICs); NCCL sees each as its own net device,
 *    and dev numbers 0..n-1 are passed back to listen and connect.
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
struct rcmoe_tmr; /* a memory registration (reg_mr) */

/*
 * Where a received message goes. Returns the host destination (at least `wire_len` bytes) in
 * *dest and the registration it lies in (reg_mr's handle; NULL: unregistered memory, which only
 * a transport whose reg_mr is a no-op accepts) in *mr, or an error: then the request fails and
 * nothing is written. Called by the transport before any payload byte is written:
 *  - needs_posted_dest == 0: from test, once the transport knows the wire length and flags of
 *    the next message;
 *  - needs_posted_dest == 1: from irecv, before anything arrived, with `wire_len` = the
 *    receive's max_len and `flags` = RCMOE_PLACE_ANY: the destination must then hold any
 *    message the receive may get (the core's choice: posted_landing in plugin/data.c).
 */
typedef rcmoe_status_t (*rcmoe_place_fn)(void *arg, size_t wire_len, uint32_t flags, void **dest,
					 struct rcmoe_tmr **mr);
/* `flags` of a placement asked before the message is known (needs_posted_dest). */
#define RCMOE_PLACE_ANY 0x80000000u

struct rcmoe_transport_ops {
	const char *name;
	/* Capabilities. needs_posted_dest: 1 when the receiver must give each receive's
	 * destination before the data arrives (irecv calls `place` at once, see rcmoe_place_fn):
	 * RDMA writes, where the sender needs the receiver's address and key. 0 when the
	 * transport reads each message's header first and asks `place` then (socket: 0). */
	int needs_posted_dest;
	/* Process-wide setup, called once (thread-safe, idempotent). */
	rcmoe_status_t (*init)(const struct rcmoe_params *params);
	/* Devices (NICs) this transport drives, numbered 0..*ndev-1; the same count for the
	 * process's lifetime once init succeeded. Each is its own NCCL net device. */
	rcmoe_status_t (*device_count)(int *ndev);
	rcmoe_status_t (*device_info)(int dev, struct rcmoe_device_info *info);

	/* Writes at most RCMOE_TRANSPORT_HANDLE_SIZE bytes to `handle`. `dev` is in
	 * 0..device_count-1 (checked by the core); connect's is the connecting side's device. */
	rcmoe_status_t (*listen)(int dev, void *handle, struct rcmoe_tlisten **out);
	rcmoe_status_t (*connect)(int dev, const void *handle, struct rcmoe_tsend **out);
	rcmoe_status_t (*accept)(struct rcmoe_tlisten *listen, struct rcmoe_trecv **out);

	/* Register `len` bytes of host memory at `buf` for transfers on the comm NCCL registered
	 * the region with: exactly one of `send` and `recv` is set. *out (never NULL on success)
	 * goes with every transfer in that memory until dereg_mr, which is called before the
	 * memory is freed and once no transfer uses it. A registration also holds on every other
	 * comm of the same device (IB: it is made in the protection domain of the device's HCA,
	 * which all of its QPs share), so the collective side, with many comms on one device,
	 * registers each buffer once (plugin/coll/coll.h). The net side's run on NCCL's service
	 * thread (regMr, deregMr), never on its data path; registering may be slow (pinning, NIC
	 * tables): the collective side registers its scratch on the proxy thread, once per size
	 * class. The socket transport's are no-ops returning a dummy handle. */
	rcmoe_status_t (*reg_mr)(struct rcmoe_tsend *send, struct rcmoe_trecv *recv, void *buf,
				 size_t len, struct rcmoe_tmr **out);
	rcmoe_status_t (*dereg_mr)(struct rcmoe_tsend *send, struct rcmoe_trecv *recv,
				   struct rcmoe_tmr *mr);
	/* Register `len` bytes at address `buf` that belong to a DMA-BUF: `fd`, from byte
	 * `offset` of it (GPU memory exported by the CUDA driver, which the CPU cannot touch).
	 * Transfers name the memory by `buf`, as for reg_mr, and the transport must move it
	 * without reading or writing it from the CPU. NULL in a transport that cannot (sockets);
	 * RCMOE_ERR_UNSUPPORTED where the verbs library or the device cannot. Released by
	 * dereg_mr. */
	rcmoe_status_t (*reg_mr_dmabuf)(struct rcmoe_tsend *send, struct rcmoe_trecv *recv,
					void *buf, size_t len, int fd, uint64_t offset,
					struct rcmoe_tmr **out);
	/* After a receive into `buf` (`len` bytes received, registered as `mr`) is done: make
	 * the bytes the NIC wrote visible to the GPU before what the caller does next (NCCL's
	 * iflush). *req NULL when there is nothing to do (host memory, 0 bytes); else tested like
	 * a transfer. NULL in a transport that never writes GPU memory. */
	rcmoe_status_t (*iflush)(struct rcmoe_trecv *comm, void *buf, size_t len,
				 struct rcmoe_tmr *mr, struct rcmoe_treq **req);

	/* Send `len` bytes (0 allowed) from host memory `buf`, registered as `mr` (NULL: not
	 * registered, see rcmoe_place_fn), with `tag` and `flags`. The buffer must stay untouched
	 * until test reports done. */
	rcmoe_status_t (*isend)(struct rcmoe_tsend *comm, const void *buf, size_t len,
				struct rcmoe_tmr *mr, int tag, uint32_t flags,
				struct rcmoe_treq **req);
	/* Receive the next message, at most `max_len` bytes, with `tag`. Where it goes, and the
	 * registration it lies in, is asked of `place` (when: see needs_posted_dest). A longer
	 * message or another tag is an error. */
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

/* The transports built into the plugin; the registry (plugin/transport/registry.c) lists them. */
extern const struct rcmoe_transport_ops rcmoe_socket_ops;
extern const struct rcmoe_transport_ops rcmoe_ib_ops; /* plugin/transport/ib/ */

/* The registry: the transport RCMOE_TRANSPORT names, or with `auto` the first of those `auto` may
 * use that starts (sockets; IB only when named, until it has run on real HCAs), saying which at
 * INFO. Calls its init; *out is the transport tried last (for messages, even on failure; NULL
 * when none was). */
rcmoe_status_t rcmoe_transport_select(const struct rcmoe_params *params,
				      const struct rcmoe_transport_ops **out);

#endif
