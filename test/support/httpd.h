/* A tiny HTTP/1.1 server for tests, on the test's own libuv loop and on
 * 127.0.0.1 only. A handler sees each request and answers whole, streams
 * chunks, closes the connection, or says nothing (a dead peer). */
#ifndef GM_TEST_HTTPD_H
#define GM_TEST_HTTPD_H

#include <stddef.h>
#include <uv.h>

struct th_server;
struct th_conn;

struct th_req {
    char method[16];
    char path[2048];
    char authorization[512];
    char content_type[128];
    char user_agent[128];
    char *body; /* NUL-terminated; owned by the server */
    size_t body_len;
};

typedef void (*th_handler)(void *ud, const struct th_req *req,
                           struct th_conn *c);

int th_start(uv_loop_t *loop, th_handler h, void *ud, struct th_server **out);
/* On a given port (0: any), for a client whose address is fixed before
 * the loop exists (a kubeconfig); th_free_port finds one, or -1. */
int th_start_at(uv_loop_t *loop, int port, th_handler h, void *ud,
                struct th_server **out);
int th_free_port(void);
int th_port(const struct th_server *s);
/* "http://127.0.0.1:PORT" in a static buffer per server. */
const char *th_url(const struct th_server *s);
/* Closes the listener and every connection. */
void th_stop(struct th_server *s);
/* Requests seen so far. */
int th_count(const struct th_server *s);

/* extra_headers: "Name: value\r\n..." or NULL. */
void th_respond(struct th_conn *c, int status, const char *extra_headers,
                const char *body);
void th_stream_start(struct th_conn *c, int status);
void th_stream_write(struct th_conn *c, const char *data, size_t len);
void th_stream_end(struct th_conn *c);
void th_close(struct th_conn *c);

/* Runs the loop until *flag is non-zero or ms pass; returns *flag. */
int th_run_until(uv_loop_t *loop, const int *flag, int ms);

#endif
