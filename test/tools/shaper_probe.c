/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The workload side of test_shaper.c: started with librcmoe-shaper.so in LD_PRELOAD, it runs one
 * scenario over loopback sockets and prints what it measured as key=value lines, which the test
 * judges. Keeping the judging out of here means a broken shaper cannot hide a failure.
 *
 *   shaper_probe MODE [SECONDS]
 *   MODE: blocking | nonblocking | sendmsg | writev | threads | debt | unix | invalid
 */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "rcmoe_shaper.h"

#define CHUNK (1u << 20) /* what the application asks per call: above every burst tested */

static char buf[CHUNK];

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what)
{
	printf("error=%s: %s\n", what, strerror(errno));
	exit(1);
}

/* ---- a socket pair and a thread that drains its receiving end ---- */

struct pair {
	int tx, rx;
	pthread_t drain;
};

static void *drain(void *arg)
{
	static __thread char sink[1 << 20];
	struct pair *p = arg;
	for (;;) {
		ssize_t k = recv(p->rx, sink, sizeof(sink), 0);
		if (k == 0 || (k < 0 && errno != EINTR))
			return NULL;
	}
}

static void tcp_pair(struct pair *p)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t alen = sizeof(a);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int ls = socket(AF_INET, SOCK_STREAM, 0);
	if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) || listen(ls, 1) ||
	    getsockname(ls, (struct sockaddr *)&a, &alen))
		die("listen on 127.0.0.1");
	p->tx = socket(AF_INET, SOCK_STREAM, 0);
	if (p->tx < 0 || connect(p->tx, (struct sockaddr *)&a, sizeof(a)))
		die("connect");
	p->rx = accept(ls, NULL, NULL);
	if (p->rx < 0)
		die("accept");
	close(ls);
}

static void start(struct pair *p)
{
	if (pthread_create(&p->drain, NULL, drain, p))
		die("pthread_create");
}

static void finish(struct pair *p)
{
	shutdown(p->tx, SHUT_WR);
	pthread_join(p->drain, NULL);
	close(p->tx);
	close(p->rx);
}

static unsigned long long charged(void)
{
	unsigned long long (*f)(void) =
		(unsigned long long (*)(void))dlsym(RTLD_DEFAULT, "rcmoe_shaper_bytes");
	return f ? f() : 0;
}

/* ---- senders: each returns bytes sent in `secs`, failing the probe on an error ---- */

enum how { HOW_SEND, HOW_SENDMSG, HOW_WRITEV, HOW_NONBLOCK };

struct sender {
	int fd;
	enum how how;
	double secs;
	unsigned long long bytes;
	double elapsed, max_call; /* seconds */
	long eagain;
};

static ssize_t one_call(struct sender *s)
{
	struct iovec iov[8];
	switch (s->how) {
	case HOW_SENDMSG: {
		/* three uneven pieces: the shaper must clip inside the second */
		iov[0] = (struct iovec){ buf, 10000 };
		iov[1] = (struct iovec){ buf + 10000, 300000 };
		iov[2] = (struct iovec){ buf + 310000, 200000 };
		struct msghdr m = { .msg_iov = iov, .msg_iovlen = 3 };
		/* as the plugin's streams do: non-blocking, retried at once */
		return sendmsg(s->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
	}
	case HOW_WRITEV:
		for (int i = 0; i < 8; i++)
			iov[i] = (struct iovec){ buf + i * 16384, 16384 };
		return writev(s->fd, iov, 8);
	case HOW_NONBLOCK: return send(s->fd, buf, CHUNK, MSG_NOSIGNAL);
	default: return send(s->fd, buf, CHUNK, MSG_NOSIGNAL);
	}
}

static void *run_sender(void *arg)
{
	struct sender *s = arg;
	double t0 = now_s(), t = t0;
	while (t - t0 < s->secs) {
		ssize_t k = one_call(s);
		double t1 = now_s();
		if (t1 - t > s->max_call)
			s->max_call = t1 - t;
		t = t1;
		if (k < 0 && errno == EAGAIN && s->how == HOW_NONBLOCK) {
			s->eagain++;
			struct pollfd pfd = { s->fd, POLLOUT, 0 };
			poll(&pfd, 1, 100);
			t = now_s();
			continue;
		}
		if (k < 0 && errno == EAGAIN && s->how == HOW_SENDMSG) {
			s->eagain++; /* a busy loop: straight back in */
			continue;
		}
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			die("send");
		s->bytes += (unsigned long long)k;
	}
	s->elapsed = now_s() - t0;
	return NULL;
}

static void report(const char *tag, const struct sender *s)
{
	printf("%sgbps=%.4f\n%sbytes=%llu\n%ssecs=%.4f\n%smax_call_ms=%.3f\n%seagain=%ld\n", tag,
	       (double)s->bytes * 8 / s->elapsed / 1e9, tag, s->bytes, tag, s->elapsed, tag,
	       s->max_call * 1e3, tag, s->eagain);
}

static int rate(enum how how, double secs)
{
	struct pair p;
	tcp_pair(&p);
	start(&p);
	if (how == HOW_NONBLOCK)
		fcntl(p.tx, F_SETFL, fcntl(p.tx, F_GETFL) | O_NONBLOCK);
	/* errno must come back as it was after a successful shaped call */
	errno = 4242;
	ssize_t k = send(p.tx, buf, 100000, MSG_NOSIGNAL);
	printf("errno_kept=%d\nfirst=%zd\n", k > 0 && errno == 4242, k);
	struct sender s = { .fd = p.tx, .how = how, .secs = secs };
	run_sender(&s);
	finish(&p);
	report("", &s);
	printf("charged=%llu\n", charged());
	return 0;
}

static int threads(double secs)
{
	struct pair p[2];
	struct sender s[2];
	pthread_t th[2];
	for (int i = 0; i < 2; i++) {
		tcp_pair(&p[i]);
		start(&p[i]);
		s[i] = (struct sender){ .fd = p[i].tx, .how = HOW_SEND, .secs = secs };
	}
	for (int i = 0; i < 2; i++)
		if (pthread_create(&th[i], NULL, run_sender, &s[i]))
			die("pthread_create");
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		finish(&p[i]);
	}
	struct sender sum = s[0];
	sum.bytes += s[1].bytes;
	sum.elapsed = s[0].elapsed > s[1].elapsed ? s[0].elapsed : s[1].elapsed;
	report("", &sum);
	report("t0_", &s[0]);
	report("t1_", &s[1]);
	printf("charged=%llu\n", charged());
	return 0;
}

/* Tiny sends run the bucket into debt without waiting; the next non-blocking send gives up
 * after about 2 ms; the next blocking one waits the debt off. */
static int debt(void)
{
	struct pair p;
	tcp_pair(&p);
	start(&p);
	double t0 = now_s();
	for (int i = 0; i < 8000; i++)
		if (send(p.tx, buf, 512, MSG_NOSIGNAL) != 512)
			die("tiny send");
	double t1 = now_s();
	ssize_t nb = send(p.tx, buf, 65536, MSG_DONTWAIT | MSG_NOSIGNAL);
	int nb_errno = nb < 0 ? errno : 0;
	double t2 = now_s();
	ssize_t blk = send(p.tx, buf, 65536, MSG_NOSIGNAL);
	double t3 = now_s();
	finish(&p);
	printf("tiny_bytes=%d\ntiny_ms=%.3f\nnb_rc=%zd\nnb_eagain=%d\nnb_ms=%.3f\n", 8000 * 512,
	       (t1 - t0) * 1e3, nb, nb_errno == EAGAIN, (t2 - t1) * 1e3);
	printf("blk_rc=%zd\nblk_ms=%.3f\n", blk, (t3 - t2) * 1e3);
	return 0;
}

/* A unix stream socket, a pipe and UDP: never shaped, never charged. */
static int unshaped(double secs)
{
	struct pair p;
	int sv[2], pf[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) || pipe(pf))
		die("socketpair/pipe");
	p.tx = sv[0];
	p.rx = sv[1];
	start(&p);
	struct sender s = { .fd = p.tx, .how = HOW_SEND, .secs = secs };
	run_sender(&s);
	finish(&p);
	report("", &s);
	int pipe_ok = write(pf[1], buf, 4096) == 4096;
	int u = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(9) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int udp_ok = u >= 0 && sendto(u, buf, 1000, 0, (struct sockaddr *)&a, sizeof(a)) == 1000;
	printf("pipe_ok=%d\nudp_ok=%d\ncharged=%llu\n", pipe_ok, udp_ok, charged());
	return 0;
}

/* Every kind of TCP send fails with EINVAL; other descriptors still work. */
static int invalid(void)
{
	struct pair p;
	tcp_pair(&p);
	struct iovec iov = { buf, 4096 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t r[6];
	int e[6];
	r[0] = send(p.tx, buf, 100, 0), e[0] = errno;
	r[1] = send(p.tx, buf, 100000, 0), e[1] = errno;
	r[2] = sendto(p.tx, buf, 4096, 0, NULL, 0), e[2] = errno;
	r[3] = sendmsg(p.tx, &m, 0), e[3] = errno;
	r[4] = write(p.tx, buf, 4096), e[4] = errno;
	r[5] = writev(p.tx, &iov, 1), e[5] = errno;
	int einval = 0;
	for (int i = 0; i < 6; i++)
		einval += r[i] == -1 && e[i] == EINVAL;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		die("socketpair");
	int unix_ok = send(sv[0], buf, 100000, 0) > 0;
	printf("einval=%d\nunix_ok=%d\n", einval, unix_ok);
	return 0;
}

int main(int argc, char **argv)
{
	rcmoe_shaper_gbps_fn gbps =
		(rcmoe_shaper_gbps_fn)dlsym(RTLD_DEFAULT, RCMOE_SHAPER_SYM_GBPS);
	printf("loaded=%d\nlib_gbps=%g\n", gbps != NULL, gbps ? gbps() : 0.0);
	if (argc < 2)
		return 2;
	const char *mode = argv[1];
	double secs = argc > 2 ? atof(argv[2]) : 0.5;
	memset(buf, 0x5a, sizeof(buf));
	if (!strcmp(mode, "blocking"))
		return rate(HOW_SEND, secs);
	if (!strcmp(mode, "nonblocking"))
		return rate(HOW_NONBLOCK, secs);
	if (!strcmp(mode, "sendmsg"))
		return rate(HOW_SENDMSG, secs);
	if (!strcmp(mode, "writev"))
		return rate(HOW_WRITEV, secs);
	if (!strcmp(mode, "threads"))
		return threads(secs);
	if (!strcmp(mode, "debt"))
		return debt();
	if (!strcmp(mode, "unix"))
		return unshaped(secs);
	if (!strcmp(mode, "invalid"))
		return invalid();
	return 2;
}
