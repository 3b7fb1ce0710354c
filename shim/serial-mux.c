/* The guest end of the serial multiplexer: many streams over one virtio-serial port, for QEMU hosts
 * without /dev/vhost-vsock. The host (src/vmhost/serial-mux.ts) opens a stream to a guest port; we
 * connect it to the Unix socket mapped to that port and copy bytes both ways. The other way round,
 * a connection to one of our dial sockets becomes a stream we open to a host port (the host's
 * services: its downloads, its relay to an upstream cache).
 *
 * Frame, both directions: type (1 byte) | stream id (4, big-endian) | length (4, big-endian) | payload
 *   OPEN  both         payload: port (4, big-endian). Ids of streams the guest opens have the top
 *                      bit set, so the two sides never pick the same one.
 *   DATA  both         payload: bytes
 *   EOF   both         no more bytes from the sender on this stream (a half-close)
 *   CLOSE both         the stream is gone (connect failed, error, or both sides done)
 * There is no flow control in the protocol: each end buffers, per stream, what a local socket cannot
 * take yet and never blocks on it (a local peer that stops reading while it waits for its own
 * writes to drain would otherwise deadlock every stream). Writes to the port itself may block: the
 * host always reads it. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "serial-mux.h"
#include "utils.h"

enum { FRAME_OPEN = 1, FRAME_DATA = 2, FRAME_EOF = 3, FRAME_CLOSE = 4 };
enum { HEADER = 9, MAX_STREAMS = 256, CHUNK = 64 * 1024, MAX_FRAME = 1024 * 1024 };

struct stream {
  uint32_t id;
  int fd;              /* -1: slot free */
  bool reading;        /* we still read from fd (it has not sent EOF) */
  bool host_sending;   /* the host has not sent EOF */
  bool host_closed;    /* the host has forgotten the stream: deliver what is buffered, then close quietly */
  bool write_failed;   /* fd takes no more (its peer closed): host data is dropped, but fd is read to its end */
  unsigned char *out;  /* bytes from the host that fd has not taken yet */
  size_t out_len, out_cap;
};

static struct stream streams[MAX_STREAMS];
static int serial_fd;
/* The next id for a stream we open (the top bit marks ours). */
static uint32_t next_guest_id;
enum { GUEST_ID_BIT = 0x80000000u };

static void put32(unsigned char *p, uint32_t v) {
  p[0] = v >> 24, p[1] = v >> 16, p[2] = v >> 8, p[3] = v;
}
static uint32_t get32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void send_frame(int type, uint32_t id, const void *data, uint32_t len) {
  unsigned char header[HEADER];
  header[0] = (unsigned char)type;
  put32(header + 1, id);
  put32(header + 5, len);
  if (!write_all(serial_fd, header, HEADER) || (len && !write_all(serial_fd, data, len))) die_with_error("write to the serial port");
}

static struct stream *find(uint32_t id) {
  for (int i = 0; i < MAX_STREAMS; i++)
    if (streams[i].fd >= 0 && streams[i].id == id) return &streams[i];
  return NULL;
}

static void drop(struct stream *s, bool tell_host) {
  if (tell_host) send_frame(FRAME_CLOSE, s->id, NULL, 0);
  close(s->fd);
  s->fd = -1;
  free(s->out);
  s->out = NULL;
  s->out_len = s->out_cap = 0;
}

/* Writes what fd takes now of the stream's buffer; once it is empty after the host's EOF, passes
 * the half-close on. Returns false when the stream failed (and was dropped). */
static bool flush(struct stream *s) {
  while (s->out_len > 0) {
    ssize_t n = send(s->fd, s->out, s->out_len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return true;
    if (n < 0) {
      /* The peer will read no more; what it wrote before closing (an error reply, say) still
       * goes to the host, so keep reading it to its end. */
      s->write_failed = true;
      s->out_len = 0;
      if (!s->reading || s->host_closed) {
        drop(s, !s->host_closed);
        return false;
      }
      return true;
    }
    memmove(s->out, s->out + n, s->out_len - (size_t)n);
    s->out_len -= (size_t)n;
  }
  if (!s->host_sending) {
    shutdown(s->fd, SHUT_WR);
    if (!s->reading || s->host_closed) {
      drop(s, !s->host_closed);
      return false;
    }
  }
  return true;
}

static void queue(struct stream *s, const unsigned char *data, size_t len) {
  if (s->write_failed) return;
  if (s->out_len + len > s->out_cap) {
    s->out_cap = (s->out_len + len) * 2;
    s->out = xrealloc(s->out, s->out_cap);
  }
  memcpy(s->out + s->out_len, data, len);
  s->out_len += len;
  flush(s);
}

static void drop_all(void) {
  for (int i = 0; i < MAX_STREAMS; i++)
    if (streams[i].fd >= 0) drop(&streams[i], false);
}

static struct stream *free_slot(void) {
  for (int i = 0; i < MAX_STREAMS; i++)
    if (streams[i].fd < 0) return &streams[i];
  return NULL;
}

static void open_stream(uint32_t id, uint32_t port, const struct port_map *maps, int nmaps) {
  const char *path = NULL;
  for (int i = 0; i < nmaps; i++)
    if (maps[i].port == port) path = maps[i].path;
  struct stream *slot = free_slot();
  int fd = -1;
  if (path && slot) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
      close(fd);
      fd = -1;
    }
  }
  if (fd < 0) {
    /* Nothing listening yet (the worker is starting): expected, and the host retries. */
    if (!path || !slot || (errno != ENOENT && errno != ECONNREFUSED))
      fprintf(stderr, "actiond-vsock-relay: stream %u to port %u: %s\n", id, port, !path ? "no such port" : !slot ? "too many streams" : strerror(errno));
    send_frame(FRAME_CLOSE, id, NULL, 0);
    return;
  }
  *slot = (struct stream){.id = id, .fd = fd, .reading = true, .host_sending = true, .out = NULL};
}

/* A connection to a dial socket: a stream to the host's port (the host closes it if nothing serves there). */
static void dial_host(int listener, uint32_t port) {
  int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
  if (fd < 0) return; /* EAGAIN, a connection already gone, or out of descriptors: the next poll tries again */
  struct stream *slot = free_slot();
  if (!slot) {
    fprintf(stderr, "actiond-vsock-relay: a connection to host port %u: too many streams\n", port);
    close(fd);
    return;
  }
  uint32_t id = GUEST_ID_BIT | (next_guest_id++ & ~GUEST_ID_BIT);
  *slot = (struct stream){.id = id, .fd = fd, .reading = true, .host_sending = true, .out = NULL};
  unsigned char payload[4];
  put32(payload, port);
  send_frame(FRAME_OPEN, id, payload, 4);
}

static int listen_unix(const char *path) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof a.sun_path) die("--dial: path too long: %s", path);
  strcpy(a.sun_path, path);
  unlink(path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 64) != 0) die_with_error("listen on %s", path);
  return fd;
}

/* Handles every whole frame at the start of buf; returns how many bytes it used. */
static size_t handle_frames(unsigned char *buf, size_t len, const struct port_map *maps, int nmaps) {
  size_t used = 0;
  while (len - used >= HEADER) {
    unsigned char *f = buf + used;
    uint32_t id = get32(f + 1), n = get32(f + 5);
    if (n > MAX_FRAME) die("a frame of %u bytes from the host: the stream is corrupt", n);
    if (len - used < HEADER + n) break;
    struct stream *s = find(id);
    switch (f[0]) {
      case FRAME_OPEN:
        if (n == 4 && !s && !(id & GUEST_ID_BIT)) open_stream(id, get32(f + HEADER), maps, nmaps);
        else send_frame(FRAME_CLOSE, id, NULL, 0); /* a malformed or repeated OPEN: refuse it */
        break;
      case FRAME_DATA:
        if (s) queue(s, f + HEADER, n);
        break;
      case FRAME_EOF:
        if (s) {
          s->host_sending = false;
          flush(s);
        }
        break;
      case FRAME_CLOSE:
        /* Data may still be buffered (the host sends EOF and CLOSE back to back): deliver it first. */
        if (s && s->out_len > 0 && !s->write_failed) {
          s->host_closed = true;
          s->host_sending = false;
          s->reading = false;
        } else if (s) {
          drop(s, false);
        }
        break;
      default:
        die("frame type %d from the host: the stream is corrupt", f[0]);
    }
    used += HEADER + n;
  }
  return used;
}

static bool port_is_socket;

/* The port: a device, or (for tests on a host without a VM) a Unix socket standing in for one. */
static int open_port(const char *device) {
  struct stat st;
  if (stat(device, &st) == 0 && S_ISSOCK(st.st_mode)) {
    port_is_socket = true;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(device) >= sizeof a.sun_path) die("%s: path too long", device);
    strcpy(a.sun_path, device);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) die_with_error("connect to %s", device);
    return fd;
  }
  int fd = open(device, O_RDWR | O_CLOEXEC);
  if (fd < 0) die_with_error("open %s", device);
  return fd;
}

__attribute__((noreturn)) void run_serial_mux(const char *device, const struct port_map *maps, int nmaps, const struct port_map *dials, int ndials) {
  serial_fd = open_port(device);
  for (int i = 0; i < MAX_STREAMS; i++) streams[i].fd = -1;
  int listeners[16];
  if (ndials > 16) die("at most 16 --dial");
  for (int i = 0; i < ndials; i++) listeners[i] = listen_unix(dials[i].path);
  size_t cap = HEADER + MAX_FRAME, have = 0;
  unsigned char *in = xmalloc(cap);
  unsigned char *chunk = xmalloc(CHUNK);
  fprintf(stderr, "actiond-vsock-relay: ready on %s\n", device);
  for (;;) {
    /* The serial port, each stream, then the dial sockets. */
    struct pollfd fds[1 + MAX_STREAMS + 16];
    fds[0] = (struct pollfd){.fd = serial_fd, .events = POLLIN};
    for (int i = 0; i < MAX_STREAMS; i++) {
      struct stream *s = &streams[i];
      short events = (s->reading ? POLLIN : 0) | (s->out_len > 0 ? POLLOUT : 0);
      fds[1 + i] = (struct pollfd){.fd = s->fd >= 0 && events ? s->fd : -1, .events = events};
    }
    for (int i = 0; i < ndials; i++) fds[1 + MAX_STREAMS + i] = (struct pollfd){.fd = listeners[i], .events = POLLIN};
    if (poll(fds, 1 + MAX_STREAMS + ndials, -1) < 0) {
      if (errno == EINTR) continue;
      die_with_error("poll");
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = read(serial_fd, in + have, cap - have);
      if (n < 0 && errno != EINTR && errno != EAGAIN) die_with_error("read %s", device);
      if (n == 0) {
        /* The host is not connected (or went away): its streams are gone. A device waits for it to
         * come back; a socket (tests) does not come back. */
        if (port_is_socket) die("the host closed %s", device);
        drop_all();
        have = 0;
        usleep(100 * 1000);
      } else if (n > 0) {
        have += (size_t)n;
        size_t used = handle_frames(in, have, maps, nmaps);
        memmove(in, in + used, have - used);
        have -= used;
      }
    }
    for (int i = 0; i < ndials; i++)
      if (fds[1 + MAX_STREAMS + i].revents & POLLIN) dial_host(listeners[i], dials[i].port);
    for (int i = 0; i < MAX_STREAMS; i++) {
      struct stream *s = &streams[i];
      /* The frames above may have closed this slot, or reused it (even its fd number) for a new
       * stream: the read never blocks, so a stale readiness costs one EAGAIN at most. */
      if (s->fd < 0 || fds[1 + i].fd < 0 || !fds[1 + i].revents) continue;
      if (s->out_len > 0 && !flush(s)) continue;
      if (!s->reading || !(fds[1 + i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = recv(s->fd, chunk, CHUNK, MSG_DONTWAIT);
      if (n > 0) {
        send_frame(FRAME_DATA, s->id, chunk, (uint32_t)n);
      } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        continue;
      } else {
        s->reading = false;
        send_frame(FRAME_EOF, s->id, NULL, 0);
        /* Done both ways once the host's data is delivered too (flush drops it then). */
        if (n < 0 || (!s->host_sending && (s->out_len == 0 || s->write_failed))) drop(s, !s->host_closed);
      }
    }
  }
}
