/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A stand-in for the part of Criterion's API the transport and plugin tests use, for the
 * ThreadSanitizer build only: Criterion cannot start under ThreadSanitizer (its inheritable arena
 * wants an address range TSan reserves, Snaipe/Criterion#274). Same semantics where it matters:
 * each test runs in its own forked process with its suite's .init and .timeout, a failed assertion
 * ends that test, results are reported as TAP on stdout.
 */
#ifndef RCMOE_CR_SHIM_H
#define RCMOE_CR_SHIM_H

#include <stddef.h>
#include <string.h>

struct cr_shim_opts {
	void (*init)(void);
	void (*fini)(void);
	double timeout;
};

struct cr_shim_test {
	const char *suite;
	const char *name;
	void (*fn)(void);
	const struct cr_shim_opts *opts;
	struct cr_shim_test *next;
};

void cr_shim_register(struct cr_shim_test *t);
void cr_skip_test(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
void cr_shim_fail(const char *file, int line, const char *expr, const char *fmt, ...)
	__attribute__((noreturn, format(printf, 4, 5)));

#define TestSuite(suite, ...)                                                                      \
	static const struct cr_shim_opts cr_shim_suite_##suite = { __VA_ARGS__ }

#define Test(suite, name, ...)                                                                     \
	static void cr_shim_fn_##suite##_##name(void);                                             \
	static struct cr_shim_test cr_shim_t_##suite##_##name = { #suite, #name,                   \
								  cr_shim_fn_##suite##_##name,     \
								  &cr_shim_suite_##suite, NULL };  \
	__attribute__((constructor)) static void cr_shim_reg_##suite##_##name(void)                \
	{                                                                                          \
		cr_shim_register(&cr_shim_t_##suite##_##name);                                     \
	}                                                                                          \
	static void cr_shim_fn_##suite##_##name(void)

/* The message, when given, starts with a string literal: "" glues an empty one in front (so an
 * assertion without a message passes an empty format, which is fine here). */
#pragma GCC diagnostic ignored "-Wformat-zero-length"
#define cr_assert(cond, ...)                                                                       \
	do {                                                                                       \
		if (!(cond))                                                                       \
			cr_shim_fail(__FILE__, __LINE__, #cond, "" __VA_ARGS__);                   \
	} while (0)
#define cr_assert_eq(a, b, ...)     cr_assert((a) == (b), __VA_ARGS__)
#define cr_assert_neq(a, b, ...)    cr_assert((a) != (b), __VA_ARGS__)
#define cr_assert_lt(a, b, ...)     cr_assert((a) < (b), __VA_ARGS__)
#define cr_assert_gt(a, b, ...)     cr_assert((a) > (b), __VA_ARGS__)
#define cr_assert_geq(a, b, ...)    cr_assert((a) >= (b), __VA_ARGS__)
#define cr_assert_leq(a, b, ...)    cr_assert((a) <= (b), __VA_ARGS__)
#define cr_assert_null(p, ...)      cr_assert((p) == NULL, __VA_ARGS__)
#define cr_assert_not_null(p, ...)  cr_assert((p) != NULL, __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...) cr_assert(strcmp((a), (b)) == 0, __VA_ARGS__)
/* Expectations end the test too: under the shim the first failure is the one reported. */
#define cr_expect(cond, ...)        cr_assert(cond, __VA_ARGS__)
#define cr_expect_eq(a, b, ...)     cr_assert_eq(a, b, __VA_ARGS__)
#define cr_expect_neq(a, b, ...)    cr_assert_neq(a, b, __VA_ARGS__)
#define cr_expect_lt(a, b, ...)     cr_assert_lt(a, b, __VA_ARGS__)
#define cr_expect_gt(a, b, ...)     cr_assert_gt(a, b, __VA_ARGS__)
#define cr_expect_geq(a, b, ...)    cr_assert_geq(a, b, __VA_ARGS__)
#define cr_expect_leq(a, b, ...)    cr_assert_leq(a, b, __VA_ARGS__)
#define cr_expect_null(p, ...)      cr_assert_null(p, __VA_ARGS__)
#define cr_expect_not_null(p, ...)  cr_assert_not_null(p, __VA_ARGS__)
#define cr_expect_str_eq(a, b, ...) cr_assert_str_eq(a, b, __VA_ARGS__)
#define cr_expect_str_empty(a, ...) cr_assert((a)[0] == '\0', __VA_ARGS__)

#endif
