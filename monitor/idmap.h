/*
 * berth-monitor: user namespaces and idmapped mounts for a container in a user namespace
 * (PROTOCOL.md "User namespaces"). The image's layers stay shared and owned by host ids
 * on disk; each container sees them through mounts that shift their ids into its range.
 */
#ifndef BERTH_IDMAP_H
#define BERTH_IDMAP_H

#include <stdint.h>

/* Container ids 0..count-1 are host ids uid.. and gid.. */
struct idmap {
    uint32_t uid, gid, count;
};

/* "UID:GID:COUNT" into m (every id of the range a valid host id); -1 if malformed. */
int idmap_parse(const char *s, struct idmap *m);

/* A user namespace with mapping m, made by a short-lived child (unshare(CLONE_NEWUSER);
 * this process writes its uid_map and gid_map and opens its /proc/PID/ns/user). Returns
 * the namespace's fd (close-on-exec), or -1 with errno set. */
int idmap_userns(const struct idmap *m);

/* A detached copy (open_tree(OPEN_TREE_CLONE)) of the directory dir, read-only, nodev, and
 * idmapped through the user namespace userns_fd. Returns its fd (close-on-exec), or -1
 * with errno set. The mount goes with its last reference: closing the fd, unless it was
 * attached (move_mount) or an overlay took a private copy of it as a layer. */
int idmap_tree(const char *dir, int userns_fd);

/* `userns-create` and `netns-create` (PROTOCOL.md "User namespaces"): the namespaces a
 * container in a user namespace runs in, kept by bind mounts as `ip netns` keeps one. */
int cmd_userns_create(int argc, char **argv);
int cmd_netns_create(int argc, char **argv);

#endif
