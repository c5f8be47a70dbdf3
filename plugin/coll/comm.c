/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Collective comm setup: contexts, devices, listen, and connect, which builds the full mesh of
 * transport connections between the ranks and exchanges a hello on each one. The hello names the
 * sending rank and connection set, and carries the rank's all-reduce settings: ranks that
 * disagree would compute different things from the same call, so connect fails on every rank,
 * with a WARN naming the rank and the setting, and NCCL keeps all-reduce on its own ring.
 *
 * NCCL calls init and devices for every communicator, whether NCCL_COLLNET_ENABLE is set or not:
 * they cost a context and a count here, nothing else (no thread, no socket). listen and connect
 * come only when NCCL sets collNet up.
 *
 * Registrations (posted_dest, coll.h): each hello buffer on its own connection while the mesh is
 * built; NCCL's host regions at regMr and the call slots' scratch on first use, each once, on
 * one connection of the mesh (reg_comm).
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rcmoe/log.h"
#include "coll.h"
#include "core.h"

#define HELLO_MAGIC   0x52414352u /* "RCAR" little-endian */
#define HELLO_VERSION 1
#define HELLO_BYTES   64

static struct rcmoe_coll_ctx default_ctx;
static void (*settings_hook)(int rank, struct rcmoe_ar_settings *s);

void rcmoe_coll_set_settings_hook(void (*hook)(int rank, struct rcmoe_ar_settings *s))
{
	settings_hook = hook;
}

struct rcmoe_coll_ctx *rcmoe_coll_default_ctx(void)
{
	return &default_ctx;
}

rcmoe_status_t rcmoe_coll_init(struct rcmoe_coll_ctx **out, uint64_t comm_id,
			       ncclDebugLogger_t logger)
{
	int ndev;
	rcmoe_log_set(logger);
	/* The net side's setup (parameters, transport); NCCL initialises the net table first. */
	RCMOE_CHECK(rcmoe_core_devices(&ndev));
	struct rcmoe_coll_ctx *ctx = out ? calloc(1, sizeof(*ctx)) : &default_ctx;
	if (!ctx)
		return RCMOE_ERR_NOMEM;
	ctx->comm_id = comm_id;
	clock_gettime(CLOCK_MONOTONIC, &ctx->last_dump);
	if (out)
		*out = ctx;
	return RCMOE_OK;
}

/* ---- the hello ---- */

struct hello {
	int set;
	int rank;
	int nranks;
	int gpu; /* the plugin claims GPU buffers on that rank */
	struct rcmoe_ar_settings s;
};

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static void put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

/* Layout (little-endian): magic u32, version u16, set u8, gpu u8, rank u32, nranks u32, codec
 * u32, bits u32, density f64, min_bytes u64, seed u64, block u32, 12 zero bytes. */
static void hello_encode(const struct hello *h, uint8_t *out)
{
	uint64_t d;
	memset(out, 0, HELLO_BYTES);
	put32(out, HELLO_MAGIC);
	out[4] = HELLO_VERSION & 0xff;
	out[5] = HELLO_VERSION >> 8;
	out[6] = (uint8_t)h->set;
	out[7] = (uint8_t)h->gpu;
	put32(out + 8, (uint32_t)h->rank);
	put32(out + 12, (uint32_t)h->nranks);
	put32(out + 16, (uint32_t)h->s.codec);
	put32(out + 20, (uint32_t)h->s.bits);
	memcpy(&d, &h->s.density, 8);
	put64(out + 24, d);
	put64(out + 32, h->s.min_bytes);
	put64(out + 40, h->s.seed);
	put32(out + 48, h->s.block);
}

static rcmoe_status_t hello_decode(const uint8_t *in, size_t len, struct hello *h)
{
	if (len != HELLO_BYTES || get32(in) != HELLO_MAGIC ||
	    (in[4] | (unsigned)in[5] << 8) != HELLO_VERSION)
		return RCMOE_ERR_MALFORMED;
	uint64_t d = get64(in + 24);
	h->set = in[6];
	h->gpu = in[7];
	h->rank = (int)get32(in + 8);
	h->nranks = (int)get32(in + 12);
	h->s.codec = (int)get32(in + 16);
	h->s.bits = (int)get32(in + 20);
	memcpy(&h->s.density, &d, 8);
	h->s.min_bytes = get64(in + 32);
	h->s.seed = get64(in + 40);
	h->s.block = get32(in + 48);
	return RCMOE_OK;
}

/* WARN for every setting in which `peer` differs from us; 1 if any does. */
static int settings_differ(int rank, int peer, const struct hello *mine, const struct hello *theirs)
{
	const struct rcmoe_ar_settings *a = &mine->s, *b = &theirs->s;
	int bad = 0;
#define DIFF(cond, fmt, ...)                                                                       \
	do {                                                                                       \
		if (cond) {                                                                        \
			RCMOE_WARN("collNet rank %d: rank %d has " fmt, rank, peer, __VA_ARGS__);  \
			bad = 1;                                                                   \
		}                                                                                  \
	} while (0)
	DIFF(a->codec != b->codec, "all-reduce codec %s, this rank %s",
	     rcmoe_ar_mode_name(b->codec), rcmoe_ar_mode_name(a->codec));
	DIFF(a->density != b->density, "RCMOE_AR_DENSITY=%g, this rank %g", b->density, a->density);
	DIFF(a->bits != b->bits, "RCMOE_AR_BITS=%d, this rank %d", b->bits, a->bits);
	DIFF(a->min_bytes != b->min_bytes, "RCMOE_AR_MIN_BYTES=%llu, this rank %llu",
	     (unsigned long long)b->min_bytes, (unsigned long long)a->min_bytes);
	DIFF(a->block != b->block, "RCMOE_LSQ_BLOCK=%u, this rank %u", b->block, a->block);
	DIFF(a->seed != b->seed, "RCMOE_SEED=%llu, this rank %llu", (unsigned long long)b->seed,
	     (unsigned long long)a->seed);
	DIFF(mine->gpu != theirs->gpu, "GPU buffers %s, this rank %s",
	     theirs->gpu ? "claimed" : "not claimed", mine->gpu ? "claimed" : "not claimed");
#undef DIFF
	return bad;
}

/* ---- listen and connect ---- */

rcmoe_status_t rcmoe_coll_listen(struct rcmoe_coll_ctx *ctx, int dev, void *handle,
				 struct rcmoe_coll_listen **out)
{
	rcmoe_status_t st;
	int ndev;
	RCMOE_CHECK(rcmoe_core_devices(&ndev));
	if (dev < 0 || dev >= ndev) {
		RCMOE_WARN("collNet listen on device %d, but the transport has %d", dev, ndev);
		return RCMOE_ERR_INVALID;
	}
	struct rcmoe_coll_listen *l = calloc(1, sizeof(*l));
	if (!l)
		return RCMOE_ERR_NOMEM;
	l->ctx = ctx ? ctx : &default_ctx;
	l->dev = dev;
	memset(handle, 0, NCCL_NET_HANDLE_MAXSIZE);
	RCMOE_CHECK_GOTO(rcmoe_core_transport()->listen(dev, handle, &l->tlisten), st, free_listen);
	*out = l;
	return RCMOE_OK;

free_listen:
	free(l);
	return st;
}

/* One outgoing connection being made, or one accepted one whose hello is awaited. */
struct link {
	int peer, set; /* outgoing: known; incoming: from the hello */
	struct rcmoe_tsend *tsend;
	struct rcmoe_trecv *trecv;
	struct rcmoe_treq *req;
	struct rcmoe_tmr *mr; /* posted_dest: `hello` registered on this link's connection */
	int done;
	size_t got;
	uint8_t hello[HELLO_BYTES];
};

static rcmoe_status_t place_hello(void *arg, size_t wire_len, uint32_t flags, void **dest,
				  struct rcmoe_tmr **mr)
{
	struct link *k = arg;
	/* Posted ahead (IB): asked for the receive's size before anything arrived; the length
	 * and flags that came are checked once it is done (mesh_step_in, take_hello). */
	int ahead = rcmoe_core_transport()->needs_posted_dest && flags == RCMOE_PLACE_ANY;
	if (wire_len != HELLO_BYTES || (flags != 0 && !ahead))
		return RCMOE_ERR_MALFORMED;
	*dest = k->hello;
	*mr = k->mr;
	return RCMOE_OK;
}

/* posted_dest: register the link's hello buffer on its connection (its transfer needs it). */
static rcmoe_status_t link_reg(struct rcmoe_coll_comm *c, struct link *k)
{
	const struct rcmoe_transport_ops *t = rcmoe_core_transport();
	if (!c->posted_dest || k->mr)
		return RCMOE_OK;
	rcmoe_status_t st =
		t->reg_mr(k->tsend, k->tsend ? NULL : k->trecv, k->hello, HELLO_BYTES, &k->mr);
	if (st != RCMOE_OK) {
		k->mr = NULL;
		RCMOE_WARN("collNet rank %d: cannot register a hello buffer with the %s transport: "
			   "%s",
			   c->rank, t->name, rcmoe_status_str(st));
	}
	return st;
}

/* Drop it: once its hello is done, or before the link's connection closes (a mesh that failed:
 * the transfer is abandoned with the connection, and the memory goes after). */
static void link_unreg(struct rcmoe_coll_comm *c, struct link *k)
{
	const struct rcmoe_transport_ops *t = rcmoe_core_transport();
	if (!k->mr)
		return;
	if (t->dereg_mr(k->tsend, k->tsend ? NULL : k->trecv, k->mr) != RCMOE_OK)
		RCMOE_WARN("collNet rank %d: deregistering a hello buffer failed", c->rank);
	k->mr = NULL;
}

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Everything the mesh needs, made and tested without blocking, until done or the deadline. */
struct mesh {
	struct rcmoe_coll_comm *c;
	struct rcmoe_coll_listen *l;
	void **handles;
	struct link *out, *in; /* [nlinks] */
	int nlinks, nout_done, naccepted, nin_done;
	struct hello mine;
	int mismatch;
};

static rcmoe_status_t mesh_step_out(struct mesh *m)
{
	const struct rcmoe_transport_ops *t = rcmoe_core_transport();
	for (int i = 0; i < m->nlinks; i++) {
		struct link *k = &m->out[i];
		if (k->done)
			continue;
		if (!k->tsend) {
			RCMOE_CHECK(t->connect(m->l->dev, m->handles[k->peer], &k->tsend));
			if (!k->tsend)
				continue;
			struct hello h = m->mine;
			h.set = k->set;
			hello_encode(&h, k->hello);
			RCMOE_CHECK(link_reg(m->c, k));
		}
		if (!k->req) {
			RCMOE_CHECK(
				t->isend(k->tsend, k->hello, HELLO_BYTES, k->mr, 0, 0, &k->req));
			if (!k->req)
				continue;
		}
		int done = 0;
		size_t len;
		uint32_t flags;
		rcmoe_status_t st = t->test(k->req, &done, &len, &flags);
		if (st != RCMOE_OK) {
			k->req = NULL;
			RCMOE_WARN("collNet rank %d: sending the hello to rank %d failed: %s",
				   m->c->rank, k->peer, rcmoe_status_str(st));
			return st;
		}
		if (done) {
			k->req = NULL;
			k->done = 1;
			m->nout_done++;
			link_unreg(m->c, k);
		}
	}
	return RCMOE_OK;
}

/* An accepted connection's hello arrived: whose is it, and does it agree with ours? */
static rcmoe_status_t take_hello(struct mesh *m, struct link *k)
{
	struct rcmoe_coll_comm *c = m->c;
	struct hello h = { .set = -1, .rank = -1, .nranks = -1 };
	if (hello_decode(k->hello, k->got, &h) != RCMOE_OK || h.nranks != c->nranks || h.rank < 0 ||
	    h.rank >= c->nranks || h.rank == c->rank || h.set < 0 || h.set >= RCMOE_COLL_NSETS) {
		RCMOE_WARN("collNet rank %d of %d: a connection sent a bad hello (rank %d of %d, "
			   "set %d)",
			   c->rank, c->nranks, h.rank, h.nranks, h.set);
		return RCMOE_ERR_MALFORMED;
	}
	struct coll_peer *p = &c->peers[h.rank];
	if (p->trecv[h.set]) {
		RCMOE_WARN("collNet rank %d: rank %d connected twice (set %d)", c->rank, h.rank,
			   h.set);
		return RCMOE_ERR_MALFORMED;
	}
	p->trecv[h.set] = k->trecv;
	k->trecv = NULL; /* the comm owns it now */
	k->peer = h.rank;
	k->set = h.set;
	/* Every hello is checked, so each rank names every rank it disagrees with. */
	if (h.set == RCMOE_COLL_SET_A)
		m->mismatch |= settings_differ(c->rank, h.rank, &m->mine, &h);
	return RCMOE_OK;
}

static rcmoe_status_t mesh_step_in(struct mesh *m)
{
	const struct rcmoe_transport_ops *t = rcmoe_core_transport();
	while (m->naccepted < m->nlinks) {
		struct link *k = &m->in[m->naccepted];
		RCMOE_CHECK(t->accept(m->l->tlisten, &k->trecv));
		if (!k->trecv)
			break;
		m->naccepted++;
		RCMOE_CHECK(link_reg(m->c, k));
	}
	for (int i = 0; i < m->naccepted; i++) {
		struct link *k = &m->in[i];
		if (k->done)
			continue;
		if (!k->req) {
			RCMOE_CHECK(t->irecv(k->trecv, HELLO_BYTES, 0, place_hello, k, &k->req));
			if (!k->req)
				continue;
		}
		int done = 0;
		uint32_t flags;
		rcmoe_status_t st = t->test(k->req, &done, &k->got, &flags);
		if (st != RCMOE_OK) {
			k->req = NULL;
			RCMOE_WARN("collNet rank %d: receiving a hello failed: %s", m->c->rank,
				   rcmoe_status_str(st));
			return st;
		}
		if (!done)
			continue;
		k->req = NULL;
		k->done = 1;
		m->nin_done++;
		link_unreg(m->c, k); /* before take_hello gives its connection to the comm */
		if (flags != 0) {
			RCMOE_WARN("collNet rank %d: a connection sent a hello with flags 0x%x",
				   m->c->rank, flags);
			return RCMOE_ERR_MALFORMED;
		}
		RCMOE_CHECK(take_hello(m, k));
	}
	return RCMOE_OK;
}

/* Close every transport comm the mesh made (the comm's and those still in its links). */
static void mesh_close(struct mesh *m)
{
	const struct rcmoe_transport_ops *t = rcmoe_core_transport();
	for (int i = 0; i < m->nlinks; i++) {
		link_unreg(m->c, &m->out[i]);
		link_unreg(m->c, &m->in[i]);
		if (m->out[i].tsend)
			t->close_send(m->out[i].tsend);
		if (m->in[i].trecv)
			t->close_recv(m->in[i].trecv);
	}
	for (int p = 0; p < m->c->nranks; p++)
		for (int s = 0; s < RCMOE_COLL_NSETS; s++)
			if (m->c->peers[p].trecv[s]) {
				t->close_recv(m->c->peers[p].trecv[s]);
				m->c->peers[p].trecv[s] = NULL;
			}
}

static rcmoe_status_t mesh_build(struct mesh *m)
{
	struct rcmoe_coll_comm *c = m->c;
	const struct rcmoe_params *p = rcmoe_core_params();
	double deadline = now_s() + (double)p->socket_timeout;
	int i = 0;
	/* Outgoing: to every peer, set A then set B. */
	for (int peer = 0; peer < c->nranks; peer++)
		for (int s = 0; s < RCMOE_COLL_NSETS && peer != c->rank; s++, i++) {
			m->out[i].peer = peer;
			m->out[i].set = s;
		}
	while (m->nout_done < m->nlinks || m->nin_done < m->nlinks) {
		RCMOE_CHECK(mesh_step_out(m));
		RCMOE_CHECK(mesh_step_in(m));
		if (m->nout_done == m->nlinks && m->nin_done == m->nlinks)
			break;
		if (now_s() > deadline) {
			RCMOE_WARN(
				"collNet rank %d of %d: the mesh is not connected after %lld s "
				"(RCMOE_SOCKET_TIMEOUT): %d of %d outgoing and %d of %d incoming "
				"connections ready",
				c->rank, c->nranks, (long long)p->socket_timeout, m->nout_done,
				m->nlinks, m->nin_done, m->nlinks);
			return RCMOE_ERR_REMOTE;
		}
		sched_yield();
	}
	for (i = 0; i < m->nlinks; i++) {
		c->peers[m->out[i].peer].tsend[m->out[i].set] = m->out[i].tsend;
		m->out[i].tsend = NULL;
	}
	return RCMOE_OK;
}

rcmoe_status_t rcmoe_coll_connect(void *handles[], int nranks, int rank,
				  struct rcmoe_coll_listen *l, struct rcmoe_coll_comm **out)
{
	const struct rcmoe_params *params = rcmoe_core_params();
	struct mesh m = { 0 };
	rcmoe_status_t st;
	*out = NULL;
	if (!l || !handles || nranks < 1 || rank < 0 || rank >= nranks) {
		RCMOE_WARN("collNet connect: rank %d of %d, listen %p", rank, nranks, (void *)l);
		return RCMOE_ERR_INVALID;
	}
	struct rcmoe_coll_comm *c = calloc(1, sizeof(*c));
	if (!c)
		return RCMOE_ERR_NOMEM;
	c->ctx = l->ctx;
	c->rank = rank;
	c->nranks = nranks;
	c->gpu.dev = -1;
	c->posted_dest = rcmoe_core_transport()->needs_posted_dest;
	RCMOE_CHECK_GOTO(rcmoe_ar_settings_from_params(params, &c->settings), st, free_comm);
	if (settings_hook)
		settings_hook(rank, &c->settings);
	c->peers = calloc((size_t)nranks, sizeof(*c->peers));
	if (!c->peers) {
		st = RCMOE_ERR_NOMEM;
		goto free_comm;
	}
	RCMOE_CHECK_GOTO(rcmoe_coll_calls_alloc(c), st, free_peers);
	/* Summing, coding and validating run on the CPU codec workers (none unless asked). */
	RCMOE_CHECK_GOTO(rcmoe_cpu_codec_start((int)params->cpu_codec_threads), st, free_calls);
	/* With GPU buffers claimed: the plugin's CUDA context, the comm's stream and events. */
	RCMOE_CHECK_GOTO(rcmoe_coll_gpu_open(c), st, free_gpu);

	m.c = c;
	m.l = l;
	m.handles = handles;
	m.nlinks = RCMOE_COLL_NSETS * (nranks - 1);
	m.mine = (struct hello){ .rank = rank, .nranks = nranks, .s = c->settings };
	m.mine.gpu = rcmoe_core_props_cuda();
	m.out = calloc((size_t)m.nlinks + 1, sizeof(*m.out));
	m.in = calloc((size_t)m.nlinks + 1, sizeof(*m.in));
	if (!m.out || !m.in) {
		st = RCMOE_ERR_NOMEM;
		goto free_links;
	}
	RCMOE_CHECK_GOTO(mesh_build(&m), st, close_mesh);
	if (m.mismatch) {
		RCMOE_WARN(
			"collNet rank %d: set the same RCMOE_AR_*, RCMOE_LSQ_BLOCK and RCMOE_SEED "
			"on every rank; all-reduce stays on NCCL's own algorithms",
			rank);
		st = RCMOE_ERR_USAGE;
		goto close_mesh;
	}
	free(m.out);
	free(m.in);
	char what[128];
	rcmoe_ar_describe(&c->settings, what, sizeof(what));
	RCMOE_INFO(NCCL_INIT | NCCL_NET,
		   "collNet rank %d of %d connected (%d connections): %s, on %s buffers", rank,
		   nranks, 2 * m.nlinks, what, c->gpu.dev >= 0 ? "GPU and host" : "host");
	*out = c;
	return RCMOE_OK;

close_mesh:
	mesh_close(&m);
	for (int p = 0; p < nranks; p++)
		for (int s = 0; s < RCMOE_COLL_NSETS; s++)
			if (c->peers[p].tsend[s])
				rcmoe_core_transport()->close_send(c->peers[p].tsend[s]);
free_links:
	free(m.out);
	free(m.in);
free_gpu:
	rcmoe_coll_gpu_close(c);
free_calls:
	rcmoe_coll_calls_free(c);
free_peers:
	free(c->peers);
free_comm:
	free(c);
	/* After a failed connect NCCL forgets the listen comm without closing it (2.28.9
	 * coll_net.cc sharedConnect): stop listening now; closeListen, if it comes, frees the
	 * rest. */
	rcmoe_core_transport()->close_listen(l->tlisten);
	l->tlisten = NULL;
	return st;
}

rcmoe_status_t rcmoe_coll_reduce_support(int dtype, int op, int *supported)
{
	/* Sum (NCCL hands Avg and PreMulSum as Sum) of the floating types the sum and the codecs
	 * handle; everything else stays on NCCL's ring, byte-exact. */
	*supported = op == ncclSum &&
		     (dtype == ncclFloat32 || dtype == ncclFloat16 || dtype == ncclBfloat16);
	return RCMOE_OK;
}

/* ---- registrations ---- */

/* The connection registrations are made on: any one of the mesh's, since a registration holds
 * on every connection of the device (transport.h: reg_mr) and all of the mesh's are on one.
 * NULL for a comm of one rank, which moves nothing. */
static struct rcmoe_tsend *reg_comm(const struct rcmoe_coll_comm *c)
{
	for (int p = 0; p < c->nranks; p++)
		if (p != c->rank && c->peers[p].tsend[RCMOE_COLL_SET_A])
			return c->peers[p].tsend[RCMOE_COLL_SET_A];
	return NULL;
}

rcmoe_status_t rcmoe_coll_buf_reg(struct rcmoe_coll_comm *c, struct rcmoe_growbuf *g,
				  struct rcmoe_tmr **out)
{
	const struct rcmoe_transport_ops *t = rcmoe_core_transport();
	*out = NULL;
	/* Grown since: what it was registered for is retired memory, kept until close (pinned,
	 * ar_gpu.c); malloc'd memory is unregistered before it is freed (rcmoe_coll_buf_unreg). */
	if (g->reg && (g->reg_p != g->p || g->reg_cap != g->cap))
		rcmoe_coll_buf_unreg(c, g);
	if (!g->reg) {
		struct rcmoe_tsend *on = reg_comm(c);
		rcmoe_status_t st =
			on ? t->reg_mr(on, NULL, g->p, g->cap, &g->reg) : RCMOE_ERR_INTERNAL;
		if (st != RCMOE_OK) {
			g->reg = NULL;
			RCMOE_WARN(
				"collNet rank %d: cannot register %zu bytes of all-reduce scratch "
				"with the %s transport: %s",
				c->rank, g->cap, t->name, rcmoe_status_str(st));
			return st;
		}
		g->reg_p = g->p;
		g->reg_cap = g->cap;
	}
	*out = g->reg;
	return RCMOE_OK;
}

void rcmoe_coll_buf_unreg(struct rcmoe_coll_comm *c, struct rcmoe_growbuf *g)
{
	const struct rcmoe_transport_ops *t = rcmoe_core_transport();
	if (!g->reg)
		return;
	if (t->dereg_mr(reg_comm(c), NULL, g->reg) != RCMOE_OK)
		RCMOE_WARN("collNet rank %d: deregistering %zu bytes of all-reduce scratch failed",
			   c->rank, g->reg_cap);
	g->reg = NULL;
	g->reg_p = NULL;
	g->reg_cap = 0;
}

void rcmoe_coll_call_unreg(struct rcmoe_coll_comm *c, struct coll_call *k, int host_only)
{
	struct rcmoe_growbuf *bufs[] = { &k->work, &k->own, &k->agout, &k->hs, &k->hr };
	for (size_t b = 0; b < sizeof(bufs) / sizeof(bufs[0]); b++)
		if (!host_only || bufs[b]->kind == RCMOE_BUF_HOST)
			rcmoe_coll_buf_unreg(c, bufs[b]);
	for (int x = 0; k->xa_send && x < 4 * c->nranks; x++)
		if (!host_only || k->xa_send[x].in.kind == RCMOE_BUF_HOST)
			rcmoe_coll_buf_unreg(c, &k->xa_send[x].in);
}

rcmoe_status_t rcmoe_coll_reg_mr(struct rcmoe_coll_comm *c, void *data, size_t size, int type,
				 struct rcmoe_coll_mr **out)
{
	if (type != NCCL_PTR_HOST && type != NCCL_PTR_CUDA) {
		RCMOE_WARN("collNet regMr: memory type %d", type);
		return RCMOE_ERR_INVALID;
	}
	struct rcmoe_coll_mr *mr = calloc(1, sizeof(*mr));
	if (!mr)
		return RCMOE_ERR_NOMEM;
	mr->base = data;
	mr->size = size;
	mr->type = type;
	/* Host memory the lossless mode sends from and receives into, over a transport that
	 * needs it registered (posted_dest; sockets need nothing). Device memory is never handed
	 * to the transport: GPU calls go through pinned scratch (ar_gpu.c). */
	struct rcmoe_tsend *on = c && c->posted_dest ? reg_comm(c) : NULL;
	if (on && type == NCCL_PTR_HOST && size > 0) {
		rcmoe_status_t st = rcmoe_core_transport()->reg_mr(on, NULL, data, size, &mr->tmr);
		if (st != RCMOE_OK) {
			RCMOE_WARN("collNet rank %d: regMr of %zu bytes at %p: the %s transport "
				   "refused it: %s",
				   c->rank, size, data, rcmoe_core_transport()->name,
				   rcmoe_status_str(st));
			free(mr);
			return st;
		}
	}
	/* NCCL registers its collNet staging buffer (send and receive slots of every channel) at
	 * setup, before any user buffer (2.28.9 coll_net.cc): the first registration is it. Only
	 * that one is ever cleared (ar_engine.c, "Leftovers"); a user's buffer never is. */
	if (c && !c->registered) {
		c->registered = 1;
		c->stage_mr = mr;
		mr->staging = 1;
	}
	*out = mr;
	return RCMOE_OK;
}

rcmoe_status_t rcmoe_coll_dereg_mr(struct rcmoe_coll_comm *c, struct rcmoe_coll_mr *mr)
{
	rcmoe_status_t st = RCMOE_OK;
	/* NCCL frees the memory next: nothing of ours may still be moving into it. */
	if (c && mr)
		rcmoe_coll_quiesce(c, mr);
	if (c && c->stage_mr == mr)
		c->stage_mr = NULL;
	if (c && mr && mr->tmr &&
	    rcmoe_core_transport()->dereg_mr(reg_comm(c), NULL, mr->tmr) != RCMOE_OK) {
		RCMOE_WARN("collNet rank %d: deregMr of %zu bytes at %p: the %s transport failed",
			   c->rank, mr->size, (void *)mr->base, rcmoe_core_transport()->name);
		st = RCMOE_ERR_SYSTEM;
	}
	free(mr);
	return st;
}

rcmoe_status_t rcmoe_coll_close(struct rcmoe_coll_comm *c)
{
	const struct rcmoe_transport_ops *t = rcmoe_core_transport();
	rcmoe_status_t st = RCMOE_OK;
	if (!c)
		return RCMOE_OK;
	rcmoe_coll_quiesce(c, NULL);
	/* Before their memory goes (pinned: rcmoe_coll_gpu_close; malloc'd: calls_free). */
	for (int i = 0; i < RCMOE_COLL_MAX_CALLS; i++)
		rcmoe_coll_call_unreg(c, &c->calls[i], 0);
	rcmoe_coll_gpu_close(c);
	for (int p = 0; p < c->nranks; p++)
		for (int s = 0; s < RCMOE_COLL_NSETS; s++) {
			if (c->peers[p].tsend[s] && t->close_send(c->peers[p].tsend[s]) != RCMOE_OK)
				st = RCMOE_ERR_SYSTEM;
			if (c->peers[p].trecv[s] && t->close_recv(c->peers[p].trecv[s]) != RCMOE_OK)
				st = RCMOE_ERR_SYSTEM;
		}
	rcmoe_coll_calls_free(c);
	free(c->peers);
	free(c);
	return st;
}

rcmoe_status_t rcmoe_coll_close_listen(struct rcmoe_coll_listen *l)
{
	rcmoe_status_t st = RCMOE_OK;
	if (!l)
		return RCMOE_OK;
	if (l->tlisten)
		st = rcmoe_core_transport()->close_listen(l->tlisten);
	free(l);
	return st;
}

/* The counters of each mode: one INFO line per datatype, and the stats file's records, under
 * comm 0x<id>:collnet-<mode> (stats.h). */
void rcmoe_coll_stats_dump(struct rcmoe_coll_ctx *ctx, const char *event)
{
	const struct rcmoe_params *p = rcmoe_core_params();
	for (int m = 0; m < RCMOE_AR_NMODES; m++) {
		char kind[24];
		snprintf(kind, sizeof(kind), "collnet-%s", rcmoe_ar_mode_name(m));
		if (!strcmp(event, "finalize")) {
			rcmoe_stats_log_kind(&ctx->stats[m], ctx->comm_id, kind);
			rcmoe_coll_profile_log(&ctx->prof[m], ctx->comm_id, rcmoe_ar_mode_name(m));
		}
		if (p && p->stats_file[0])
			(void)rcmoe_stats_write_kind(&ctx->stats[m], ctx->comm_id, kind,
						     p->stats_file, event);
	}
}

rcmoe_status_t rcmoe_coll_finalize(struct rcmoe_coll_ctx *ctx)
{
	if (!ctx) /* NCCL may finalize after a failed init */
		return RCMOE_OK;
	rcmoe_coll_stats_dump(ctx, "finalize");
	/* NCCL finalizes the net side (whose last finalize flushes the file) before this one:
	 * wait (bounded) for these records too, as a process often exits right after. */
	const struct rcmoe_params *p = rcmoe_core_params();
	if (p && p->stats_file[0])
		(void)rcmoe_stats_flush(RCMOE_STATS_FLUSH_MS);
	if (ctx != &default_ctx)
		free(ctx);
	return RCMOE_OK;
}
