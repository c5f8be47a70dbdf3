/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rcmoe-place: a placement of experts on devices that lowers the all-to-all volume of a routing
 * trace (docs/placement.md).
 *
 *   rcmoe-place -d DEVICES -m EXPERTS_PER_DEVICE [-s SEED] [-r RESTARTS] [-o OUT.json] TRACE
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
		"usage: rcmoe-place -d DEVICES -m EXPERTS_PER_DEVICE [options] TRACE\n"
		"Find a placement of MoE experts on devices, the same number on each, that lowers\n"
		"the all-to-all volume of a routing trace: the rows sent, a token counted once "
		"per\n"
		"device that holds one of its experts. Prints identity and found placement side "
		"by\n"
		"side; the identity (expert e on device e / EXPERTS_PER_DEVICE) is kept unless "
		"the\n"
		"found one sends strictly fewer rows.\n"
		"\n"
		"  TRACE                       binary (magic RCMOETRC) or text (a token a line, k\n"
		"                              ids), told apart by the content; a regular file\n"
		"                              (it is read twice); docs/placement.md has both "
		"formats\n"
		"  -d, --devices N             devices (1..%u)\n"
		"  -m, --experts-per-device N  experts on each device; the trace has N x DEVICES\n"
		"  -k, --k K                   check that the trace routes each token to K "
		"experts\n"
		"  -f, --format F              auto (default), binary or text\n"
		"  -s, --seed S                seed of the restarts (default 1); same seed, same "
		"result\n"
		"  -r, --restarts R            greedy restarts besides the refined identity "
		"(default 8)\n"
		"  -o, --out FILE              write the placement as JSON to FILE\n"
		"  -h, --help                  this text\n"
		"\n"
		"Exit status: 0; 1 when the trace cannot be read or is malformed (the message "
		"names\n"
		"the file and the token or line) or FILE cannot be written; 2 on bad usage.\n",
		PL_MAX_EXPERTS);
}

static int number(const char *opt, const char *arg, unsigned long long max, unsigned long long *v)
{
	char *end;
	errno = 0;
	*v = strtoull(arg, &end, 0);
	if (errno || *end || arg[0] == '-' || end == arg || *v > max) {
		fprintf(stderr, "rcmoe-place: %s %s: expected 0..%llu\n", opt, arg, max);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = { { "devices", required_argument, NULL, 'd' },
					      { "experts-per-device", required_argument, NULL,
						'm' },
					      { "k", required_argument, NULL, 'k' },
					      { "format", required_argument, NULL, 'f' },
					      { "seed", required_argument, NULL, 's' },
					      { "restarts", required_argument, NULL, 'r' },
					      { "out", required_argument, NULL, 'o' },
					      { "help", no_argument, NULL, 'h' },
					      { NULL, 0, NULL, 0 } };
	unsigned long long devices = 0, per_device = 0, k = 0, seed = 1, restarts = 8;
	int format = PL_FORMAT_AUTO, c;
	const char *out = NULL;
	while ((c = getopt_long(argc, argv, "d:m:k:f:s:r:o:h", opts, NULL)) != -1) {
		int bad = 0;
		switch (c) {
		case 'd': bad = number("--devices", optarg, PL_MAX_EXPERTS, &devices); break;
		case 'm':
			bad = number("--experts-per-device", optarg, PL_MAX_EXPERTS, &per_device);
			break;
		case 'k': bad = number("--k", optarg, PL_MAX_K, &k); break;
		case 's': bad = number("--seed", optarg, UINT64_MAX, &seed); break;
		case 'r': bad = number("--restarts", optarg, 1000, &restarts); break;
		case 'o': out = optarg; break;
		case 'f':
			if (!strcmp(optarg, "auto"))
				format = PL_FORMAT_AUTO;
			else if (!strcmp(optarg, "binary"))
				format = PL_FORMAT_BINARY;
			else if (!strcmp(optarg, "text"))
				format = PL_FORMAT_TEXT;
			else {
				fprintf(stderr, "rcmoe-place: --format %s: auto, binary or text\n",
					optarg);
				bad = 1;
			}
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
		if (bad)
			return 2;
	}
	if (optind + 1 != argc || devices == 0 || per_device == 0) {
		fprintf(stderr, "rcmoe-place: %s\n",
			optind + 1 != argc ? "give exactly one trace"
					   : "--devices and --experts-per-device are required");
		usage(stderr);
		return 2;
	}
	if (devices * per_device > PL_MAX_EXPERTS) {
		fprintf(stderr, "rcmoe-place: %llu x %llu experts: at most %u\n", devices,
			per_device, PL_MAX_EXPERTS);
		return 2;
	}

	struct pl_result res;
	char err[512];
	const char *trace = argv[optind];
	if (pl_place(trace, format, (uint32_t)devices, (uint32_t)per_device, (uint32_t)k, seed,
		     (unsigned)restarts, &res, err, sizeof(err)) != 0) {
		fprintf(stderr, "rcmoe-place: %s\n", err);
		pl_result_free(&res);
		return 1;
	}
	pl_print_table(stdout, trace, &res);
	int rc = 0;
	if (out) {
		if (pl_write_json(out, trace, &res) != 0) {
			fprintf(stderr, "rcmoe-place: %s: %s\n", out, strerror(errno));
			rc = 1;
		} else {
			printf("# placement written to %s\n", out);
		}
	}
	pl_result_free(&res);
	return rc;
}
