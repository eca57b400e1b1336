/* YAML to json-c: one document parsed with libyaml into the same tree JSON
 * would give, so every config (controller config, policy files, mig-parted
 * layouts) is read with the same json-c accessors. Plain scalars get YAML
 * 1.2 core types (null, booleans, integers, floats); quoted ones stay
 * strings. Anchors and aliases are resolved. */
#ifndef GM_YAML_H
#define GM_YAML_H

#include <json-c/json.h>
#include <stddef.h>
#include <yaml.h>

/* On success *out is the caller's (json_object_put). On a syntax error
 * returns -EINVAL and writes "line L, column C: problem" to err. An empty
 * document gives a NULL *out and 0. */
int gm_yaml_parse(const char *text, size_t len, json_object **out, char *err,
                  size_t err_len);

/* The same, reading only the stream's first document, as go-yaml v2 (the
 * NVIDIA device plugin's reader) does: what follows is not looked at. */
int gm_yaml_parse_first(const char *text, size_t len, json_object **out,
                        char *err, size_t err_len);

/* A node of a document libyaml has loaded (yaml_parser_load), typed as
 * above; *out is the caller's, NULL for a null node. -E2BIG when the node
 * nests deeper than 64 or, aliases expanded, holds more than 100,000
 * nodes; -EINVAL for a key that is not a scalar; -ENOMEM. For documents
 * read with the document API for its line numbers (kubeconfig) whose
 * subtrees are passed on as JSON. */
int gm_yaml_node_json(yaml_document_t *d, yaml_node_t *n, json_object **out);

/* Reads and parses a file ("-": standard input); errors are prefixed
 * with the path ("stdin"). */
int gm_yaml_parse_file(const char *path, json_object **out, char *err,
                       size_t err_len);

#endif
