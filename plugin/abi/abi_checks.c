/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Compile-time checks of rcmoe's declaration of NCCL's plugin ABI (include/rcmoe/nccl_abi.h).
 * Nothing here runs: every check is a _Static_assert, so a declaration that drifts from what NCCL
 * expects stops the build. This file is one of abi_sources (plugin/meson.build), so every build
 * of the plugin compiles it.
 *
 * Where the numbers come from. Member order, types and constants are the ones documented in the
 * ABI note, shared/notes/nccl-plugin-abi.md (kept next to this repository, not in it), cited
 * below as "note:LINE"; the note in turn cites NCCL 2.28.9's headers (net_v11.h, net_v10.h,
 * profiler_v5.h, net_device.h, nccl_net.h). The offsets and sizes are derived by hand from that
 * order with the C layout rules of the LP64 ABIs NCCL runs on (x86-64 SysV, aarch64, ppc64le):
 * pointers, size_t, uint64_t and int64_t take 8 bytes aligned to 8; int, float, enums, pid_t and
 * int32_t/uint32_t 4 aligned to 4; uint8_t and bool 1; a struct is aligned to its widest member
 * and padded to a multiple of that. They are written out as numbers on purpose: computing them
 * from the declaration would only check the declaration against itself.
 *
 * The tuner v5 declaration is checked the same way, against NCCL's own headers (cited there).
 *
 * Also checked: the places where the plugin treats a v10 struct as a prefix of the v11 one, the
 * handle bytes the plugin writes against NCCL_NET_HANDLE_MAXSIZE, and the request counts.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "rcmoe/nccl_abi.h"
#include "rcmoe/transport.h"
#include "transport/socket/proto.h"

/* Expected layout: OFF(type, member, offset) and SIZE(type, bytes). */
#define OFF(T, m, n)                                                                               \
	_Static_assert(offsetof(T, m) == (n), "NCCL ABI: offsetof(" #T ", " #m ") != " #n)
#define SIZE(T, n) _Static_assert(sizeof(T) == (n), "NCCL ABI: sizeof(" #T ") != " #n)
/* Expected type of a member (function pointer signatures included). */
#define TYPE(T, m, type)                                                                           \
	_Static_assert(__builtin_types_compatible_p(__typeof__(((T *)0)->m), type),                \
		       "NCCL ABI: type of " #T "." #m)
/* The member sits at the same offset with the same type in both structs. */
#define SAME(A, B, m)                                                                              \
	_Static_assert(offsetof(A, m) == offsetof(B, m) &&                                         \
			       __builtin_types_compatible_p(__typeof__(((A *)0)->m),               \
							    __typeof__(((B *)0)->m)),              \
		       "NCCL ABI: " #A "." #m " is not where " #B "." #m " is")

/* The numbers below assume LP64 (every platform NCCL supports). */
_Static_assert(sizeof(void *) == 8 && _Alignof(void *) == 8 && sizeof(long) == 8 &&
		       sizeof(size_t) == 8 && _Alignof(uint64_t) == 8 && sizeof(int) == 4 &&
		       sizeof(float) == 4 && sizeof(pid_t) == 4,
	       "NCCL ABI checks: the expected offsets below are for an LP64 target");
/* NCCL's enums are passed and stored as int. */
_Static_assert(sizeof(ncclResult_t) == 4 && sizeof(ncclDataType_t) == 4 &&
		       sizeof(ncclRedOp_t) == 4 && sizeof(ncclDebugLogLevel) == 4 &&
		       sizeof(ncclNetDeviceType) == 4 && sizeof(ncclProfilerEventState_v5_t) == 4,
	       "NCCL ABI: an enum is not int-sized");

/* ---- constants (note:70-89, note:246-258) ---- */
_Static_assert(NCCL_NET_HANDLE_MAXSIZE == 128, "note:70 NCCL_NET_HANDLE_MAXSIZE");
_Static_assert(NCCL_MAX_NET_SIZE_BYTES == 1ull << 40, "note:71 NCCL_MAX_NET_SIZE_BYTES (1 TiB)");
_Static_assert(NCCL_NET_OPTIONAL_RECV_COMPLETION == 0x1, "note:72");
_Static_assert(NCCL_PTR_HOST == 0x1 && NCCL_PTR_CUDA == 0x2 && NCCL_PTR_DMABUF == 0x4, "note:74");
_Static_assert(NCCL_NET_MAX_REQUESTS == 32, "note:76 NCCL_NET_MAX_REQUESTS");
_Static_assert(NCCL_NET_MAX_DEVS_PER_NIC == 4, "note:78 NCCL_NET_MAX_DEVS_PER_NIC (v11)");
_Static_assert(NCCL_NET_DEVICE_HOST == 0 && NCCL_NET_DEVICE_UNPACK == 1, "note:80");
_Static_assert(NCCL_NET_TRAFFIC_CLASS_UNDEF == -1, "note:83");
_Static_assert(NCCL_LOG_NONE == 0 && NCCL_LOG_VERSION == 1 && NCCL_LOG_WARN == 2 &&
		       NCCL_LOG_INFO == 3 && NCCL_LOG_ABORT == 4 && NCCL_LOG_TRACE == 5,
	       "note:87 log levels");
_Static_assert(NCCL_INIT == 0x1 && NCCL_NET == 0x10 && NCCL_PROFILE == 0x4000, "note:87 flags");
_Static_assert(ncclProfilerNetEventStart == 0 && ncclProfilerNetEventStop == 1 &&
		       ncclProfilerNetEventUpdate == 2 && ncclProfilerNetEventUpdateAndStop == 3,
	       "note:88 profiler callback types");
_Static_assert(ncclFuncBroadcast == 0 && ncclFuncReduce == 1 && ncclFuncAllGather == 2 &&
		       ncclFuncReduceScatter == 3 && ncclFuncAllReduce == 4 &&
		       ncclFuncSendRecv == 5 && ncclFuncSend == 6 && ncclFuncRecv == 7 &&
		       ncclFuncAlltoAll == 8 && ncclFuncScatter == 9 && ncclFuncGather == 10,
	       "note:89 ncclFunc_t");
_Static_assert(ncclProfileGroup == 1 << 0 && ncclProfileColl == 1 << 1 &&
		       ncclProfileP2p == 1 << 2 && ncclProfileProxyOp == 1 << 3 &&
		       ncclProfileProxyStep == 1 << 4 && ncclProfileProxyCtrl == 1 << 5 &&
		       ncclProfileKernelCh == 1 << 6 && ncclProfileNetPlugin == 1 << 7 &&
		       ncclProfileGroupApi == 1 << 8 && ncclProfileCollApi == 1 << 9 &&
		       ncclProfileP2pApi == 1 << 10 && ncclProfileKernelLaunch == 1 << 11,
	       "note:246-258 profiler event bits");

/* ---- support types (note:81-86) ---- */
/* note:81 {netDeviceType; netDeviceVersion; handle; size; needsProxyProgress} */
OFF(ncclNetDeviceHandle_v11_t, netDeviceType, 0);
OFF(ncclNetDeviceHandle_v11_t, netDeviceVersion, 4);
OFF(ncclNetDeviceHandle_v11_t, handle, 8);
OFF(ncclNetDeviceHandle_v11_t, size, 16);
OFF(ncclNetDeviceHandle_v11_t, needsProxyProgress, 24);
SIZE(ncclNetDeviceHandle_v11_t, 32);
SIZE(ncclNetDeviceHandle_v10_t, 32);

/* note:82 {int ndevs; int devs[NCCL_NET_MAX_DEVS_PER_NIC]} */
OFF(ncclNetVDeviceProps_v11_t, ndevs, 0);
OFF(ncclNetVDeviceProps_v11_t, devs, 4);
SIZE(ncclNetVDeviceProps_v11_t, 20);
SIZE(ncclNetVDeviceProps_v10_t, 20);

/* note:83 {int trafficClass} */
OFF(ncclNetCommConfig_v11_t, trafficClass, 0);
SIZE(ncclNetCommConfig_v11_t, 4);
SIZE(ncclNetCommConfig_v10_t, 4);

/* note:84 {void *mhandle; void *address; size_t size} */
OFF(ncclNetSGE_v11_t, mhandle, 0);
OFF(ncclNetSGE_v11_t, address, 8);
OFF(ncclNetSGE_v11_t, size, 16);
SIZE(ncclNetSGE_v11_t, 24);

/* note:85 four int32_t */
OFF(ncclNetCommAttr_v11_t, maxConcurrentPeers, 0);
OFF(ncclNetCommAttr_v11_t, minConcurrentPeers, 4);
OFF(ncclNetCommAttr_v11_t, maxFlowsPerPeer, 8);
OFF(ncclNetCommAttr_v11_t, minFlowsPerPeer, 12);
SIZE(ncclNetCommAttr_v11_t, 16);

/* note:86 {sendCommAttr, recvCommAttr; uint32_t op, algo, proto} (ctx.c reads op) */
OFF(ncclNetAttr_v11_t, sendCommAttr, 0);
OFF(ncclNetAttr_v11_t, recvCommAttr, 16);
OFF(ncclNetAttr_v11_t, op, 32);
OFF(ncclNetAttr_v11_t, algo, 36);
OFF(ncclNetAttr_v11_t, proto, 40);
SIZE(ncclNetAttr_v11_t, 44);
TYPE(ncclNetAttr_v11_t, op, uint32_t);

/* ---- ncclNetProperties_v11_t: note:91-108, fields 1-17 in this order ---- */
OFF(ncclNetProperties_v11_t, name, 0);                  /* note:92 char* */
OFF(ncclNetProperties_v11_t, pciPath, 8);               /* note:93 char* */
OFF(ncclNetProperties_v11_t, guid, 16);                 /* note:94 uint64_t */
OFF(ncclNetProperties_v11_t, ptrSupport, 24);           /* note:95 int */
OFF(ncclNetProperties_v11_t, regIsGlobal, 28);          /* note:96 int */
OFF(ncclNetProperties_v11_t, forceFlush, 32);           /* note:97 int */
OFF(ncclNetProperties_v11_t, speed, 36);                /* note:98 int */
OFF(ncclNetProperties_v11_t, port, 40);                 /* note:99 int */
OFF(ncclNetProperties_v11_t, latency, 44);              /* note:100 float */
OFF(ncclNetProperties_v11_t, maxComms, 48);             /* note:101 int */
OFF(ncclNetProperties_v11_t, maxRecvs, 52);             /* note:102 int */
OFF(ncclNetProperties_v11_t, netDeviceType, 56);        /* note:103 enum */
OFF(ncclNetProperties_v11_t, netDeviceVersion, 60);     /* note:104 int */
OFF(ncclNetProperties_v11_t, vProps, 64);               /* note:105 20 bytes, align 4 */
OFF(ncclNetProperties_v11_t, maxP2pBytes, 88);          /* note:106 size_t: 84 -> 88 */
OFF(ncclNetProperties_v11_t, maxCollBytes, 96);         /* note:107 size_t */
OFF(ncclNetProperties_v11_t, maxMultiRequestSize, 104); /* note:108 int, v11 only */
SIZE(ncclNetProperties_v11_t, 112);                     /* 108 padded to 8 */
TYPE(ncclNetProperties_v11_t, guid, uint64_t);
TYPE(ncclNetProperties_v11_t, latency, float);
TYPE(ncclNetProperties_v11_t, vProps, ncclNetVDeviceProps_v11_t);
TYPE(ncclNetProperties_v11_t, maxP2pBytes, size_t);

/* ncclNetProperties_v10_t: fields 1-16 of v11, same types and order (note:110). */
SIZE(ncclNetProperties_v10_t, 104);
/* net_v10.c fills a v10 struct by copying the first sizeof(v10) bytes of a v11 one
 * (v10_properties): v10 must be a prefix of v11, member by member. */
_Static_assert(sizeof(ncclNetProperties_v10_t) <= sizeof(ncclNetProperties_v11_t),
	       "NCCL ABI: v10 properties must not be larger than v11's");
_Static_assert(offsetof(ncclNetProperties_v11_t, maxMultiRequestSize) >=
		       sizeof(ncclNetProperties_v10_t),
	       "NCCL ABI: the v11-only member must follow everything v10 has");
SAME(ncclNetProperties_v10_t, ncclNetProperties_v11_t, name);
SAME(ncclNetProperties_v10_t, ncclNetProperties_v11_t, pciPath);
SAME(ncclNetProperties_v10_t, ncclNetProperties_v11_t, guid);
SAME(ncclNetProperties_v10_t, ncclNetProperties_v11_t, ptrSupport);
SAME(ncclNetProperties_v10_t, ncclNetProperties_v11_t, regIsGlobal);
SAME(ncclNetProperties_v10_t, ncclNetProperties_v11_t, forceFlush);
SAME(ncclNetProperties_v10_t, ncclNetProperties_v11_t, speed);
SAME(ncclNetProperties_v10_t, ncclNetProperties_v11_t, port);
SAME(ncclNetProperties_v10_t, ncclNetProperties_v11_t, latency);
SAME(ncclNetProperties_v10_t, ncclNetProperties_v11_t, maxComms);
SAME(ncclNetProperties_v10_t, ncclNetProperties_v11_t, maxRecvs);
SAME(ncclNetProperties_v10_t, ncclNetProperties_v11_t, netDeviceType);
SAME(ncclNetProperties_v10_t, ncclNetProperties_v11_t, netDeviceVersion);
SAME(ncclNetProperties_v10_t, ncclNetProperties_v11_t, vProps);
SAME(ncclNetProperties_v10_t, ncclNetProperties_v11_t, maxP2pBytes);
SAME(ncclNetProperties_v10_t, ncclNetProperties_v11_t, maxCollBytes);

/* ---- ncclNet_v11_t: note:114-136, slots 0-21, 8 bytes each ---- */
typedef ncclNet_v11_t n11;
OFF(n11, name, 0 * 8);
OFF(n11, init, 1 * 8);
OFF(n11, devices, 2 * 8);
OFF(n11, getProperties, 3 * 8);
OFF(n11, listen, 4 * 8);
OFF(n11, connect, 5 * 8);
OFF(n11, accept, 6 * 8);
OFF(n11, regMr, 7 * 8);
OFF(n11, regMrDmaBuf, 8 * 8);
OFF(n11, deregMr, 9 * 8);
OFF(n11, isend, 10 * 8);
OFF(n11, irecv, 11 * 8);
OFF(n11, iflush, 12 * 8);
OFF(n11, test, 13 * 8);
OFF(n11, closeSend, 14 * 8);
OFF(n11, closeRecv, 15 * 8);
OFF(n11, closeListen, 16 * 8);
OFF(n11, getDeviceMr, 17 * 8);
OFF(n11, irecvConsumed, 18 * 8);
OFF(n11, makeVDevice, 19 * 8);
OFF(n11, finalize, 20 * 8);
OFF(n11, setNetAttr, 21 * 8);
SIZE(n11, 22 * 8);

/* Signatures, as the note's table gives them (note:117-136). */
TYPE(n11, name, const char *);
TYPE(n11, init,
     ncclResult_t (*)(void **, uint64_t, ncclNetCommConfig_v11_t *, ncclDebugLogger_t,
		      ncclProfilerCallback_t));
TYPE(n11, devices, ncclResult_t (*)(int *));
TYPE(n11, getProperties, ncclResult_t (*)(int, ncclNetProperties_v11_t *));
TYPE(n11, listen, ncclResult_t (*)(void *, int, void *, void **));
TYPE(n11, connect, ncclResult_t (*)(void *, int, void *, void **, ncclNetDeviceHandle_v11_t **));
TYPE(n11, accept, ncclResult_t (*)(void *, void **, ncclNetDeviceHandle_v11_t **));
TYPE(n11, regMr, ncclResult_t (*)(void *, void *, size_t, int, void **));
TYPE(n11, regMrDmaBuf, ncclResult_t (*)(void *, void *, size_t, int, uint64_t, int, void **));
TYPE(n11, deregMr, ncclResult_t (*)(void *, void *));
TYPE(n11, isend, ncclResult_t (*)(void *, void *, size_t, int, void *, void *, void **));
TYPE(n11, irecv,
     ncclResult_t (*)(void *, int, void **, size_t *, int *, void **, void **, void **));
TYPE(n11, iflush, ncclResult_t (*)(void *, int, void **, int *, void **, void **));
TYPE(n11, test, ncclResult_t (*)(void *, int *, int *));
TYPE(n11, closeSend, ncclResult_t (*)(void *));
TYPE(n11, closeRecv, ncclResult_t (*)(void *));
TYPE(n11, closeListen, ncclResult_t (*)(void *));
TYPE(n11, getDeviceMr, ncclResult_t (*)(void *, void *, void **));
TYPE(n11, irecvConsumed, ncclResult_t (*)(void *, int, void *));
TYPE(n11, makeVDevice, ncclResult_t (*)(int *, ncclNetVDeviceProps_v11_t *));
TYPE(n11, finalize, ncclResult_t (*)(void *));
TYPE(n11, setNetAttr, ncclResult_t (*)(void *, ncclNetAttr_v11_t *));
/* note:88 */
_Static_assert(__builtin_types_compatible_p(ncclProfilerCallback_t,
					    ncclResult_t (*)(void **, int, void *, int64_t,
							     void *)),
	       "NCCL ABI: ncclProfilerCallback_t");

/* ---- ncclNet_v10_t: note:138-145, slots 0-19 ---- */
typedef ncclNet_v10_t n10;
SIZE(n10, 20 * 8);
OFF(n10, name, 0 * 8);
OFF(n10, init, 1 * 8);
OFF(n10, getProperties, 3 * 8);
OFF(n10, listen, 4 * 8);
OFF(n10, connect, 5 * 8);
OFF(n10, makeVDevice, 19 * 8);
TYPE(n10, init, ncclResult_t (*)(ncclDebugLogger_t, ncclProfilerCallback_t)); /* note:140 */
TYPE(n10, getProperties, ncclResult_t (*)(int, ncclNetProperties_v10_t *));   /* note:143 */
TYPE(n10, listen, ncclResult_t (*)(int, void *, void **));                    /* note:141 */
/* note:142 */
TYPE(n10, connect,
     ncclResult_t (*)(int, ncclNetCommConfig_v10_t *, void *, void **,
		      ncclNetDeviceHandle_v10_t **));
TYPE(n10, makeVDevice, ncclResult_t (*)(int *, ncclNetVDeviceProps_v10_t *)); /* note:143 */
/* note:145: the rest is identical to v11, in the same slots; net_common.c's entry points fill
 * both tables, so they must be the same members with the same types. */
SAME(n10, n11, devices);
SAME(n10, n11, accept);
SAME(n10, n11, regMr);
SAME(n10, n11, regMrDmaBuf);
SAME(n10, n11, deregMr);
SAME(n10, n11, isend);
SAME(n10, n11, irecv);
SAME(n10, n11, iflush);
SAME(n10, n11, test);
SAME(n10, n11, closeSend);
SAME(n10, n11, closeRecv);
SAME(n10, n11, closeListen);
SAME(n10, n11, getDeviceMr);
SAME(n10, n11, irecvConsumed);

/* ---- ncclCollNet_v11_t: note:147-168 (net_v11.h:135-185), slots 0-18, 8 bytes each ----
 * The note's heading says 20 slots; NCCL 2.28.9's net_v11.h has 19 members (name through
 * finalize, the table below), and v10 18: counted again from the header when these checks were
 * written. */
typedef ncclCollNet_v11_t c11;
OFF(c11, name, 0 * 8);
OFF(c11, init, 1 * 8);
OFF(c11, devices, 2 * 8);
OFF(c11, getProperties, 3 * 8);
OFF(c11, listen, 4 * 8);
OFF(c11, connect, 5 * 8);
OFF(c11, reduceSupport, 6 * 8);
OFF(c11, regMr, 7 * 8);
OFF(c11, regMrDmaBuf, 8 * 8);
OFF(c11, deregMr, 9 * 8);
OFF(c11, iallreduce, 10 * 8);
OFF(c11, iallgather, 11 * 8);
OFF(c11, ireducescatter, 12 * 8);
OFF(c11, iflush, 13 * 8);
OFF(c11, test, 14 * 8);
OFF(c11, closeColl, 15 * 8);
OFF(c11, closeListen, 16 * 8);
OFF(c11, makeVDevice, 17 * 8);
OFF(c11, finalize, 18 * 8);
SIZE(c11, 19 * 8);
TYPE(c11, name, const char *);
TYPE(c11, init, ncclResult_t (*)(void **, uint64_t, ncclDebugLogger_t)); /* note:151 */
TYPE(c11, devices, ncclResult_t (*)(int *));
TYPE(c11, getProperties, ncclResult_t (*)(int, ncclNetProperties_v11_t *));
TYPE(c11, listen, ncclResult_t (*)(void *, int, void *, void **));
TYPE(c11, connect, ncclResult_t (*)(void **, int, int, void *, void **)); /* note:155 */
TYPE(c11, reduceSupport, ncclResult_t (*)(ncclDataType_t, ncclRedOp_t, int *));
TYPE(c11, regMr, ncclResult_t (*)(void *, void *, size_t, int, void **));
TYPE(c11, regMrDmaBuf, ncclResult_t (*)(void *, void *, size_t, int, uint64_t, int, void **));
TYPE(c11, deregMr, ncclResult_t (*)(void *, void *));
/* note:158 */
TYPE(c11, iallreduce,
     ncclResult_t (*)(void *, void *, void *, size_t, ncclDataType_t, ncclRedOp_t, void *, void *,
		      void **));
/* note:159 */
TYPE(c11, iallgather,
     ncclResult_t (*)(void *, void *, int, ncclNetSGE_v11_t *, size_t, size_t, size_t, void *,
		      void **));
/* note:160 */
TYPE(c11, ireducescatter,
     ncclResult_t (*)(void *, int, ncclNetSGE_v11_t *, void *, size_t, size_t, size_t,
		      ncclDataType_t, ncclRedOp_t, void *, void **));
TYPE(c11, iflush, ncclResult_t (*)(void *, void *, int, void *, void **)); /* note:161 */
TYPE(c11, test, ncclResult_t (*)(void *, int *, int *));
TYPE(c11, closeColl, ncclResult_t (*)(void *));
TYPE(c11, closeListen, ncclResult_t (*)(void *));
TYPE(c11, makeVDevice, ncclResult_t (*)(int *, ncclNetVDeviceProps_v11_t *));
TYPE(c11, finalize, ncclResult_t (*)(void *));
/* ---- ncclCollNet_v10_t: note:170 (net_v10.h:106-154), slots 0-17 ---- */
typedef ncclCollNet_v10_t c10;
SIZE(c10, 18 * 8);
OFF(c10, init, 1 * 8);
OFF(c10, listen, 4 * 8);
OFF(c10, connect, 5 * 8);
OFF(c10, iallreduce, 10 * 8);
OFF(c10, test, 14 * 8);
OFF(c10, makeVDevice, 17 * 8);
TYPE(c10, init, ncclResult_t (*)(ncclDebugLogger_t));
TYPE(c10, getProperties, ncclResult_t (*)(int, ncclNetProperties_v10_t *));
TYPE(c10, listen, ncclResult_t (*)(int, void *, void **));
TYPE(c10, makeVDevice, ncclResult_t (*)(int *, ncclNetVDeviceProps_v10_t *));
/* The rest is v11's, in the same slots with the same types (coll_common.c fills both). */
SAME(c10, c11, devices);
SAME(c10, c11, connect);
SAME(c10, c11, reduceSupport);
SAME(c10, c11, regMr);
SAME(c10, c11, regMrDmaBuf);
SAME(c10, c11, deregMr);
SAME(c10, c11, iallreduce);
SAME(c10, c11, iallgather);
SAME(c10, c11, ireducescatter);
SAME(c10, c11, iflush);
SAME(c10, c11, test);
SAME(c10, c11, closeColl);
SAME(c10, c11, closeListen);

/* ---- profiler v5 (note:261-275) ---- */
/* The table: name then five entry points (note:261-267). */
typedef ncclProfiler_v5_t p5;
OFF(p5, name, 0);
OFF(p5, init, 8);
OFF(p5, startEvent, 16);
OFF(p5, stopEvent, 24);
OFF(p5, recordEventState, 32);
OFF(p5, finalize, 40);
SIZE(p5, 48);
TYPE(p5, init,
     ncclResult_t (*)(void **, uint64_t, int *, const char *, int, int, int, ncclDebugLogger_t));
TYPE(p5, startEvent, ncclResult_t (*)(void *, void **, ncclProfilerEventDescr_v5_t *));
TYPE(p5, stopEvent, ncclResult_t (*)(void *));
TYPE(p5, recordEventState,
     ncclResult_t (*)(void *, ncclProfilerEventState_v5_t, ncclProfilerEventStateArgs_v5_t *));
TYPE(p5, finalize, ncclResult_t (*)(void *));

/* The event descriptor (note:269): uint64_t type; void *parentObj; int rank; then the union,
 * aligned to 8 (it holds pointers) at 24. The members plugin/profiler.c reads are all checked;
 * the union's size is set by coll, its largest member. */
typedef ncclProfilerEventDescr_v5_t d5;
OFF(d5, type, 0);
OFF(d5, parentObj, 8);
OFF(d5, rank, 16);
TYPE(d5, type, uint64_t);
/* coll (note:270): seqNumber u64, func, sendBuff, recvBuff, count, root int, datatype,
 * nChannels u8, nWarps u8, algo, proto, parentGroup */
OFF(d5, coll.seqNumber, 24);
OFF(d5, coll.func, 32);
OFF(d5, coll.sendBuff, 40);
OFF(d5, coll.recvBuff, 48);
OFF(d5, coll.count, 56);
OFF(d5, coll.root, 64);
OFF(d5, coll.datatype, 72);
OFF(d5, coll.nChannels, 80);
OFF(d5, coll.nWarps, 81);
OFF(d5, coll.algo, 88);
OFF(d5, coll.proto, 96);
OFF(d5, coll.parentGroup, 104);
SIZE(d5, 112); /* 24 + sizeof(coll) 88 */
/* p2p (note:271): func, buff, datatype, count, peer int, nChannels u8, parentGroup */
OFF(d5, p2p.func, 24);
OFF(d5, p2p.buff, 32);
OFF(d5, p2p.datatype, 40);
OFF(d5, p2p.count, 48);
OFF(d5, p2p.peer, 56);
OFF(d5, p2p.nChannels, 60);
OFF(d5, p2p.parentGroup, 64);
/* proxyOp (note:272): pid, channelId u8, peer, nSteps, chunkSize, isSend */
OFF(d5, proxyOp.pid, 24);
OFF(d5, proxyOp.channelId, 28);
OFF(d5, proxyOp.peer, 32);
OFF(d5, proxyOp.nSteps, 36);
OFF(d5, proxyOp.chunkSize, 40);
OFF(d5, proxyOp.isSend, 44);
TYPE(d5, proxyOp.pid, pid_t);
/* proxyStep (note:273) and netPlugin (note:274: int64_t id; void *data) */
OFF(d5, proxyStep.step, 24);
OFF(d5, netPlugin.id, 24);
OFF(d5, netPlugin.data, 32);
TYPE(d5, netPlugin.id, int64_t);
/* The API and kernel members (note:275 names them; types from NCCL's profiler_v5.h). */
OFF(d5, groupApi.graphCaptured, 24);
OFF(d5, groupApi.groupDepth, 28);
OFF(d5, collApi.func, 24);
OFF(d5, collApi.count, 32);
OFF(d5, collApi.datatype, 40);
OFF(d5, collApi.root, 48);
OFF(d5, collApi.stream, 56);
OFF(d5, collApi.graphCaptured, 64);
OFF(d5, p2pApi.func, 24);
OFF(d5, p2pApi.count, 32);
OFF(d5, p2pApi.datatype, 40);
OFF(d5, p2pApi.stream, 48);
OFF(d5, p2pApi.graphCaptured, 56);
OFF(d5, kernelLaunch.stream, 24);
OFF(d5, kernelCh.channelId, 24);
OFF(d5, kernelCh.pTimer, 32);

/* State arguments (note:266): a union of one 8-byte member each. */
SIZE(ncclProfilerEventStateArgs_v5_t, 8);

/* ---- tuner v5 ----
 * Not in the note's tables: read from NCCL 2.28.9's src/include/plugin/tuner/tuner_v5.h (cited
 * "t5:LINE"), src/include/plugin/nccl_tuner.h ("nt:LINE") and src/include/nccl_common.h
 * ("nc:LINE"); unchanged in 2.30's tuner_v5.h apart from whitespace. */
_Static_assert(NCCL_TUNING == 0x40, "nc:33 NCCL_TUNING");
_Static_assert(NCCL_NUM_ALGORITHMS == 7 && NCCL_NUM_PROTOCOLS == 3, "t5:18-19, nt:33,39");
_Static_assert(NCCL_ALGO_UNDEF == -1 && NCCL_ALGO_TREE == 0 && NCCL_ALGO_RING == 1 &&
		       NCCL_ALGO_COLLNET_DIRECT == 2 && NCCL_ALGO_COLLNET_CHAIN == 3 &&
		       NCCL_ALGO_NVLS == 4 && NCCL_ALGO_NVLS_TREE == 5 && NCCL_ALGO_PAT == 6,
	       "nt:25-32 algorithm indices");
_Static_assert(NCCL_PROTO_UNDEF == -1 && NCCL_PROTO_LL == 0 && NCCL_PROTO_LL128 == 1 &&
		       NCCL_PROTO_SIMPLE == 2,
	       "nt:35-38 protocol indices");
/* nt:41 NCCL_ALGO_PROTO_IGNORE is -1.0: a double, which C cannot _Static_assert portably (clang
 * refuses it): test/unit/test_tuner.c checks it (ignore_is_minus_one). */
_Static_assert(NCCL_NUM_HW_LINKS == 3 && NCCL_NUM_COMPCAPS == 4 && NCCL_NUM_TUNING_SCALES == 3,
	       "t5:20-22");
_Static_assert(sizeof(ncclFunc_t) == 4, "ncclFunc_t is an enum: passed as an int");
/* t5:12-16: three ints */
OFF(ncclNvlDomainInfo_v5_t, nNvlDomains, 0);
OFF(ncclNvlDomainInfo_v5_t, minRanksPerNvlDomain, 4);
OFF(ncclNvlDomainInfo_v5_t, maxRanksPerNvlDomain, 8);
SIZE(ncclNvlDomainInfo_v5_t, 12);
/* t5:24-35: doubles, [7][3], [3][7][3], then five [4][3] */
OFF(ncclTunerConstants_v5_t, baseLatencies, 0);
OFF(ncclTunerConstants_v5_t, hwLatencies, 21 * 8);
OFF(ncclTunerConstants_v5_t, llMaxBws, (21 + 63) * 8);
OFF(ncclTunerConstants_v5_t, perChMaxRingLL128Bws, (84 + 12) * 8);
OFF(ncclTunerConstants_v5_t, perChMaxTreeLL128Bws, (84 + 24) * 8);
OFF(ncclTunerConstants_v5_t, perChMaxTreeBws, (84 + 36) * 8);
OFF(ncclTunerConstants_v5_t, perChMaxNVLSTreeBws, (84 + 48) * 8);
SIZE(ncclTunerConstants_v5_t, (84 + 60) * 8);
TYPE(ncclTunerConstants_v5_t, baseLatencies, double[7][3]);
TYPE(ncclTunerConstants_v5_t, hwLatencies, double[3][7][3]);
TYPE(ncclTunerConstants_v5_t, perChMaxNVLSTreeBws, double[4][3]);
/* t5:38-85: name, init, getCollInfo, finalize */
typedef ncclTuner_v5_t t5;
OFF(t5, name, 0);
OFF(t5, init, 8);
OFF(t5, getCollInfo, 16);
OFF(t5, finalize, 24);
SIZE(t5, 32);
TYPE(t5, name, const char *);
/* t5:53-54 */
TYPE(t5, init,
     ncclResult_t (*)(void **, uint64_t, size_t, size_t, ncclDebugLogger_t,
		      ncclNvlDomainInfo_v5_t *, ncclTunerConstants_v5_t *));
/* t5:78-80 */
TYPE(t5, getCollInfo,
     ncclResult_t (*)(void *, ncclFunc_t, size_t, int, float **, int, int, int, int *));
TYPE(t5, finalize, ncclResult_t (*)(void *)); /* t5:84 */

/* ---- what the plugin writes into NCCL's handle ----
 * plugin/conn.c (rcmoe_core_listen) clears the whole NCCL_NET_HANDLE_MAXSIZE buffer and hands it,
 * with no header of its own, to the transport, which may write RCMOE_TRANSPORT_HANDLE_SIZE bytes
 * from the start (include/rcmoe/transport.h); the socket transport writes SOCK_HANDLE_SIZE. */
_Static_assert(RCMOE_TRANSPORT_HANDLE_SIZE <= NCCL_NET_HANDLE_MAXSIZE,
	       "the transport's handle does not fit NCCL's (note:70)");
_Static_assert(SOCK_HANDLE_SIZE <= RCMOE_TRANSPORT_HANDLE_SIZE,
	       "the socket handle is larger than a transport may write");

/* ---- request counts ----
 * The core keeps NCCL_NET_MAX_REQUESTS requests per comm (plugin/core.h) and relies on the
 * transport taking as many (note:76). */
_Static_assert(RCMOE_TRANSPORT_MAX_REQUESTS == NCCL_NET_MAX_REQUESTS,
	       "transport and NCCL request counts differ (note:76)");
