/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helpers for the transport tests that run against both transports (test_transport_both.c is
 * built once per transport; TT_OPS is the one under test): parameters, a connected pair over
 * 127.0.0.1 in one process, registered buffers (reg_mr: a no-op for sockets, verbs memory
 * regions for IB), a placement callback that answers with the registration, and exchanges
 * checked byte for byte. Patterns, clocks and the WARN capture come from sock_test.c.
 */
#ifndef RCMOE_TEST_TT_H
#define RCMOE_TEST_TT_H

#include <stddef.h>
#include <stdint.h>

#include "rcmoe/transport.h"

extern const struct rcmoe_transport_ops *const TT_OPS;

/* Init TT_OPS on lo with these RCMOE_* overrides ("NAME=value", NULL-terminated; may be
 * NULL); the IB transport loads the test provider (RCMOE_IB_LIBRARY). */
rcmoe_status_t tt_try_init(const char *const *env);
void tt_init(const char *const *env);

struct tt_pair {
	struct rcmoe_tlisten *l;
	struct rcmoe_tsend *s;
	struct rcmoe_trecv *r;
	uint8_t handle[128];
};

void tt_pair_open(struct tt_pair *p, int listen_dev, int connect_dev);
void tt_connect_accept(struct tt_pair *p, int connect_dev, struct rcmoe_tsend **s,
		       struct rcmoe_trecv **r);
void tt_pair_close(struct tt_pair *p);

/* A buffer registered on one comm (exactly one of s and r). */
struct tt_buf {
	uint8_t *mem;
	size_t len;
	struct rcmoe_tsend *s;
	struct rcmoe_trecv *r;
	struct rcmoe_tmr *mr;
};
void tt_buf_alloc(struct tt_buf *b, size_t len, struct rcmoe_tsend *s, struct rcmoe_trecv *r);
void tt_buf_free(struct tt_buf *b);

struct tt_place {
	void *dest;
	struct rcmoe_tmr *mr;
	rcmoe_status_t fail; /* when not OK: returned instead */
	int calls;
	size_t len;
	uint32_t flags;
};
rcmoe_status_t tt_place_fn(void *arg, size_t wire_len, uint32_t flags, void **dest,
			   struct rcmoe_tmr **mr);

struct rcmoe_treq *tt_isend(struct rcmoe_tsend *s, const void *buf, size_t len,
			    struct rcmoe_tmr *mr, int tag, uint32_t flags);
struct rcmoe_treq *tt_irecv(struct rcmoe_trecv *r, size_t max, int tag, struct tt_place *pl);
/* test until done or an error, at most timeout_s (fails the test past it). */
rcmoe_status_t tt_wait(struct rcmoe_treq *req, double timeout_s, size_t *len, uint32_t *flags);

/* Send `len` bytes of pattern `seed` with `flags` into a receive of `max`; checks content,
 * lengths, flags, the placement asked, and that nothing past `len` was written. */
void tt_exchange(struct tt_pair *p, size_t len, size_t max, unsigned seed, uint32_t flags);

/* A blocking TCP socket to the address in a listen handle (socket and IB handles share the
 * address layout). */
int tt_raw_connect(const uint8_t *handle);

#endif
