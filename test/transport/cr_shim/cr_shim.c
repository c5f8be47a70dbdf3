/* SPDX-License-Identifier: Apache-2.0 */
/* Runner of the Criterion stand-in (criterion/criterion.h here): fork per test, TAP on stdout. */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "criterion/criterion.h"

static struct cr_shim_test *first, **last = &first;

void cr_shim_register(struct cr_shim_test *t)
{
	*last = t;
	last = &t->next;
}

void cr_shim_fail(const char *file, int line, const char *expr, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s:%d: assertion failed: %s", file, line, expr);
	if (fmt[0]) {
		fprintf(stderr, ": ");
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
	}
	fprintf(stderr, "\n");
	_exit(1);
}

/* A skipped test ends its process with this status; the runner reports it as a SKIP. */
#define SKIP_STATUS 77

void cr_skip_test(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	_exit(SKIP_STATUS);
}

/* 1: passed, 0: failed, -1: skipped. */
static int run(const struct cr_shim_test *t)
{
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0)
		return 0;
	if (pid == 0) {
		alarm(t->opts->timeout > 0 ? (unsigned)t->opts->timeout : 600);
		if (t->opts->init)
			t->opts->init();
		t->fn();
		if (t->opts->fini)
			t->opts->fini();
		_exit(0);
	}
	int status = 0;
	while (waitpid(pid, &status, 0) < 0)
		;
	if (WIFSIGNALED(status))
		fprintf(stderr, "%s::%s: killed by signal %d\n", t->suite, t->name,
			WTERMSIG(status));
	if (WIFEXITED(status) && WEXITSTATUS(status) == SKIP_STATUS)
		return -1;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

int main(int argc, char **argv)
{
	/* A filter as the only argument that is not an option: run tests whose "suite/name"
	 * starts with it. */
	const char *filter = NULL;
	for (int i = 1; i < argc; i++)
		if (argv[i][0] != '-')
			filter = argv[i];
	int n = 0, failed = 0;
	for (struct cr_shim_test *t = first; t; t = t->next)
		n++;
	printf("TAP version 13\n1..%d\n", n);
	int i = 0;
	for (struct cr_shim_test *t = first; t; t = t->next) {
		char full[256];
		snprintf(full, sizeof(full), "%s/%s", t->suite, t->name);
		i++;
		if (filter && strncmp(full, filter, strlen(filter)) != 0) {
			printf("ok %d - %s::%s # SKIP filtered out\n", i, t->suite, t->name);
			continue;
		}
		int ok = run(t);
		failed += ok == 0;
		printf("%sok %d - %s::%s%s\n", ok ? "" : "not ", i, t->suite, t->name,
		       ok < 0 ? " # SKIP" : "");
		fflush(stdout);
	}
	return failed ? 1 : 0;
}
