/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The IB transport's registration cache (plugin/transport/ib/mr.c), over the test provider,
 * which counts its ibv_reg_mr and ibv_dereg_mr calls (fakeverbs_mr_counts, fv.h): a buffer
 * registered twice and a range inside it cost one verbs registration, dropped with one
 * deregistration when the last handle goes; data moves exactly through shared registrations;
 * memory freed after its last deregistration and mapped again at the same address is
 * registered anew; and 4 threads registering and deregistering at once leave the counts
 * balanced.
 */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../transport/sock_test.h"
#include "test_log.h"
#include "transport/ib/ib.h"
#include "tt.h"

const struct rcmoe_transport_ops *const TT_OPS = &rcmoe_ib_ops;

TestSuite(ib_mrcache, .init = test_log_init, .timeout = 120);

struct mr_counts {
	uint64_t regs, deregs, live;
};

static void mr_counts(struct mr_counts *c)
{
	typedef void (*counts_fn)(uint64_t *, uint64_t *, uint64_t *);
	counts_fn fn = (counts_fn)dlsym(ib_verbs.lib, "fakeverbs_mr_counts");
	cr_assert_not_null(fn, "the test provider has no fakeverbs_mr_counts");
	fn(&c->regs, &c->deregs, &c->live);
}

static struct rcmoe_tmr *reg(struct rcmoe_tsend *s, struct rcmoe_trecv *r, void *buf, size_t len)
{
	struct rcmoe_tmr *mr = NULL;
	cr_assert_eq(TT_OPS->reg_mr(s, r, buf, len, &mr), RCMOE_OK, "reg_mr of %zu bytes", len);
	cr_assert_not_null(mr);
	return mr;
}

static void dereg(struct rcmoe_tsend *s, struct rcmoe_trecv *r, struct rcmoe_tmr *mr)
{
	cr_assert_eq(TT_OPS->dereg_mr(s, r, mr), RCMOE_OK, "dereg_mr");
}

static size_t page(void)
{
	return (size_t)sysconf(_SC_PAGESIZE);
}

static void *pages(size_t n)
{
	void *p = aligned_alloc(page(), n * page());
	cr_assert_not_null(p);
	return p;
}

/* Send `len` bytes of pattern `seed` from src into dst, each in its registration; dst lies in
 * `area` (`area_len` bytes, filled with 0xA5 first): every byte of it outside the message must
 * stay 0xA5. */
static void move(struct tt_pair *p, uint8_t *src, struct rcmoe_tmr *smr, uint8_t *dst,
		 struct rcmoe_tmr *dmr, size_t len, uint8_t *area, size_t area_len, unsigned seed)
{
	st_fill(src, len, seed);
	memset(area, 0xA5, area_len);
	struct tt_place pl = { .dest = dst, .mr = dmr };
	struct rcmoe_treq *rr = tt_irecv(p->r, len, 5, &pl);
	struct rcmoe_treq *sr = tt_isend(p->s, src, len, smr, 5, 0);
	size_t slen = 0, rlen = 0;
	cr_assert_eq(tt_wait(sr, 30, &slen, NULL), RCMOE_OK, "send");
	cr_assert_eq(tt_wait(rr, 30, &rlen, NULL), RCMOE_OK, "receive");
	cr_assert_eq(slen, len);
	cr_assert_eq(rlen, len);
	size_t bad = st_check(dst, len, seed);
	cr_assert_eq(bad, (size_t)-1, "%zu-byte message differs at byte %zu", len, bad);
	for (uint8_t *q = area; q < area + area_len; q++)
		if (q < dst || q >= dst + len)
			cr_assert_eq(*q, 0xA5,
				     "byte %td of the area, outside the message, was written",
				     q - area);
}

Test(ib_mrcache, same_buffer_twice_and_a_subrange_register_once)
{
	tt_init(NULL);
	struct tt_pair p;
	tt_pair_open(&p, 0, 0);
	struct mr_counts before, after;
	uint8_t *buf = pages(16);
	mr_counts(&before);
	struct rcmoe_tmr *a = reg(NULL, p.r, buf, 16 * page());
	struct rcmoe_tmr *b = reg(NULL, p.r, buf, 16 * page());
	struct rcmoe_tmr *c = reg(NULL, p.r, buf + 100, 3 * page());
	/* the send comm is on the same device, so in the same protection domain */
	struct rcmoe_tmr *d = reg(p.s, NULL, buf + 5 * page(), page());
	mr_counts(&after);
	cr_assert_eq(after.regs - before.regs, 1, "%lu ibv_reg_mr calls for one buffer",
		     (unsigned long)(after.regs - before.regs));
	dereg(NULL, p.r, c);
	dereg(NULL, p.r, a);
	dereg(p.s, NULL, d);
	dereg(NULL, p.r, b);
	free(buf);
	tt_pair_close(&p);
}

Test(ib_mrcache, last_deregistration_deregisters_once)
{
	tt_init(NULL);
	struct tt_pair p;
	tt_pair_open(&p, 0, 0);
	struct mr_counts before, mid, after;
	uint8_t *buf = pages(8);
	mr_counts(&before);
	struct rcmoe_tmr *mr[3] = { reg(NULL, p.r, buf, 8 * page()),
				    reg(NULL, p.r, buf, 8 * page()),
				    reg(NULL, p.r, buf + page(), 2 * page()) };
	dereg(NULL, p.r, mr[0]);
	dereg(NULL, p.r, mr[2]);
	mr_counts(&mid);
	cr_assert_eq(mid.deregs, before.deregs, "deregistered while a handle still holds it");
	cr_assert_eq(mid.live, before.live + 1);
	dereg(NULL, p.r, mr[1]);
	mr_counts(&after);
	cr_assert_eq(after.deregs - before.deregs, 1, "%lu ibv_dereg_mr calls",
		     (unsigned long)(after.deregs - before.deregs));
	cr_assert_eq(after.live, before.live, "memory still registered after the last dereg_mr");
	free(buf);
	tt_pair_close(&p);
}

Test(ib_mrcache, data_through_shared_registrations_arrives_exactly)
{
	tt_init(NULL);
	struct tt_pair p;
	tt_pair_open(&p, 0, 0);
	const size_t n = 32 * page();
	uint8_t *sbuf = pages(32), *rbuf = pages(32);
	struct rcmoe_tmr *smr = reg(p.s, NULL, sbuf, n);
	struct rcmoe_tmr *rmr = reg(NULL, p.r, rbuf, n);
	struct mr_counts before, after;
	mr_counts(&before);
	/* Handles on ranges inside both buffers, at odd offsets: they share the registrations. */
	const size_t off[] = { 0, 1, 4095, 4097, 12345, 3 * 4096 + 17 };
	const size_t len[] = { 1, 100, 4096, 65536, 50000, 8 * 4096 + 3 };
	for (unsigned i = 0; i < sizeof(off) / sizeof(off[0]); i++) {
		struct rcmoe_tmr *s = reg(p.s, NULL, sbuf + off[i], len[i]);
		struct rcmoe_tmr *r = reg(NULL, p.r, rbuf + off[i] + 3, len[i]);
		move(&p, sbuf + off[i], s, rbuf + off[i] + 3, r, len[i], rbuf, n, 40 + i);
		dereg(p.s, NULL, s);
		dereg(NULL, p.r, r);
	}
	mr_counts(&after);
	cr_assert_eq(after.regs, before.regs, "a range inside a registration was registered anew");
	/* and through the buffers' own handles, once the others are gone */
	move(&p, sbuf, smr, rbuf, rmr, n, rbuf, n, 99);
	dereg(p.s, NULL, smr);
	dereg(NULL, p.r, rmr);
	free(sbuf);
	free(rbuf);
	tt_pair_close(&p);
}

Test(ib_mrcache, memory_freed_and_mapped_again_is_registered_anew)
{
	tt_init(NULL);
	struct tt_pair p;
	tt_pair_open(&p, 0, 0);
	const size_t n = 16 * page();
	uint8_t *sbuf = pages(16);
	struct rcmoe_tmr *smr = reg(p.s, NULL, sbuf, n);
	struct mr_counts before, after;
	mr_counts(&before);
	uint8_t *area = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(area, MAP_FAILED);
	struct rcmoe_tmr *mr = reg(NULL, p.r, area, n);
	move(&p, sbuf, smr, area, mr, n, area, n, 7);
	dereg(NULL, p.r, mr);
	cr_assert_eq(munmap(area, n), 0);
	/* New memory at the same address: the old registration must not be reused for it. */
	uint8_t *again = mmap(area, n, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	cr_assert_eq(again, area, "cannot map memory at %p again", (void *)area);
	mr = reg(NULL, p.r, again, n);
	mr_counts(&after);
	cr_assert_eq(after.regs - before.regs, 2, "%lu ibv_reg_mr calls for two allocations",
		     (unsigned long)(after.regs - before.regs));
	cr_assert_eq(after.deregs - before.deregs, 1, "the first allocation stayed registered");
	move(&p, sbuf, smr, again, mr, n, again, n, 8);
	dereg(NULL, p.r, mr);
	cr_assert_eq(munmap(again, n), 0);
	dereg(p.s, NULL, smr);
	free(sbuf);
	tt_pair_close(&p);
}

/* 4 threads register and deregister, through both comms of a pair, ranges of one shared
 * buffer (whose handles they share with each other) and of a buffer of their own. Each
 * iteration registers the whole shared buffer before a range inside it, so every thread takes
 * handles on registrations whatever the scheduling (on a loaded 2-core machine the threads may
 * not overlap at all); they start together at a barrier so that they usually do overlap. */
struct churn {
	struct tt_pair *p;
	pthread_barrier_t *start;
	uint8_t *shared;
	size_t shared_len;
	unsigned seed;
	int failures;
};

static void *churn_thread(void *arg)
{
	struct churn *c = arg;
	pthread_barrier_wait(c->start);
	const size_t own_len = 4 * page();
	uint8_t *own = aligned_alloc(page(), own_len);
	if (!own) {
		c->failures++;
		return NULL;
	}
	unsigned x = c->seed;
	for (int i = 0; i < 2000; i++) {
		x = x * 1103515245u + 12345u;
		size_t off = (x >> 8) % (c->shared_len / 2);
		size_t len = 1 + (x >> 4) % (c->shared_len / 2);
		struct rcmoe_tsend *s = (x & 1) ? c->p->s : NULL;
		struct rcmoe_trecv *r = s ? NULL : c->p->r;
		struct rcmoe_tmr *a = NULL, *b = NULL, *w = NULL;
		if (TT_OPS->reg_mr(s, r, c->shared, c->shared_len, &w) != RCMOE_OK ||
		    TT_OPS->reg_mr(s, r, c->shared + off, len, &a) != RCMOE_OK ||
		    TT_OPS->reg_mr(s, r, own + (x >> 20) % page(), page(), &b) != RCMOE_OK)
			c->failures++;
		/* drop them in an order that changes */
		struct rcmoe_tmr *order[3] = { a, b, w };
		for (int k = 0; k < 3; k++) {
			struct rcmoe_tmr *m = order[(k + i) % 3];
			if (m && TT_OPS->dereg_mr(s, r, m) != RCMOE_OK)
				c->failures++;
		}
	}
	free(own);
	return NULL;
}

Test(ib_mrcache, concurrent_registration_from_4_threads_stays_balanced)
{
	tt_init(NULL);
	struct tt_pair p;
	tt_pair_open(&p, 0, 0);
	const size_t n = 64 * page();
	uint8_t *shared = pages(64);
	struct ib_hca *h = ib_global.dev[0].hca;
	struct ib_mr_cache_stats s0, s;
	struct mr_counts before, after;
	ib_mr_cache_stats(h, &s0);
	mr_counts(&before);
	pthread_t tid[4];
	struct churn c[4];
	pthread_barrier_t start;
	cr_assert_eq(pthread_barrier_init(&start, NULL, 4), 0);
	for (int i = 0; i < 4; i++) {
		c[i] = (struct churn){
			.p = &p, .start = &start, .shared = shared, .shared_len = n, .seed = 17u * i
		};
		cr_assert_eq(pthread_create(&tid[i], NULL, churn_thread, &c[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(tid[i], NULL);
		cr_assert_eq(c[i].failures, 0, "thread %d: %d reg_mr/dereg_mr calls failed", i,
			     c[i].failures);
	}
	pthread_barrier_destroy(&start);
	mr_counts(&after);
	cr_assert_eq(after.regs - before.regs, after.deregs - before.deregs,
		     "%lu registrations, %lu deregistrations",
		     (unsigned long)(after.regs - before.regs),
		     (unsigned long)(after.deregs - before.deregs));
	cr_assert_eq(after.live, before.live);
	ib_mr_cache_stats(h, &s);
	cr_assert_eq(s.live, s0.live);
	/* at least one hit per iteration: the range inside the whole buffer's registration */
	cr_assert_geq(s.hits - s0.hits, 4 * 2000, "%lu hits in 8000 iterations",
		      (unsigned long)(s.hits - s0.hits));
	/* the pair still works through the memory the threads used */
	struct rcmoe_tmr *smr = reg(p.s, NULL, shared, n / 2);
	struct rcmoe_tmr *rmr = reg(NULL, p.r, shared + n / 2, n / 2);
	move(&p, shared, smr, shared + n / 2, rmr, n / 2, shared + n / 2, n / 2, 3);
	dereg(p.s, NULL, smr);
	dereg(NULL, p.r, rmr);
	free(shared);
	tt_pair_close(&p);
}

/* The cache's own counters, a range only partly inside a registration, and a registration that
 * only narrower handles still hold, which takes no new ones (mr.c says why). */
Test(ib_mrcache, counters_overlap_and_a_registration_held_only_by_narrower_handles)
{
	tt_init(NULL);
	struct tt_pair p;
	tt_pair_open(&p, 0, 0);
	struct ib_hca *h = ib_global.dev[0].hca;
	struct ib_mr_cache_stats s0, s;
	struct mr_counts before, after;
	uint8_t *buf = pages(16);
	ib_mr_cache_stats(h, &s0);
	mr_counts(&before);
	struct rcmoe_tmr *whole = reg(NULL, p.r, buf, 8 * page());
	struct rcmoe_tmr *twice = reg(p.s, NULL, buf, 8 * page());
	struct rcmoe_tmr *inside = reg(NULL, p.r, buf + page() + 1, page());
	struct rcmoe_tmr *across = reg(NULL, p.r, buf + 6 * page(), 4 * page());
	ib_mr_cache_stats(h, &s);
	cr_assert_eq(s.hits - s0.hits, 2);
	cr_assert_eq(s.misses - s0.misses, 2, "a range reaching past a registration shared it");
	cr_assert_eq(s.live - s0.live, 2);
	dereg(NULL, p.r, whole);
	dereg(p.s, NULL, twice);
	/* `inside` holds the first registration alone now: a range in it registers anew */
	struct rcmoe_tmr *later = reg(NULL, p.r, buf + 2 * page(), page());
	ib_mr_cache_stats(h, &s);
	cr_assert_eq(s.misses - s0.misses, 3);
	cr_assert_eq(s.live - s0.live, 3);
	dereg(NULL, p.r, inside);
	dereg(NULL, p.r, later);
	dereg(NULL, p.r, across);
	ib_mr_cache_stats(h, &s);
	cr_assert_eq(s.live, s0.live);
	cr_assert_geq(s.peak, s0.live + 3);
	mr_counts(&after);
	cr_assert_eq(after.regs - before.regs, 3);
	cr_assert_eq(after.deregs - before.deregs, 3);
	free(buf);
	tt_pair_close(&p);
}
