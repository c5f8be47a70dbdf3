/* SPDX-License-Identifier: Apache-2.0 */
/* fakeverbs: devices, ports, GIDs, protection domains and memory registration (fv.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fv.h"

pthread_mutex_t fv_lock = PTHREAD_MUTEX_INITIALIZER;
struct fv_mr *fv_mrs;

static struct fv_device devices[FV_MAX_DEV];
static uint32_t next_key = 0x1000;
/* ibv_reg_mr and ibv_dereg_mr calls that succeeded (fakeverbs_mr_counts); under fv_lock. */
static uint64_t mr_regs, mr_deregs;

static int env_int(const char *name, int def)
{
	const char *v = getenv(name);
	return v && *v ? atoi(v) : def;
}

static bool in_list(const char *list, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = list; p && *p;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		if (len == n && strncmp(p, name, n) == 0)
			return true;
		p = comma ? comma + 1 : p + len;
	}
	return false;
}

FV_EXPORT struct rcmoe_ibv_device **ibv_get_device_list(int *num)
{
	int n = env_int("FAKEVERBS_NDEV", 1);
	if (n < 0 || n > FV_MAX_DEV)
		n = 1;
	struct rcmoe_ibv_device **list = calloc((size_t)n + 1, sizeof(*list));
	if (!list) {
		errno = ENOMEM;
		return NULL;
	}
	fv_cleanup_stale();
	for (int i = 0; i < n; i++) {
		struct fv_device *d = &devices[i];
		snprintf(d->name, sizeof(d->name), "fake%d", i);
		d->index = i;
		d->port_up = !in_list(getenv("FAKEVERBS_PORT_DOWN"), d->name);
		list[i] = (struct rcmoe_ibv_device *)(void *)d;
	}
	if (num)
		*num = n;
	return list;
}

FV_EXPORT void ibv_free_device_list(struct rcmoe_ibv_device **list)
{
	free(list);
}

FV_EXPORT const char *ibv_get_device_name(struct rcmoe_ibv_device *device)
{
	return ((struct fv_device *)(void *)device)->name;
}

int fv_poll_cq(struct rcmoe_ibv_cq *cq, int n, struct rcmoe_ibv_wc *wc);
int fv_post_send(struct rcmoe_ibv_qp *qp, struct rcmoe_ibv_send_wr *wr,
		 struct rcmoe_ibv_send_wr **bad);
int fv_post_recv(struct rcmoe_ibv_qp *qp, struct rcmoe_ibv_recv_wr *wr,
		 struct rcmoe_ibv_recv_wr **bad);

FV_EXPORT struct rcmoe_ibv_context *ibv_open_device(struct rcmoe_ibv_device *device)
{
	struct fv_context *c = calloc(1, sizeof(*c));
	if (!c) {
		errno = ENOMEM;
		return NULL;
	}
	c->dev = (struct fv_device *)(void *)device;
	c->ibv.device = device;
	c->ibv.ops.poll_cq = fv_poll_cq;
	c->ibv.ops.post_send = fv_post_send;
	c->ibv.ops.post_recv = fv_post_recv;
	c->ibv.cmd_fd = -1;
	c->ibv.async_fd = -1;
	c->ibv.num_comp_vectors = 1;
	pthread_mutex_init(&c->ibv.mutex, NULL);
	return &c->ibv;
}

FV_EXPORT int ibv_close_device(struct rcmoe_ibv_context *ctx)
{
	pthread_mutex_destroy(&ctx->mutex);
	free(ctx);
	return 0;
}

FV_EXPORT int ibv_query_port(struct rcmoe_ibv_context *ctx, uint8_t port,
			     struct rcmoe_ibv_port_attr *a)
{
	struct fv_device *d = ((struct fv_context *)(void *)ctx)->dev;
	if (port != 1)
		return EINVAL;
	memset(a, 0, sizeof(*a));
	a->state = d->port_up ? RCMOE_IBV_PORT_ACTIVE : 1 /* down */;
	a->max_mtu = RCMOE_IBV_MTU_4096;
	a->active_mtu = RCMOE_IBV_MTU_4096;
	a->gid_tbl_len = 2;
	a->max_msg_sz = 1u << 31;
	a->pkey_tbl_len = 1;
	a->active_width = 2;  /* 4x */
	a->active_speed = 32; /* 25 Gb/s a lane: 100 Gb/s */
	a->phys_state = d->port_up ? 5 : 3;
	a->link_layer = RCMOE_IBV_LINK_LAYER_ETHERNET;
	return 0;
}

/* The process id in the last 4 bytes of every GID: how a QP finds its peer's inbox. */
FV_EXPORT int ibv_query_gid(struct rcmoe_ibv_context *ctx, uint8_t port, int index,
			    union rcmoe_ibv_gid *gid)
{
	(void)ctx;
	uint32_t pid = (uint32_t)getpid();
	if (port != 1 || index < 0 || index > 1)
		return EINVAL;
	memset(gid, 0, sizeof(*gid));
	if (index == 0) {
		gid->raw[0] = 0xfe;
		gid->raw[1] = 0x80;
	} else {
		gid->raw[10] = 0xff;
		gid->raw[11] = 0xff;
	}
	gid->raw[12] = (uint8_t)(pid >> 24);
	gid->raw[13] = (uint8_t)(pid >> 16);
	gid->raw[14] = (uint8_t)(pid >> 8);
	gid->raw[15] = (uint8_t)pid;
	return 0;
}

FV_EXPORT struct rcmoe_ibv_pd *ibv_alloc_pd(struct rcmoe_ibv_context *ctx)
{
	struct rcmoe_ibv_pd *pd = calloc(1, sizeof(*pd));
	if (!pd) {
		errno = ENOMEM;
		return NULL;
	}
	pd->context = ctx;
	return pd;
}

FV_EXPORT int ibv_dealloc_pd(struct rcmoe_ibv_pd *pd)
{
	free(pd);
	return 0;
}

/* Real HCAs refuse remote write without local write. */
static bool access_ok(int access)
{
	return !(access & RCMOE_IBV_ACCESS_REMOTE_WRITE) || (access & RCMOE_IBV_ACCESS_LOCAL_WRITE);
}

/* A registration of len bytes named by addr (host: NULL, the provider reaches addr itself; else
 * where addr lies in its mapping map of map_len bytes), with a fresh key. */
static struct rcmoe_ibv_mr *mr_add(struct rcmoe_ibv_pd *pd, void *addr, size_t len, int access,
				   uint8_t *host, void *map, size_t map_len)
{
	struct fv_mr *m = calloc(1, sizeof(*m));
	if (!m) {
		errno = ENOMEM;
		return NULL;
	}
	m->ibv.context = pd->context;
	m->ibv.pd = pd;
	m->ibv.addr = addr;
	m->ibv.length = len;
	m->access = access;
	m->host = host;
	m->map = map;
	m->map_len = map_len;
	pthread_mutex_lock(&fv_lock);
	m->ibv.lkey = m->ibv.rkey = next_key;
	next_key += 0x101;
	m->next = fv_mrs;
	fv_mrs = m;
	mr_regs++;
	pthread_mutex_unlock(&fv_lock);
	return &m->ibv;
}

FV_EXPORT struct rcmoe_ibv_mr *ibv_reg_mr(struct rcmoe_ibv_pd *pd, void *addr, size_t len,
					  int access)
{
	if (!pd || !addr || !access_ok(access)) {
		errno = EINVAL;
		return NULL;
	}
	return mr_add(pd, addr, len, access, NULL, NULL, 0);
}

FV_EXPORT struct rcmoe_ibv_mr *ibv_reg_dmabuf_mr(struct rcmoe_ibv_pd *pd, uint64_t offset,
						 size_t len, uint64_t iova, int fd, int access)
{
	const char *no = getenv("FAKEVERBS_NO_DMABUF");
	if (no && *no && strcmp(no, "0") != 0) {
		errno = EOPNOTSUPP;
		return NULL;
	}
	struct stat sb;
	if (!pd || !iova || !len || fd < 0 || fstat(fd, &sb) != 0 ||
	    offset > (uint64_t)sb.st_size || len > (uint64_t)sb.st_size - offset ||
	    !access_ok(access)) {
		errno = EINVAL;
		return NULL;
	}
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE), start = offset & ~(page - 1);
	size_t map_len = len + (size_t)(offset - start);
	void *map = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)start);
	if (map == MAP_FAILED)
		return NULL; /* errno from mmap */
	struct rcmoe_ibv_mr *mr = mr_add(pd, (void *)(uintptr_t)iova, len, access,
					 (uint8_t *)map + (offset - start), map, map_len);
	if (!mr)
		munmap(map, map_len);
	return mr;
}

FV_EXPORT int ibv_dereg_mr(struct rcmoe_ibv_mr *mr)
{
	pthread_mutex_lock(&fv_lock);
	for (struct fv_mr **pp = &fv_mrs; *pp; pp = &(*pp)->next) {
		if (&(*pp)->ibv == mr) {
			struct fv_mr *m = *pp;
			*pp = m->next;
			mr_deregs++;
			pthread_mutex_unlock(&fv_lock);
			if (m->map)
				munmap(m->map, m->map_len);
			free(m);
			return 0;
		}
	}
	pthread_mutex_unlock(&fv_lock);
	return EINVAL;
}

FV_EXPORT void fakeverbs_mr_counts(uint64_t *regs, uint64_t *deregs, uint64_t *live)
{
	pthread_mutex_lock(&fv_lock);
	uint64_t n = 0;
	for (const struct fv_mr *m = fv_mrs; m; m = m->next)
		n++;
	if (regs)
		*regs = mr_regs;
	if (deregs)
		*deregs = mr_deregs;
	if (live)
		*live = n;
	pthread_mutex_unlock(&fv_lock);
}

FV_EXPORT const char *ibv_wc_status_str(int status)
{
	switch (status) {
	case RCMOE_IBV_WC_SUCCESS: return "success";
	case RCMOE_IBV_WC_LOC_PROT_ERR: return "local protection error";
	case RCMOE_IBV_WC_WR_FLUSH_ERR: return "Work Request Flushed Error";
	case RCMOE_IBV_WC_REM_ACCESS_ERR: return "remote access error";
	case RCMOE_IBV_WC_RETRY_EXC_ERR: return "transport retry counter exceeded";
	default: return "unknown";
	}
}
