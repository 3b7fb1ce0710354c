/* The guest end of the serial multiplexer (see serial-mux.c). */
#ifndef ACTIOND_SHIM_SERIAL_MUX_H
#define ACTIOND_SHIM_SERIAL_MUX_H

#include <stdint.h>

struct port_map {
  uint32_t port;
  const char *path;
};

/* Serves streams from the host on `device` (a virtio-serial port), each joined to the socket its
 * port maps to; and opens a stream to host port `port` for each connection to a dial's `path`.
 * Runs until an error; never returns. */
__attribute__((noreturn)) void run_serial_mux(const char *device, const struct port_map *maps, int nmaps, const struct port_map *dials, int ndials);

#endif
