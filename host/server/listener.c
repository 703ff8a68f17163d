/*
 * The server object and its listening sockets: creation, bind/listen (with SO_REUSEPORT
 * for worker processes), accepting within max_connections, graceful stop and close.
 */
#include "server/conn.h"

#include "common/error.h"
#include "log/log.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define LISTEN_BACKLOG 4096

/* Fills `limits` with the SPEC §3 defaults. */
void luar_http_limits_default(luar_http_limits_t *limits)
{
    limits->max_body = 1024 * 1024;
    limits->max_header = 16 * 1024;
    limits->header_timeout = 10;
    limits->body_timeout = 30;
    limits->keepalive_timeout = 75;
    limits->max_connections = 10000;
}

/*
 * Allocates the server (owned by the caller until luar_http_server_close). Returns 0 or
 * LUAR_ENOMEM.
 */
int luar_http_server_new(uv_loop_t *loop, const luar_http_limits_t *limits,
                         luar_http_handler_fn handler, void *udata, luar_http_server_t **out)
{
    *out = NULL;
    luar_http_server_t *srv = calloc(1, sizeof *srv);
    if (srv == NULL)
        return LUAR_ENOMEM;
    srv->loop = loop;
    if (limits)
        srv->limits = *limits;
    else
        luar_http_limits_default(&srv->limits);
    srv->handler = handler;
    srv->udata = udata;
    int rc = luar_http_response_init();
    if (rc == LUAR_ENOMEM) {
        free(srv);
        return rc;
    }
    *out = srv;
    return 0;
}

/* Parses "host:port", "[v6]:port" or ":port" into `ss`. Returns 0 or LUAR_EINVAL. */
static int parse_addr(const char *addr, struct sockaddr_storage *ss)
{
    char host[128];
    const char *colon = strrchr(addr, ':');
    if (colon == NULL)
        return LUAR_EINVAL;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || port < 0 || port > 65535)
        return LUAR_EINVAL;
    size_t hlen = (size_t)(colon - addr);
    if (hlen >= sizeof host)
        return LUAR_EINVAL;
    memcpy(host, addr, hlen);
    host[hlen] = '\0';
    memset(ss, 0, sizeof *ss);
    if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
        host[hlen - 1] = '\0';
        if (uv_ip6_addr(host + 1, (int)port, (struct sockaddr_in6 *)ss) != 0)
            return LUAR_EINVAL;
        return 0;
    }
    if (uv_ip4_addr(hlen ? host : "0.0.0.0", (int)port, (struct sockaddr_in *)ss) != 0)
        return LUAR_EINVAL;
    return 0;
}

static void on_refused_close(uv_handle_t *handle)
{
    luar_http_server_t *srv = handle->data;
    free(handle);
    luar_http_server_handle_closed(srv);
}

/* Accepts a connection past max_connections and closes it at once. */
static void refuse(luar_http_listener_t *l)
{
    luar_http_server_t *srv = l->srv;
    uv_tcp_t *tcp = malloc(sizeof *tcp);
    if (tcp == NULL)
        return;
    uv_tcp_init(srv->loop, tcp);
    tcp->data = srv;
    srv->handles++;
    uv_accept((uv_stream_t *)&l->tcp, (uv_stream_t *)tcp);
    uv_close((uv_handle_t *)tcp, on_refused_close);
}

static void on_connection(uv_stream_t *server, int status)
{
    luar_http_listener_t *l = server->data;
    luar_http_server_t *srv = l->srv;
    if (status < 0 || srv->closing || srv->stopping)
        return;
    if (srv->limits.max_connections > 0 && srv->nconns >= (size_t)srv->limits.max_connections) {
        refuse(l);
        return;
    }
    if (luar_http_conn_accept(l) == LUAR_ENOMEM)
        refuse(l);
}

static void on_listener_close(uv_handle_t *handle)
{
    luar_http_listener_t *l = handle->data;
    luar_http_server_handle_closed(l->srv);
}

static void listener_close(luar_http_listener_t *l)
{
    if (!l->open)
        return;
    l->open = 0;
    uv_close((uv_handle_t *)&l->tcp, on_listener_close);
}

/* Binds and listens; see http.h. The strings of `lc` are not kept. */
int luar_http_server_listen(luar_http_server_t *srv, const luar_listen_t *lc, int reuseport)
{
    struct sockaddr_storage ss;
    if (srv->nlisteners >= LUAR_HTTP_MAX_LISTENERS || lc->addr == NULL ||
        parse_addr(lc->addr, &ss) < 0)
        return LUAR_EINVAL;
    SSL_CTX *tls = NULL;
    if (lc->cert || lc->key) {
        if (lc->cert == NULL || lc->key == NULL) {
            luar_logf(LUAR_LOG_ERROR, "tls: %s needs both cert and key", lc->addr);
            return LUAR_ETLS;
        }
        int rc = luar_tls_ctx_new(lc->cert, lc->key, lc->client_ca, &tls);
        if (rc < 0)
            return rc;
    }
    luar_http_listener_t *l = &srv->listeners[srv->nlisteners];
    memset(l, 0, sizeof *l);
    l->srv = srv;
    l->tls = tls;
    if (uv_tcp_init_ex(srv->loop, &l->tcp, ss.ss_family) != 0) {
        SSL_CTX_free(tls);
        l->tls = NULL;
        return LUAR_EIO;
    }
    l->tcp.data = l;
    l->open = 1;
    srv->nlisteners++;
    srv->handles++;
    int rc = 0;
    uv_os_fd_t fd;
    if (reuseport && uv_fileno((uv_handle_t *)&l->tcp, &fd) == 0) {
        int one = 1;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
            rc = LUAR_EIO;
    }
    if (rc == 0 && uv_tcp_bind(&l->tcp, (const struct sockaddr *)&ss, 0) != 0)
        rc = LUAR_EIO;
    if (rc == 0 && uv_listen((uv_stream_t *)&l->tcp, LISTEN_BACKLOG, on_connection) != 0)
        rc = LUAR_EIO;
    if (rc == 0) {
        struct sockaddr_storage bound;
        int len = sizeof bound;
        if (uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&bound, &len) == 0)
            l->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
        return 0;
    }
    luar_logf(LUAR_LOG_ERROR, "http: cannot listen on %s", lc->addr);
    /* The slot stays used until the handle closes; the TLS context is freed with it. */
    listener_close(l);
    return rc;
}

/* Returns the port of the first listener (0 when none). */
int luar_http_server_port(const luar_http_server_t *srv)
{
    return srv->nlisteners ? srv->listeners[0].port : 0;
}

/* Closes the listeners and the idle connections; busy ones close after their response. */
void luar_http_server_stop_accepting(luar_http_server_t *srv)
{
    if (srv->stopping)
        return;
    srv->stopping = 1;
    for (size_t i = 0; i < srv->nlisteners; i++)
        listener_close(&srv->listeners[i]);
    luar_http_conn_t *c = srv->conns;
    while (c) {
        luar_http_conn_t *next = c->next;
        luar_http_conn_stop(c);
        c = next;
    }
}

/* Returns the number of requests waiting for luar_http_respond. */
size_t luar_http_server_inflight(const luar_http_server_t *srv)
{
    return srv->inflight;
}

/* Returns the number of open connections. */
size_t luar_http_server_connections(const luar_http_server_t *srv)
{
    return srv->nconns;
}

static void server_free(luar_http_server_t *srv)
{
    void (*done)(void *) = srv->done;
    void *arg = srv->done_arg;
    for (size_t i = 0; i < srv->nlisteners; i++)
        SSL_CTX_free(srv->listeners[i].tls);
    free(srv);
    if (done)
        done(arg);
}

/* Counts one closed handle; frees the server after the last one when it is closing. */
void luar_http_server_handle_closed(luar_http_server_t *srv)
{
    srv->handles--;
    if (srv->closing && srv->handles == 0)
        server_free(srv);
}

/* Closes everything; the server is freed (and `done` called) once its handles closed. */
void luar_http_server_close(luar_http_server_t *srv, void (*done)(void *), void *arg)
{
    if (srv == NULL || srv->closing)
        return;
    srv->closing = 1;
    srv->stopping = 1;
    srv->done = done;
    srv->done_arg = arg;
    for (size_t i = 0; i < srv->nlisteners; i++)
        listener_close(&srv->listeners[i]);
    while (srv->conns)
        luar_http_conn_close(srv->conns);
    if (srv->handles == 0)
        server_free(srv);
}
