/* Removing a directory tree an action left, however deep: one directory open at a time (openat,
 * unlinkat, ".." to come back up), a stack of names on the heap, and no path ever rebuilt from the
 * top, so a chain of 20,000 nested directories costs 20,000 steps and a few descriptors, where
 * path-based removal hits ENAMETOOLONG and spins. Directories the action made unwritable or
 * unsearchable are opened up first (they are ours, or we are root). Run as a long-lived helper
 * (actiond-sandbox --remove-trees) so the server neither blocks its event loop nor spawns a
 * process per work folder. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "remove-tree.h"
#include "utils.h"

#define DIR_FLAGS (O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)

struct names {
  char **items;
  size_t len, cap;
};

static void push(struct names *s, const char *name) {
  if (s->len == s->cap) {
    s->cap = s->cap ? s->cap * 2 : 64;
    s->items = xrealloc(s->items, s->cap * sizeof *s->items);
  }
  s->items[s->len++] = xstrdup(name);
}

/* Removes every entry of the directory open at fd, descending as needed; on success fd is the
 * top directory again, empty. Returns 0, or -1 with errno and *what naming the failed step. */
static int empty_directory(int *fd, struct names *stack, const char **what) {
  for (;;) {
    /* We may delete in a directory only when we may write and search it (a failure shows below). */
    if (fchmod(*fd, 0700) < 0 && errno != EPERM) errno = 0;
    int listing = dup(*fd);
    DIR *d = listing < 0 ? NULL : fdopendir(listing);
    if (!d) {
      if (listing >= 0) close(listing);
      *what = "opendir";
      return -1;
    }
    bool descended = false;
    struct dirent *e;
    /* readdir says "no more" and "failed" both with NULL; only errno tells them apart. */
    while ((errno = 0, e = readdir(d))) {
      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
      if (unlinkat(*fd, e->d_name, 0) == 0 || errno == ENOENT) continue;
      if (errno != EISDIR && errno != EPERM) {
        *what = "unlink";
        closedir(d);
        return -1;
      }
      if (unlinkat(*fd, e->d_name, AT_REMOVEDIR) == 0 || errno == ENOENT) continue;
      if (errno != ENOTEMPTY && errno != EEXIST) {
        *what = "rmdir";
        closedir(d);
        return -1;
      }
      /* Opened up first, or an unsearchable directory could not be entered (a failure shows in open). */
      if (fchmodat(*fd, e->d_name, 0700, 0) < 0) errno = 0;
      int child = openat(*fd, e->d_name, DIR_FLAGS);
      if (child < 0) {
        *what = "open";
        closedir(d);
        return -1;
      }
      push(stack, e->d_name);
      close(*fd);
      *fd = child;
      descended = true;
      break;
    }
    int read_error = errno;
    closedir(d);
    if (descended) continue;
    if (read_error) {
      errno = read_error;
      *what = "readdir";
      return -1;
    }
    if (stack->len == 0) return 0;
    /* This one is empty: go back up and remove it there. */
    int parent = openat(*fd, "..", DIR_FLAGS & ~O_NOFOLLOW);
    if (parent < 0) {
      *what = "open ..";
      return -1;
    }
    close(*fd);
    *fd = parent;
    char *name = stack->items[--stack->len];
    int rc = unlinkat(*fd, name, AT_REMOVEDIR);
    free(name);
    if (rc < 0 && errno != ENOENT) {
      *what = "rmdir";
      return -1;
    }
  }
}

/* Removes path (a tree, a file, or nothing). Returns NULL, or a message saying what failed. */
static char *remove_tree(const char *path) {
  int fd = open(path, DIR_FLAGS);
  if (fd < 0) {
    if (errno == ENOENT) return NULL;
    if ((errno == ENOTDIR || errno == ELOOP) && unlink(path) == 0) return NULL;
    return xasprintf("open %s: %s", path, strerror(errno));
  }
  struct names stack = {0};
  const char *what = "";
  int rc = empty_directory(&fd, &stack, &what);
  int saved = errno;
  char *message = NULL;
  if (rc < 0) {
    message = xasprintf("%s in %s (%zu levels down): %s", what, path, stack.len, strerror(saved));
  }
  for (size_t i = 0; i < stack.len; i++) free(stack.items[i]);
  free(stack.items);
  close(fd);
  if (!message && rmdir(path) < 0 && errno != ENOENT) message = xasprintf("rmdir %s: %s", path, strerror(errno));
  return message;
}

int remove_trees_main(void) {
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  while ((n = getdelim(&line, &cap, '\0', stdin)) > 0) {
    if (line[n - 1] == '\0') n--;
    line[n] = '\0';
    char *message = remove_tree(line);
    if (message) {
      /* One line: the message must not break the protocol. */
      for (char *p = message; *p; p++) if (*p == '\n') *p = ' ';
      printf("error %s\n", message);
      free(message);
    } else {
      fputs("ok\n", stdout);
    }
    fflush(stdout);
  }
  free(line);
  return 0;
}
