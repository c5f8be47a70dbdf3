/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private state of the socket transport.
 *
 * A connection is one control socket (message headers, written and read without blocking by the
 * caller's thread, and on the sender also written by lane 0's worker; heartbeats both ways, see
 * sock_live and sock_hb) plus `nstreams` data sockets (payload). The caller's thread cuts each
 * message into pieces (sock_plan_pieces) and queues each piece on its stream; a worker thread of
 * the process's pool (pool.c) moves it between the user buffer and the socket and counts it done.
 * A comm's streams are split into `nlanes` lanes (lane l: the streams s with s % nlanes == l),
 * each served by one worker; a worker serves lanes of many comms, so the process has a bounded
 * number of threads (RCMOE_SOCKET_WORKERS) whatever the number of peers. Each stream's queue is
 * single-producer (caller) single-consumer (its lane's worker).
 *
 * Threading: one caller thread per comm at a time (NCCL's proxy thread). Fields marked "caller"
 * are touched only by it; "shared" fields are atomics; "worker" fields only by the lane's worker
 * with its lock held.
 */
#ifndef RCMOE_SOCKET_H
#define RCMOE_SOCKET_H

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rcmoe/transport.h"
#include "transport/socket/proto.h"

#define SOCK_MAX_REQS     RCMOE_TRANSPORT_MAX_REQUESTS
#define SOCK_ADDR_STRLEN  64 /* "[v6 address%scope]:port" */
#define SOCK_SCRATCH_SIZE (64 * 1024)

/* ---- process-wide state (init.c) ---- */

struct sock_global {
	struct rcmoe_params params; /* copied at init */
	char ifname[64];
	union sock_addr addr; /* the address to listen on, port 0 */
	int speed_mbps;
	uint64_t guid;
};

extern struct sock_global sock_global;
/* RCMOE_OK once init succeeded; an error (with a WARN) before. */
rcmoe_status_t sock_check_init(void);

/* ---- helpers (sock_util.c, iface.c) ---- */

/* Pick the interface and address to listen on (rules in iface.c). */
rcmoe_status_t sock_pick_interface(const struct rcmoe_params *params, char *ifname, size_t ifsize,
				   union sock_addr *addr);
socklen_t sock_addr_len(const union sock_addr *a);
void sock_addr_str(const union sock_addr *a, char *buf, size_t size);
/* TCP_NODELAY, and keepalive so that the host of an idle connection's peer, gone, is noticed in
 * about `timeout_s`. No TCP_USER_TIMEOUT: it would also fail a live peer that leaves our data
 * unread that long (a closed receive window); the heartbeats judge that (sock_live). */
rcmoe_status_t sock_set_options(int fd, int timeout_s, const char *peer);
rcmoe_status_t sock_random64(uint64_t *out);
uint64_t sock_now_ns(void);

enum sock_io_result { SOCK_IO_DONE, SOCK_IO_AGAIN, SOCK_IO_EOF, SOCK_IO_ERROR };
/* Move bytes without blocking until `len` are done or the socket would block; *off advances. On
 * SOCK_IO_ERROR errno is set. */
enum sock_io_result sock_io(int fd, bool send_dir, void *buf, size_t len, size_t *off);
/* Send `a` then `b` as one stream of bytes (one syscall when the socket takes both); *off counts
 * over both. */
enum sock_io_result sock_send2(int fd, const void *a, size_t alen, const void *b, size_t blen,
			       size_t *off);

/* ---- requests and comms ---- */

enum sock_req_state {
	SOCK_REQ_FREE = 0,
	SOCK_REQ_POSTED, /* recv: waiting for its header */
	SOCK_REQ_INLINE, /* recv: header read, payload coming on the control socket */
	SOCK_REQ_MOVING, /* send: posted; recv: header (and inline payload) handled */
};

struct sock_comm;

struct rcmoe_treq {
	struct sock_comm *comm;    /* caller */
	enum sock_req_state state; /* caller */
	uint32_t seq;              /* caller: message number on the connection */
	uint8_t *buf;              /* caller until queued, then read-only */
	size_t len;                /* caller until queued, then read-only */
	uint32_t flags;            /* caller */
	bool inline_payload;   /* caller: the payload follows the header on the control socket */
	int tag;               /* caller */
	rcmoe_status_t status; /* caller: e.g. the placement callback's error */
	size_t max_len;        /* caller (recv) */
	rcmoe_place_fn place;  /* caller (recv) */
	void *place_arg;       /* caller (recv) */
	uint8_t hdr[SOCK_HDR_SIZE];   /* caller (send): the encoded header */
	_Atomic unsigned pieces_left; /* shared: workers count down */
	_Atomic size_t bytes_done;    /* shared: for error messages */
};

/* One piece of one message on one stream. buf == NULL on receive: read and discard. */
struct sock_piece {
	struct rcmoe_treq *req;
	uint8_t *buf;
	size_t len;
};

struct sock_stream {
	int fd;
	int index;
	/* Queue: the caller writes entries then publishes `tail`; the lane's worker consumes at
	 * `head`. At most one piece per message per stream, at most SOCK_MAX_REQS messages in
	 * flight. */
	struct sock_piece q[SOCK_MAX_REQS];
	_Atomic uint32_t head;
	_Atomic uint32_t tail;
	size_t off; /* worker: bytes done of the piece at head */
};

struct sock_worker; /* pool.c */

struct sock_lane {
	struct sock_comm *comm;
	int index;
	/* The worker serving the lane: set by sock_pool_attach before the comm is used, constant
	 * until sock_pool_detach, after which no worker touches the lane. */
	struct sock_worker *worker;
	struct sock_lane *next; /* in the worker's list (its lock) */
	uint8_t *scratch;       /* recv: where discarded payload goes */
	/* Payload bytes this lane moved; written by its worker alone, read by the caller to see
	 * whether anything moves (sock_live). */
	_Atomic uint64_t moved;
	/* Worker: the streams (bit s for stream s) whose queue its last round found empty, the only
	 * ones where work can have come unseen; the others wait in poll() for their socket, or
	 * are due again at once. Looking at those too before sleeping would turn every wait for
	 * room in a socket into a busy loop. */
	uint64_t idle;
	bool quiesced; /* worker: counted in comm->quiesced, never touches a request again */
	bool want_out; /* worker (lane 0): a control frame waits for room to write */
	uint64_t next_beat_ns; /* worker (lane 0 of a receive comm) */
};

/* Descriptors a worker waits for in one poll(), each with the lane it belongs to; filled by
 * sock_lane_turn. */
struct sock_pollset {
	struct pollfd *pfd;
	struct sock_lane **owner;
	bool *is_ctrl; /* the lane's control socket (else a data stream) */
	int n, cap;
};

/*
 * Is the peer still running? TCP cannot tell: a stopped process's kernel still acknowledges
 * data and keepalive probes, and a live receiver may leave data unread for as long as its rank
 * is late. So each side watches for progress and the peer's own signs of life (proto.h):
 *  - receive comms: while a receive waits and nothing came for a quarter of
 *    RCMOE_SOCKET_TIMEOUT, the caller asks with a ping on the control socket's reverse
 *    direction; the sender's lane 0 answers at once with a pong, whatever its caller
 *    does. Nothing is asked while no receive waits.
 *  - send comms: while a send is outstanding, the caller watches the bytes its kernel takes and
 *    the receiver's beats and pings, which the sender's lane 0 counts. The receiver's
 *    lane 0 beats every quarter of the timeout while any socket of the connection
 *    holds bytes it has not read, so a late receiver keeps the send alive and a stopped one
 *    does not.
 * Caller fields; the caller's "asking" state is receive-only.
 */
struct sock_live {
	uint64_t ctrl_in; /* recv: header and inline payload bytes read (heartbeats not counted) */
	uint64_t seen;    /* progress counters summed, at the last look */
	uint64_t ev_ns;   /* last sign of life: progress, or (recv) an answer to our question */
	uint64_t data_ns; /* recv: last header or payload byte (a started message must move) */
	uint64_t call_ns; /* the caller's last look (a long gap restarts the clocks) */
	bool asking;      /* recv: a ping went out and nothing answered it yet */
	uint32_t ask_id;  /* its number: older answers prove nothing */
	uint64_t ask_ns;
	uint32_t next_id; /* number of the next ping */
};

/* The heartbeats' share of the control socket (proto.h), both kinds of comm. */
struct sock_hb {
	/* lane 0 of a send comm: reading the receiver's pings and beats */
	uint8_t in[SOCK_HDR_SIZE];
	size_t in_off;
	bool in_closed; /* EOF or error: the caller's writes will report it if it matters */
	/* Shared (send): pings and beats read, each a sign that the receiver runs. */
	_Atomic uint32_t in_count;
	/* Shared (recv): the caller's newest question, its number + 1 (0: none yet). */
	_Atomic uint32_t ping_want;
	/* ctrl_lock: what our direction of the control socket owes besides message headers,
	 * and the frame being written (no header or other frame may come between its bytes) */
	bool pong_owed; /* send: an answer to the newest ping read */
	uint32_t pong_id;
	uint32_t ping_sent; /* recv: ping_want of the newest ping started */
	bool beat_owed;     /* recv: lane 0 found unread bytes */
	uint32_t beat_id;   /* recv: number of the next beat */
	bool out_closed;    /* recv: writing failed (errno out_err); the caller reports it if a
			     * receive waits */
	int out_err;
	uint8_t out[SOCK_HDR_SIZE];
	size_t out_off; /* bytes of `out` written, 0 when none is under way */
};

struct sock_comm {
	bool is_send;
	int ctrl_fd;
	int nstreams;
	int nlanes;
	size_t min_chunk; /* the sender's, from its hello */
	char peer[SOCK_ADDR_STRLEN];
	struct sock_stream *streams;
	struct sock_lane *lanes;

	struct rcmoe_treq reqs[SOCK_MAX_REQS];
	uint32_t head; /* caller: seq of the next request */
	uint32_t tail; /* caller: seq of the oldest unreleased request */
	/* Next header to write (send: under ctrl_lock, read by the caller to see which sends
	 * are out) or to read (recv: caller). */
	_Atomic uint32_t hdr_seq;
	/* send: headers ready to write; the caller publishes a request's header with it. */
	_Atomic uint32_t hdr_end;
	/* Bytes of header hdr_seq done (send: with its inline payload, under ctrl_lock; recv:
	 * caller). On receive, a complete header whose receive is not posted yet waits here
	 * ("parked") with hdr_off == SOCK_HDR_SIZE and hdr_seq == head. */
	size_t hdr_off;
	size_t rx_off;                 /* caller (recv): bytes of the inline payload read */
	uint8_t rx_hdr[SOCK_HDR_SIZE]; /* caller (recv): header being read */
	unsigned next_stream;          /* caller: where the next message's first piece goes */
	/* The control socket's write side (send: headers, inline payloads, pongs; recv: pings,
	 * beats), shared by the caller and lane 0's worker. Held only around non-blocking
	 * writes, and the caller only ever try-locks it. */
	pthread_mutex_t ctrl_lock;
	/* send: header and inline payload bytes written (under ctrl_lock), read by the caller
	 * to see whether anything moves (sock_live) */
	_Atomic uint64_t ctrl_out;
	struct sock_hb hb;
	struct sock_live live; /* caller */

	_Atomic int failing;  /* shared: set once by whoever reports the failure */
	_Atomic int error;    /* shared: rcmoe_status_t, RCMOE_OK while healthy */
	_Atomic int quiesced; /* shared: lanes that stopped touching requests */
	_Atomic int stop;     /* shared: close in progress */
};

/* The opaque send and receive comms of transport.h are both a struct sock_comm; these
 * conversions are the only place the types meet. */
static inline struct sock_comm *sock_send_comm(struct rcmoe_tsend *s)
{
	return (struct sock_comm *)(void *)s;
}

static inline struct sock_comm *sock_recv_comm(struct rcmoe_trecv *r)
{
	return (struct sock_comm *)(void *)r;
}

/* comm.c: build a comm around connected sockets (fds[0] control, fds[1..nstreams] data) and
 * give its lanes to the pool. On success the comm owns the fds; on failure they are closed. */
rcmoe_status_t sock_comm_create(bool is_send, int *fds, int nstreams, size_t min_chunk,
				const char *peer, struct sock_comm **out);
void sock_comm_destroy(struct sock_comm *c);
/* Mark the comm failed with `st`: the first caller logs one WARN (naming the peer), later
 * callers only return. Shuts the sockets down (the peer sees the connection close) and wakes
 * the lanes' workers. */
void sock_comm_fail(struct sock_comm *c, rcmoe_status_t st, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* lane.c, run by the lane's worker with its lock held: one round of the lane's work (move what
 * moves without blocking; add what to wait for to `ps`; lower *timeout_ms, -1 meaning none, to
 * when the lane must run again); whether its queues hold work (looked at after the worker
 * announced its sleep); and the control socket's events. */
void sock_lane_turn(struct sock_lane *lane, struct sock_pollset *ps, int *timeout_ms);
bool sock_lane_has_work(struct sock_lane *lane);
void sock_lane_ctrl_ready(struct sock_lane *lane);

/* pool.c: the process's workers. sock_pool_init once at transport init. attach gives the lane
 * to the worker with the fewest lanes, starting a new worker while every worker has one and
 * fewer than RCMOE_SOCKET_WORKERS run; detach takes it back and returns once no worker touches
 * it any more (it may wait for the worker's current round). wake: the lane has new work (cheap
 * when its worker is awake); kick: wake its worker in any case (failure, close). */
#define SOCK_WORKER_NAME "rcmoe-sock" /* the workers' thread name */
rcmoe_status_t sock_pool_init(const struct rcmoe_params *params);
rcmoe_status_t sock_pool_attach(struct sock_lane *lane);
void sock_pool_detach(struct sock_lane *lane);
void sock_lane_wake(struct sock_lane *lane);
void sock_lane_kick(struct sock_lane *lane);
/* Workers started so far (for tests and the init line). */
int sock_pool_workers(void);

/* data.c, for lane 0's worker: read the receiver's pings (each owes a pong) and beats (send
 * comms); owe a beat when the connection holds unread bytes (receive comms, called every
 * sock_beat_ns); write what the control socket owes. *want_out: wait for the socket to take
 * more before calling again. */
void sock_hb_read(struct sock_comm *c);
void sock_beat_check(struct sock_comm *c);
void sock_ctrl_flush(struct sock_comm *c, bool *want_out);
uint64_t sock_beat_ns(void);

/* data.c */
rcmoe_status_t sock_isend(struct rcmoe_tsend *comm, const void *buf, size_t len,
			  struct rcmoe_tmr *mr, int tag, uint32_t flags, struct rcmoe_treq **req);
rcmoe_status_t sock_irecv(struct rcmoe_trecv *comm, size_t max_len, int tag, rcmoe_place_fn place,
			  void *place_arg, struct rcmoe_treq **req);
rcmoe_status_t sock_test(struct rcmoe_treq *req, int *done, size_t *len, uint32_t *flags);

/* listen.c / accept.c / connect.c */
struct sock_pending;
struct sock_group;

/* Refused connections of one listener, so that a flood costs a few WARNs, not one each. */
struct sock_refusals {
	uint64_t total;        /* since listen */
	uint64_t unlogged;     /* refused since the last WARN */
	uint64_t last_warn_ns; /* of the last refusal WARN */
	char last_peer[SOCK_ADDR_STRLEN];
	char last_why[160];
};

/* Until its hello proves it was made from the handle, a socket is "unauthenticated"; so is a
 * socket waiting in an incomplete group (it may never become a connection). A listener holds at
 * most max_unauth of them, each until the handshake deadline (accept.c). */
struct rcmoe_tlisten {
	int fd;
	int spare_fd; /* /dev/null, given up to accept with when out of descriptors; -1: none */
	union sock_addr addr;
	char addr_str[SOCK_ADDR_STRLEN];
	uint64_t secret;
	unsigned max_unauth; /* from the descriptor limit, at each accept */
	unsigned nunauth;    /* sockets in `pending` and in `groups` */
	/* Accepted sockets whose hello is not complete, oldest first, new ones appended. */
	struct sock_pending *pending;
	struct sock_pending *pending_last;
	struct sock_group *groups; /* sockets of one connect, by nonce, until all are there */
	struct sock_refusals refused;
};

rcmoe_status_t sock_listen(int dev, void *handle, struct rcmoe_tlisten **out);
rcmoe_status_t sock_accept(struct rcmoe_tlisten *l, struct rcmoe_trecv **out);
rcmoe_status_t sock_close_listen(struct rcmoe_tlisten *l);
/* accept.c: close and free the sockets still waiting in the listener (and log the refusals not
 * yet logged). */
void sock_listen_drop_all(struct rcmoe_tlisten *l);
rcmoe_status_t sock_connect(int dev, const void *handle, struct rcmoe_tsend **out);

/* init.c */
rcmoe_status_t sock_init(const struct rcmoe_params *params);
rcmoe_status_t sock_device_count(int *ndev);
rcmoe_status_t sock_device_info(int dev, struct rcmoe_device_info *info);

#endif
