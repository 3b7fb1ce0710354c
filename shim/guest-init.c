/* /init of the VM guest's initramfs (PID 1).
 *
 * The initramfs is the kernel's rootfs, which pivot_root(2) refuses to move away from, so the action
 * sandbox could not pivot into its own root. Like switch_root, this program first moves the files
 * to a tmpfs and makes that the root (deleting the originals, so the RAM is not spent twice).
 *
 * A Bun executable cannot start before /proc is mounted, and Bun cannot reap processes it did not
 * start without racing its own child bookkeeping. So this program mounts /proc, /sys and /dev,
 * starts `/actiond --guest-init` as its child, and stays PID 1: it reaps every orphan (so no zombie
 * is ever left), and when --guest-init exits it syncs the disks and powers the VM off. The kernel
 * command line's actiond.off=reboot makes it reboot instead (QEMU started with -no-reboot exits on a
 * reboot, which works without ACPI). */
#include <dirent.h>
#include <stdbool.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define NEW_ROOT "/.root"

static void say(const char *fmt, const char *arg) {
  fprintf(stderr, "guest-init: ");
  fprintf(stderr, fmt, arg);
  fputc('\n', stderr);
}

static void mount_or_say(const char *source, const char *target, const char *type, unsigned long flags) {
  mkdir(target, 0755);
  if (mount(source, target, type, flags, NULL) != 0 && errno != EBUSY) say("cannot mount %s", target);
}

/* True when the kernel command line holds `word` as a whole argument. */
static int cmdline_has(const char *word) {
  char buf[4096] = {0};
  int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  for (char *tok = strtok(buf, " \n"); tok; tok = strtok(NULL, " \n"))
    if (strcmp(tok, word) == 0) return 1;
  return 0;
}

/* Copies everything under `from` to `to` (same layout and modes); false if anything failed. */
static bool copy_tree(const char *from, const char *to) {
  DIR *dir = opendir(from);
  if (!dir) return false;
  bool ok = true;
  struct dirent *e;
  while (ok && (e = readdir(dir))) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    char src[4096], dst[4096];
    snprintf(src, sizeof src, "%s/%s", strcmp(from, "/") == 0 ? "" : from, e->d_name);
    snprintf(dst, sizeof dst, "%s/%s", to, e->d_name);
    if (strcmp(src, NEW_ROOT) == 0) continue;
    struct stat st;
    if (lstat(src, &st) != 0) {
      ok = false;
    } else if (S_ISDIR(st.st_mode)) {
      ok = mkdir(dst, st.st_mode & 07777) == 0 && copy_tree(src, dst);
    } else if (S_ISLNK(st.st_mode)) {
      char target[4096];
      ssize_t n = readlink(src, target, sizeof target - 1);
      ok = n >= 0;
      if (ok) {
        target[n] = '\0';
        ok = symlink(target, dst) == 0;
      }
    } else if (S_ISREG(st.st_mode)) {
      int in = open(src, O_RDONLY | O_CLOEXEC), out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, st.st_mode & 07777);
      ok = in >= 0 && out >= 0;
      char buf[1 << 16];
      ssize_t n;
      while (ok && (n = read(in, buf, sizeof buf)) != 0) {
        if (n < 0 && errno == EINTR) continue;
        ok = n > 0;
        for (ssize_t done = 0; ok && done < n;) {
          ssize_t w = write(out, buf + done, (size_t)(n - done));
          if (w < 0 && errno == EINTR) continue;
          ok = w > 0;
          done += w;
        }
      }
      if (in >= 0) close(in);
      if (out >= 0) close(out);
    }
    if (!ok) say("cannot copy %s to the new root", src);
  }
  closedir(dir);
  return ok;
}

/* Deletes everything under `dir` but NEW_ROOT (the initramfs's files, once copied). */
static void remove_tree(const char *path) {
  DIR *dir = opendir(path);
  if (!dir) return;
  struct dirent *e;
  while ((e = readdir(dir))) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    char child[4096];
    snprintf(child, sizeof child, "%s/%s", strcmp(path, "/") == 0 ? "" : path, e->d_name);
    if (strcmp(child, NEW_ROOT) == 0) continue;
    struct stat st;
    if (lstat(child, &st) == 0 && S_ISDIR(st.st_mode)) {
      remove_tree(child);
      rmdir(child);
    } else {
      unlink(child);
    }
  }
  closedir(dir);
}

/* Makes a tmpfs holding the initramfs's files the root. Everything is copied first and the
 * originals deleted only then, so a failed copy leaves the initramfs as it was. */
static void leave_rootfs(void) {
  mkdir(NEW_ROOT, 0755);
  if (mount("tmpfs", NEW_ROOT, "tmpfs", 0, "mode=0755") != 0) {
    say("cannot mount a tmpfs for the root: %s (the sandbox will not start)", strerror(errno));
    return;
  }
  if (!copy_tree("/", NEW_ROOT)) {
    say("%s", "staying on the initramfs (the sandbox will not start)");
    umount2(NEW_ROOT, MNT_DETACH);
    return;
  }
  remove_tree("/");
  if (chdir(NEW_ROOT) != 0 || mount(".", "/", NULL, MS_MOVE, NULL) != 0 || chroot(".") != 0 || chdir("/") != 0) {
    say("cannot switch to the new root: %s", strerror(errno));
  }
}

/* Whatever --guest-init left running is stopped, and the disks unmounted, before the VM ends: a
 * crashed supervisor must not leave the CAS disk mounted read-write. */
static void stop_everything(void) {
  kill(-1, SIGTERM);
  for (int i = 0; i < 50; i++) {
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    if (kill(-1, 0) != 0 && errno == ESRCH) break;
    usleep(100 * 1000);
  }
  kill(-1, SIGKILL);
  while (wait(NULL) > 0) {
  }
  sync();
  umount2("/runtimes", 0);
  if (umount2("/cas", 0) != 0) mount(NULL, "/cas", NULL, MS_REMOUNT | MS_RDONLY, NULL);
}

int main(void) {
  if (getpid() != 1) {
    fprintf(stderr, "guest-init: this is the VM guest's /init; it only runs as PID 1\n");
    return 1;
  }
  umask(0); /* the initramfs's modes are copied as they are */
  leave_rootfs();
  umask(022);
  mount_or_say("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC);
  mount_or_say("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC);
  mount_or_say("devtmpfs", "/dev", "devtmpfs", MS_NOSUID);

  pid_t child = fork();
  if (child == 0) {
    char *argv[] = {"/actiond", "--guest-init", NULL};
    char *envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/", NULL};
    execve(argv[0], argv, envp);
    say("cannot start /actiond: %s", strerror(errno));
    _exit(127);
  }
  if (child < 0) say("fork: %s", strerror(errno));

  /* Reap everything; stop once --guest-init itself is gone. */
  for (;;) {
    int status;
    pid_t pid = wait(&status);
    if (pid < 0 && errno == EINTR) continue;
    if (pid < 0 || pid == child) break;
  }
  stop_everything();
  int rebooting = cmdline_has("actiond.off=reboot");
  say("%s", rebooting ? "rebooting (the host stops the VM)" : "powering off");
  reboot(rebooting ? RB_AUTOBOOT : RB_POWER_OFF);
  for (;;) pause();
}
