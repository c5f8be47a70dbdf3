/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The real libc functions behind the interposed ones. Looked up on first use rather than in a
 * constructor, because other libraries' constructors may send before ours has run.
 */
#include "shaper.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>

void *shaper_next(void *_Atomic *slot, const char *name)
{
	void *f = atomic_load_explicit(slot, memory_order_acquire);
	if (f)
		return f;
	/* Two threads may both look it up: they find the same address. */
	f = dlsym(RTLD_NEXT, name);
	if (!f) {
		errno = ENOSYS;
		return NULL;
	}
	atomic_store_explicit(slot, f, memory_order_release);
	return f;
}
