/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The parent side: one set of N child processes per (run, transport), each exec'd from this
 * binary with that transport's environment (NCCL reads NCCL_NET_PLUGIN once per process, so a
 * transport cannot be switched inside a process). Results come back over pipes; a child that
 * crashes, reports an error or goes quiet for --timeout seconds ends the run, and the others are
 * killed: the tool never waits on a hung NCCL.
 *
 * Also the MPS daemon control.
 */
#include "bench.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	interrupted = sig;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- environment vector ---- */

struct envvec {
	char **v;
	int n, cap;
};

static int env_find(const struct envvec *e, const char *name, size_t nlen)
{
	for (int i = 0; i < e->n; i++)
		if (strncmp(e->v[i], name, nlen) == 0 && e->v[i][nlen] == '=')
			return i;
	return -1;
}

/* Add or replace NAME=VALUE (given whole); later settings win. */
static int env_put(struct envvec *e, const char *kv)
{
	const char *eq = strchr(kv, '=');
	if (!eq)
		return -1;
	char *copy = strdup(kv);
	if (!copy)
		return -1;
	int i = env_find(e, kv, (size_t)(eq - kv));
	if (i >= 0) {
		free(e->v[i]);
		e->v[i] = copy;
		return 0;
	}
	if (e->n + 2 > e->cap) {
		int cap = e->cap ? e->cap * 2 : 64;
		char **v = realloc(e->v, (size_t)cap * sizeof(*v));
		if (!v) {
			free(copy);
			return -1;
		}
		e->v = v;
		e->cap = cap;
	}
	e->v[e->n++] = copy;
	e->v[e->n] = NULL;
	return 0;
}

static int env_set(struct envvec *e, const char *name, const char *value)
{
	char buf[PATH_MAX + 128];
	snprintf(buf, sizeof(buf), "%s=%s", name, value);
	return env_put(e, buf);
}

static const char *env_get(const struct envvec *e, const char *name)
{
	int i = env_find(e, name, strlen(name));
	return i >= 0 ? strchr(e->v[i], '=') + 1 : NULL;
}

static void env_free(struct envvec *e)
{
	for (int i = 0; i < e->n; i++)
		free(e->v[i]);
	free(e->v);
	memset(e, 0, sizeof(*e));
}

/*
 * The environment of one transport run (NCCL_HOSTID is set per rank at spawn time). `shown`
 * collects what the bench itself set, for the header and the JSON.
 */
static int build_env(const struct bench_cfg *cfg, int transport, struct envvec *e,
		     struct envvec *shown)
{
	for (char **p = environ; *p; p++)
		if (strchr(*p, '=') && env_put(e, *p))
			return -1;
	int rc = 0;
#define SET(n, v) (rc |= env_set(e, n, v), rc |= env_set(shown, n, v))
	/* Loopback is the only interface every box has; NCCL would fall back to it anyway. */
	if (!env_get(e, "NCCL_SOCKET_IFNAME"))
		SET("NCCL_SOCKET_IFNAME", "lo");
	/* nNodes > 1 on one box would otherwise start the multi-node NVLink probe. */
	SET("NCCL_MNNVL_ENABLE", "0");
	/* With a collnet run in the invocation, the others stay off the collective side, whatever
	 * the inherited environment says (--env and --rcmoe-env still win). */
	if (cfg->transport_on[BENCH_COLLNET] && transport != BENCH_COLLNET)
		SET("NCCL_COLLNET_ENABLE", "0");
	if (transport == BENCH_SOCKET) {
		SET("NCCL_NET_PLUGIN", "none");
		SET("NCCL_NET", "Socket");
	} else {
		SET("NCCL_NET_PLUGIN", cfg->plugin);
		/* Naming the net makes a plugin load failure loud instead of a silent Socket. */
		SET("NCCL_NET", "RCMoE");
		/* A virtual NIC hangs off the CPU: only SYS gets the plugin GPU buffers. */
		if (cfg->gdr_level) {
			if (strcmp(cfg->gdr_level, "unset") != 0)
				SET("NCCL_NET_GDR_LEVEL", cfg->gdr_level);
		} else if (!env_get(e, "NCCL_NET_GDR_LEVEL")) {
			SET("NCCL_NET_GDR_LEVEL", "SYS");
		}
	}
	if (cfg->proto)
		SET("NCCL_PROTO", cfg->proto);
	/* The emulated link: both transports alike, each rank its own bucket (link.c). */
	if (cfg->link_gbps > 0) {
		char kv[2 * PATH_MAX + 16];
		int k = snprintf(kv, sizeof(kv), "LD_PRELOAD=");
		if (bench_link_preload(cfg, env_get(e, "LD_PRELOAD"), kv + k,
				       sizeof(kv) - (size_t)k))
			return -1;
		rc |= env_put(e, kv) | env_put(shown, kv);
		SET("RCMOE_SHAPER_GBPS", cfg->link_arg);
	}
	for (int i = 0; i < cfg->nenv; i++)
		rc |= env_put(e, cfg->env[i]) | env_put(shown, cfg->env[i]);
	if (transport != BENCH_SOCKET)
		for (int i = 0; i < cfg->nrcmoe_env; i++)
			rc |= env_put(e, cfg->rcmoe_env[i]) | env_put(shown, cfg->rcmoe_env[i]);
	if (transport == BENCH_COLLNET) {
		/* After the lists: the collnet run is what its options say. The codec is named, and
		 * the other codec's setting zeroed, so an inherited RCMOE_AR_* cannot contradict.
		 */
		SET("NCCL_COLLNET_ENABLE", "1");
		if (cfg->ar_density_arg) {
			SET("RCMOE_AR_CODEC", "pts");
			SET("RCMOE_AR_DENSITY", cfg->ar_density_arg);
			SET("RCMOE_AR_BITS", "0");
		} else if (cfg->ar_bits_arg) {
			SET("RCMOE_AR_CODEC", "lsq");
			SET("RCMOE_AR_BITS", cfg->ar_bits_arg);
			SET("RCMOE_AR_DENSITY", "0");
		} else {
			SET("RCMOE_AR_CODEC", "auto");
			SET("RCMOE_AR_DENSITY", "0");
			SET("RCMOE_AR_BITS", "0");
		}
		if (cfg->force_collnet)
			SET("NCCL_ALGO", "allreduce:CollNetChain");
	}
#undef SET
	return rc ? -1 : 0;
}

/* ---- children ---- */

struct child {
	pid_t pid;
	int rank;
	int in_w;  /* parent -> child: the unique id */
	int out_r; /* child -> parent: messages */
	bool alive, done, eof, hello;
	int status;
	int rows;
	char buf[2 * BENCH_MSG_MAX];
	size_t blen;
	struct bench_hello h;
	char error[768];
};

struct runstate {
	struct bench_cfg *cfg;
	struct bench_report *rep;
	struct bench_run *run;
	struct child ch[BENCH_MAX_RANKS];
	int n;
	/* the row sequence every child reports in */
	int seq_op[BENCH_NUM_OPS * BENCH_MAX_SIZES], seq_size[BENCH_NUM_OPS * BENCH_MAX_SIZES];
	int arrivals[BENCH_NUM_OPS * BENCH_MAX_SIZES];
	int nseq, next_print;
	bool id_sent;
	char failure[1024];
	size_t flen;
};

static void add_failure(struct runstate *rs, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void add_failure(struct runstate *rs, const char *fmt, ...)
{
	va_list ap;
	if (rs->flen + 4 >= sizeof(rs->failure))
		return;
	if (rs->flen)
		rs->flen += (size_t)snprintf(rs->failure + rs->flen, sizeof(rs->failure) - rs->flen,
					     "; ");
	va_start(ap, fmt);
	int k = vsnprintf(rs->failure + rs->flen, sizeof(rs->failure) - rs->flen, fmt, ap);
	va_end(ap);
	if (k > 0)
		rs->flen += (size_t)k;
	if (rs->flen >= sizeof(rs->failure))
		rs->flen = sizeof(rs->failure) - 1;
}

static void describe_status(int status, char *buf, size_t len)
{
	if (WIFEXITED(status))
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d (%s)%s", WTERMSIG(status),
			 strsignal(WTERMSIG(status)), WCOREDUMP(status) ? ", core dumped" : "");
	else
		snprintf(buf, len, "status 0x%x", status);
}

static pid_t spawn(struct runstate *rs, int rank, int transport, struct envvec *env,
		   char **orig_argv, int orig_argc)
{
	struct bench_cfg *cfg = rs->cfg;
	struct child *c = &rs->ch[rank];
	char hostid[64], childarg[96];
	snprintf(hostid, sizeof(hostid), BENCH_HOSTID_FMT, rank);
	if (env_set(env, "NCCL_HOSTID", hostid))
		return -1;
	/* Files of this rank's own: NCCL's log (the algorithm) and the plugin's counters. */
	char path[PATH_MAX + 96];
	bench_log_path(cfg, rs->run, rank, path, sizeof(path));
	if (path[0] && env_set(env, "NCCL_DEBUG_FILE", path))
		return -1;
	if (rs->run->stats_tmpl[0]) {
		snprintf(path, sizeof(path), rs->run->stats_tmpl, rank);
		unlink(path); /* the plugin appends */
		if (env_set(env, "RCMOE_STATS_FILE", path))
			return -1;
	}
	/* argv: this binary, the child marker, then the user's own options unchanged. */
	char **argv = calloc((size_t)orig_argc + 3, sizeof(*argv));
	if (!argv)
		return -1;
	int in[2], out[2];
	if (pipe2(in, O_CLOEXEC)) {
		free(argv);
		return -1;
	}
	if (pipe2(out, O_CLOEXEC)) {
		close(in[0]);
		close(in[1]);
		free(argv);
		return -1;
	}
	snprintf(childarg, sizeof(childarg), "--child=%d,%d,%d,%d", rank, transport, in[0], out[1]);
	argv[0] = cfg->exe;
	argv[1] = childarg;
	for (int i = 1; i < orig_argc; i++)
		argv[i + 1] = orig_argv[i];

	pid_t parent = getpid();
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid == 0) {
		/* A child must not outlive a parent that was killed outright. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		signal(SIGPIPE, SIG_DFL); /* an ignored disposition would survive exec */
		/* NCCL logs to stdout; keep the parent's stdout for the tables alone. */
		dup2(STDERR_FILENO, STDOUT_FILENO);
		fcntl(in[0], F_SETFD, 0);
		fcntl(out[1], F_SETFD, 0);
		execve(cfg->exe, argv, env->v);
		dprintf(STDERR_FILENO, "rcmoe-bench: exec %s: %s\n", cfg->exe, strerror(errno));
		_exit(127);
	}
	free(argv);
	close(in[0]);
	close(out[1]);
	if (pid < 0) {
		close(in[1]);
		close(out[0]);
		return -1;
	}
	fcntl(out[0], F_SETFL, O_NONBLOCK);
	memset(c, 0, sizeof(*c));
	c->pid = pid;
	c->rank = rank;
	c->in_w = in[1];
	c->out_r = out[0];
	c->alive = true;
	return pid;
}

static void finish_row(struct runstate *rs, int k)
{
	struct bench_cfg *cfg = rs->cfg;
	struct bench_result *res = &rs->run->res[rs->seq_op[k]][rs->seq_size[k]];
	int op = cfg->ops[rs->seq_op[k]];
	res->time_us = 0;
	for (int r = 0; r < rs->n; r++)
		if (res->rank_time_us[r] > res->time_us)
			res->time_us = res->rank_time_us[r];
	double sec = res->time_us * 1e-6;
	res->algbw = sec > 0 ? (double)res->bytes / sec / 1e9 : 0;
	res->busbw = res->algbw * bench_busbw_factor(op, cfg->nranks);
	res->valid = true;
	rs->rep->wrong_total += res->chk.wrong;
}

static void handle_row(struct runstate *rs, struct child *c, const struct bench_row_msg *m)
{
	int k = c->rows;
	if (k >= rs->nseq || m->op != rs->seq_op[k] || m->size_idx != rs->seq_size[k]) {
		add_failure(rs, "rank %d: unexpected result row (op %d size %d, row %d)", c->rank,
			    m->op, m->size_idx, k);
		return;
	}
	c->rows++;
	struct bench_result *res = &rs->run->res[m->op][m->size_idx];
	if (rs->arrivals[k] == 0) {
		res->bytes = m->bytes;
		res->count = m->count;
		memset(&res->chk, 0, sizeof(res->chk));
	} else if (res->bytes != m->bytes || res->count != m->count) {
		add_failure(rs, "rank %d: size mismatch in row %d", c->rank, k);
		return;
	}
	res->rank_time_us[c->rank] = m->time_us;
	res->chk.wrong += m->chk.wrong;
	res->chk.checked += m->chk.checked;
	res->chk.err_sq += m->chk.err_sq;
	res->chk.ref_sq += m->chk.ref_sq;
	if (isnan(m->chk.maxabs) || isnan(res->chk.maxabs))
		res->chk.maxabs = NAN;
	else if (m->chk.maxabs > res->chk.maxabs)
		res->chk.maxabs = m->chk.maxabs;
	if (++rs->arrivals[k] == rs->n)
		finish_row(rs, k);
	/* Print strictly in order; ranks run in lockstep so this rarely waits. */
	while (rs->next_print < rs->nseq && rs->arrivals[rs->next_print] == rs->n) {
		int j = rs->next_print++;
		bench_algo_update(rs->cfg, rs->run, rs->seq_op[j], rs->seq_size[j]);
		bench_report_row(rs->rep, rs->run, rs->seq_op[j], rs->seq_size[j], stdout);
	}
}

static void handle_msg(struct runstate *rs, struct child *c, const struct bench_msg_hdr *h,
		       const char *p)
{
	switch (h->type) {
	case BENCH_MSG_ID:
		if (c->rank != 0 || h->len != BENCH_ID_BYTES || rs->id_sent) {
			add_failure(rs, "rank %d: unexpected unique id message", c->rank);
			return;
		}
		rs->id_sent = true;
		for (int r = 1; r < rs->n; r++) {
			/* 128 bytes into an empty pipe: atomic, never blocks. A dead child shows
			 * up through waitpid, so a failed write needs no handling here. */
			ssize_t w = write(rs->ch[r].in_w, p, BENCH_ID_BYTES);
			(void)w;
		}
		break;
	case BENCH_MSG_HELLO:
		if (h->len != sizeof(struct bench_hello))
			break;
		memcpy(&c->h, p, sizeof(c->h));
		c->h.text[sizeof(c->h.text) - 1] = 0;
		c->hello = true;
		if (c->rank == 0) {
			rs->run->nccl_version = c->h.nccl_version;
			rs->run->a2a_native = c->h.a2a_native;
		}
		if (rs->cfg->verbose)
			fprintf(stderr, "rcmoe-bench: %s rank %d: %s\n",
				bench_transport_name(rs->run->transport), c->rank, c->h.text);
		/* Once everybody said hello: one communicator needs one id. */
		int said = 0;
		for (int r = 0; r < rs->n; r++)
			said += rs->ch[r].hello;
		if (said == rs->n)
			for (int r = 1; r < rs->n; r++)
				if (rs->ch[r].h.id_hash != rs->ch[0].h.id_hash)
					add_failure(rs,
						    "rank %d used another unique id than rank 0",
						    r);
		break;
	case BENCH_MSG_ROW:
		if (h->len == sizeof(struct bench_row_msg)) {
			struct bench_row_msg m;
			memcpy(&m, p, sizeof(m));
			handle_row(rs, c, &m);
		}
		break;
	case BENCH_MSG_ERROR: {
		size_t n = h->len < sizeof(c->error) - 1 ? h->len : sizeof(c->error) - 1;
		memcpy(c->error, p, n);
		c->error[n] = 0;
		fprintf(stderr, "rcmoe-bench: %s rank %d: %s\n",
			bench_transport_name(rs->run->transport), c->rank, c->error);
		break;
	}
	case BENCH_MSG_INFO:
		if (rs->cfg->verbose)
			fprintf(stderr, "rcmoe-bench: %s rank %d: %.*s\n",
				bench_transport_name(rs->run->transport), c->rank, (int)h->len, p);
		break;
	case BENCH_MSG_DONE: c->done = true; break;
	}
}

/* Read what is there; returns true when something arrived. */
static bool drain(struct runstate *rs, struct child *c)
{
	bool got = false;
	while (!c->eof) {
		ssize_t k = read(c->out_r, c->buf + c->blen, sizeof(c->buf) - c->blen);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			break; /* EAGAIN */
		if (k == 0) {
			c->eof = true;
			break;
		}
		got = true;
		c->blen += (size_t)k;
		while (c->blen >= sizeof(struct bench_msg_hdr)) {
			struct bench_msg_hdr h;
			memcpy(&h, c->buf, sizeof(h));
			if (h.magic != BENCH_MSG_MAGIC || h.len > BENCH_MSG_MAX) {
				add_failure(rs, "rank %d: garbled message stream", c->rank);
				c->blen = 0;
				c->eof = true;
				break;
			}
			size_t total = sizeof(h) + h.len;
			if (c->blen < total)
				break;
			handle_msg(rs, c, &h, c->buf + sizeof(h));
			memmove(c->buf, c->buf + total, c->blen - total);
			c->blen -= total;
		}
	}
	return got;
}

static void reap(struct runstate *rs, struct child *c, int status)
{
	c->alive = false;
	c->status = status;
	drain(rs, c);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && c->done)
		return;
	char how[160];
	describe_status(status, how, sizeof(how));
	if (c->error[0])
		add_failure(rs, "rank %d: %s (%s)", c->rank, c->error, how);
	else if (c->done)
		add_failure(rs, "rank %d %s after finishing its work", c->rank, how);
	else
		add_failure(rs, "rank %d %s after %d of %d result rows", c->rank, how, c->rows,
			    rs->nseq);
}

/* SIGTERM, a bounded wait, then SIGKILL: always returns with every child reaped. */
static void kill_all(struct runstate *rs)
{
	int alive = 0;
	for (int r = 0; r < rs->n; r++)
		if (rs->ch[r].alive) {
			kill(rs->ch[r].pid, SIGTERM);
			alive++;
		}
	double until = now_s() + 5.0;
	while (alive && now_s() < until) {
		for (int r = 0; r < rs->n; r++) {
			struct child *c = &rs->ch[r];
			int st;
			if (c->alive && waitpid(c->pid, &st, WNOHANG) == c->pid) {
				c->alive = false;
				c->status = st;
				alive--;
			}
		}
		if (alive)
			usleep(20000);
	}
	for (int r = 0; r < rs->n; r++) {
		struct child *c = &rs->ch[r];
		if (c->alive) {
			kill(c->pid, SIGKILL);
			waitpid(c->pid, &c->status, 0);
			c->alive = false;
		}
	}
}

/* NCCL's debug variables are the user's when any is set (the log then goes where they say). */
static bool user_nccl_debug(const struct envvec *e, char *why, size_t len)
{
	const char *d = env_get(e, "NCCL_DEBUG");
	if (env_get(e, "NCCL_DEBUG_FILE"))
		snprintf(why, len, "NCCL_DEBUG_FILE is set");
	else if (env_get(e, "NCCL_DEBUG_SUBSYS"))
		snprintf(why, len, "NCCL_DEBUG_SUBSYS is set");
	else if (d && strcasecmp(d, "WARN") && strcasecmp(d, "VERSION") && strcasecmp(d, "NONE"))
		snprintf(why, len, "NCCL_DEBUG=%.40s is set", d);
	else
		return false;
	return true;
}

/*
 * The files of a run: rank 0's NCCL log for the algorithm of each all-reduce row (every rank
 * gets a log file of its own, whose WARN lines are copied to stderr), and for a run that turns
 * collNet on, the plugin's counters.
 */
static int plan_files(struct bench_cfg *cfg, struct bench_run *r, struct envvec *e,
		      struct envvec *shown)
{
	bench_cn_expect(cfg, r, e->v);
	r->nccl_log[0] = r->stats_tmpl[0] = r->algo_why[0] = 0;
	bool track = bench_has_allreduce(cfg);
	if (track && cfg->no_algo_log) {
		snprintf(r->algo_why, sizeof(r->algo_why), "--no-algo-log");
		track = false;
	}
	if (track && user_nccl_debug(e, r->algo_why, sizeof(r->algo_why)))
		track = false;
	if ((track || r->cn_enabled) && bench_workdir(cfg))
		return -1;
	if (track) {
		int rc = env_set(e, "NCCL_DEBUG", "INFO") |
			 env_set(e, "NCCL_DEBUG_SUBSYS", "TUNING") |
			 env_set(shown, "NCCL_DEBUG", "INFO") |
			 env_set(shown, "NCCL_DEBUG_SUBSYS", "TUNING");
		if (rc)
			return -1;
		snprintf(r->nccl_log, sizeof(r->nccl_log), "%.3000s/nccl-t%d-run%d-r0.log",
			 cfg->workdir, r->transport, r->run);
		unlink(r->nccl_log); /* NCCL truncates it too; no stale lines meanwhile */
	}
	if (r->cn_enabled) {
		snprintf(r->stats_tmpl, sizeof(r->stats_tmpl), "%.3000s/stats-t%d-run%d-r%%d.jsonl",
			 cfg->workdir, r->transport, r->run);
		if (env_set(e, "RCMOE_STATS_FORMAT", "json") ||
		    env_set(shown, "RCMOE_STATS_FORMAT", "json"))
			return -1;
	}
	return 0;
}

static int run_one(struct bench_cfg *cfg, struct bench_report *rep, int run, int transport,
		   char **argv, int argc)
{
	struct runstate *rs = calloc(1, sizeof(*rs));
	if (!rs)
		return -1;
	rs->cfg = cfg;
	rs->rep = rep;
	rs->n = cfg->nranks;
	rs->run = bench_report_run(rep, run, transport);
	rs->run->attempted = true;
	for (int o = 0; o < cfg->nops; o++)
		for (int s = 0; s < cfg->nsizes; s++) {
			size_t count, pp;
			if (!bench_op_shape(cfg, cfg->ops[o], cfg->sizes[s], &count, &pp))
				continue;
			rs->seq_op[rs->nseq] = o;
			rs->seq_size[rs->nseq] = s;
			rs->nseq++;
		}

	struct envvec env = { 0 }, shown = { 0 };
	if (build_env(cfg, transport, &env, &shown)) {
		snprintf(rs->run->error, sizeof(rs->run->error), "out of memory (environment)");
		rs->run->failed = true;
		env_free(&env);
		env_free(&shown);
		free(rs);
		return -1;
	}
	if (plan_files(cfg, rs->run, &env, &shown)) {
		snprintf(rs->run->error, sizeof(rs->run->error),
			 "cannot make a directory for NCCL's logs and the plugin's counters");
		rs->run->failed = true;
		env_free(&env);
		env_free(&shown);
		free(rs);
		return -1;
	}
	printf("\n# %s run %d/%d, environment set by rcmoe-bench:", bench_transport_name(transport),
	       run + 1, cfg->runs);
	for (int i = 0; i < shown.n; i++)
		printf(" %s", shown.v[i]);
	printf(" NCCL_HOSTID=" BENCH_HOSTID_FMT "..%d", 0, cfg->nranks - 1);
	if (rs->run->nccl_log[0])
		printf(" NCCL_DEBUG_FILE=%s/nccl-t%d-run%d-r<rank>.log", cfg->workdir, transport,
		       run);
	if (rs->run->stats_tmpl[0])
		printf(" RCMOE_STATS_FILE=%s/stats-t%d-run%d-r<rank>.jsonl", cfg->workdir,
		       transport, run);
	printf("\n");
	if (!rs->run->nccl_log[0] && rs->run->algo_why[0])
		printf("# NCCL's algorithm is not shown: %s\n", rs->run->algo_why);
	fflush(stdout);

	int spawned = 0;
	for (int r = 0; r < rs->n; r++) {
		if (spawn(rs, r, transport, &env, argv, argc) < 0) {
			add_failure(rs, "cannot start rank %d: %s", r, strerror(errno));
			break;
		}
		spawned++;
	}
	rs->n = spawned; /* only these need watching and reaping */
	env_free(&env);
	env_free(&shown);

	double last_news = now_s();
	while (!rs->flen) {
		if (interrupted) {
			add_failure(rs, "interrupted by signal %d", (int)interrupted);
			break;
		}
		struct pollfd pfd[BENCH_MAX_RANKS];
		int np = 0, idx[BENCH_MAX_RANKS];
		for (int r = 0; r < rs->n; r++)
			if (!rs->ch[r].eof) {
				pfd[np].fd = rs->ch[r].out_r;
				pfd[np].events = POLLIN;
				idx[np++] = r;
			}
		if (poll(pfd, (nfds_t)np, 100) > 0)
			for (int i = 0; i < np; i++)
				if (pfd[i].revents && drain(rs, &rs->ch[idx[i]]))
					last_news = now_s();
		int running = 0;
		for (int r = 0; r < rs->n; r++) {
			struct child *c = &rs->ch[r];
			int st;
			if (c->alive && waitpid(c->pid, &st, WNOHANG) == c->pid)
				reap(rs, c, st);
			running += c->alive;
		}
		if (!running)
			break;
		if (now_s() - last_news > cfg->timeout) {
			char who[256] = "";
			size_t wl = 0;
			for (int r = 0; r < rs->n && wl + 16 < sizeof(who); r++)
				if (rs->ch[r].alive && !rs->ch[r].done)
					wl += (size_t)snprintf(who + wl, sizeof(who) - wl, " %d",
							       r);
			add_failure(rs,
				    "no progress for %.0f s (--timeout); ranks still running:%s; "
				    "%d of %d rows complete",
				    cfg->timeout, who, rs->next_print, rs->nseq);
			break;
		}
	}
	if (rs->flen) {
		/* Rows the others already reported still count: read them before the kill. */
		for (int r = 0; r < rs->n; r++)
			drain(rs, &rs->ch[r]);
		int victims = 0;
		for (int r = 0; r < rs->n; r++)
			victims += rs->ch[r].alive;
		kill_all(rs);
		if (victims)
			fprintf(stderr, "rcmoe-bench: %s run %d: stopped %d remaining rank(s)\n",
				bench_transport_name(transport), run + 1, victims);
	}
	for (int r = 0; r < rs->n; r++) {
		close(rs->ch[r].in_w);
		close(rs->ch[r].out_r);
	}
	if (!rs->flen && rs->next_print < rs->nseq)
		add_failure(rs, "only %d of %d result rows arrived", rs->next_print, rs->nseq);
	bench_echo_warnings(cfg, rs->run, rs->n);
	/* Every rank has exited (or was killed): its counters are in its file, or never will be. */
	if (!rs->flen && bench_cn_check(cfg, rs->run, rs->n))
		add_failure(rs, "%s", rs->run->cn_error);
	bench_cn_print(cfg, rs->run, stdout);
	int rc = 0;
	if (rs->flen) {
		rs->run->failed = true;
		snprintf(rs->run->error, sizeof(rs->run->error), "%s", rs->failure);
		rc = -1;
	}
	bench_report_run_end(rep, rs->run, stdout);
	free(rs);
	return rc;
}

/* Everything: runs x transports, Socket first in each run (interleaved, so drift hits both). */
int bench_launch_all(struct bench_cfg *cfg, struct bench_report *rep)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN); /* writing the id to a child that just died */

	int failed = 0;
	for (int run = 0; run < cfg->runs && !interrupted; run++)
		for (int t = 0; t < BENCH_NUM_TRANSPORTS && !interrupted; t++) {
			if (!cfg->transport_on[t])
				continue;
			if (run_one(cfg, rep, run, t, bench_orig_argv, bench_orig_argc))
				failed++;
		}
	rep->failures += failed;
	return interrupted ? -2 : failed ? -1 : 0;
}

/* ---- MPS ---- */

bool bench_mps_running(void)
{
	DIR *d = opendir("/proc");
	if (!d)
		return false;
	bool found = false;
	struct dirent *de;
	while (!found && (de = readdir(d))) {
		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		char path[64], comm[64] = "";
		snprintf(path, sizeof(path), "/proc/%.20s/comm", de->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		if (fgets(comm, sizeof(comm), f))
			/* comm is cut to 15 characters: control and server share this prefix */
			found = strncmp(comm, "nvidia-cuda-mps", 15) == 0;
		fclose(f);
	}
	closedir(d);
	return found;
}

/* Run nvidia-cuda-mps-control with args, feeding `input` on stdin; bounded to 30 s. */
static int mps_control(const char *arg, const char *input)
{
	int in[2];
	if (pipe2(in, O_CLOEXEC))
		return -1;
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(in[0], STDIN_FILENO);
		dup2(STDERR_FILENO, STDOUT_FILENO);
		signal(SIGPIPE, SIG_DFL);
		execlp("nvidia-cuda-mps-control", "nvidia-cuda-mps-control", arg, (char *)NULL);
		dprintf(STDERR_FILENO, "rcmoe-bench: nvidia-cuda-mps-control: %s\n",
			strerror(errno));
		_exit(127);
	}
	close(in[0]);
	if (pid < 0) {
		close(in[1]);
		return -1;
	}
	if (input) {
		ssize_t w = write(in[1], input, strlen(input));
		(void)w;
	}
	close(in[1]);
	double until = now_s() + 30.0;
	int st = 0;
	while (waitpid(pid, &st, WNOHANG) != pid) {
		if (now_s() > until) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			return -1;
		}
		usleep(20000);
	}
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

int bench_mps_start(void)
{
	if (mps_control("-d", NULL))
		return -1;
	/* The daemon forks away; give it a moment to show up. */
	for (int i = 0; i < 50 && !bench_mps_running(); i++)
		usleep(20000);
	return bench_mps_running() ? 0 : -1;
}

/* "quit" returns before the daemon and its server are gone: wait for them (bounded), or the
 * next rcmoe-bench would see MPS running, not start it, and then run without it. */
int bench_mps_stop(void)
{
	if (mps_control(NULL, "quit\n"))
		return -1;
	for (int i = 0; i < 500 && bench_mps_running(); i++)
		usleep(20000);
	return bench_mps_running() ? -1 : 0;
}
