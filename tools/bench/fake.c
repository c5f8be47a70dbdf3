/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A simulated rank for --selftest: the same process model, messages and checks as a real rank,
 * with the collective computed on the CPU from its definition instead of by NCCL. It lets the
 * launcher, the failure handling, the tables and the JSON be exercised on a machine without a
 * GPU. Times are synthetic. It also verifies the environment the parent gave it.
 *
 * With --rcmoe-env RCMOE_A2A_BITS=b and --check error, the RCMoE run quantizes what alltoall
 * and sendrecv deliver (block-wise, round to nearest, 128 elements per block), so the error
 * columns show figures of the right order.
 */
#include "bench.h"

#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Above this the simulation skips the check: the selftest is about plumbing, not speed. */
#define FAKE_CHECK_MAX (4u << 20)

static int env_error(const struct bench_cfg *cfg, const char *what)
{
	char msg[512];
	snprintf(msg, sizeof(msg), "environment: %s", what);
	bench_msg_send(cfg->child_out_fd, BENCH_MSG_ERROR, cfg->child_rank, msg, strlen(msg));
	return 1;
}

static int check_env(const struct bench_cfg *cfg, char *summary, size_t len)
{
	char want[64];
	const char *v;
	snprintf(want, sizeof(want), BENCH_HOSTID_FMT, cfg->child_rank);
	if (!(v = getenv("NCCL_HOSTID")) || strcmp(v, want))
		return env_error(cfg, "NCCL_HOSTID is not rcmoe-bench-h<rank>");
	bool rc = cfg->child_transport == BENCH_RCMOE;
	if (!(v = getenv("NCCL_NET")) || strcmp(v, rc ? "RCMoE" : "Socket"))
		return env_error(cfg, "NCCL_NET does not name the transport");
	if (!(v = getenv("NCCL_NET_PLUGIN")) || strcmp(v, rc ? cfg->plugin : "none"))
		return env_error(cfg, "NCCL_NET_PLUGIN is not the plugin (or none)");
	if (!(v = getenv("NCCL_MNNVL_ENABLE")) || strcmp(v, "0"))
		return env_error(cfg, "NCCL_MNNVL_ENABLE is not 0");
	if (!getenv("NCCL_SOCKET_IFNAME"))
		return env_error(cfg, "NCCL_SOCKET_IFNAME is not set");
	if (rc && !cfg->gdr_level && !getenv("NCCL_NET_GDR_LEVEL"))
		return env_error(cfg, "NCCL_NET_GDR_LEVEL is not set for the rcmoe run");
	if (!rc)
		for (int i = 0; i < cfg->nrcmoe_env; i++) {
			size_t nl = (size_t)(strchr(cfg->rcmoe_env[i], '=') - cfg->rcmoe_env[i]);
			char name[128];
			snprintf(name, sizeof(name), "%.*s", (int)nl, cfg->rcmoe_env[i]);
			bool also_env = false;
			for (int j = 0; j < cfg->nenv; j++)
				also_env |= strncmp(cfg->env[j], cfg->rcmoe_env[i], nl + 1) == 0;
			if (getenv(name) && !also_env)
				return env_error(cfg,
						 "an --rcmoe-env variable reached the Socket run");
		}
	for (int i = 0; i < cfg->nenv; i++) {
		const char *eq = strchr(cfg->env[i], '=');
		char name[128];
		snprintf(name, sizeof(name), "%.*s", (int)(eq - cfg->env[i]), cfg->env[i]);
		v = getenv(name);
		bool overridden = false;
		for (int j = 0; rc && j < cfg->nrcmoe_env; j++)
			overridden |= strncmp(cfg->rcmoe_env[j], cfg->env[i],
					      (size_t)(eq - cfg->env[i]) + 1) == 0;
		if (!overridden && (!v || strcmp(v, eq + 1)))
			return env_error(cfg, "an --env variable is missing");
	}
	const char *gdr = getenv("NCCL_NET_GDR_LEVEL"), *bits = getenv("RCMOE_A2A_BITS");
	snprintf(summary, len,
		 "pid %d NCCL_HOSTID=%s NCCL_NET=%s NCCL_NET_PLUGIN=%s NCCL_NET_GDR_LEVEL=%s "
		 "RCMOE_A2A_BITS=%s",
		 (int)getpid(), getenv("NCCL_HOSTID"), getenv("NCCL_NET"),
		 getenv("NCCL_NET_PLUGIN"), gdr ? gdr : "-", bits ? bits : "-");
	return 0;
}

/* Round-to-nearest block quantization with L = 2^(bits-1)-1 levels: a stand-in for LSQ. */
static void quantize(const struct bench_dtype *dt, void *buf, size_t count, int bits)
{
	const double L = (double)((1 << (bits - 1)) - 1);
	for (size_t b = 0; b < count; b += 128) {
		size_t e = b + 128 < count ? b + 128 : count;
		double mx = 0;
		for (size_t i = b; i < e; i++)
			mx = fmax(mx, fabs(bench_load_f(dt, buf, i)));
		if (mx == 0)
			continue;
		double s = mx / L;
		for (size_t i = b; i < e; i++)
			bench_store_f(dt, buf, i, nearbyint(bench_load_f(dt, buf, i) / s) * s);
	}
}

/* What rank `me` receives, from the definitions of the three collectives. */
static void simulate(const struct bench_cfg *cfg, int op, int me, void *recv, size_t count,
		     void *scratch)
{
	const struct bench_dtype *dt = cfg->dt;
	const int n = cfg->nranks;
	if (op == BENCH_SENDRECV) {
		bench_fill(cfg, op, (me + n - 1) % n, recv, count);
		return;
	}
	if (op == BENCH_ALLTOALL) {
		size_t pp = count / (size_t)n;
		for (int p = 0; p < n; p++) {
			/* peer p's whole buffer; its block for me starts at me*pp */
			bench_fill(cfg, op, p, scratch, count);
			memcpy((char *)recv + (size_t)p * pp * dt->size,
			       (char *)scratch + (size_t)me * pp * dt->size, pp * dt->size);
		}
		return;
	}
	for (int p = 0; p < n; p++) {
		bench_fill(cfg, op, p, p ? scratch : recv, count);
		if (!p)
			continue;
		for (size_t i = 0; i < count; i++) {
			if (dt->is_float)
				bench_store_f(dt, recv, i,
					      (double)(float)(bench_load_f(dt, recv, i) +
							      bench_load_f(dt, scratch, i)));
			else
				bench_store_u(dt, recv, i,
					      bench_load_u(dt, recv, i) +
						      bench_load_u(dt, scratch, i));
		}
	}
}

int bench_fake_child_main(struct bench_cfg *cfg)
{
	const int me = cfg->child_rank, fd = cfg->child_out_fd;
	const bool rc = cfg->child_transport == BENCH_RCMOE;
	char id[BENCH_ID_BYTES];
	struct bench_hello h;
	memset(&h, 0, sizeof(h));
	if (check_env(cfg, h.text, sizeof(h.text)))
		return 1;

	if (me == 0) {
		uint64_t x = bench_hash64((uint64_t)getpid() ^ ((uint64_t)time(NULL) << 20));
		for (int i = 0; i < BENCH_ID_BYTES; i += 8) {
			x = bench_hash64(x);
			memcpy(id + i, &x, 8);
		}
		if (bench_msg_send(fd, BENCH_MSG_ID, me, id, sizeof(id)))
			return 1;
	} else if (bench_child_read_id(cfg->child_in_fd, id)) {
		return 1;
	}
	h.nccl_version = 0;
	h.a2a_native = cfg->a2a != BENCH_A2A_P2P;
	h.id_hash = bench_id_hash(id);
	if (bench_msg_send(fd, BENCH_MSG_HELLO, me, &h, sizeof(h)))
		return 1;

	const char *bits_env = rc ? getenv("RCMOE_A2A_BITS") : NULL;
	int bits = bits_env ? atoi(bits_env) : 0;
	size_t maxbytes = FAKE_CHECK_MAX;
	char *recv = malloc(maxbytes), *scratch = malloc(maxbytes);
	if (!recv || !scratch)
		return 1;

	int row = 0;
	for (int o = 0; o < cfg->nops; o++) {
		int op = cfg->ops[o];
		for (int s = 0; s < cfg->nsizes; s++) {
			size_t count, pp;
			size_t bytes = bench_op_shape(cfg, op, cfg->sizes[s], &count, &pp);
			if (!bytes)
				continue;
			if (me == cfg->fail_rank && row == 1) {
				const char msg[] = "simulated failure (--selftest-fail)";
				switch (cfg->fail_mode) {
				case BENCH_FAIL_CRASH: raise(SIGSEGV); break;
				case BENCH_FAIL_HANG:
					for (;;)
						pause();
				case BENCH_FAIL_ERROR:
					bench_msg_send(fd, BENCH_MSG_ERROR, me, msg,
						       sizeof(msg) - 1);
					return 1;
				case BENCH_FAIL_EXIT: _exit(3);
				}
			}
			struct bench_row_msg m;
			memset(&m, 0, sizeof(m));
			m.op = o;
			m.size_idx = s;
			m.bytes = bytes;
			m.count = count;
			/* Socket ~1.5 GB/s busbw; RCMoE faster, by the compression when lossy. */
			double bw = rc ? 2.0 : 1.5;
			if (rc && bits && bench_lossy(cfg) && op != BENCH_ALLREDUCE)
				bw *= 8.0 * cfg->dt->size / bits * 0.9;
			double f = bench_busbw_factor(op, cfg->nranks);
			m.time_us = 20.0 + (double)bytes * f / (bw * 1e3) * (1.0 + 0.01 * me);
			if (cfg->check != BENCH_CHECK_NONE && bytes <= maxbytes) {
				simulate(cfg, op, me, recv, count, scratch);
				if (bits && bench_lossy(cfg) && op != BENCH_ALLREDUCE)
					quantize(cfg->dt, recv, count, bits);
				if (me == cfg->fail_rank && cfg->fail_mode == BENCH_FAIL_WRONG) {
					size_t k = count / 2;
					if (cfg->dt->is_float)
						bench_store_f(cfg->dt, recv, k,
							      bench_load_f(cfg->dt, recv, k) + 64);
					else
						bench_store_u(cfg->dt, recv, k,
							      bench_load_u(cfg->dt, recv, k) + 1);
				}
				bench_check(cfg, op, me, recv, count, &m.chk);
			}
			usleep(2000);
			if (bench_msg_send(fd, BENCH_MSG_ROW, me, &m, sizeof(m)))
				return 1;
			row++;
		}
	}
	free(recv);
	free(scratch);
	bench_msg_send(fd, BENCH_MSG_DONE, me, NULL, 0);
	return 0;
}
