/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rcmoe-place-gen: a synthetic routing trace with planted co-activation clusters, for the tests
 * and for trying rcmoe-place (docs/placement.md).
 *
 *   rcmoe-place-gen -e EXPERTS -k K -n TOKENS [-c CLUSTER] [-p NOISE] [-s SEED] [-t] OUT
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "place.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: rcmoe-place-gen -e EXPERTS -k K -n TOKENS [options] OUT\n"
		"Write a routing trace whose tokens pick experts from planted clusters: the "
		"experts\n"
		"are shuffled (seeded) into clusters of CLUSTER, and a token takes whole clusters\n"
		"(a random part of the last one) until it has K experts; with probability NOISE "
		"its\n"
		"K experts are uniform instead.\n"
		"\n"
		"  -e, --experts E       experts (1..%u)\n"
		"  -k, --k K             experts per token (1..%u)\n"
		"  -n, --tokens N        tokens\n"
		"  -c, --cluster C       planted cluster size, dividing E (default 2; 0: uniform)\n"
		"  -p, --noise P         fraction of uniform tokens (default 0.05)\n"
		"  -s, --seed S          seed (default 1)\n"
		"  -t, --text            the text format (default binary)\n"
		"  -l, --list-clusters   print each expert's planted cluster\n"
		"  -h, --help            this text\n",
		PL_MAX_EXPERTS, PL_MAX_K);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = { { "experts", required_argument, NULL, 'e' },
					      { "k", required_argument, NULL, 'k' },
					      { "tokens", required_argument, NULL, 'n' },
					      { "cluster", required_argument, NULL, 'c' },
					      { "noise", required_argument, NULL, 'p' },
					      { "seed", required_argument, NULL, 's' },
					      { "text", no_argument, NULL, 't' },
					      { "list-clusters", no_argument, NULL, 'l' },
					      { "help", no_argument, NULL, 'h' },
					      { NULL, 0, NULL, 0 } };
	struct pl_gen g = { .cluster_size = 2, .seed = 1, .noise = 0.05 };
	int format = PL_FORMAT_BINARY, list = 0, c;
	while ((c = getopt_long(argc, argv, "e:k:n:c:p:s:tlh", opts, NULL)) != -1) {
		char *end = NULL;
		errno = 0;
		switch (c) {
		case 'e': g.experts = (uint32_t)strtoul(optarg, &end, 0); break;
		case 'k': g.k = (uint32_t)strtoul(optarg, &end, 0); break;
		case 'n': g.tokens = strtoull(optarg, &end, 0); break;
		case 'c': g.cluster_size = (uint32_t)strtoul(optarg, &end, 0); break;
		case 'p': g.noise = strtod(optarg, &end); break;
		case 's': g.seed = strtoull(optarg, &end, 0); break;
		case 't': format = PL_FORMAT_TEXT; break;
		case 'l': list = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
		if (end && (*end || errno || end == optarg)) {
			fprintf(stderr, "rcmoe-place-gen: -%c %s: not a number\n", c, optarg);
			return 2;
		}
	}
	if (optind + 1 != argc || g.experts == 0 || g.k == 0 || g.noise < 0 || g.noise > 1) {
		fprintf(stderr, "rcmoe-place-gen: need -e, -k, -n, a noise in 0..1 and one OUT\n");
		usage(stderr);
		return 2;
	}
	char err[512];
	if (pl_gen_write(&g, argv[optind], format, err, sizeof(err)) != 0) {
		fprintf(stderr, "rcmoe-place-gen: %s\n", err);
		return 1;
	}
	if (list && g.cluster_size) {
		uint32_t *cl = malloc(g.experts * sizeof(*cl));
		if (!cl)
			return 1;
		pl_gen_clusters(&g, cl);
		for (uint32_t x = 0; x < g.experts; x++)
			printf("expert %u cluster %u\n", x, cl[x]);
		free(cl);
	}
	return 0;
}
