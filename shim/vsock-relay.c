/* actiond-vsock-relay: joins vsock connections to a Unix socket, because neither Bun nor Node can
 * open AF_VSOCK sockets.
 *
 *   actiond-vsock-relay --vsock-port PORT --unix PATH
 *       (in the guest) accept vsock connections on PORT from any CID; join each to the Unix socket
 *       PATH, where the guest worker listens.
 *   actiond-vsock-relay --dial PATH=PORT
 *       (in the guest) the other way: accept connections on the Unix socket PATH; join each to
 *       vsock port PORT of the host (its services: downloads, the relay to an upstream cache).
 *   actiond-vsock-relay --serial DEVICE --map PORT=PATH [--map PORT=PATH ...] [--dial PATH=PORT ...]
 *       (in a QEMU guest without vsock) streams multiplexed over a virtio-serial port, each joined
 *       to the Unix socket mapped to its port (serial-mux.c), and streams to host ports for
 *       connections to each dial's PATH.
 *
 * One child process per connection copies bytes both ways and passes half-closes on, so a gRPC
 * stream ends exactly as it would on a direct socket. Children die with the relay. */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

#include "serial-mux.h"
#include "utils.h"

#define BUFFER_BYTES (64 * 1024)

static const char USAGE[] =
    "Usage: actiond-vsock-relay --vsock-port PORT --unix PATH\n"
    "       actiond-vsock-relay --dial PATH=PORT\n"
    "       actiond-vsock-relay --serial DEVICE --map PORT=PATH [--map PORT=PATH ...] [--dial PATH=PORT ...]\n"
    "  with --vsock-port: accept vsock connections on PORT, join each to the Unix socket PATH\n"
    "  with --dial:       accept connections on the Unix socket PATH, join each to the host's vsock PORT\n"
    "  with --serial:     streams multiplexed over a virtio-serial port, each to the socket mapped to its port\n";

static unsigned parse_number(const char *flag, const char *text) {
  char *end;
  errno = 0;
  unsigned long n = strtoul(text, &end, 10);
  if (errno || *text == '\0' || *end != '\0' || n > UINT_MAX) die("%s: not a number: %s", flag, text);
  return (unsigned)n;
}

static struct sockaddr_un unix_address(const char *path) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof a.sun_path) die("--unix: path too long (%zu bytes at most): %s", sizeof a.sun_path - 1, path);
  strcpy(a.sun_path, path);
  return a;
}

static int listen_on(int family, const void *addr, socklen_t len, const char *what) {
  int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die_with_error("socket for %s", what);
  if (bind(fd, addr, len) < 0) die_with_error("bind %s", what);
  if (listen(fd, 128) < 0) die_with_error("listen on %s", what);
  return fd;
}

/* One direction of a connection: bytes read from `from` wait in buf until `to` takes them. */
struct direction {
  int from, to;
  char *buf;
  size_t len, off;
  bool ended;
};

/* Runs in the child: copy both ways until both directions have ended or either side fails. Both
 * sockets are non-blocking, and a direction reads again only once `to` took what it had, so neither
 * side's backpressure can stop the other direction. */
static void relay(int a, int b) {
  struct direction d[2] = {{.from = a, .to = b, .buf = xmalloc(BUFFER_BYTES)}, {.from = b, .to = a, .buf = xmalloc(BUFFER_BYTES)}};
  fcntl(a, F_SETFL, fcntl(a, F_GETFL) | O_NONBLOCK);
  fcntl(b, F_SETFL, fcntl(b, F_GETFL) | O_NONBLOCK);
  while (!d[0].ended || !d[1].ended) {
    struct pollfd fds[2];
    for (int i = 0; i < 2; i++) {
      bool waiting = d[i].len > d[i].off;
      fds[i] = (struct pollfd){.fd = d[i].ended ? -1 : waiting ? d[i].to : d[i].from, .events = waiting ? POLLOUT : POLLIN};
    }
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      die_with_error("poll");
    }
    for (int i = 0; i < 2; i++) {
      struct direction *x = &d[i];
      if (x->ended || !fds[i].revents) continue;
      if (x->len > x->off) {
        ssize_t n = write(x->to, x->buf + x->off, x->len - x->off);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (n < 0) return; /* the other side is gone: closing both ends tells everyone */
        x->off += (size_t)n;
        if (x->off == x->len) x->len = x->off = 0;
      } else {
        ssize_t n = read(x->from, x->buf, BUFFER_BYTES);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (n < 0) return; /* a reset is not a clean end: close both, so the peer sees it too */
        if (n == 0) {
          x->ended = true;
          shutdown(x->to, SHUT_WR);
        } else {
          x->len = (size_t)n;
        }
      }
    }
  }
}

/* Where each accepted connection goes: the guest worker's Unix socket, or a vsock port of the host. */
struct target {
  struct sockaddr_un unix_addr;
  struct sockaddr_vm vsock_addr;
  bool to_vsock;
};

static int connect_target(const struct target *t) {
  int fd = socket(t->to_vsock ? AF_VSOCK : AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  const struct sockaddr *a = t->to_vsock ? (const struct sockaddr *)&t->vsock_addr : (const struct sockaddr *)&t->unix_addr;
  socklen_t len = t->to_vsock ? sizeof t->vsock_addr : sizeof t->unix_addr;
  if (connect(fd, a, len) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* "PORT=PATH" (--map) or "PATH=PORT" (--dial, split at the last '='). */
static struct port_map parse_pair(const char *flag, const char *value, bool port_first) {
  const char *eq = port_first ? strchr(value, '=') : strrchr(value, '=');
  if (!eq) die("%s: expected %s: %s", flag, port_first ? "PORT=PATH" : "PATH=PORT", value);
  char *head = xstrdup(value);
  head[eq - value] = '\0';
  return port_first ? (struct port_map){.port = parse_number(flag, head), .path = eq + 1} : (struct port_map){.port = parse_number(flag, eq + 1), .path = head};
}

int main(int argc, char **argv) {
  const char *unix_path = NULL, *serial = NULL;
  long long port = -1;
  struct port_map maps[16], dials[16];
  int nmaps = 0, ndials = 0;
  for (int i = 1; i < argc; i++) {
    const char *flag = argv[i];
    if (strcmp(flag, "--help") == 0) {
      fputs(USAGE, stdout);
      return 0;
    }
    if (i + 1 >= argc) die("%s needs a value\n%s", flag, USAGE);
    const char *value = argv[++i];
    if (strcmp(flag, "--vsock-port") == 0) port = parse_number(flag, value);
    else if (strcmp(flag, "--unix") == 0) unix_path = value;
    else if (strcmp(flag, "--serial") == 0) serial = value;
    else if (strcmp(flag, "--map") == 0) {
      if (nmaps == 16) die("--map: at most 16");
      maps[nmaps++] = parse_pair(flag, value, true);
    } else if (strcmp(flag, "--dial") == 0) {
      if (ndials == 16) die("--dial: at most 16");
      dials[ndials++] = parse_pair(flag, value, false);
    } else die("unknown flag %s\n%s", flag, USAGE);
  }
  if (serial) {
    if (nmaps == 0) die("--serial needs at least one --map PORT=PATH\n%s", USAGE);
    signal(SIGPIPE, SIG_IGN);
    run_serial_mux(serial, maps, nmaps, dials, ndials);
  }
  struct target target = {0};
  int listener;
  if (ndials == 1 && port < 0 && !unix_path) {
    /* The guest's side of a host service: Unix connections out to the host (CID 2). */
    struct sockaddr_un dial_addr = unix_address(dials[0].path);
    unlink(dials[0].path);
    listener = listen_on(AF_UNIX, &dial_addr, sizeof dial_addr, dials[0].path);
    target.to_vsock = true;
    target.vsock_addr = (struct sockaddr_vm){.svm_family = AF_VSOCK, .svm_port = dials[0].port, .svm_cid = VMADDR_CID_HOST};
  } else {
    if (port < 0 || !unix_path || ndials) die("--vsock-port and --unix, or one --dial alone, are required\n%s", USAGE);
    target.unix_addr = unix_address(unix_path);
    struct sockaddr_vm vsock_addr = {.svm_family = AF_VSOCK, .svm_port = (unsigned)port, .svm_cid = VMADDR_CID_ANY};
    listener = listen_on(AF_VSOCK, &vsock_addr, sizeof vsock_addr, "the vsock port");
  }
  /* Children are never waited for: let the kernel reap them. */
  struct sigaction ignore = {.sa_handler = SIG_IGN, .sa_flags = SA_NOCLDWAIT};
  sigaction(SIGCHLD, &ignore, NULL);
  signal(SIGPIPE, SIG_IGN);
  fprintf(stderr, "actiond-vsock-relay: ready\n");

  for (;;) {
    int accepted = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    if (accepted < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      /* Out of descriptors or memory, for now: wait, and serve the next ones. */
      fprintf(stderr, "actiond-vsock-relay: accept: %s\n", strerror(errno));
      sleep(1);
      continue;
    }
    pid_t pid = fork();
    if (pid < 0) {
      fprintf(stderr, "actiond-vsock-relay: fork: %s (connection dropped)\n", strerror(errno));
    } else if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() == 1) _exit(0); /* the relay died before the line above took effect */
      close(listener);
      int peer = connect_target(&target);
      if (peer < 0) die_with_error("connect to %s", target.to_vsock ? "the host" : unix_path);
      relay(accepted, peer);
      _exit(0);
    }
    close(accepted);
  }
}
