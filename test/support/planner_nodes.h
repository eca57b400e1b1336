/* Test helpers for the planner: nodes built by hand (no node.c needed) and
 * policies decoded from JSON text. */
#ifndef GM_TEST_PLANNER_NODES_H
#define GM_TEST_PLANNER_NODES_H

#include "kube/node.h"
#include "planner/policy.h"

/* A Ready, schedulable GPU node with labels given as "key=value" strings,
 * ending with NULL; nvidia.com/gpu.present=true is added unless given
 * (give it "false" for a CPU node). Labels are sorted as node.h promises. Free
 * with gmt_node_free (not gm_node_free: the strings here are not interned). */
struct gm_node *gmt_node(const char *name, ...);
void gmt_node_free(struct gm_node *n);
/* Adds an allocatable resource (the name is copied; freed by
 * gmt_node_free). */
void gmt_alloc(struct gm_node *n, const char *resource, int64_t count);
/* Replaces an owned annotation field (ann_switch, ...) with a copy. */
void gmt_set(char **field, const char *value);

/* Decodes a policy from JSON text; fails the test unless the result is
 * expect_err (0 or -EINVAL). */
struct gm_policy *gmt_policy(const char *json, int expect_err);

#endif
