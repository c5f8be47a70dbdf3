/* SPDX-License-Identifier: Apache-2.0 */
#include "rcmoe/status.h"
#include "rcmoe/log.h"

const char *rcmoe_status_str(rcmoe_status_t st)
{
	switch (st) {
	case RCMOE_OK: return "ok";
	case RCMOE_ERR_INVALID: return "invalid argument";
	case RCMOE_ERR_USAGE: return "invalid configuration";
	case RCMOE_ERR_NOMEM: return "out of memory";
	case RCMOE_ERR_SYSTEM: return "system error";
	case RCMOE_ERR_REMOTE: return "remote peer error";
	case RCMOE_ERR_MALFORMED: return "malformed data";
	case RCMOE_ERR_TRUNCATED: return "truncated data";
	case RCMOE_ERR_OVERFLOW: return "does not fit destination";
	case RCMOE_ERR_CUDA: return "CUDA error";
	case RCMOE_ERR_INTERNAL: return "internal error";
	case RCMOE_ERR_UNSUPPORTED: return "unsupported";
	}
	return "unknown status";
}

rcmoe_status_t rcmoe_status_from_errno(int err)
{
	switch (err) {
	case 0: return RCMOE_OK;
	case ENOMEM: return RCMOE_ERR_NOMEM;
	case EINVAL: return RCMOE_ERR_INVALID;
	case ECONNRESET:
	case ECONNREFUSED:
	case ECONNABORTED:
	case EPIPE:
	case ETIMEDOUT:
	case EHOSTUNREACH:
	case ENETUNREACH: return RCMOE_ERR_REMOTE;
	default: return RCMOE_ERR_SYSTEM;
	}
}

void rcmoe_status_trace(rcmoe_status_t st, const char *file, int line)
{
	rcmoe_log_get()(NCCL_LOG_INFO, NCCL_NET, file, line, "NET/RCMoE %s:%d -> %d (%s)", file,
			line, (int)st, rcmoe_status_str(st));
}
