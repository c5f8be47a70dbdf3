/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helpers for the socket transport tests: parameters from a test's own table, a connected
 * send/recv pair over 127.0.0.1 in one process, bounded waits, payload patterns, a placement
 * callback that records what it was asked, and raw sockets for crafting bad peers.
 */
#ifndef RCMOE_TEST_SOCK_TEST_H
#define RCMOE_TEST_SOCK_TEST_H

#include <stddef.h>
#include <stdint.h>

#include "rcmoe/transport.h"
#include "transport/socket/proto.h"

#define OPS (&rcmoe_socket_ops)

/* Init the transport on lo with these RCMOE_* overrides ("NAME=value", NULL-terminated; may be
 * NULL). Fails the test on error. */
void st_init(const char *const *env);
/* Same, but returns init's status instead of asserting it. */
rcmoe_status_t st_try_init(const char *const *env);

struct st_pair {
	struct rcmoe_tlisten *l;
	struct rcmoe_tsend *s;
	struct rcmoe_trecv *r;
	uint8_t handle[128];
};

/* Listen, then connect and accept until both are there (at most 10 s). */
void st_pair_open(struct st_pair *p);
/* Connect a second sender to p's listener and accept it. */
void st_connect_accept(struct st_pair *p, struct rcmoe_tsend **s, struct rcmoe_trecv **r);
void st_pair_close(struct st_pair *p);
/* Call accept until it gives a comm (at most 10 s). */
struct rcmoe_trecv *st_accept_one(struct rcmoe_tlisten *l);
/* Connect to `handle` until a comm comes back (asserts, within 10 s). */
struct rcmoe_tsend *st_connect_one(const void *handle);

/* What a placement callback was asked, and what it answers. */
struct st_place {
	void *dest;          /* returned as the destination */
	rcmoe_status_t fail; /* when not OK: returned instead */
	int calls;
	size_t len;
	uint32_t flags;
};
rcmoe_status_t st_place_fn(void *arg, size_t wire_len, uint32_t flags, void **dest,
			   struct rcmoe_tmr **mr);

/* Call test until done or error, at most `timeout_s`; fails the test on timeout. Returns the
 * status of the final test call. */
rcmoe_status_t st_wait(struct rcmoe_treq *req, double timeout_s, size_t *len, uint32_t *flags);
/* Post until a request is given (the NULL-request contract), at most 10 s. */
struct rcmoe_treq *st_isend(struct rcmoe_tsend *s, const void *buf, size_t len, int tag,
			    uint32_t flags);
struct rcmoe_treq *st_irecv(struct rcmoe_trecv *r, size_t max, int tag, struct st_place *pl);

/* Send `len` bytes of pattern `seed` and receive them into a buffer of `max` bytes; checks the
 * content byte for byte and that nothing past `len` was written. */
void st_exchange(struct st_pair *p, size_t len, size_t max, unsigned seed);

void st_fill(void *buf, size_t n, unsigned seed);
/* Index of the first byte that differs from the pattern, or (size_t)-1. */
size_t st_check(const void *buf, size_t n, unsigned seed);
double st_now(void);
void st_sleep_ms(int ms);

/* Raw peers. st_raw_connect: a blocking TCP socket to the handle's address. */
int st_raw_connect(const uint8_t *handle);
void st_raw_send(int fd, const void *buf, size_t len);
/* A correct hello for the handle (the caller may then spoil fields). */
void st_good_hello(const uint8_t *handle, struct sock_hello *h, uint16_t index, uint16_t count);
/* A raw sender that passes the handshake with one data stream: fds[0] control, fds[1] data;
 * returns the receive comm the listener made of it. */
struct rcmoe_trecv *st_raw_sender(struct rcmoe_tlisten *l, const uint8_t *handle, int fds[2]);
void st_raw_header(int fd, uint32_t seq, int tag, uint64_t len, uint32_t wire_flags);
/* Wait up to `timeout_s` while calling accept for the far side to close `fd` (EOF or reset).
 * Returns 1 when closed. Fails the test if accept returns a comm or an error. */
int st_accept_until_closed(struct rcmoe_tlisten *l, int fd, double timeout_s);

/* Capture of the last WARN text (installed by st_capture_warn, chained to the counting logger). */
void st_capture_warn(void);
const char *st_last_warn(void);

#endif
