/*
 * The local control socket (<data>/luar.sock): how `luar reload` reaches a running
 * instance and learns the outcome. One request line in, one JSON line out, then close.
 */
#include "app/app.h"
#include "common/error.h"
#include "log/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <poll.h>
#include <unistd.h>

#define MAX_REQUEST 256

struct luar_control {
    uv_pipe_t pipe;
    char *path;
    luar_reload_fn reload;
    void *ctx;
};

typedef struct client {
    uv_pipe_t pipe;
    luar_control_t *ctl;
    char in[MAX_REQUEST];
    size_t in_len;
    uv_write_t wr;
    char *out;
} client_t;

static void client_closed(uv_handle_t *h)
{
    client_t *c = h->data;
    free(c->out);
    free(c);
}

static void on_written(uv_write_t *wr, int status)
{
    client_t *c = wr->data;
    (void)status;
    uv_close((uv_handle_t *)&c->pipe, client_closed);
}

static void reply(client_t *c, luar_buf_t *out)
{
    luar_buf_putc(out, '\n');
    size_t len;
    c->out = luar_buf_detach(out, &len);
    uv_buf_t b = uv_buf_init(c->out, (unsigned)len);
    c->wr.data = c;
    if (uv_write(&c->wr, (uv_stream_t *)&c->pipe, &b, 1, on_written))
        uv_close((uv_handle_t *)&c->pipe, client_closed);
}

/* Answers a reload request once the reload has completed (possibly much later). */
static void reload_done(void *arg, int rc, const char *err)
{
    client_t *c = arg;
    luar_buf_t out;
    luar_buf_init(&out, 0);
    if (rc == 0) {
        luar_buf_puts(&out, "{\"ok\":true}");
    } else {
        luar_buf_puts(&out, "{\"ok\":false,\"error\":");
        err = err ? err : luar_strerror(rc);
        luar_buf_append_json_string(&out, err, strlen(err));
        luar_buf_putc(&out, '}');
    }
    reply(c, &out);
}

static void handle(client_t *c, const char *cmd)
{
    luar_buf_t out;
    luar_buf_init(&out, 0);
    if (strcmp(cmd, "reload") == 0) {
        c->ctl->reload(c->ctl->ctx, reload_done, c);
        return;
    } else if (strcmp(cmd, "ping") == 0) {
        luar_buf_appendf(&out, "{\"ok\":true,\"pid\":%d}", (int)getpid());
    } else {
        luar_buf_puts(&out, "{\"ok\":false,\"error\":\"unknown command\"}");
    }
    reply(c, &out);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    client_t *c = h->data;
    (void)suggested;
    buf->base = c->in + c->in_len;
    buf->len = sizeof c->in - c->in_len - 1;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    client_t *c = s->data;
    (void)buf;
    if (n < 0) {
        uv_close((uv_handle_t *)s, client_closed);
        return;
    }
    c->in_len += (size_t)n;
    c->in[c->in_len] = '\0';
    char *nl = strchr(c->in, '\n');
    if (nl == NULL && c->in_len < sizeof c->in - 1)
        return;
    uv_read_stop(s);
    if (nl)
        *nl = '\0';
    handle(c, c->in);
}

static void on_connection(uv_stream_t *server, int status)
{
    luar_control_t *ctl = server->data;
    if (status < 0)
        return;
    client_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return;
    c->ctl = ctl;
    uv_pipe_init(server->loop, &c->pipe, 0);
    c->pipe.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->pipe) ||
        uv_read_start((uv_stream_t *)&c->pipe, alloc_cb, on_read))
        uv_close((uv_handle_t *)&c->pipe, client_closed);
}

/* Nonzero when something answers on the socket at `path`. */
static int socket_alive(const char *path)
{
    luar_buf_t out;
    luar_buf_init(&out, 0);
    int rc = luar_control_request(path, "ping", &out);
    luar_buf_free(&out);
    return rc == 0;
}

int luar_control_open(uv_loop_t *loop, const char *path, luar_reload_fn reload, void *ctx,
                      luar_control_t **out)
{
    struct stat st;
    if (stat(path, &st) == 0) {
        if (socket_alive(path))
            return LUAR_EEXISTS;
        unlink(path);
    }
    luar_control_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return LUAR_ENOMEM;
    c->path = strdup(path);
    c->reload = reload;
    c->ctx = ctx;
    uv_pipe_init(loop, &c->pipe, 0);
    c->pipe.data = c;
    mode_t old = umask(0077);
    int rc = uv_pipe_bind(&c->pipe, path);
    umask(old);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&c->pipe, 16, on_connection);
    if (rc) {
        luar_control_close(c);
        return LUAR_EIO;
    }
    *out = c;
    return 0;
}

static void control_closed(uv_handle_t *h)
{
    luar_control_t *c = h->data;
    free(c->path);
    free(c);
}

void luar_control_close(luar_control_t *c)
{
    if (c == NULL)
        return;
    unlink(c->path);
    uv_close((uv_handle_t *)&c->pipe, control_closed);
}

int luar_control_request(const char *path, const char *command, luar_buf_t *out)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa.sun_path) {
        luar_buf_appendf(out, "control socket path too long: %s", path);
        return LUAR_EIO;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        luar_buf_appendf(out, "no running instance answers on %s (%s)", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return LUAR_EIO;
    }
    char line[MAX_REQUEST];
    int n = snprintf(line, sizeof line, "%s\n", command);
    if (write(fd, line, (size_t)n) != n) {
        luar_buf_appendf(out, "cannot write to %s (%s)", path, strerror(errno));
        close(fd);
        return LUAR_EIO;
    }
    /* A reload loads every script; allow it a generous minute. */
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = poll(&p, 1, 60000);
        if (pr <= 0) {
            luar_buf_appendf(out, "no answer from %s", path);
            close(fd);
            return LUAR_EIO;
        }
        char chunk[4096];
        ssize_t r = read(fd, chunk, sizeof chunk);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        luar_buf_append(out, chunk, (size_t)r);
    }
    close(fd);
    if (out->len && out->data[out->len - 1] == '\n')
        out->data[--out->len] = '\0';
    return 0;
}

/* ---- the non-blocking client --------------------------------------------------------- */

typedef struct async_req {
    uv_pipe_t pipe;
    uv_connect_t connect;
    uv_write_t wr;
    char line[MAX_REQUEST];
    luar_buf_t answer;
    luar_control_answer_fn cb;
    void *arg;
    int rc;
    char why[160];
} async_req_t;

static void async_closed(uv_handle_t *h)
{
    async_req_t *r = h->data;
    if (r->rc == 0 && r->answer.len && r->answer.data[r->answer.len - 1] == '\n')
        r->answer.data[--r->answer.len] = '\0';
    if (r->rc == 0 && r->answer.data == NULL) {
        r->rc = LUAR_EIO;
        snprintf(r->why, sizeof r->why, "the instance closed the control socket unanswered");
    }
    r->cb(r->arg, r->rc, r->rc ? r->why : r->answer.data);
    luar_buf_free(&r->answer);
    free(r);
}

static void async_fail(async_req_t *r, const char *what, int status)
{
    r->rc = LUAR_EIO;
    snprintf(r->why, sizeof r->why, "control socket: %s: %s", what, uv_strerror(status));
    if (!uv_is_closing((uv_handle_t *)&r->pipe))
        uv_close((uv_handle_t *)&r->pipe, async_closed);
}

static void async_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static char chunk[4096]; /* loop thread only; consumed by on_async_read at once */
    (void)h;
    (void)suggested;
    buf->base = chunk;
    buf->len = sizeof chunk;
}

static void on_async_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    async_req_t *r = s->data;
    if (n == UV_EOF) {
        uv_close((uv_handle_t *)&r->pipe, async_closed);
        return;
    }
    if (n < 0) {
        async_fail(r, "read", (int)n);
        return;
    }
    if (luar_buf_append(&r->answer, buf->base, (size_t)n)) {
        async_fail(r, "answer", UV_ENOBUFS);
        return;
    }
}

static void on_async_written(uv_write_t *wr, int status)
{
    async_req_t *r = wr->data;
    if (status < 0)
        async_fail(r, "write", status);
}

static void on_async_connect(uv_connect_t *cr, int status)
{
    async_req_t *r = cr->data;
    if (status < 0) {
        async_fail(r, "connect", status);
        return;
    }
    uv_buf_t b = uv_buf_init(r->line, (unsigned)strlen(r->line));
    r->wr.data = r;
    int rc = uv_write(&r->wr, (uv_stream_t *)&r->pipe, &b, 1, on_async_written);
    if (rc == 0)
        rc = uv_read_start((uv_stream_t *)&r->pipe, async_alloc, on_async_read);
    if (rc)
        async_fail(r, "write", rc);
}

int luar_control_request_async(uv_loop_t *loop, const char *path, const char *command,
                               luar_control_answer_fn cb, void *arg)
{
    async_req_t *r = calloc(1, sizeof *r);
    if (r == NULL)
        return LUAR_ENOMEM;
    snprintf(r->line, sizeof r->line, "%s\n", command);
    luar_buf_init(&r->answer, 1 << 20);
    r->cb = cb;
    r->arg = arg;
    uv_pipe_init(loop, &r->pipe, 0);
    r->pipe.data = r;
    r->connect.data = r;
    uv_pipe_connect(&r->connect, &r->pipe, path, on_async_connect);
    return 0;
}
