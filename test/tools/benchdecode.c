/* benchdecode: how fast the watch decoder turns a stream of Node events
 * into compact cached nodes, and what a cached node costs in memory.
 * Prints a small table; part of make bench. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/buf.h"
#include "common/intern.h"
#include "common/map.h"
#include "kube/node.h"
#include "kube/watch.h"

struct sink {
    struct gm_map nodes;
    unsigned long events;
};

static int on_event(void *data, enum gm_watch_type t, json_object *obj)
{
    struct sink *s = data;
    struct gm_node *n = NULL;
    (void)t;
    if (gm_node_from_json(obj, &n) == 0) {
        void *old = NULL;
        gm_map_put(&s->nodes, n->name, n, &old);
        gm_node_free(old);
    }
    s->events++;
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    const char *fixture =
        argc > 1 ? argv[1] : "test/fixtures/nodes/gpu-node.json";
    int n_nodes = argc > 2 ? atoi(argv[2]) : 5000;
    int rounds = argc > 3 ? atoi(argv[3]) : 4;
    FILE *f = fopen(fixture, "rb");
    char node[65536];
    size_t len;

    if (f == NULL) {
        perror(fixture);
        return 1;
    }
    len = fread(node, 1, sizeof(node) - 1, f);
    fclose(f);
    node[len] = '\0';
    while (len > 0 && (node[len - 1] == '\n' || node[len - 1] == ' '))
        node[--len] = '\0';
    /* A stream of MODIFIED events for n_nodes distinct nodes, rounds times:
     * each event is a full Node, as the apiserver sends them. */
    json_object *o = json_tokener_parse(node);
    json_object *meta;
    json_object_object_get_ex(o, "metadata", &meta);
    struct gm_buf stream;
    gm_buf_init(&stream, (size_t)1 << 31);
    char name[32], rv[32];
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < n_nodes; i++) {
            snprintf(name, sizeof(name), "gpu-%05d", i);
            snprintf(rv, sizeof(rv), "%d", r * n_nodes + i + 1);
            json_object_object_add(meta, "name", json_object_new_string(name));
            json_object_object_add(meta, "resourceVersion",
                                   json_object_new_string(rv));
            gm_buf_appendf(
                &stream, "{\"type\":\"MODIFIED\",\"object\":%s}\n",
                json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
        }
    }
    json_object_put(o);

    struct sink s = {.events = 0};
    gm_map_init(&s.nodes);
    struct gm_watch_decoder *d;
    gm_watch_decoder_new(1 << 24, on_event, &s, &d);
    double t0 = now_s();
    /* Feed in 16 KiB chunks, as a socket delivers them. */
    for (size_t off = 0; off < stream.len; off += 16384) {
        size_t n = stream.len - off < 16384 ? stream.len - off : 16384;
        if (gm_watch_decoder_feed(d, stream.data + off, n) != 0) {
            fprintf(stderr, "decode error\n");
            return 1;
        }
    }
    double dt = now_s() - t0;
    size_t bytes = 0;
    for (struct gm_map_entry *e = gm_map_first(&s.nodes); e;
         e = gm_map_next(&s.nodes, e))
        bytes += gm_node_footprint(e->value) + sizeof(*e) + strlen(e->key) + 1;
    bytes += gm_intern_bytes();
    printf("| measure | value | target |\n|---|---|---|\n");
    printf("| Node events decoded into the cache | %.0f events/s (%lu events, "
           "%.1f MiB, %.2f s) | >= 20,000 events/s |\n",
           (double)s.events / dt, s.events, (double)stream.len / 1048576.0, dt);
    printf("| decode throughput | %.1f MiB/s | |\n",
           (double)stream.len / 1048576.0 / dt);
    printf("| bytes per cached Node (node + map entry + share of interned "
           "strings) | %zu | < 2048 |\n",
           s.nodes.len ? bytes / s.nodes.len : 0);
    gm_watch_decoder_free(d);
    for (struct gm_map_entry *e = gm_map_first(&s.nodes); e;
         e = gm_map_next(&s.nodes, e))
        gm_node_free(e->value);
    gm_map_free(&s.nodes);
    gm_buf_free(&stream);
    return 0;
}
