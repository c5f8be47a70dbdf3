/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Window dedup (rcmoe/wdedup.h), CPU reference: exact dedup across the messages of one operation
 * on one connection, optionally composed with LSQ. Layout and rules: docs/stream-format.md.
 *
 * Matching rule (a pure function of the committed history, so that an encoder on another device
 * can reproduce it block by block without a sequential pass): at the start of a message the
 * window has numbered `count` literals of its epoch and holds the last w of them. For full block
 * i of the message, with hash h:
 *   1. window match: the dictionary's latest literal e with hash h, if e >= count + i - w (held by
 *      the receiver whatever the blocks before i turn out to be) and its bytes equal block i's;
 *   2. else message match: f, the first full block of this message with hash h, if f < i,
 *      i - f <= w, f has no window match (so f is a literal) and its bytes equal block i's;
 *   3. else block i is a literal: the next number of the epoch.
 * A short last block is always a literal. The byte compares make it exact: a hash collision only
 * costs a missed duplicate.
 */
#include <stdlib.h>
#include <string.h>

#include "rcmoe/wdedup.h"
#include "codec_internal.h"

/* ---- windows -------------------------------------------------------------------------------- */

static int sizes_ok(uint64_t window_bytes, uint32_t min_block)
{
	return window_bytes >= RCMOE_WDEDUP_MIN_WINDOW && window_bytes <= (1ull << 40) &&
	       min_block >= RCMOE_DEDUP_MIN_BLOCK && min_block % 4 == 0 &&
	       min_block <= window_bytes;
}

rcmoe_status_t rcmoe_wdedup_tx_init(struct rcmoe_wdedup_tx *tx, uint64_t window_bytes,
				    uint32_t min_block)
{
	if (!tx || !sizes_ok(window_bytes, min_block))
		return RCMOE_ERR_INVALID;
	memset(tx, 0, sizeof(*tx));
	tx->window_bytes = window_bytes;
	tx->min_block = min_block;
	return RCMOE_OK;
}

void rcmoe_wdedup_tx_free(struct rcmoe_wdedup_tx *tx)
{
	if (!tx)
		return;
	free(tx->ring);
	free(tx->slot_hash);
	free(tx->slot_num);
	free(tx->slot_len);
	free(tx->dict_key);
	free(tx->dict_val);
	uint64_t wb = tx->window_bytes;
	uint32_t mb = tx->min_block;
	memset(tx, 0, sizeof(*tx));
	tx->window_bytes = wb;
	tx->min_block = mb;
}

rcmoe_status_t rcmoe_wdedup_rx_init(struct rcmoe_wdedup_rx *rx, uint64_t window_bytes,
				    uint32_t min_block)
{
	if (!rx || !sizes_ok(window_bytes, min_block))
		return RCMOE_ERR_INVALID;
	memset(rx, 0, sizeof(*rx));
	rx->window_bytes = window_bytes;
	rx->min_block = min_block;
	return RCMOE_OK;
}

void rcmoe_wdedup_rx_free(struct rcmoe_wdedup_rx *rx)
{
	if (!rx)
		return;
	free(rx->ring);
	free(rx->slot_len);
	uint64_t wb = rx->window_bytes;
	uint32_t mb = rx->min_block;
	memset(rx, 0, sizeof(*rx));
	rx->window_bytes = wb;
	rx->min_block = mb;
}

static uint64_t max_slots(uint64_t window_bytes, uint32_t min_block)
{
	return window_bytes / min_block;
}

/* The windows are allocated at their first message: a connection that never carries a
 * deduplicated message costs nothing. */
static rcmoe_status_t tx_alloc(struct rcmoe_wdedup_tx *tx)
{
	if (tx->ring)
		return RCMOE_OK;
	uint64_t slots = max_slots(tx->window_bytes, tx->min_block), t = 16;
	while (t < 4 * slots)
		t *= 2;
	tx->ring = malloc(tx->window_bytes);
	tx->slot_hash = malloc(slots * sizeof(uint64_t));
	tx->slot_num = calloc(slots, sizeof(uint64_t));
	tx->slot_len = calloc(slots, sizeof(uint32_t));
	tx->dict_key = calloc(t, sizeof(uint64_t));
	tx->dict_val = malloc(t * sizeof(uint64_t));
	tx->dict_size = t;
	if (!tx->ring || !tx->slot_hash || !tx->slot_num || !tx->slot_len || !tx->dict_key ||
	    !tx->dict_val) {
		rcmoe_wdedup_tx_free(tx);
		return RCMOE_ERR_NOMEM;
	}
	return RCMOE_OK;
}

static rcmoe_status_t rx_alloc(struct rcmoe_wdedup_rx *rx)
{
	if (rx->ring)
		return RCMOE_OK;
	rx->ring = malloc(rx->window_bytes);
	rx->slot_len = calloc(max_slots(rx->window_bytes, rx->min_block), sizeof(uint32_t));
	if (!rx->ring || !rx->slot_len) {
		rcmoe_wdedup_rx_free(rx);
		return RCMOE_ERR_NOMEM;
	}
	return RCMOE_OK;
}

/* ---- shared layout -------------------------------------------------------------------------- */

static uint64_t table_bytes(uint64_t nblocks)
{
	return (nblocks * 4 + 15) / 16 * 16;
}

/* A block's hash (rcmoe_dedup_word_hash of each little-endian 64-bit word, a last 4-byte word
 * zero-extended, summed, then rcmoe_dedup_final_hash: what the GPU encoder computes too). The
 * words go in runs of HASH_RUN through a function with a fixed trip count, built for the
 * baseline and for AVX2, which gcc -O2 vectorises (the 64-bit products emulated in 32-bit
 * lanes: about 1.5x on one core); the sum wraps modulo 2^64, so the grouping does not change
 * it. */
#define HASH_RUN 32

static inline __attribute__((always_inline)) uint64_t hash_run(const uint8_t *restrict p,
							       uint64_t i0)
{
	uint64_t sum = 0;
	for (uint64_t i = 0; i < HASH_RUN; i++) {
		uint64_t w;
		memcpy(&w, p + 8 * i, 8);
		sum += rcmoe_dedup_word_hash(w, i0 + i);
	}
	return sum;
}

typedef uint64_t (*hash_run_fn)(const uint8_t *restrict, uint64_t);
__attribute__((noinline)) static uint64_t hash_run_portable(const uint8_t *restrict p, uint64_t i0)
{
	return hash_run(p, i0);
}
#if RCMOE_CPU_HAVE_AVX2
RCMOE_CPU_AVX2 __attribute__((noinline)) static uint64_t hash_run_avx2(const uint8_t *restrict p,
								       uint64_t i0)
{
	return hash_run(p, i0);
}
RCMOE_CPU_AVX512 __attribute__((noinline)) static uint64_t
hash_run_avx512(const uint8_t *restrict p, uint64_t i0)
{
	return hash_run(p, i0);
}
#endif
static const hash_run_fn hash_run_fns[RCMOE_CPU_NISA] = {
	hash_run_portable,
	RCMOE_CPU_IF_AVX2(hash_run_avx2, hash_run_avx512),
};

uint64_t rcmoe_wdedup_block_hash(const uint8_t *p, uint32_t bb)
{
	uint64_t sum = 0, i = 0, nw = bb / 8;
	if (nw >= HASH_RUN) {
		hash_run_fn run = hash_run_fns[rcmoe_cpu_isa()];
		for (; i + HASH_RUN <= nw; i += HASH_RUN)
			sum += run(p + 8 * i, i);
	}
	for (; i < nw; i++)
		sum += rcmoe_dedup_word_hash((uint64_t)rcmoe_ld32(p + 8 * i) |
						     (uint64_t)rcmoe_ld32(p + 8 * i + 4) << 32,
					     i);
	if (bb % 8) /* a last half word */
		sum += rcmoe_dedup_word_hash(rcmoe_ld32(p + 8 * nw), nw);
	return rcmoe_dedup_final_hash(sum, bb);
}

struct preamble {
	uint64_t epoch, base, lit_bytes;
	uint32_t nlit, window;
};

static void preamble_write(uint8_t *p, const struct preamble *pre)
{
	memcpy(p, &pre->epoch, 8);
	memcpy(p + 8, &pre->base, 8);
	rcmoe_st32(p + 16, pre->nlit);
	rcmoe_st32(p + 20, pre->window);
	memcpy(p + 24, &pre->lit_bytes, 8);
}

static void preamble_read(const uint8_t *p, struct preamble *pre)
{
	memcpy(&pre->epoch, p, 8);
	memcpy(&pre->base, p + 8, 8);
	pre->nlit = rcmoe_ld32(p + 16);
	pre->window = rcmoe_ld32(p + 20);
	memcpy(&pre->lit_bytes, p + 24, 8);
}

static int lsq_on(const struct rcmoe_wdedup_cfg *cfg)
{
	return cfg->lsq.bits != 0;
}

static rcmoe_status_t check_cfg(const struct rcmoe_wdedup_cfg *cfg)
{
	uint32_t bb = cfg->block_bytes;
	if (bb < RCMOE_DEDUP_MIN_BLOCK || bb > RCMOE_DEDUP_MAX_BLOCK || bb % 4)
		return RCMOE_ERR_INVALID;
	if (lsq_on(cfg) && (rcmoe_lsq_check_cfg(&cfg->lsq) != RCMOE_OK ||
			    cfg->lsq.block * rcmoe_dt_size(cfg->lsq.dtype) != bb))
		return RCMOE_ERR_INVALID;
	return RCMOE_OK;
}

size_t rcmoe_wdedup_bound(size_t bytes, const struct rcmoe_wdedup_cfg *cfg)
{
	if (!cfg || check_cfg(cfg) != RCMOE_OK || bytes > RCMOE_CODEC_MAX_COUNT)
		return 0;
	uint64_t nb = (bytes + cfg->block_bytes - 1) / cfg->block_bytes, lits = bytes;
	if (lsq_on(cfg)) {
		size_t esize = rcmoe_dt_size(cfg->lsq.dtype);
		if (bytes % esize)
			return 0;
		lits = rcmoe_lsq_bound(bytes / esize, &cfg->lsq);
	}
	return RCMOE_WIRE_HEADER_BYTES + RCMOE_WDEDUP_PREAMBLE_BYTES + table_bytes(nb) + lits;
}

/* ---- sender --------------------------------------------------------------------------------- */

/* The dictionary's latest literal with hash h, or -1. Loaded to at most half, so a probe ends. */
static int64_t dict_find(const struct rcmoe_wdedup_tx *tx, uint64_t h)
{
	uint64_t m = tx->dict_size - 1, s = h & m;
	while (tx->dict_key[s]) {
		if (tx->dict_key[s] == h)
			return (int64_t)tx->dict_val[s];
		s = (s + 1) & m;
	}
	return -1;
}

/* Numbers only grow, so the latest insert of a hash is its largest literal. */
static void dict_put(struct rcmoe_wdedup_tx *tx, uint64_t h, uint64_t e)
{
	uint64_t m = tx->dict_size - 1, s = h & m;
	while (tx->dict_key[s] && tx->dict_key[s] != h)
		s = (s + 1) & m;
	tx->dict_key[s] = h;
	tx->dict_val[s] = e;
	tx->inserted++;
}

/* The dictionary again from the ring alone: what the window holds, nothing older. Lookups
 * give the same answers before and after (an entry that goes is out of the window). */
static void dict_rebuild(struct rcmoe_wdedup_tx *tx)
{
	memset(tx->dict_key, 0, tx->dict_size * sizeof(uint64_t));
	tx->inserted = 0;
	uint64_t lo = tx->count > tx->w ? tx->count - tx->w : 0;
	for (uint64_t e = lo; e < tx->count; e++) {
		uint64_t s = e % tx->w;
		if (tx->slot_num[s] == e + 1 && tx->slot_len[s] == tx->bb)
			dict_put(tx, tx->slot_hash[s], e);
	}
}

/* Blocks ahead of the one being looked up whose dictionary and ring slots are fetched early
 * (tx_analyse). */
#define WD_AHEAD 32

/* Per-message analysis, before anything is committed. */
struct tx_msg {
	uint64_t nb, nfull, nlit, lit_total;
	uint64_t *hash;
	int64_t *ref; /* literal number block i carries or refers to */
	uint8_t *lit; /* 1: literal */
	uint32_t *first;
};

static void tx_msg_free(struct tx_msg *m)
{
	free(m->hash);
	free(m->ref);
	free(m->lit);
	free(m->first);
}

static rcmoe_status_t tx_analyse(const struct rcmoe_wdedup_tx *tx, int fresh, uint64_t count,
				 uint64_t w, const uint8_t *in, uint64_t bytes, uint32_t bb,
				 struct tx_msg *m)
{
	uint64_t i, tsize = 16;
	m->nb = (bytes + bb - 1) / bb;
	m->nfull = bytes / bb;
	while (tsize < 2 * m->nfull)
		tsize *= 2;
	uint64_t nb1 = m->nb ? m->nb : 1;
	m->hash = malloc(nb1 * sizeof(uint64_t));
	m->ref = malloc(nb1 * sizeof(int64_t));
	m->lit = malloc(nb1);
	m->first = malloc(nb1 * sizeof(uint32_t));
	uint64_t *keys = calloc(tsize, sizeof(uint64_t));
	uint32_t *firsts = malloc(tsize * sizeof(uint32_t));
	int64_t *win = malloc(nb1 * sizeof(int64_t));
	if (!m->hash || !m->ref || !m->lit || !m->first || !keys || !firsts || !win) {
		free(keys);
		free(firsts);
		free(win);
		tx_msg_free(m);
		return RCMOE_ERR_NOMEM;
	}
	/* hashes, and the first block of each hash in the message */
	for (i = 0; i < m->nfull; i++) {
		uint64_t h = rcmoe_wdedup_block_hash(in + i * bb, bb), s = h & (tsize - 1);
		m->hash[i] = h;
		while (keys[s] != 0 && keys[s] != h)
			s = (s + 1) & (tsize - 1);
		if (keys[s] == 0) {
			keys[s] = h;
			firsts[s] = (uint32_t)i;
		}
		m->first[i] = firsts[s];
		win[i] = -1;
	}
	/* Window matches. The dictionary and the ring are megabytes, so nearly every lookup and
	 * every compare misses the cache: first the lookups, each block's dictionary slot fetched
	 * WD_AHEAD blocks before it is probed, then the compares of the candidates found, their
	 * ring slots fetched the same way ahead, so that the misses overlap. The same answers as
	 * one block at a time: nothing here writes the window. */
	if (!fresh) {
		uint64_t dm = tx->dict_size - 1;
		for (i = 0; i < m->nfull; i++) {
			if (i + WD_AHEAD < m->nfull) {
				uint64_t s = m->hash[i + WD_AHEAD] & dm;
				__builtin_prefetch(&tx->dict_key[s]);
				__builtin_prefetch(&tx->dict_val[s]);
			}
			int64_t e = dict_find(tx, m->hash[i]);
			if (e >= 0 && (uint64_t)e + w >= count + i)
				win[i] = e; /* a candidate, compared below */
		}
		for (i = 0; i < m->nfull; i++) {
			if (i + WD_AHEAD < m->nfull && win[i + WD_AHEAD] >= 0) {
				uint64_t slot = (uint64_t)win[i + WD_AHEAD] % w;
				__builtin_prefetch(&tx->slot_num[slot]);
				__builtin_prefetch(&tx->slot_len[slot]);
				for (uint32_t b = 0; b < bb; b += 64)
					__builtin_prefetch(tx->ring + slot * bb + b);
			}
			if (win[i] < 0)
				continue;
			uint64_t slot = (uint64_t)win[i] % w;
			if (tx->slot_num[slot] != (uint64_t)win[i] + 1 ||
			    tx->slot_len[slot] != bb ||
			    memcmp(tx->ring + slot * bb, in + i * bb, bb) != 0)
				win[i] = -1;
		}
	}
	/* then the literal numbers, in order */
	m->nlit = 0;
	m->lit_total = 0;
	for (i = 0; i < m->nb; i++) {
		uint32_t f = i < m->nfull ? m->first[i] : (uint32_t)i;
		if (i < m->nfull && win[i] >= 0) {
			m->ref[i] = win[i];
			m->lit[i] = 0;
		} else if (i < m->nfull && f < i && i - f <= w && win[f] < 0 &&
			   memcmp(in + (uint64_t)f * bb, in + i * bb, bb) == 0) {
			m->ref[i] = m->ref[f];
			m->lit[i] = 0;
		} else {
			m->ref[i] = (int64_t)(count + m->nlit);
			m->lit[i] = 1;
			m->nlit++;
			m->lit_total += bytes - i * bb < bb ? bytes - i * bb : bb;
		}
	}
	free(keys);
	free(firsts);
	free(win);
	return RCMOE_OK;
}

/* The message is on its way: the receiver will hold its literals, so the window does too. */
static void tx_commit(struct rcmoe_wdedup_tx *tx, int fresh, const struct rcmoe_wdedup_cfg *cfg,
		      const uint8_t *in, uint64_t bytes, const struct tx_msg *m)
{
	uint32_t bb = cfg->block_bytes;
	if (fresh) {
		tx->epoch++;
		tx->op = cfg->op;
		tx->bb = bb;
		tx->w = tx->window_bytes / bb;
		tx->count = 0;
		memset(tx->slot_num, 0, max_slots(tx->window_bytes, tx->min_block) * 8);
		memset(tx->dict_key, 0, tx->dict_size * sizeof(uint64_t));
		tx->inserted = 0;
	}
	uint64_t w = tx->w, end = tx->count + m->nlit, adds = m->nlit < w ? m->nlit : w;
	if (tx->inserted + adds > tx->dict_size / 2)
		dict_rebuild(tx);
	for (uint64_t i = 0; i < m->nb; i++) {
		if (i + WD_AHEAD < m->nfull && m->lit[i + WD_AHEAD]) /* see tx_analyse */
			__builtin_prefetch(
				&tx->dict_key[m->hash[i + WD_AHEAD] & (tx->dict_size - 1)], 1);
		if (!m->lit[i] || (uint64_t)m->ref[i] + w < end)
			continue; /* a duplicate, or gone from the window by the message's end */
		uint64_t e = (uint64_t)m->ref[i], s = e % w;
		uint32_t sz = (uint32_t)(bytes - i * bb < bb ? bytes - i * bb : bb);
		memcpy(tx->ring + s * bb, in + i * bb, sz);
		tx->slot_num[s] = e + 1;
		tx->slot_len[s] = sz;
		if (sz == bb) {
			tx->slot_hash[s] = m->hash[i];
			dict_put(tx, m->hash[i], e);
		}
	}
	tx->count = end;
	tx->last_blocks = m->nb;
	tx->last_duplicates = m->nb - m->nlit;
	tx->last_saved_bytes = (m->nb - m->nlit) * bb;
}

/* The literal section: the literal blocks as they are, or one LSQ stream of them. */
static rcmoe_status_t tx_literals(const struct rcmoe_wdedup_cfg *cfg, const uint8_t *in,
				  uint64_t bytes, const struct tx_msg *m, uint8_t *out, size_t room,
				  uint64_t *out_len)
{
	uint32_t bb = cfg->block_bytes;
	uint8_t *lits = out;
	if (lsq_on(cfg)) {
		lits = malloc(m->lit_total ? m->lit_total : 1);
		if (!lits)
			return RCMOE_ERR_NOMEM;
	}
	uint64_t off = 0;
	for (uint64_t i = 0; i < m->nb; i++) {
		if (!m->lit[i])
			continue;
		uint64_t sz = bytes - i * bb < bb ? bytes - i * bb : bb;
		memcpy(lits + off, in + i * bb, sz);
		off += sz;
	}
	*out_len = off;
	if (!lsq_on(cfg))
		return RCMOE_OK;
	size_t len = 0, esize = rcmoe_dt_size(cfg->lsq.dtype);
	rcmoe_status_t st = rcmoe_lsq_encode(lits, off / esize, &cfg->lsq, out, room, &len);
	free(lits);
	*out_len = len;
	return st;
}

rcmoe_status_t rcmoe_wdedup_encode(struct rcmoe_wdedup_tx *tx, const struct rcmoe_wdedup_cfg *cfg,
				   const void *src, size_t bytes, void *dst, size_t cap,
				   size_t *len, int *committed)
{
	if (!tx || !cfg || (!src && bytes) || !dst || !len || !committed)
		return RCMOE_ERR_INVALID;
	*committed = 0;
	size_t bound = rcmoe_wdedup_bound(bytes, cfg);
	uint32_t bb = cfg->block_bytes;
	if (bound == 0 || bb < tx->min_block || bb > tx->window_bytes ||
	    (bytes + bb - 1) / bb > UINT32_MAX)
		return RCMOE_ERR_INVALID;
	if (cap < bound)
		return RCMOE_ERR_OVERFLOW;
	RCMOE_CHECK(tx_alloc(tx));

	uint64_t nb = (bytes + bb - 1) / bb;
	/* Another operation (or block size) starts an epoch; so does running out of u32 numbers. */
	int fresh =
		tx->epoch == 0 || cfg->op != tx->op || bb != tx->bb || tx->count + nb > UINT32_MAX;
	uint64_t count = fresh ? 0 : tx->count, w = tx->window_bytes / bb;
	struct tx_msg m = { 0 };
	RCMOE_CHECK(tx_analyse(tx, fresh, count, w, src, bytes, bb, &m));

	uint8_t *payload = (uint8_t *)dst + RCMOE_WIRE_HEADER_BYTES;
	uint8_t *table = payload + RCMOE_WDEDUP_PREAMBLE_BYTES;
	uint64_t tb = table_bytes(nb), lit_len = 0;
	memset(table, 0, tb);
	for (uint64_t i = 0; i < nb; i++)
		rcmoe_st32(table + 4 * i, (uint32_t)m.ref[i]);
	size_t used = RCMOE_WIRE_HEADER_BYTES + RCMOE_WDEDUP_PREAMBLE_BYTES + tb;
	rcmoe_status_t st = tx_literals(cfg, src, bytes, &m, table + tb, cap - used, &lit_len);
	if (st != RCMOE_OK)
		goto free_msg;
	struct preamble pre = {
		.epoch = fresh ? tx->epoch + 1 : tx->epoch,
		.base = count,
		.lit_bytes = lit_len,
		.nlit = (uint32_t)m.nlit,
		.window = (uint32_t)w,
	};
	preamble_write(payload, &pre);
	struct rcmoe_wire_header h = {
		.magic = RCMOE_WIRE_MAGIC,
		.version = RCMOE_WIRE_VERSION,
		.codec = RCMOE_CODEC_WDEDUP,
		.dtype = (uint8_t)(lsq_on(cfg) ? cfg->lsq.dtype : 0),
		.bits = (uint8_t)(lsq_on(cfg) ? cfg->lsq.bits : 0),
		.block = bb,
		.count = bytes,
		.op_id = cfg->op_id,
		.payload_len = RCMOE_WDEDUP_PREAMBLE_BYTES + tb + lit_len,
	};
	rcmoe_wire_write(dst, &h);
	*len = RCMOE_WIRE_HEADER_BYTES + h.payload_len;
	if (*len < bytes) {
		tx_commit(tx, fresh, cfg, src, bytes, &m);
		*committed = 1;
	} else { /* sent raw: nothing removed */
		tx->last_blocks = nb;
		tx->last_duplicates = 0;
		tx->last_saved_bytes = 0;
	}
free_msg:
	tx_msg_free(&m);
	return st;
}

/* ---- receiver ------------------------------------------------------------------------------- */

static rcmoe_status_t refuse(const char **why, const char *what)
{
	if (why)
		*why = what;
	return RCMOE_ERR_MALFORMED;
}

rcmoe_status_t rcmoe_wdedup_validate(const struct rcmoe_wdedup_rx *rx, const void *src, size_t len,
				     size_t dst_bytes, struct rcmoe_wire_header *hdr,
				     const char **why)
{
	struct rcmoe_wire_header h;
	struct preamble pre;
	if (why)
		*why = "bad arguments";
	if (!rx || !src)
		return RCMOE_ERR_INVALID;
	rcmoe_status_t st = rcmoe_wire_parse(src, len, &h);
	if (st != RCMOE_OK) {
		if (why)
			*why = "bad header";
		return st;
	}
	if (h.codec != RCMOE_CODEC_WDEDUP)
		return refuse(why, "not a window-dedup stream");
	if (h.count > dst_bytes) {
		if (why)
			*why = "decodes to more than the receive holds";
		return RCMOE_ERR_OVERFLOW;
	}
	uint32_t bb = h.block;
	if (bb < rx->min_block || bb > rx->window_bytes)
		return refuse(why, "block size outside what this receiver's window holds");
	uint64_t nb = (h.count + bb - 1) / bb, tb = table_bytes(nb), tail = h.count % bb;
	const uint8_t *payload = (const uint8_t *)src + RCMOE_WIRE_HEADER_BYTES;
	if (h.payload_len < RCMOE_WDEDUP_PREAMBLE_BYTES + tb)
		return refuse(why, "shorter than its block table");
	preamble_read(payload, &pre);
	uint64_t w = rx->window_bytes / bb;
	int fresh = pre.epoch != rx->epoch;
	if (pre.epoch == 0)
		return refuse(why, "epoch 0");
	if (fresh && pre.base != 0)
		return refuse(why, "a new epoch that does not start at literal 0");
	if (!fresh && (pre.base != rx->count || bb != rx->bb))
		return refuse(why, "out of step with the receiver's window");
	if (pre.window > w)
		return refuse(why,
			      "the sender's window is larger than the receiver's (set the same "
			      "RCMOE_DEDUP_WINDOW on every rank)");
	const uint8_t *table = payload + RCMOE_WDEDUP_PREAMBLE_BYTES;
	uint64_t cur = pre.base;
	for (uint64_t i = 0; i < nb; i++) {
		uint64_t e = rcmoe_ld32(table + 4 * i);
		uint64_t sz = h.count - i * bb < bb ? h.count - i * bb : bb;
		if (e == cur) {
			cur++;
			continue;
		}
		if (e > cur)
			return refuse(why, "forward reference");
		if (e + w < cur)
			return refuse(why, "reference out of the window");
		uint64_t target = e >= pre.base ? bb : rx->slot_len[e % w];
		if (target != sz)
			return refuse(why, "reference to a block of another length");
		if (i == nb - 1 && tail)
			return refuse(why, "a short last block that is not a literal");
	}
	for (uint64_t b = nb * 4; b < tb; b++)
		if (table[b])
			return refuse(why, "table padding not zero");
	if (cur - pre.base != pre.nlit)
		return refuse(why, "literal count differs from the table");
	/* a short last block is a literal (checked above), and the last one */
	uint64_t lit_total = pre.nlit * (uint64_t)bb - (tail ? bb - tail : 0);
	if (h.payload_len != RCMOE_WDEDUP_PREAMBLE_BYTES + tb + pre.lit_bytes)
		return refuse(why, "payload length differs from its sections");
	if (h.bits == 0) {
		if (pre.lit_bytes != lit_total)
			return refuse(why, "literal bytes differ from the literal blocks");
	} else {
		struct rcmoe_wire_header ih;
		uint32_t esize = rcmoe_dt_size(h.dtype);
		const uint8_t *inner = table + tb;
		if (rcmoe_codec_validate(inner, pre.lit_bytes, lit_total, &ih) != RCMOE_OK ||
		    ih.codec != RCMOE_CODEC_LSQ || ih.dtype != h.dtype || ih.bits != h.bits ||
		    (uint64_t)ih.block * esize != bb || ih.count * esize != lit_total ||
		    RCMOE_WIRE_HEADER_BYTES + ih.payload_len != pre.lit_bytes)
			return refuse(why, "the literals' LSQ stream is malformed");
	}
	if (hdr)
		*hdr = h;
	if (why)
		*why = NULL;
	return RCMOE_OK;
}

size_t rcmoe_wdedup_decode_scratch(const struct rcmoe_wire_header *hdr)
{
	if (!hdr || hdr->bits == 0)
		return 0;
	return hdr->count; /* at most every block is a literal */
}

rcmoe_status_t rcmoe_wdedup_decode(struct rcmoe_wdedup_rx *rx, const void *src, size_t len,
				   void *dst, size_t dst_bytes, void *scratch, size_t scratch_bytes,
				   size_t *out_bytes, const char **why)
{
	struct rcmoe_wire_header h;
	struct preamble pre;
	if (!dst || !out_bytes)
		return RCMOE_ERR_INVALID;
	rcmoe_status_t st = rcmoe_wdedup_validate(rx, src, len, dst_bytes, &h, why);
	if (st != RCMOE_OK)
		return st;
	RCMOE_CHECK(rx_alloc(rx));
	const uint8_t *payload = (const uint8_t *)src + RCMOE_WIRE_HEADER_BYTES;
	preamble_read(payload, &pre);
	uint32_t bb = h.block;
	uint64_t nb = (h.count + bb - 1) / bb, tb = table_bytes(nb), w = rx->window_bytes / bb;
	const uint8_t *table = payload + RCMOE_WDEDUP_PREAMBLE_BYTES;
	const uint8_t *lits = table + tb;
	uint8_t *owned = NULL;
	if (h.bits) {
		size_t need = rcmoe_wdedup_decode_scratch(&h), got;
		uint8_t *buf = scratch;
		if (scratch_bytes < need) {
			buf = owned = malloc(need ? need : 1);
			if (!buf)
				return RCMOE_ERR_NOMEM;
		}
		st = rcmoe_codec_decode(lits, pre.lit_bytes, buf, need, &got);
		if (st != RCMOE_OK) {
			free(owned);
			return st;
		}
		lits = buf;
	}
	/* References read the window as it was before this message, and this message's own
	 * literals from the literal section; then the window takes the literals. */
	uint8_t *out = dst;
	uint64_t j = 0;
	for (uint64_t i = 0; i < nb; i++) {
		uint64_t e = rcmoe_ld32(table + 4 * i);
		uint64_t sz = h.count - i * bb < bb ? h.count - i * bb : bb;
		if (e == pre.base + j) {
			memcpy(out + i * bb, lits + j * bb, sz);
			j++;
		} else if (e >= pre.base) {
			memcpy(out + i * bb, lits + (e - pre.base) * bb, sz);
		} else {
			memcpy(out + i * bb, rx->ring + (e % w) * bb, sz);
		}
	}
	if (pre.epoch != rx->epoch) {
		rx->epoch = pre.epoch;
		rx->bb = bb;
		rx->w = w;
		rx->count = 0;
	}
	uint64_t end = pre.base + pre.nlit;
	for (j = 0; j < pre.nlit; j++) {
		uint64_t e = pre.base + j;
		if (e + w < end)
			continue;
		/* only the last literal may be short: the message's tail, always a literal */
		uint64_t sz = j == pre.nlit - 1 && h.count % bb ? h.count % bb : bb;
		memcpy(rx->ring + (e % w) * bb, lits + j * bb, sz);
		rx->slot_len[e % w] = (uint32_t)sz;
	}
	rx->count = end;
	rx->last_blocks = nb;
	rx->last_duplicates = nb - pre.nlit;
	rx->last_saved_bytes = (nb - pre.nlit) * bb;
	free(owned);
	*out_bytes = h.count;
	return RCMOE_OK;
}
