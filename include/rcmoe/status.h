/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One status type for the whole project (plugin core, transports, codecs, tools). It is translated
 * to ncclResult_t once, at the ABI boundary (rcmoe_status_to_nccl). The CHECK macros leave a
 * breadcrumb in the log at each level an error passes, like NCCL's own "-> %d" chain.
 */
#ifndef RCMOE_STATUS_H
#define RCMOE_STATUS_H

#include <errno.h>

typedef enum {
	RCMOE_OK = 0,
	RCMOE_ERR_INVALID,     /* a caller passed a bad argument (a bug on the caller's side) */
	RCMOE_ERR_USAGE,       /* bad configuration: an RCMOE_* value, a missing device */
	RCMOE_ERR_NOMEM,       /* allocation failed */
	RCMOE_ERR_SYSTEM,      /* a system call or the network failed */
	RCMOE_ERR_REMOTE,      /* the peer closed, died, or broke the protocol */
	RCMOE_ERR_MALFORMED,   /* a wire header or payload does not parse */
	RCMOE_ERR_TRUNCATED,   /* a payload ends before its header says it should */
	RCMOE_ERR_OVERFLOW,    /* the data would not fit in the destination */
	RCMOE_ERR_CUDA,        /* a CUDA call failed */
	RCMOE_ERR_INTERNAL,    /* an invariant of rcmoe itself broke */
	RCMOE_ERR_UNSUPPORTED, /* not available in this build or on this machine */
} rcmoe_status_t;

const char *rcmoe_status_str(rcmoe_status_t st);

/* errno -> status, for system calls */
rcmoe_status_t rcmoe_status_from_errno(int err);

/* Log a breadcrumb (INFO, NET) with file and line when an error passes through a CHECK. */
void rcmoe_status_trace(rcmoe_status_t st, const char *file, int line);

#define RCMOE_CHECK(call)                                                                          \
	do {                                                                                       \
		rcmoe_status_t rcmoe_st_ = (call);                                                 \
		if (rcmoe_st_ != RCMOE_OK) {                                                       \
			rcmoe_status_trace(rcmoe_st_, __FILE__, __LINE__);                         \
			return rcmoe_st_;                                                          \
		}                                                                                  \
	} while (0)

/* Store the error in `st` and jump to the unwinding label `label`. */
#define RCMOE_CHECK_GOTO(call, st, label)                                                          \
	do {                                                                                       \
		(st) = (call);                                                                     \
		if ((st) != RCMOE_OK) {                                                            \
			rcmoe_status_trace((st), __FILE__, __LINE__);                              \
			goto label;                                                                \
		}                                                                                  \
	} while (0)

#endif
