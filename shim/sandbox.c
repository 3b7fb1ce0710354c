/* actiond-sandbox: run one action in fresh namespaces on an empty, read-only root.
 *
 * Three processes:
 *   outer   stays outside every namespace: joins the cgroup, clones PID 1, writes the user namespace
 *           maps, forwards SIGTERM/SIGINT/SIGHUP as SIGKILL, and writes the final status line.
 *   PID 1   init of the new PID namespace: builds the root, then reaps until the action exits and
 *           passes its status up. It never changes credentials (that would clear its pdeathsig).
 *   action  forked by PID 1: drops to --uid/--gid with no capabilities, then execs PROGRAM.
 * The inner processes report to the outer through a pipe of NUL-terminated records:
 *   "E<code>:<message>" (setup or exec failed), "X<code>" (exited), "S<signal>" (killed).
 * See shim/README.md for the command line. */

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "remove-tree.h"
#include "utils.h"

#define SANDBOX_VERSION "0.1.0"
#define EXIT_SETUP_ERROR 125
#define EXIT_EXEC_ERROR 127

/* Where the host's root stays reachable while the new root is built (see pivot_into_new_root). */
#define OLDROOT_NAME ".actiond-sandbox-oldroot"
#define OLDROOT "/" OLDROOT_NAME

/* Newer syscalls that older libc headers may not name. */
#ifndef __NR_close_range
#define __NR_close_range 436
#endif
#ifndef __NR_mount_setattr
#define __NR_mount_setattr 442
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

/* struct mount_attr and MOUNT_ATTR_* of <linux/mount.h>, under our own names: that header clashes
 * with <sys/mount.h> on some glibc versions. */
struct sandbox_mount_attr {
  uint64_t attr_set, attr_clr, propagation, userns_fd;
};
#define ATTR_RDONLY 0x1u
#define ATTR_NOSUID 0x2u
#define ATTR_NODEV 0x4u
#define ATTR_NOEXEC 0x8u

/* Per-process reporting state: the outer process reports to the caller, the inner ones to it. */
static int outer_status_fd = -1;
static pid_t outer_pid1 = -1;
static int inner_report_fd = -1;
static int inner_error_code = EXIT_SETUP_ERROR;

/* ---- options ---------------------------------------------------------------------------------- */

enum op_type { OP_RO_BIND, OP_BIND, OP_OVERLAY, OP_SYMLINK, OP_DIR, OP_DEV, OP_TMPFS, OP_PROC };

static const char *const op_flag[] = {
    [OP_RO_BIND] = "--ro-bind", [OP_BIND] = "--bind", [OP_OVERLAY] = "--overlay", [OP_SYMLINK] = "--symlink",
    [OP_DIR] = "--dir",         [OP_DEV] = "--dev",   [OP_TMPFS] = "--tmpfs",     [OP_PROC] = "--proc",
};

/* One filesystem step, applied in command-line order inside the new root. */
struct mount_op {
  enum op_type type;
  const char *src;   /* --ro-bind/--bind SRC, --overlay LOWER, --symlink TARGET */
  const char *upper; /* --overlay */
  const char *work;  /* --overlay */
  const char *dst;   /* absolute path inside the new root */
  int src_fd, upper_fd, work_fd; /* O_PATH fds on the host paths, opened before the root changes */
};

struct options {
  bool userns;
  bool die_with_parent;
  uid_t uid;
  gid_t gid;
  const char *hostname;
  const char *chdir_path;
  const char *cgroup;
  int status_fd; /* -1: none */
  unsigned long nproc;       /* --nproc: RLIMIT_NPROC of the action; 0: left as inherited */
  unsigned long tmpfs_bytes; /* --tmpfs-size: size= of the action's tmpfs mounts; 0: the kernel's default */
  struct mount_op *ops;
  size_t n_ops;
  char **argv; /* PROGRAM and its arguments */
  uid_t caller_uid;
  gid_t caller_gid;
  mode_t caller_umask;
};

static const char usage[] =
    "Usage: actiond-sandbox [OPTIONS] -- PROGRAM [ARGS...]\n"
    "Runs PROGRAM in new mount, PID, network, IPC and UTS namespaces on an empty read-only root.\n"
    "\n"
    "  --userns                       also create a user namespace (required when not root)\n"
    "  --uid N, --gid N               identity inside (default 65534/65534)\n"
    "  --hostname NAME                hostname inside (default localhost)\n"
    "  --ro-bind SRC DST              bind SRC at DST read-only (nosuid, nodev, recursive)\n"
    "  --bind SRC DST                 bind SRC at DST read-write (nosuid, nodev, recursive)\n"
    "  --overlay LOWER UPPER WORK DST overlayfs at DST; writes go to UPPER\n"
    "  --symlink TARGET DST           symlink DST -> TARGET\n"
    "  --dir DST                      create directory DST (and parents)\n"
    "  --dev DST                      minimal /dev (null zero full random urandom tty, pts, shm)\n"
    "  --tmpfs DST                    fresh tmpfs, mode 1777\n"
    "  --proc DST                     procfs of the new PID namespace\n"
    "  --chdir DIR                    working directory inside (default /)\n"
    "  --cgroup DIR                   join this cgroup v2 directory first\n"
    "  --status-fd FD                 write JSON status lines to FD (3 or above)\n"
    "  --die-with-parent              kill the action when the process that started us dies\n"
    "  --nproc N                      RLIMIT_NPROC of the action: at most N processes and threads\n"
    "                                 of its uid (as root: of that uid on the whole host; with\n"
    "                                 --userns: in this sandbox, its PID 1 included)\n"
    "  --tmpfs-size BYTES             size= of every --tmpfs and of --dev's shm, each; nr_inodes is\n"
    "                                 one per 4 KiB of it (at least 1024)\n"
    "  --args-fd FD                   read more arguments from FD (3 or above), each ended by a NUL\n"
    "                                 byte, as if they stood here (so argv shows no host path)\n"
    "  --help, --version\n"
    "\n"
    "Mount steps apply in command-line order; DST paths are absolute inside the new root.\n"
    "The options may also come from --args-fd, PROGRAM and its arguments too.\n"
    "Exit status: PROGRAM's, 128+N when killed by signal N, 125 when the sandbox could not be\n"
    "set up, 127 when PROGRAM could not be executed.\n";

static unsigned long parse_number(const char *flag, const char *s, unsigned long max) {
  char *end;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v > max) die("%s: not a valid number: %s", flag, s);
  return v;
}

static const char *absolute_dst(const char *flag, const char *dst) {
  if (dst[0] != '/') die("%s: %s is not an absolute path", flag, dst);
  if (dst[strspn(dst, "/")] == '\0') die("%s: the destination cannot be / itself", flag);
  size_t n = strlen(OLDROOT);
  if (strncmp(dst, OLDROOT, n) == 0 && (dst[n] == '\0' || dst[n] == '/')) die("%s: %s is reserved", flag, OLDROOT);
  return dst;
}

static struct mount_op *add_op(struct options *o, enum op_type type) {
  o->ops = xrealloc(o->ops, (o->n_ops + 1) * sizeof *o->ops);
  struct mount_op *op = &o->ops[o->n_ops++];
  *op = (struct mount_op){.type = type, .src_fd = -1, .upper_fd = -1, .work_fd = -1};
  return op;
}

/* The most --args-fd may hold: far more than execve would take for PROGRAM's arguments. */
#define ARGS_FD_MAX (64ul << 20)

/* --args-fd FD: the NUL-terminated arguments FD holds, read to its end; FD is closed. */
static char **read_args_fd(int fd, size_t *count) {
  size_t cap = 4096, len = 0;
  char *buf = xmalloc(cap);
  for (;;) {
    if (len == cap) {
      if (cap >= ARGS_FD_MAX) die("--args-fd %d: more than %lu bytes", fd, ARGS_FD_MAX);
      cap *= 2;
      buf = xrealloc(buf, cap);
    }
    ssize_t n = read(fd, buf + len, cap - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) die_with_error("--args-fd %d: read", fd);
    if (n == 0) break;
    len += (size_t)n;
  }
  if (close(fd) < 0) die_with_error("--args-fd %d: close", fd);
  /* A writer that stopped half-way leaves an unterminated argument: refused, never half-parsed. */
  if (len > 0 && buf[len - 1] != '\0') die("--args-fd %d: the last argument does not end with a NUL byte", fd);
  size_t n = 0;
  for (size_t k = 0; k < len; k++) n += buf[k] == '\0';
  char **args = xmalloc((n + 1) * sizeof *args);
  size_t at = 0;
  for (size_t k = 0; k < n; k++) {
    args[k] = buf + at;
    at += strlen(buf + at) + 1;
  }
  args[n] = NULL;
  *count = n;
  return args;
}

/* Parse everything into one struct; change nothing on the system (but read --args-fd). */
static void parse_args(int argc, char **argv, struct options *o) {
  bool uid_set = false, gid_set = false, args_fd_read = false;
  *o = (struct options){.uid = 65534, .gid = 65534, .status_fd = -1};
  int i = 1;
  while (i < argc) {
    const char *a = argv[i];
    if (strcmp(a, "--") == 0) {
      i++;
      break;
    }
    if (strncmp(a, "--", 2) != 0) break; /* PROGRAM */
#define NEED(n) \
  if (i + (n) >= argc) die("%s needs %d argument%s", a, n, (n) == 1 ? "" : "s")
#define ONCE(cond) \
  if (cond) die("%s given more than once", a)
    if (strcmp(a, "--help") == 0) {
      fputs(usage, stdout);
      exit(0);
    } else if (strcmp(a, "--version") == 0) {
      puts("actiond-sandbox " SANDBOX_VERSION);
      exit(0);
    } else if (strcmp(a, "--userns") == 0) {
      o->userns = true;
      i += 1;
    } else if (strcmp(a, "--die-with-parent") == 0) {
      o->die_with_parent = true;
      i += 1;
    } else if (strcmp(a, "--uid") == 0) {
      NEED(1);
      ONCE(uid_set);
      o->uid = (uid_t)parse_number(a, argv[i + 1], 0xfffffffeUL);
      uid_set = true;
      i += 2;
    } else if (strcmp(a, "--gid") == 0) {
      NEED(1);
      ONCE(gid_set);
      o->gid = (gid_t)parse_number(a, argv[i + 1], 0xfffffffeUL);
      gid_set = true;
      i += 2;
    } else if (strcmp(a, "--hostname") == 0) {
      NEED(1);
      ONCE(o->hostname != NULL);
      o->hostname = argv[i + 1];
      if (o->hostname[0] == '\0' || strlen(o->hostname) > HOST_NAME_MAX) die("--hostname: must be 1 to %d bytes", HOST_NAME_MAX);
      i += 2;
    } else if (strcmp(a, "--chdir") == 0) {
      NEED(1);
      ONCE(o->chdir_path != NULL);
      o->chdir_path = argv[i + 1];
      if (o->chdir_path[0] != '/') die("--chdir: %s is not an absolute path", o->chdir_path);
      i += 2;
    } else if (strcmp(a, "--cgroup") == 0) {
      NEED(1);
      ONCE(o->cgroup != NULL);
      o->cgroup = argv[i + 1];
      i += 2;
    } else if (strcmp(a, "--args-fd") == 0) {
      NEED(1);
      ONCE(args_fd_read);
      args_fd_read = true;
      int fd = (int)parse_number(a, argv[i + 1], INT_MAX);
      if (fd < 3) die("--args-fd must be 3 or above, not %d", fd);
      /* Splice: argv[0..i) + what FD holds + argv[i+2..argc), then parse on from i. */
      size_t n;
      char **more = read_args_fd(fd, &n);
      int rest = argc - (i + 2);
      if (n > (size_t)(INT_MAX - argc)) die("--args-fd %d: too many arguments", fd);
      char **spliced = xmalloc(((size_t)argc - 2 + n + 1) * sizeof *spliced);
      memcpy(spliced, argv, (size_t)i * sizeof *spliced);
      memcpy(spliced + i, more, n * sizeof *spliced);
      memcpy(spliced + i + n, argv + i + 2, (size_t)rest * sizeof *spliced);
      argc = i + (int)n + rest;
      spliced[argc] = NULL;
      free(more);
      argv = spliced;
    } else if (strcmp(a, "--nproc") == 0) {
      NEED(1);
      ONCE(o->nproc != 0);
      o->nproc = parse_number(a, argv[i + 1], RLIM_INFINITY - 1);
      if (o->nproc == 0) die("--nproc must be 1 or more");
      i += 2;
    } else if (strcmp(a, "--tmpfs-size") == 0) {
      NEED(1);
      ONCE(o->tmpfs_bytes != 0);
      o->tmpfs_bytes = parse_number(a, argv[i + 1], ULONG_MAX);
      if (o->tmpfs_bytes == 0) die("--tmpfs-size must be 1 or more");
      i += 2;
    } else if (strcmp(a, "--status-fd") == 0) {
      NEED(1);
      ONCE(o->status_fd != -1);
      o->status_fd = (int)parse_number(a, argv[i + 1], INT_MAX);
      /* 0-2 are PROGRAM's stdio; the status fd is made close-on-exec, which would take them away. */
      if (o->status_fd < 3) die("--status-fd must be 3 or above, not %d", o->status_fd);
      outer_status_fd = o->status_fd; /* from here on, errors are reported there too */
      i += 2;
    } else if (strcmp(a, "--ro-bind") == 0 || strcmp(a, "--bind") == 0) {
      NEED(2);
      struct mount_op *op = add_op(o, a[2] == 'r' ? OP_RO_BIND : OP_BIND);
      op->src = argv[i + 1];
      op->dst = absolute_dst(a, argv[i + 2]);
      i += 3;
    } else if (strcmp(a, "--overlay") == 0) {
      NEED(4);
      struct mount_op *op = add_op(o, OP_OVERLAY);
      op->src = argv[i + 1];
      op->upper = argv[i + 2];
      op->work = argv[i + 3];
      op->dst = absolute_dst(a, argv[i + 4]);
      i += 5;
    } else if (strcmp(a, "--symlink") == 0) {
      NEED(2);
      struct mount_op *op = add_op(o, OP_SYMLINK);
      op->src = argv[i + 1];
      op->dst = absolute_dst(a, argv[i + 2]);
      i += 3;
    } else if (strcmp(a, "--dir") == 0 || strcmp(a, "--dev") == 0 || strcmp(a, "--tmpfs") == 0 || strcmp(a, "--proc") == 0) {
      NEED(1);
      enum op_type t = strcmp(a, "--dir") == 0 ? OP_DIR : strcmp(a, "--dev") == 0 ? OP_DEV : strcmp(a, "--tmpfs") == 0 ? OP_TMPFS : OP_PROC;
      add_op(o, t)->dst = absolute_dst(a, argv[i + 1]);
      i += 2;
    } else {
      die("unknown option %s (see --help)", a);
    }
#undef NEED
#undef ONCE
  }
  if (i >= argc) die("no PROGRAM given (usage: actiond-sandbox [OPTIONS] -- PROGRAM [ARGS...])");
  o->argv = argv + i;
  if (o->hostname == NULL) o->hostname = "localhost";
  if (o->chdir_path == NULL) o->chdir_path = "/";
}

/* The combinations that cannot work, each refused with one line before anything is changed. */
static void check_options(struct options *o) {
  o->caller_uid = getuid();
  o->caller_gid = getgid();
  if (geteuid() != o->caller_uid || getegid() != o->caller_gid)
    die("must not be installed setuid or setgid: run it as root, or as a user with --userns");
  if (o->caller_uid != 0 && !o->userns)
    die("running as uid %u needs --userns: only root can create the namespaces without a user namespace", o->caller_uid);
  if (o->status_fd >= 0 && fcntl(o->status_fd, F_GETFD) < 0) die_with_error("--status-fd %d", o->status_fd);
  o->caller_umask = umask(0);
  umask(o->caller_umask);
}

/* ---- reporting -------------------------------------------------------------------------------- */


static void write_status_line(int fd, const char *key, const char *json_value) {
  if (fd < 0) return;
  char *line = xasprintf("{\"%s\":%s}\n", key, json_value);
  (void)write_all(fd, line, strlen(line)); /* a caller that stopped listening is not our failure */
  free(line);
}

static char *json_string(const char *s) {
  char *out = xmalloc(strlen(s) * 6 + 3), *p = out;
  *p++ = '"';
  for (; *s != '\0'; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      *p++ = '\\';
      *p++ = (char)c;
    } else if (c < 0x20) {
      p += sprintf(p, "\\u%04x", c);
    } else {
      *p++ = (char)c;
    }
  }
  *p++ = '"';
  *p = '\0';
  return out;
}

NORETURN static void finish_with_error(const char *message, int code) {
  fprintf(stderr, "actiond-sandbox: %s\n", message);
  char *j = json_string(message);
  write_status_line(outer_status_fd, "error", j);
  free(j);
  exit(code);
}

/* die() in the outer process: stop PID 1 (if any), report, exit 125. */
NORETURN static void outer_die(const char *message) {
  if (outer_pid1 > 0) {
    kill(outer_pid1, SIGKILL);
    while (waitpid(outer_pid1, NULL, 0) < 0 && errno == EINTR) {
    }
  }
  finish_with_error(message, EXIT_SETUP_ERROR);
}

/* die() in PID 1 and the action process: hand the message to the outer process, which prints it. */
NORETURN static void inner_die(const char *message) {
  char record[3200];
  int n = snprintf(record, sizeof record, "E%d:%s", inner_error_code, message);
  if (n < 0 || (size_t)n >= sizeof record) n = (int)sizeof record - 1;
  /* One write below PIPE_BUF, NUL included: records from PID 1 and the action never interleave. */
  (void)write_all(inner_report_fd, record, (size_t)n + 1);
  _exit(inner_error_code);
}

static void send_record(int fd, char type, int value) {
  char record[32];
  int n = snprintf(record, sizeof record, "%c%d", type, value);
  if (!write_all(fd, record, (size_t)n + 1)) die_with_error("write to the outer process");
}

/* ---- outer process ---------------------------------------------------------------------------- */

/* Before any namespace exists, so every process of the action starts inside the cgroup (its
 * limits and cgroup.kill then cover the whole tree, and no fork can slip out). */
static void join_cgroup(const struct options *o) {
  if (o->cgroup == NULL) return;
  char *path = xasprintf("%s/cgroup.procs", o->cgroup);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) die_with_error("--cgroup: open %s", path);
  char pid[32];
  int n = snprintf(pid, sizeof pid, "%d\n", getpid());
  if (!write_all(fd, pid, (size_t)n)) die_with_error("--cgroup: write %s", path);
  if (close(fd) < 0) die_with_error("--cgroup: close %s", path);
  free(path);
}

static void forwarded_signals(sigset_t *set) {
  sigemptyset(set);
  sigaddset(set, SIGTERM);
  sigaddset(set, SIGINT);
  sigaddset(set, SIGHUP);
  sigaddset(set, SIGCHLD);
}

/* Blocked before the clone, so a SIGTERM that arrives while PID 1 starts is not lost: the wait
 * loop picks it up with sigwaitinfo. SIGCHLD must be at its default (a caller may have left it
 * ignored, which would reap PID 1 behind our back), and SIGPIPE ignored so that a closed status
 * fd is an EPIPE, not our death. */
static void prepare_outer_signals(void) {
  if (signal(SIGCHLD, SIG_DFL) == SIG_ERR) die_with_error("signal SIGCHLD");
  if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) die_with_error("signal SIGPIPE");
  sigset_t set;
  forwarded_signals(&set);
  if (sigprocmask(SIG_BLOCK, &set, NULL) < 0) die_with_error("sigprocmask");
}

/* clone(2) like fork, but with the new namespaces, so the outer process stays outside all of
 * them (unshare would move the caller itself). The raw syscall: glibc's clone() needs a stack.
 * The first two arguments are the same on x86_64 and aarch64. */
static pid_t clone_pid1(const struct options *o) {
  unsigned long flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | SIGCHLD;
  if (o->userns) flags |= CLONE_NEWUSER;
  long pid = syscall(SYS_clone, flags, NULL, NULL, NULL, NULL);
  if (pid < 0) {
    if (o->userns && (errno == EPERM || errno == ENOSPC || errno == EINVAL))
      die_with_error("clone with a new user namespace (are unprivileged user namespaces disabled? check sysctl "
                     "user.max_user_namespaces, kernel.unprivileged_userns_clone and "
                     "kernel.apparmor_restrict_unprivileged_userns)");
    if (!o->userns && errno == EPERM) die_with_error("clone with new namespaces (without CAP_SYS_ADMIN, use --userns)");
    die_with_error("clone with new namespaces");
  }
  return (pid_t)pid;
}

static void write_proc_file(pid_t pid, const char *name, const char *content) {
  char *path = xasprintf("/proc/%d/%s", pid, name);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) die_with_error("open %s", path);
  if (!write_all(fd, content, strlen(content))) die_with_error("write \"%s\" to %s", content, path);
  if (close(fd) < 0) die_with_error("close %s", path);
  free(path);
}

/* Map --uid/--gid inside to the caller outside, one line each: the only mapping an unprivileged
 * caller may write. "deny" to setgroups must come first, or the kernel refuses an unprivileged
 * gid_map. Written by the parent: a process cannot map itself once it is inside. */
static void write_id_maps(pid_t pid, const struct options *o) {
  char map[64];
  write_proc_file(pid, "setgroups", "deny");
  snprintf(map, sizeof map, "%u %u 1\n", o->uid, o->caller_uid);
  write_proc_file(pid, "uid_map", map);
  snprintf(map, sizeof map, "%u %u 1\n", o->gid, o->caller_gid);
  write_proc_file(pid, "gid_map", map);
}

/* One byte tells PID 1 that its maps are written. The write end then stays open for as long as
 * this process lives: PID 1 checks it for a hang-up (see arm_self_destruction). */
static void release_pid1(int sync_w) {
  if (!write_all(sync_w, "g", 1)) die_with_error("write to PID 1");
}

/* Wait for PID 1; turn SIGTERM/SIGINT/SIGHUP into SIGKILL for it (which empties its namespace).
 * Returns its wait status; *forwarded is the signal we forwarded, or 0. */
static int wait_for_pid1(pid_t pid, int *forwarded) {
  sigset_t set;
  forwarded_signals(&set);
  *forwarded = 0;
  for (;;) {
    int status;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0 && errno != EINTR) die_with_error("waitpid %d", pid);
    int sig = sigwaitinfo(&set, NULL);
    if (sig < 0) {
      if (errno == EINTR) continue;
      die_with_error("sigwaitinfo");
    }
    if (sig != SIGCHLD) {
      *forwarded = sig;
      if (kill(pid, SIGKILL) < 0 && errno != ESRCH) die_with_error("kill %d", pid);
    }
  }
}

/* Read what PID 1 and the action reported and turn it into the final status line and exit code.
 * When PID 1 is gone, so is every process of its namespace, so no writer of the pipe is left. */
static int report_outcome(int report_r, int pid1_status, int forwarded) {
  outer_pid1 = -1;
  static char buf[8192];
  size_t len = 0;
  for (;;) {
    ssize_t n = read(report_r, buf + len, sizeof buf - 1 - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) die_with_error("read from PID 1");
    if (n == 0 || (len += (size_t)n) == sizeof buf - 1) break;
  }
  buf[len] = '\0';
  const char *error = NULL;
  int error_code = EXIT_SETUP_ERROR, exit_code = -1, signo = -1;
  for (const char *rec = buf; rec < buf + len; rec += strlen(rec) + 1) {
    if (rec[0] == 'E' && error == NULL) {
      error_code = atoi(rec + 1);
      const char *colon = strchr(rec, ':');
      error = colon != NULL ? colon + 1 : "unknown error";
    } else if (rec[0] == 'X') {
      exit_code = atoi(rec + 1);
    } else if (rec[0] == 'S') {
      signo = atoi(rec + 1);
    }
  }
  if (error != NULL) finish_with_error(error, error_code);
  char value[32];
  if (exit_code >= 0) {
    snprintf(value, sizeof value, "%d", exit_code);
    write_status_line(outer_status_fd, "exit_code", value);
    return exit_code;
  }
  /* No report from PID 1 because we SIGKILLed it on request: the action was killed. */
  if (signo < 0 && forwarded != 0 && WIFSIGNALED(pid1_status) && WTERMSIG(pid1_status) == SIGKILL) signo = SIGKILL;
  if (signo > 0) {
    snprintf(value, sizeof value, "%d", signo);
    write_status_line(outer_status_fd, "signal", value);
    return 128 + signo;
  }
  char message[128];
  if (WIFSIGNALED(pid1_status))
    snprintf(message, sizeof message, "the sandbox's PID 1 was killed by signal %d", WTERMSIG(pid1_status));
  else
    snprintf(message, sizeof message, "the sandbox's PID 1 exited with %d without a report", WEXITSTATUS(pid1_status));
  finish_with_error(message, EXIT_SETUP_ERROR);
}

/* ---- PID 1: self-destruction -------------------------------------------------------------------- */

/* If the outer process dies (even by SIGKILL), PID 1 must die too, and with it the whole PID
 * namespace. PR_SET_PDEATHSIG does that, but only from the moment it is set, and getppid() cannot
 * tell whether the parent already died (it is 0 in a new PID namespace either way). So: set it,
 * then look at the sync pipe. Its only write end belongs to the outer process, and the kernel
 * closes a dying process's files before it signals the children, so either the parent died
 * before the prctl (the pipe shows a hang-up) or after it (SIGKILL arrives). Set after the
 * uid/gid maps are written, and PID 1 never changes credentials afterwards: that clears it. */
static void arm_self_destruction(int sync_r) {
  char c;
  ssize_t n;
  while ((n = read(sync_r, &c, 1)) < 0 && errno == EINTR) {
  }
  if (n != 1) _exit(EXIT_SETUP_ERROR); /* the outer process failed or died; it reports */
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) die_with_error("prctl PR_SET_PDEATHSIG");
  struct pollfd p = {.fd = sync_r, .events = POLLIN};
  if (poll(&p, 1, 0) < 0) die_with_error("poll the sync pipe");
  if (p.revents & (POLLHUP | POLLERR)) _exit(EXIT_SETUP_ERROR);
}

/* ---- PID 1: the new root ------------------------------------------------------------------------ */

static int open_path(const char *flag, const char *what, const char *path) {
  int fd = open(path, O_PATH | O_CLOEXEC);
  if (fd < 0) die_with_error("%s: cannot open %s %s", flag, what, path);
  return fd;
}

/* SRC paths mean host paths, so they are opened before the root changes, while they resolve as
 * the caller sees them (relative ones against the caller's working directory). */
static void open_mount_sources(struct options *o) {
  for (size_t i = 0; i < o->n_ops; i++) {
    struct mount_op *op = &o->ops[i];
    if (op->type == OP_RO_BIND || op->type == OP_BIND) {
      op->src_fd = open_path(op_flag[op->type], "source", op->src);
    } else if (op->type == OP_OVERLAY) {
      op->src_fd = open_path("--overlay", "lower dir", op->src);
      op->upper_fd = open_path("--overlay", "upper dir", op->upper);
      op->work_fd = open_path("--overlay", "work dir", op->work);
    }
  }
}

static void close_mount_sources(struct options *o) {
  for (size_t i = 0; i < o->n_ops; i++) {
    int *fds[] = {&o->ops[i].src_fd, &o->ops[i].upper_fd, &o->ops[i].work_fd};
    for (size_t k = 0; k < 3; k++)
      if (*fds[k] >= 0) {
        close(*fds[k]);
        *fds[k] = -1;
      }
  }
}

/* A host path opened earlier, as a path the kernel resolves back to it (a magic link of the
 * host's procfs, still reachable under OLDROOT). */
static char *fd_path(int fd) {
  return xasprintf(OLDROOT "/proc/self/fd/%d", fd);
}

/* Nothing we mount may propagate back to the host (and pivot_root refuses shared mounts). */
static void make_mounts_private(void) {
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) die_with_error("mount --make-rprivate /");
}

/* The new root is an empty tmpfs; pivot into it at once and keep the host's root under OLDROOT
 * until the mount steps are done. Building inside the new root (rather than under a host path
 * and pivoting at the end) makes DST paths resolve as they will for the action: an absolute
 * symlink made by --symlink points into the new root, not the host's. The host's /proc stays
 * visible under OLDROOT, which the kernel requires before it grants a new procfs in a user
 * namespace, and which fd_path uses. Any host directory works as the mount point; its contents
 * are hidden only in this mount namespace. */
static void pivot_into_new_root(void) {
  if (mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0) die_with_error("mount tmpfs on /tmp (the new root)");
  if (chdir("/tmp") < 0) die_with_error("chdir /tmp (the new root)");
  if (mkdir(OLDROOT_NAME, 0700) < 0) die_with_error("mkdir %s", OLDROOT);
  if (syscall(SYS_pivot_root, ".", OLDROOT_NAME) < 0) die_with_error("pivot_root . %s", OLDROOT_NAME);
  if (chdir("/") < 0) die_with_error("chdir / (the new root)");
}

/* mkdir -p inside the new root. */
static void make_dirs(const char *path) {
  char *p = xstrdup(path);
  for (char *s = p + 1;; s++) {
    if (*s != '/' && *s != '\0') continue;
    char saved = *s;
    *s = '\0';
    if (mkdir(p, 0755) < 0) {
      struct stat st;
      if (errno != EEXIST) die_with_error("mkdir %s", p);
      if (stat(p, &st) < 0) die_with_error("stat %s", p);
      if (!S_ISDIR(st.st_mode)) die("mkdir %s: exists and is not a directory", p);
    }
    *s = saved;
    if (saved == '\0') break;
    while (s[1] == '/') s++;
    if (s[1] == '\0') break;
  }
  free(p);
}

static void make_parent_dirs(const char *path) {
  char *p = xstrdup(path);
  char *slash = strrchr(p, '/');
  if (slash != NULL && slash != p) {
    *slash = '\0';
    make_dirs(p);
  }
  free(p);
}

static void make_empty_file(const char *path) {
  make_parent_dirs(path);
  int fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOCTTY, 0444);
  if (fd < 0) die_with_error("create %s (mount point for a file)", path);
  close(fd);
}

/* Set mount attributes on PATH (and, if recursive, everything mounted below it). */
static void set_mount_attrs(const char *path, unsigned attrs, bool recursive) {
  struct sandbox_mount_attr a = {.attr_set = attrs};
  if (syscall(__NR_mount_setattr, AT_FDCWD, path, recursive ? AT_RECURSIVE : 0, &a, sizeof a) == 0) return;
  if (errno != ENOSYS) die_with_error("mount_setattr %s", path);
  /* Before Linux 5.12: remount the top mount only. A mount inherited into a user namespace
   * must keep the flags it has (they are locked), so they are read back and kept. */
  struct statvfs sv;
  if (statvfs(path, &sv) < 0) die_with_error("statvfs %s", path);
  unsigned long flags = MS_REMOUNT | MS_BIND;
  const struct {
    unsigned long st, ms;
  } keep[] = {{ST_RDONLY, MS_RDONLY},     {ST_NOSUID, MS_NOSUID},   {ST_NODEV, MS_NODEV},         {ST_NOEXEC, MS_NOEXEC},
              {ST_NOATIME, MS_NOATIME},   {ST_NODIRATIME, MS_NODIRATIME}, {ST_RELATIME, MS_RELATIME}};
  for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++)
    if (sv.f_flag & keep[i].st) flags |= keep[i].ms;
  if (attrs & ATTR_RDONLY) flags |= MS_RDONLY;
  if (attrs & ATTR_NOSUID) flags |= MS_NOSUID;
  if (attrs & ATTR_NODEV) flags |= MS_NODEV;
  if (attrs & ATTR_NOEXEC) flags |= MS_NOEXEC;
  if (mount(NULL, path, NULL, flags, NULL) < 0) die_with_error("remount %s", path);
}

static void mount_bind(const struct mount_op *op) {
  struct stat st;
  if (fstat(op->src_fd, &st) < 0) die_with_error("%s: stat %s", op_flag[op->type], op->src);
  if (S_ISDIR(st.st_mode))
    make_dirs(op->dst);
  else
    make_empty_file(op->dst);
  char *src = fd_path(op->src_fd);
  if (mount(src, op->dst, NULL, MS_BIND | MS_REC, NULL) < 0) die_with_error("%s: mount %s on %s", op_flag[op->type], op->src, op->dst);
  free(src);
  unsigned attrs = ATTR_NOSUID | ATTR_NODEV | (op->type == OP_RO_BIND ? ATTR_RDONLY : 0);
  set_mount_attrs(op->dst, attrs, true);
}

/* Paths go to overlayfs as fd paths: no ',' or ':' in a host path can confuse its options. In a
 * user namespace overlayfs keeps its metadata in user.* xattrs ("userxattr"): trusted.* needs
 * the host's root. */
static void mount_overlay(const struct mount_op *op, bool userns) {
  make_dirs(op->dst);
  char *lower = fd_path(op->src_fd), *upper = fd_path(op->upper_fd), *work = fd_path(op->work_fd);
  char *data = xasprintf("lowerdir=%s,upperdir=%s,workdir=%s%s", lower, upper, work, userns ? ",userxattr" : "");
  if (mount("overlay", op->dst, "overlay", MS_NOSUID | MS_NODEV, data) < 0)
    die_with_error("--overlay: mount overlay on %s (lower %s, upper %s, work %s)", op->dst, op->src, op->upper, op->work);
  free(lower);
  free(upper);
  free(work);
  free(data);
}

static void mount_tmpfs(const char *flag, const char *dst, unsigned long flags, const char *data) {
  make_dirs(dst);
  if (mount("tmpfs", dst, "tmpfs", flags, data) < 0) die_with_error("%s: mount tmpfs on %s", flag, dst);
}

/* The kernel grants a new procfs in a user namespace only if a full /proc is visible in the mount
 * namespace: the host's, still under OLDROOT. */
static void mount_proc(const char *dst) {
  make_dirs(dst);
  if (mount("proc", dst, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
    if (errno == EPERM)
      die_with_error("--proc: mount proc on %s (in a user namespace the kernel refuses it when the host's /proc "
                     "is partly covered by other mounts, as in many containers)",
                     dst);
    die_with_error("--proc: mount proc on %s", dst);
  }
}

static void make_symlink(const char *flag, const char *target, const char *dst) {
  make_parent_dirs(dst);
  if (symlink(target, dst) == 0) return;
  int saved = errno;
  if (saved == EEXIST) { /* the same link twice is fine */
    char existing[PATH_MAX];
    ssize_t n = readlink(dst, existing, sizeof existing - 1);
    if (n >= 0) {
      existing[n] = '\0';
      if (strcmp(existing, target) == 0) return;
    }
  }
  errno = saved;
  die_with_error("%s: symlink %s -> %s", flag, dst, target);
}

/* The options of a tmpfs the action may write (--tmpfs, --dev's shm). With --tmpfs-size, the
 * size and the inodes are bounded: one inode per 4 KiB page, so a file with data meets the size
 * first, and only empty files and directories, which take no pages but kernel memory, meet
 * nr_inodes. */
static char *action_tmpfs_data(const struct options *o) {
  if (o->tmpfs_bytes == 0) return xstrdup("mode=1777");
  unsigned long inodes = o->tmpfs_bytes / 4096;
  if (inodes < 1024) inodes = 1024;
  return xasprintf("mode=1777,size=%lu,nr_inodes=%lu", o->tmpfs_bytes, inodes);
}

/* A minimal /dev. The nodes are the host's, bind-mounted onto empty files: a tmpfs made in a
 * user namespace cannot hold working device nodes, and binds need no mknod privilege. So no
 * nodev on them (nosuid and noexec yes). */
static void mount_dev(const struct options *o, const char *dst) {
  static const char *const nodes[] = {"null", "zero", "full", "random", "urandom", "tty"};
  static const char *const links[][2] = {
      {"fd", "/proc/self/fd"},         {"stdin", "/proc/self/fd/0"}, {"stdout", "/proc/self/fd/1"},
      {"stderr", "/proc/self/fd/2"}, {"ptmx", "pts/ptmx"},
  };
  mount_tmpfs("--dev", dst, MS_NOSUID | MS_NOEXEC, "mode=0755");
  for (size_t i = 0; i < sizeof nodes / sizeof nodes[0]; i++) {
    char *host = xasprintf(OLDROOT "/dev/%s", nodes[i]);
    char *target = xasprintf("%s/%s", dst, nodes[i]);
    struct stat st;
    if (lstat(host, &st) < 0) {
      if (errno != ENOENT) die_with_error("--dev: stat /dev/%s", nodes[i]);
    } else if (S_ISCHR(st.st_mode)) { /* a host without the node (or not a device there): leave it out */
      make_empty_file(target);
      if (mount(host, target, NULL, MS_BIND, NULL) < 0) die_with_error("--dev: bind /dev/%s on %s", nodes[i], target);
      set_mount_attrs(target, ATTR_NOSUID | ATTR_NOEXEC, false);
    }
    free(host);
    free(target);
  }
  for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
    char *target = xasprintf("%s/%s", dst, links[i][0]);
    make_symlink("--dev", links[i][1], target);
    free(target);
  }
  char *shm = xasprintf("%s/shm", dst), *pts = xasprintf("%s/pts", dst);
  char *shm_data = action_tmpfs_data(o);
  mount_tmpfs("--dev", shm, MS_NOSUID | MS_NODEV, shm_data);
  free(shm_data);
  /* A private devpts instance, so ptmx works and shows none of the host's terminals. */
  make_dirs(pts);
  if (mount("devpts", pts, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620") < 0)
    die_with_error("--dev: mount devpts on %s", pts);
  free(shm);
  free(pts);
}

static void apply_mount_ops(const struct options *o) {
  char *tmpfs_data = action_tmpfs_data(o);
  for (size_t i = 0; i < o->n_ops; i++) {
    const struct mount_op *op = &o->ops[i];
    switch (op->type) {
      case OP_RO_BIND:
      case OP_BIND: mount_bind(op); break;
      case OP_OVERLAY: mount_overlay(op, o->userns); break;
      case OP_SYMLINK: make_symlink("--symlink", op->src, op->dst); break;
      case OP_DIR: make_dirs(op->dst); break;
      case OP_DEV: mount_dev(o, op->dst); break;
      case OP_TMPFS: mount_tmpfs("--tmpfs", op->dst, MS_NOSUID | MS_NODEV, tmpfs_data); break;
      case OP_PROC: mount_proc(op->dst); break;
    }
  }
  free(tmpfs_data);
}

/* The new network namespace has only "lo", and it starts down. */
static void bring_up_loopback(void) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) die_with_error("socket AF_INET (to bring up lo)");
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strcpy(ifr.ifr_name, "lo");
  if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) die_with_error("ioctl SIOCGIFFLAGS lo");
  ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) die_with_error("ioctl SIOCSIFFLAGS lo up");
  close(s);
}

static void set_hostname(const char *name) {
  if (sethostname(name, strlen(name)) < 0) die_with_error("sethostname %s", name);
}

/* After the last mount step (binds and a procfs need the host's root), drop the host's root. */
static void detach_old_root(void) {
  if (umount2(OLDROOT, MNT_DETACH) < 0) die_with_error("umount2 %s", OLDROOT);
  if (rmdir(OLDROOT) < 0) die_with_error("rmdir %s", OLDROOT);
}

/* Last, because every step above creates files in these tmpfs. Not recursive: what is mounted
 * below keeps its own mode (a --bind or --tmpfs stays writable, /dev/null too). */
static void make_root_read_only(const struct options *o) {
  for (size_t i = 0; i < o->n_ops; i++)
    if (o->ops[i].type == OP_DEV) set_mount_attrs(o->ops[i].dst, ATTR_RDONLY | ATTR_NOSUID | ATTR_NOEXEC, false);
  set_mount_attrs("/", ATTR_RDONLY | ATTR_NOSUID | ATTR_NODEV, false);
}

/* ---- the action process ------------------------------------------------------------------------- */

/* Nothing the caller leaked (nor our own pipes) reaches PROGRAM, except the status fd, which is
 * close-on-exec (set later) but needed until then, and the report pipe (close-on-exec already). */
static void close_inherited_fds(int keep_a, int keep_b) {
  int lo = keep_a < keep_b ? keep_a : keep_b, hi = keep_a < keep_b ? keep_b : keep_a;
  unsigned ranges[3][2] = {{3, (unsigned)lo - 1}, {(unsigned)lo + 1, (unsigned)hi - 1}, {(unsigned)hi + 1, ~0u}};
  if (lo < 3) { /* no status fd */
    ranges[0][0] = 1, ranges[0][1] = 0;
    ranges[1][0] = 3;
  }
  for (size_t i = 0; i < 3; i++) {
    if (ranges[i][0] > ranges[i][1]) continue;
    if (syscall(__NR_close_range, ranges[i][0], ranges[i][1], 0) == 0) continue;
    if (errno != ENOSYS) die_with_error("close_range %u %u", ranges[i][0], ranges[i][1]);
    /* Before Linux 5.9 (and no /proc to walk without --proc): every possible fd. */
    long max = sysconf(_SC_OPEN_MAX);
    for (long fd = ranges[i][0]; fd <= (long)ranges[i][1] && fd < max; fd++) close((int)fd);
  }
}

/* Ignored signals and the signal mask survive exec: PROGRAM starts with the defaults. SIGPIPE is
 * restored last, right before exec, so a closed status fd cannot kill us first. */
static void reset_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP || sig == SIGPIPE) continue;
    if (sigaction(sig, &sa, NULL) < 0 && errno != EINVAL) die_with_error("sigaction %d", sig);
  }
  sigset_t empty;
  sigemptyset(&empty);
  if (sigprocmask(SIG_SETMASK, &empty, NULL) < 0) die_with_error("sigprocmask");
}

/* The order is forced: dropping the bounding set needs CAP_SETPCAP and setgroups/setres[ug]id
 * need CAP_SETGID/CAP_SETUID, all of which capset then removes. With an empty bounding set even
 * --uid 0 regains nothing on exec. no_new_privs last: setuid files and file capabilities then grant
 * nothing, and an unprivileged seccomp filter is allowed. */
static void drop_privileges(const struct options *o) {
  for (int cap = 0;; cap++) {
    int r = prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
    if (r < 0 && errno == EINVAL) break; /* past the last capability this kernel knows */
    if (r < 0) die_with_error("prctl PR_CAPBSET_READ %d", cap);
    if (r == 1 && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EPERM) die_with_error("prctl PR_CAPBSET_DROP %d", cap);
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL) die_with_error("prctl PR_CAP_AMBIENT_CLEAR_ALL");
  /* In our user namespace setgroups is denied, and there are no groups to drop anyway. */
  if (!o->userns && setgroups(0, NULL) < 0) die_with_error("setgroups 0");
  if (setresgid(o->gid, o->gid, o->gid) < 0) die_with_error("setresgid %u", o->gid);
  if (setresuid(o->uid, o->uid, o->uid) < 0) die_with_error("setresuid %u", o->uid);
  struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
  memset(data, 0, sizeof data);
  if (syscall(SYS_capset, &hdr, data) < 0) die_with_error("capset (drop all capabilities)");
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die_with_error("prctl PR_SET_NO_NEW_PRIVS");
}

/* --nproc. The kernel counts RLIMIT_NPROC per uid in each user namespace: as root every action runs
 * as --uid in the host's, so the count is of all processes of that uid on the host (every
 * sandbox's together); with --userns it is of this sandbox's own namespace, PID 1 included. Set
 * after the uid change, so PROGRAM itself always starts; its forks beyond N fail with EAGAIN. A
 * lower hard limit inherited from the caller stays (raising it needs a capability we dropped). */
static void limit_processes(unsigned long n) {
  struct rlimit r;
  if (getrlimit(RLIMIT_NPROC, &r) < 0) die_with_error("getrlimit RLIMIT_NPROC");
  if (r.rlim_max != RLIM_INFINITY && r.rlim_max < n) n = r.rlim_max;
  r.rlim_cur = r.rlim_max = n;
  if (setrlimit(RLIMIT_NPROC, &r) < 0) die_with_error("setrlimit RLIMIT_NPROC %lu (--nproc)", n);
}

/* ---- seccomp ------------------------------------------------------------------------------------ */

/* A small deny list: socket(AF_VSOCK) (in the VM, vsock leads to the host), io_uring_setup, bpf,
 * kexec_load, kexec_file_load, and the kernel keyrings (add_key, request_key, keyctl: every action
 * runs as the same uid, so a key one action leaves is readable by the next, and one action can use
 * up that uid's key quota for all; container runtimes deny them too) fail with EPERM; everything
 * else is allowed. Each architecture a process of this machine can use gets its own numbers; x32
 * and unknown architectures are denied. */
struct syscall_numbers {
  uint32_t arch;
  int socket, socketcall, io_uring_setup, bpf, kexec_load, kexec_file_load, add_key, request_key, keyctl; /* -1: none */
  bool deny_x32;
};

#define AF_VSOCK_NUMBER 40
#define SECCOMP_DENY (SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA))
#define SECCOMP_ARG0_LOW offsetof(struct seccomp_data, args[0]) /* little-endian: the int domain */

static void emit(struct sock_filter *prog, size_t *n, struct sock_filter insn) {
  prog[(*n)++] = insn;
}

static void emit_arch(struct sock_filter *prog, size_t *n, const struct syscall_numbers *a) {
  emit(prog, n, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)));
  size_t skip_at = *n;
  emit(prog, n, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, a->arch, 0, 0)); /* jf patched below */
  size_t body = *n;
  emit(prog, n, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)));
  if (a->deny_x32) {
    emit(prog, n, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000u, 0, 1));
    emit(prog, n, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_DENY));
  }
  const int denied[] = {a->socketcall, a->io_uring_setup, a->bpf, a->kexec_load, a->kexec_file_load, a->add_key, a->request_key, a->keyctl};
  for (size_t i = 0; i < sizeof denied / sizeof denied[0]; i++) {
    if (denied[i] < 0) continue;
    emit(prog, n, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)denied[i], 0, 1));
    emit(prog, n, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_DENY));
  }
  emit(prog, n, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)a->socket, 0, 3));
  emit(prog, n, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SECCOMP_ARG0_LOW));
  emit(prog, n, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_VSOCK_NUMBER, 0, 1));
  emit(prog, n, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_DENY));
  emit(prog, n, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  prog[skip_at].jf = (uint8_t)(*n - body);
}

/* Last before exec, so that nothing above needs to pass the filter. */
static void install_seccomp(void) {
#if defined(__x86_64__)
  static const struct syscall_numbers archs[] = {
      {AUDIT_ARCH_X86_64, 41, -1, 425, 321, 246, 320, 248, 249, 250, true},
      /* i386 programs (int 0x80): socketcall could hide socket(AF_VSOCK), so it is denied whole. */
      {AUDIT_ARCH_I386, 359, 102, 425, 357, 283, -1, 286, 287, 288, false},
  };
#elif defined(__aarch64__)
  static const struct syscall_numbers archs[] = {
      {AUDIT_ARCH_AARCH64, 198, -1, 425, 280, 104, 294, 217, 218, 219, false},
      {AUDIT_ARCH_ARM, 281, -1, 425, 386, 347, 401, 309, 310, 311, false},
  };
#else
  /* No syscall table for this architecture: no filter. */
  static const struct syscall_numbers archs[1];
  if (archs[0].arch == 0) return;
#endif
  struct sock_filter prog[96];
  size_t n = 0;
  for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++) emit_arch(prog, &n, &archs[i]);
  emit(prog, &n, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_DENY));
  struct sock_fprog fprog = {.len = (unsigned short)n, .filter = prog};
  if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog, 0, 0) < 0) die_with_error("prctl PR_SET_SECCOMP");
}

/* The process that becomes PROGRAM. Nothing here may touch PID 1's state: it is a fork. */
NORETURN static void action_main(const struct options *o, int report_w) {
  inner_report_fd = report_w;
  close_inherited_fds(o->status_fd, report_w);
  reset_signals();
  /* Its own session: no controlling terminal of the caller's, and kill(-pgid) stays inside. */
  if (setsid() < 0) die_with_error("setsid");
  drop_privileges(o);
  if (o->nproc != 0) limit_processes(o->nproc);
  umask(o->caller_umask);
  /* After dropping privileges, so the directory must be usable by --uid. */
  if (chdir(o->chdir_path) < 0) die_with_error("chdir %s (--chdir)", o->chdir_path);
  install_seccomp();
  if (o->status_fd >= 0) {
    if (fcntl(o->status_fd, F_SETFD, FD_CLOEXEC) < 0) die_with_error("fcntl FD_CLOEXEC on --status-fd %d", o->status_fd);
    write_status_line(o->status_fd, "ready", "true");
  }
  if (signal(SIGPIPE, SIG_DFL) == SIG_ERR) die_with_error("signal SIGPIPE");
  execvp(o->argv[0], o->argv);
  inner_error_code = EXIT_EXEC_ERROR;
  die_with_error("execvp %s", o->argv[0]);
}

static pid_t spawn_action(const struct options *o, int report_w) {
  pid_t pid = fork();
  if (pid < 0) die_with_error("fork the action process");
  if (pid == 0) action_main(o, report_w);
  return pid;
}

/* As init of the namespace PID 1 inherits every orphan: reap them all, until the action itself
 * exits. Whatever it left running dies with PID 1. */
static int reap_until(pid_t action) {
  for (;;) {
    int status;
    pid_t r = waitpid(-1, &status, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      die_with_error("waitpid (PID 1)");
    }
    if (r == action) return status;
  }
}

/* ---- PID 1 ---------------------------------------------------------------------------------------- */

NORETURN static void pid1_main(struct options *o, int sync_r, int report_w) {
  inner_report_fd = report_w;
  set_die_reporter(inner_die);
  arm_self_destruction(sync_r);
  umask(0);
  open_mount_sources(o);
  make_mounts_private();
  pivot_into_new_root();
  apply_mount_ops(o);
  bring_up_loopback();
  set_hostname(o->hostname);
  detach_old_root();
  make_root_read_only(o);
  close_mount_sources(o);
  if (close(sync_r) < 0) die_with_error("close the sync pipe");
  int status = reap_until(spawn_action(o, report_w));
  if (WIFSIGNALED(status))
    send_record(report_w, 'S', WTERMSIG(status));
  else
    send_record(report_w, 'X', WEXITSTATUS(status));
  _exit(0);
}

/* A server that dies (even by SIGKILL) must not leave its actions running with nobody to time
 * them out. SIGTERM arrives blocked and is picked up by the wait loop like any forwarded signal,
 * which kills PID 1 and with it the namespace. Opt-in: PDEATHSIG follows the parent *thread*. */
static void die_with_parent(pid_t parent) {
  if (prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0) < 0) die_with_error("prctl PR_SET_PDEATHSIG");
  if (getppid() != parent) die("--die-with-parent: the parent is already gone");
}

int main(int argc, char **argv) {
  /* The helper's second job: removing the work folders actions leave (remove-tree.c). */
  if (argc == 2 && strcmp(argv[1], "--remove-trees") == 0) return remove_trees_main();
  struct options o;
  pid_t parent = getppid();
  set_die_reporter(outer_die);
  parse_args(argc, argv, &o); /* --help and --version end here, before anything is touched */
  check_options(&o);
  prepare_outer_signals();
  if (o.die_with_parent) die_with_parent(parent);
  join_cgroup(&o);

  int sync_pipe[2], report_pipe[2];
  if (pipe2(sync_pipe, O_CLOEXEC) < 0) die_with_error("pipe2");
  if (pipe2(report_pipe, O_CLOEXEC) < 0) die_with_error("pipe2");
  pid_t pid = clone_pid1(&o);
  if (pid == 0) {
    close(sync_pipe[1]); /* PID 1 must not hold the write end it watches for a hang-up */
    close(report_pipe[0]);
    pid1_main(&o, sync_pipe[0], report_pipe[1]);
  }
  outer_pid1 = pid;
  if (close(sync_pipe[0]) < 0 || close(report_pipe[1]) < 0) die_with_error("close pipe ends");
  if (o.userns) write_id_maps(pid, &o);
  release_pid1(sync_pipe[1]);
  int forwarded;
  int status = wait_for_pid1(pid, &forwarded);
  return report_outcome(report_pipe[0], status, forwarded);
}
