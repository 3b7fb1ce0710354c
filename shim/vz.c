/* libactiond-vz.dylib: the macOS side of serve-vm, loaded by bun:ffi (src/vmhost/vz.ts).
 *
 * It boots the Linux guest with Virtualization.framework (VZLinuxBootLoader: raw Image, initramfs,
 * command line), with the CAS disk read-write, the runtime image read-only, a virtio console writing
 * to a log file, an entropy device and one virtio socket device; and it relays each connection made
 * to a Unix socket to a vsock port of the guest, so TypeScript only sees Unix sockets, as with QEMU.
 * The other way, each connection the guest makes to a host vsock port it is told of is joined to a
 * Unix socket on the host (the host's services: downloads, the relay to an upstream cache).
 *
 * Plain C calling the Objective-C runtime: libobjc and the framework are opened with dlopen, so the
 * library links against system libraries only and zig can cross-compile it. Every
 * Virtualization.framework call and callback runs on one serial dispatch queue of ours (Bun's main thread never drains the
 * main queue). Built with -fblocks for the completion handlers.
 *
 * NOT RUN: these machines are Linux; this file has been compiled, never executed. */
#include <dispatch/dispatch.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

typedef void *id;
typedef void *SEL;
typedef void *Class;

static id (*get_class)(const char *);
static SEL (*sel)(const char *);
static void *msg_send; /* objc_msgSend, cast per call */
static void *(*pool_push)(void);
static void (*pool_pop)(void *);
static Class (*allocate_class)(Class, const char *, size_t);
static void (*register_class)(Class);
static bool (*add_method)(Class, SEL, void *, const char *);
static void *(*get_protocol)(const char *);
static bool (*add_protocol)(Class, void *);

/* objc_msgSend with the signature each call needs. */
#define SEND(ret, ...) ((ret(*)(id, SEL, ##__VA_ARGS__))msg_send)

struct vm {
  dispatch_queue_t queue;
  id machine;          /* VZVirtualMachine */
  int state;           /* 0 starting, 1 running, 2 stopped, 3 failed: written with release, read with acquire (the error text first) */
  bool stop_asked;     /* force_stop came before the VM could stop: stop it once it has started */
  char error[512];
};

static void set_error(char *buf, size_t len, const char *what, id nserror) {
  const char *detail = "";
  if (nserror) {
    id text = SEND(id)(nserror, sel("localizedDescription"));
    detail = text ? SEND(const char *)(text, sel("UTF8String")) : "";
  }
  snprintf(buf, len, "%s%s%s", what, *detail ? ": " : "", detail);
}

static bool load_runtime(char *err, size_t errlen) {
  if (msg_send) return true;
  void *objc = dlopen("/usr/lib/libobjc.A.dylib", RTLD_NOW);
  void *vz = dlopen("/System/Library/Frameworks/Virtualization.framework/Virtualization", RTLD_NOW);
  dlopen("/System/Library/Frameworks/Foundation.framework/Foundation", RTLD_NOW);
  if (!objc || !vz) {
    snprintf(err, errlen, "cannot load %s (macOS 12 or later is needed)", objc ? "Virtualization.framework" : "libobjc");
    return false;
  }
  get_class = (id(*)(const char *))dlsym(objc, "objc_getClass");
  sel = (SEL(*)(const char *))dlsym(objc, "sel_registerName");
  pool_push = (void *(*)(void))dlsym(objc, "objc_autoreleasePoolPush");
  pool_pop = (void (*)(void *))dlsym(objc, "objc_autoreleasePoolPop");
  msg_send = dlsym(objc, "objc_msgSend");
  allocate_class = (Class(*)(Class, const char *, size_t))dlsym(objc, "objc_allocateClassPair");
  register_class = (void (*)(Class))dlsym(objc, "objc_registerClassPair");
  add_method = (bool (*)(Class, SEL, void *, const char *))dlsym(objc, "class_addMethod");
  get_protocol = (void *(*)(const char *))dlsym(objc, "objc_getProtocol");
  add_protocol = (bool (*)(Class, void *))dlsym(objc, "class_addProtocol");
  return get_class && sel && pool_push && pool_pop && msg_send && allocate_class && register_class && add_method;
}

static id new_of(const char *class_name) {
  return SEND(id)(get_class(class_name), sel("new"));
}
static id alloc_of(const char *class_name) {
  return SEND(id)(get_class(class_name), sel("alloc"));
}
static id string(const char *s) {
  return SEND(id, const char *)(get_class("NSString"), sel("stringWithUTF8String:"), s);
}
static id file_url(const char *path) {
  return SEND(id, id)(get_class("NSURL"), sel("fileURLWithPath:"), string(path));
}
static id array(id *items, unsigned long n) {
  return SEND(id, id *, unsigned long)(get_class("NSArray"), sel("arrayWithObjects:count:"), items, n);
}

static id disk(const char *path, bool read_only, char *err, size_t errlen) {
  id error = NULL;
  id attachment = SEND(id, id, bool, id *)(alloc_of("VZDiskImageStorageDeviceAttachment"), sel("initWithURL:readOnly:error:"), file_url(path), read_only, &error);
  if (!attachment) {
    set_error(err, errlen, path, error);
    return NULL;
  }
  return SEND(id, id)(alloc_of("VZVirtioBlockDeviceConfiguration"), sel("initWithAttachment:"), attachment);
}

/* Builds and starts the VM; returns a handle, or NULL with the reason in err. */
void *actiond_vz_start(const char *kernel, const char *initramfs, const char *cmdline, const char *cas_image, const char *runtime_image,
                       const char *console_log, uint64_t memory_bytes, uint32_t cpus, char *err, size_t errlen) {
  if (!load_runtime(err, errlen)) return NULL;
  void *pool = pool_push();
  struct vm *vm = calloc(1, sizeof *vm);
  /* Each work item drains its own autorelease pool (NSErrors, connections are released promptly). */
  vm->queue = dispatch_queue_create("actiond.vz", dispatch_queue_attr_make_with_autorelease_frequency(DISPATCH_QUEUE_SERIAL, DISPATCH_AUTORELEASE_FREQUENCY_WORK_ITEM));

  id boot = SEND(id, id)(alloc_of("VZLinuxBootLoader"), sel("initWithKernelURL:"), file_url(kernel));
  SEND(void, id)(boot, sel("setInitialRamdiskURL:"), file_url(initramfs));
  SEND(void, id)(boot, sel("setCommandLine:"), string(cmdline));

  id config = new_of("VZVirtualMachineConfiguration");
  SEND(void, id)(config, sel("setBootLoader:"), boot);
  SEND(void, unsigned long)(config, sel("setCPUCount:"), cpus);
  SEND(void, uint64_t)(config, sel("setMemorySize:"), memory_bytes);

  id cas = disk(cas_image, false, err, errlen);
  id runtime = cas ? disk(runtime_image, true, err, errlen) : NULL;
  if (!cas || !runtime) goto fail;
  id disks[] = {cas, runtime};
  SEND(void, id)(config, sel("setStorageDevices:"), array(disks, 2));

  id error = NULL;
  id log = SEND(id, id, bool, id *)(alloc_of("VZFileSerialPortAttachment"), sel("initWithURL:append:error:"), file_url(console_log), false, &error);
  if (!log) {
    set_error(err, errlen, console_log, error);
    goto fail;
  }
  id console = new_of("VZVirtioConsoleDeviceSerialPortConfiguration");
  SEND(void, id)(console, sel("setAttachment:"), log);
  SEND(void, id)(config, sel("setSerialPorts:"), array(&console, 1));
  id entropy = new_of("VZVirtioEntropyDeviceConfiguration");
  SEND(void, id)(config, sel("setEntropyDevices:"), array(&entropy, 1));
  id sockets = new_of("VZVirtioSocketDeviceConfiguration");
  SEND(void, id)(config, sel("setSocketDevices:"), array(&sockets, 1));

  if (!SEND(bool, id *)(config, sel("validateWithError:"), &error)) {
    set_error(err, errlen, "the VM configuration is not valid", error);
    goto fail;
  }
  /* A VM belongs to the queue it is created with: create and start it there. */
  dispatch_sync(vm->queue, ^{
    vm->machine = SEND(id, id, dispatch_queue_t)(alloc_of("VZVirtualMachine"), sel("initWithConfiguration:queue:"), config, vm->queue);
    SEND(void, void (^)(id))(vm->machine, sel("startWithCompletionHandler:"), ^(id start_error) {
      if (start_error) {
        set_error(vm->error, sizeof vm->error, "the VM did not start", start_error);
        __atomic_store_n(&vm->state, 3, __ATOMIC_RELEASE);
      } else {
        __atomic_store_n(&vm->state, 1, __ATOMIC_RELEASE);
        if (vm->stop_asked) SEND(void, void (^)(id))(vm->machine, sel("stopWithCompletionHandler:"), ^(id e) { (void)e; });
      }
    });
  });
  pool_pop(pool);
  return vm;
fail:
  pool_pop(pool);
  free(vm);
  return NULL;
}

/* 0 starting, 1 running, 2 stopped, 3 failed (actiond_vz_error says why). */
int actiond_vz_state(void *handle) {
  struct vm *vm = handle;
  if (__atomic_load_n(&vm->state, __ATOMIC_ACQUIRE) == 1) {
    __block long state = 0;
    dispatch_sync(vm->queue, ^{
      void *pool = pool_push();
      state = SEND(long)(vm->machine, sel("state"));
      pool_pop(pool);
    });
    /* VZVirtualMachineState: 0 stopped, 1 running, 2 paused, 3 error, 4 starting, ... */
    if (state == 0) __atomic_store_n(&vm->state, 2, __ATOMIC_RELEASE);
    if (state == 3) {
      snprintf(vm->error, sizeof vm->error, "the VM stopped with an error");
      __atomic_store_n(&vm->state, 3, __ATOMIC_RELEASE);
    }
  }
  return __atomic_load_n(&vm->state, __ATOMIC_ACQUIRE);
}

const char *actiond_vz_error(void *handle) {
  return ((struct vm *)handle)->error;
}

/* Stops the VM at once (the clean way is the guest's own shutdown, asked on its control port).
 * canStop and stopWithCompletionHandler: need macOS 12, as Bun itself needs a newer macOS. */
void actiond_vz_force_stop(void *handle) {
  struct vm *vm = handle;
  /* dispatch_sync's blocks get no autorelease pool of the queue's: each brings its own. */
  dispatch_sync(vm->queue, ^{
    void *pool = pool_push();
    if (SEND(bool)(vm->machine, sel("canStop"))) SEND(void, void (^)(id))(vm->machine, sel("stopWithCompletionHandler:"), ^(id e) { (void)e; });
    else vm->stop_asked = true; /* still starting: stopped as soon as it has started */
    pool_pop(pool);
  });
}

/* ---- relaying Unix-socket connections to guest vsock ports ---- */

struct relay {
  struct vm *vm;
  uint32_t port;
  int listener;
};

struct pair {
  int a, b;
  /* The VZVirtioSocketConnection behind one end, retained while its descriptor is in use (closing
   * it may tear the vsock mapping down), and the queue it is released on. */
  id connection;
  dispatch_queue_t queue;
};

static void *copy_both_ways(void *arg) {
  struct pair p = *(struct pair *)arg;
  free(arg);
  char buf[65536];
  bool a_open = true, b_open = true;
  while (a_open || b_open) {
    struct pollfd fds[2] = {{.fd = a_open ? p.a : -1, .events = POLLIN}, {.fd = b_open ? p.b : -1, .events = POLLIN}};
    if (poll(fds, 2, -1) < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; i++) {
      if (!fds[i].revents) continue;
      int from = i ? p.b : p.a, to = i ? p.a : p.b;
      ssize_t n = read(from, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) goto out; /* a reset, not a clean end: close both */
      if (n == 0) {
        shutdown(to, SHUT_WR);
        if (i) b_open = false;
        else a_open = false;
        continue;
      }
      for (ssize_t done = 0; done < n;) {
        ssize_t w = write(to, buf + done, (size_t)(n - done));
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) goto out;
        done += w;
      }
    }
  }
out:
  close(p.a);
  close(p.b);
  if (p.connection) {
    id c = p.connection;
    dispatch_async(p.queue, ^{
      SEND(void)(c, sel("release"));
    });
  }
  return NULL;
}

/* What a connect request and its completion handler share: whoever finishes last frees it. Exactly
 * one side owns the result: the handler hands it over (WAITING -> DELIVERED) unless the waiter gave
 * up first (WAITING -> ABANDONED), and then the handler closes it. */
enum { WAITING, DELIVERED, ABANDONED };
struct pending {
  dispatch_semaphore_t done;
  int fd;
  id connection;  /* retained: released once fd is no longer used */
  int state;
  int refs;       /* 2: the waiter and the handler */
};

static void release_pending(struct pending *p) {
  if (__atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL) == 0) {
    dispatch_release(p->done);
    free(p);
  }
}

/* Sockets we hand on: never inherited by children, and no SIGPIPE into the Bun process. */
static void own_socket(int fd) {
  int on = 1;
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &on, sizeof on);
}

/* Connects a guest vsock port; returns a file descriptor of ours (and, retained, the connection
 * object behind it), or -1. */
static int connect_guest(struct vm *vm, uint32_t port, id *connection_out) {
  struct pending *p = calloc(1, sizeof *p);
  *p = (struct pending){.done = dispatch_semaphore_create(0), .fd = -1, .state = WAITING, .refs = 2};
  dispatch_async(vm->queue, ^{
    id devices = SEND(id)(vm->machine, sel("socketDevices"));
    id device = SEND(id, unsigned long)(devices, sel("objectAtIndex:"), 0);
    SEND(void, uint32_t, void (^)(id, id))(device, sel("connectToPort:completionHandler:"), port, ^(id connection, id error) {
      (void)error;
      /* A duplicate descriptor, and the connection kept alive while it is used. */
      int fd = connection ? dup(SEND(int)(connection, sel("fileDescriptor"))) : -1;
      if (fd >= 0) {
        own_socket(fd);
        p->connection = SEND(id)(connection, sel("retain"));
      }
      p->fd = fd;
      int expected = WAITING;
      if (!__atomic_compare_exchange_n(&p->state, &expected, DELIVERED, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE) && fd >= 0) {
        close(fd);
        SEND(void)(p->connection, sel("release"));
      }
      dispatch_semaphore_signal(p->done);
      release_pending(p);
    });
  });
  int fd = -1;
  *connection_out = NULL;
  dispatch_semaphore_wait(p->done, dispatch_time(DISPATCH_TIME_NOW, 30 * NSEC_PER_SEC));
  int expected = WAITING;
  if (!__atomic_compare_exchange_n(&p->state, &expected, ABANDONED, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
    /* Delivered (before or just after the timeout): ours. */
    fd = p->fd;
    *connection_out = p->connection;
  }
  release_pending(p);
  return fd;
}

struct incoming {
  struct vm *vm;
  uint32_t port;
  int client;
};

/* In its own thread, so a slow connect holds up no other client: connect the guest port, then copy. */
static void *join_guest_port(void *arg) {
  struct incoming in = *(struct incoming *)arg;
  free(arg);
  id connection;
  int guest = connect_guest(in.vm, in.port, &connection);
  if (guest < 0) {
    close(in.client);
    return NULL;
  }
  struct pair *p = malloc(sizeof *p);
  *p = (struct pair){.a = in.client, .b = guest, .connection = connection, .queue = in.vm->queue};
  return copy_both_ways(p);
}

static void *accept_loop(void *arg) {
  struct relay *r = arg;
  for (;;) {
    int client = accept(r->listener, NULL, NULL);
    if (client < 0) {
      if (errno == EBADF || errno == EINVAL) return NULL;
      if (errno != EINTR && errno != ECONNABORTED) sleep(1); /* out of descriptors, for now */
      continue;
    }
    own_socket(client);
    struct incoming *in = malloc(sizeof *in);
    *in = (struct incoming){r->vm, r->port, client};
    pthread_t t;
    if (pthread_create(&t, NULL, join_guest_port, in) == 0) {
      pthread_detach(t);
    } else {
      close(client);
      free(in);
    }
  }
}

/* Listens on the Unix socket `path`; each connection to it is joined to guest vsock `port`.
 * Returns 0, or -1 with the reason in err. */
int actiond_vz_relay(void *handle, uint32_t port, const char *path, char *err, size_t errlen) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof a.sun_path) {
    snprintf(err, errlen, "%s: path too long", path);
    return -1;
  }
  strcpy(a.sun_path, path);
  unlink(path);
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd >= 0) fcntl(fd, F_SETFD, FD_CLOEXEC);
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 64) != 0) {
    snprintf(err, errlen, "listen on %s: %s", path, strerror(errno));
    if (fd >= 0) close(fd);
    return -1;
  }
  struct relay *r = malloc(sizeof *r);
  *r = (struct relay){handle, port, fd};
  pthread_t t;
  if (pthread_create(&t, NULL, accept_loop, r) != 0) {
    snprintf(err, errlen, "cannot start the relay thread");
    close(fd);
    free(r);
    return -1;
  }
  pthread_detach(t);
  return 0;
}

/* ---- the guest's connections to host ports ---- */

/* What each listened-to host port reaches, and the queue of the VM that listens (one VM at a time per
 * process: a boot after a reboot replaces the rows of the one before). */
static struct {
  uint32_t port;
  char path[104];
  dispatch_queue_t queue;
} host_ports[16];
static int nhost_ports;
static pthread_mutex_t host_ports_lock = PTHREAD_MUTEX_INITIALIZER;

struct outgoing {
  int guest;
  char path[104];
  id connection;
  dispatch_queue_t queue;
};

/* In its own thread: connect the Unix socket, then copy both ways. */
static void *join_host_socket(void *arg) {
  struct outgoing o = *(struct outgoing *)arg;
  free(arg);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  strcpy(a.sun_path, o.path);
  int host = socket(AF_UNIX, SOCK_STREAM, 0);
  if (host < 0 || connect(host, (struct sockaddr *)&a, sizeof a) != 0) {
    if (host >= 0) close(host);
    close(o.guest);
    id c = o.connection;
    dispatch_async(o.queue, ^{
      SEND(void)(c, sel("release"));
    });
    return NULL;
  }
  own_socket(host);
  struct pair *p = malloc(sizeof *p);
  *p = (struct pair){.a = o.guest, .b = host, .connection = o.connection, .queue = o.queue};
  return copy_both_ways(p);
}

/* VZVirtioSocketListenerDelegate's listener:shouldAcceptNewConnection:fromSocketDevice:. */
static bool should_accept(id self, SEL cmd, id listener, id connection, id device) {
  (void)self, (void)cmd, (void)listener, (void)device;
  uint32_t port = SEND(uint32_t)(connection, sel("destinationPort"));
  struct outgoing *o = calloc(1, sizeof *o);
  pthread_mutex_lock(&host_ports_lock);
  for (int i = 0; i < nhost_ports; i++)
    if (host_ports[i].port == port) {
      strcpy(o->path, host_ports[i].path);
      o->queue = host_ports[i].queue;
    }
  pthread_mutex_unlock(&host_ports_lock);
  /* A duplicate descriptor, and the connection kept alive while it is used (released on its queue). */
  o->guest = o->path[0] ? dup(SEND(int)(connection, sel("fileDescriptor"))) : -1;
  pthread_t t;
  if (o->guest < 0) {
    free(o);
    return false;
  }
  own_socket(o->guest);
  o->connection = SEND(id)(connection, sel("retain"));
  if (pthread_create(&t, NULL, join_host_socket, o) != 0) {
    close(o->guest);
    SEND(void)(o->connection, sel("release"));
    free(o);
    return false;
  }
  pthread_detach(t);
  return true;
}

/* The delegate class, made once at run time (plain C has no @interface); another copy of this
 * library in the process may have made it already. */
static Class listener_delegate;
static void make_delegate_class(void) {
  listener_delegate = get_class("ActiondVsockListenerDelegate");
  if (listener_delegate) return;
  listener_delegate = allocate_class(get_class("NSObject"), "ActiondVsockListenerDelegate", 0);
  if (!listener_delegate) return;
  add_method(listener_delegate, sel("listener:shouldAcceptNewConnection:fromSocketDevice:"), (void *)should_accept, "B@:@@@");
  void *protocol = get_protocol ? get_protocol("VZVirtioSocketListenerDelegate") : NULL;
  if (protocol && add_protocol) add_protocol(listener_delegate, protocol);
  register_class(listener_delegate);
}

/* Joins every connection the guest makes to host vsock `port` to the Unix socket `path`.
 * Returns 0, or -1 with the reason in err. */
int actiond_vz_listen(void *handle, uint32_t port, const char *path, char *err, size_t errlen) {
  struct vm *vm = handle;
  if (strlen(path) >= sizeof host_ports[0].path) {
    snprintf(err, errlen, "%s: path too long", path);
    return -1;
  }
  /* A port listened to by an earlier boot gets this boot's row. */
  pthread_mutex_lock(&host_ports_lock);
  int i = 0;
  while (i < nhost_ports && host_ports[i].port != port) i++;
  if (i == 16) {
    pthread_mutex_unlock(&host_ports_lock);
    snprintf(err, errlen, "more than 16 host ports");
    return -1;
  }
  host_ports[i].port = port;
  strcpy(host_ports[i].path, path);
  host_ports[i].queue = vm->queue;
  if (i == nhost_ports) nhost_ports++;
  pthread_mutex_unlock(&host_ports_lock);
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, make_delegate_class);
  Class cls = listener_delegate;
  if (!cls) {
    snprintf(err, errlen, "cannot make the vsock listener's delegate class");
    return -1;
  }
  dispatch_sync(vm->queue, ^{
    void *pool = pool_push();
    /* Both live as long as the VM: the listener holds its delegate weakly, so neither is released. */
    id delegate = SEND(id)(SEND(id)(cls, sel("alloc")), sel("init"));
    id listener = new_of("VZVirtioSocketListener");
    SEND(void, id)(listener, sel("setDelegate:"), delegate);
    id devices = SEND(id)(vm->machine, sel("socketDevices"));
    id device = SEND(id, unsigned long)(devices, sel("objectAtIndex:"), 0);
    SEND(void, id, uint32_t)(device, sel("setSocketListener:forPort:"), listener, port);
    pool_pop(pool);
  });
  return 0;
}
