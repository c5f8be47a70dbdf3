/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The registration cache: reg_mr and dereg_mr (ops.c) share verbs memory regions.
 *
 * NCCL's regMr, the core's shadows (plugin/mr.c, plugin/data.c) and the collective side's
 * buffers (plugin/coll/) register the same or overlapping host buffers again and again, and on
 * a real HCA every ibv_reg_mr pins pages and fills the NIC's tables (tens of microseconds to
 * milliseconds). So each HCA keeps its live registrations, of page-aligned ranges, with a count
 * of the handles on each: a reg_mr whose pages lie inside a live registration with the same
 * access takes a handle on it, any other registers its page-aligned range anew.
 *
 * A registration is dropped as soon as its last handle is: nothing is kept registered for
 * later. dereg_mr comes before the memory is freed, and once it is freed the address may be
 * handed out again for another allocation, whose pages a registration kept alive would not
 * cover (it pins the old ones): reusing it would write the peer's data where the program no
 * longer looks.
 *
 * For the same reason a registration takes new handles only while a handle whose own pages
 * span all of its range is held (`spanning`, normally the one that made it): then every page of
 * the range holds memory registered now and not yet freed, so the pages the HCA pinned are
 * still the ones mapped there. Once only narrower handles hold it, part of its range may have
 * been freed and mapped again, and new registrations get a registration of their own.
 *
 * Each handle keeps the range it was asked for, and transfers are checked against that range
 * (ib_mr_covers), not against the wider registration.
 *
 * Cost: per HCA a sorted array of the live registrations (by start), under a mutex, since
 * NCCL's service thread and the proxy threads of different comms register at the same time.
 * Registering and deregistering are not on the data path (transport.h); the verbs calls are
 * made under the lock, so two threads cannot register the same range twice. A lookup is a
 * binary search and then a walk back over the registrations starting at or before the range
 * (one step when they do not overlap; O(n) at worst); adding and removing move the array's tail
 * (O(n)). The array holds only registrations some handle holds, so it is bounded by the
 * regions the process has registered at once, as it was without the cache.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rcmoe/log.h"
#include "transport/ib/ib.h"

struct ib_mr_entry {
	uintptr_t start, end; /* the registered pages */
	int access;
	unsigned refs;     /* handles on it */
	unsigned spanning; /* of those, handles whose pages are all of [start, end) */
	struct rcmoe_ibv_mr *mr;
	struct ib_hca *hca;
};

rcmoe_status_t ib_mr_cache_init(struct ib_hca *h)
{
	struct ib_mr_cache *c = &h->mr_cache;
	memset(c, 0, sizeof(*c));
	long page = sysconf(_SC_PAGESIZE);
	c->page = page > 0 ? (uintptr_t)page : 4096;
	int err = pthread_mutex_init(&c->lock, NULL);
	if (err) {
		RCMOE_WARN("IB transport: cannot set up the registration cache of %s: %s", h->name,
			   strerror(err));
		return RCMOE_ERR_SYSTEM;
	}
	return RCMOE_OK;
}

/* Index of the first registration that starts after `start`. */
static size_t after(const struct ib_mr_cache *c, uintptr_t start)
{
	size_t lo = 0, hi = c->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (c->v[mid]->start <= start)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static struct ib_mr_entry *find(const struct ib_mr_cache *c, uintptr_t start, uintptr_t end,
				int access)
{
	for (size_t i = after(c, start); i-- > 0;) {
		struct ib_mr_entry *e = c->v[i];
		if (e->end >= end && e->access == access && e->spanning)
			return e;
	}
	return NULL;
}

static rcmoe_status_t insert(struct ib_mr_cache *c, struct ib_mr_entry *e)
{
	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 16;
		struct ib_mr_entry **v = realloc(c->v, cap * sizeof(*v));
		if (!v)
			return RCMOE_ERR_NOMEM;
		c->v = v;
		c->cap = cap;
	}
	size_t i = after(c, e->start);
	memmove(&c->v[i + 1], &c->v[i], (c->n - i) * sizeof(*c->v));
	c->v[i] = e;
	c->n++;
	if (c->n > c->peak)
		c->peak = c->n;
	return RCMOE_OK;
}

static bool remove_entry(struct ib_mr_cache *c, const struct ib_mr_entry *e)
{
	for (size_t i = after(c, e->start); i-- > 0 && c->v[i]->start == e->start;) {
		if (c->v[i] == e) {
			memmove(&c->v[i], &c->v[i + 1], (c->n - i - 1) * sizeof(*c->v));
			c->n--;
			return true;
		}
	}
	return false;
}

rcmoe_status_t ib_mr_get(struct ib_hca *h, void *buf, size_t len, int access, struct ib_mr **out)
{
	struct ib_mr_cache *c = &h->mr_cache;
	uintptr_t addr = (uintptr_t)buf;
	rcmoe_status_t st = RCMOE_OK;
	if (!buf || !len || !out || len > UINTPTR_MAX - addr - c->page)
		return RCMOE_ERR_INVALID;
	uintptr_t start = addr & ~(c->page - 1);
	uintptr_t end = (addr + len + c->page - 1) & ~(c->page - 1);
	struct ib_mr *m = calloc(1, sizeof(*m));
	if (!m)
		return RCMOE_ERR_NOMEM;
	m->addr = addr;
	m->len = len;

	pthread_mutex_lock(&c->lock);
	struct ib_mr_entry *e = find(c, start, end, access);
	if (e) {
		c->hits++;
		RCMOE_TRACE("IB transport: %zu bytes at %p reuse the registration of %p-%p on %s",
			    len, buf, (void *)e->start, (void *)e->end, h->name);
	} else {
		c->misses++;
		e = calloc(1, sizeof(*e));
		if (!e) {
			st = RCMOE_ERR_NOMEM;
			goto unlock;
		}
		*e = (struct ib_mr_entry){ .start = start, .end = end, .access = access, .hca = h };
		e->mr = ib_verbs.reg_mr(h->pd, (void *)start, end - start, access);
		if (!e->mr) {
			int err = errno;
			RCMOE_WARN("IB transport: cannot register %zu bytes at %p (pages %p-%p) on "
				   "%s: %s",
				   len, buf, (void *)start, (void *)end, h->name, strerror(err));
			st = RCMOE_ERR_SYSTEM;
			goto free_entry;
		}
		st = insert(c, e);
		if (st != RCMOE_OK) {
			RCMOE_WARN("IB transport: out of memory caching the registration of %zu "
				   "bytes at %p on %s",
				   len, buf, h->name);
			goto dereg;
		}
	}
	e->refs++;
	m->spanning = e->start == start && e->end == end;
	if (m->spanning)
		e->spanning++;
	m->entry = e;
	m->mr = e->mr;
	pthread_mutex_unlock(&c->lock);
	*out = m;
	return RCMOE_OK;

dereg:
	ib_verbs.dereg_mr(e->mr);
free_entry:
	free(e);
unlock:
	pthread_mutex_unlock(&c->lock);
	free(m);
	return st;
}

rcmoe_status_t ib_mr_get_dmabuf(struct ib_hca *h, void *buf, size_t len, int fd, uint64_t offset,
				int access, struct ib_mr **out)
{
	if (!buf || !len || fd < 0 || !out || len > UINTPTR_MAX - (uintptr_t)buf)
		return RCMOE_ERR_INVALID;
	if (!ib_verbs.reg_dmabuf_mr)
		return RCMOE_ERR_UNSUPPORTED;
	struct ib_mr *m = calloc(1, sizeof(*m));
	if (!m)
		return RCMOE_ERR_NOMEM;
	m->mr = ib_verbs.reg_dmabuf_mr(h->pd, offset, len, (uint64_t)(uintptr_t)buf, fd, access);
	if (!m->mr) {
		int err = errno;
		RCMOE_WARN("IB transport: cannot register %zu bytes of DMA-BUF fd %d (offset %llu, "
			   "at %p) on %s: %s",
			   len, fd, (unsigned long long)offset, buf, h->name, strerror(err));
		free(m);
		return err == EOPNOTSUPP || err == ENOSYS ? RCMOE_ERR_UNSUPPORTED
							  : RCMOE_ERR_SYSTEM;
	}
	m->addr = (uintptr_t)buf;
	m->len = len;
	m->dmabuf_hca = h;
	*out = m;
	return RCMOE_OK;
}

static rcmoe_status_t put_dmabuf(struct ib_mr *m)
{
	int err = ib_verbs.dereg_mr(m->mr);
	if (err)
		RCMOE_WARN(
			"IB transport: deregistering the DMA-BUF registration of %zu bytes at %p "
			"on %s failed: error %d",
			m->len, (void *)m->addr, m->dmabuf_hca->name, err);
	free(m);
	return err ? RCMOE_ERR_SYSTEM : RCMOE_OK;
}

rcmoe_status_t ib_mr_put(struct ib_mr *m)
{
	if (!m->entry)
		return put_dmabuf(m);
	struct ib_mr_entry *e = m->entry;
	struct ib_hca *h = e->hca;
	struct ib_mr_cache *c = &h->mr_cache;
	rcmoe_status_t st = RCMOE_OK;
	bool spanning = m->spanning;
	free(m);
	pthread_mutex_lock(&c->lock);
	if (spanning)
		e->spanning--;
	if (--e->refs > 0) {
		pthread_mutex_unlock(&c->lock);
		return RCMOE_OK;
	}
	/* The last handle: the memory may be freed next, so the registration goes now. */
	if (!remove_entry(c, e)) {
		RCMOE_WARN("IB transport: the registration of %p-%p on %s is not in its cache",
			   (void *)e->start, (void *)e->end, h->name);
		st = RCMOE_ERR_INTERNAL;
	}
	int err = ib_verbs.dereg_mr(e->mr);
	pthread_mutex_unlock(&c->lock);
	if (err) {
		RCMOE_WARN("IB transport: deregistering %p-%p on %s failed: error %d",
			   (void *)e->start, (void *)e->end, h->name, err);
		st = RCMOE_ERR_SYSTEM;
	}
	free(e);
	return st;
}

void ib_mr_cache_stats(struct ib_hca *h, struct ib_mr_cache_stats *out)
{
	struct ib_mr_cache *c = &h->mr_cache;
	pthread_mutex_lock(&c->lock);
	*out = (struct ib_mr_cache_stats){
		.hits = c->hits, .misses = c->misses, .live = c->n, .peak = c->peak
	};
	pthread_mutex_unlock(&c->lock);
}

/* The transport has no finalize of its own (transport.h): its counters are logged when the
 * plugin is unloaded or the process exits, like the stats writer's last records
 * (plugin/stats.c). Registrations still live then were not deregistered by their owners. */
__attribute__((destructor)) static void mr_cache_at_exit(void)
{
	for (int i = 0; i < ib_global.nhca; i++) {
		struct ib_hca *h = &ib_global.hca[i];
		struct ib_mr_cache_stats s;
		ib_mr_cache_stats(h, &s);
		if (!s.hits && !s.misses)
			continue;
		RCMOE_INFO(NCCL_NET,
			   "IB transport: registration cache of %s: %lu hit(s), %lu miss(es), %zu "
			   "registration(s) live at exit, at most %zu at once",
			   h->name, (unsigned long)s.hits, (unsigned long)s.misses, s.live, s.peak);
	}
}
