/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Which build of the specialised CPU codec loops runs (LSQ: lsq.c; PTS: pts.c; the collective
 * sum; the window-dedup hash): the portable one (the x86-64 baseline, SSE2), one compiled for
 * AVX2 or one for AVX-512 (codec_internal.h), the widest the CPU has. Every build writes the same
 * bytes; the codec tests compare each with the reference.
 */
#include <stdatomic.h>

#include "codec_internal.h"

/* 0: portable, 1: AVX2, 2: AVX-512 (index into the tables of instances); -1: not chosen yet.
 * Relaxed atomics: every thread that races on the first call computes the same value. */
static _Atomic int isa_chosen = -1;

/* The widest build this CPU runs: 0, 1 or 2. */
static int cpu_best(void)
{
#if RCMOE_CPU_HAVE_AVX2
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
	    __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
		return 2;
	return __builtin_cpu_supports("avx2") != 0;
#else
	return 0;
#endif
}

int rcmoe_cpu_isa(void)
{
	int isa = atomic_load_explicit(&isa_chosen, memory_order_relaxed);
	if (isa < 0) {
		isa = cpu_best();
		atomic_store_explicit(&isa_chosen, isa, memory_order_relaxed);
	}
	return isa;
}

int rcmoe_cpu_set_isa(int isa)
{
	int best = cpu_best();
	int v = isa == RCMOE_CPU_ISA_PORTABLE ? 0
		: isa == RCMOE_CPU_ISA_AVX2   ? 1
		: isa == RCMOE_CPU_ISA_AVX512 ? 2
					      : best;
	if (v > best)
		return 0;
	atomic_store_explicit(&isa_chosen, v, memory_order_relaxed);
	return 1;
}
