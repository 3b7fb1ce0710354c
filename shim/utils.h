/* Small helpers shared by the shim/ programs: fail one way, allocate or die, write everything. */
#ifndef ACTIOND_SHIM_UTILS_H
#define ACTIOND_SHIM_UTILS_H

#include <stdbool.h>
#include <stddef.h>

#define NORETURN __attribute__((noreturn))
#define PRINTF(a, b) __attribute__((format(printf, a, b)))

/* Where die() sends its one-line message. The reporter must not return. Each process of a program
 * sets its own (the sandbox's outer process prints it; its inner processes pass it up a pipe).
 * Without one, die() prints "PROGRAM: message" on stderr and exits 1. */
typedef void (*die_reporter)(const char *message);
void set_die_reporter(die_reporter reporter);

/* die: the message. die_with_error: the message, ": ", strerror(errno). */
NORETURN PRINTF(1, 2) void die(const char *fmt, ...);
NORETURN PRINTF(1, 2) void die_with_error(const char *fmt, ...);

void *xmalloc(size_t size);
void *xrealloc(void *ptr, size_t size);
char *xstrdup(const char *s);
PRINTF(1, 2) char *xasprintf(const char *fmt, ...);

/* write(2) until done, retrying on EINTR and short writes. Returns false with errno set. */
bool write_all(int fd, const void *buf, size_t len);

#endif
