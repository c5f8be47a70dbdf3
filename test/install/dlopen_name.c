/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Load the plugin by its file name alone, as NCCL does for NCCL_NET_PLUGIN=rcmoe (it dlopens
 * libnccl-net-rcmoe.so, which the dynamic loader looks for in LD_LIBRARY_PATH and its cache),
 * and print the file the loader picked.
 *
 *   test_install_dlopen_name [DIR]
 *
 * Exit status 0 when it loaded with RTLD_NOW|RTLD_LOCAL (as NCCL opens it), exports
 * ncclNetPlugin_v11 named "RCMoE", and, given DIR, was loaded from DIR.
 */
#include <dlfcn.h>
#include <limits.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rcmoe/nccl_abi.h"

int main(int argc, char **argv)
{
	static const char name[] = "libnccl-net-rcmoe.so";
	void *lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		fprintf(stderr, "dlopen(\"%s\"): %s\n", name, dlerror());
		return 1;
	}
	struct link_map *map = NULL;
	char got[PATH_MAX];
	if (dlinfo(lib, RTLD_DI_LINKMAP, &map) || !map || !realpath(map->l_name, got)) {
		fprintf(stderr, "%s loaded, but from which file: %s\n", name, dlerror());
		return 1;
	}
	printf("%s\n", got);
	const ncclNet_v11_t *net = dlsym(lib, "ncclNetPlugin_v11");
	if (!net || !net->name || strcmp(net->name, "RCMoE") != 0) {
		fprintf(stderr, "%s: no ncclNetPlugin_v11 named RCMoE\n", got);
		return 1;
	}
	if (argc > 1) {
		char want[PATH_MAX];
		size_t n;
		if (!realpath(argv[1], want)) {
			perror(argv[1]);
			return 1;
		}
		n = strlen(want);
		if (strncmp(got, want, n) != 0 || got[n] != '/' || strchr(got + n + 1, '/')) {
			fprintf(stderr, "loaded %s, not the one in %s\n", got, want);
			return 1;
		}
	}
	dlclose(lib);
	return 0;
}
