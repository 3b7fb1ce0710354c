#include "utils.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static die_reporter current_reporter;

void set_die_reporter(die_reporter reporter) {
  current_reporter = reporter;
}

NORETURN static void report(const char *message) {
  if (current_reporter != NULL) current_reporter(message);
  fprintf(stderr, "%s: %s\n", program_invocation_short_name, message);
  exit(1);
}

void die(const char *fmt, ...) {
  char message[3072];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(message, sizeof message, fmt, ap);
  va_end(ap);
  report(message);
}

void die_with_error(const char *fmt, ...) {
  int saved_errno = errno;
  char message[3072];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(message, sizeof message, fmt, ap);
  va_end(ap);
  if (n >= 0 && (size_t)n < sizeof message)
    snprintf(message + n, sizeof message - (size_t)n, ": %s", strerror(saved_errno));
  report(message);
}

void *xmalloc(size_t size) {
  void *p = malloc(size == 0 ? 1 : size);
  if (p == NULL) die("out of memory");
  return p;
}

void *xrealloc(void *ptr, size_t size) {
  void *p = realloc(ptr, size == 0 ? 1 : size);
  if (p == NULL) die("out of memory");
  return p;
}

char *xstrdup(const char *s) {
  char *p = strdup(s);
  if (p == NULL) die("out of memory");
  return p;
}

char *xasprintf(const char *fmt, ...) {
  char *p;
  va_list ap;
  va_start(ap, fmt);
  int n = vasprintf(&p, fmt, ap);
  va_end(ap);
  if (n < 0) die("out of memory");
  return p;
}

bool write_all(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += n;
    len -= (size_t)n;
  }
  return true;
}
