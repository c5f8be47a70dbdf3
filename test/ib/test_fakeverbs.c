/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The test provider's own checks, through raw verbs (loaded as the transport loads them,
 * ibv.c): RDMA write with immediate places the bytes and completes both sides with the
 * immediate; an rkey beyond its region, without remote write, or unknown gives the requester
 * IBV_WC_REM_ACCESS_ERR and writes nothing; a source outside its lkey gives
 * IBV_WC_LOC_PROT_ERR; after an error the QP flushes; a peer QP that is gone gives
 * IBV_WC_RETRY_EXC_ERR within the QP's retry time; an inbox wraps cleanly whatever the room
 * left at its end; RDMA read returns the bytes after the writes posted before it, and refuses
 * regions without remote read.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <string.h>

#include "../transport/sock_test.h"
#include "fakeverbs/fv.h" /* the ring's geometry: FV_RING, FV_MAX_CHUNK, the packet header */
#include "test_log.h"
#include "transport/ib/ib.h"

TestSuite(fakeverbs, .init = test_log_init, .timeout = 60);

struct fv_pair {
	struct rcmoe_ibv_context *ctx;
	struct rcmoe_ibv_pd *pd;
	struct rcmoe_ibv_cq *cq[2];
	struct rcmoe_ibv_qp *qp[2];
};

static void to_rts(struct fv_pair *f, int i, uint8_t timeout)
{
	struct rcmoe_ibv_qp_attr a = { .qp_state = RCMOE_IBV_QPS_INIT, .port_num = 1 };
	cr_assert_eq(ib_verbs.modify_qp(f->qp[i], &a, RCMOE_IBV_QP_STATE | RCMOE_IBV_QP_PORT), 0);
	a = (struct rcmoe_ibv_qp_attr){ .qp_state = RCMOE_IBV_QPS_RTR,
					.dest_qp_num = f->qp[1 - i]->qp_num,
					.ah_attr = { .is_global = 1, .port_num = 1 } };
	cr_assert_eq(ib_verbs.query_gid(f->ctx, 1, 1, &a.ah_attr.grh.dgid), 0);
	cr_assert_eq(
		ib_verbs.modify_qp(f->qp[i], &a,
				   RCMOE_IBV_QP_STATE | RCMOE_IBV_QP_AV | RCMOE_IBV_QP_DEST_QPN),
		0);
	a = (struct rcmoe_ibv_qp_attr){ .qp_state = RCMOE_IBV_QPS_RTS,
					.timeout = timeout,
					.retry_cnt = 7 };
	cr_assert_eq(ib_verbs.modify_qp(f->qp[i], &a, RCMOE_IBV_QP_STATE | RCMOE_IBV_QP_TIMEOUT),
		     0);
}

static void pair_open(struct fv_pair *f, uint8_t timeout)
{
	cr_assert_eq(ib_verbs_load(FAKEVERBS_PATH), RCMOE_OK);
	int n = 0;
	struct rcmoe_ibv_device **list = ib_verbs.get_device_list(&n);
	cr_assert(list && n == 1);
	f->ctx = ib_verbs.open_device(list[0]);
	ib_verbs.free_device_list(list);
	f->pd = ib_verbs.alloc_pd(f->ctx);
	for (int i = 0; i < 2; i++) {
		f->cq[i] = ib_verbs.create_cq(f->ctx, 64, NULL, NULL, 0);
		struct rcmoe_ibv_qp_init_attr ia = { .send_cq = f->cq[i],
						     .recv_cq = f->cq[i],
						     .cap = { .max_send_wr = 16,
							      .max_recv_wr = 16,
							      .max_send_sge = 1,
							      .max_recv_sge = 1 },
						     .qp_type = RCMOE_IBV_QPT_RC };
		f->qp[i] = ib_verbs.create_qp(f->pd, &ia);
		cr_assert_not_null(f->qp[i]);
	}
	to_rts(f, 0, timeout);
	to_rts(f, 1, timeout);
}

static void write_imm(struct fv_pair *f, void *src, uint32_t len, uint32_t lkey, uint64_t raddr,
		      uint32_t rkey, uint32_t imm)
{
	struct rcmoe_ibv_sge sge = { .addr = (uint64_t)(uintptr_t)src,
				     .length = len,
				     .lkey = lkey };
	struct rcmoe_ibv_send_wr wr = { .wr_id = 77,
					.sg_list = &sge,
					.num_sge = 1,
					.opcode = RCMOE_IBV_WR_RDMA_WRITE_WITH_IMM,
					.send_flags = RCMOE_IBV_SEND_SIGNALED,
					.imm_data = htonl(imm) };
	wr.wr.rdma.remote_addr = raddr;
	wr.wr.rdma.rkey = rkey;
	struct rcmoe_ibv_send_wr *bad;
	cr_assert_eq(rcmoe_ibv_post_send(f->qp[0], &wr, &bad), 0);
}

static struct rcmoe_ibv_wc wait_wc(struct rcmoe_ibv_cq *cq)
{
	struct rcmoe_ibv_wc wc;
	double end = st_now() + 10;
	while (rcmoe_ibv_poll_cq(cq, 1, &wc) == 0)
		cr_assert(st_now() < end, "no completion within 10 s");
	return wc;
}

Test(fakeverbs, write_with_immediate_and_the_checks_of_a_region)
{
	struct fv_pair f;
	pair_open(&f, 20);
	static uint8_t src[8192], dst[8192], ro[64];
	st_fill(src, sizeof(src), 1);
	memset(dst, 0, sizeof(dst));
	struct rcmoe_ibv_mr *smr = ib_verbs.reg_mr(f.pd, src, sizeof(src), 1);
	struct rcmoe_ibv_mr *dmr = ib_verbs.reg_mr(f.pd, dst, 4096, 3);
	struct rcmoe_ibv_mr *romr = ib_verbs.reg_mr(f.pd, ro, sizeof(ro), 1);
	cr_assert(smr && dmr && romr);
	struct rcmoe_ibv_recv_wr rwr = { .wr_id = 5 }, *rbad;
	cr_assert_eq(rcmoe_ibv_post_recv(f.qp[1], &rwr, &rbad), 0);

	write_imm(&f, src, 4096, smr->lkey, (uint64_t)(uintptr_t)dst, dmr->rkey, 0x1234);
	struct rcmoe_ibv_wc wc = wait_wc(f.cq[1]);
	cr_assert_eq(wc.status, RCMOE_IBV_WC_SUCCESS);
	cr_assert_eq(wc.opcode, RCMOE_IBV_WC_RECV_RDMA_WITH_IMM);
	cr_assert_eq(wc.wr_id, 5);
	cr_assert_eq(ntohl(wc.imm_data), 0x1234);
	cr_assert(wc.wc_flags & RCMOE_IBV_WC_WITH_IMM);
	cr_assert_eq(wait_wc(f.cq[0]).status, RCMOE_IBV_WC_SUCCESS);
	cr_assert_eq(st_check(dst, 4096, 1), (size_t)-1);

	/* One byte past the region: refused, nothing written. */
	memset(dst, 0, sizeof(dst));
	write_imm(&f, src, 4097, smr->lkey, (uint64_t)(uintptr_t)dst, dmr->rkey, 1);
	cr_assert_eq(wait_wc(f.cq[0]).status, RCMOE_IBV_WC_REM_ACCESS_ERR);
	for (size_t i = 0; i < sizeof(dst); i++)
		cr_assert_eq(dst[i], 0, "byte %zu written", i);
	/* The QP is in error now: later writes are flushed. */
	write_imm(&f, src, 8, smr->lkey, (uint64_t)(uintptr_t)dst, dmr->rkey, 1);
	cr_assert_eq(wait_wc(f.cq[0]).status, RCMOE_IBV_WC_WR_FLUSH_ERR);
}

Test(fakeverbs, no_remote_write_unknown_rkey_and_bad_lkey)
{
	static uint8_t src[64], ro[64];
	for (int k = 0; k < 3; k++) {
		struct fv_pair f;
		pair_open(&f, 20);
		struct rcmoe_ibv_mr *smr = ib_verbs.reg_mr(f.pd, src, sizeof(src), 1);
		struct rcmoe_ibv_mr *romr = ib_verbs.reg_mr(f.pd, ro, sizeof(ro), 1);
		uint32_t lkey = k == 2 ? smr->lkey + 1 : smr->lkey;
		uint32_t rkey = k == 1 ? 0xdead : romr->rkey;
		int want = k == 2 ? RCMOE_IBV_WC_LOC_PROT_ERR : RCMOE_IBV_WC_REM_ACCESS_ERR;
		write_imm(&f, src, 16, lkey, (uint64_t)(uintptr_t)ro, rkey, 0);
		struct rcmoe_ibv_wc wc = wait_wc(f.cq[0]);
		cr_assert_eq(wc.status, want, "case %d: status %d", k, wc.status);
	}
}

Test(fakeverbs, a_peer_that_is_gone_exceeds_the_retries)
{
	struct fv_pair f;
	pair_open(&f, 14); /* 4.096 us x 2^14 x 8: about 0.5 s */
	static uint8_t src[64], dst[64];
	struct rcmoe_ibv_mr *smr = ib_verbs.reg_mr(f.pd, src, sizeof(src), 1);
	struct rcmoe_ibv_mr *dmr = ib_verbs.reg_mr(f.pd, dst, sizeof(dst), 3);
	cr_assert_eq(ib_verbs.destroy_qp(f.qp[1]), 0);
	double t0 = st_now();
	write_imm(&f, src, 16, smr->lkey, (uint64_t)(uintptr_t)dst, dmr->rkey, 0);
	cr_assert_eq(wait_wc(f.cq[0]).status, RCMOE_IBV_WC_RETRY_EXC_ERR);
	cr_assert_lt(st_now() - t0, 3.0);
	cr_assert_gt(st_now() - t0, 0.3);
}

static void write_plain(struct fv_pair *f, void *src, uint32_t len, uint32_t lkey, uint64_t raddr,
			uint32_t rkey)
{
	struct rcmoe_ibv_sge sge = { .addr = (uint64_t)(uintptr_t)src,
				     .length = len,
				     .lkey = lkey };
	struct rcmoe_ibv_send_wr wr = { .wr_id = 78,
					.sg_list = &sge,
					.num_sge = 1,
					.opcode = RCMOE_IBV_WR_RDMA_WRITE,
					.send_flags = RCMOE_IBV_SEND_SIGNALED };
	wr.wr.rdma.remote_addr = raddr;
	wr.wr.rdma.rkey = rkey;
	struct rcmoe_ibv_send_wr *bad;
	cr_assert_eq(rcmoe_ibv_post_send(f->qp[0], &wr, &bad), 0);
}

/* The soak's stall (docs/ib-transport.md): when the packet that does not fit at the end of an
 * inbox leaves fewer bytes there than a packet header, those bytes must be skipped as cleanly as
 * a longer gap, which a PAD packet fills. Each case fills a fresh inbox (the writes of qp[0]
 * are the only packets qp[1]'s inbox gets: acks go the other way) to `gap` bytes short of its
 * end, then writes across the wrap. A gap of 8 to 40 bytes used to take a PAD header whose
 * length ran past the ring and wrapped, and the progress thread then chased a tail 4 GiB ahead
 * of the head, holding the provider's lock: this test then times out. */
Test(fakeverbs, an_inbox_wraps_whatever_room_is_left_at_its_end, .timeout = 30)
{
	const size_t hdr = sizeof(struct fv_pkt), step = FV_MAX_CHUNK / 4;
	static uint8_t src[FV_MAX_CHUNK], dst[FV_MAX_CHUNK];
	st_fill(src, sizeof(src), 7);
	for (size_t gap = 8; gap <= hdr + 16; gap += 8) {
		struct fv_pair f;
		pair_open(&f, 20);
		struct rcmoe_ibv_mr *smr = ib_verbs.reg_mr(f.pd, src, sizeof(src), 1);
		struct rcmoe_ibv_mr *dmr = ib_verbs.reg_mr(f.pd, dst, sizeof(dst), 3);
		cr_assert(smr && dmr);
		uint64_t raddr = (uint64_t)(uintptr_t)dst;
		/* Packets of `step` payload bytes while the rest stays above two of them, then one
		 * that ends `gap` bytes before the end (payload between step - hdr and 2 x step).
		 */
		size_t left = FV_RING - gap;
		while (left > 2 * step + hdr) {
			write_plain(&f, src, (uint32_t)step, smr->lkey, raddr, dmr->rkey);
			cr_assert_eq(wait_wc(f.cq[0]).status, RCMOE_IBV_WC_SUCCESS);
			left -= hdr + step;
		}
		write_plain(&f, src, (uint32_t)(left - hdr), smr->lkey, raddr, dmr->rkey);
		cr_assert_eq(wait_wc(f.cq[0]).status, RCMOE_IBV_WC_SUCCESS, "gap %zu", gap);
		/* Across the wrap, twice: both land whole and complete on both sides. */
		for (unsigned k = 0; k < 2; k++) {
			memset(dst, 0, 4096);
			struct rcmoe_ibv_recv_wr rwr = { .wr_id = 9 }, *rbad;
			cr_assert_eq(rcmoe_ibv_post_recv(f.qp[1], &rwr, &rbad), 0);
			write_imm(&f, src, 4096, smr->lkey, raddr, dmr->rkey, k);
			struct rcmoe_ibv_wc wc = wait_wc(f.cq[1]);
			cr_assert_eq(wc.status, RCMOE_IBV_WC_SUCCESS, "gap %zu", gap);
			cr_assert_eq(ntohl(wc.imm_data), k);
			cr_assert_eq(wait_wc(f.cq[0]).status, RCMOE_IBV_WC_SUCCESS, "gap %zu", gap);
			cr_assert_eq(st_check(dst, 4096, 7), (size_t)-1, "gap %zu", gap);
		}
		cr_assert_eq(ib_verbs.dereg_mr(smr), 0);
		cr_assert_eq(ib_verbs.dereg_mr(dmr), 0);
		cr_assert_eq(ib_verbs.destroy_qp(f.qp[0]), 0);
		cr_assert_eq(ib_verbs.destroy_qp(f.qp[1]), 0);
	}
}

static void read_into(struct fv_pair *f, void *dst, uint32_t len, uint32_t lkey, uint64_t raddr,
		      uint32_t rkey)
{
	struct rcmoe_ibv_sge sge = { .addr = (uint64_t)(uintptr_t)dst,
				     .length = len,
				     .lkey = lkey };
	struct rcmoe_ibv_send_wr wr = { .wr_id = 88,
					.sg_list = &sge,
					.num_sge = 1,
					.opcode = RCMOE_IBV_WR_RDMA_READ,
					.send_flags = RCMOE_IBV_SEND_SIGNALED };
	wr.wr.rdma.remote_addr = raddr;
	wr.wr.rdma.rkey = rkey;
	struct rcmoe_ibv_send_wr *bad;
	cr_assert_eq(rcmoe_ibv_post_send(f->qp[0], &wr, &bad), 0);
}

/* RDMA read: the bytes of a region with remote read come back into the local buffer, after a
 * write posted before it has landed (RC order), with an IBV_WC_RDMA_READ completion; a region
 * without remote read, or a range past it, gives IBV_WC_REM_ACCESS_ERR and the local buffer
 * keeps its bytes. */
Test(fakeverbs, rdma_read_returns_the_bytes_in_order)
{
	struct fv_pair f;
	pair_open(&f, 20);
	static uint8_t remote[65536], local[65536], wsrc[4096], noread[64];
	st_fill(remote, sizeof(remote), 3);
	st_fill(wsrc, sizeof(wsrc), 4);
	struct rcmoe_ibv_mr *rmr =
		ib_verbs.reg_mr(f.pd, remote, sizeof(remote),
				RCMOE_IBV_ACCESS_LOCAL_WRITE | RCMOE_IBV_ACCESS_REMOTE_WRITE |
					RCMOE_IBV_ACCESS_REMOTE_READ);
	struct rcmoe_ibv_mr *lmr =
		ib_verbs.reg_mr(f.pd, local, sizeof(local), RCMOE_IBV_ACCESS_LOCAL_WRITE);
	struct rcmoe_ibv_mr *wmr = ib_verbs.reg_mr(f.pd, wsrc, sizeof(wsrc), 1);
	struct rcmoe_ibv_mr *nmr = ib_verbs.reg_mr(f.pd, noread, sizeof(noread), 3);
	cr_assert(rmr && lmr && wmr && nmr);
	/* a plain write into the first 4 KiB, then a read of them: the read sees the write */
	struct rcmoe_ibv_sge sge = { .addr = (uint64_t)(uintptr_t)wsrc,
				     .length = sizeof(wsrc),
				     .lkey = wmr->lkey };
	struct rcmoe_ibv_send_wr wr = {
		.wr_id = 1, .sg_list = &sge, .num_sge = 1, .opcode = RCMOE_IBV_WR_RDMA_WRITE
	};
	wr.wr.rdma.remote_addr = (uint64_t)(uintptr_t)remote;
	wr.wr.rdma.rkey = rmr->rkey;
	struct rcmoe_ibv_send_wr *bad;
	cr_assert_eq(rcmoe_ibv_post_send(f.qp[0], &wr, &bad), 0);
	read_into(&f, local, sizeof(local), lmr->lkey, (uint64_t)(uintptr_t)remote, rmr->rkey);
	struct rcmoe_ibv_wc wc = wait_wc(f.cq[0]);
	cr_assert_eq(wc.status, RCMOE_IBV_WC_SUCCESS);
	cr_assert_eq(wc.opcode, RCMOE_IBV_WC_RDMA_READ);
	cr_assert_eq(wc.wr_id, 88);
	cr_assert(memcmp(local, wsrc, sizeof(wsrc)) == 0, "the read ran before the write");
	cr_assert(memcmp(local + sizeof(wsrc), remote + sizeof(wsrc),
			 sizeof(local) - sizeof(wsrc)) == 0);
	/* no remote read */
	memset(local, 0x77, 64);
	read_into(&f, local, 64, lmr->lkey, (uint64_t)(uintptr_t)noread, nmr->rkey);
	cr_assert_eq(wait_wc(f.cq[0]).status, RCMOE_IBV_WC_REM_ACCESS_ERR);
	for (int i = 0; i < 64; i++)
		cr_assert_eq(local[i], 0x77, "byte %d written by a refused read", i);
	/* one byte past the region, on a fresh pair (the QP above is in error now) */
	struct fv_pair g;
	pair_open(&g, 20);
	struct rcmoe_ibv_mr *rmr2 = ib_verbs.reg_mr(g.pd, remote, 4096, 7);
	struct rcmoe_ibv_mr *lmr2 = ib_verbs.reg_mr(g.pd, local, sizeof(local), 1);
	read_into(&g, local, 4097, lmr2->lkey, (uint64_t)(uintptr_t)remote, rmr2->rkey);
	cr_assert_eq(wait_wc(g.cq[0]).status, RCMOE_IBV_WC_REM_ACCESS_ERR);
}
