/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The project's declaration of the verbs ABI (rcmoe/ibv_abi.h) against rdma-core's own header,
 * where it is installed (libibverbs-dev): every size and offset the transport and the test
 * provider rely on, and the constants they use. Compile-time checks: building this file is the
 * test (meson builds it only when infiniband/verbs.h is found).
 */
#include <infiniband/verbs.h>
#include <stddef.h>

#include "rcmoe/ibv_abi.h"

#define SAME_SIZE(ours, theirs)                                                                    \
	_Static_assert(sizeof(struct ours) == sizeof(struct theirs),                               \
		       #ours " has the size of " #theirs)
#define SAME_OFFSET(ours, theirs, field)                                                           \
	_Static_assert(offsetof(struct ours, field) == offsetof(struct theirs, field),             \
		       #ours "." #field " is where " #theirs " has it")
#define SAME_VALUE(ours, theirs) _Static_assert((int)(ours) == (int)(theirs), #ours " is " #theirs)

SAME_SIZE(rcmoe_ibv_context, ibv_context);
SAME_OFFSET(rcmoe_ibv_context, ibv_context, device);
SAME_OFFSET(rcmoe_ibv_context, ibv_context, ops);
SAME_OFFSET(rcmoe_ibv_context, ibv_context, cmd_fd);
SAME_OFFSET(rcmoe_ibv_context, ibv_context, async_fd);
SAME_OFFSET(rcmoe_ibv_context, ibv_context, num_comp_vectors);
SAME_OFFSET(rcmoe_ibv_context, ibv_context, mutex);
SAME_OFFSET(rcmoe_ibv_context, ibv_context, abi_compat);
SAME_SIZE(rcmoe_ibv_context_ops, ibv_context_ops);
SAME_OFFSET(rcmoe_ibv_context_ops, ibv_context_ops, poll_cq);
SAME_OFFSET(rcmoe_ibv_context_ops, ibv_context_ops, req_notify_cq);
SAME_OFFSET(rcmoe_ibv_context_ops, ibv_context_ops, post_send);
SAME_OFFSET(rcmoe_ibv_context_ops, ibv_context_ops, post_recv);
SAME_SIZE(rcmoe_ibv_port_attr, ibv_port_attr);
SAME_OFFSET(rcmoe_ibv_port_attr, ibv_port_attr, state);
SAME_OFFSET(rcmoe_ibv_port_attr, ibv_port_attr, max_mtu);
SAME_OFFSET(rcmoe_ibv_port_attr, ibv_port_attr, active_mtu);
SAME_OFFSET(rcmoe_ibv_port_attr, ibv_port_attr, gid_tbl_len);
SAME_OFFSET(rcmoe_ibv_port_attr, ibv_port_attr, max_msg_sz);
SAME_OFFSET(rcmoe_ibv_port_attr, ibv_port_attr, lid);
SAME_OFFSET(rcmoe_ibv_port_attr, ibv_port_attr, active_width);
SAME_OFFSET(rcmoe_ibv_port_attr, ibv_port_attr, active_speed);
SAME_OFFSET(rcmoe_ibv_port_attr, ibv_port_attr, phys_state);
SAME_OFFSET(rcmoe_ibv_port_attr, ibv_port_attr, link_layer);
SAME_OFFSET(rcmoe_ibv_port_attr, ibv_port_attr, port_cap_flags2);
SAME_SIZE(rcmoe_ibv_pd, ibv_pd);
SAME_OFFSET(rcmoe_ibv_pd, ibv_pd, context);
SAME_OFFSET(rcmoe_ibv_pd, ibv_pd, handle);
SAME_SIZE(rcmoe_ibv_mr, ibv_mr);
SAME_OFFSET(rcmoe_ibv_mr, ibv_mr, context);
SAME_OFFSET(rcmoe_ibv_mr, ibv_mr, pd);
SAME_OFFSET(rcmoe_ibv_mr, ibv_mr, addr);
SAME_OFFSET(rcmoe_ibv_mr, ibv_mr, length);
SAME_OFFSET(rcmoe_ibv_mr, ibv_mr, handle);
SAME_OFFSET(rcmoe_ibv_mr, ibv_mr, lkey);
SAME_OFFSET(rcmoe_ibv_mr, ibv_mr, rkey);
SAME_SIZE(rcmoe_ibv_cq, ibv_cq);
SAME_OFFSET(rcmoe_ibv_cq, ibv_cq, context);
SAME_OFFSET(rcmoe_ibv_cq, ibv_cq, channel);
SAME_OFFSET(rcmoe_ibv_cq, ibv_cq, cq_context);
SAME_OFFSET(rcmoe_ibv_cq, ibv_cq, handle);
SAME_OFFSET(rcmoe_ibv_cq, ibv_cq, cqe);
SAME_OFFSET(rcmoe_ibv_cq, ibv_cq, mutex);
SAME_OFFSET(rcmoe_ibv_cq, ibv_cq, cond);
SAME_OFFSET(rcmoe_ibv_cq, ibv_cq, comp_events_completed);
SAME_OFFSET(rcmoe_ibv_cq, ibv_cq, async_events_completed);
SAME_SIZE(rcmoe_ibv_qp, ibv_qp);
SAME_OFFSET(rcmoe_ibv_qp, ibv_qp, context);
SAME_OFFSET(rcmoe_ibv_qp, ibv_qp, qp_context);
SAME_OFFSET(rcmoe_ibv_qp, ibv_qp, pd);
SAME_OFFSET(rcmoe_ibv_qp, ibv_qp, send_cq);
SAME_OFFSET(rcmoe_ibv_qp, ibv_qp, recv_cq);
SAME_OFFSET(rcmoe_ibv_qp, ibv_qp, srq);
SAME_OFFSET(rcmoe_ibv_qp, ibv_qp, handle);
SAME_OFFSET(rcmoe_ibv_qp, ibv_qp, qp_num);
SAME_OFFSET(rcmoe_ibv_qp, ibv_qp, state);
SAME_OFFSET(rcmoe_ibv_qp, ibv_qp, qp_type);
SAME_OFFSET(rcmoe_ibv_qp, ibv_qp, mutex);
SAME_OFFSET(rcmoe_ibv_qp, ibv_qp, cond);
SAME_OFFSET(rcmoe_ibv_qp, ibv_qp, events_completed);
SAME_SIZE(rcmoe_ibv_qp_cap, ibv_qp_cap);
SAME_OFFSET(rcmoe_ibv_qp_cap, ibv_qp_cap, max_send_wr);
SAME_OFFSET(rcmoe_ibv_qp_cap, ibv_qp_cap, max_recv_wr);
SAME_OFFSET(rcmoe_ibv_qp_cap, ibv_qp_cap, max_send_sge);
SAME_OFFSET(rcmoe_ibv_qp_cap, ibv_qp_cap, max_recv_sge);
SAME_OFFSET(rcmoe_ibv_qp_cap, ibv_qp_cap, max_inline_data);
SAME_SIZE(rcmoe_ibv_qp_init_attr, ibv_qp_init_attr);
SAME_OFFSET(rcmoe_ibv_qp_init_attr, ibv_qp_init_attr, qp_context);
SAME_OFFSET(rcmoe_ibv_qp_init_attr, ibv_qp_init_attr, send_cq);
SAME_OFFSET(rcmoe_ibv_qp_init_attr, ibv_qp_init_attr, recv_cq);
SAME_OFFSET(rcmoe_ibv_qp_init_attr, ibv_qp_init_attr, srq);
SAME_OFFSET(rcmoe_ibv_qp_init_attr, ibv_qp_init_attr, cap);
SAME_OFFSET(rcmoe_ibv_qp_init_attr, ibv_qp_init_attr, qp_type);
SAME_OFFSET(rcmoe_ibv_qp_init_attr, ibv_qp_init_attr, sq_sig_all);
SAME_SIZE(rcmoe_ibv_global_route, ibv_global_route);
SAME_OFFSET(rcmoe_ibv_global_route, ibv_global_route, dgid);
SAME_OFFSET(rcmoe_ibv_global_route, ibv_global_route, flow_label);
SAME_OFFSET(rcmoe_ibv_global_route, ibv_global_route, sgid_index);
SAME_OFFSET(rcmoe_ibv_global_route, ibv_global_route, hop_limit);
SAME_OFFSET(rcmoe_ibv_global_route, ibv_global_route, traffic_class);
SAME_SIZE(rcmoe_ibv_ah_attr, ibv_ah_attr);
SAME_OFFSET(rcmoe_ibv_ah_attr, ibv_ah_attr, grh);
SAME_OFFSET(rcmoe_ibv_ah_attr, ibv_ah_attr, dlid);
SAME_OFFSET(rcmoe_ibv_ah_attr, ibv_ah_attr, sl);
SAME_OFFSET(rcmoe_ibv_ah_attr, ibv_ah_attr, src_path_bits);
SAME_OFFSET(rcmoe_ibv_ah_attr, ibv_ah_attr, static_rate);
SAME_OFFSET(rcmoe_ibv_ah_attr, ibv_ah_attr, is_global);
SAME_OFFSET(rcmoe_ibv_ah_attr, ibv_ah_attr, port_num);
SAME_SIZE(rcmoe_ibv_qp_attr, ibv_qp_attr);
SAME_OFFSET(rcmoe_ibv_qp_attr, ibv_qp_attr, qp_state);
SAME_OFFSET(rcmoe_ibv_qp_attr, ibv_qp_attr, cur_qp_state);
SAME_OFFSET(rcmoe_ibv_qp_attr, ibv_qp_attr, path_mtu);
SAME_OFFSET(rcmoe_ibv_qp_attr, ibv_qp_attr, path_mig_state);
SAME_OFFSET(rcmoe_ibv_qp_attr, ibv_qp_attr, qkey);
SAME_OFFSET(rcmoe_ibv_qp_attr, ibv_qp_attr, rq_psn);
SAME_OFFSET(rcmoe_ibv_qp_attr, ibv_qp_attr, sq_psn);
SAME_OFFSET(rcmoe_ibv_qp_attr, ibv_qp_attr, dest_qp_num);
SAME_OFFSET(rcmoe_ibv_qp_attr, ibv_qp_attr, qp_access_flags);
SAME_OFFSET(rcmoe_ibv_qp_attr, ibv_qp_attr, cap);
SAME_OFFSET(rcmoe_ibv_qp_attr, ibv_qp_attr, ah_attr);
SAME_OFFSET(rcmoe_ibv_qp_attr, ibv_qp_attr, alt_ah_attr);
SAME_OFFSET(rcmoe_ibv_qp_attr, ibv_qp_attr, pkey_index);
SAME_OFFSET(rcmoe_ibv_qp_attr, ibv_qp_attr, alt_pkey_index);
SAME_OFFSET(rcmoe_ibv_qp_attr, ibv_qp_attr, en_sqd_async_notify);
SAME_OFFSET(rcmoe_ibv_qp_attr, ibv_qp_attr, sq_draining);
SAME_OFFSET(rcmoe_ibv_qp_attr, ibv_qp_attr, max_rd_atomic);
SAME_OFFSET(rcmoe_ibv_qp_attr, ibv_qp_attr, max_dest_rd_atomic);
SAME_OFFSET(rcmoe_ibv_qp_attr, ibv_qp_attr, min_rnr_timer);
SAME_OFFSET(rcmoe_ibv_qp_attr, ibv_qp_attr, port_num);
SAME_OFFSET(rcmoe_ibv_qp_attr, ibv_qp_attr, timeout);
SAME_OFFSET(rcmoe_ibv_qp_attr, ibv_qp_attr, retry_cnt);
SAME_OFFSET(rcmoe_ibv_qp_attr, ibv_qp_attr, rnr_retry);
SAME_OFFSET(rcmoe_ibv_qp_attr, ibv_qp_attr, alt_port_num);
SAME_OFFSET(rcmoe_ibv_qp_attr, ibv_qp_attr, alt_timeout);
SAME_OFFSET(rcmoe_ibv_qp_attr, ibv_qp_attr, rate_limit);
SAME_SIZE(rcmoe_ibv_sge, ibv_sge);
SAME_OFFSET(rcmoe_ibv_sge, ibv_sge, addr);
SAME_OFFSET(rcmoe_ibv_sge, ibv_sge, length);
SAME_OFFSET(rcmoe_ibv_sge, ibv_sge, lkey);
SAME_SIZE(rcmoe_ibv_send_wr, ibv_send_wr);
SAME_OFFSET(rcmoe_ibv_send_wr, ibv_send_wr, wr_id);
SAME_OFFSET(rcmoe_ibv_send_wr, ibv_send_wr, next);
SAME_OFFSET(rcmoe_ibv_send_wr, ibv_send_wr, sg_list);
SAME_OFFSET(rcmoe_ibv_send_wr, ibv_send_wr, num_sge);
SAME_OFFSET(rcmoe_ibv_send_wr, ibv_send_wr, opcode);
SAME_OFFSET(rcmoe_ibv_send_wr, ibv_send_wr, send_flags);
SAME_OFFSET(rcmoe_ibv_send_wr, ibv_send_wr, imm_data);
SAME_OFFSET(rcmoe_ibv_send_wr, ibv_send_wr, wr);
SAME_SIZE(rcmoe_ibv_recv_wr, ibv_recv_wr);
SAME_OFFSET(rcmoe_ibv_recv_wr, ibv_recv_wr, wr_id);
SAME_OFFSET(rcmoe_ibv_recv_wr, ibv_recv_wr, next);
SAME_OFFSET(rcmoe_ibv_recv_wr, ibv_recv_wr, sg_list);
SAME_OFFSET(rcmoe_ibv_recv_wr, ibv_recv_wr, num_sge);
SAME_SIZE(rcmoe_ibv_wc, ibv_wc);
SAME_OFFSET(rcmoe_ibv_wc, ibv_wc, wr_id);
SAME_OFFSET(rcmoe_ibv_wc, ibv_wc, status);
SAME_OFFSET(rcmoe_ibv_wc, ibv_wc, opcode);
SAME_OFFSET(rcmoe_ibv_wc, ibv_wc, vendor_err);
SAME_OFFSET(rcmoe_ibv_wc, ibv_wc, byte_len);
SAME_OFFSET(rcmoe_ibv_wc, ibv_wc, imm_data);
SAME_OFFSET(rcmoe_ibv_wc, ibv_wc, qp_num);
SAME_OFFSET(rcmoe_ibv_wc, ibv_wc, src_qp);
SAME_OFFSET(rcmoe_ibv_wc, ibv_wc, wc_flags);
SAME_OFFSET(rcmoe_ibv_wc, ibv_wc, pkey_index);
SAME_OFFSET(rcmoe_ibv_wc, ibv_wc, slid);
SAME_OFFSET(rcmoe_ibv_wc, ibv_wc, sl);
SAME_OFFSET(rcmoe_ibv_wc, ibv_wc, dlid_path_bits);
_Static_assert(sizeof(union rcmoe_ibv_gid) == sizeof(union ibv_gid), "gid size");
_Static_assert(offsetof(struct rcmoe_ibv_send_wr, wr.rdma.rkey) ==
		       offsetof(struct ibv_send_wr, wr.rdma.rkey),
	       "rdma rkey");
_Static_assert(offsetof(struct rcmoe_ibv_send_wr, wr.rdma.remote_addr) ==
		       offsetof(struct ibv_send_wr, wr.rdma.remote_addr),
	       "rdma addr");
SAME_VALUE(RCMOE_IBV_PORT_ACTIVE, IBV_PORT_ACTIVE);
SAME_VALUE(RCMOE_IBV_LINK_LAYER_UNSPECIFIED, IBV_LINK_LAYER_UNSPECIFIED);
SAME_VALUE(RCMOE_IBV_LINK_LAYER_INFINIBAND, IBV_LINK_LAYER_INFINIBAND);
SAME_VALUE(RCMOE_IBV_LINK_LAYER_ETHERNET, IBV_LINK_LAYER_ETHERNET);
SAME_VALUE(RCMOE_IBV_MTU_256, IBV_MTU_256);
SAME_VALUE(RCMOE_IBV_MTU_1024, IBV_MTU_1024);
SAME_VALUE(RCMOE_IBV_MTU_4096, IBV_MTU_4096);
SAME_VALUE(RCMOE_IBV_ACCESS_LOCAL_WRITE, IBV_ACCESS_LOCAL_WRITE);
SAME_VALUE(RCMOE_IBV_ACCESS_REMOTE_WRITE, IBV_ACCESS_REMOTE_WRITE);
SAME_VALUE(RCMOE_IBV_ACCESS_REMOTE_READ, IBV_ACCESS_REMOTE_READ);
SAME_VALUE(RCMOE_IBV_QPT_RC, IBV_QPT_RC);
SAME_VALUE(RCMOE_IBV_QPS_RESET, IBV_QPS_RESET);
SAME_VALUE(RCMOE_IBV_QPS_INIT, IBV_QPS_INIT);
SAME_VALUE(RCMOE_IBV_QPS_RTR, IBV_QPS_RTR);
SAME_VALUE(RCMOE_IBV_QPS_RTS, IBV_QPS_RTS);
SAME_VALUE(RCMOE_IBV_QPS_ERR, IBV_QPS_ERR);
SAME_VALUE(RCMOE_IBV_QP_STATE, IBV_QP_STATE);
SAME_VALUE(RCMOE_IBV_QP_ACCESS_FLAGS, IBV_QP_ACCESS_FLAGS);
SAME_VALUE(RCMOE_IBV_QP_PKEY_INDEX, IBV_QP_PKEY_INDEX);
SAME_VALUE(RCMOE_IBV_QP_PORT, IBV_QP_PORT);
SAME_VALUE(RCMOE_IBV_QP_AV, IBV_QP_AV);
SAME_VALUE(RCMOE_IBV_QP_PATH_MTU, IBV_QP_PATH_MTU);
SAME_VALUE(RCMOE_IBV_QP_TIMEOUT, IBV_QP_TIMEOUT);
SAME_VALUE(RCMOE_IBV_QP_RETRY_CNT, IBV_QP_RETRY_CNT);
SAME_VALUE(RCMOE_IBV_QP_RNR_RETRY, IBV_QP_RNR_RETRY);
SAME_VALUE(RCMOE_IBV_QP_RQ_PSN, IBV_QP_RQ_PSN);
SAME_VALUE(RCMOE_IBV_QP_MAX_QP_RD_ATOMIC, IBV_QP_MAX_QP_RD_ATOMIC);
SAME_VALUE(RCMOE_IBV_QP_MIN_RNR_TIMER, IBV_QP_MIN_RNR_TIMER);
SAME_VALUE(RCMOE_IBV_QP_SQ_PSN, IBV_QP_SQ_PSN);
SAME_VALUE(RCMOE_IBV_QP_MAX_DEST_RD_ATOMIC, IBV_QP_MAX_DEST_RD_ATOMIC);
SAME_VALUE(RCMOE_IBV_QP_DEST_QPN, IBV_QP_DEST_QPN);
SAME_VALUE(RCMOE_IBV_WR_RDMA_WRITE, IBV_WR_RDMA_WRITE);
SAME_VALUE(RCMOE_IBV_WR_RDMA_WRITE_WITH_IMM, IBV_WR_RDMA_WRITE_WITH_IMM);
SAME_VALUE(RCMOE_IBV_WR_SEND, IBV_WR_SEND);
SAME_VALUE(RCMOE_IBV_WR_RDMA_READ, IBV_WR_RDMA_READ);
SAME_VALUE(RCMOE_IBV_SEND_SIGNALED, IBV_SEND_SIGNALED);
SAME_VALUE(RCMOE_IBV_SEND_INLINE, IBV_SEND_INLINE);
SAME_VALUE(RCMOE_IBV_WC_SUCCESS, IBV_WC_SUCCESS);
SAME_VALUE(RCMOE_IBV_WC_LOC_LEN_ERR, IBV_WC_LOC_LEN_ERR);
SAME_VALUE(RCMOE_IBV_WC_LOC_QP_OP_ERR, IBV_WC_LOC_QP_OP_ERR);
SAME_VALUE(RCMOE_IBV_WC_LOC_PROT_ERR, IBV_WC_LOC_PROT_ERR);
SAME_VALUE(RCMOE_IBV_WC_WR_FLUSH_ERR, IBV_WC_WR_FLUSH_ERR);
SAME_VALUE(RCMOE_IBV_WC_LOC_ACCESS_ERR, IBV_WC_LOC_ACCESS_ERR);
SAME_VALUE(RCMOE_IBV_WC_REM_INV_REQ_ERR, IBV_WC_REM_INV_REQ_ERR);
SAME_VALUE(RCMOE_IBV_WC_REM_ACCESS_ERR, IBV_WC_REM_ACCESS_ERR);
SAME_VALUE(RCMOE_IBV_WC_REM_OP_ERR, IBV_WC_REM_OP_ERR);
SAME_VALUE(RCMOE_IBV_WC_RETRY_EXC_ERR, IBV_WC_RETRY_EXC_ERR);
SAME_VALUE(RCMOE_IBV_WC_RNR_RETRY_EXC_ERR, IBV_WC_RNR_RETRY_EXC_ERR);
SAME_VALUE(RCMOE_IBV_WC_GENERAL_ERR, IBV_WC_GENERAL_ERR);
SAME_VALUE(RCMOE_IBV_WC_SEND, IBV_WC_SEND);
SAME_VALUE(RCMOE_IBV_WC_RDMA_WRITE, IBV_WC_RDMA_WRITE);
SAME_VALUE(RCMOE_IBV_WC_RDMA_READ, IBV_WC_RDMA_READ);
SAME_VALUE(RCMOE_IBV_WC_RECV, IBV_WC_RECV);
SAME_VALUE(RCMOE_IBV_WC_RECV_RDMA_WITH_IMM, IBV_WC_RECV_RDMA_WITH_IMM);
SAME_VALUE(RCMOE_IBV_WC_WITH_IMM, IBV_WC_WITH_IMM);
