/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Which build of the specialised CPU codec loops runs (LSQ: lsq.c; PTS selection: pts.c): the
 * portable one (the x86-64 baseline, SSE2) or one compiled for AVX2 (codec_internal.h,
 * RCMOE_CPU_AVX2), taken when the CPU has it. Both builds write the same bytes; the codec tests
 * compare each with the reference.
 */
#include <stdatomic.h>

#include "codec_internal.h"

/* 0: portable, 1: AVX2 (index into the tables of instances); -1: not chosen yet. Relaxed
 * atomics: every thread that races on the first call computes the same value. */
static _Atomic int isa_chosen = -1;

static int cpu_has_avx2(void)
{
#if RCMOE_CPU_HAVE_AVX2
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx2") != 0;
#else
	return 0;
#endif
}

int rcmoe_cpu_isa(void)
{
	int isa = atomic_load_explicit(&isa_chosen, memory_order_relaxed);
	if (isa < 0) {
		isa = cpu_has_avx2();
		atomic_store_explicit(&isa_chosen, isa, memory_order_relaxed);
	}
	return isa;
}

int rcmoe_cpu_set_isa(int isa)
{
	int avx2 = cpu_has_avx2();
	int v = isa == RCMOE_CPU_ISA_PORTABLE ? 0 : isa == RCMOE_CPU_ISA_AVX2 ? 1 : avx2;
	if (v && !avx2)
		return 0;
	atomic_store_explicit(&isa_chosen, v, memory_order_relaxed);
	return 1;
}
