/* Removing what actions leave behind, by file descriptor. */
#ifndef ACTIOND_SHIM_REMOVE_TREE_H
#define ACTIOND_SHIM_REMOVE_TREE_H

/* actiond-sandbox --remove-trees: reads NUL-terminated paths on stdin, removes each tree and
 * answers one line per path on stdout ("ok" or "error MESSAGE"), until stdin closes. */
int remove_trees_main(void);

#endif
